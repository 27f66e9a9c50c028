"""Input checks shared by the mapping functions: score arrays, ROI masks, stimulus joins."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.exceptions import DimensionError, StimulusMismatchError
from neuroalign.store import ROI_PREFIX, average_repetitions, check_store, is_trial_level

__all__ = ["as_scores", "roi_masks", "averaged_responses", "align_stimuli"]


def as_scores(sweep: Any, *, func: str, required=("layer", "neuroid")) -> xr.DataArray:
    """The ``score`` DataArray of a LayerSweep-like result, checked for its dims."""
    obj = sweep
    if not isinstance(obj, xr.DataArray | xr.Dataset):
        # fitted attributes first: an estimator's ``score`` is a method, not scores
        for attr in ("scores_", "result_", "score", "scores", "result"):
            value = getattr(obj, attr, None)
            if isinstance(value, xr.DataArray | xr.Dataset):
                obj = value
                break
    if isinstance(obj, xr.Dataset):
        if "score" not in obj.data_vars:
            raise DimensionError(
                f"{func}(): the Dataset has no variable 'score'; it has "
                f"{format_list(list(obj.data_vars))}. Expected a LayerSweep result with "
                "'score' on dims ('layer', 'neuroid')."
            )
        obj = obj["score"]
    if not isinstance(obj, xr.DataArray):
        raise TypeError(
            f"{func}(): expected a DataArray or Dataset of scores (or an object with a "
            f"'score' attribute), got {type(sweep).__name__!r}."
        )
    missing = [d for d in required if d not in obj.dims]
    if missing:
        raise DimensionError(
            f"{func}(): scores have dims {obj.dims!r}, missing {format_list(missing)}. "
            f"Expected dims {tuple(required)!r} (optionally with 'time')."
        )
    return _model_from_layer_names(obj)


def _model_from_layer_names(scores: xr.DataArray) -> xr.DataArray:
    """A LayerSweep over several models names its layers ``"model/layer"``; give such
    scores a ``model`` coordinate on ``layer`` so depths are normalised within each model."""
    if "layer" not in scores.coords or ("model" in scores.coords and scores["model"].dims == ("layer",)):
        return scores
    names = np.asarray(scores["layer"].values).astype(str)
    if not all("/" in n for n in names):
        return scores
    return scores.assign_coords(model=("layer", np.array([n.split("/", 1)[0] for n in names])))


def _store_roi_names(ds) -> list[str]:
    return [str(c)[len(ROI_PREFIX):] for c in ds.coords if str(c).startswith(ROI_PREFIX)]


def roi_masks(
    obj: xr.DataArray | xr.Dataset, store: xr.Dataset | None = None, rois=None, *, func: str
) -> dict[str, np.ndarray]:
    """Boolean mask over ``obj``'s neuroids for each ROI (from its own coords or the store's)."""
    source = obj
    if store is not None:
        ids = obj["neuroid_id"].values if "neuroid_id" in obj.coords else None
        sid = store["neuroid_id"].values
        if ids is None:
            if obj.sizes["neuroid"] != store.sizes["neuroid"]:
                raise DimensionError(
                    f"{func}(): {obj.sizes['neuroid']} neuroids without 'neuroid_id' cannot be "
                    f"matched to the store's {store.sizes['neuroid']} neuroids."
                )
            pos = np.arange(len(sid))
        else:
            where = {v: n for n, v in enumerate(sid)}
            unknown = [v for v in ids if v not in where]
            if unknown:
                raise KeyError(
                    f"{func}(): neuroids {format_list(unknown, limit=5)} are not in the store."
                )
            pos = np.array([where[v] for v in ids], dtype=int)
        names = _store_roi_names(store)
        masks_all = {n: np.asarray(store[ROI_PREFIX + n].values, bool)[pos] for n in names}
    else:
        names = _store_roi_names(source)
        masks_all = {n: np.asarray(source[ROI_PREFIX + n].values, bool) for n in names}
    if rois is None:
        rois = names
    elif isinstance(rois, str):
        rois = [rois]
    unknown = [r for r in rois if r not in masks_all]
    if unknown:
        raise KeyError(
            f"{func}(): unknown ROI(s) {format_list(unknown)}. Available: {format_list(names)}."
        )
    out = {r: masks_all[r] for r in rois}
    empty = [r for r, m in out.items() if not m.any()]
    if empty:
        raise ValueError(f"{func}(): ROI(s) {format_list(empty)} hold no neuroids.")
    if not out:
        raise ValueError(
            f"{func}(): no ROIs found; expected 'roi_*' coordinates on the neuroids "
            "(of the scores or of the store)."
        )
    return out


def averaged_responses(store: xr.Dataset, *, func: str) -> xr.DataArray:
    """``responses`` with one row per stimulus (repetitions averaged when trial-level)."""
    check_store(store)
    if is_trial_level(store):
        store = average_repetitions(store)
    return store["responses"]


def align_stimuli(ids_left, ids_right, *, left: str, right: str, func: str) -> np.ndarray:
    """Positions in ``ids_left`` of each id of ``ids_right``; the two sets must be equal."""
    ids_left = np.asarray(ids_left).astype(str)
    ids_right = np.asarray(ids_right).astype(str)
    if len(np.unique(ids_left)) != len(ids_left):
        raise StimulusMismatchError(
            f"{func}(): {left} has repeated stimulus_id values; expected one row per stimulus."
        )
    sl, sr = set(ids_left), set(ids_right)
    if sl != sr:
        missing = sorted(sr - sl)
        extra = sorted(sl - sr)
        raise StimulusMismatchError(
            f"{func}(): {left} and {right} hold different stimuli. Missing from {left}: "
            f"{format_list(missing, limit=5) or 'none'}; not in {right}: "
            f"{format_list(extra, limit=5) or 'none'}."
        )
    where = {v: n for n, v in enumerate(ids_left)}
    return np.array([where[v] for v in ids_right], dtype=int)
