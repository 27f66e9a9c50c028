"""Input checks shared by the mapping functions: score arrays, ROI masks, stimulus joins."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.exceptions import DimensionError
from neuroalign.store import (
    ROI_PREFIX,
    average_repetitions,
    check_results,
    check_store,
    is_trial_level,
    match_stimuli,
)

__all__ = ["as_scores", "selection_scores", "roi_masks", "averaged_responses", "align_stimuli"]


def as_scores(results: Any, *, func: str, required=("layer", "neuroid")) -> xr.DataArray:
    """The per-layer ``score`` of encoder results, checked.

    Accepts exactly two things: a results Dataset of the one schema (an encoder's
    ``to_dataset()`` or a results folder the CLI wrote; checked by
    :func:`neuroalign.store.check_results`), or a DataArray of per-layer scores on
    ``('layer', 'neuroid'[, 'time'])`` (e.g. ``LayerSweep.cv_scores_``). Nothing is guessed
    from attribute names.
    """
    if isinstance(results, xr.Dataset):
        obj = check_results(results)["score"]
    elif isinstance(results, xr.DataArray):
        obj = results
    else:
        raise TypeError(
            f"{func}(): expected encoder results (an xarray.Dataset of the results schema, e.g. "
            "an encoder's to_dataset(); see neuroalign.store.check_results) or a DataArray of "
            f"per-layer scores on ('layer', 'neuroid'[, 'time']); got {type(results).__name__!r}."
        )
    missing = [d for d in required if d not in obj.dims]
    if missing:
        raise DimensionError(
            f"{func}(): scores have dims {obj.dims!r}, missing {format_list(missing)}. "
            f"Expected dims {tuple(required)!r} (optionally with 'time'); the scores of one "
            "feature space: scores.expand_dims('layer')."
        )
    if "layer" in obj.coords and not ("model" in obj.coords and obj["model"].dims == ("layer",)):
        names = np.asarray(obj["layer"].values).astype(str)
        if names.size and all("/" in n for n in names):
            raise ValueError(
                f"{func}(): the layers are named {format_list(names, limit=4)} with no 'model' "
                "coordinate; expected the model in a 'model' coordinate on 'layer' and the "
                "layer's own name in 'layer' (no 'model/layer' names)."
            )
    return obj


def selection_scores(results: Any, *, func: str, required=("layer", "neuroid")
                     ) -> tuple[xr.DataArray, xr.DataArray]:
    """The per-layer ``score`` of encoder results and the criterion that chooses each
    neuroid's best layer among them.

    Results that carry ``cv_score`` (held-out scores, the layer chosen within the training
    data; docs/results.md) keep their own selection: the criterion is ``cv_score``, the
    variable that chose their ``best_layer``, so the held-out ``score`` of the chosen layer
    stays an unbiased estimate. Anything else (results without ``cv_score``, a DataArray of
    scores) is chosen by its ``score``.

    Returns
    -------
    (score, criterion) : tuple of xr.DataArray
        Both on the same dims; ``criterion`` is ``score`` itself when nothing else chose.
    """
    scores = as_scores(results, func=func, required=required)
    if isinstance(results, xr.Dataset) and "cv_score" in results.data_vars:
        crit = results["cv_score"].transpose(*scores.dims)
        return scores, crit
    return scores, scores


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
    """Positions in ``ids_left`` of each id of ``ids_right``; the two sets must be equal,
    each id once (:func:`neuroalign.store.match_stimuli` with ``exact=True``)."""
    return match_stimuli(ids_left, ids_right, have_name=left, want_name=right, func=func,
                         exact=True)
