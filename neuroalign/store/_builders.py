"""Bring your own data: a store from plain arrays (:func:`from_arrays`).

:func:`~neuroalign.store.from_nifti` and :func:`~neuroalign.store.from_epochs` read NIfTI
betas and MNE epochs and end here, so every builder checks its input the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign._validation import format_list
from neuroalign.exceptions import (
    DataFormatError,
    DimensionError,
    SplitLeakageError,
    StimulusMismatchError,
)
from neuroalign.store._builders_coords import (
    _hemispheres,
    _per_neuroid,
    _roi_coords,
    _unique_or_raise,
    _volume_coords,
)
from neuroalign.store._builders_images import record_images
from neuroalign.store._schema import ALLOW_SPLIT_OVERLAP, SCHEMA_VERSION, check_store

__all__ = ["from_arrays", "stimulus_ids_of", "repetitions_in_order"]

log = get_logger(__name__)

def _positions(mask: np.ndarray, limit: int = 5) -> str:
    return format_list(np.flatnonzero(mask).tolist(), limit=limit)


def stimulus_ids_of(values: Any, *, name: str, func: str, drop_missing: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Stimulus ids as str, and the mask of rows kept.

    str and int ids are taken as they are (``12`` -> ``"12"``). Float ids are refused
    unless every value is a whole number (a column of ints that pandas turned to float
    because some rows are ``n/a``). Missing ids (None, NaN, ``""``) are an error, or, with
    ``drop_missing``, rows to leave out.
    """
    arr = np.asarray(values, dtype=object).ravel() if not isinstance(values, np.ndarray) \
        else values.ravel()
    if arr.dtype.kind == "f":
        arr = arr.astype(object)
    missing = np.array([v is None or (isinstance(v, float | np.floating) and np.isnan(v))
                        or (isinstance(v, str) and v.strip() == "") for v in arr], dtype=bool)
    if missing.any() and not drop_missing:
        raise DataFormatError(
            f"Invalid value for {name!r} in {func}(): {int(missing.sum())} missing stimulus "
            f"id(s) (None, NaN or empty) at position(s) {_positions(missing)}. Expected one "
            "id per trial."
        )
    out = []
    for v in arr[~missing]:
        if isinstance(v, bool | np.bool_):
            raise DataFormatError(
                f"Invalid value for {name!r} in {func}(): {v!r} (a bool). Expected str or int "
                "stimulus ids."
            )
        if isinstance(v, float | np.floating):
            if not float(v).is_integer():
                raise DataFormatError(
                    f"Invalid value for {name!r} in {func}(): {v!r}, a non-integer number. "
                    "Expected str or int stimulus ids."
                )
            v = int(v)
        if isinstance(v, int | np.integer):
            v = int(v)
        elif not isinstance(v, str | np.str_):
            raise DataFormatError(
                f"Invalid value for {name!r} in {func}(): {v!r} ({type(v).__name__}). "
                "Expected str or int stimulus ids."
            )
        out.append(str(v))
    return np.array(out, dtype=str), ~missing


def _int_per_trial(values: Any, n: int, *, name: str, func: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise DimensionError(
            f"Invalid value for {name!r} in {func}(): shape {arr.shape!r}. Expected one value "
            f"per trial ({n},)."
        )
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    try:
        num = arr.astype(np.float64)
    except (TypeError, ValueError):
        num = np.full(n, np.nan)
    bad = ~np.isfinite(num) | (num != np.round(num))
    if bad.any():
        raise DataFormatError(
            f"Invalid value for {name!r} in {func}(): {format_list(arr[bad].tolist(), limit=5)} "
            f"at position(s) {_positions(bad)}. Expected whole numbers."
        )
    return num.astype(np.int64)


def repetitions_in_order(ids: Any, order: np.ndarray | None = None) -> np.ndarray:
    """0-based repetition of each row: how often its stimulus was shown before it.

    ``order`` gives the rows in presentation order (e.g. ``np.lexsort`` of session, run,
    trial; default: row order); the result is indexed like ``ids``. The one implementation
    used by the builders and every dataset adapter.
    """
    ids = np.asarray(ids)
    order = np.arange(len(ids)) if order is None else np.asarray(order)
    _, inverse = np.unique(ids[order], return_inverse=True)
    inverse = inverse.ravel()
    by_id = np.argsort(inverse, kind="stable")  # presentation order within each id
    sorted_inv = inverse[by_id]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_inv)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(by_id)]))
    rep_in_order = np.empty(len(ids), dtype=np.int64)
    rep_in_order[by_id] = np.arange(len(by_id)) - first
    rep = np.empty(len(ids), dtype=np.int64)
    rep[order] = rep_in_order
    return rep


def _presentation_order(n: int, timing: dict[str, np.ndarray], func: str) -> np.ndarray:
    """Rows in presentation order: by (session, run, trial) where given, else as given."""
    keys = [timing[k] for k in ("trial", "run", "session") if k in timing]
    if not keys:
        return np.arange(n)
    if "trial" in timing:
        stacked = np.stack([timing[k] for k in ("session", "run", "trial") if k in timing], axis=1)
        uniq, counts = np.unique(stacked, axis=0, return_counts=True)
        if (counts > 1).any():
            names = [k for k in ("session", "run", "trial") if k in timing]
            raise DataFormatError(
                f"Invalid value for 'trial' in {func}(): {int((counts > 1).sum())} "
                f"({', '.join(names)}) combination(s) occur more than once, e.g. "
                f"{tuple(int(x) for x in uniq[counts > 1][0])!r}. Expected each trial once, so "
                "that the order of presentations (and so each repetition) is defined."
            )
    return np.lexsort([np.arange(n), *keys])


def _split_of(ids: np.ndarray, split: Any, test: Any, func: str) -> np.ndarray:
    n = len(ids)
    if split is not None and test is not None:
        raise ValueError(
            f"{func}(): pass either 'split' or 'test', not both (got split={type(split).__name__}, "
            f"test={type(test).__name__})."
        )
    if test is not None:
        wanted, _ = stimulus_ids_of(test, name="test", func=func)
        found = np.isin(wanted, ids)
        if wanted.size and not found.any():
            raise StimulusMismatchError(
                f"Invalid value for 'test' in {func}(): none of its {wanted.size} stimulus ids "
                f"({format_list(wanted, limit=5)}) is among the trials' stimulus ids (e.g. "
                f"{format_list(np.unique(ids)[:5])})."
            )
        if not found.all():
            log.info("%s: %d of the %d test stimulus ids were not shown (e.g. %s)", func,
                     int((~found).sum()), wanted.size, format_list(wanted[~found], limit=3))
        return np.where(np.isin(ids, wanted), "test", "train")
    if split is None:
        return np.full(n, "train")
    if isinstance(split, str):
        out = np.full(n, split)
    elif isinstance(split, Mapping):
        table = {str(k): v for k, v in split.items()}
        absent = sorted(set(ids.tolist()) - set(table))
        if absent:
            raise StimulusMismatchError(
                f"Invalid value for 'split' in {func}(): no split for {len(absent)} stimulus "
                f"id(s) {format_list(absent, limit=5)}. Expected a split for every stimulus."
            )
        out = np.array([table[s] for s in ids.tolist()], dtype=object)
    else:
        out = np.asarray(split, dtype=object).ravel()
        if len(out) != n:
            raise DimensionError(
                f"Invalid value for 'split' in {func}(): {len(out)} values. Expected one per "
                f"trial ({n}), a mapping of stimulus id to split, or one of 'train', 'test'."
            )
    bad = ~np.isin(out.astype(str), ["train", "test"])
    if bad.any():
        raise DataFormatError(
            f"Invalid value for 'split' in {func}(): {format_list(np.unique(out[bad].astype(str)))}"
            f" (at trial(s) {_positions(bad)}). Expected 'train' or 'test'."
        )
    return out.astype(str)


def _responses(responses: Any, func: str) -> np.ndarray:
    arr = np.asarray(responses)
    if arr.ndim not in (2, 3):
        raise DimensionError(
            f"Invalid value for 'responses' in {func}(): shape {arr.shape!r}. Expected "
            "(n_trials, n_neuroids) or (n_trials, n_neuroids, n_times)."
        )
    if arr.dtype.kind in "iub":
        return arr.astype(np.float32)
    if arr.dtype.kind != "f":
        raise DataFormatError(
            f"Invalid value for 'responses' in {func}(): dtype {arr.dtype}. Expected numbers."
        )
    return arr


def from_arrays(
    responses: Any,
    stimulus_ids: Sequence[Any],
    *,
    split: str | Sequence[str] | Mapping[str, str] | None = None,
    test: Sequence[Any] | None = None,
    session: Sequence[int] | None = None,
    run: Sequence[int] | None = None,
    trial: Sequence[int] | None = None,
    neuroid_ids: Sequence[str] | None = None,
    subject: str = "sub-01",
    ijk: Any = None,
    affine: Any = None,
    volume_shape: Sequence[int] | None = None,
    vertices: Sequence[int] | None = None,
    hemisphere: Sequence[str] | None = None,
    sensors: Sequence[str] | None = None,
    times: Sequence[float] | None = None,
    rois: Mapping[str, Any] | None = None,
    images: Any = None,
    image_ids: Sequence[Any] | None = None,
    images_key: str = "imgBrick",
    write_images: str | os.PathLike | None = None,
    dataset: str = "custom",
    space: str | None = None,
    units: str = "a.u.",
    allow_split_overlap: bool = False,
    attrs: Mapping[str, Any] | None = None,
    _func: str = "from_arrays",
) -> xr.Dataset:
    """A store from arrays: responses per trial and the stimulus shown on each trial.

    Parameters
    ----------
    responses : array (n_trials, n_neuroids) or (n_trials, n_neuroids, n_times)
        E.g. GLM betas, one row per trial. Integer data become float32.
    stimulus_ids : sequence of str or int, (n_trials,)
        The stimulus of each trial; a stimulus shown several times appears several times.
        Joined to features by these ids, never by row position.
    split, test :
        Which trials are held out, one of: ``split`` per trial (``"train"``/``"test"``),
        a mapping ``{stimulus_id: split}``, or one split for all; or ``test``, the stimulus
        ids of the test set. Default: every trial ``"train"``. A stimulus with trials in
        both splits raises :class:`~neuroalign.exceptions.SplitLeakageError` unless
        ``allow_split_overlap``.
    session, run, trial : sequence of int, optional
        Per trial. ``repetition`` (0-based) counts earlier showings of the same stimulus in
        the order of (session, run, trial) where given, else in row order.
    neuroid_ids : sequence of str, optional
        Unique per neuroid; default ``{subject}_{i}_{j}_{k}``, ``{subject}_{hemi}_{vertex}``,
        ``{subject}_{sensor}`` or ``{subject}_{n:06d}``.
    subject : str
    ijk, affine, volume_shape :
        Volumes: integer voxel indices ``(n_neuroids, 3)`` in the NIfTI's grid, its 4x4
        affine and its (X, Y, Z) shape; maps are drawn (and projected) from them.
    vertices, hemisphere :
        Surfaces: vertex index and hemisphere (``lh``/``rh``) per neuroid.
    sensors : sequence of str, optional
        MEG/EEG channel names per neuroid.
    times : sequence of float, optional
        Seconds from stimulus onset, required for 3-d ``responses``.
    rois : mapping {name: bool array (n_neuroids,)}, optional
        Each becomes a ``roi_<name>`` coordinate; a neuroid may be in several.
    images, image_ids, images_key, write_images :
        The stimuli, recorded as the store's ``stimulus_set`` (for
        ``StimulusSet.from_store`` and feature extraction): a folder whose files are named
        by stimulus id (``<id>.png``, ``cat/001.jpg`` for id ``cat/001``); an HDF5 file with
        a uint8 brick ``(N, H, W, 3)`` at ``images_key`` whose rows are ``image_ids``; or
        such an array with ``image_ids``, written to the new HDF5 file ``write_images``
        (nothing is written unless you name that file).
    dataset, space, units : str
        Recorded as attrs. ``space`` defaults to ``"volume"``, ``"surface"``, ``"sensor"``
        or ``"none"``; name the template (e.g. ``"MNI152NLin2009cAsym"``) when the data are
        in one, so that maps can be projected to fsaverage.
    allow_split_overlap : bool
    attrs : mapping, optional
        More attrs (e.g. ``source``).

    Returns
    -------
    xr.Dataset
        A trial-level store that passes :func:`~neuroalign.store.check_store`.

    Examples
    --------
    >>> import numpy as np
    >>> store = from_arrays(np.zeros((4, 3)), ["a", "b", "a", "c"], test=["c"])
    >>> store["repetition"].values.tolist(), store["split"].values.tolist()
    ([0, 0, 1, 0], ['train', 'train', 'train', 'test'])
    """
    func = _func
    data = _responses(responses, func)
    n_trials, n_neuroids = data.shape[:2]
    ids, _ = stimulus_ids_of(stimulus_ids, name="stimulus_ids", func=func)
    if len(ids) != n_trials:
        raise DimensionError(
            f"Invalid value for 'stimulus_ids' in {func}(): {len(ids)} ids, but 'responses' has "
            f"{n_trials} trials (shape {data.shape!r}). Expected one id per trial."
        )
    timing = {name: _int_per_trial(v, n_trials, name=name, func=func)
              for name, v in (("session", session), ("run", run), ("trial", trial)) if v is not None}
    order = _presentation_order(n_trials, timing, func)
    split_arr = _split_of(ids, split, test, func)
    if not allow_split_overlap:
        both = np.intersect1d(ids[split_arr == "test"], ids[split_arr == "train"])
        if both.size:
            raise SplitLeakageError(
                f"Invalid value for 'split' in {func}(): {both.size} stimulus id(s) have trials in "
                f"both 'train' and 'test': {format_list(both, limit=5)}. Give every trial of a "
                "stimulus the same split, or pass allow_split_overlap=True if this is intended."
            )
    coords: dict[str, Any] = {
        "stimulus_id": ("presentation", ids),
        "repetition": ("presentation", repetitions_in_order(ids, order)),
        **{k: ("presentation", v) for k, v in timing.items()},
        "split": ("presentation", split_arr),
    }
    extra_attrs: dict[str, Any] = {}
    neuroid: dict[str, np.ndarray] = {}
    if ijk is not None:
        vol = _volume_coords(ijk, affine, volume_shape, n_neuroids, func)
        extra_attrs.update(affine=vol.pop("affine"), volume_shape=vol.pop("volume_shape"))
        neuroid.update(vol)
    elif affine is not None or volume_shape is not None:
        raise ValueError(f"{func}(): 'affine' and 'volume_shape' need 'ijk' (the voxel of each neuroid).")
    if hemisphere is not None:
        neuroid["hemisphere"] = _hemispheres(hemisphere, n_neuroids, func)
    if vertices is not None:
        if hemisphere is None:
            raise ValueError(f"{func}(): 'vertices' needs 'hemisphere' (lh/rh of each vertex).")
        vert = _per_neuroid(vertices, n_neuroids, name="vertices", func=func)
        if vert.dtype.kind not in "iu" or (vert < 0).any():
            raise DataFormatError(
                f"Invalid value for 'vertices' in {func}(): dtype {vert.dtype}, min "
                f"{vert.min() if vert.size else None!r}. Expected non-negative integers."
            )
        neuroid["vertex"] = vert.astype(np.int64)
        _unique_or_raise(np.array([f"{h}_{v}" for h, v in zip(neuroid["hemisphere"], vert, strict=True)]),
                         name="vertices", func=func)
    if sensors is not None:
        sens = _per_neuroid(sensors, n_neuroids, name="sensors", func=func).astype(str)
        _unique_or_raise(sens, name="sensors", func=func)
        neuroid["sensor"] = sens
    if not isinstance(subject, str) or not subject:
        raise ValueError(f"Invalid value for 'subject' in {func}(): {subject!r}. Expected a non-empty str.")
    if neuroid_ids is None:
        if "i" in neuroid:
            nid = [f"{subject}_{a}_{b}_{c}" for a, b, c in zip(neuroid["i"], neuroid["j"], neuroid["k"], strict=True)]
        elif "vertex" in neuroid:
            nid = [f"{subject}_{h}_{v}" for h, v in zip(neuroid["hemisphere"], neuroid["vertex"], strict=True)]
        elif "sensor" in neuroid:
            nid = [f"{subject}_{s}" for s in neuroid["sensor"]]
        else:
            nid = [f"{subject}_{n:06d}" for n in range(n_neuroids)]
        nid_arr = np.array(nid, dtype=str)
    else:
        nid_arr, _ = stimulus_ids_of(_per_neuroid(neuroid_ids, n_neuroids, name="neuroid_ids", func=func),
                                     name="neuroid_ids", func=func)
        _unique_or_raise(nid_arr, name="neuroid_ids", func=func)
    coords["neuroid_id"] = ("neuroid", nid_arr)
    coords["subject"] = ("neuroid", np.full(n_neuroids, subject))
    coords.update({k: ("neuroid", v) for k, v in neuroid.items()})
    coords.update({k: ("neuroid", v) for k, v in _roi_coords(rois, n_neuroids, func).items()})
    dims: tuple[str, ...] = ("presentation", "neuroid")
    if data.ndim == 3:
        if times is None:
            raise ValueError(
                f"{func}(): 'responses' has a time axis ({data.shape[2]} samples); pass 'times' "
                "(seconds from stimulus onset)."
            )
        t = np.asarray(times, dtype=float)
        if t.shape != (data.shape[2],) or not np.isfinite(t).all() or (np.diff(t) <= 0).any():
            raise DataFormatError(
                f"Invalid value for 'times' in {func}(): shape {t.shape!r}. Expected "
                f"{data.shape[2]} finite, increasing times in seconds."
            )
        coords["time"] = ("time", t)
        dims = (*dims, "time")
    elif times is not None:
        raise DimensionError(f"{func}(): 'times' given, but 'responses' has no time axis (shape {data.shape!r}).")
    if space is None:
        space = ("volume" if "i" in neuroid else "surface" if "vertex" in neuroid
                 else "sensor" if "sensor" in neuroid or data.ndim == 3 else "none")
    store_attrs: dict[str, Any] = {
        "dataset": str(dataset), "space": str(space), "units": str(units),
        "schema_version": SCHEMA_VERSION, "subject": subject, **extra_attrs,
    }
    if allow_split_overlap:
        store_attrs[ALLOW_SPLIT_OVERLAP] = True
    store_attrs.update(dict(attrs or {}))
    if images is not None:
        image_coords, spec = record_images(images, ids, image_ids=image_ids, key=images_key,
                                           write=write_images, func=func)
        coords.update({k: ("presentation", v) for k, v in image_coords.items()})
        store_attrs["stimulus_set"] = spec
    elif image_ids is not None or write_images is not None:
        raise ValueError(f"{func}(): 'image_ids' and 'write_images' go with 'images'; got no images.")
    ds = xr.Dataset({"responses": (dims, data)}, coords=coords, attrs=store_attrs)
    return check_store(ds)
