"""Encoding scores: ROI summaries, permutation tests with FDR correction and bootstrap
confidence intervals. The scores per neuroid (Pearson r, R², ceiling normalisation) are in
:mod:`neuroalign.encoders._neuroid_scores`, and imported from here too."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._validation import UNSET, check_option, check_positive_int, format_list, renamed
from neuroalign.encoders._data import column_checks
from neuroalign.encoders._neuroid_scores import (
    SCORERS,
    ceiling_normalise,
    explained_variance,
    held_out_scores,
    nan_argmax,
    pearson_r,
    r2_score,
)
from neuroalign.exceptions import DataQualityWarning

__all__ = [
    "pearson_r",
    "r2_score",
    "SCORERS",
    "ceiling_normalise",
    "explained_variance",
    "nan_argmax",
    "held_out_scores",
    "roi_summary",
    "permutation_test",
    "fdr_bh",
    "bootstrap_roi",
    "AGGREGATES",
    "DEFAULT_CEILING_THRESHOLD",
]

AGGREGATES = ("mean", "median")
DEFAULT_CEILING_THRESHOLD = 10.0  # percent of explainable variance


def _roi_masks(neuroid_coords: xr.Dataset | xr.DataArray) -> dict[str, np.ndarray]:
    return {
        str(c)[4:]: np.asarray(neuroid_coords[c].values, dtype=bool)
        for c in neuroid_coords.coords
        if str(c).startswith("roi_") and neuroid_coords[c].dims == ("neuroid",)
    }


def _aggregate(v: np.ndarray, c: np.ndarray | None, aggregate: str) -> float:
    if c is None:
        return float(np.mean(v) if aggregate == "mean" else np.median(v))
    if aggregate == "mean":  # ratio of means
        return float(v.sum() / c.sum())
    return float(np.median(v / c))


def bootstrap_roi(
    values: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    ceiling: np.ndarray | None = None,
    aggregate: str = "mean",
    n_bootstrap: int = 2000,
    ci: float = 0.95,
    random_state: int | None = 0,
    n_boot: Any = UNSET,
    seed: Any = UNSET,
) -> tuple[float, float, float]:
    """An ROI aggregate of per-neuroid values and its percentile bootstrap interval.

    Neuroids (those in ``mask``; NaN values left out) are resampled with replacement.

    Parameters
    ----------
    values : array-like, shape (n_neuroids,)
    mask : array-like of bool, optional
        The ROI's neuroids (default: all).
    ceiling : array-like, shape (n_neuroids,), optional
        Each neuroid's ceiling in the units of ``values`` (e.g. explainable variance as a
        fraction, for explained-variance values). With it the aggregate is normalised:
        the ratio of means ``mean(values) / mean(ceiling)`` (``aggregate="mean"``) or the
        median of the per-neuroid ratios (``aggregate="median"``). Neuroids whose ceiling
        is not positive are left out.
    aggregate : {"mean", "median"}
    n_bootstrap : int
        Bootstrap resamples.
    ci : float
        Coverage of the interval, 0 < ci < 1.
    random_state : int or None
        Seed of the resampling (``numpy.random.default_rng``).
    n_boot, seed : deprecated
        Old names of ``n_bootstrap`` and ``random_state`` (``FutureWarning``).

    Returns
    -------
    (estimate, low, high)
    """
    n_boot = renamed(n_boot, n_bootstrap, old="n_boot", new="n_bootstrap", func="bootstrap_roi",
                     default=2000)
    seed = renamed(seed, random_state, old="seed", new="random_state", func="bootstrap_roi",
                   default=0)
    check_option(aggregate, AGGREGATES, name="aggregate", func="bootstrap_roi")
    n_boot = check_positive_int(n_boot, name="n_bootstrap", func="bootstrap_roi")
    if not 0 < ci < 1:
        raise ValueError(f"Invalid value for 'ci' in bootstrap_roi(): {ci!r}. Expected 0 < ci < 1.")
    v = np.asarray(values, dtype=np.float64).ravel()
    keep = np.ones(v.size, bool) if mask is None else np.asarray(mask, dtype=bool).ravel().copy()
    keep &= ~np.isnan(v)
    c = None
    if ceiling is not None:
        c = np.asarray(ceiling, dtype=np.float64).ravel()
        with np.errstate(invalid="ignore"):
            keep &= c > 0
    if not keep.any():
        raise ValueError(
            "bootstrap_roi(): the ROI mask selects no neuroids with a finite value"
            + (" and a positive ceiling" if ceiling is not None else "") + "; expected at least one."
        )
    v = v[keep]
    c = c[keep] if c is not None else None
    est = _aggregate(v, c, aggregate)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    step = max(1, 4_000_000 // max(v.size, 1))  # bounds memory: step x n draws at a time
    for start in range(0, n_boot, step):
        idx = rng.integers(0, v.size, size=(min(step, n_boot - start), v.size))
        vb = v[idx]
        if c is None:
            boots[start:start + len(idx)] = vb.mean(1) if aggregate == "mean" else np.median(vb, 1)
        elif aggregate == "mean":
            boots[start:start + len(idx)] = vb.sum(1) / c[idx].sum(1)
        else:
            boots[start:start + len(idx)] = np.median(vb / c[idx], 1)
    lo, hi = np.quantile(boots, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return est, float(lo), float(hi)


def _roi_stat(values, mask, ceiling, aggregate, n_boot, ci, seed) -> tuple[float, float, float]:
    if not mask.any():
        return np.nan, np.nan, np.nan
    if n_boot:
        return bootstrap_roi(values, mask, ceiling=ceiling, aggregate=aggregate,
                             n_bootstrap=n_boot, ci=ci, random_state=seed)
    est = _aggregate(values[mask], None if ceiling is None else ceiling[mask], aggregate)
    return est, np.nan, np.nan


def _score_name(result: xr.Dataset, var: str | None) -> str:
    from neuroalign.store._results import check_results

    check_results(result)
    if var is None:
        var = "best_score"
    if var not in result.data_vars:
        raise KeyError(
            f"Invalid value for 'var' in roi_summary(): {var!r}. Expected one of "
            f"{format_list(list(result.data_vars))}."
        )
    if "ceiling_normalised" in var:
        raise ValueError(
            f"Invalid value for 'var' in roi_summary(): {var!r}. An ROI mean of per-neuroid "
            "ratios is dominated by low-ceiling neuroids; pass the raw score (the summary adds "
            "'ceiling_normalised' as a ratio of means over neuroids above ceiling_threshold)."
        )
    if result[var].dims != ("neuroid",):
        raise ValueError(
            f"Invalid value for 'var' in roi_summary(): {var!r} has dims {result[var].dims!r}; "
            "expected a score on ('neuroid',)."
        )
    return var


def roi_summary(
    result: xr.Dataset,
    var: str | None = None,
    *,
    metric: str | None = None,
    ceiling=None,
    aggregate: str = "mean",
    ceiling_threshold: float = DEFAULT_CEILING_THRESHOLD,
    n_bootstrap: int = 0,
    ci: float = 0.95,
    random_state: int | None = 0,
    n_boot: Any = UNSET,
    seed: Any = UNSET,
) -> xr.Dataset:
    """Summary of a per-neuroid score over each ROI (``roi_*`` coordinates).

    Parameters
    ----------
    result : xr.Dataset
        Encoder results in the one schema (an encoder's ``to_dataset()``; checked by
        :func:`neuroalign.store.check_results`).
    var : str, optional
        The score variable on ``neuroid`` (default ``"best_score"``: the score of each
        neuroid's best layer, the only layer of a single-space encoder).
    metric : {"pearson", "r2"}, optional
        What the score is (default: the variable's or the Dataset's ``metric`` attribute).
    ceiling : array-like, optional
        Noise ceiling in percent per neuroid (default: ``result["noise_ceiling"]`` when
        present). Adds the ceiling-normalised summary.
    aggregate : {"mean", "median"}
        ``"mean"``: mean score, and for the normalised summary the ratio of means
        ``mean(explained variance) / mean(ceiling)``; ``"median"``: median score and median
        of the per-neuroid ratios.
    ceiling_threshold : float
        Only neuroids whose noise ceiling (percent) is at least this enter the normalised
        summary; a low ceiling makes a neuroid's ratio meaningless.
    n_bootstrap : int
        Bootstrap resamples (over neuroids) for 95 % intervals; 0 for none.
    ci, random_state : as in :func:`bootstrap_roi`
    n_boot, seed : deprecated
        Old names of ``n_bootstrap`` and ``random_state`` (``FutureWarning``).

    Returns
    -------
    xr.Dataset on ``roi``
        ``score`` (aggregate of the raw score), ``n_neuroids`` (with a finite score), and
        with a ceiling ``ceiling_normalised`` and ``n_above_threshold``; with ``n_bootstrap``,
        ``<name>_ci_low`` / ``<name>_ci_high``. Attributes name the metric, the score kind,
        the aggregate and the threshold. ROIs whose neuroids are all NaN get NaN and a
        :class:`~neuroalign.exceptions.DataQualityWarning`.
    """
    n_boot = renamed(n_boot, n_bootstrap, old="n_boot", new="n_bootstrap", func="roi_summary",
                     default=0)
    seed = renamed(seed, random_state, old="seed", new="random_state", func="roi_summary",
                   default=0)
    check_option(aggregate, AGGREGATES, name="aggregate", func="roi_summary")
    var = _score_name(result, var)
    score = result[var]
    metric = metric or score.attrs.get("metric") or result.attrs.get("metric")
    check_option(metric, tuple(SCORERS), name="metric", func="roi_summary")
    if n_boot:
        check_positive_int(n_boot, name="n_bootstrap", func="roi_summary")
    if ceiling is None and "noise_ceiling" in result.data_vars:
        ceiling = result["noise_ceiling"].values
    masks = _roi_masks(result)
    names = sorted(masks)
    vals = np.asarray(score.values, dtype=np.float64)
    nc = None if ceiling is None else np.asarray(getattr(ceiling, "values", ceiling), dtype=np.float64)
    expl = explained_variance(vals, metric=metric)
    cols: dict[str, list] = {"score": [], "n_neuroids": []}
    if n_boot:
        cols.update(score_ci_low=[], score_ci_high=[])
    if nc is not None:
        cols.update(ceiling_normalised=[], n_above_threshold=[])
        if n_boot:
            cols.update(ceiling_normalised_ci_low=[], ceiling_normalised_ci_high=[])
    empty = []
    for roi in names:
        m = masks[roi] & np.isfinite(vals)
        cols["n_neuroids"].append(int(m.sum()))
        if not m.any():
            empty.append(roi)
        stats = _roi_stat(vals, m, None, aggregate, n_boot, ci, seed)
        cols["score"].append(stats[0])
        if n_boot:
            cols["score_ci_low"].append(stats[1])
            cols["score_ci_high"].append(stats[2])
        if nc is not None:
            with np.errstate(invalid="ignore"):
                above = m & (nc >= ceiling_threshold) & (nc > 0)
            cols["n_above_threshold"].append(int(above.sum()))
            nstats = _roi_stat(expl, above, nc / 100.0, aggregate, n_boot, ci, seed)
            cols["ceiling_normalised"].append(nstats[0])
            if n_boot:
                cols["ceiling_normalised_ci_low"].append(nstats[1])
                cols["ceiling_normalised_ci_high"].append(nstats[2])
    if empty:
        warnings.warn(
            f"roi_summary(): {len(empty)} ROI(s) have no neuroid with a finite {var!r}: "
            f"{format_list(empty, limit=5)}; their summary is NaN.",
            DataQualityWarning, stacklevel=2,
        )
    kind = score.attrs.get("kind", result.attrs.get("score_kind", ""))
    out = xr.Dataset({k: ("roi", np.asarray(v)) for k, v in cols.items()}, coords={"roi": names})
    out["score"].attrs.update(metric=metric, kind=kind, aggregate=aggregate, source=var)
    if nc is not None:
        out["ceiling_normalised"].attrs.update(
            metric=f"{'max(r, 0)²' if metric == 'pearson' else 'R²'} / noise ceiling",
            aggregate=("ratio of means" if aggregate == "mean" else "median of ratios")
            + f" over neuroids with noise ceiling >= {ceiling_threshold:g} %",
            ceiling_threshold=float(ceiling_threshold),
        )
    out.attrs.update(metric=metric, score_kind=kind, aggregate=aggregate,
                     ceiling_threshold=float(ceiling_threshold), n_bootstrap=int(n_boot), ci=float(ci))
    return out


def fdr_bh(p: np.ndarray, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg FDR correction (:func:`scipy.stats.false_discovery_control`).

    NaN p-values (excluded neuroids) stay NaN, are never rejected and do not count
    towards the number of tests.

    Parameters
    ----------
    p : array-like
        p-values in [0, 1] (NaN allowed).
    q : float
        False discovery rate, in (0, 1).

    Returns
    -------
    reject : ndarray of bool
        Adjusted p-value at most ``q``.
    p_adjusted : ndarray
        Benjamini-Hochberg adjusted p-values (NaN where ``p`` is NaN).
    """
    from scipy.stats import false_discovery_control

    if not 0 < q < 1:
        raise ValueError(f"Invalid value for 'q' in fdr_bh(): {q!r}. Expected 0 < q < 1.")
    p = np.asarray(p, dtype=np.float64)
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError(
            f"Invalid value for 'p' in fdr_bh(): values outside [0, 1], e.g. "
            f"{float(p[ok][(p[ok] < 0) | (p[ok] > 1)][0])!r}. Expected p-values."
        )
    adj = np.full(p.shape, np.nan)
    if ok.any():
        adj[ok] = false_discovery_control(p[ok], method="bh")
    with np.errstate(invalid="ignore"):
        return adj <= q, adj


def _undefined_scores(y_true: np.ndarray, y_pred: np.ndarray, metric: str) -> np.ndarray:
    """Neuroids whose score is undefined: a NaN or infinite response or prediction,
    constant responses, or (Pearson r) constant predictions. Warns, naming them by column."""
    finite_true, spread_true = column_checks(y_true)
    finite_pred, spread_pred = column_checks(y_pred)
    undefined = ~(finite_true & finite_pred) | ~(spread_true > 0)
    if metric == "pearson":
        undefined |= ~(spread_pred > 0)
    if np.any(undefined):
        idx = np.flatnonzero(np.ravel(undefined))
        warnings.warn(
            f"permutation_test(): {idx.size} of {np.size(undefined)} neuroids have no defined score (NaN or "
            f"infinite values, constant responses{', or constant predictions' if metric == 'pearson' else ''}"
            f"; columns {format_list(idx, limit=5)}): their score and p-value are NaN and they "
            "do not count towards the FDR correction.", DataQualityWarning, stacklevel=3)
    return np.asarray(undefined)


def permutation_test(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    metric: str = "pearson",
    n_permutations: int = 1000,
    groups: np.ndarray | None = None,
    q: float = 0.05,
    random_state: int | None = 0,
    seed: Any = UNSET,
) -> dict[str, np.ndarray]:
    """Permutation test per neuroid of held-out predictions, FDR-corrected across neuroids.

    The rows of ``y_pred`` are permuted and the score recomputed; the one-sided p-value is
    ``(1 + #{null >= observed}) / (1 + n_permutations)``. With ``groups`` (each row's
    stimulus id) whole stimuli are permuted: every row of stimulus ``i`` gets the
    prediction of the same stimulus ``j``, so repetitions stay together and the null keeps
    the data's dependence (rows of one stimulus must then share one prediction).
    ``random_state`` seeds the permutations (``seed``: its deprecated old name).

    Parameters
    ----------
    y_true, y_pred : array-like, shape (n_samples, n_neuroids)
        Held-out responses and their predictions.
    metric : {"pearson", "r2"}
        The score.
    n_permutations : int
        Permutations of the prediction rows.
    groups : array-like, optional
        The stimulus id of each row (permute whole stimuli).
    q : float
        False discovery rate of the Benjamini-Hochberg correction.
    random_state : int, optional
        Seed of the permutations.
    seed : int, deprecated
        Old name of ``random_state`` (``FutureWarning``).

    Returns
    -------
    dict
        ``score``, ``p_value``, ``p_fdr`` and ``significant``, arrays per neuroid.
    """
    seed = renamed(seed, random_state, old="seed", new="random_state", func="permutation_test",
                   default=0)
    check_option(metric, tuple(SCORERS), name="metric", func="permutation_test")
    n_permutations = check_positive_int(n_permutations, name="n_permutations", func="permutation_test")
    scorer = SCORERS[metric]
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    undefined = _undefined_scores(y_true, y_pred, metric)
    if undefined.any():  # scored on zeros (no NaN in the arithmetic), then NaN
        y_true = np.where(undefined, 0.0, y_true)
        y_pred = np.where(undefined, 0.0, y_pred)
    observed = np.where(undefined, np.nan, scorer(y_true, y_pred))
    rng = np.random.default_rng(seed)
    count = np.zeros_like(observed)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (len(y_pred),):
            raise ValueError(
                f"Invalid value for 'groups' in permutation_test(): shape {groups.shape!r}. "
                f"Expected one stimulus id per row, shape ({len(y_pred)},)."
            )
        uniq, first, codes = np.unique(groups, return_index=True, return_inverse=True)
        if not np.allclose(y_pred, y_pred[first[codes]], equal_nan=True):
            raise ValueError(
                "permutation_test(): rows of one stimulus in 'groups' have different "
                "predictions; expected one prediction per stimulus (predictions from "
                "stimulus features)."
            )
    for _ in range(n_permutations):
        if groups is None:
            null = scorer(y_true, y_pred[rng.permutation(len(y_pred))])
        else:
            # permute stimulus labels: every row of stimulus i gets the prediction of stimulus j
            mapping = rng.permutation(len(uniq))
            null = scorer(y_true, y_pred[first[mapping[codes]]])
        count += null >= observed - 1e-12
    p = (1.0 + count) / (1.0 + n_permutations)
    p = np.where(np.isnan(observed), np.nan, p)
    reject, p_adj = fdr_bh(p, q)
    return {"score": observed, "p_value": p, "p_fdr": p_adj, "significant": reject}
