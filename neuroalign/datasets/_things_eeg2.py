"""THINGS-EEG2 preprocessed data (the card datasets/things-eeg2.toml) -> store.

``preprocessed_eeg_{training,test}.npy`` are pickled dicts (``np.save`` of a dict, or a
third party's ``pickle.dump``) and ``image_metadata.npy`` a pickled dict of file lists; all
are read with the restricted unpickler of :mod:`neuroalign.datasets._formats` (no code
runs from them). Every key is checked: the data array (images, repetitions, channels,
times), distinct channel names, strictly increasing finite times, and image lists whose
stimulus ids are distinct within a split and disjoint between splits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.datasets._cards import published
from neuroalign.datasets._formats import load_npy_dict, only_one, warn_count
from neuroalign.datasets._ingest import Block, IngestPlan, file_fingerprint
from neuroalign.datasets._meeg import _montage_positions, _sub
from neuroalign.exceptions import DataFormatError
from neuroalign.store._schema import SCHEMA_VERSION

__all__ = ["load_things_eeg2", "things_eeg2_plan"]

_EEG2_KEYS = ("preprocessed_eeg_data", "ch_names", "times")
_EEG2_SPLITS = {"training": ("train", "training_images"), "test": ("test", "test_images")}
_EEG2_WHAT = f"a preprocessed THINGS-EEG2 dict with keys {list(_EEG2_KEYS)}"


def _strings(values, path: Path, key: str, what: str) -> list[str]:
    """A 1-d list of str (numpy str included), else DataFormatError naming the entry."""
    if isinstance(values, (str, bytes)) or np.ndim(values) != 1:
        raise DataFormatError(
            f"{path}: {key!r} has shape {np.shape(values)!r}, expected a list of {what} (str)."
        )
    out = list(values)
    for v in out:
        if not isinstance(v, str):
            raise DataFormatError(f"{path}: {key!r} holds {v!r} ({type(v).__name__}), expected {what} (str).")
    return [str(v) for v in out]


def _first_repeat(values: Sequence) -> tuple[int, int] | None:
    seen: dict = {}
    for i, v in enumerate(values):
        if v in seen:
            return seen[v], i
        seen[v] = i
    return None


def _read_file(path: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Data, channel names and times of one preprocessed file, checked."""
    obj = load_npy_dict(path, _EEG2_KEYS, _EEG2_WHAT)
    data = obj["preprocessed_eeg_data"]
    if not isinstance(data, np.ndarray) or data.ndim != 4 or data.dtype.kind != "f":
        found = f"shape {getattr(data, 'shape', None)!r} dtype {getattr(data, 'dtype', type(data).__name__)!s}"
        raise DataFormatError(
            f"{path}: 'preprocessed_eeg_data' has {found}, expected a float array of 4 dims "
            "(images, repetitions, channels, times)."
        )
    ch = _strings(obj["ch_names"], path, "ch_names", "channel names")
    rep = _first_repeat(ch)
    if rep is not None:
        raise DataFormatError(
            f"{path}: 'ch_names' repeats {ch[rep[1]]!r}; expected distinct channel names."
        )
    times = np.asarray(obj["times"])
    if times.ndim != 1 or times.dtype.kind not in "iuf":
        raise DataFormatError(
            f"{path}: 'times' has shape {times.shape!r} dtype {times.dtype!s}, expected "
            "(n_times,) seconds."
        )
    times = np.round(times.astype(np.float64), 6)
    if not np.isfinite(times).all():
        raise DataFormatError(f"{path}: 'times' holds non-finite values; expected seconds.")
    steps = np.flatnonzero(np.diff(times) <= 0)
    if steps.size:
        raise DataFormatError(
            f"{path}: 'times' is not strictly increasing (at index {int(steps[0]) + 1}); "
            "expected the epoch's sample times in seconds."
        )
    _, _, n_ch, n_t = data.shape
    if n_ch != len(ch) or n_t != len(times):
        raise DataFormatError(
            f"{path}: 'preprocessed_eeg_data' has shape {data.shape!r}, but 'ch_names' has "
            f"{len(ch)} and 'times' {len(times)} entries; expected (images, repetitions, "
            f"{len(ch)}, {len(times)})."
        )
    return data, ch, times


def _image_lists(meta: dict, meta_path: Path, splits: Sequence[str]) -> dict[str, tuple[list, list, list]]:
    """``{split: (files, concepts, stimulus ids)}`` from image_metadata, checked."""
    out = {}
    split_of: dict[str, tuple[str, str]] = {}
    for split in splits:
        short = _EEG2_SPLITS[split][0]
        fkey, ckey = f"{short}_img_files", f"{short}_img_concepts"
        files = _strings(meta[fkey], meta_path, fkey, "file names")
        concepts = _strings(meta[ckey], meta_path, ckey, "concept folder names")
        if len(files) != len(concepts):
            raise DataFormatError(
                f"{meta_path}: {fkey!r} has {len(files)} entries but {ckey!r} {len(concepts)}; "
                "expected one concept per image."
            )
        ids = [f"things-{Path(f).stem}" for f in files]
        rep = _first_repeat(ids)
        if rep is not None:
            i, j = rep
            raise DataFormatError(
                f"{meta_path}: {fkey!r} entries {i + 1} and {j + 1} ({files[i]!r}, {files[j]!r}) "
                f"give the same stimulus id {ids[i]!r}; expected distinct images (one row of "
                "the data per image)."
            )
        for f, sid in zip(files, ids, strict=True):
            if sid in split_of and split_of[sid][0] != short:
                raise DataFormatError(
                    f"{meta_path}: {f!r} is both a {split_of[sid][0]} and a {short} image "
                    f"(stimulus id {sid!r}); expected disjoint train and test images."
                )
            split_of[sid] = (short, f)
        out[split] = (files, concepts, ids)
    return out


def things_eeg2_plan(
    root: str | os.PathLike,
    subject: int | str,
    *,
    image_metadata: str | os.PathLike | None = None,
    splits: Sequence[str] = ("training", "test"),
) -> IngestPlan:
    """The ingest plan behind :func:`load_things_eeg2` (same parameters).

    Parameters
    ----------
    root, subject, image_metadata, splits
        As :func:`load_things_eeg2`.

    Returns
    -------
    IngestPlan
        The store's coordinates and attrs, and its responses as blocks read on demand
        (``plan.load()`` is ``load_things_eeg2(...)``; ``neuroalign ingest`` streams the blocks).
    """
    root = Path(root)
    sub = _sub(subject)
    for s in splits:
        if s not in _EEG2_SPLITS:
            raise ValueError(
                f"Invalid value for 'splits' in load_things_eeg2(): {s!r}. Expected 'training' and/or 'test'."
            )
    candidates = [root / "preprocessed_data" / sub, root / sub, root / "preprocessed" / sub]
    data_dir = only_one(candidates, f"the preprocessed data of {sub}", kind="folder")
    if data_dir is None:
        present = sorted({p.name for c in (root / "preprocessed_data", root) if c.is_dir()
                          for p in c.iterdir() if p.name.startswith("sub-")})
        raise FileNotFoundError(
            f"{root}: no folder for {sub} (looked for {', '.join(str(c) for c in candidates)}). "
            f"Subjects present: {format_list(present) or 'none'}."
        )
    if image_metadata is None:
        meta_candidates = [root / "image_set" / "image_metadata.npy", root / "image_metadata.npy"]
        meta_path = only_one(meta_candidates, "THINGS-EEG2 image_metadata.npy") or meta_candidates[0]
    else:
        meta_path = Path(image_metadata)
    keys = [f"{_EEG2_SPLITS[s][0]}_img_{k}" for s in splits for k in ("files", "concepts")]
    meta = load_npy_dict(meta_path, keys, "THINGS-EEG2 image_metadata (dict of image file lists)")
    lists = _image_lists(meta, meta_path, splits)
    image_root = meta_path.parent
    simulated = (root / "truth.json").exists()

    parts, blocks, ch_ref, times_ref, start = [], [], None, None, 0
    files = []
    for split in splits:
        short, folder = _EEG2_SPLITS[split]
        path = data_dir / f"preprocessed_eeg_{split}.npy"
        data, ch, times = _read_file(path)
        n_img, n_rep = data.shape[:2]
        img_files, concepts, ids = lists[split]
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
        del data
        stems = np.array(ids)
        rel = np.array([f"{folder}/{c}/{f}" for c, f in zip(concepts, img_files, strict=True)])
        parts.append({
            "stimulus_id": np.repeat(stems, n_rep),
            "image_file": np.repeat(rel, n_rep),
            "repetition": np.tile(np.arange(n_rep), n_img),
            "split": np.full(n_img * n_rep, short),
        })

        def read(p=path):
            arr = _read_file(p)[0]
            return arr.reshape(arr.shape[0] * arr.shape[1], *arr.shape[2:]).astype(np.float32)

        blocks.append(Block(str(path), start, start + n_img * n_rep, read, files=(path,)))
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
