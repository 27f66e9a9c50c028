"""Leave-one-out ridge errors in closed form, as scikit-learn's ``RidgeCV`` computes them.

Used by :func:`neuroalign.encoders.ridge_cv` with ``folds="loo"``, on features and targets
that it has already centred and scaled (float64).
"""

from __future__ import annotations

import numpy as np
import torch

from neuroalign.encoders._solvers import _CONSTANT_FOLD, eig_gram

__all__ = ["LooSolver"]


class LooSolver:
    """Leave-one-out residuals in closed form, as scikit-learn's ``_RidgeGCV`` (float64).

    ``n <= p``: ``looe = c / d`` with ``c = G^-1 y``, ``d = diag(G^-1)`` from the Gram matrix
    ``X X^T = Q S Q^T`` (scikit-learn's ``gram`` mode); otherwise from ``X^T X = V S V^T``
    (``cov`` mode). Both handle the intercept as scikit-learn does.
    """

    def __init__(self, Xw64: torch.Tensor, fit_intercept: bool) -> None:
        n, p = Xw64.shape
        self.n = n
        self.fit_intercept = fit_intercept
        self.gram = n <= p
        ones = torch.ones(n, dtype=torch.float64, device=Xw64.device)
        if self.gram:
            self.s, self.Q = eig_gram(Xw64 @ Xw64.T)
            self.Q2 = self.Q ** 2
            self.Qt1 = self.Q.T @ ones
        else:
            self.s, V = eig_gram(Xw64.T @ Xw64)
            self.XV = Xw64 @ V
            self.XV2 = self.XV ** 2
            self.XVt1 = self.XV.T @ ones
        self.s = self.s.to(Xw64.device)

    def errors(self, Yw: torch.Tensor, alphas: np.ndarray):
        """-> (mean squared LOO error, LOO R²), each (n_alphas, n_targets), target units = 1."""
        n = self.n
        sst = ((Yw - Yw.mean(0)) ** 2).sum(0)
        mse = torch.zeros((len(alphas), Yw.shape[1]), dtype=torch.float64, device=Yw.device)
        r2 = torch.zeros_like(mse)
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
            r2[a] = torch.where(sst > _CONSTANT_FOLD * n, 1.0 - sse / sst, torch.nan)
        return mse, r2
