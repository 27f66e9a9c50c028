"""A small closed-form ridge used inside mapping (to be swapped for ``neuroalign.encoders``).

One SVD of the centred feature matrix serves every target and every alpha; alpha is
chosen per target by exact leave-one-out error (the hat-matrix shortcut).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RidgeFit", "ridge_fit", "cv_scores", "pearson_columns", "DEFAULT_ALPHAS"]

DEFAULT_ALPHAS = tuple(10.0 ** np.arange(-2, 6))


@dataclass
class RidgeFit:
    """Fitted ridge: ``Y ≈ (X - x_mean) @ coef + intercept``."""

    coef: np.ndarray  # (n_features, n_targets)
    intercept: np.ndarray  # (n_targets,)
    x_mean: np.ndarray  # (n_features,)
    alpha: np.ndarray  # (n_targets,)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=float) - self.x_mean) @ self.coef + self.intercept


def _svd(X: np.ndarray):
    x_mean = X.mean(axis=0)
    Xc = X - x_mean
    U, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    keep = s > s[0] * 1e-10 if s.size else s > 0
    return x_mean, U[:, keep], s[keep], Vt[keep]


def ridge_fit(X: np.ndarray, Y: np.ndarray, alphas=DEFAULT_ALPHAS) -> RidgeFit:
    """Ridge with an intercept and a per-target alpha chosen by leave-one-out error.

    ``X`` (n_samples, n_features), ``Y`` (n_samples, n_targets) or (n_samples,).
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    squeeze = Y.ndim == 1
    Y = Y[:, None] if squeeze else Y
    n = X.shape[0]
    x_mean, U, s, Vt = _svd(X)
    y_mean = Y.mean(axis=0)
    Yc = Y - y_mean
    UtY = U.T @ Yc
    alphas = np.asarray(alphas, dtype=float)
    best_err = np.full(Y.shape[1], np.inf)
    best = np.zeros(Y.shape[1])
    for a in alphas:
        shrink = s**2 / (s**2 + a)
        fitted = U @ (shrink[:, None] * UtY)
        h = (U**2) @ shrink + 1.0 / n  # leverage, intercept included
        loo = (Yc - fitted) / np.clip(1.0 - h, 1e-6, None)[:, None]
        err = (loo**2).mean(axis=0)
        better = err < best_err
        best_err[better] = err[better]
        best[better] = a
    coef = np.zeros((X.shape[1], Y.shape[1]))
    for a in np.unique(best):
        cols = best == a
        coef[:, cols] = Vt.T @ ((s / (s**2 + a))[:, None] * UtY[:, cols])
    return RidgeFit(coef=coef, intercept=y_mean, x_mean=x_mean, alpha=best)


def pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (n_samples, n)."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    den = np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=0) / np.where(den > 0, den, 1.0), 0.0)


def cv_scores(X: np.ndarray, Y: np.ndarray, folds, alphas=DEFAULT_ALPHAS) -> np.ndarray:
    """Cross-validated Pearson r per target: predictions from ``folds`` pooled, then scored."""
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    pred = np.zeros_like(Y)
    for train, test in folds:
        pred[test] = ridge_fit(X[train], Y[train], alphas).predict(X[test])
    return pearson_columns(pred, Y)
