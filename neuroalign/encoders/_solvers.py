"""Cross-validated ridge solvers shared by every ridge-family encoder.

The expensive step of ridge with a grid of alphas is the decomposition of the feature
matrix. Per fold, :func:`ridge_cv` eigendecomposes ``X_train^T X_train`` (primal form,
``n_features <= n_train``) or ``X_train X_train^T`` (dual form) once, and reuses it for
every alpha and every batch of targets. Validation predictions are formed batch by batch,
so memory stays bounded whatever the number of neuroids. The solver for a form is chosen
from :data:`FORMS`; both give the same answer. In the primal form, folds whose training
rows are all the other rows take their decomposition from one float64 ``X^T X`` minus the
validation rows' part, and when the validation rows far outnumber the features the
validation errors come from the fold's Gram matrices (``p^2`` per target and alpha; see
:class:`~neuroalign.encoders._ridge_folds._PrimalFold`).

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

from collections.abc import Sequence
from contextlib import closing, nullcontext
from typing import Any

import numpy as np

from neuroalign._preflight import check_refit, folded_xty, ridge_cv_batch
from neuroalign._validation import format_list
from neuroalign.encoders._backend import (
    compute_backend,
    dtype_name,
    like_input,
)
from neuroalign.encoders._data import check_finite
from neuroalign.encoders._dual import DualRefit, DualWeights, centred_gram, numerical_range
from neuroalign.encoders._ridge_folds import (
    FORMS,
    _colsum64,
    _DualFold,
    _kfold_errors,
    _Prep,
    _PrimalFold,
    choose_form,
    complements,
    cross_products,
    eig_gram,
    feature_cov,
    feature_scale,
    partitions,
)
from neuroalign.encoders._ridge_result import RidgeCVResult, predict_linear
from neuroalign.exceptions import DataFormatError

__all__ = ["RidgeCVResult", "ridge_cv", "ridge_refit", "choose_form", "FORMS", "eig_gram",
           "feature_scale", "predict_linear", "ridge_loo", "cv_predict"]

#: Slope of the tie rule: ``-MSE / var(y) + TIE_SLOPE * log(alpha)`` is maximised, so equal
#: (relative) validation errors go to the largest alpha, as in himalaya.
TIE_SLOPE = 1e-10


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
    partition = (not loo and not dual and folded_xty(n, p, len(folds))
                 and partitions(folds, n))
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
        # X^T X of the working features, once: the folds' decompositions and the refit's
        # (leave-one-out: only for a primal refit; p x p float64 would not fit for p >> n)
        primal_refit = refit and (form or choose_form(n, p)) == "primal"
        cov = feature_cov(Xw, ops) if not loo or primal_refit else None
        if loo:
            from neuroalign.encoders._loo import LooSolver

            loo_solver = LooSolver(prep.Xw64, fit_intercept, ops)
        else:
            solvers = [_PrimalFold(Xw, ops.index(train), ops.index(val), fit_intercept, ops,
                                   n_alphas=len(alphas_np),
                                   cov=cov, complement=complements(train, val, n))
                       for train, val in folds]
        del prep.Xw64
        full = _Refit(Xw, fit_intercept, form, ops, cov=cov) if refit else None
        del cov
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
    # responses on disk: the next batch is read while this one is solved (the preflight's
    # disk_read_memory counts that read beside a batch's working set)
    reads = closing(Y.blocks(n_targets_batch)) if _on_disk(Y) else nullcontext()
    with reads as ahead:
        for sl in it:
            Yraw = ops.asarray(next(ahead)[2]) if ahead is not None else Y[:, sl]
            Yb, ym, ysd, finite = prep.targets(Yraw, ops.float64 if loo else work)
            del Yraw
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
            xvy = None
            if not loo and used_form == "primal":
                XtY, xvy = cross_products(solvers, Xw, Yb, partition)
            else:
                XtY = Xw.T @ Yb if refit and full.form == "primal" else None
            if not loo:
                b_mse, b_r2 = _kfold_errors(solvers, Yb, XtY, ysum, alphas_int, ops, xvy)
                del xvy
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
            res.dual = DualWeights(X, prep.x_mean, coef, col_sums, prep.feature_var)
            res._inputs = inputs
        else:
            res.coef = like_input(coef, *inputs)
    return res


class _Refit:
    """Full-data decomposition for the final fit with a per-target alpha."""

    def __init__(self, X, fit_intercept: bool, form: str | None, ops, gram=None,
                 cov=None) -> None:
        self.ops = ops
        n, p = X.shape
        self.form = form or choose_form(n, p)
        self.n = n
        self.fit_intercept = fit_intercept
        if self.form == "primal" and cov is not None:  # from feature_cov(X): no copy of X
            S, sums = cov
            xm64 = sums / n if fit_intercept else ops.zeros(p, ops.float64)
            self.xm = ops.cast(xm64, X.dtype)
            s, V = numerical_range(*ops.eigh(S - n * ops.outer(xm64, xm64)), ops)
            self.s = ops.cast(ops.asarray(s), X.dtype)
            self.V = ops.cast(ops.asarray(V), X.dtype)
            return
        X64 = ops.cast(X, ops.float64)
        xm64 = X64.mean(0) if fit_intercept else ops.zeros(p, ops.float64)
        self.xm = ops.cast(xm64, X.dtype)
        Xc64 = X64 - xm64
        if self.form == "primal":
            s, V = numerical_range(*ops.eigh(Xc64.T @ Xc64), ops)
        else:  # the folds' Gram matrix, centred on all rows, when there is one
            if gram is not None and fit_intercept:
                r = gram.mean(1)
                gram = gram - r[:, None] - r[None, :] + r.mean()
            s, V = numerical_range(*ops.eigh(Xc64 @ Xc64.T if gram is None else gram), ops)
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
        coef = DualWeights(X, x_mean, coef, col_sums, feature_var).coef()
    return like_input(coef, *inputs), like_input(intercept, *inputs)
