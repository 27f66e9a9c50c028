"""The per-fold ridge solvers of :func:`neuroalign.encoders._solvers.ridge_cv`.

The preparation of the data (centring in float64, one scale for the features, each
target's own; see :mod:`neuroalign.encoders._solvers`), the fold solvers of the primal form
(an eigendecomposition of ``X_train^T X_train``) and of the dual form (of the centred
training Gram matrix, taken from the full-data one), and the validation errors of every
alpha over the folds. Written once against :mod:`neuroalign.encoders._backend`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neuroalign._preflight import row_block
from neuroalign.encoders._backend import backend_for

__all__ = ["FORMS", "choose_form", "eig_gram", "feature_scale"]

#: A validation fold whose responses vary less than this fraction of the target's overall
#: variance has no defined R² (it is left out of the mean over folds).
_CONSTANT_FOLD = 1e-12


def choose_form(n_samples: int, n_features: int) -> str:
    """``"primal"`` when the feature Gram matrix is the smaller one, else ``"dual"``."""
    return "primal" if n_features <= n_samples else "dual"


def eig_gram(G) -> tuple[Any, Any]:
    """Eigendecomposition of a symmetric PSD Gram matrix in float64, eigenvalues clipped at 0.

    numpy arrays through numpy's LAPACK; torch tensors through numpy on CPU (faster than
    torch's path there) and torch on GPU.
    """
    return backend_for(G).eigh(G)


def feature_scale(X, fit_intercept: bool = True) -> float:
    """Mean variance of the (centred) features, ``trace(Xc^T Xc) / (n p)``, in float64.

    1 for z-scored features; the unit of relative alphas. 1 if the features are constant.
    """
    return _Prep(X, fit_intercept).feature_var


def _colsum64(T, ops) -> Any:
    """Column sums accumulated in float64, a block of rows at a time."""
    out = ops.zeros(T.shape[1], ops.float64)
    rows = row_block(T.shape[1])
    for r in range(0, T.shape[0], rows):
        out += ops.cast(T[r:r + rows], ops.float64).sum(0)
    return out


class _Prep:
    """Centring and rescaling in float64 (see :mod:`neuroalign.encoders._solvers`)."""

    @classmethod
    def from_stats(cls, x_mean, feature_var: float, fit_intercept: bool, ops) -> _Prep:
        """The preparation of features already summarised (the dual form's
        :func:`~neuroalign.encoders._dual.centred_gram`): no float64 copy of them."""
        self = cls.__new__(cls)
        self.ops, self.fit_intercept = ops, fit_intercept
        self.x_mean, self.feature_var = x_mean, feature_var
        return self

    def __init__(self, X, fit_intercept: bool, ops: Any = None) -> None:
        self.ops = ops = ops or backend_for(X)
        X = ops.asarray(X)
        Xw = ops.cast(X, ops.float64, copy=True)  # never modifies the caller's data
        n, p = Xw.shape
        self.fit_intercept = fit_intercept
        self.x_mean = Xw.mean(0) if fit_intercept and n else ops.zeros(p, ops.float64)
        Xw -= self.x_mean
        var = ops.frobenius(Xw) ** 2 / (n * p) if n * p else 0.0
        self.feature_var = var if var > 0 and math.isfinite(var) else 1.0
        Xw /= math.sqrt(self.feature_var)
        self.Xw64 = Xw

    def targets(self, Yb, dtype):
        """-> (targets centred and scaled to unit variance, in ``dtype``; float64 means; sds;
        mask of finite columns). Worked in float64 a block of rows at a time, so no float64
        copy of the whole batch is held."""
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite columns: flagged
            return self._targets(Yb, dtype)

    def _targets(self, Yb, dtype):
        ops = self.ops
        n = Yb.shape[0]
        ym = _colsum64(Yb, ops) / max(n, 1) if self.fit_intercept else ops.zeros(
            Yb.shape[1], ops.float64)
        ss = ops.zeros(Yb.shape[1], ops.float64)
        rows = row_block(Yb.shape[1])
        for r in range(0, n, rows):
            ss += ((ops.cast(Yb[r:r + rows], ops.float64) - ym) ** 2).sum(0)
        sd = ops.sqrt(ss / max(n, 1))
        finite = ops.isfinite(sd) & ops.isfinite(ym)
        sd = ops.where(finite & (sd > 0), sd, 1.0)
        out = ops.empty(Yb.shape, dtype)
        for r in range(0, n, rows):
            out[r:r + rows] = ops.cast((ops.cast(Yb[r:r + rows], ops.float64) - ym) / sd, dtype)
        return out, ym, sd, finite

    def to_units(self, W, b, ym, ysd, dtype):
        """Internal weights -> (coef, intercept) in the data's units, and the float64 offsets."""
        ops = self.ops
        coef64 = ops.cast(W, ops.float64) * (ysd / math.sqrt(self.feature_var))[None, :]
        y_off = ym + ysd * ops.cast(b, ops.float64)
        intercept = y_off - self.x_mean @ coef64
        return ops.cast(coef64, dtype), ops.cast(intercept, dtype), y_off


class _PrimalFold:
    """Fold solver in the primal form: ``(X^T X + a I)^-1 X^T y`` via ``X^T X = V S V^T``.

    The training cross-product ``X_train^T Y_train`` is obtained from the full-data
    ``X^T Y`` of the batch minus the validation part, so each fold costs ``n_val`` rows.
    Fold means are computed in float64.
    """

    def __init__(self, X, train, val, fit_intercept: bool, ops) -> None:
        self.ops = ops
        dtype = X.dtype
        Xtr, Xva = X[train], X[val]
        self.n_train = Xtr.shape[0]
        Xtr64 = ops.cast(Xtr, ops.float64)
        xm64 = Xtr64.mean(0) if fit_intercept else ops.zeros(Xtr64.shape[1], ops.float64)
        Xtr_c = Xtr64 - xm64
        s, V = ops.eigh(Xtr_c.T @ Xtr_c)
        self.xm = ops.cast(xm64, dtype)
        self.s = ops.cast(ops.asarray(s), dtype)
        self.V = ops.cast(ops.asarray(V), dtype)
        self.Xva = Xva
        self.XvV = (Xva - self.xm) @ self.V  # (n_val, p)
        self.val = val
        self.train = train
        self.fit_intercept = fit_intercept

    def rotate(self, XtY, Yb, ysum):
        """-> (A, Yva centred by the training mean)."""
        ops = self.ops
        Yva = Yb[self.val]
        if self.fit_intercept:
            ym = ops.cast((ysum - _colsum64(Yva, ops)) / self.n_train, Yb.dtype)
        else:
            ym = ops.zeros(Yb.shape[1], Yb.dtype)
        C = XtY - self.Xva.T @ Yva
        if self.fit_intercept:
            C -= self.n_train * ops.outer(self.xm, ym)
        return self.V.T @ C, Yva - ym

    def residual(self, A, alpha: float, Yva_c, buf, out):
        self.ops.divide_into(A, (self.s + alpha)[:, None], buf)
        return self.ops.residual_into(self.XvV, buf, Yva_c, out)


class _DualFold:
    """Fold solver in the dual form: ``X_val X^T (X X^T + a I)^-1 y`` via ``X X^T = U S U^T``.

    The fold's centred Gram matrices are taken from the full-data Gram matrix ``gram``
    (float64, computed once for all folds), centred on the training rows:
    ``(x_i - m)(x_j - m)^T = K_ij - r_i - r_j + c`` with ``r_i`` the mean of ``K_ij`` over
    the training rows ``j`` and ``c`` the mean of ``r`` over them, so no fold touches the
    ``n_features`` axis (as a kernel ridge does).
    """

    def __init__(self, X, train, val, fit_intercept: bool, ops, gram=None, dtype=None) -> None:
        self.ops = ops
        dtype = X.dtype if dtype is None else dtype
        if gram is None:
            X64 = ops.cast(X, ops.float64)
            gram = X64 @ X64.T
        Ktt, Kvt = gram[train][:, train], gram[val][:, train]
        if fit_intercept:
            r = Ktt.mean(1)
            c = r.mean()
            Ktt = Ktt - r[:, None] - r[None, :] + c
            Kvt = Kvt - Kvt.mean(1)[:, None] - r[None, :] + c
        s, U = ops.eigh(Ktt)
        self.s = ops.cast(ops.asarray(s), dtype)
        self.U = ops.cast(ops.asarray(U), dtype)
        self.M = ops.cast(Kvt @ ops.asarray(U), dtype)  # (n_val, n_train)
        self.n_train = len(train)
        self.val = val
        self.train = train
        self.fit_intercept = fit_intercept

    def rotate(self, XtY, Yb, ysum):
        ops = self.ops
        Ytr = Yb[self.train]
        if self.fit_intercept:
            ym = ops.cast(_colsum64(Ytr, ops) / self.n_train, Yb.dtype)
        else:
            ym = ops.zeros(Yb.shape[1], Yb.dtype)
        return self.U.T @ (Ytr - ym), Yb[self.val] - ym

    def residual(self, A, alpha: float, Yva_c, buf, out):
        self.ops.divide_into(A, (self.s + alpha)[:, None], buf)
        return self.ops.residual_into(self.M, buf, Yva_c, out)


FORMS = {"primal": _PrimalFold, "dual": _DualFold}


def _kfold_errors(solvers, Yb, XtY, ysum, alphas_int, ops):
    """-> (mean validation MSE, mean validation R²) over folds, (n_alphas, n_targets), float64."""
    n_alphas = len(alphas_int)
    b_mse = ops.zeros((n_alphas, Yb.shape[1]), ops.float64)
    r2_sum = ops.zeros((n_alphas, Yb.shape[1]), ops.float64)
    r2_n = ops.zeros(Yb.shape[1], ops.float64)
    for solver in solvers:
        A, Yva_c = solver.rotate(XtY, Yb, ysum)
        n_val = Yva_c.shape[0]
        sst = ops.cast(((Yva_c - Yva_c.mean(0)) ** 2).sum(0), ops.float64)
        defined = sst > _CONSTANT_FOLD * n_val
        r2_n += defined
        sst = ops.where(defined, sst, 1.0)
        buf = ops.empty(A.shape, A.dtype)
        out = ops.empty(Yva_c.shape, Yva_c.dtype)
        for a, alpha in enumerate(alphas_int):
            resid = solver.residual(A, float(alpha), Yva_c, buf, out)
            sse = ops.sqnorm_cols(resid)
            b_mse[a] += sse / n_val
            r2_sum[a] += ops.where(defined, 1.0 - sse / sst, 0.0)
        del A, Yva_c, buf, out
    r2 = ops.where(r2_n > 0, r2_sum / ops.where(r2_n > 0, r2_n, 1.0), math.nan)
    return b_mse / len(solvers), r2
