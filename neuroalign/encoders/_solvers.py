"""Cross-validated ridge solvers shared by every ridge-family encoder.

The expensive step of ridge with a grid of alphas is the decomposition of the feature
matrix. Per fold, :func:`ridge_cv` eigendecomposes ``X_train^T X_train`` (primal form,
``n_features <= n_train``) or ``X_train X_train^T`` (dual form) once, and reuses it for
every alpha and every batch of targets. Validation predictions are formed batch by batch,
so memory stays bounded whatever the number of neuroids. The solver for a form is chosen
from :data:`FORMS`; both give the same answer.

Units never matter. Before any work in the working precision, features and targets are
centred (means computed in float64) and rescaled: the features by one number, the root of
their mean variance ``s = trace(Xc^T Xc) / (n p)``, each target by its own standard
deviation. Alphas are relative to ``s`` by default (the penalty applied is ``alpha * s``;
``s == 1`` for z-scored features), the selection rule compares errors relative to each
target's variance, and weights are mapped back to the data's units in float64. So
multiplying X or Y by any factor changes neither the chosen alphas nor the scores, and a
float32 fit of data with a large mean gives the float64 answer.

With ``folds="loo"`` the leave-one-out form is used, as in scikit-learn's
``RidgeCV(alpha_per_target=True)`` (its ``gram`` form for ``n <= p``, its ``cov`` form
otherwise, in float64): one eigendecomposition gives every leave-one-out residual in
closed form.

Backends: numpy arrays, and torch tensors on the CPU, are solved with numpy (and the
BLAS/LAPACK it links; torch is not imported for numpy input); torch tensors on a GPU are
solved with torch there. Results come back in the kind of the input (torch tensors for
torch input) and agree to rounding. The code is written once against
:mod:`neuroalign.encoders._backend`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuroalign._preflight import check_refit, ridge_cv_batch, row_block
from neuroalign._validation import format_list
from neuroalign.encoders._backend import (
    backend_for,
    compute_backend,
    dtype_name,
    like_input,
    to_numpy,
)
from neuroalign.encoders._data import check_finite
from neuroalign.encoders._dual import DualRefit, DualWeights, centred_gram
from neuroalign.exceptions import DataFormatError

__all__ = ["RidgeCVResult", "ridge_cv", "ridge_refit", "choose_form", "FORMS", "eig_gram",
           "feature_scale", "predict_linear", "ridge_loo", "cv_predict"]

#: Slope of the tie rule: ``-MSE / var(y) + TIE_SLOPE * log(alpha)`` is maximised, so equal
#: (relative) validation errors go to the largest alpha, as in himalaya.
TIE_SLOPE = 1e-10
#: A validation fold whose responses vary less than this fraction of the target's overall
#: variance has no defined R² (it is left out of the mean over folds).
_CONSTANT_FOLD = 1e-12


class _LazyCoef:
    """``RidgeCVResult.coef``: the weights as set, or, for a fit in the dual form (``dual``
    set, ``coef`` not), formed from the dual coefficients on first access (a block of
    features at a time, in the working dtype) and kept."""

    def __get__(self, obj, objtype=None):
        if obj is None:
            return None  # the dataclass default
        coef = obj.__dict__.get("_coef")
        if coef is None and obj.__dict__.get("dual") is not None:
            coef = obj.__dict__["_coef"] = like_input(obj.dual.coef(), *obj._inputs)
        return coef

    def __set__(self, obj, value) -> None:
        obj.__dict__["_coef"] = value


@dataclass
class RidgeCVResult:
    """What a cross-validated ridge fit returns (all numpy, on CPU, except the weights,
    which are of the input's kind: numpy arrays, or torch tensors on the input's device).

    Attributes
    ----------
    best_alpha_index : ndarray of int, shape (n_targets,)
    best_alphas : ndarray, shape (n_targets,)
        Chosen alphas, in the units of the ``alphas`` grid (relative to the feature scale
        unless ``relative_alphas=False``); the penalty applied is
        ``best_alphas * alpha_scale``.
    cv_scores : ndarray, shape (n_targets,)
        Mean over folds of the validation R² at the best alpha (each fold's R² uses the
        validation fold's own mean); for ``"loo"``, ``1 - PRESS / SST``.
    cv_mse : ndarray, shape (n_alphas, n_targets)
        Mean over folds of the validation mean squared error, in the targets' units.
    cv_r2 : ndarray, shape (n_alphas, n_targets)
        Mean over folds of the validation R².
    form : str
        ``"primal"`` or ``"dual"`` (``"loo"`` for leave-one-out).
    coef, intercept : ndarray, torch.Tensor or None
        With ``refit=True``: weights (n_features, n_targets) and intercepts in the data's
        units, ``Y ≈ X @ coef + intercept``.
    alpha_scale : float
        Factor from the alphas grid to the penalty applied on the data as given.
    x_offset : ndarray (n_features,) or None, y_offset : ndarray (n_targets,) or None
        With ``refit=True`` (float64): ``Y ≈ (X - x_offset) @ coef + y_offset``, the form to
        predict with in low precision when the features carry a large mean.
    dual : DualWeights or None
        With ``refit=True`` in the dual form: the fitted model as dual coefficients
        (n_samples, n_targets), ``coef = (X - x_offset)^T dual.dual``; ``coef`` is then
        formed from them on first access (and kept), and :meth:`predict` goes through the
        kernel without it.
    """

    _inputs = ()  # the fit's (X, Y), for the kind (numpy/torch) of the lazy weights

    best_alpha_index: np.ndarray
    best_alphas: np.ndarray
    cv_scores: np.ndarray
    cv_mse: np.ndarray
    cv_r2: np.ndarray
    form: str
    coef: Any = _LazyCoef()
    intercept: Any = None
    alpha_scale: float = 1.0
    x_offset: np.ndarray | None = None
    y_offset: np.ndarray | None = None
    dual: DualWeights | None = None

    def predict(self, X) -> np.ndarray:
        """Predictions of the refitted model (``refit=True``) for numpy features ``X``."""
        if self.dual is not None and self.__dict__.get("_coef") is None:
            return to_numpy(self.dual.predict(X, self.y_offset))
        if self.coef is None:
            raise ValueError("RidgeCVResult.predict(): fitted without refit=True; no weights.")
        return predict_linear(X, np.asarray(self.coef), np.asarray(self.intercept),
                              self.x_offset, self.y_offset)


def predict_linear(Xm, coef, intercept, x_offset=None, y_offset=None) -> np.ndarray:
    """``(X - x_offset) @ coef + y_offset`` with the offsets in float64 (exact in float32
    when the features carry a large mean), else ``X @ coef + intercept``. float64 features
    give float64 predictions; others are computed in the precision of ``coef``."""
    dtype = np.result_type(np.asarray(Xm).dtype, coef.dtype)
    if not np.issubdtype(dtype, np.floating):
        dtype = coef.dtype
    if x_offset is None:
        return np.asarray(Xm, dtype=dtype) @ coef.astype(dtype, copy=False) + intercept.astype(dtype)
    Xc = (np.asarray(Xm, dtype=np.float64) - x_offset).astype(dtype, copy=False)
    return Xc @ coef.astype(dtype, copy=False) + np.asarray(y_offset).astype(dtype)


def ridge_loo(X, Y, alphas: Sequence[float], *, fit_intercept: bool = True,
              relative_alphas: bool = False) -> RidgeCVResult:
    """Ridge with a per-target alpha chosen by exact leave-one-out error, refitted on all
    rows, in float64 (``RidgeCV(alpha_per_target=True)`` of scikit-learn). Alphas are
    absolute penalties by default. A 1-d ``Y`` is one target."""
    Y = np.asarray(Y, dtype=np.float64)
    return ridge_cv(np.asarray(X, dtype=np.float64), Y[:, None] if Y.ndim == 1 else Y,
                    alphas, "loo", fit_intercept=fit_intercept, refit=True,
                    relative_alphas=relative_alphas, dtype=np.float64)


def cv_predict(X, Y, folds, alphas: Sequence[float], *, relative_alphas: bool = False
               ) -> np.ndarray:
    """Held-out predictions: for each ``(train, test)`` fold, a :func:`ridge_loo` fit on the
    training rows (alpha per target by leave-one-out within them) predicts the test rows.
    Rows in no test fold stay NaN."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    pred = np.full(Y.shape, np.nan)
    for train, test in folds:
        fit = ridge_loo(X[train], Y[train], alphas, relative_alphas=relative_alphas)
        pred[test] = fit.predict(X[test]).reshape(pred[test].shape)
    return pred


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
    """Centring and rescaling in float64 (see the module docstring)."""

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


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _select(rel_mse: np.ndarray, alphas: np.ndarray, *, tie: str) -> np.ndarray:
    """Index of the best alpha per target (lowest mean validation MSE).

    ``rel_mse`` is the MSE divided by each target's variance, so the rule does not depend on
    units. ``tie="largest"`` breaks (near) ties towards larger alphas, as himalaya does
    (``-rel_mse + 1e-10 log(alpha)`` is maximised); ``tie="first"`` keeps the first
    minimum, as scikit-learn does.
    """
    score = -np.asarray(rel_mse, dtype=np.float64)
    if tie == "largest":
        score = score + (np.log(alphas) * TIE_SLOPE)[:, None]
    return np.argmax(score, axis=0)


def _check_folds(folds, n: int) -> None:
    for k, (train, val) in enumerate(folds):
        for name, idx in (("training", train), ("validation", val)):
            idx = np.asarray(idx)
            if idx.size == 0:
                raise ValueError(
                    f"ridge_cv(): fold {k} has an empty {name} set; expected every fold to "
                    "hold at least one sample on each side."
                )
            if idx.min() < 0 or idx.max() >= n:
                raise ValueError(
                    f"ridge_cv(): fold {k} has {name} indices outside 0..{n - 1} "
                    f"(min {idx.min()!r}, max {idx.max()!r})."
                )


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


def _work_dtype(X, dtype, ops) -> Any:
    """The working precision: ``dtype`` (numpy/torch dtype or name), else that of ``X``
    (float64 for integer data)."""
    name = dtype_name(dtype) or ops.dtype_of(X)
    if not np.issubdtype(np.dtype(name) if name != "bfloat16" else np.float32, np.floating):
        name = "float64"
    return ops.dtype(name)


def _on_disk(Y) -> bool:
    """Responses left on disk (:class:`~neuroalign.store.LazyResponses`)."""
    from neuroalign.store import LazyResponses

    return isinstance(Y, LazyResponses)


def _columns(Y, sl: slice, ops):
    """``Y[:, sl]`` on the backend; read from disk for responses left there."""
    return ops.asarray(np.asarray(Y[:, sl])) if _on_disk(Y) else Y[:, sl]


def ridge_cv(
    X,
    Y,
    alphas: Sequence[float],
    folds: list[tuple[np.ndarray, np.ndarray]] | str,
    *,
    fit_intercept: bool = True,
    form: str | None = None,
    n_targets_batch: int = 4096,
    progress=None,
    refit: bool = False,
    relative_alphas: bool = True,
    dtype=None,
) -> RidgeCVResult:
    """Per-target alpha selection by cross-validated prediction.

    All folds are decomposed first (one eigendecomposition each, shared by every alpha and
    target); then targets are processed in batches: per batch the full-data ``X^T Y`` is
    formed once, each fold's training cross-product is derived from it, the validation
    residuals of every alpha are formed with one GEMM each, and (``refit=True``) the
    final weights of the batch are computed with each target's own alpha.

    Parameters
    ----------
    X : ndarray or torch.Tensor, shape (n_samples, n_features)
        Finite features (a :class:`~neuroalign.exceptions.DataFormatError` names the rows
        and columns otherwise). numpy arrays and CPU tensors are solved with numpy (torch
        is not imported for numpy input); tensors on a GPU with torch, there.
    Y : ndarray, torch.Tensor or LazyResponses, shape (n_samples, n_targets)
        Finite targets (any float dtype); moved to the backend and device of ``X``.
        Responses left on disk (:class:`~neuroalign.store.LazyResponses`) are read one
        batch of ``n_targets_batch`` targets at a time.
    alphas : sequence of float
        Positive regularisation strengths.
    folds : list of (train_index, val_index), or ``"loo"``
    fit_intercept : bool
        Centre features and targets on each training split.
    form : {"primal", "dual"} or None
        Force a form; by default chosen by :func:`choose_form`.
    n_targets_batch : int
        Targets processed at once (bounds memory).
    progress : callable or None
        Wraps the iterable over target batches (a progress bar).
    refit : bool
        Also refit on all samples; sets ``coef`` and ``intercept`` on the result.
    relative_alphas : bool
        True: ``alphas`` are relative to the feature scale (:func:`feature_scale`); the
        penalty applied is ``alpha * feature_scale(X)``, equal to ``alpha`` for z-scored
        features, and the choice does not depend on the units of ``X``. False: absolute
        penalties, as himalaya or scikit-learn use them on the data as given.
    dtype : numpy or torch dtype, str or None
        Working precision (default: the dtype of ``X``). Centring and scaling are done in
        float64 before the data are cast to it.

    Returns
    -------
    RidgeCVResult
    """
    inputs = (X, Y)
    ops = compute_backend(X, Y)
    X = ops.asarray(X)
    Y = Y if _on_disk(Y) else ops.asarray(Y)  # responses on disk: read a batch at a time
    alphas_np = np.asarray(alphas, dtype=np.float64)
    work = _work_dtype(X, dtype, ops)
    n, p = X.shape
    check_finite(X, name="X", func="ridge_cv")
    loo = isinstance(folds, str)
    if not loo:
        _check_folds(folds, n)
    n_targets_batch = ridge_cv_batch(X, Y, alphas_np, folds, form=form, batch=n_targets_batch,
                                     dtype=work, refit=refit, backend=ops.name)  # memory preflight
    if loo:
        used_form, tie = "loo", "first"
    else:
        used_form, tie = form or choose_form(min(len(tr) for tr, _ in folds), p), "largest"
    dual = used_form == "dual"
    if dual:  # kernel ridge: the float64 Gram matrix of the centred features serves every
        # fold and the refit; no copy of the features, no primal weights
        gram, x_mean, feature_var, kx, col_sums = centred_gram(X, fit_intercept, ops)
        prep = _Prep.from_stats(x_mean, feature_var, fit_intercept, ops)
        Xw = None
        solvers = [_DualFold(None, ops.index(train), ops.index(val), fit_intercept, ops,
                             gram=gram, dtype=work) for train, val in folds]
        full = DualRefit(gram, fit_intercept, ops, work) if refit else None
        del gram
    else:
        prep = _Prep(X, fit_intercept, ops)
        Xw = ops.cast(prep.Xw64, work)
        if loo:
            from neuroalign.encoders._loo import LooSolver

            loo_solver = LooSolver(prep.Xw64, fit_intercept, ops)
        else:
            solvers = [_PrimalFold(Xw, ops.index(train), ops.index(val), fit_intercept, ops)
                       for train, val in folds]
        del prep.Xw64
        full = _Refit(Xw, fit_intercept, form, ops) if refit else None
    alpha_scale = prep.feature_var if relative_alphas else 1.0
    alphas_int = alphas_np * alpha_scale / prep.feature_var  # penalties on the rescaled X
    n_targets = Y.shape[1]
    n_alphas = len(alphas_np)
    mse = np.zeros((n_alphas, n_targets))
    rel = np.zeros_like(mse)
    r2 = np.zeros_like(mse)
    if refit:
        coef = ops.zeros((n, n_targets) if dual else (p, n_targets), work)  # dual: D
        intercept = ops.zeros(n_targets, work)
        y_offset = np.zeros(n_targets)
    batches = list(_batches(n_targets, n_targets_batch))
    it = progress(batches) if progress is not None else batches
    for sl in it:
        Yb, ym, ysd, finite = prep.targets(_columns(Y, sl, ops), ops.float64 if loo else work)
        if not bool(finite.all()):
            bad = np.flatnonzero(~ops.numpy(finite)) + sl.start
            raise DataFormatError(
                f"ridge_cv: 'Y' holds NaN or infinite values in {len(bad)} target columns "
                f"{format_list(bad, limit=10)}. Expected finite targets (leave such neuroids out)."
            )
        if loo:
            b_mse, b_r2 = loo_solver.errors(Yb, alphas_int)
            Yb = ops.cast(Yb, work)
        ysum = _colsum64(Yb, ops)
        need_xty = (not loo and used_form == "primal") or (refit and full.form == "primal")
        XtY = Xw.T @ Yb if need_xty else None
        if not loo:
            b_mse, b_r2 = _kfold_errors(solvers, Yb, XtY, ysum, alphas_int, ops)
        rel[:, sl] = ops.numpy(b_mse)
        mse[:, sl] = rel[:, sl] * ops.numpy(ysd ** 2)[None, :]
        r2[:, sl] = ops.numpy(b_r2)
        if refit:
            best = _select(rel[:, sl], alphas_np, tie=tie)
            if dual:
                D, b = full.solve(Yb, ops.cast(ysum, work), alphas_int[best])
                coef[:, sl], intercept[sl], y_off = full.to_units(D, b, ym, ysd,
                                                                  prep.feature_var, kx, work)
            else:
                W, b = full.solve(XtY, Yb, ops.cast(ysum, work), alphas_int[best])
                coef[:, sl], intercept[sl], y_off = prep.to_units(W, b, ym, ysd, work)
            y_offset[sl] = ops.numpy(y_off)
        del Yb, XtY
    best = _select(rel, alphas_np, tie=tie)
    cols = np.arange(n_targets)
    res = RidgeCVResult(best, alphas_np[best], r2[best, cols], mse, r2, used_form,
                        alpha_scale=alpha_scale)
    if refit:
        res.intercept = like_input(intercept, *inputs)
        res.x_offset, res.y_offset = ops.numpy(prep.x_mean), y_offset
        if dual:  # the primal weights are formed only when asked (RidgeCVResult.coef)
            res.dual, res._inputs = DualWeights(X, prep.x_mean, coef, col_sums), inputs
        else:
            res.coef = like_input(coef, *inputs)
    return res


class _Refit:
    """Full-data decomposition for the final fit with a per-target alpha."""

    def __init__(self, X, fit_intercept: bool, form: str | None, ops, gram=None) -> None:
        self.ops = ops
        n, p = X.shape
        self.form = form or choose_form(n, p)
        self.n = n
        X64 = ops.cast(X, ops.float64)
        xm64 = X64.mean(0) if fit_intercept else ops.zeros(p, ops.float64)
        self.xm = ops.cast(xm64, X.dtype)
        self.fit_intercept = fit_intercept
        Xc64 = X64 - xm64
        if self.form == "primal":
            s, V = ops.eigh(Xc64.T @ Xc64)
        else:  # the folds' Gram matrix, centred on all rows, when there is one
            if gram is not None and fit_intercept:
                r = gram.mean(1)
                gram = gram - r[:, None] - r[None, :] + r.mean()
            s, V = ops.eigh(Xc64 @ Xc64.T if gram is None else gram)
            self.Xc = ops.cast(Xc64, X.dtype)
        self.s = ops.cast(ops.asarray(s), X.dtype)
        self.V = ops.cast(ops.asarray(V), X.dtype)

    def solve(self, XtY, Yb, ysum, alphas_t: np.ndarray):
        ops = self.ops
        ym = ysum / self.n if self.fit_intercept else ops.zeros(ysum.shape[0], ysum.dtype)
        denom = self.s[:, None] + ops.vector(alphas_t, self.s.dtype)[None, :]
        if self.form == "primal":
            C = XtY - self.n * ops.outer(self.xm, ym) if self.fit_intercept else XtY
            W = self.V @ ((self.V.T @ C) / denom)
        else:
            W = self.Xc.T @ (self.V @ ((self.V.T @ (Yb - ym)) / denom))
        return W, ym - self.xm @ W


def ridge_refit(
    X,
    Y,
    alphas_per_target: np.ndarray,
    *,
    fit_intercept: bool = True,
    form: str | None = None,
    n_targets_batch: int = 4096,
    relative_alphas: bool = True,
    dtype=None,
):
    """Refit on all samples with each target's own alpha (as :func:`ridge_cv` reports them:
    relative to :func:`feature_scale` unless ``relative_alphas=False``).

    Backends as in :func:`ridge_cv` (numpy for numpy arrays and CPU tensors, torch on a
    GPU; results in the input's kind); ``dtype`` is a numpy or torch dtype or its name.

    Parameters
    ----------
    X, Y : array-like or torch.Tensor
        Features (n_samples, n_features) and targets (n_samples, n_targets).
    alphas_per_target : ndarray, shape (n_targets,)
        Each target's alpha.
    fit_intercept, form, n_targets_batch, relative_alphas, dtype
        As :func:`ridge_cv`.

    Returns
    -------
    coef : ndarray or torch.Tensor, shape (n_features, n_targets)
    intercept : ndarray or torch.Tensor, shape (n_targets,)
    """
    inputs = (X, Y)
    ops = compute_backend(X, Y)
    X, Y = ops.asarray(X), ops.asarray(Y)
    work = _work_dtype(X, dtype, ops)
    check_finite(X, name="X", func="ridge_refit")
    dual = (form or choose_form(*X.shape)) == "dual"
    check_refit(*X.shape, Y.shape[1], itemsize=np.dtype(dtype_name(work)).itemsize,
                form="dual" if dual else "primal", batch=n_targets_batch,
                backend=ops.name)  # memory preflight
    if dual:  # as the refit of ridge_cv: from the centred Gram matrix, no primal work
        gram, x_mean, feature_var, kx, col_sums = centred_gram(X, fit_intercept, ops)
        prep = _Prep.from_stats(x_mean, feature_var, fit_intercept, ops)
        full = DualRefit(gram, fit_intercept, ops, work)
        del gram
    else:
        prep = _Prep(X, fit_intercept, ops)
        Xw = ops.cast(prep.Xw64, work)
        del prep.Xw64
        full = _Refit(Xw, fit_intercept, "primal", ops)
    n_targets = Y.shape[1]
    coef = ops.zeros((X.shape[0] if dual else X.shape[1], n_targets), work)
    intercept = ops.zeros(n_targets, work)
    alphas_int = np.asarray(alphas_per_target, dtype=np.float64) * np.ones(n_targets)
    if not relative_alphas:
        alphas_int = alphas_int / prep.feature_var
    for sl in _batches(n_targets, n_targets_batch):
        Yb, ym, ysd, _ = prep.targets(Y[:, sl], work)
        ysum = ops.cast(_colsum64(Yb, ops), work)
        if dual:
            D, b = full.solve(Yb, ysum, alphas_int[sl])
            coef[:, sl], intercept[sl], _ = full.to_units(D, b, ym, ysd, feature_var, kx, work)
        else:
            W, b = full.solve(Xw.T @ Yb, Yb, ysum, alphas_int[sl])
            coef[:, sl], intercept[sl], _ = prep.to_units(W, b, ym, ysd, work)
    if dual:
        coef = DualWeights(X, x_mean, coef, col_sums).coef()
    return like_input(coef, *inputs), like_input(intercept, *inputs)
