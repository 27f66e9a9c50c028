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

from neuroalign._preflight import gram_errors, row_block
from neuroalign.encoders._backend import backend_for
from neuroalign.encoders._dual import numerical_range

__all__ = ["FORMS", "choose_form", "complements", "cross_products", "eig_gram", "feature_cov",
           "feature_scale", "partitions"]

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


def _sq_about(T, centre, ops) -> Any:
    """Column sums of ``(T - centre)^2`` in float64, a block of rows at a time."""
    out = ops.zeros(T.shape[1], ops.float64)
    rows = row_block(T.shape[1])
    for r in range(0, T.shape[0], rows):
        out += ((ops.cast(T[r:r + rows], ops.float64) - centre) ** 2).sum(0)
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
        sd = ops.sqrt(_sq_about(Yb, ym, ops) / max(n, 1))
        rows = row_block(Yb.shape[1])
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


class _Fold:
    """The validation errors of a fold solver from its residuals: per alpha, the
    validation predictions of every target minus the responses (``n_val`` rows)."""

    def errors(self, XtY, Yb, ysum, alphas, XvY=None):
        """-> (validation SSE per alpha and target (float64), the validation responses' sum
        of squares about their own mean (float64), ``n_val``). ``XvY``: the fold's
        ``X_val^T Y_val`` when already formed (:func:`cross_products`; overwritten)."""
        A, Yva_c = self.rotate(XtY, Yb, ysum, XvY)
        sst = self.ops.cast(((Yva_c - Yva_c.mean(0)) ** 2).sum(0), self.ops.float64)
        return self._residual_errors(A, Yva_c, alphas), sst, Yva_c.shape[0]

    def _residual_errors(self, A, Yva_c, alphas):
        ops = self.ops
        sse = ops.empty((len(alphas), A.shape[1]), ops.float64)
        buf = ops.empty(A.shape, A.dtype)
        out = ops.empty(Yva_c.shape, Yva_c.dtype)
        for i, alpha in enumerate(alphas):
            sse[i] = ops.sqnorm_cols(self.residual(A, float(alpha), Yva_c, buf, out))
        return sse


#: The Gram form of a fold's validation errors is kept for a target only where every
#: alpha's validation SSE is at least this fraction of the responses' squared norm about
#: the training mean (a fold R² below 0.95). Its rounding error relative to the SSE is
#: ``sqrt(norm / SSE)`` times the residual form's (at most 4.5x here); targets fitted
#: better than that get the residual form.
_GRAM_FLOOR = 0.05


class _PrimalFold(_Fold):
    """Fold solver in the primal form: ``(X^T X + a I)^-1 X^T y`` via ``X^T X = V S V^T``.

    When the training rows are all the rows not in the validation set (``complement``),
    the training cross-product ``X_train^T Y_train`` is obtained from the full-data
    ``X^T Y`` of the batch minus the validation part, so each fold costs ``n_val`` rows, and
    the fold's decomposition from the features' cross-product (:func:`feature_cov`) minus
    the validation rows'. Otherwise (rows left out of both sides) the training rows' own
    are used. Fold means are computed in float64.

    When the validation rows outnumber the features enough
    (:func:`~neuroalign._preflight.gram_errors`), the validation errors come from the fold's
    Gram matrices instead of from residuals of ``n_val`` rows: with ``B = V^T X_val^T``
    applied to the responses (both centred on the training means), ``G`` the Gram matrix of
    ``X_val V`` and ``w_a = A / (s + a)`` the rotated weights,
    ``SSE_a = |y|^2 + w_a^T (G w_a - 2 B)``: ``p^2`` per target and alpha instead of
    ``n_val p`` (about 4x fewer flops at NSD's 6,000 validation rows for 1,024 features).
    Targets fitted too well for that expansion's rounding (:data:`_GRAM_FLOOR`) are
    recomputed from their residuals.
    """

    def __init__(self, X, train, val, fit_intercept: bool, ops, n_alphas: int = 0,
                 cov=None, complement: bool = True) -> None:
        self.ops = ops
        dtype = X.dtype
        Xva = X[val]
        p = X.shape[1]
        self.n_train = n_tr = len(train)
        # training rows that are not all the others (a gap, a purged repetition): their
        # cross-products are their own, not the full data's minus the validation rows'
        self.Xtr = None if complement else X[train]
        if not complement:
            cov = None
        if cov is None:  # the training rows' own cross-product
            Xtr64 = ops.cast(X[train], ops.float64)
            xm64 = Xtr64.mean(0) if fit_intercept else ops.zeros(p, ops.float64)
            Xtr_c = Xtr64 - xm64
            s, V = numerical_range(*ops.eigh(Xtr_c.T @ Xtr_c), ops)
            del Xtr64, Xtr_c
        else:  # the training rows are all the others: the full cross-product minus ours
            S, sums = cov
            Sva, sva = feature_cov(Xva, ops)
            xm64 = (sums - sva) / n_tr if fit_intercept else ops.zeros(p, ops.float64)
            s, V = numerical_range(*ops.eigh(S - Sva - n_tr * ops.outer(xm64, xm64)), ops)
        self.xm = ops.cast(xm64, dtype)
        self.s = ops.cast(ops.asarray(s), dtype)
        self.V = ops.cast(ops.asarray(V), dtype)
        self.Xva = Xva
        self.XvV = (Xva - self.xm) @ self.V  # (n_val, p)
        self.val = val
        self.train = train
        self.fit_intercept = fit_intercept
        self.G = None
        if gram_errors(Xva.shape[0], p, n_alphas):
            n_val = Xva.shape[0]
            if cov is None:
                Sva, sva = feature_cov(Xva, ops)
            # (X_val - xm)^T (X_val - xm), rotated: the Gram matrix of X_val V
            Mva = (Sva - ops.outer(sva, xm64) - ops.outer(xm64, sva)
                   + n_val * ops.outer(xm64, xm64))
            V64 = ops.asarray(V)
            self.G = ops.cast(V64.T @ Mva @ V64, dtype)  # (p, p)
            self.sxc = ops.cast(sva - n_val * xm64, dtype)

    def _train_rotated(self, XtY, XvY, ym, Yb):
        """``V^T`` times the training cross-product, centred on the training means."""
        C = XtY - XvY if self.Xtr is None else self.Xtr.T @ Yb[self.train]
        if self.fit_intercept:
            C -= self.n_train * self.ops.outer(self.xm, ym)
        return self.V.T @ C

    def _train_mean(self, Yb, ysum, Yva):
        ops = self.ops
        if not self.fit_intercept:
            return ops.zeros(Yb.shape[1], ops.float64)
        if self.Xtr is not None:
            return _colsum64(Yb[self.train], ops) / self.n_train
        return (ysum - _colsum64(Yva, ops)) / self.n_train

    def rotate(self, XtY, Yb, ysum, XvY=None):
        """-> (A, Yva centred by the training mean)."""
        Yva = Yb[self.val]
        ym = self.ops.cast(self._train_mean(Yb, ysum, Yva), Yb.dtype)
        XvY = self.Xva.T @ Yva if XvY is None else XvY
        return self._train_rotated(XtY, XvY, ym, Yb), Yva - ym

    def residual(self, A, alpha: float, Yva_c, buf, out):
        self.ops.divide_into(A, (self.s + alpha)[:, None], buf)
        return self.ops.residual_into(self.XvV, buf, Yva_c, out)

    def errors(self, XtY, Yb, ysum, alphas, XvY=None):
        if self.G is None:
            return super().errors(XtY, Yb, ysum, alphas, XvY)
        ops = self.ops
        Yva = Yb[self.val]
        n_val = Yva.shape[0]
        sy = _colsum64(Yva, ops)
        ym64 = self._train_mean(Yb, ysum, Yva)
        ym = ops.cast(ym64, Yb.dtype)
        XvY = self.Xva.T @ Yva if XvY is None else XvY
        A = self._train_rotated(XtY, XvY, ym, Yb)
        if self.fit_intercept:  # X_val^T Y_val -> (X_val - xm)^T (Y_val - ym)
            XvY -= ops.outer(self.xm, ops.cast(sy, Yb.dtype))
            XvY -= ops.outer(self.sxc, ym)
        B2 = self.V.T @ XvY
        del XvY
        B2 *= 2
        mean = sy / max(n_val, 1)
        sst = _sq_about(Yva, mean, ops)
        yy = sst + n_val * (mean - ym64) ** 2
        sse = ops.empty((len(alphas), Yb.shape[1]), ops.float64)
        buf, gbuf = ops.empty(A.shape, A.dtype), ops.empty(A.shape, A.dtype)
        for i, alpha in enumerate(alphas):
            ops.divide_into(A, (self.s + float(alpha))[:, None], buf)
            ops.residual_into(self.G, buf, B2, gbuf)  # G w - 2 B
            sse[i] = yy + ops.dot_cols_into(buf, gbuf)
        del buf, gbuf, B2
        near = np.flatnonzero(ops.numpy(ops.colmin(sse) < _GRAM_FLOOR * yy))
        if len(near):
            c = ops.index(near)
            sse[:, c] = self._residual_errors(A[:, c], Yva[:, c] - ym[c], alphas)
        return sse, sst, n_val


class _DualFold(_Fold):
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
        s, U = numerical_range(*ops.eigh(Ktt), ops)  # as the refit: the null space left out
        self.s = ops.cast(ops.asarray(s), dtype)
        self.U = ops.cast(ops.asarray(U), dtype)
        self.M = ops.cast(Kvt @ ops.asarray(U), dtype)  # (n_val, rank)
        self.n_train = len(train)
        self.val = val
        self.train = train
        self.fit_intercept = fit_intercept

    def rotate(self, XtY, Yb, ysum, XvY=None):
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


def feature_cov(X, ops) -> tuple[Any, Any]:
    """-> (``X^T X``, column sums), both in float64 from the values of ``X`` (a block of
    rows at a time, no float64 copy of ``X``): what each fold's decomposition and the refit's
    take their training cross-products from (:class:`_PrimalFold`)."""
    p = X.shape[1]
    S, sums = ops.zeros((p, p), ops.float64), ops.zeros(p, ops.float64)
    rows = row_block(p)
    for r in range(0, X.shape[0], rows):
        B = ops.cast(X[r:r + rows], ops.float64)
        S += B.T @ B
        sums += B.sum(0)
    return S, sums


def complements(train, val, n: int) -> bool:
    """Whether a fold's training rows are exactly the ``n`` rows not in its validation set."""
    train, val = np.asarray(train).ravel(), np.asarray(val).ravel()
    return (len(train) + len(val) == n
            and len(np.unique(np.concatenate([train, val]))) == n)


def partitions(folds, n: int) -> bool:
    """Whether the validation sets of ``folds`` hold each of the ``n`` rows exactly once."""
    vals = np.concatenate([np.asarray(val).ravel() for _, val in folds])
    return len(vals) == n and bool(np.array_equal(np.sort(vals), np.arange(n)))


def cross_products(solvers, X, Yb, partition: bool):
    """-> (``X^T Y`` of the batch, each primal fold's ``X_val^T Y_val`` or None).

    When the validation sets partition the rows (:func:`partitions`), ``X^T Y`` is the sum
    of the folds' validation cross-products, which the folds need anyway: one pass of
    ``n p`` per target instead of two.
    """
    if not partition:
        return X.T @ Yb, [None] * len(solvers)
    xvy = [solver.Xva.T @ Yb[solver.val] for solver in solvers]
    XtY = xvy[0] + xvy[1]
    for part in xvy[2:]:
        XtY += part
    return XtY, xvy


def _kfold_errors(solvers, Yb, XtY, ysum, alphas_int, ops, xvy=None):
    """-> (mean validation MSE, mean validation R²) over folds, (n_alphas, n_targets), float64.
    ``xvy``: the folds' validation cross-products from :func:`cross_products`."""
    n_alphas = len(alphas_int)
    b_mse = ops.zeros((n_alphas, Yb.shape[1]), ops.float64)
    r2_sum = ops.zeros((n_alphas, Yb.shape[1]), ops.float64)
    r2_n = ops.zeros(Yb.shape[1], ops.float64)
    xvy = xvy or [None] * len(solvers)
    for k, solver in enumerate(solvers):
        XvY, xvy[k] = xvy[k], None  # freed as the folds go
        sse, sst, n_val = solver.errors(XtY, Yb, ysum, alphas_int, XvY)
        del XvY
        defined = sst > _CONSTANT_FOLD * n_val
        r2_n += defined
        sst = ops.where(defined, sst, 1.0)
        b_mse += sse / n_val
        r2_sum += ops.where(defined, 1.0 - sse / sst, 0.0)
        del sse
    r2 = ops.where(r2_n > 0, r2_sum / ops.where(r2_n > 0, r2_n, 1.0), math.nan)
    return b_mse / len(solvers), r2
