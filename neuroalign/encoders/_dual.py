"""The dual (kernel) form of ridge without any (n_features x n_targets) float64 work.

When features outnumber samples, :func:`~neuroalign.encoders.ridge_cv` works on the
``n x n`` Gram matrix of the centred features (float64: it is small) and keeps the fitted
model as dual coefficients ``D`` (``n x n_targets``, in the working dtype, in the units of
the responses), as a kernel ridge does: ``coef = (X - x_offset)^T D / feature_var``. The primal weights are formed only when asked
(:meth:`DualWeights.coef`), a block of features at a time; predictions go through the
kernel ``(X_new - x_offset)(X - x_offset)^T`` (float64, a block of features at a time)
and never need them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from neuroalign.encoders._backend import to_numpy

__all__ = ["BLOCK_BYTES", "DualRefit", "DualWeights", "centred_gram", "feature_block",
           "numerical_range"]

#: Bytes of one float64 block of feature columns (the Gram matrix, the kernel of new rows
#: and the primal weights are accumulated over such blocks).
BLOCK_BYTES = 32 * 2**20


def feature_block(n_rows: int) -> int:
    """Feature columns per float64 block of ``n_rows`` rows (:data:`BLOCK_BYTES`)."""
    return max(1, BLOCK_BYTES // (8 * max(int(n_rows), 1)))


def _row_weights(n: int, ops):
    """Distinct weights ``1 + frac(i φ)`` of rows ``0 .. n-1`` (float64): the second line of
    the features' fingerprint, which a reordering of distinct rows changes (their plain
    column sums do not)."""
    w = (np.arange(n, dtype=np.float64) * 0.6180339887498949) % 1.0 + 1.0
    return ops.asarray(w) if ops.name != "numpy" else w


def _fingerprint_into(fp, cols: slice, B, w) -> None:
    """Columns ``cols`` of the ``(2, p)`` float64 fingerprint ``fp``: the column sums of the
    float64 block ``B`` and its sums with the row weights ``w``, each added down the rows
    in order (bit for bit the same for the same columns, whatever the other columns of the
    block)."""
    fp[0, cols] = B.sum(0)
    fp[1, cols] = (B * w[:, None]).sum(0)


def _centred_block(X, cols: slice, x_mean, ops):
    """Columns ``cols`` of ``X`` in float64, minus their means ``x_mean`` (float64)."""
    B = ops.cast(X[:, cols], ops.float64, copy=True)
    B -= x_mean[cols]
    return B


def _syrk_into(K, B, ops) -> None:
    """``K += B B^T`` (lower triangle only for numpy: BLAS ``dsyrk`` writes in place)."""
    if ops.name == "numpy":
        from scipy.linalg.blas import dsyrk

        out = dsyrk(1.0, B.T, beta=1.0, c=K.T, trans=1, lower=0, overwrite_c=1)
        if not np.shares_memory(out, K):  # pragma: no cover - a BLAS that copied
            K[...] = out.T
    else:
        K += B @ B.T


def _symmetrise_lower(K, ops, rows: int = 1024) -> None:
    """Copy the lower triangle of ``K`` onto its upper one, a block of rows at a time."""
    if ops.name != "numpy":
        return
    n = K.shape[0]
    for r0 in range(0, n, rows):
        r1 = min(r0 + rows, n)
        blk = K[r0:r1, r0:r1]
        iu = np.triu_indices(r1 - r0, 1)
        blk[iu] = blk.T[iu]
        if r1 < n:
            K[r0:r1, r1:] = K[r1:, r0:r1].T


def centred_gram(X, fit_intercept: bool, ops) -> tuple[Any, Any, float, Any, Any]:
    """Gram matrix of the features centred in float64, without a float64 copy of ``X``.

    Returns ``(K, x_mean, feature_var, kx, fingerprint)``: ``K = Xc Xc^T / feature_var``
    (float64, ``Xc = X - x_mean``, the means taken in float64), ``feature_var =
    trace(Xc^T Xc) / (n p)`` (1 when the features are constant), ``kx = Xc x_mean``
    (float64, for the intercepts) and the fingerprint of ``X`` (float64 column sums, plain
    and row-weighted, see :class:`DualWeights`). Worked a block of feature columns at a
    time (:func:`feature_block`).
    """
    n, p = X.shape
    x_mean = ops.zeros(p, ops.float64)
    fingerprint = ops.zeros((2, p), ops.float64)
    w = _row_weights(n, ops)
    K = ops.zeros((n, n), ops.float64)
    kx = ops.zeros(n, ops.float64)
    step = feature_block(n)
    for c in range(0, p, step):
        cols = slice(c, min(c + step, p))
        B = ops.cast(X[:, cols], ops.float64, copy=True)
        _fingerprint_into(fingerprint, cols, B, w)
        if fit_intercept and n:
            m = fingerprint[0, cols] / n
            x_mean[cols] = m
            B -= m
            kx += B @ m
        _syrk_into(K, B, ops)
        del B
    _symmetrise_lower(K, ops)
    trace = float(K.diagonal().sum()) if n else 0.0
    var = trace / (n * p) if n * p else 0.0
    var = var if var > 0 and math.isfinite(var) else 1.0
    K /= var
    return K, x_mean, var, kx, fingerprint


def numerical_range(s, U, ops):
    """The eigenpairs ``(s, U)`` of a Gram matrix above its numerical rank's tolerance,
    ``n eps max(s)`` in float64 (as ``numpy.linalg.matrix_rank``); the others span the null
    space of the centred features' transpose (see :class:`DualRefit`)."""
    n = int(s.shape[0])
    if not n:
        return s, U
    s_np = to_numpy(s)
    keep = np.flatnonzero(s_np > n * np.finfo(np.float64).eps * s_np.max())
    if keep.size == n:
        return s, U
    idx = ops.index(keep)
    return s[idx], U[:, idx]


class DualRefit:
    """The final fit in the dual form on all rows, from the centred Gram matrix ``K`` of
    the rescaled features: ``D = U (S + a)^-1 U^T (y - mean y)`` per target.

    Only the eigenvectors of ``K`` above its numerical rank's tolerance (``n eps
    max(S)``, float64, as ``numpy.linalg.matrix_rank``) are kept. The others span the null
    space of ``(X - x_mean)^T`` (repeated stimuli, features of lower rank than the rows,
    the centring): in exact arithmetic the part of ``y`` there adds nothing to the weights
    or predictions, but divided by a small alpha and cast to float32 it would swamp them.
    """

    form = "dual"

    def __init__(self, K, fit_intercept: bool, ops, dtype) -> None:
        self.ops = ops
        self.n = K.shape[0]
        self.fit_intercept = fit_intercept
        s, U = numerical_range(*ops.eigh(K), ops)
        self.s = ops.cast(ops.asarray(s), dtype)
        self.U = ops.cast(ops.asarray(U), dtype)

    def solve(self, Yb, ysum, alphas_t: np.ndarray):
        """-> (dual coefficients of the rescaled problem (n, b), intercepts (b,))."""
        ops = self.ops
        ym = ysum / self.n if self.fit_intercept else ops.zeros(ysum.shape[0], ysum.dtype)
        denom = self.s[:, None] + ops.vector(alphas_t, self.s.dtype)[None, :]
        return self.U @ ((self.U.T @ (Yb - ym)) / denom), ym

    def to_units(self, D, b, ym, ysd, feature_var: float, kx, dtype):
        """Dual coefficients in the responses' units, ``D * ysd`` (``coef = (X - x_mean)^T
        D_units / feature_var``: the features' scale stays a float64 number, so that no
        ratio of units such as ``y / x^2`` has to fit the working dtype), intercepts
        ``y_offset - x_mean @ coef`` (``x_mean @ coef = kx @ D_units / feature_var``) and
        the float64 ``y_offset``."""
        ops = self.ops
        D64 = ops.cast(D, ops.float64) * ysd[None, :]
        y_off = ym + ysd * ops.cast(b, ops.float64)
        intercept = y_off - (kx @ D64) / feature_var
        return ops.cast(D64, dtype), ops.cast(intercept, dtype), y_off


class DualWeights:
    """A ridge fitted in the dual form: ``coef = (X - x_offset)^T dual / feature_var``.

    Parameters
    ----------
    X : ndarray or torch.Tensor, shape (n_samples, n_features)
        The training features, as given to the fit (a reference, not a copy).
    x_offset : ndarray, shape (n_features,)
        Their float64 means (zeros without an intercept).
    dual : ndarray or torch.Tensor, shape (n_samples, n_targets)
        Dual coefficients in the responses' units (the fit's working dtype).
    col_sums : ndarray, shape (2, n_features), optional
        The fingerprint of ``X`` at the fit: its float64 column sums, plain and with
        distinct weights per row (so that a reordering of its rows changes it too). ``X``
        is the caller's array, not a copy: whenever it is read again (:meth:`coef`,
        :meth:`kernel`) its fingerprint is recomputed (bit for bit the same for unchanged
        data) and a :class:`~neuroalign.exceptions.DataFormatError` is raised if it was
        modified since, instead of weights or predictions silently computed from other
        features.
    feature_var : float
        The features' scale (float64, :func:`centred_gram`): the training block and the
        kernel are divided by it in float64 before any product in the working dtype.
    """

    def __init__(self, X, x_offset, dual, col_sums=None, feature_var: float = 1.0) -> None:
        from neuroalign.encoders._backend import backend_for

        self.X = X
        self.x_offset = x_offset
        self.dual = dual
        self.col_sums = col_sums
        self.feature_var = float(feature_var)
        self._ops = backend_for(X, dual)

    def fingerprint(self):
        """The fingerprint of the training features as they are now (a block of features
        at a time, as :meth:`coef` and :meth:`kernel` check them)."""
        ops = self._ops
        n, p = self.X.shape
        fp = ops.zeros((2, p), ops.float64)
        w = _row_weights(n, ops)
        step = feature_block(n)
        for c in range(0, p, step):
            cols = slice(c, min(c + step, p))
            _fingerprint_into(fp, cols, ops.cast(self.X[:, cols], ops.float64, copy=True), w)
        return fp

    def _training_block(self, cols: slice, x_off):
        """Columns ``cols`` of the training features, centred, in float64 (checked against
        the fit's column sums)."""
        ops = self._ops
        B = ops.cast(self.X[:, cols], ops.float64, copy=True)
        if self.col_sums is not None and ops.name == "numpy":
            now = np.empty((2, B.shape[1]))
            _fingerprint_into(now, slice(None), B, _row_weights(B.shape[0], ops))
            if not np.array_equal(now, self.col_sums[:, cols]):
                from neuroalign._validation import format_list
                from neuroalign.exceptions import DataFormatError

                bad = np.flatnonzero((now != self.col_sums[:, cols]).any(0)) + cols.start
                raise DataFormatError(
                    f"The training features of this dual-form ridge fit were modified after "
                    f"the fit (columns {format_list(bad, limit=5)} differ): the fit keeps a "
                    "reference to them, not a copy, to form its weights and predictions. "
                    "Refit, or fit on a copy (X.copy()) if the array is to be changed."
                )
        B -= x_off[cols]
        return B

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.X.shape[1]), int(self.dual.shape[1]))

    @property
    def dtype(self):
        return self.dual.dtype

    def coef(self, out=None):
        """The primal weights ``(n_features, n_targets)`` in the dtype of ``dual``, formed
        a block of features at a time (float64 centring and scaling, then one GEMM per
        block in the working dtype); written into ``out`` when given."""
        ops = self._ops
        n, p = self.X.shape
        if out is None:
            out = ops.empty((p, self.dual.shape[1]), self.dual.dtype)
        x_off = ops.asarray(self.x_offset)
        step = feature_block(n)
        for c in range(0, p, step):
            cols = slice(c, min(c + step, p))
            B = self._training_block(cols, x_off)
            B /= self.feature_var
            B = ops.cast(B, self.dual.dtype)
            out[cols] = B.T @ self.dual
            del B
        return out

    def kernel(self, Xnew):
        """``(X_new - x_offset)(X - x_offset)^T`` in float64, a block of features at a time."""
        ops = self._ops
        n, p = self.X.shape
        Xnew = ops.asarray(Xnew)
        x_off = ops.asarray(self.x_offset)
        K = ops.zeros((Xnew.shape[0], n), ops.float64)
        step = feature_block(max(n, Xnew.shape[0]))
        for c in range(0, p, step):
            cols = slice(c, min(c + step, p))
            K += _centred_block(Xnew, cols, x_off, ops) @ self._training_block(cols, x_off).T
        return K

    def predict(self, Xnew, y_offset, dtype=None):
        """``(X_new - x_offset) @ coef + y_offset`` through the kernel (no primal weights):
        in ``dtype`` (default: float64 for float64 ``X_new``, else the dtype of ``dual``)."""
        ops = self._ops
        if dtype is None:
            dtype = np.result_type(np.asarray(Xnew).dtype, np.dtype(str(self.dual.dtype)
                                                                    .removeprefix("torch.")))
            if not np.issubdtype(dtype, np.floating):
                dtype = self.dual.dtype
        dt = ops.dtype(np.dtype(dtype).name) if ops.name != "numpy" else np.dtype(dtype)
        K = self.kernel(Xnew)
        K /= self.feature_var
        K = ops.cast(K, dt)
        return K @ ops.cast(self.dual, dt) + ops.cast(ops.asarray(y_offset), dt)
