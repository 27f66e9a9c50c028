"""Results Datasets of the encoders, in the one schema checked by
:func:`neuroalign.store.check_results` (see :mod:`neuroalign.store._results`): per-layer
scores on ``(layer, neuroid[, time])`` with ``model`` and ``depth`` coordinates on
``layer``, best-layer summaries on ``neuroid``, and the metric, split and CV scheme in the
attributes.

:func:`build_results` is the one builder every encoder's ``to_dataset()`` uses;
:func:`results_from_scores` makes results from scores computed elsewhere, and
:func:`concat_results` joins results of single layers (e.g. one
:class:`~neuroalign.encoders.TimeResolvedEncoder` per layer) into one sweep.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import xarray as xr

from neuroalign._validation import check_option, format_list
from neuroalign._version import __version__
from neuroalign.encoders._scoring import SCORERS, ceiling_normalise, nan_argmax
from neuroalign.exceptions import DimensionError
from neuroalign.store._results import RESULTS_SCHEMA, SCORE_KINDS, check_results

__all__ = ["build_results", "results_from_scores", "concat_results", "params_json",
           "cv_scheme", "CV_KIND"]

CV_KIND = "cv"
TEST_KIND = "test"


def cv_scheme(cv, *, blocks: bool = False) -> str:
    """A readable description of a ``cv`` parameter, for the attrs of a results Dataset."""
    if isinstance(cv, str):
        return "leave-one-out (closed form)" if cv == "loo" else cv
    if isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        if blocks:
            return f"{int(cv)}-fold, contiguous blocks of samples (neuroalign.encoders.block_folds)"
        return f"{int(cv)}-fold, stimulus-grouped, shuffled with seed 0 (neuroalign.store.cv_folds)"
    return repr(cv)


# -- the results schema ------------------------------------------------------------------------
def params_json(estimator) -> str:
    """The estimator's parameters (``get_params(deep=False)``) as a JSON string."""
    from neuroalign.store._io import _json_safe

    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else dict(estimator)
    return json.dumps(_json_safe(params), sort_keys=True)


def _depths(models: np.ndarray) -> np.ndarray:
    depth = np.zeros(len(models), dtype=np.int64)
    for m in dict.fromkeys(models.tolist()):
        idx = np.flatnonzero(models == m)
        depth[idx] = np.arange(len(idx))
    return depth


def build_results(
    score,
    *,
    layers: Sequence[str],
    template: xr.DataArray | None,
    valid=None,
    models: Sequence[str] | None = None,
    depths: Sequence[int] | None = None,
    alpha=None,
    cv_score=None,
    metric: str,
    score_kind: str,
    split: str,
    cv: str = "",
    encoder: str = "",
    params: str = "{}",
    ceiling=None,
    times=None,
    extra: dict | None = None,
    extra_coords: dict | None = None,
    attrs: dict | None = None,
) -> xr.Dataset:
    """Build a results Dataset of the schema (:func:`neuroalign.store.check_results`).

    Parameters
    ----------
    score : array-like, shape (n_layers, n_neuroids[, n_times])
        Per-layer scores over every neuroid (NaN where a neuroid has none).
    layers : sequence of str
        Each layer's own name.
    template : DataArray or None
        Carries the neuroid coordinates (``neuroid_id``, ``roi_*`` ...); None for arrays
        (``neuroid_id`` becomes ``"n<i>"``).
    valid : array-like of bool, optional
        Neuroids kept (the others, NaN or constant ones an encoder excluded, are left out;
        their count is in ``attrs["n_excluded"]``). Default: all.
    models, depths : sequence, optional
        Each layer's model (default ``""``) and position within its model (default: the
        order of its layers).
    alpha : array-like, optional
        The chosen penalty per layer and neuroid (default NaN: no penalty was chosen).
    cv_score : array-like, optional
        Cross-validated R² within the training data, per layer: the criterion ``best_layer``
        is chosen by when ``score`` holds held-out scores.
    metric : {"r2", "pearson"}
    score_kind : {"cv", "test"}
    split : str
        The split of the rows scored (``"test"`` for held-out scores; ``"train"`` or
        ``"all"`` for cross-validated ones).
    cv : str
        The folds in words (:func:`cv_scheme`).
    encoder, params : str
        The estimator's class name and its parameters as JSON (:func:`params_json`).
    ceiling : array-like, optional
        Noise ceiling in percent per neuroid: adds ``noise_ceiling`` and
        ``ceiling_normalised`` (of ``best_score``).
    times : array-like, optional
        The ``time`` coordinate of time-resolved scores.
    extra : dict, optional
        More variables ``{name: (dims, values over every neuroid)}``.
    extra_coords, attrs : dict, optional
        More coordinates (for the dims of ``extra``) and attributes.
    """
    check_option(metric, tuple(SCORERS), name="metric", func="build_results")
    check_option(score_kind, SCORE_KINDS, name="score_kind", func="build_results")
    score = np.asarray(score, dtype=np.float64)
    if score.ndim not in (2, 3):
        raise DimensionError(
            f"build_results(): 'score' has shape {score.shape!r}; expected (layers, neuroids) or "
            "(layers, neuroids, times)."
        )
    n_layers, n = score.shape[:2]
    layers = np.asarray([str(v) for v in layers], dtype=str)
    if len(layers) != n_layers:
        raise DimensionError(
            f"build_results(): {len(layers)} layer names for {n_layers} layers of scores."
        )
    models = np.full(n_layers, "", dtype=object) if models is None else np.asarray(
        [str(m) for m in models], dtype=object)
    models = models.astype(str)
    depths = _depths(models) if depths is None else np.asarray(depths, dtype=np.int64)
    alpha = np.full(score.shape, np.nan) if alpha is None else np.asarray(alpha, dtype=np.float64)
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    dims = ("layer", "neuroid") + (("time",) if score.ndim == 3 else ())
    crit = score if cv_score is None else np.asarray(cv_score, dtype=np.float64)
    best, none = nan_argmax(crit, axis=0)
    pick = lambda a: np.take_along_axis(a, best[None], axis=0)[0]  # noqa: E731
    best_score = np.where(none, np.nan, pick(score))
    best_alpha = np.where(none, np.nan, pick(alpha))
    best_layer = np.where(none, "", layers[best]).astype(str)
    best_model = np.where(none, "", models[best]).astype(str)
    fitted = split if score_kind == CV_KIND else "train"
    if n_layers == 1:
        selection = "single layer"
        estimate = "the score of the only layer"
    elif cv_score is not None:
        selection = f"cv-r2 within {fitted}"
        estimate = (f"the {score_kind} {metric} of best_layer, which the cross-validated R² within "
                    f"the {fitted} data chose (cv_score): an unbiased estimate")
    else:
        selection = (f"cv-r2 within {fitted}" if score_kind == CV_KIND and metric == "r2"
                     else f"max {score_kind} {metric}")
        estimate = ("the maximum over layers of score (the same scores chose best_layer): biased "
                    "upwards as an estimate of the chosen layer's accuracy")
    data = {
        "score": (dims, score),
        "alpha": (dims, alpha),
        "best_layer": (dims[1:], best_layer),
        "best_model": (dims[1:], best_model),
        "best_score": (dims[1:], best_score),
        "best_alpha": (dims[1:], best_alpha),
    }
    if cv_score is not None:
        data["cv_score"] = (dims, crit)
    for name, (vdims, values) in (extra or {}).items():
        data[name] = (vdims, np.asarray(values))
    coords = {"layer": layers, "model": ("layer", models), "depth": ("layer", depths)}
    if times is not None:
        coords["time"] = np.asarray(times, dtype=np.float64)
    coords.update(extra_coords or {})
    if template is not None:
        coords.update({k: c.variable for k, c in template.coords.items() if c.dims == ("neuroid",)})
    else:
        coords["neuroid_id"] = ("neuroid", np.array([f"n{i}" for i in range(n)]))
    ds = xr.Dataset(data, coords=coords)
    ds["score"].attrs.update(metric=metric, kind=score_kind)
    ds["alpha"].attrs["description"] = "ridge penalty chosen per layer and neuroid (NaN: none chosen)"
    ds["best_score"].attrs.update(metric=metric, kind=score_kind, estimate=estimate)
    ds["best_layer"].attrs["selection"] = selection
    if cv_score is not None:
        ds["cv_score"].attrs.update(metric="r2", kind=CV_KIND)
    if ceiling is not None:
        if score.ndim == 3:
            raise ValueError(
                "build_results(): 'ceiling' is for scores on ('layer', 'neuroid'); a noise "
                "ceiling per neuroid and time point is not defined here. Expected None."
            )
        c = np.asarray(getattr(ceiling, "values", ceiling), dtype=np.float64)
        if c.shape != (n,):
            raise DimensionError(
                f"build_results(): 'ceiling' has shape {c.shape!r}; expected one value per "
                f"neuroid, ({n},)."
            )
        ds["noise_ceiling"] = ("neuroid", c)
        ds["noise_ceiling"].attrs["units"] = "percent of explainable variance"
        ds["ceiling_normalised"] = ("neuroid", ceiling_normalise(best_score, c, metric=metric))
        ds["ceiling_normalised"].attrs.update(
            metric=f"{'max(r, 0)²' if metric == 'pearson' else 'R²'} / noise ceiling",
            kind=score_kind, source="best_score")
    ds.attrs.update(attrs or {})
    ds.attrs.update(
        results_schema=RESULTS_SCHEMA, metric=metric, score_kind=score_kind, split=str(split),
        cv=str(cv), selection=selection, encoder=str(encoder), params=str(params),
        neuroalign_version=__version__, n_excluded=int((~valid).sum()),
    )
    return check_results(ds.isel(neuroid=np.flatnonzero(valid)))


def _layer_coords(score: xr.DataArray, func: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if "layer" not in score.dims:
        raise DimensionError(
            f"{func}(): the scores have dims {score.dims!r}, missing 'layer'. Expected "
            "('layer', 'neuroid'[, 'time']); scores of one feature space: expand_dims('layer')."
        )
    names = (np.asarray(score["layer"].values).astype(str) if "layer" in score.coords
             else np.array([f"layer{i}" for i in range(score.sizes["layer"])]))
    models = (np.asarray(score["model"].values).astype(str) if "model" in score.coords
              and score["model"].dims == ("layer",) else None)
    if models is None and all("/" in n for n in names):
        raise ValueError(
            f"{func}(): the layers are named {format_list(names, limit=4)}; give the model as a "
            "'model' coordinate on 'layer' and the layer's own name in 'layer' (no "
            "'model/layer' names)."
        )
    depths = (np.asarray(score["depth"].values) if "depth" in score.coords
              and score["depth"].dims == ("layer",) else None)
    return names, models, depths


def results_from_scores(
    score: xr.DataArray,
    *,
    metric: str,
    score_kind: str,
    split: str,
    alpha: xr.DataArray | None = None,
    cv_score: xr.DataArray | None = None,
    cv: str = "",
    encoder: str = "",
    params: dict | None = None,
    ceiling=None,
) -> xr.Dataset:
    """Results of the schema from per-layer scores computed elsewhere (your own pipeline).

    Parameters
    ----------
    score : DataArray
        Dims ``('layer', 'neuroid'[, 'time'])``; coordinate ``layer`` (each layer's own
        name), optionally ``model`` and ``depth`` on ``layer``, and the store's neuroid
        coordinates (``neuroid_id``, ``roi_*`` ...).
    metric : {"r2", "pearson"}
    score_kind : {"cv", "test"}
    split : str
        The split scored (``"test"``), or for cross-validated scores the rows fitted
        (``"train"`` or ``"all"``).
    alpha, cv_score : DataArray, optional
        On the dims of ``score``: the chosen penalties, and the cross-validated R² within
        the training data that should choose ``best_layer`` (default: ``score`` chooses).
    cv, encoder : str
        The folds and the model, in words.
    params : dict, optional
        Parameters to record (as JSON).
    ceiling : array-like, optional
        Noise ceiling in percent per neuroid.

    Returns
    -------
    xr.Dataset
        Checked by :func:`neuroalign.store.check_results`, ready for
        :mod:`neuroalign.mapping`.
    """
    if not isinstance(score, xr.DataArray):
        raise TypeError(
            f"results_from_scores(): 'score' must be a DataArray on ('layer', 'neuroid'[, "
            f"'time']), got {type(score).__name__!r}."
        )
    names, models, depths = _layer_coords(score, "results_from_scores")
    order = ("layer", "neuroid") + (("time",) if "time" in score.dims else ())
    if set(score.dims) != set(order):
        raise DimensionError(
            f"results_from_scores(): 'score' has dims {score.dims!r}; expected ('layer', "
            "'neuroid'[, 'time'])."
        )
    score = score.transpose(*order)
    template = xr.DataArray(np.zeros(score.sizes["neuroid"]), dims="neuroid",
                            coords={k: v for k, v in score.coords.items() if v.dims == ("neuroid",)})
    if "neuroid_id" not in template.coords:
        template = None

    def values(a):
        return None if a is None else np.asarray(a.transpose(*order).values)

    return build_results(
        score.values, layers=names, models=models, depths=depths, template=template,
        alpha=values(alpha), cv_score=values(cv_score), metric=metric, score_kind=score_kind,
        split=split, cv=cv, encoder=encoder, params=json.dumps(params or {}, sort_keys=True, default=str),
        ceiling=ceiling, times=score["time"].values if "time" in score.dims else None,
    )


def concat_results(results: Sequence[xr.Dataset]) -> xr.Dataset:
    """Join results of the same neuroids (e.g. one encoder per layer, or one sweep per model)
    into one results Dataset over all their layers; the best-layer summaries are computed
    again over every layer.

    The results must agree on the metric, score kind, split, CV scheme and neuroids; the
    layer coordinates (``layer``, ``model``, ``depth``) are kept as they are, so give each
    input its model and depth (``res.assign_coords(model=("layer", ["m"]), depth=...)``).

    Parameters
    ----------
    results : sequence of xr.Dataset
        Results in the schema of :func:`neuroalign.store.check_results`.

    Returns
    -------
    xr.Dataset
        One results Dataset over every input's layers, checked by ``check_results``.
    """
    results = [check_results(r) for r in results]
    if not results:
        raise ValueError("concat_results(): no results given; expected at least one.")
    first = results[0]
    for key in ("metric", "score_kind", "split", "cv"):
        values = [r.attrs[key] for r in results]
        if len(set(values)) > 1:
            raise ValueError(
                f"concat_results(): the results differ in {key!r}: {format_list(values, limit=6)}; "
                "expected results of one kind of score."
            )
    ids = np.asarray(first["neuroid_id"].values)
    for r in results[1:]:
        if not np.array_equal(np.asarray(r["neuroid_id"].values), ids):
            raise ValueError(
                "concat_results(): the results hold different neuroids (or in another order); "
                "expected the same 'neuroid_id' values."
            )
    per_layer = ["score", "alpha"] + (["cv_score"] if all("cv_score" in r for r in results) else [])
    cat = xr.concat([r[per_layer] for r in results], dim="layer", coords="minimal", compat="override",
                    join="override")
    template = xr.DataArray(np.zeros(len(ids)), dims="neuroid",
                            coords={k: v for k, v in first.coords.items() if v.dims == ("neuroid",)})
    encoders = list(dict.fromkeys(str(r.attrs["encoder"]) for r in results))
    params = [json.loads(r.attrs["params"]) for r in results]
    ceiling = first["noise_ceiling"].values if "noise_ceiling" in first else None
    return build_results(
        cat["score"].values, layers=cat["layer"].values, models=cat["model"].values,
        depths=cat["depth"].values, template=template, alpha=cat["alpha"].values,
        cv_score=cat["cv_score"].values if "cv_score" in cat else None, metric=first.attrs["metric"],
        score_kind=first.attrs["score_kind"], split=first.attrs["split"], cv=first.attrs["cv"],
        encoder="+".join(encoders), params=json.dumps(params[0] if len(set(map(json.dumps, params))) == 1
                                                       else params, sort_keys=True),
        ceiling=ceiling, times=cat["time"].values if "time" in cat.dims else None,
    )
