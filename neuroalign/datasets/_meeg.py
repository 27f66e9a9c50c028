"""MEG / EEG adapters: THINGS-EEG2 preprocessed ``.npy`` dicts, any MNE epochs file,
THINGS-MEG preprocessed epochs, and BIDS ``events.tsv`` (DATASETS.md §4, §5, §7)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign._validation import format_list
from neuroalign.datasets._cards import published
from neuroalign.datasets._formats import load_npy_dict, repetition_index, require_file, warn_count
from neuroalign.datasets._ingest import Block, IngestPlan, file_fingerprint
from neuroalign.exceptions import DataFormatError
from neuroalign.store._schema import SCHEMA_VERSION

__all__ = [
    "load_things_eeg2",
    "things_eeg2_plan",
    "load_mne_epochs",
    "mne_epochs_plan",
    "load_things_meg",
    "things_meg_plan",
    "read_bids_events",
]

log = get_logger(__name__)

_EEG2_KEYS = ("preprocessed_eeg_data", "ch_names", "times")
_EEG2_SPLITS = {"training": ("train", "training_images"), "test": ("test", "test_images")}
_EPOCHS_PER_BLOCK = 512


def _sub(subject: int | str, prefix: str = "sub-") -> str:
    if isinstance(subject, str):
        m = re.fullmatch(r"(?:sub-?|P)?0*(\d+)", subject)
        if not m:
            raise ValueError(
                f"Invalid value for 'subject': {subject!r}. Expected an integer or 'sub-NN'."
            )
        subject = int(m.group(1))
    return f"{prefix}{int(subject):02d}"


def _montage_positions(names: Sequence[str]) -> np.ndarray:
    """(n, 3) positions (m, head frame) of 10-20 channel names; NaN where unknown."""
    import warnings

    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # renamed colin27_1020 in MNE 1.12
        try:
            montage = mne.channels.make_standard_montage("colin27_1020")
        except ValueError:
            montage = mne.channels.make_standard_montage("standard_1020")
    pos = montage.get_positions()["ch_pos"]
    lower = {k.lower(): v for k, v in pos.items()}
    return np.array([lower.get(n.lower(), np.full(3, np.nan)) for n in names], dtype=np.float64)


# -- THINGS-EEG2 ---------------------------------------------------------------------------

def things_eeg2_plan(
    root: str | os.PathLike,
    subject: int | str,
    *,
    image_metadata: str | os.PathLike | None = None,
    splits: Sequence[str] = ("training", "test"),
) -> IngestPlan:
    """The ingest plan behind :func:`load_things_eeg2` (same parameters)."""
    root = Path(root)
    sub = _sub(subject)
    for s in splits:
        if s not in _EEG2_SPLITS:
            raise ValueError(
                f"Invalid value for 'splits' in load_things_eeg2(): {s!r}. Expected 'training' and/or 'test'."
            )
    candidates = [root / "preprocessed_data" / sub, root / sub, root / "preprocessed" / sub]
    data_dir = next((c for c in candidates if c.is_dir()), None)
    if data_dir is None:
        present = sorted({p.name for c in (root / "preprocessed_data", root) if c.is_dir()
                          for p in c.iterdir() if p.name.startswith("sub-")})
        raise FileNotFoundError(
            f"{root}: no folder for {sub} (looked for {', '.join(str(c) for c in candidates)}). "
            f"Subjects present: {format_list(present) or 'none'}."
        )
    if image_metadata is None:
        meta_candidates = [root / "image_set" / "image_metadata.npy", root / "image_metadata.npy"]
        meta_path = next((c for c in meta_candidates if c.exists()), meta_candidates[0])
    else:
        meta_path = Path(image_metadata)
    keys = [f"{_EEG2_SPLITS[s][0]}_img_{k}" for s in splits for k in ("files", "concepts")]
    meta = load_npy_dict(meta_path, keys, "THINGS-EEG2 image_metadata (dict of image file lists)")
    image_root = meta_path.parent
    simulated = (root / "truth.json").exists()

    parts, blocks, ch_ref, times_ref, start = [], [], None, None, 0
    files = []
    for split in splits:
        short, folder = _EEG2_SPLITS[split]
        path = data_dir / f"preprocessed_eeg_{split}.npy"
        obj = load_npy_dict(path, _EEG2_KEYS, f"a preprocessed THINGS-EEG2 dict with keys {list(_EEG2_KEYS)}")
        data = obj["preprocessed_eeg_data"]
        ch = [str(c) for c in obj["ch_names"]]
        times = np.round(np.asarray(obj["times"], dtype=np.float64), 6)
        if not isinstance(data, np.ndarray) or data.ndim != 4 or data.dtype.kind != "f":
            found = f"shape {getattr(data, 'shape', None)!r} dtype {getattr(data, 'dtype', type(data).__name__)!s}"
            raise DataFormatError(
                f"{path}: 'preprocessed_eeg_data' has {found}, expected a float array of 4 dims "
                "(images, repetitions, channels, times)."
            )
        n_img, n_rep, n_ch, n_t = data.shape
        if n_ch != len(ch) or n_t != len(times):
            raise DataFormatError(
                f"{path}: 'preprocessed_eeg_data' has shape {data.shape!r}, but 'ch_names' has "
                f"{len(ch)} and 'times' {len(times)} entries; expected (images, repetitions, "
                f"{len(ch)}, {len(times)})."
            )
        img_files = list(meta[f"{short}_img_files"])
        concepts = list(meta[f"{short}_img_concepts"])
        if n_img != len(img_files):
            raise DataFormatError(
                f"{path}: {n_img} image conditions, but {meta_path.name} lists {len(img_files)} "
                f"{short}_img_files. Expected one row per image."
            )
        if ch_ref is None:
            ch_ref, times_ref = ch, times
        elif ch != ch_ref or not np.allclose(times, times_ref):
            raise DataFormatError(
                f"{path}: channels or times differ from the first split's file; expected the same "
                f"channels {format_list(ch_ref)} and times."
            )
        if not simulated:
            warn_count(path, "the data shape", list(data.shape), published("things-eeg2", f"shape_{split}"), sub)
        del data, obj
        stems = np.array([f"things-{Path(f).stem}" for f in img_files])
        rel = np.array([f"{folder}/{c}/{f}" for c, f in zip(concepts, img_files, strict=True)])
        parts.append({
            "stimulus_id": np.repeat(stems, n_rep),
            "image_file": np.repeat(rel, n_rep),
            "repetition": np.tile(np.arange(n_rep), n_img),
            "split": np.full(n_img * n_rep, short),
        })

        def read(p=path):
            arr = load_npy_dict(p, _EEG2_KEYS, "a preprocessed THINGS-EEG2 dict")["preprocessed_eeg_data"]
            return arr.reshape(arr.shape[0] * arr.shape[1], *arr.shape[2:]).astype(np.float32)

        blocks.append(Block(str(path), start, start + n_img * n_rep, read))
        start += n_img * n_rep
        files.append(path)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    pos = _montage_positions(ch_ref)
    coords = {
        "stimulus_id": ("presentation", cat["stimulus_id"]),
        "repetition": ("presentation", cat["repetition"].astype(np.int64)),
        "split": ("presentation", cat["split"]),
        "image_file": ("presentation", cat["image_file"]),
        "neuroid_id": ("neuroid", np.array([f"{sub}_{c}" for c in ch_ref])),
        "subject": ("neuroid", np.array([sub] * len(ch_ref))),
        "sensor": ("neuroid", np.array(ch_ref)),
        "sensor_type": ("neuroid", np.array(["eeg"] * len(ch_ref))),
        "sensor_x": ("neuroid", pos[:, 0]),
        "sensor_y": ("neuroid", pos[:, 1]),
        "sensor_z": ("neuroid", pos[:, 2]),
        "time": ("time", times_ref),
    }
    attrs = {
        "dataset": "things-eeg2", "space": "sensor", "units": "a.u. (MVNN-whitened)",
        "schema_version": SCHEMA_VERSION, "subject": sub, "montage": "10-20 (mne standard montage)",
        "source": {"root": str(root.resolve()), "files": [str(p) for p in [*files, meta_path]]},
        "stimulus_set": {"kind": "image-files", "root": str(image_root.resolve()), "file_coord": "image_file"},
    }
    fp = {"adapter": "things-eeg2", "files": file_fingerprint([*files, meta_path])}
    return IngestPlan(xr.Dataset(coords=coords, attrs=attrs), ("presentation", "neuroid", "time"),
                      blocks, fp, desc=f"THINGS-EEG2 {sub}")


def load_things_eeg2(
    root: str | os.PathLike,
    subject: int | str,
    *,
    image_metadata: str | os.PathLike | None = None,
    splits: Sequence[str] = ("training", "test"),
) -> xr.Dataset:
    """Load THINGS-EEG2 preprocessed data of one subject as a store.

    Parameters
    ----------
    root : path-like
        Folder holding ``preprocessed_data/sub-XX/preprocessed_eeg_{training,test}.npy``
        (or ``sub-XX/`` directly) and ``image_set/image_metadata.npy``. The files may be
        saved with ``np.save`` (0-d object array) or ``pickle.dump`` (a dict).
    subject : int or str
        Subject number (``1`` or ``"sub-01"``).
    image_metadata : path-like, optional
        Path of ``image_metadata.npy`` when it is not under ``root``.
    splits : sequence of {"training", "test"}
        Which files to read.

    Returns
    -------
    xr.Dataset
        Store with ``responses`` of dims ('presentation', 'neuroid', 'time'): the
        repetition axis unrolled into presentations (image-major). ``stimulus_id`` is
        ``things-<file stem>``; ``image_file`` is relative to the image set folder;
        neuroid coords ``sensor`` and 10-05 montage positions ``sensor_x/y/z`` (metres);
        ``time`` in seconds (rounded to the microsecond).
    """
    return things_eeg2_plan(root, subject, image_metadata=image_metadata, splits=splits).load()


# -- BIDS events ------------------------------------------------------------------------------

def read_bids_events(path: str | os.PathLike):
    """Read a BIDS ``*_events.tsv`` with pandas, keeping every column (``n/a`` -> NaN).

    mne-bids turns events into annotations and drops the columns that hold stimulus ids
    (DATASETS.md §7); this reader keeps them.
    """
    import pandas as pd

    path = require_file(Path(path), "a BIDS events.tsv")
    try:
        df = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)
    except Exception as err:
        raise DataFormatError(f"{path}: cannot be read as a tab-separated events file ({err}).") from err
    missing = [c for c in ("onset", "duration") if c not in df.columns]
    if missing:
        raise DataFormatError(
            f"{path}: missing BIDS column(s) {format_list(missing)}. Columns present: {format_list(df.columns)}."
        )
    return df


# -- MNE epochs -------------------------------------------------------------------------------

def _read_epochs(path: Path):
    import mne

    require_file(path, "an MNE epochs file (*-epo.fif)")
    try:
        return mne.read_epochs(str(path), preload=False, verbose="error")
    except Exception as err:  # mne raises ValueError/OSError/... for corrupt files
        raise DataFormatError(
            f"{path}: cannot be read as MNE epochs ({type(err).__name__}: {err}). "
            "Expected a complete *-epo.fif file."
        ) from err


def mne_epochs_plan(
    path: str | os.PathLike,
    *,
    stimulus_column: str,
    metadata=None,
    stimulus_prefix: str = "",
    stem: bool = False,
    split_column: str | None = None,
    test_values: Sequence = ("test",),
    drop: dict | None = None,
    session_column: str | None = None,
    run_column: str | None = None,
    subject: str = "sub-01",
    dataset: str = "mne",
) -> IngestPlan:
    """The ingest plan behind :func:`load_mne_epochs` (same parameters)."""
    import mne
    import pandas as pd

    path = Path(path)
    epochs = _read_epochs(path)
    if metadata is not None:
        if not isinstance(metadata, pd.DataFrame):
            mpath = Path(metadata)
            metadata = (read_bids_events(mpath) if mpath.name.endswith(".tsv")
                        else pd.read_csv(require_file(mpath, "an epochs metadata CSV")))
            src = mpath
        else:
            src = "metadata"
        if len(metadata) != len(epochs):
            raise DataFormatError(
                f"{src}: {len(metadata)} rows, but {path.name} has {len(epochs)} epochs; "
                "expected one row per epoch."
            )
        md = metadata.reset_index(drop=True)
    elif epochs.metadata is not None:
        md = epochs.metadata.reset_index(drop=True)
        src = path
    else:
        raise DataFormatError(
            f"{path}: the epochs have no metadata. Pass metadata= (a DataFrame, a CSV, or a "
            "BIDS events.tsv with one row per epoch)."
        )
    if stimulus_column not in md.columns:
        raise DataFormatError(
            f"{src}: no column {stimulus_column!r} for stimulus_column. Columns present: "
            f"{format_list(list(md.columns))}."
        )
    keep = md[stimulus_column].notna().to_numpy().copy()
    for col, values in (drop or {}).items():
        if col not in md.columns:
            raise DataFormatError(f"{src}: no column {col!r} (in drop=). Columns present: {format_list(list(md.columns))}.")
        keep = keep & ~md[col].isin(list(values)).to_numpy()
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise DataFormatError(f"{src}: no epoch left with a stimulus in {stimulus_column!r}.")
    vals = md[stimulus_column].to_numpy()[rows]
    names = [Path(str(v)).stem if stem else str(v) for v in vals]
    stim = np.array([f"{stimulus_prefix}{n}" for n in names])
    if split_column is not None:
        if split_column not in md.columns:
            raise DataFormatError(f"{src}: no column {split_column!r} for split_column. Columns present: {format_list(list(md.columns))}.")
        split = np.where(md[split_column].isin(list(test_values)).to_numpy()[rows], "test", "train")
    else:
        split = np.full(len(rows), "train")
    picks = mne.pick_types(epochs.info, meg=True, eeg=True, seeg=True, ecog=True, ref_meg=False, exclude=[])
    if len(picks) == 0:
        raise DataFormatError(f"{path}: no MEG/EEG data channels among {format_list(epochs.ch_names)}.")
    chs = [epochs.info["chs"][p] for p in picks]
    names_ch = [c["ch_name"] for c in chs]
    types = epochs.get_channel_types(picks=picks)
    loc = np.array([c["loc"][:3] for c in chs], dtype=np.float64)
    coords = {
        "stimulus_id": ("presentation", stim),
        "repetition": ("presentation", repetition_index(stim)),
        "split": ("presentation", split),
        "epoch": ("presentation", rows.astype(np.int64)),
        "neuroid_id": ("neuroid", np.array([f"{subject}_{n}" for n in names_ch])),
        "subject": ("neuroid", np.array([subject] * len(picks))),
        "sensor": ("neuroid", np.array(names_ch)),
        "sensor_type": ("neuroid", np.array(types)),
        "sensor_x": ("neuroid", loc[:, 0]),
        "sensor_y": ("neuroid", loc[:, 1]),
        "sensor_z": ("neuroid", loc[:, 2]),
        "time": ("time", np.asarray(epochs.times, dtype=np.float64)),
    }
    if stimulus_column not in coords:
        coords[stimulus_column] = ("presentation", np.asarray([str(v) for v in vals]))
    for name, col in (("session", session_column), ("run", run_column)):
        if col is not None:
            if col not in md.columns:
                raise DataFormatError(f"{src}: no column {col!r} for {name}_column. Columns present: {format_list(list(md.columns))}.")
            coords[name] = ("presentation", md[col].to_numpy()[rows].astype(np.int64))
    kinds = set(types)
    units = "T" if kinds <= {"mag"} else "V" if kinds <= {"eeg", "seeg", "ecog"} else "SI (T, T/m, V)"
    attrs = {
        "dataset": dataset, "space": "sensor", "units": units, "schema_version": SCHEMA_VERSION,
        "subject": subject, "sfreq": float(epochs.info["sfreq"]),
        "source": {"files": [str(path.resolve())]},
    }
    blocks = []
    for start in range(0, len(rows), _EPOCHS_PER_BLOCK):
        sel = rows[start : start + _EPOCHS_PER_BLOCK]

        def read(sel=sel):
            return epochs[sel].get_data(picks=picks).astype(np.float32)

        blocks.append(Block(f"{path.name}[{sel[0]}:{sel[-1] + 1}]", start, start + len(sel), read))
    fp = {"adapter": dataset, "files": file_fingerprint([path]), "stimulus_column": stimulus_column,
          "rows": int(len(rows))}
    return IngestPlan(xr.Dataset(coords=coords, attrs=attrs), ("presentation", "neuroid", "time"),
                      blocks, fp, desc=f"{dataset} epochs")


def load_mne_epochs(path: str | os.PathLike, *, stimulus_column: str, **kwargs) -> xr.Dataset:
    """Load any MNE epochs file (``*-epo.fif``, split files too) as a store.

    Parameters
    ----------
    path : path-like
        The epochs file; mne reads split parts (``-epo-1.fif``...) automatically.
    stimulus_column : str
        Column of the metadata that names each epoch's stimulus.
    metadata : DataFrame or path-like, optional
        One row per epoch, used instead of ``epochs.metadata`` (a CSV, or a BIDS
        ``events.tsv`` read with :func:`read_bids_events`).
    stimulus_prefix : str
        Prefix of the stimulus ids (e.g. ``"things-"``).
    stem : bool
        Use the file stem of the stimulus column's values (``"images/dog_12s.jpg"`` ->
        ``"dog_12s"``).
    split_column, test_values : str, sequence
        Rows whose ``split_column`` is in ``test_values`` form the test split (else all
        are train).
    drop : dict, optional
        ``{column: values}`` of epochs to leave out (e.g. catch trials). Epochs with no
        stimulus are always left out.
    session_column, run_column : str, optional
        Columns giving the session and run.
    subject, dataset : str
        Recorded on the store.

    Returns
    -------
    xr.Dataset
        Store with ``responses`` of dims ('presentation', 'neuroid', 'time') in SI units,
        read in blocks of epochs; neuroid coords ``sensor``, ``sensor_type`` and the
        sensor positions ``sensor_x/y/z`` (device frame, metres) for topographic maps.
    """
    return mne_epochs_plan(path, stimulus_column=stimulus_column, **kwargs).load()


# -- THINGS-MEG -------------------------------------------------------------------------------

def things_meg_plan(root: str | os.PathLike, subject: int | str) -> IngestPlan:
    """The ingest plan behind :func:`load_things_meg`."""
    root = Path(root)
    n = int(_sub(subject, prefix="")) if not isinstance(subject, int) else subject
    if root.is_file():
        epo, base = root, root.parent
    else:
        epo = root / "derivatives" / "preprocessed" / f"preprocessed_P{n}-epo.fif"
        base = root
    metadata = None
    if _read_epochs(epo).metadata is None:
        candidates = [base / "sourcedata" / f"sample_attributes_P{n}.csv", base / f"sample_attributes_P{n}.csv"]
        metadata = next((c for c in candidates if c.exists()), candidates[0])
        require_file(metadata, f"THINGS-MEG sample attributes for P{n} (epochs have no metadata)")
    plan = mne_epochs_plan(
        epo, stimulus_column="image_path", metadata=metadata, stimulus_prefix="things-", stem=True,
        split_column="trial_type", test_values=("test",), drop={"trial_type": ("catch",)},
        session_column="session_nr", run_column="run_nr", subject=f"P{n}", dataset="things-meg",
    )
    return plan


def load_things_meg(root: str | os.PathLike, subject: int | str) -> xr.Dataset:
    """Load THINGS-MEG preprocessed epochs of participant ``subject`` (1..4) as a store.

    Reads ``derivatives/preprocessed/preprocessed_P{n}-epo.fif`` under ``root`` (or
    ``root`` itself when it is the epochs file), with ``sourcedata/sample_attributes_P{n}.csv``
    when the epochs carry no metadata. Catch trials are dropped; ``trial_type == 'test'``
    is the test split; stimulus ids are ``things-<image stem>``; ``session``/``run`` come
    from ``session_nr``/``run_nr``.
    """
    return things_meg_plan(root, subject).load()
