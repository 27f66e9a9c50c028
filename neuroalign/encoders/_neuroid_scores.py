"""Scores per neuroid: Pearson r and R², held-out scores (NaN where undefined, never 0),
explained variance and ceiling normalisation, and the NaN-aware argmax of every "best of
several candidates" choice."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import DataQualityWarning

__all__ = [
    "pearson_r",
    "r2_score",
    "SCORERS",
    "ceiling_normalise",
    "explained_variance",
    "nan_argmax",
    "held_out_scores",
    "fitted_positions",
]


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson r per column (neuroid); 0 where either side is constant.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n_samples, n_neuroids)
        Observed and predicted responses, row for row.

    Returns
    -------
    ndarray, shape (n_neuroids,)
        The correlations.
    """
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    yt = yt - yt.mean(0)
    yp = yp - yp.mean(0)
    num = (yt * yp).sum(0)
    den = np.sqrt((yt ** 2).sum(0) * (yp ** 2).sum(0))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column; 0 where the truth is constant.

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n_samples, n_neuroids)
        Observed and predicted responses, row for row.

    Returns
    -------
    ndarray, shape (n_neuroids,)
        ``1 - SSE / SST`` (about the observed mean).
    """
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    sse = ((yt - yp) ** 2).sum(0)
    sst = ((yt - yt.mean(0)) ** 2).sum(0)
    return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), 0.0)


SCORERS = {"pearson": pearson_r, "r2": r2_score}


#: Values (rows x neuroids) of one block of :func:`held_out_scores`: its float64 work holds a
#: few arrays of this size (32 MiB each), whatever the number of neuroids.
SCORE_BLOCK = 2**22


def fitted_positions(fit_labels, labels, *, what: str, func: str) -> np.ndarray | None:
    """The position in the fit of each of ``labels`` (the neuroid ids, or time points, of
    the data being scored), or None when they are the fit's, in its order.

    Raises :class:`~neuroalign.exceptions.DimensionError` naming labels the fit does not
    have, or repeated ones.
    """
    from neuroalign.exceptions import DimensionError

    fit_labels, labels = np.asarray(fit_labels), np.asarray(labels)
    if fit_labels.shape == labels.shape and np.array_equal(fit_labels, labels):
        return None
    index = {v: i for i, v in enumerate(fit_labels.tolist())}
    pos = np.array([index.get(v, -1) for v in labels.tolist()], dtype=np.int64)
    unknown = labels[pos < 0]
    uniq, counts = np.unique(labels, return_counts=True)
    if unknown.size or (counts > 1).any():
        found = (f"{unknown.size} {what} it was not fitted on ({format_list(unknown, limit=5)})"
                 if unknown.size else
                 f"repeated {what} ({format_list(uniq[counts > 1], limit=5)})")
        raise DimensionError(
            f"{func}(): the responses have {found}. Expected {what} of the fit "
            f"({len(fit_labels)}; any order, or a subset)."
        )
    return pos


def _label_positions(fit_coords, neuroid_coords, n: int, n_fit: int, func: str):
    """:func:`fitted_positions` of the scored neuroids on ``neuroid_id`` when both sides
    have it; else by position, which needs as many neuroids as the fit."""
    from neuroalign.exceptions import DimensionError

    ids = [getattr(c, "coords", {}).get("neuroid_id") if c is not None else None
           for c in (fit_coords, neuroid_coords)]
    if ids[0] is not None and ids[1] is not None:
        return fitted_positions(ids[0].values, ids[1].values, what="neuroids", func=func)
    if n != n_fit:
        raise DimensionError(
            f"{func}(): the responses have {n} neuroids; expected the {n_fit} of the fit "
            "(in its order, or labelled with neuroid_id to be matched by id)."
        )
    return None


def held_out_scores(Y: np.ndarray, pred, fitted: np.ndarray, metric: str,
                    neuroid_coords=None, *, func: str, fit_coords=None) -> np.ndarray:
    """Held-out score (``metric``) of each neuroid, NaN where it is not defined.

    NaN for neuroids whose test responses hold NaN or inf or are constant, and for
    neuroids not fitted (``fitted`` False: excluded at fit, or without a best layer), with
    one :class:`~neuroalign.exceptions.DataQualityWarning` that counts and names them
    (``neuroid_id`` from ``neuroid_coords`` when given). Never 0 for an undefined score.

    ``pred`` is the predictions ``(rows, neuroids)``, or a function ``pred(start, stop)``
    that gives those of neuroids ``start:stop``: the neuroids are scored a block at a time
    (:data:`SCORE_BLOCK` values), so that a whole brain's predictions are never held at
    once. Each neuroid's score is the same either way.

    ``pred`` and ``fitted`` follow the fit's neuroids. With ``fit_coords`` (the fit's
    neuroid coordinates), the responses' neuroids are matched to them on ``neuroid_id``:
    in another order, or a subset, each neuroid is scored against its own predictions and
    the scores come in the responses' order. Without labels on either side the responses
    must have the fit's neuroids, in its order.
    """
    Y = np.asarray(Y)
    pos = _label_positions(fit_coords, neuroid_coords, Y.shape[1], len(fitted), func)
    if pos is None:
        return _held_out_scores(Y, pred, fitted, metric, neuroid_coords, func=func)
    order = np.argsort(pos, kind="stable")
    cols = pos[order]  # ascending: each block of scored neuroids is one span of the fit's
    if callable(pred):
        full = pred

        def pred(a, b):
            c = cols[a:b]
            return full(int(c[0]), int(c[-1]) + 1)[:, c - c[0]]
    else:
        pred = np.asarray(pred)[:, cols]
    sorted_coords = neuroid_coords.isel(neuroid=order) if neuroid_coords is not None else None
    s_sorted = _held_out_scores(Y[:, order], pred, np.asarray(fitted, bool)[cols], metric,
                                sorted_coords, func=func)
    s = np.empty_like(s_sorted)
    s[order] = s_sorted
    return s


def _held_out_scores(Y: np.ndarray, pred, fitted: np.ndarray, metric: str,
                     neuroid_coords=None, *, func: str) -> np.ndarray:
    from neuroalign.encoders._data import neuroid_names

    n, t = Y.shape
    fitted = np.asarray(fitted, dtype=bool).copy()
    s = np.zeros(t)
    finite = np.ones(t, bool)
    spread = np.zeros(t)
    step = max(1, SCORE_BLOCK // max(n, 1))
    for a in range(0, t, step):
        b = min(a + step, t)
        p = np.asarray(pred(a, b) if callable(pred) else pred[:, a:b], dtype=np.float64)
        y = Y[:, a:b]
        fitted[a:b] &= np.isfinite(p).all(0)
        with np.errstate(invalid="ignore", over="ignore"):
            finite[a:b] = np.isfinite(y).all(0)
            if n:  # only read where the column is finite (max and min are NaN-silent)
                spread[a:b] = y.max(0) - y.min(0)
            s[a:b] = SCORERS[metric](np.where(np.isfinite(y), y, 0.0),
                                     np.where(fitted[a:b], p, 0.0))
    constant = finite & ~(spread > 0)
    unfitted = ~fitted & finite & ~constant
    bad = ~finite | constant | unfitted
    s = np.where(bad, np.nan, s)
    if bad.any():
        names = neuroid_names(neuroid_coords, t)
        warnings.warn(
            f"{func}: {int(bad.sum())} of {t} neuroids score NaN "
            f"({int((~finite).sum())} with NaN or inf test responses: "
            f"{format_list(names[~finite], limit=10) or '-'}; {int(constant.sum())} with "
            f"constant test responses: {format_list(names[constant], limit=10) or '-'}; "
            f"{int(unfitted.sum())} excluded at fit: "
            f"{format_list(names[unfitted], limit=10) or '-'}).",
            DataQualityWarning, stacklevel=4,
        )
    return s


def explained_variance(score, *, metric: str = "pearson") -> np.ndarray:
    """The share of variance a score stands for: ``max(r, 0)²`` for Pearson r, R² itself
    for ``metric="r2"`` (NaN stays NaN). This is what a noise ceiling bounds."""
    check_option(metric, tuple(SCORERS), name="metric", func="explained_variance")
    s = np.asarray(score, dtype=np.float64)
    return np.clip(s, 0, None) ** 2 if metric == "pearson" else s


def ceiling_normalise(score, ceiling, *, metric: str = "pearson"):
    """Score of each neuroid as a fraction of its own noise ceiling.

    ``ceiling`` is the store's noise ceiling in percent of explainable variance (a ceiling
    on R²). For ``metric="pearson"`` the score is squared (clipped at 0) first, as in the
    Algonauts noise-normalised accuracy. Neuroids with a zero ceiling get NaN.

    Per-neuroid ratios are noisy where the ceiling is low (a chance r² of 0.01 over a
    ceiling of 1 % is 1.0); to summarise a region use :func:`roi_summary`, which takes the
    ratio of means over neuroids above a ceiling threshold.

    Parameters
    ----------
    score : array-like or xr.DataArray
        One score per neuroid.
    ceiling : array-like or xr.DataArray
        The noise ceiling per neuroid, in percent (:func:`neuroalign.store.noise_ceiling`).
    metric : {"pearson", "r2"}
        What ``score`` is.

    Returns
    -------
    ndarray or xr.DataArray
        The explained variance over the ceiling (a DataArray named ``ceiling_normalised``
        for a DataArray ``score``).
    """
    check_option(metric, tuple(SCORERS), name="metric", func="ceiling_normalise")
    val = explained_variance(score, metric=metric)
    c = np.asarray(ceiling, dtype=np.float64) / 100.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(c > 0, val / np.where(c > 0, c, 1.0), np.nan)
    if isinstance(score, xr.DataArray):
        return score.copy(data=out).rename("ceiling_normalised")
    return out


def nan_argmax(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index of the largest value along ``axis``, ignoring NaN.

    The rule for every "best of several candidates" choice in neuroalign: a NaN candidate
    never wins; where every candidate is NaN, the index is 0 and the returned mask is True
    (callers turn that into NaN or an empty name). Ties go to the first candidate.

    Returns
    -------
    index : ndarray of int
    all_nan : ndarray of bool
    """
    v = np.asarray(values, dtype=np.float64)
    nan = np.isnan(v)
    all_nan = nan.all(axis=axis)
    return np.argmax(np.where(nan, -np.inf, v), axis=axis), all_nan
