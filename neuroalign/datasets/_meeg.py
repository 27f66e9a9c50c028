"""MEG / EEG adapters: any MNE epochs file, THINGS-MEG preprocessed epochs, and BIDS
``events.tsv`` (the card datasets/things-meg.toml; the BIDS events format). THINGS-EEG2 is in :mod:`._things_eeg2`."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign._validation import format_list
from neuroalign.datasets._formats import only_one, repetition_index, require_file
from neuroalign.datasets._ingest import Block, IngestPlan, file_fingerprint
from neuroalign.datasets._text import int_column, read_table
from neuroalign.exceptions import DataFormatError
from neuroalign.store._builders import stimulus_ids_of
from neuroalign.store._schema import SCHEMA_VERSION

__all__ = [
    "load_mne_epochs",
    "mne_epochs_plan",
    "load_things_meg",
    "things_meg_plan",
    "read_bids_events",
]

log = get_logger(__name__)

_EPOCHS_PER_BLOCK = 512
#: Units of the published THINGS-MEG epochs: z-scored per channel against the pre-stimulus
#: baseline (THINGS-data MEG/step1_preprocessing.py, ``mne.baseline.rescale(mode="zscore")``;
#: the card datasets/things-meg.toml), although their FIFF channels still say tesla.
THINGS_MEG_UNITS = "z-score (per channel, against the baseline)"


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


# -- BIDS events ------------------------------------------------------------------------------

def read_bids_events(path: str | os.PathLike, *, text_columns: Sequence[str] = ()):
    """Read a BIDS ``*_events.tsv`` with pandas, keeping every column (``n/a`` -> NaN).

    mne-bids turns events into annotations and drops the columns that hold stimulus ids
    (the BIDS events format); this reader keeps them. As in BIDS, only ``n/a`` (and an
    empty cell) is missing: a stimulus called ``"NA"`` or ``"null"`` stays one. Text that
    is not UTF-8 is read as latin-1 with a :class:`~neuroalign.datasets.TextEncodingWarning`.

    Parameters
    ----------
    path : path-like
        The ``*_events.tsv`` file (tab-separated, with ``onset`` and ``duration``).
    text_columns : sequence of str
        Columns read as text (stimulus ids: ``"0012"`` keeps its zeros).

    Returns
    -------
    pandas.DataFrame
        One row per event, every column kept.
    """
    return read_table(Path(path), "a BIDS events.tsv (tab-separated)",
                      required=("onset", "duration"), sep="\t", text_columns=list(text_columns))


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


def _split_parts(path: Path) -> list[Path]:
    """``path`` and the split parts mne reads with it (``NAME-1.fif``, ``NAME-2.fif`` ...)."""
    stem = path.name[: -len(".fif")] if path.name.endswith(".fif") else path.stem
    parts = [p for p in path.parent.glob(f"{stem}-*.fif") if re.fullmatch(rf"{re.escape(stem)}-\d+\.fif", p.name)]
    return [path, *sorted(parts, key=lambda p: int(p.name[len(stem) + 1 : -4]))]


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
    """The ingest plan behind :func:`load_mne_epochs` (same parameters).

    Parameters
    ----------
    path, stimulus_column, metadata, stimulus_prefix, stem, split_column, test_values, drop, session_column, run_column, subject, dataset
        As :func:`load_mne_epochs`.

    Returns
    -------
    IngestPlan
        The store's coordinates and attrs, and its responses as blocks read on demand
        (``plan.load()`` is ``load_mne_epochs(...)``; ``neuroalign ingest`` streams the blocks).
    """
    import mne
    import pandas as pd

    path = Path(path)
    epochs = _read_epochs(path)
    if metadata is not None:
        if not isinstance(metadata, pd.DataFrame):
            mpath = Path(metadata)
            # stimulus ids as from_nifti reads them: text, and only n/a or empty is missing
            metadata = (read_bids_events(mpath, text_columns=[stimulus_column])
                        if mpath.name.endswith(".tsv")
                        else read_table(mpath, "an epochs metadata table (one row per epoch)",
                                        text_columns=[stimulus_column]))
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
    try:  # ids as from_epochs makes them: 12 and 12.0 (an int column with n/a rows) -> "12"
        ids, keep = stimulus_ids_of(md[stimulus_column].to_numpy(), name=stimulus_column,
                                    func="load_mne_epochs", drop_missing=True)
    except DataFormatError as err:
        raise DataFormatError(f"{src}: {err}") from None
    all_ids = np.full(len(md), "", dtype=object)
    all_ids[keep] = ids
    for col, values in (drop or {}).items():
        if col not in md.columns:
            raise DataFormatError(f"{src}: no column {col!r} (in drop=). Columns present: {format_list(list(md.columns))}.")
        keep = keep & ~md[col].isin(list(values)).to_numpy()
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise DataFormatError(f"{src}: no epoch left with a stimulus in {stimulus_column!r}.")
    vals = all_ids[rows].astype(str)
    names = [Path(v).stem if stem else v for v in vals]
    stim = np.array([f"{stimulus_prefix}{n}" for n in names])
    if split_column is not None:
        if split_column not in md.columns:
            raise DataFormatError(f"{src}: no column {split_column!r} for split_column. Columns present: {format_list(list(md.columns))}.")
        split = np.where(md[split_column].isin(list(test_values)).to_numpy()[rows], "test", "train")
    else:
        split = np.full(len(rows), "train")
    parts = _split_parts(path)
    # channels marked bad are left out, as from_epochs leaves them out (exclude="bads")
    picks = mne.pick_types(epochs.info, meg=True, eeg=True, seeg=True, ecog=True, ref_meg=False,
                           exclude="bads")
    bads = list(epochs.info["bads"])
    if len(picks) == 0:
        but = f" but the bad ones ({format_list(bads)}, in info['bads'])" if bads else ""
        raise DataFormatError(
            f"{path}: no MEG/EEG data channels{but} among {format_list(epochs.ch_names)}. "
            "Expected at least one good data channel."
        )
    if bads:
        log.info("%s: leaving out the bad channel(s) %s (info['bads'])", path, format_list(bads))
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
        coords[stimulus_column] = ("presentation", vals)
    for name, col in (("session", session_column), ("run", run_column)):
        if col is not None:
            if col not in md.columns:
                raise DataFormatError(f"{src}: no column {col!r} for {name}_column. Columns present: {format_list(list(md.columns))}.")
            coords[name] = ("presentation", int_column(
                md.iloc[rows], col, src, rows="line" if src != path else "epoch"))
    from neuroalign.store._builders_neuro import _units

    ch_units = np.asarray(_units(epochs), dtype=str)[picks]
    kinds = list(dict.fromkeys(ch_units.tolist()))
    units = kinds[0] if len(kinds) == 1 else "mixed"
    if len(kinds) > 1:  # recorded per sensor, and said: analyses across sensors must scale them
        coords["sensor_units"] = ("neuroid", ch_units)
        warnings.warn(
            f"{path}: channels in different units ({format_list(kinds)}: "
            + ", ".join(f"{int((ch_units == k).sum())} in {k}" for k in kinds)
            + "); the store's units are 'mixed' and each sensor's unit is in its "
            "'sensor_units' coordinate. Select one sensor type (or z-score per sensor) before "
            "analyses that pool sensors, such as RDMs.",
            UserWarning, stacklevel=2,
        )
    attrs = {
        "dataset": dataset, "space": "sensor", "units": units, "schema_version": SCHEMA_VERSION,
        "subject": subject, "sfreq": float(epochs.info["sfreq"]),
        "source": {"files": [str(path.resolve())]},
    }
    blocks = []
    for start in range(0, len(rows), _EPOCHS_PER_BLOCK):
        sel = rows[start : start + _EPOCHS_PER_BLOCK]

        def read(sel=sel):
            try:
                return epochs[sel].get_data(picks=picks).astype(np.float32)
            except Exception as err:  # mne/numpy errors on short or corrupt data tags
                raise DataFormatError(
                    f"{path}: cannot read the epochs data ({type(err).__name__}: {err}); the file "
                    "is truncated or corrupt. Expected a complete *-epo.fif file."
                ) from err

        blocks.append(Block(f"{path.name}[{sel[0]}:{sel[-1] + 1}]", start, start + len(sel), read,
                            files=parts))
    fp = {"adapter": dataset, "files": file_fingerprint(parts), "stimulus_column": stimulus_column,
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
        Column of the metadata that names each epoch's stimulus. Ids are made as
        :func:`~neuroalign.store.from_epochs` makes them: text as it is, whole numbers as
        integers (``12.0`` in a column with ``n/a`` rows is ``"12"``); epochs with no
        stimulus are left out.
    **kwargs
        The other options of :func:`mne_epochs_plan`:

        metadata : DataFrame or path-like, optional
            One row per epoch, used instead of ``epochs.metadata`` (a CSV, or a BIDS
            ``events.tsv`` read with :func:`read_bids_events`). Files are read as
            :func:`~neuroalign.store.from_nifti` reads events: the stimulus column as text
            (``"0012"`` keeps its zeros), and only ``n/a`` or an empty cell is missing (a
            stimulus called ``"NA"`` stays one).
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
        read in blocks of epochs; one neuroid per good MEG/EEG data channel (channels
        marked bad in ``epochs.info['bads']`` are left out, as
        :func:`~neuroalign.store.from_epochs` leaves them out); neuroid coords ``sensor``,
        ``sensor_type`` and the sensor positions ``sensor_x/y/z`` (device frame, metres)
        for topographic maps.
    """
    return mne_epochs_plan(path, stimulus_column=stimulus_column, **kwargs).load()


# -- THINGS-MEG -------------------------------------------------------------------------------

def things_meg_plan(root: str | os.PathLike, subject: int | str) -> IngestPlan:
    """The ingest plan behind :func:`load_things_meg`.

    Parameters
    ----------
    root, subject
        As :func:`load_things_meg`.

    Returns
    -------
    IngestPlan
        The store's coordinates and attrs, and its responses as blocks read on demand
        (``plan.load()`` is ``load_things_meg(...)``; ``neuroalign ingest`` streams the blocks).
    """
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
        metadata = only_one(candidates, f"the THINGS-MEG sample attributes of P{n}") or candidates[0]
        require_file(metadata, f"THINGS-MEG sample attributes for P{n} (epochs have no metadata)")
    plan = mne_epochs_plan(
        epo, stimulus_column="image_path", metadata=metadata, stimulus_prefix="things-", stem=True,
        split_column="trial_type", test_values=("test",), drop={"trial_type": ("catch",)},
        session_column="session_nr", run_column="run_nr", subject=f"P{n}", dataset="things-meg",
    )
    # the FIFF channel unit (T) does not describe z-scored values; generic files keep theirs
    plan.skeleton.attrs["units"] = THINGS_MEG_UNITS
    return plan


def load_things_meg(root: str | os.PathLike, subject: int | str) -> xr.Dataset:
    """Load THINGS-MEG preprocessed epochs of participant ``subject`` (1..4) as a store.

    Reads ``derivatives/preprocessed/preprocessed_P{n}-epo.fif`` under ``root`` (or
    ``root`` itself when it is the epochs file), with ``sourcedata/sample_attributes_P{n}.csv``
    when the epochs carry no metadata. Catch trials and channels marked bad
    (``info['bads']``) are dropped; ``trial_type == 'test'``
    is the test split; stimulus ids are ``things-<image stem>``; ``session``/``run`` come
    from ``session_nr``/``run_nr``.

    Parameters
    ----------
    root : path-like
        The THINGS-MEG folder, or the epochs file itself.
    subject : int or str
        The participant, 1..4.

    Returns
    -------
    xr.Dataset
        The store (as :func:`load_mne_epochs`), with ``units`` ``"z-score (per channel,
        against the baseline)"``: the published epochs are z-scored per channel against the
        pre-stimulus baseline, so their values are unitless although the file's channels
        say tesla.
    """
    return things_meg_plan(root, subject).load()
