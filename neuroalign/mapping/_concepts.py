"""Voxel concept labels in a joint image-text space (CLIP) and image rankings per voxel."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from neuroalign.exceptions import DimensionError
from neuroalign.mapping._common import roi_masks

__all__ = ["voxel_weights", "concept_labels", "roi_concept_labels", "rank_images"]


def _as_matrix(obj, rows: str, *, name: str, func: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(values (n_rows, n_dims), row labels, the embedding dim name)."""
    if not isinstance(obj, xr.DataArray) or obj.ndim != 2 or rows not in obj.dims:
        dims = getattr(obj, "dims", np.shape(obj))
        raise DimensionError(
            f"{func}(): {name!r} has dims {dims!r}; expected a 2-d DataArray with dims "
            f"({rows!r}, '<embedding dim>')."
        )
    other = [d for d in obj.dims if d != rows][0]
    arr = obj.transpose(rows, other)
    labels = np.asarray(arr[rows].values) if rows in arr.coords else np.arange(arr.sizes[rows])
    return np.asarray(arr.values, dtype=float), labels, other


def voxel_weights(features, store: xr.Dataset, *, layer: str | None = None,
                  alphas: Sequence[float] | None = None, split: str | None = None) -> xr.Dataset:
    """Fit a ridge encoder per voxel from (joint-space) features; return its weight vectors.

    A small closed-form ridge (alpha per voxel by leave-one-out error) on the averaged
    responses, for :func:`concept_labels` and :func:`rank_images` (to be replaced by
    ``neuroalign.encoders.RidgeEncoder``'s ``coef_``).

    Parameters
    ----------
    features : xr.Dataset or xr.DataArray
        Features in the joint image-text space, ``(stimulus, <dim>)``, joined on ``stimulus_id``.
    store : xr.Dataset
        Trial-level or averaged fMRI store.
    layer : str, optional
        Variable of a features Dataset.
    alphas : sequence of float, optional
        Ridge penalties (default ``10**-2 .. 10**5``).
    split : str, optional
        Fit on this split's stimuli only (e.g. ``"train"``).

    Returns
    -------
    xr.Dataset
        ``weights`` (dims ``('neuroid', <dim>)``, in units of response per feature unit),
        ``intercept`` and ``alpha`` on ``neuroid``, with the store's neuroid coords.
    """
    from neuroalign.encoders._solvers import ridge_loo
    from neuroalign.mapping._common import averaged_responses
    from neuroalign.mapping._units import DEFAULT_ALPHAS, feature_matrix
    from neuroalign.store._join import join_features

    feats = feature_matrix(features, layer, func="voxel_weights")
    resp = averaged_responses(store, func="voxel_weights")
    if "time" in resp.dims:
        raise DimensionError("voxel_weights(): the store is time-resolved; expected fMRI responses.")
    joined = join_features(feats, resp, split=split, func="voxel_weights")  # on stimulus_id
    X = np.asarray(joined.matrix(), dtype=float)
    Y = np.asarray(joined.responses, dtype=float)
    fit = ridge_loo(X, Y, DEFAULT_ALPHAS if alphas is None else alphas)
    dim = feats.dims[1]
    coords = {k: v for k, v in resp.coords.items() if v.dims == ("neuroid",)}
    return xr.Dataset(
        {
            "weights": (("neuroid", dim), np.asarray(fit.coef).T),
            "intercept": ("neuroid", np.asarray(fit.intercept)),
            "alpha": ("neuroid", fit.best_alphas),
        },
        coords=coords,
    )


def _unit(a: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.where(n > 0, n, 1.0)


def concept_labels(weights: xr.DataArray, text_embeddings: xr.DataArray, *, top: int = 5) -> xr.Dataset:
    """Project each voxel's encoder weights onto the text embeddings of a concept vocabulary.

    Parameters
    ----------
    weights : xr.DataArray
        Encoder weights, dims ``('neuroid', <dim>)``: one vector per voxel in the joint
        image-text space (e.g. a ridge from CLIP image embeddings).
    text_embeddings : xr.DataArray
        Dims ``('concept', <dim>)``, with the concept words as the ``concept`` coord.
    top : int
        Concepts reported per voxel.

    Returns
    -------
    xr.Dataset
        ``similarity`` (cosine, dims ``('neuroid', 'concept')``), ``top_concept`` and
        ``top_similarity`` (dims ``('neuroid', 'rank')``).
    """
    W, _, wd = _as_matrix(weights, "neuroid", name="weights", func="concept_labels")
    T, concepts, td = _as_matrix(text_embeddings, "concept", name="text_embeddings", func="concept_labels")
    if W.shape[1] != T.shape[1]:
        raise DimensionError(
            f"concept_labels(): weights have {W.shape[1]} embedding dims ({wd!r}), "
            f"text_embeddings {T.shape[1]} ({td!r}); expected the same joint space."
        )
    top = max(1, min(int(top), T.shape[0]))
    sim = _unit(W) @ _unit(T).T
    order = np.argsort(-sim, axis=1, kind="stable")[:, :top]
    coords = {k: v for k, v in weights.coords.items() if v.dims == ("neuroid",)}
    return xr.Dataset(
        {
            "similarity": (("neuroid", "concept"), sim),
            "top_concept": (("neuroid", "rank"), np.asarray(concepts)[order].astype(str)),
            "top_similarity": (("neuroid", "rank"), np.take_along_axis(sim, order, axis=1)),
        },
        coords={**coords, "concept": np.asarray(concepts).astype(str), "rank": np.arange(top)},
    )


def roi_concept_labels(labels: xr.Dataset, store: xr.Dataset | None = None,
                       rois: Sequence[str] | None = None, *, top: int = 5) -> xr.Dataset:
    """Top concepts per ROI: the voxel similarities of :func:`concept_labels` averaged over each ROI.

    Parameters
    ----------
    labels : xr.Dataset
        What :func:`concept_labels` returns (``similarity`` on ``('neuroid', 'concept')``).
    store : xr.Dataset, optional
        Where the ROI masks come from (matched on ``neuroid_id``) when ``labels`` carries no
        ``roi_*`` coordinates.
    rois : sequence of str, optional
        ROIs to summarise (default: all).
    top : int
        Concepts kept per ROI.

    Returns
    -------
    xr.Dataset
        ``similarity`` (dims ``('roi', 'concept')``), ``top_concept`` and ``top_similarity``
        (dims ``('roi', 'rank')``).
    """
    masks = roi_masks(labels, store, rois, func="roi_concept_labels")
    sim = np.stack([labels["similarity"].values[m].mean(axis=0) for m in masks.values()])
    concepts = labels["concept"].values
    top = max(1, min(int(top), len(concepts)))
    order = np.argsort(-sim, axis=1, kind="stable")[:, :top]
    return xr.Dataset(
        {
            "similarity": (("roi", "concept"), sim),
            "top_concept": (("roi", "rank"), concepts[order].astype(str)),
            "top_similarity": (("roi", "rank"), np.take_along_axis(sim, order, axis=1)),
        },
        coords={"roi": list(masks), "concept": concepts, "rank": np.arange(top)},
    )


def rank_images(weights: xr.DataArray, image_features: xr.DataArray, *, intercept=None,
                top: int = 10) -> xr.Dataset:
    """Rank images by each voxel's predicted response ``features @ w (+ intercept)``.

    Parameters
    ----------
    weights : xr.DataArray
        Dims ``('neuroid', <dim>)``.
    image_features : xr.DataArray
        Dims ``('stimulus', <dim>)`` (coord ``stimulus_id`` names the images).
    intercept : array-like, optional
        One value per neuroid (does not change the ranking; kept in ``predicted``).
    top : int
        Images kept per voxel.

    Returns
    -------
    xr.Dataset
        ``predicted`` (dims ``('neuroid', 'stimulus')``), ``top_stimulus`` (ids, best
        first) and ``top_predicted`` (dims ``('neuroid', 'rank')``).
    """
    W, _, wd = _as_matrix(weights, "neuroid", name="weights", func="rank_images")
    F, _, fd = _as_matrix(image_features, "stimulus", name="image_features", func="rank_images")
    if W.shape[1] != F.shape[1]:
        raise DimensionError(
            f"rank_images(): weights have {W.shape[1]} dims ({wd!r}), image_features "
            f"{F.shape[1]} ({fd!r}); expected the same feature space."
        )
    ids = (np.asarray(image_features["stimulus_id"].values) if "stimulus_id" in image_features.coords
           else np.arange(F.shape[0]))
    pred = W @ F.T
    if intercept is not None:
        pred = pred + np.asarray(intercept, dtype=float).reshape(-1, 1)
    top = max(1, min(int(top), F.shape[0]))
    order = np.argsort(-pred, axis=1, kind="stable")[:, :top]
    coords = {k: v for k, v in weights.coords.items() if v.dims == ("neuroid",)}
    return xr.Dataset(
        {
            "predicted": (("neuroid", "stimulus"), pred),
            "top_stimulus": (("neuroid", "rank"), ids[order]),
            "top_predicted": (("neuroid", "rank"), np.take_along_axis(pred, order, axis=1)),
        },
        coords={**coords, "stimulus_id": ("stimulus", ids), "rank": np.arange(top)},
    )
