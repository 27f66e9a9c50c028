"""Encoding scores: Pearson r and R² per neuroid, ceiling normalisation, ROI summaries,
permutation tests with FDR correction and bootstrap confidence intervals."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign._validation import check_option, check_positive_int

__all__ = [
    "pearson_r",
    "r2_score",
    "SCORERS",
    "ceiling_normalise",
    "roi_summary",
    "permutation_test",
    "fdr_bh",
    "bootstrap_roi",
]


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson r per column (neuroid); 0 where either side is constant."""
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    yt = yt - yt.mean(0)
    yp = yp - yp.mean(0)
    num = (yt * yp).sum(0)
    den = np.sqrt((yt ** 2).sum(0) * (yp ** 2).sum(0))
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column; 0 where the truth is constant."""
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    sse = ((yt - yp) ** 2).sum(0)
    sst = ((yt - yt.mean(0)) ** 2).sum(0)
    return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), 0.0)


SCORERS = {"pearson": pearson_r, "r2": r2_score}


def ceiling_normalise(score, ceiling, *, metric: str = "pearson"):
    """Score as a fraction of the noise ceiling.

    ``ceiling`` is the store's noise ceiling in percent of explainable variance (a ceiling
    on R²). For ``metric="pearson"`` the score is squared (clipped at 0) first, as in the
    Algonauts noise-normalised accuracy; neuroids with a zero ceiling get 0.
    """
    check_option(metric, tuple(SCORERS), name="metric", func="ceiling_normalise")
    s = np.asarray(score, dtype=np.float64)
    c = np.asarray(ceiling, dtype=np.float64) / 100.0
    val = np.clip(s, 0, None) ** 2 if metric == "pearson" else s
    out = np.where(c > 0, val / np.where(c > 0, c, 1.0), 0.0)
    if isinstance(score, xr.DataArray):
        return score.copy(data=out).rename("ceiling_normalised")
    return out


def _roi_masks(neuroid_coords: xr.Dataset | xr.DataArray) -> dict[str, np.ndarray]:
    return {
        str(c)[4:]: np.asarray(neuroid_coords[c].values, dtype=bool)
        for c in neuroid_coords.coords
        if str(c).startswith("roi_") and neuroid_coords[c].dims == ("neuroid",)
    }


def roi_summary(result: xr.Dataset, var: str = "score") -> xr.DataArray:
    """Mean of ``result[var]`` over the neuroids of each ROI (``roi_*`` coordinates).

    Returns a DataArray with dim ``roi``.
    """
    masks = _roi_masks(result)
    vals = np.asarray(result[var].values, dtype=np.float64)
    names = sorted(masks)
    means = [float(np.mean(vals[masks[r]])) if masks[r].any() else 0.0 for r in names]
    return xr.DataArray(means, dims="roi", coords={"roi": names}, name=f"{var}_roi_mean")


def fdr_bh(p: np.ndarray, q: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg FDR correction.

    Returns
    -------
    reject : ndarray of bool
    p_adjusted : ndarray
    """
    p = np.asarray(p, dtype=np.float64)
    if not 0 < q < 1:
        raise ValueError(f"Invalid value for 'q' in fdr_bh(): {q!r}. Expected 0 < q < 1.")
    n = p.size
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    adj_sorted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    adj = np.empty(n)
    adj[order] = adj_sorted
    return adj <= q, adj


def permutation_test(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    metric: str = "pearson",
    n_permutations: int = 1000,
    groups: np.ndarray | None = None,
    q: float = 0.05,
    seed: int | None = 0,
) -> dict[str, np.ndarray]:
    """Permutation test per neuroid of held-out predictions, FDR-corrected across neuroids.

    The rows of ``y_pred`` are permuted (whole stimuli together when ``groups`` gives each
    row's stimulus id), the score recomputed, and the one-sided p-value is
    ``(1 + #{null >= observed}) / (1 + n_permutations)``.

    Returns
    -------
    dict with ``score``, ``p_value``, ``p_fdr`` and ``significant`` (arrays per neuroid).
    """
    check_option(metric, tuple(SCORERS), name="metric", func="permutation_test")
    n_permutations = check_positive_int(n_permutations, name="n_permutations", func="permutation_test")
    scorer = SCORERS[metric]
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    observed = scorer(y_true, y_pred)
    rng = np.random.default_rng(seed)
    count = np.zeros_like(observed)
    if groups is not None:
        uniq, codes = np.unique(np.asarray(groups), return_inverse=True)
    for _ in range(n_permutations):
        if groups is None:
            perm = rng.permutation(len(y_pred))
            null = scorer(y_true, y_pred[perm])
        else:
            # permute stimulus labels: every row of stimulus i gets the prediction of stimulus j
            mapping = rng.permutation(len(uniq))
            first = np.zeros(len(uniq), dtype=int)
            first[codes[::-1]] = np.arange(len(codes))[::-1]
            null = scorer(y_true, y_pred[first[mapping[codes]]])
        count += null >= observed - 1e-12
    p = (1.0 + count) / (1.0 + n_permutations)
    reject, p_adj = fdr_bh(p, q)
    return {"score": observed, "p_value": p, "p_fdr": p_adj, "significant": reject}


def bootstrap_roi(
    values: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int | None = 0,
) -> tuple[float, float, float]:
    """Bootstrap confidence interval of the mean of ``values`` over the neuroids in ``mask``.

    Returns
    -------
    (mean, low, high)
    """
    n_boot = check_positive_int(n_boot, name="n_boot", func="bootstrap_roi")
    if not 0 < ci < 1:
        raise ValueError(f"Invalid value for 'ci' in bootstrap_roi(): {ci!r}. Expected 0 < ci < 1.")
    v = np.asarray(values, dtype=np.float64)
    if mask is not None:
        v = v[np.asarray(mask, dtype=bool)]
    if v.size == 0:
        raise ValueError("bootstrap_roi(): the ROI mask selects no neuroids; expected at least one.")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(1)
    lo, hi = np.quantile(means, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(v.mean()), float(lo), float(hi)
