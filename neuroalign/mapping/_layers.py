"""Layers -> cortex: the preferred layer and depth of every neuroid, per ROI and over time."""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._validation import check_option, format_list
from neuroalign.encoders._scoring import nan_argmax
from neuroalign.exceptions import DataQualityWarning
from neuroalign.mapping._common import as_scores, roi_masks, selection_scores

__all__ = ["layer_depths", "layer_preference", "roi_layer_profile", "summarize_by_roi",
           "best_layer_over_time"]


def layer_depths(scores: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model label, raw depth and depth normalised to [0, 1] (within each model) per layer.

    Raw depth is the ``depth`` coordinate on ``layer`` when present, else the layer's
    position within its model. Normalised depth is ``(d - min) / (max - min)`` per model
    (0 when a model has a single layer), so models of different depth line up.

    Parameters
    ----------
    scores : xr.DataArray
        Scores with a ``layer`` dim (coords ``model`` and ``depth`` on it are optional).

    Returns
    -------
    model : ndarray of str
        The model of each layer (``""`` without a ``model`` coord).
    depth : ndarray of float
        Raw depth of each layer.
    depth_norm : ndarray of float
        Depth in [0, 1] within its model.
    """
    n = scores.sizes["layer"]
    model = (np.asarray(scores["model"].values).astype(str) if "model" in scores.coords
             and scores["model"].dims == ("layer",) else np.full(n, ""))
    depth = np.zeros(n, dtype=float)
    if "depth" in scores.coords:
        depth = np.asarray(scores["depth"].values, dtype=float)
    else:
        for m in dict.fromkeys(model):
            idx = np.flatnonzero(model == m)
            depth[idx] = np.arange(len(idx))
    norm = np.zeros(n, dtype=float)
    for m in dict.fromkeys(model):
        idx = np.flatnonzero(model == m)
        lo, hi = depth[idx].min(), depth[idx].max()
        norm[idx] = (depth[idx] - lo) / (hi - lo) if hi > lo else 0.0
    return model, depth, norm


def _layer_names(scores: xr.DataArray) -> np.ndarray:
    if "layer" in scores.coords:
        return np.asarray(scores["layer"].values).astype(str)
    return np.array([f"layer{i}" for i in range(scores.sizes["layer"])])


#: ``best_score``'s ``aggregate`` attribute: the maximum over layers, or the score of the
#: layer that the cross-validated R² within the training data chose
_MAX_OVER_LAYERS = "maximum over layers (biased upwards as an estimate)"
_CHOSEN_BY_CV = ("the held-out score of the layer that the cross-validated R² within the "
                 "training data chose (cv_score): an unbiased estimate")


def _preference_one(scores: xr.DataArray, depth: np.ndarray, norm: np.ndarray,
                    criterion: xr.DataArray | None = None) -> xr.Dataset:
    """Best layer by ``criterion`` (default: ``scores``), and the ``scores`` of that layer."""
    names = _layer_names(scores)
    s = scores.transpose("layer", ...)
    vals = np.asarray(s.values, dtype=float)
    crit = vals if criterion is None else np.asarray(criterion.transpose(*s.dims).values, dtype=float)
    best, all_nan = nan_argmax(crit, axis=0)
    if all_nan.any():
        ids = (np.asarray(s["neuroid_id"].values) if "neuroid_id" in s.coords
               and s["neuroid_id"].dims == ("neuroid",) else np.arange(s.sizes["neuroid"]))
        ax = s.dims[1:].index("neuroid")
        where = np.flatnonzero(np.moveaxis(all_nan, ax, 0).reshape(all_nan.shape[ax], -1).any(1))
        warnings.warn(
            f"layer_preference(): {int(all_nan.sum())} score(s) are NaN on every layer (neuroids "
            f"{format_list(ids[where], limit=5)}); their best layer is '' and their scores NaN.",
            DataQualityWarning, stacklevel=3,
        )
    best_score = np.take_along_axis(vals, best[None], axis=0)[0]
    w = np.clip(np.nan_to_num(vals, nan=0.0), 0.0, None)
    wsum = w.sum(axis=0)
    shape = (-1,) + (1,) * (vals.ndim - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_depth = np.where(wsum > 0, (w * depth.reshape(shape)).sum(0) / wsum, np.nan)
        mean_norm = np.where(wsum > 0, (w * norm.reshape(shape)).sum(0) / wsum, np.nan)
    dims = s.dims[1:]
    best_layer = np.where(all_nan, "", names[best])
    out = xr.Dataset(
        {
            "best_layer": (dims, best_layer.astype(str)),
            "best_score": (dims, np.where(all_nan, np.nan, best_score)),
            "best_depth": (dims, np.where(all_nan, np.nan, depth[best])),
            "best_depth_norm": (dims, np.where(all_nan, np.nan, norm[best])),
            "mean_depth": (dims, mean_depth),
            "mean_depth_norm": (dims, mean_norm),
        },
        coords={k: v for k, v in s.coords.items() if "layer" not in v.dims},
    )
    out["best_score"].attrs["aggregate"] = _MAX_OVER_LAYERS if criterion is None else _CHOSEN_BY_CV
    return out


def layer_preference(sweep: Any) -> xr.Dataset:
    """Preferred layer and depth of every neuroid.

    Parameters
    ----------
    sweep : xr.Dataset or xr.DataArray
        Encoder results in the one schema (e.g. ``LayerSweep(...).fit(...).to_dataset()``,
        checked by :func:`neuroalign.store.check_results`; their per-layer ``score`` is
        used), or a DataArray of per-layer scores with dims ``('layer', 'neuroid')``
        (extra dims such as ``time`` are kept). Coords on ``layer``: ``model`` (several
        models) and ``depth`` (default: the layer's position within its model).

    Returns
    -------
    xr.Dataset
        On ``neuroid`` (plus ``model`` when the scores hold several models, plus extra dims):
        ``best_layer`` (name of the chosen layer, see Notes), ``best_score`` (its score;
        its attribute ``aggregate`` says how it was chosen), ``best_depth``,
        ``best_depth_norm`` (its depth in [0, 1] within its model), ``mean_depth`` and
        ``mean_depth_norm`` (depth averaged over layers with weights ``max(score, 0)``;
        NaN where no layer scores above 0).

    Notes
    -----
    Selection: results that carry ``cv_score`` (held-out scores of a
    :class:`~neuroalign.encoders.LayerSweep` with ``test_split``, the ``results.zarr`` of
    ``neuroalign fit``) keep their own selection: each neuroid's layer is the one the
    cross-validated R² within the training data chose, as in their ``best_layer``, and
    ``best_score`` is that layer's held-out ``score``, an unbiased estimate (with several
    models, the choice is made within each model). Scores without ``cv_score`` choose by
    themselves: ``best_layer`` is the highest-scoring layer and ``best_score`` the maximum
    over layers, an upward-biased estimate of that layer's accuracy when the scores are
    noisy.

    NaN rule: a layer whose score (criterion) is NaN never wins. Where every layer is NaN
    the best layer is ``""`` and the scores and depths are NaN, with a
    :class:`~neuroalign.exceptions.DataQualityWarning` naming the neuroids.

    Examples
    --------
    >>> import xarray as xr
    >>> from neuroalign.mapping import layer_preference
    >>> scores = xr.DataArray([[0.1, 0.5, 0.2], [0.3, 0.1, 0.6]], dims=("layer", "neuroid"),
    ...                       coords={"layer": ["conv1", "fc"]})
    >>> pref = layer_preference(scores)
    >>> pref["best_layer"].values.tolist(), pref["best_depth_norm"].values.tolist()
    (['fc', 'conv1', 'fc'], [1.0, 0.0, 1.0])
    """
    scores, crit = selection_scores(sweep, func="layer_preference")
    return _preference(scores, None if crit is scores else crit)


def _preference(scores: xr.DataArray, crit: xr.DataArray | None) -> xr.Dataset:
    """:func:`layer_preference` of ``scores``, chosen by ``crit`` (None: by ``scores``)."""
    model, depth, norm = layer_depths(scores)
    models = list(dict.fromkeys(model))
    if len(models) == 1:
        out = _preference_one(scores, depth, norm, crit)
    else:
        parts = []
        for m in models:
            idx = np.flatnonzero(model == m)
            parts.append(_preference_one(scores.isel(layer=idx), depth[idx], norm[idx],
                                         None if crit is None else crit.isel(layer=idx)))
        out = xr.concat(parts, dim=xr.DataArray(models, dims="model", name="model"))
    out.attrs["description"] = "layer preference per neuroid (neuroalign.mapping.layer_preference)"
    return out


def roi_layer_profile(sweep: Any, store: xr.Dataset | None = None, rois=None) -> xr.DataArray:
    """Mean score of each layer over each ROI's neuroids.

    Parameters
    ----------
    sweep : scores as in :func:`layer_preference`
    store : xr.Dataset, optional
        Where the ROI masks come from (matched on ``neuroid_id``) when the scores carry no
        ``roi_*`` coordinates.
    rois : str or list of str, optional
        ROIs to summarise (default: all).

    Returns
    -------
    xr.DataArray
        Dims ``('roi', 'layer', ...)``, named ``score``, with the layer coords of the sweep
        (``model``, ``depth``) and ``depth_norm``.
    """
    scores = as_scores(sweep, func="roi_layer_profile")
    masks = roi_masks(scores, store, rois, func="roi_layer_profile")
    rows = [scores.isel(neuroid=np.flatnonzero(m)).mean("neuroid", skipna=True) for m in masks.values()]
    prof = xr.concat(rows, dim=xr.DataArray(list(masks), dims="roi", name="roi"))
    prof = prof.drop_vars([c for c in prof.coords if str(c).startswith("roi_")])
    _, _, norm = layer_depths(scores)
    prof = prof.assign_coords(depth_norm=("layer", norm), n_neuroids=("roi", [int(m.sum()) for m in masks.values()]))
    return prof.transpose("roi", "layer", ...).rename("score")


def summarize_by_roi(pref: xr.Dataset, store: xr.Dataset | None = None, rois=None) -> xr.Dataset:
    """Per-ROI summary of :func:`layer_preference`.

    Parameters
    ----------
    pref : xr.Dataset
        What :func:`layer_preference` returns.
    store : xr.Dataset, optional
        Where the ROI masks come from (matched on ``neuroid_id``) when ``pref`` carries no
        ``roi_*`` coordinates.
    rois : str or list of str, optional
        ROIs to summarise (default: all).

    Returns
    -------
    xr.Dataset
        On ``roi`` (plus ``model``/extra dims): ``best_layer`` (the most common preferred
        layer among neuroids that have one; ``""`` when none has; a tie goes to the layer
        that comes first in its model, the shallowest by ``best_depth_norm``: the scores'
        layer order, or their ``depth`` coordinate, with names ordering only equal
        depths), ``best_layer_fraction``
        (the share of those neuroids preferring it), ``mean_depth_norm`` and
        ``best_depth_norm`` (means over the ROI, NaN left out) and ``n_neuroids``.
    """
    masks = roi_masks(pref, store, rois, func="summarize_by_roi")
    rows = []
    for m in masks.values():
        sub = pref.isel(neuroid=np.flatnonzero(m))
        bl = sub["best_layer"].transpose("neuroid", ...)
        vals = bl.values.reshape(bl.shape[0], -1)
        depth = sub["best_depth_norm"].transpose(*bl.dims).values.reshape(vals.shape)
        mode = np.empty(vals.shape[1], dtype=object)
        frac = np.zeros(vals.shape[1])
        for c in range(vals.shape[1]):
            voted = vals[:, c] != ""  # neuroids without a best layer never vote
            if not voted.any():
                mode[c], frac[c] = "", np.nan
                continue
            u, first, cnt = np.unique(vals[voted, c], return_index=True, return_counts=True)
            # candidates in the layer order (by depth; names only break equal depths), so
            # that a tie goes to the first layer, as everywhere (nan_argmax)
            order = np.lexsort((u, depth[voted, c][first]))
            best, _ = nan_argmax(cnt[order])
            mode[c] = u[order][best]
            frac[c] = cnt.max() / cnt.sum()
        rest = bl.shape[1:]
        rows.append(xr.Dataset(
            {
                "best_layer": (bl.dims[1:], mode.reshape(rest).astype(str)),
                "best_layer_fraction": (bl.dims[1:], frac.reshape(rest)),
                "mean_depth_norm": sub["mean_depth_norm"].mean("neuroid", skipna=True),
                "best_depth_norm": sub["best_depth_norm"].mean("neuroid", skipna=True),
                "n_neuroids": int(m.sum()),
            },
            coords={k: v for k, v in bl.coords.items() if "neuroid" not in v.dims},
        ))
    out = xr.concat(rows, dim=xr.DataArray(list(masks), dims="roi", name="roi"))
    return out


def best_layer_over_time(
    sweep: Any, *, by: Literal["neuroid", "roi"] = "neuroid", store: xr.Dataset | None = None, rois=None
) -> xr.Dataset:
    """The best layer at each time point, per sensor/neuroid or per ROI.

    Parameters
    ----------
    sweep : scores with dims ``('layer', 'neuroid', 'time')`` (see :func:`layer_preference`)
    by : {"neuroid", "roi"}
        Per neuroid (sensor), or per ROI from the ROI-mean score profile. The layer is
        chosen as in :func:`layer_preference`: by ``cv_score`` (its ROI mean, per ROI) when
        the results carry it, else by the score.
    store, rois : as in :func:`roi_layer_profile` (``by="roi"`` only)

    Returns
    -------
    xr.Dataset
        ``best_layer`` and ``best_score`` on ``(neuroid, time)`` or ``(roi, time)``, plus
        ``best_depth_norm``.
    """
    check_option(by, ("neuroid", "roi"), name="by", func="best_layer_over_time")
    scores, crit = selection_scores(sweep, func="best_layer_over_time",
                                    required=("layer", "neuroid", "time"))
    crit = None if crit is scores else crit
    if by == "neuroid":
        return _preference(scores, crit)[["best_layer", "best_score", "best_depth_norm"]]

    def profile(values: xr.DataArray) -> xr.DataArray:
        return roi_layer_profile(values, store, rois).rename(roi="neuroid").drop_vars("n_neuroids")

    pref = _preference(profile(scores), None if crit is None else profile(crit))
    return pref[["best_layer", "best_score", "best_depth_norm"]].rename(neuroid="roi")
