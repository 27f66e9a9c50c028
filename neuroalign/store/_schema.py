"""The stimulus-response schema (docs/design.md, "The store") and its one gate, :func:`check_store`."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError, DimensionError, SplitLeakageError

__all__ = [
    "SCHEMA_VERSION",
    "RESPONSE_VAR",
    "ROI_PREFIX",
    "TRIAL_DIM",
    "STIMULUS_DIM",
    "NEUROID_DIM",
    "TIME_DIM",
    "SPLITS",
    "ALLOW_SPLIT_OVERLAP",
    "check_store",
    "split_overlap",
    "split_overlap_allowed",
    "is_trial_level",
    "sample_dim",
]

SCHEMA_VERSION = "1.0"
RESPONSE_VAR = "responses"
ROI_PREFIX = "roi_"

TRIAL_DIM = "presentation"  # one row per presentation (trial-level store)
STIMULUS_DIM = "stimulus"  # one row per stimulus (after average_repetitions)
NEUROID_DIM = "neuroid"
#: Bytes per chunk of responses on disk: stores (``save_store``) and the ingest write chunks of
#: about this many bytes along ``neuroid`` (the neuroid screen of a store left on disk reads
#: one chunk at a time).
CHUNK_BYTES = 32 * 2**20
TIME_DIM = "time"
SPLITS = ("train", "test")
# store attribute: True lets one stimulus have presentations in both splits (opt-out of
# the leakage check); saved with the store, shown by summary() / ``neuroalign info``
ALLOW_SPLIT_OVERLAP = "allow_split_overlap"

REQUIRED_ATTRS = ("dataset", "space", "units", "schema_version")

# coordinate name -> (dim, dtype kind(s), required)
# kinds: 'U' str, 'i' int, 'f' float, 'b' bool
_SAMPLE_COORDS: dict[str, tuple[str, bool]] = {
    "stimulus_id": ("U", True),
    "split": ("U", True),
}
_TRIAL_COORDS: dict[str, tuple[str, bool]] = {
    "repetition": ("iu", True),
    "session": ("iu", False),
    "run": ("iu", False),
    "trial": ("iu", False),
}
_STIMULUS_COORDS: dict[str, tuple[str, bool]] = {
    "n_repetitions": ("iu", False),
}
_NEUROID_COORDS: dict[str, tuple[str, bool]] = {
    "neuroid_id": ("U", True),
    "subject": ("U", True),
    "hemisphere": ("U", False),
    "i": ("iu", False),
    "j": ("iu", False),
    "k": ("iu", False),
    "vertex": ("iu", False),
    "sensor": ("U", False),
}
_KIND_NAMES = {"U": "str", "iu": "int", "f": "float", "b": "bool"}


def sample_dim(ds: xr.Dataset) -> str:
    """The sample dim of a store.

    Parameters
    ----------
    ds : xr.Dataset
        A store.

    Returns
    -------
    str
        ``'presentation'`` for a trial-level store, ``'stimulus'`` for an averaged one.
    """
    dims = ds[RESPONSE_VAR].dims if RESPONSE_VAR in ds else tuple(ds.dims)
    return TRIAL_DIM if TRIAL_DIM in dims else STIMULUS_DIM


def is_trial_level(ds: xr.Dataset) -> bool:
    """Whether ``ds`` holds one row per presentation.

    Parameters
    ----------
    ds : xr.Dataset
        A store.

    Returns
    -------
    bool
        True for a trial-level store, False after repetition averaging.
    """
    return sample_dim(ds) == TRIAL_DIM


def split_overlap(ds: xr.Dataset) -> np.ndarray:
    """Stimulus ids (sorted) with presentations in more than one split; empty if none.

    Only a trial-level store can have such stimuli (an averaged one has one row each).

    Parameters
    ----------
    ds : xr.Dataset
        A store.

    Returns
    -------
    ndarray of str
        The sorted stimulus ids in more than one split.
    """
    if sample_dim(ds) != TRIAL_DIM or "split" not in ds.coords:
        return np.array([], dtype=str)
    ids = np.asarray(ds.coords["stimulus_id"].values)
    split = np.asarray(ds.coords["split"].values)
    if ids.size == 0:
        return ids
    uniq, codes = np.unique(ids, return_inverse=True)
    codes = codes.ravel()
    first = split[np.unique(codes, return_index=True)[1]]  # split of the first presentation
    mixed = np.zeros(len(uniq), dtype=bool)
    np.logical_or.at(mixed, codes, split != first[codes])
    return uniq[mixed]


def split_overlap_allowed(ds: xr.Dataset) -> bool:
    """Whether the store opts out of the split-leakage check (attr ``allow_split_overlap``)."""
    value = ds.attrs.get(ALLOW_SPLIT_OVERLAP, False)
    if not isinstance(value, (bool, np.bool_)):
        raise DataFormatError(
            f"Store attribute {ALLOW_SPLIT_OVERLAP!r} is {value!r}; expected True or False."
        )
    return bool(value)


def _not_str(values: np.ndarray) -> np.ndarray:
    """Positions of the values of an object array that are not ``str`` (every value is
    looked at: pandas' ``infer_dtype`` in C, about 2 ms for 300,000 neuroid ids; the
    positions are only searched for when one is found)."""
    from pandas.api.types import infer_dtype

    flat = values.ravel()
    if flat.size == 0 or infer_dtype(flat, skipna=False) == "string":
        return np.array([], dtype=np.intp)
    is_str = np.frompyfunc(lambda v: isinstance(v, str), 1, 1)(flat).astype(bool)
    return np.flatnonzero(~is_str)


def _check_coords(ds: xr.Dataset, spec: dict[str, tuple[str, bool]], dim: str) -> None:
    present = sorted(name for name, c in ds.coords.items() if c.dims == (dim,))
    for name, (kinds, required) in spec.items():
        if name not in ds.coords:
            if required:
                raise DimensionError(
                    f"Store is missing the coordinate {name!r} on dim {dim!r}. "
                    f"Coordinates present on {dim!r}: {format_list(present) or 'none'}."
                )
            continue
        coord = ds.coords[name]
        if coord.dims != (dim,):
            raise DimensionError(
                f"Store coordinate {name!r} has dims {coord.dims!r}, expected ({dim!r},)."
            )
        values = np.asarray(coord.values)
        kind = values.dtype.kind
        if kind not in (kinds + "O" if kinds == "U" else kinds):
            raise DataFormatError(
                f"Store coordinate {name!r} has dtype {coord.dtype!s}, "
                f"expected {_KIND_NAMES[kinds]}."
            )
        bad = _not_str(values) if kind == "O" else ()
        if len(bad):
            shown = ", ".join(f"{int(i)}: {values[i]!r}" for i in bad[:5])
            raise DataFormatError(
                f"Store coordinate {name!r} has dtype object, expected str: {len(bad)} of "
                f"its {values.size} values on {dim!r} {'is' if len(bad) == 1 else 'are'} not str, "
                f"at positions {shown}"
                f"{', ...' if len(bad) > 5 else ''}. A missing value (None, or NaN from "
                f"pandas) is no {name}: drop those rows or give them a label."
            )


def check_store(ds: xr.Dataset) -> xr.Dataset:
    """Validate ``ds`` against the stimulus-response schema; return it unchanged.

    This is the one schema gate: every adapter's output and every method's input passes
    through it.

    Parameters
    ----------
    ds : xr.Dataset
        A store: variable ``responses`` with dims ``('presentation', 'neuroid')``
        (fMRI), ``('presentation', 'neuroid', 'time')`` (MEG/EEG), or the same with
        ``'stimulus'`` in place of ``'presentation'`` after repetition averaging.

    Returns
    -------
    xr.Dataset
        ``ds`` itself, for chaining.

    Raises
    ------
    DimensionError
        A dimension or coordinate is missing or has the wrong dims; the message lists what
        is missing and what is present.
    DataFormatError
        A variable or coordinate has the wrong dtype or values (e.g. ``split`` not in
        ``{'train', 'test'}``, duplicated ``neuroid_id``), or a required attribute is missing.
    SplitLeakageError
        A stimulus has presentations in both ``train`` and ``test`` (trained and tested on
        the same image). A store that means it sets the attribute
        ``allow_split_overlap = True``: it is saved with the store and shown by
        :func:`~neuroalign.store.summary`; split consumers then take each split's
        presentations as they are.
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"check_store() expects an xarray.Dataset, got {type(ds).__name__}."
        )
    if RESPONSE_VAR not in ds.data_vars:
        raise DimensionError(
            f"Store has no data variable {RESPONSE_VAR!r}. "
            f"Variables present: {format_list(ds.data_vars) or 'none'}."
        )
    resp = ds[RESPONSE_VAR]
    dims = resp.dims
    valid = [
        (TRIAL_DIM, NEUROID_DIM),
        (TRIAL_DIM, NEUROID_DIM, TIME_DIM),
        (STIMULUS_DIM, NEUROID_DIM),
        (STIMULUS_DIM, NEUROID_DIM, TIME_DIM),
    ]
    if dims not in valid:
        raise DimensionError(
            f"Store variable {RESPONSE_VAR!r} has dims {dims!r}. Expected one of "
            + ", ".join(repr(v) for v in valid)
            + "."
        )
    if resp.dtype.kind != "f":
        raise DataFormatError(
            f"Store variable {RESPONSE_VAR!r} has dtype {resp.dtype!s}, expected a float dtype."
        )
    sdim = dims[0]
    _check_coords(ds, _SAMPLE_COORDS, sdim)
    _check_coords(ds, _TRIAL_COORDS if sdim == TRIAL_DIM else _STIMULUS_COORDS, sdim)
    _check_coords(ds, _NEUROID_COORDS, NEUROID_DIM)

    splits = set(np.unique(ds.coords["split"].values).tolist())
    if not splits <= set(SPLITS):
        raise DataFormatError(
            f"Store coordinate 'split' has values {format_list(sorted(splits))}, "
            f"expected only {format_list(SPLITS)}."
        )
    allowed = split_overlap_allowed(ds)
    if sdim == TRIAL_DIM:
        reps = np.asarray(ds.coords["repetition"].values)
        if reps.size and reps.min() < 0:
            raise DataFormatError(
                f"Store coordinate 'repetition' has negative values (min {int(reps.min())}); "
                "repetitions are 0-based."
            )
        leaked = [] if allowed else split_overlap(ds)
        if len(leaked):
            raise SplitLeakageError(
                f"{len(leaked)} stimuli have presentations in both 'train' and 'test': "
                f"{format_list(leaked, limit=5)}. A model would be trained and tested on the "
                "same images. Give every presentation of a stimulus the same 'split', or set "
                f"ds.attrs[{ALLOW_SPLIT_OVERLAP!r}] = True if this is intended."
            )
    else:
        ids = ds.coords["stimulus_id"].values
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise DataFormatError(
                f"Store with dim {STIMULUS_DIM!r} must hold one row per stimulus, but "
                f"stimulus_id repeats: {format_list(uniq[counts > 1], limit=5)}. "
                "Use dim 'presentation' for trial-level data."
            )
    nid = ds.coords["neuroid_id"].values
    uniq, counts = np.unique(nid, return_counts=True)
    if (counts > 1).any():
        raise DataFormatError(
            f"Store coordinate 'neuroid_id' has duplicates: {format_list(uniq[counts > 1], limit=5)}."
        )

    for name, coord in ds.coords.items():
        if str(name).startswith(ROI_PREFIX):
            if coord.dims != (NEUROID_DIM,) or coord.dtype.kind != "b":
                raise DataFormatError(
                    f"ROI coordinate {name!r} must be bool on dim {NEUROID_DIM!r}, "
                    f"got dtype {coord.dtype!s} on dims {coord.dims!r}."
                )
    if TIME_DIM in dims:
        if TIME_DIM not in ds.coords:
            raise DimensionError(
                f"Store has dim {TIME_DIM!r} but no coordinate {TIME_DIM!r} "
                "(seconds from stimulus onset)."
            )
        if ds.coords[TIME_DIM].dtype.kind != "f":
            raise DataFormatError(
                f"Store coordinate {TIME_DIM!r} has dtype {ds.coords[TIME_DIM].dtype!s}, "
                "expected float seconds."
            )
    for var in ("ncsnr", "noise_ceiling"):
        if var in ds.data_vars:
            v = ds[var]
            if NEUROID_DIM not in v.dims or v.dtype.kind != "f":
                raise DataFormatError(
                    f"Store variable {var!r} must be float on dim {NEUROID_DIM!r}, "
                    f"got dtype {v.dtype!s} on dims {v.dims!r}."
                )
    missing = [a for a in REQUIRED_ATTRS if a not in ds.attrs]
    if missing:
        raise DataFormatError(
            f"Store is missing the attribute(s) {format_list(missing)}. "
            f"Attributes present: {format_list(sorted(ds.attrs)) or 'none'}."
        )
    return ds
