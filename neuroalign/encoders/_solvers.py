"""Cross-validated ridge solvers shared by every ridge-family encoder.

The expensive step of ridge with a grid of alphas is the decomposition of the feature
matrix. Per fold, :func:`ridge_cv` eigendecomposes ``X_train^T X_train`` (primal form,
``n_features <= n_train``) or ``X_train X_train^T`` (dual form) once, and reuses it for
every alpha and every batch of targets. Validation predictions are formed batch by batch,
so memory stays bounded whatever the number of neuroids. The solver for a form is chosen
from :data:`FORMS`; both give the same answer.

With ``folds="loo"`` the leave-one-out (generalised cross-validation) form is used: one
eigendecomposition of the centred Gram matrix gives every leave-one-out residual in closed
form, as in scikit-learn's ``RidgeCV(alpha_per_target=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["RidgeCVResult", "ridge_cv", "ridge_refit", "choose_form", "FORMS", "eig_gram"]


@dataclass
class RidgeCVResult:
    """What a cross-validated ridge fit returns (all numpy, on CPU).

    Attributes
    ----------
    best_alpha_index : ndarray of int, shape (n_targets,)
    best_alphas : ndarray, shape (n_targets,)
    cv_scores : ndarray, shape (n_targets,)
        Mean over folds of the validation R² at the best alpha.
    cv_mse : ndarray, shape (n_alphas, n_targets)
        Mean over folds of the validation mean squared error (selection criterion).
    cv_r2 : ndarray, shape (n_alphas, n_targets)
        Mean over folds of the validation R².
    form : str
        ``"primal"`` or ``"dual"`` (``"loo"`` for leave-one-out).
    """

    best_alpha_index: np.ndarray
    best_alphas: np.ndarray
    cv_scores: np.ndarray
    cv_mse: np.ndarray
    cv_r2: np.ndarray
    form: str
    coef: torch.Tensor | None = None
    intercept: torch.Tensor | None = None


def choose_form(n_samples: int, n_features: int) -> str:
    """``"primal"`` when the feature Gram matrix is the smaller one, else ``"dual"``."""
    return "primal" if n_features <= n_samples else "dual"


def eig_gram(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigendecomposition of a symmetric PSD Gram matrix in float64, eigenvalues clipped at 0.

    On CPU LAPACK is called through numpy (faster than torch's path here); on GPU, torch.
    """
    if G.device.type == "cpu":
        s, V = np.linalg.eigh(G.double().numpy())
        return torch.from_numpy(s).clamp_min(0.0), torch.from_numpy(V)
    s, V = torch.linalg.eigh(G.double())
    return s.clamp_min(0.0), V


class _PrimalFold:
    """Fold solver in the primal form: ``(X^T X + a I)^-1 X^T y`` via ``X^T X = V S V^T``.

    The training cross-product ``X_train^T Y_train`` is obtained from the full-data
    ``X^T Y`` of the batch minus the validation part, so each fold costs ``n_val`` rows.
    """

    def __init__(self, X: torch.Tensor, train, val, fit_intercept: bool) -> None:
        dtype = X.dtype
        Xtr, Xva = X[train], X[val]
        self.n_train = Xtr.shape[0]
        self.xm = Xtr.mean(0) if fit_intercept else torch.zeros_like(Xtr[0])
        Xtr_c = Xtr - self.xm
        s, V = eig_gram(Xtr_c.double().T @ Xtr_c.double())
        self.s = s.to(device=X.device, dtype=dtype)
        self.V = V.to(device=X.device, dtype=dtype)
        self.Xva = Xva
        self.XvV = (Xva - self.xm) @ self.V  # (n_val, p)
        self.val = val
        self.train = train
        self.fit_intercept = fit_intercept

    def rotate(self, XtY: torch.Tensor, Yb: torch.Tensor, ysum: torch.Tensor):
        """-> (A, Yva centred by the training mean)."""
        Yva = Yb[self.val]
        ym = (ysum - Yva.sum(0)) / self.n_train if self.fit_intercept else torch.zeros_like(ysum)
        C = XtY - self.Xva.T @ Yva
        if self.fit_intercept:
            C -= self.n_train * torch.outer(self.xm, ym)
        return self.V.T @ C, Yva - ym

    def residual(self, A: torch.Tensor, alpha: float, Yva_c: torch.Tensor, buf) -> torch.Tensor:
        torch.div(A, (self.s + alpha)[:, None], out=buf)
        return torch.addmm(Yva_c, self.XvV, buf, beta=-1.0)


class _DualFold:
    """Fold solver in the dual form: ``X_val X^T (X X^T + a I)^-1 y`` via ``X X^T = U S U^T``."""

    def __init__(self, X: torch.Tensor, train, val, fit_intercept: bool) -> None:
        dtype = X.dtype
        Xtr, Xva = X[train], X[val]
        self.xm = Xtr.mean(0) if fit_intercept else torch.zeros_like(Xtr[0])
        Xtr_c = Xtr - self.xm
        s, U = eig_gram(Xtr_c.double() @ Xtr_c.double().T)
        self.s = s.to(device=X.device, dtype=dtype)
        self.U = U.to(device=X.device, dtype=dtype)
        self.M = ((Xva - self.xm) @ Xtr_c.T) @ self.U  # (n_val, n_train)
        self.val = val
        self.train = train
        self.fit_intercept = fit_intercept

    def rotate(self, XtY, Yb: torch.Tensor, ysum):
        Ytr = Yb[self.train]
        ym = Ytr.mean(0) if self.fit_intercept else torch.zeros_like(Ytr[0])
        return self.U.T @ (Ytr - ym), Yb[self.val] - ym

    def residual(self, A, alpha: float, Yva_c, buf) -> torch.Tensor:
        torch.div(A, (self.s + alpha)[:, None], out=buf)
        return torch.addmm(Yva_c, self.M, buf, beta=-1.0)


FORMS = {"primal": _PrimalFold, "dual": _DualFold}


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _select(cv_mse: np.ndarray, alphas: np.ndarray, *, tie: str) -> np.ndarray:
    """Index of the best alpha per target (lowest mean validation MSE).

    ``tie="largest"`` breaks (near) ties towards larger alphas, as himalaya does;
    ``tie="first"`` keeps the first minimum, as scikit-learn does.
    """
    score = -cv_mse.astype(np.float64)
    if tie == "largest":
        score = score + (np.log(alphas) * 1e-10)[:, None]
    return np.argmax(score, axis=0)


def ridge_cv(
    X: torch.Tensor,
    Y: torch.Tensor,
    alphas: Sequence[float],
    folds: list[tuple[np.ndarray, np.ndarray]] | str,
    *,
    fit_intercept: bool = True,
    form: str | None = None,
    n_targets_batch: int = 4096,
    progress=None,
    refit: bool = False,
) -> RidgeCVResult:
    """Per-target alpha selection by cross-validated prediction.

    All folds are decomposed first (one eigendecomposition each, shared by every alpha and
    target); then targets are processed in batches: per batch the full-data ``X^T Y`` is
    formed once, each fold's training cross-product is derived from it, the validation
    residuals of every alpha are formed with one GEMM each, and (``refit=True``) the
    final weights of the batch are computed with each target's own alpha.

    Parameters
    ----------
    X : torch.Tensor, shape (n_samples, n_features)
    Y : torch.Tensor, shape (n_samples, n_targets)
        Same dtype and device as ``X``.
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

    Returns
    -------
    RidgeCVResult
    """
    alphas_np = np.asarray(alphas, dtype=np.float64)
    if isinstance(folds, str):
        res = _ridge_loo(X, Y, alphas_np, fit_intercept=fit_intercept,
                         n_targets_batch=n_targets_batch)
        if refit:
            res.coef, res.intercept = ridge_refit(X, Y, res.best_alphas, fit_intercept=fit_intercept,
                                                  form=form, n_targets_batch=n_targets_batch)
        return res
    dtype = X.dtype
    n, p = X.shape
    n_targets = Y.shape[1]
    n_alphas = len(alphas_np)
    used_form = form or choose_form(min(len(tr) for tr, _ in folds), p)
    solvers = []
    for train, val in folds:
        train_t = torch.as_tensor(np.asarray(train), device=X.device)
        val_t = torch.as_tensor(np.asarray(val), device=X.device)
        solvers.append(FORMS[used_form](X, train_t, val_t, fit_intercept))
    full = _Refit(X, fit_intercept, form) if refit else None
    mse = np.zeros((n_alphas, n_targets))
    r2 = np.zeros_like(mse)
    coef = torch.zeros((p, n_targets), dtype=dtype, device=X.device) if refit else None
    intercept = torch.zeros(n_targets, dtype=dtype, device=X.device) if refit else None
    batches = list(_batches(n_targets, n_targets_batch))
    it = progress(batches) if progress is not None else batches
    for sl in it:
        Yb = Y[:, sl].contiguous()
        ysum = Yb.sum(0)
        XtY = X.T @ Yb if used_form == "primal" or refit else None
        b_mse = torch.zeros((n_alphas, Yb.shape[1]), dtype=torch.float64, device=X.device)
        b_r2 = torch.zeros_like(b_mse)
        for solver in solvers:
            A, Yva_c = solver.rotate(XtY, Yb, ysum)
            n_val = Yva_c.shape[0]
            sst = ((Yva_c - Yva_c.mean(0)) ** 2).sum(0).double()
            sst = torch.where(sst > 0, sst, torch.ones_like(sst))
            buf = torch.empty_like(A)
            for a, alpha in enumerate(alphas_np):
                resid = solver.residual(A, float(alpha), Yva_c, buf)
                sse = torch.linalg.vector_norm(resid, dim=0).double() ** 2
                b_mse[a] += sse / n_val
                b_r2[a] += 1.0 - sse / sst
                del resid
            del A, Yva_c, buf
        mse[:, sl] = (b_mse / len(folds)).cpu().numpy()
        r2[:, sl] = (b_r2 / len(folds)).cpu().numpy()
        if refit:
            best = _select(mse[:, sl], alphas_np, tie="largest")
            coef[:, sl], intercept[sl] = full.solve(XtY, Yb, ysum, alphas_np[best])
        del Yb, XtY
    best = _select(mse, alphas_np, tie="largest")
    cols = np.arange(n_targets)
    res = RidgeCVResult(best, alphas_np[best], r2[best, cols], mse, r2, used_form)
    res.coef, res.intercept = coef, intercept
    return res


class _Refit:
    """Full-data decomposition for the final fit with a per-target alpha."""

    def __init__(self, X: torch.Tensor, fit_intercept: bool, form: str | None) -> None:
        n, p = X.shape
        self.form = form or choose_form(n, p)
        self.n = n
        self.xm = X.mean(0) if fit_intercept else torch.zeros_like(X[0])
        self.fit_intercept = fit_intercept
        Xc = X - self.xm
        if self.form == "primal":
            s, V = eig_gram(Xc.double().T @ Xc.double())
        else:
            s, V = eig_gram(Xc.double() @ Xc.double().T)
            self.Xc = Xc
        self.s = s.to(device=X.device, dtype=X.dtype)
        self.V = V.to(device=X.device, dtype=X.dtype)

    def solve(self, XtY, Yb, ysum, alphas_t: np.ndarray):
        ym = ysum / self.n if self.fit_intercept else torch.zeros_like(ysum)
        denom = self.s[:, None] + torch.as_tensor(alphas_t, dtype=self.s.dtype, device=self.s.device)[None, :]
        if self.form == "primal":
            if XtY is None:
                XtY = (self.xm[:, None] * 0)  # pragma: no cover - always given in primal
            C = XtY - self.n * torch.outer(self.xm, ym) if self.fit_intercept else XtY
            W = self.V @ ((self.V.T @ C) / denom)
        else:
            W = self.Xc.T @ (self.V @ ((self.V.T @ (Yb - ym)) / denom))
        return W, ym - self.xm @ W


def _ridge_loo(X, Y, alphas_np, *, fit_intercept, n_targets_batch) -> RidgeCVResult:
    """Leave-one-out errors in closed form from one eigendecomposition of the Gram matrix."""
    n = X.shape[0]
    Xc = X - X.mean(0) if fit_intercept else X
    s, U = eig_gram(Xc.double() @ Xc.double().T)
    n_targets = Y.shape[1]
    mse = np.zeros((len(alphas_np), n_targets))
    r2 = np.zeros_like(mse)
    U2 = U ** 2
    for sl in _batches(n_targets, n_targets_batch):
        Yb = Y[:, sl].double()
        ym = Yb.mean(0) if fit_intercept else torch.zeros_like(Yb[0])
        Yc = Yb - ym
        C = U.T @ Yc
        sst = ((Yb - Yb.mean(0)) ** 2).sum(0)
        sst = torch.where(sst > 0, sst, torch.ones_like(sst))
        for a, alpha in enumerate(alphas_np):
            w = s / (s + alpha)
            diag_h = U2 @ w + (1.0 / n if fit_intercept else 0.0)
            fitted = U @ (C * w[:, None]) + ym
            resid = (Yb - fitted) / (1.0 - diag_h)[:, None]
            sse = (resid ** 2).sum(0)
            mse[a, sl] = (sse / n).cpu().numpy()
            r2[a, sl] = (1.0 - sse / sst).cpu().numpy()
    best = _select(mse, alphas_np, tie="first")
    cols = np.arange(n_targets)
    return RidgeCVResult(best, alphas_np[best], r2[best, cols], mse, r2, "loo")


def ridge_refit(
    X: torch.Tensor,
    Y: torch.Tensor,
    alphas_per_target: np.ndarray,
    *,
    fit_intercept: bool = True,
    form: str | None = None,
    n_targets_batch: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Refit on all samples with each target's own alpha.

    Returns
    -------
    coef : torch.Tensor, shape (n_features, n_targets)
    intercept : torch.Tensor, shape (n_targets,)
    """
    full = _Refit(X, fit_intercept, form)
    n_targets = Y.shape[1]
    coef = torch.zeros((X.shape[1], n_targets), dtype=X.dtype, device=X.device)
    intercept = torch.zeros(n_targets, dtype=X.dtype, device=X.device)
    alphas_per_target = np.asarray(alphas_per_target, dtype=np.float64)
    for sl in _batches(n_targets, n_targets_batch):
        Yb = Y[:, sl]
        XtY = X.T @ Yb if full.form == "primal" else None
        coef[:, sl], intercept[sl] = full.solve(XtY, Yb, Yb.sum(0), alphas_per_target[sl])
    return coef, intercept
