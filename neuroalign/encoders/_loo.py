"""Leave-one-out ridge errors in closed form, as scikit-learn's ``RidgeCV`` computes them.

Used by :func:`neuroalign.encoders.ridge_cv` with ``folds="loo"``, on features and targets
that it has already centred and scaled (float64).
"""

from __future__ import annotations

import math

import numpy as np

from neuroalign.encoders._ridge_folds import _CONSTANT_FOLD

__all__ = ["LooSolver"]


class LooSolver:
    """Leave-one-out residuals in closed form, as scikit-learn's ``_RidgeGCV`` (float64).

    ``n <= p``: ``looe = c / d`` with ``c = G^-1 y``, ``d = diag(G^-1)`` from the Gram matrix
    ``X X^T = Q S Q^T`` (scikit-learn's ``gram`` mode); otherwise from ``X^T X = V S V^T``
    (``cov`` mode). Both handle the intercept as scikit-learn does. ``ops`` is the array
    backend (:mod:`neuroalign.encoders._backend`) of ``Xw64``.
    """

    def __init__(self, Xw64, fit_intercept: bool, ops) -> None:
        self.ops = ops
        n, p = Xw64.shape
        self.n = n
        self.fit_intercept = fit_intercept
        self.gram = n <= p
        ones = ops.ones(n, ops.float64)
        if self.gram:
            s, Q = ops.eigh(Xw64 @ Xw64.T)
            self.Q = ops.asarray(Q)
            self.Q2 = self.Q ** 2
            self.Qt1 = self.Q.T @ ones
        else:
            s, V = ops.eigh(Xw64.T @ Xw64)
            self.XV = Xw64 @ ops.asarray(V)
            self.XV2 = self.XV ** 2
            self.XVt1 = self.XV.T @ ones
        self.s = ops.asarray(s)

    def errors(self, Yw, alphas: np.ndarray):
        """-> (mean squared LOO error, LOO R²), each (n_alphas, n_targets), target units = 1."""
        ops = self.ops
        n = self.n
        sst = ((Yw - Yw.mean(0)) ** 2).sum(0)
        mse = ops.zeros((len(alphas), Yw.shape[1]), ops.float64)
        r2 = ops.zeros((len(alphas), Yw.shape[1]), ops.float64)
        proj = self.Q.T @ Yw if self.gram else self.XV.T @ Yw
        for a, alpha in enumerate(alphas):
            D = 1.0 / (self.s + float(alpha))
            if self.gram:
                c = self.Q @ (D[:, None] * proj)
                d = self.Q2 @ D
                if self.fit_intercept:
                    d = d - (self.Q @ (D * self.Qt1)) / n
            else:
                c = Yw - self.XV @ (D[:, None] * proj)
                d = 1.0 - self.XV2 @ D
                if self.fit_intercept:
                    d = d - (1.0 - self.XV @ (D * self.XVt1)) / n
            sse = ((c / d[:, None]) ** 2).sum(0)
            mse[a] = sse / n
            r2[a] = ops.where(sst > _CONSTANT_FOLD * n, 1.0 - sse / sst, math.nan)
        return mse, r2
