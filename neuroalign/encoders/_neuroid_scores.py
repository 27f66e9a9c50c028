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


def held_out_scores(Y: np.ndarray, pred, fitted: np.ndarray, metric: str,
                    neuroid_coords=None, *, func: str) -> np.ndarray:
    """Held-out score (``metric``) of each neuroid, NaN where it is not defined.

    NaN for neuroids whose test responses hold NaN or inf or are constant, and for
    neuroids not fitted (``fitted`` False: excluded at fit, or without a best layer), with
    one :class:`~neuroalign.exceptions.DataQualityWarning` that counts and names them
    (``neuroid_id`` from ``neuroid_coords`` when given). Never 0 for an undefined score.

    ``pred`` is the predictions ``(rows, neuroids)``, or a function ``pred(start, stop)``
    that gives those of neuroids ``start:stop``: the neuroids are scored a block at a time
    (:data:`SCORE_BLOCK` values), so that a whole brain's predictions are never held at
    once. Each neuroid's score is the same either way.
    """
    from neuroalign.encoders._data import neuroid_names

    Y = np.asarray(Y)
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
            DataQualityWarning, stacklevel=3,
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
