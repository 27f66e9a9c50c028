"""THINGS-fMRI single-trial table format (the card datasets/things-fmri.toml) -> store.

``sub-0X_ResponseData.h5`` is a pandas HDFStore in fixed format (key ``ResponseData``):
rows are voxels, columns ``voxel_id`` then one float column per trial. It is read with
h5py directly, never through pandas/PyTables: pandas would unpickle the column labels,
and a pickle can run code. The layout pandas writes is:

- ``ResponseData`` group, attrs ``pandas_type = 'frame'`` and ``nblocks``;
- ``block{i}_values``: the values of the columns of one dtype, stored (rows, columns)
  when the attr ``transposed`` is set (pandas >= 0.24) and (columns, rows) otherwise;
- ``block{i}_items``: those columns' labels, an int or string array, or (for mixed or
  object labels) one pickled object array, decoded with the restricted unpickler.

Trials are streamed as blocks of columns, so ingest never holds the whole table.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.datasets._formats import (
    h5_read,
    only_one,
    open_hdf5,
    repetition_index,
    unpickle_restricted,
)
from neuroalign.datasets._ingest import Block, IngestPlan, file_fingerprint
from neuroalign.datasets._text import int_column, read_table
from neuroalign.exceptions import DataFormatError, UnsafeFileError
from neuroalign.store._schema import SCHEMA_VERSION

__all__ = ["load_things_fmri", "things_fmri_plan", "find_things_fmri_files"]

_KEY = "ResponseData"
_NON_ROI = ("voxel_id", "subject_id", "voxel_x", "voxel_y", "voxel_z")
_NON_ROI_PREFIX = ("nc_", "splithalf", "prf-")
_BLOCK_BYTES = 256 * 2**20


def find_things_fmri_files(root: str | os.PathLike, subject: int | str) -> dict[str, Path]:
    """Paths of the response table, stimulus and voxel metadata of ``subject``.

    Looks for the figshare names (``betas_csv/sub-0X_ResponseData.h5``,
    ``sub-0X_StimulusMetadata.csv``, ``sub-0X_VoxelMetadata.csv``) under ``root`` and
    ``root/betas_csv``, then for the OpenNeuro names under
    ``derivatives/ICA-betas/sub-0X/voxel-metadata``.

    Parameters
    ----------
    root : path-like
        The THINGS-fMRI folder.
    subject : int or str
        1..3 or ``"sub-01"``.

    Returns
    -------
    dict of str to pathlib.Path
        ``{"responses", "stimuli", "voxels"}``.

    Raises
    ------
    FileNotFoundError
        A file is missing (the message says where it was looked for).
    """
    root = Path(root)
    n = subject if isinstance(subject, int) else int(re.sub(r"\D", "", str(subject)) or 0)
    sub = f"sub-{n:02d}"
    layouts = [
        (d, {"responses": f"{sub}_ResponseData.h5", "stimuli": f"{sub}_StimulusMetadata.csv",
             "voxels": f"{sub}_VoxelMetadata.csv"})
        for d in (root, root / "betas_csv")
    ] + [(root / f"derivatives/ICA-betas/{sub}/voxel-metadata",
          {"responses": f"{sub}_task-things_voxel-wise-responses.h5",
           "stimuli": f"{sub}_task-things_stimulus-metadata.tsv",
           "voxels": f"{sub}_task-things_voxel-metadata.tsv"})]
    found = only_one([f / names["responses"] for f, names in layouts], f"the response table of {sub}")
    for folder, names in layouts:
        if found == folder / names["responses"]:
            return {k: folder / v for k, v in names.items()}
    raise FileNotFoundError(
        f"{root}: no THINGS-fMRI response table for {sub} (looked for "
        f"{format_list(str(f / n['responses']) for f, n in layouts)})."
    )


def _attr(node, name: str, default=None):
    """Attribute ``name`` of an HDF5 node as a plain value; a pickled one is refused.

    PyTables unpickles attributes that hold a pickle; h5py never does, and neither do we.
    """
    value = node.attrs.get(name, default)
    raw = value.tobytes() if isinstance(value, np.void) else value
    if isinstance(raw, (bytes, np.bytes_)):
        raw = bytes(raw)
        if raw[:1] == b"\x80" and raw.rstrip(b"\0")[-1:] == b".":
            raise UnsafeFileError(
                f"{node.file.filename}: refused to read: attribute {name!r} of {node.name} holds a "
                "pickle (PyTables would unpickle it, which could run code); expected a plain value."
            )
        return raw.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _codec(path: Path, name: str) -> str:
    import codecs

    try:
        return codecs.lookup(name).name
    except (LookupError, TypeError, ValueError):
        raise DataFormatError(
            f"{path}: {_KEY} has encoding attribute {name[:40]!r}; expected a codec name such as "
            "'UTF-8'."
        ) from None


class _ResponseTable:
    """Layout of a pandas fixed-format DataFrame in HDF5, read with h5py."""

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        with open_hdf5(path) as f:
            keys = [k for k in f.keys()]
            if _KEY not in f or not isinstance(f[_KEY], h5py.Group):
                raise DataFormatError(
                    f"{path}: has no key {_KEY!r}. Keys present: {format_list(keys) or 'none'}."
                )
            g = f[_KEY]
            kind = _attr(g, "pandas_type")
            if kind != "frame":
                raise DataFormatError(
                    f"{path}: {_KEY!r} has pandas_type {kind!r}, expected 'frame' (a DataFrame "
                    "saved in fixed format; 'frame_table' is the table format)."
                )
            encoding = _codec(path, _attr(g, "encoding") or "UTF-8")
            self.columns: dict = {}
            self.blocks: dict[int, tuple[str, bool, np.dtype]] = {}
            self.n_rows = None
            for b in range(int(_attr(g, "nblocks", 0) or 0)):
                items = self._labels(g, f"block{b}_items", encoding)
                name = f"block{b}_values"
                if name not in g or not isinstance(g[name], h5py.Dataset):
                    raise DataFormatError(f"{path}: {_KEY}/{name} is missing; expected the values of block {b}.")
                d = g[name]
                if d.dtype.kind == "O" or _attr(d, "kind") == "object":  # pickled objects: never read
                    self.blocks[b] = (name, False, np.dtype(object))
                    for label in items:
                        self.columns.setdefault(label, (b, -1))
                    continue
                if d.ndim != 2:
                    raise DataFormatError(f"{path}: {_KEY}/{name} has shape {d.shape!r}, expected 2 dims.")
                transposed = bool(_attr(d, "transposed", False))
                rows, n_items = d.shape if transposed else d.shape[::-1]
                if n_items != len(items):
                    raise DataFormatError(
                        f"{path}: {_KEY}/{name} has {n_items} columns but block{b}_items names "
                        f"{len(items)}."
                    )
                if self.n_rows is not None and rows != self.n_rows:
                    raise DataFormatError(
                        f"{path}: {_KEY}/{name} has {rows} rows, expected {self.n_rows} like block0."
                    )
                self.n_rows = int(rows)
                self.blocks[b] = (name, transposed, d.dtype)
                for j, label in enumerate(items):
                    if label in self.columns:
                        raise DataFormatError(
                            f"{path}: column {label!r} appears twice; expected one column per trial."
                        )
                    self.columns[label] = (b, j)
        if "voxel_id" not in self.columns:
            raise DataFormatError(
                f"{path}: {_KEY!r} has no column 'voxel_id'. Expected 'voxel_id' then trial "
                "columns 0..N-1."
            )
        if self.blocks[self.columns["voxel_id"][0]][2].kind not in "iuf":
            raise DataFormatError(f"{path}: column 'voxel_id' holds dtype object; expected integer ids.")
        self.trials: dict[int, tuple[int, int]] = {}
        for label, where in self.columns.items():
            if label == "voxel_id":
                continue
            try:
                t = int(label)
            except (TypeError, ValueError):
                raise DataFormatError(
                    f"{path}: column label {label!r} is not a trial number; expected 'voxel_id' "
                    "then trial columns 0..N-1."
                ) from None
            if t != label and str(t) != str(label):
                raise DataFormatError(f"{path}: column label {label!r} is not a whole trial number.")
            if t in self.trials:
                raise DataFormatError(f"{path}: trial column {t} appears twice.")
            dtype = self.blocks[where[0]][2]
            if dtype.kind != "f":
                raise DataFormatError(
                    f"{path}: trial column {t} holds dtype {dtype!s}; expected float betas."
                )
            self.trials[t] = where

    def _labels(self, g, name: str, encoding: str) -> list:
        if name not in g:
            raise DataFormatError(f"{self.path}: {_KEY}/{name} is missing; expected the column labels.")
        d = g[name]
        kind = _attr(d, "kind")
        raw = h5_read(d, self.path)
        if kind == "object" or raw.dtype == object:  # one pickled object array (mixed labels)
            if raw.shape != (1,):
                raise DataFormatError(f"{self.path}: {_KEY}/{name} holds {raw.shape!r} pickles, expected 1.")
            labels = unpickle_restricted(np.asarray(raw[0], dtype=np.uint8).tobytes(), self.path,
                                         "pandas column labels (ints and strings)")
            if not isinstance(labels, (np.ndarray, list, tuple)):
                raise DataFormatError(f"{self.path}: {_KEY}/{name} holds {type(labels).__name__}, expected labels.")
            out = [x.item() if isinstance(x, np.generic) else x for x in np.asarray(labels, dtype=object).ravel()]
        elif kind == "string" or raw.dtype.kind == "S":
            out = [bytes(x).decode(encoding) for x in raw.ravel()]
        elif kind in ("integer", None) and raw.dtype.kind in "iu":
            out = [int(x) for x in raw.ravel()]
        else:
            raise DataFormatError(
                f"{self.path}: {_KEY}/{name} holds labels of kind {kind!r} dtype {raw.dtype!s}; "
                "expected integer or string column labels."
            )
        for x in out:
            if not isinstance(x, (int, str)) or isinstance(x, bool):
                raise DataFormatError(f"{self.path}: column label {x!r} ({type(x).__name__}), expected an int or a str.")
        return out

    def read(self, labels) -> np.ndarray:
        """(n_rows, len(labels)) values of the columns ``labels`` (each in one block)."""
        out = np.empty((self.n_rows, len(labels)), dtype=np.float64)
        by_block: dict[int, list[tuple[int, int]]] = {}
        for k, label in enumerate(labels):
            b, j = self.columns[label] if label == "voxel_id" else self.trials[label]
            by_block.setdefault(b, []).append((j, k))
        with open_hdf5(self.path) as f:
            for b, pairs in by_block.items():
                name, transposed, _ = self.blocks[b]
                d = f[_KEY][name]
                cols = np.array([j for j, _ in pairs])
                lo, hi = int(cols.min()), int(cols.max()) + 1  # one slab, then pick
                slab = h5_read(d, self.path, np.s_[:, lo:hi] if transposed else np.s_[lo:hi, :])
                slab = slab if transposed else slab.T
                out[:, [k for _, k in pairs]] = slab[:, cols - lo]
        return out


def things_fmri_plan(root: str | os.PathLike, subject: int | str) -> IngestPlan:
    """The ingest plan behind :func:`load_things_fmri`.

    Parameters
    ----------
    root, subject
        As :func:`load_things_fmri`.

    Returns
    -------
    IngestPlan
        The store's coordinates and attrs, and its responses as blocks read on demand
        (``plan.load()`` is ``load_things_fmri(...)``; ``neuroalign ingest`` streams the blocks).
    """
    files = find_things_fmri_files(root, subject)
    path = files["responses"]
    n = subject if isinstance(subject, int) else int(re.sub(r"\D", "", str(subject)))
    sub = f"sub-{n:02d}"
    table = _ResponseTable(path)
    sp, vp = files["stimuli"], files["voxels"]
    stim = read_table(sp, "THINGS-fMRI stimulus metadata",
                      required=["trial_type", "session", "run", "trial_id", "stimulus"])
    vox = read_table(vp, "THINGS-fMRI voxel metadata",
                     required=["voxel_id", "voxel_x", "voxel_y", "voxel_z"])
    # -- presentations: one per row of the stimulus metadata, in trial_id order --------------
    trial_id = int_column(stim, "trial_id", sp, minimum=0)
    ids, counts = np.unique(trial_id, return_counts=True)
    if (counts > 1).any():
        dup = int(ids[counts > 1][0])
        lines = np.flatnonzero(trial_id == dup) + 2
        raise DataFormatError(
            f"{sp}: trial_id {dup} appears on lines {format_list(lines.tolist())}; expected one "
            "row per trial."
        )
    missing = [int(t) for t in trial_id if int(t) not in table.trials]
    if missing:
        raise DataFormatError(
            f"{sp}: trial_id(s) {format_list(missing, limit=5)} have no column in "
            f"{path.name} ({len(table.trials)} trial columns)."
        )
    bad = sorted(set(stim.trial_type.to_numpy().astype(str)) - {"train", "test"})
    if bad:
        raise DataFormatError(
            f"{sp}: trial_type values {format_list(bad)}, expected only 'train' and 'test' "
            "(catch trials are excluded from the table format)."
        )
    session = int_column(stim, "session", sp, minimum=1)
    run = int_column(stim, "run", sp, minimum=1)
    if stim.stimulus.isna().any():
        line = int(np.flatnonzero(stim.stimulus.isna())[0]) + 2
        raise DataFormatError(f"{sp}: column 'stimulus' is empty on line {line}; expected an image file name.")
    order = np.argsort(trial_id, kind="stable")
    stim = stim.iloc[order].reset_index(drop=True)
    trial_id, session, run = trial_id[order], session[order], run[order]
    stim_ids = np.array([f"things-{Path(str(s)).stem}" for s in stim.stimulus])
    split = stim.trial_type.to_numpy().astype(str)
    both = sorted(set(stim_ids[split == "train"]) & set(stim_ids[split == "test"]))
    if both:
        raise DataFormatError(
            f"{sp}: stimulus {both[0][len('things-'):]!r} is in both the train and the test "
            "trials; expected disjoint splits."
        )
    # -- neuroids: the voxel metadata's order, matched to the table's rows by voxel_id ------
    voxel_id = int_column(vox, "voxel_id", vp)
    u, c = np.unique(voxel_id, return_counts=True)
    if (c > 1).any():
        raise DataFormatError(f"{vp}: voxel_id {int(u[c > 1][0])} appears more than once; expected one row per voxel.")
    table_ids_f = table.read(["voxel_id"])[:, 0]
    if not np.all(np.isfinite(table_ids_f) & (table_ids_f == np.round(table_ids_f))):
        raise DataFormatError(f"{path}: column 'voxel_id' holds non-integer values; expected voxel ids.")
    table_ids = table_ids_f.astype(np.int64)
    u, c = np.unique(table_ids, return_counts=True)
    if (c > 1).any():
        raise DataFormatError(f"{path}: voxel_id {int(u[c > 1][0])} appears more than once; expected one row per voxel.")
    if len(vox) != len(table_ids) or set(voxel_id.tolist()) != set(table_ids.tolist()):
        raise DataFormatError(
            f"{vp}: {len(vox)} voxels, but {path.name} has {len(table_ids)}; expected the "
            "same voxel_id values."
        )
    row_of = {int(v): i for i, v in enumerate(table_ids)}
    rows = np.array([row_of[int(v)] for v in voxel_id])
    ijk = [int_column(vox, c, vp) for c in ("voxel_x", "voxel_y", "voxel_z")]
    coords = {
        "stimulus_id": ("presentation", stim_ids),
        "repetition": ("presentation", repetition_index(stim_ids)),
        "session": ("presentation", session),
        "run": ("presentation", run),
        "trial": ("presentation", trial_id),
        "split": ("presentation", split),
        "image_file": ("presentation", stim.stimulus.to_numpy().astype(str)),
        "neuroid_id": ("neuroid", np.array([f"{sub}_{v}" for v in voxel_id])),
        "subject": ("neuroid", np.array([sub] * len(vox))),
        "voxel_id": ("neuroid", voxel_id),
        "i": ("neuroid", ijk[0]),
        "j": ("neuroid", ijk[1]),
        "k": ("neuroid", ijk[2]),
    }
    if "concept" in stim.columns:
        coords["concept"] = ("presentation", stim.concept.to_numpy().astype(str))
    for col in vox.columns:
        if col in _NON_ROI or col.startswith(_NON_ROI_PREFIX):
            continue
        v = vox[col].to_numpy()
        if v.dtype.kind in "biuf" and np.isin(v, (0, 1)).all():
            coords[f"roi_{col}"] = ("neuroid", v.astype(bool))
    data_vars = {}
    for col, name in (("nc_testset", "noise_ceiling"), ("nc_singletrial", "noise_ceiling_singletrial")):
        if col in vox.columns:
            import pandas as pd

            vals = pd.to_numeric(vox[col], errors="coerce")
            bad = vals.isna() & vox[col].notna()
            if bad.any():
                raise DataFormatError(
                    f"{vp}: column {col!r} holds {vox[col][bad].iloc[0]!r} on line "
                    f"{int(np.flatnonzero(bad)[0]) + 2}; expected numbers (or n/a)."
                )
            data_vars[name] = ("neuroid", vals.to_numpy(dtype=np.float32))
    attrs = {
        "dataset": "things-fmri", "space": "T1w", "units": "single-trial betas (a.u.)",
        "schema_version": SCHEMA_VERSION, "subject": sub,
        "source": {"files": [str(p) for p in files.values()]},
    }
    per = max(1, min(len(trial_id), _BLOCK_BYTES // max(8 * table.n_rows, 1)))
    blocks = []
    for start in range(0, len(trial_id), per):
        labels = [int(t) for t in trial_id[start : start + per]]

        def read(labels=labels):
            return table.read(labels)[rows].T.astype(np.float32)

        blocks.append(Block(f"{path.name}[trials {labels[0]}..{labels[-1]}]", start,
                            start + len(labels), read, files=(path,)))
    fp = {"adapter": "things-fmri", "files": file_fingerprint(files.values())}
    return IngestPlan(xr.Dataset(data_vars, coords=coords, attrs=attrs), ("presentation", "neuroid"),
                      blocks, fp, desc=f"THINGS-fMRI {sub}")


def load_things_fmri(root: str | os.PathLike, subject: int | str) -> xr.Dataset:
    """Load THINGS-fMRI single-trial responses of one subject as a store.

    Parameters
    ----------
    root : path-like
        Folder with the table-format files (see :func:`find_things_fmri_files`).
    subject : int or str
        1..3 or ``"sub-01"``.

    Returns
    -------
    xr.Dataset
        Store with ``responses`` of dims ('presentation', 'neuroid'), presentations in
        ``trial_id`` order (catch trials are not in the table). ``stimulus_id`` is
        ``things-<file stem>``; ``split`` from ``trial_type``; ``session``, ``run``,
        ``concept``. Neuroids are the voxels in the voxel metadata's order with ``i, j, k``
        (voxel_x/y/z), one ``roi_<column>`` per 0/1 ROI column of the voxel metadata, and
        variables ``noise_ceiling`` (``nc_testset``) and ``noise_ceiling_singletrial``.

    Notes
    -----
    The response table is read with h5py (no PyTables needed); its column labels, which
    pandas stores pickled, are decoded with a restricted unpickler, so a crafted file
    raises :class:`~neuroalign.exceptions.UnsafeFileError` instead of running code.
    """
    return things_fmri_plan(root, subject).load()
