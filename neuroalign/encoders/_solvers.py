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


def choose_form(n_samples: int, n_features: int) -> str:
    """``"primal"`` when the feature Gram matrix is the smaller one, else ``"dual"``."""
    return "primal" if n_features <= n_samples else "dual"


def eig_gram(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigendecomposition of a symmetric PSD Gram matrix in float64, eigenvalues clipped at 0."""
    s, V = torch.linalg.eigh(G.double())
    return s.clamp_min(0.0), V


class _PrimalFold:
    """Fold solver in the primal form: ``(X^T X + a I)^-1 X^T y`` via ``X^T X = V S V^T``."""

    def __init__(self, Xtr: torch.Tensor, Xva: torch.Tensor, dtype) -> None:
        s, V = eig_gram(Xtr.double().T @ Xtr.double())
        self.s = s.to(dtype)
        self.V = V.to(dtype)
        self.Xtr = Xtr
        self.XvV = Xva @ self.V  # (n_val, p)

    def rotate(self, Ytr: torch.Tensor) -> torch.Tensor:
        return self.V.T @ (self.Xtr.T @ Ytr)  # (p, t)

    def predict(self, A: torch.Tensor, alpha: float) -> torch.Tensor:
        return self.XvV @ (A / (self.s + alpha)[:, None])


class _DualFold:
    """Fold solver in the dual form: ``X_val X^T (X X^T + a I)^-1 y`` via ``X X^T = U S U^T``."""

    def __init__(self, Xtr: torch.Tensor, Xva: torch.Tensor, dtype) -> None:
        s, U = eig_gram(Xtr.double() @ Xtr.double().T)
        self.s = s.to(dtype)
        self.U = U.to(dtype)
        self.M = (Xva @ Xtr.T) @ self.U  # (n_val, n_train)

    def rotate(self, Ytr: torch.Tensor) -> torch.Tensor:
        return self.U.T @ Ytr

    def predict(self, A: torch.Tensor, alpha: float) -> torch.Tensor:
        return self.M @ (A / (self.s + alpha)[:, None])


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
) -> RidgeCVResult:
    """Per-target alpha selection by cross-validated prediction.

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
        Wraps the iterable over folds (a progress bar).

    Returns
    -------
    RidgeCVResult
    """
    alphas_np = np.asarray(alphas, dtype=np.float64)
    if isinstance(folds, str):
        return _ridge_loo(X, Y, alphas_np, fit_intercept=fit_intercept,
                          n_targets_batch=n_targets_batch)
    dtype = X.dtype
    n_targets = Y.shape[1]
    n_alphas = len(alphas_np)
    mse = torch.zeros((n_alphas, n_targets), dtype=torch.float64, device=X.device)
    r2 = torch.zeros_like(mse)
    it = progress(folds) if progress is not None else folds
    used_form = None
    for train, val in it:
        train_t = torch.as_tensor(np.asarray(train), device=X.device)
        val_t = torch.as_tensor(np.asarray(val), device=X.device)
        Xtr, Xva = X[train_t], X[val_t]
        if fit_intercept:
            xm = Xtr.mean(0)
            Xtr = Xtr - xm
            Xva = Xva - xm
        used_form = form or choose_form(Xtr.shape[0], Xtr.shape[1])
        solver = FORMS[used_form](Xtr, Xva, dtype)
        n_val = len(val)
        for sl in _batches(n_targets, n_targets_batch):
            Ytr = Y[train_t, sl]
            Yva = Y[val_t, sl]
            if fit_intercept:
                ym = Ytr.mean(0)
                Ytr = Ytr - ym
                Yva = Yva - ym
            sst = ((Yva - Yva.mean(0)) ** 2).sum(0).double()
            sst = torch.where(sst > 0, sst, torch.ones_like(sst))
            A = solver.rotate(Ytr)
            del Ytr
            for a, alpha in enumerate(alphas_np):
                pred = solver.predict(A, float(alpha))
                pred.sub_(Yva)
                sse = pred.pow_(2).sum(0).double()
                mse[a, sl] += sse / n_val
                r2[a, sl] += 1.0 - sse / sst
                del pred
    n_folds = len(folds)
    cv_mse = (mse / n_folds).cpu().numpy()
    cv_r2 = (r2 / n_folds).cpu().numpy()
    best = _select(cv_mse, alphas_np, tie="largest")
    cols = np.arange(n_targets)
    return RidgeCVResult(best, alphas_np[best], cv_r2[best, cols], cv_mse, cv_r2, used_form)


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
    dtype = X.dtype
    n, p = X.shape
    xm = X.mean(0) if fit_intercept else torch.zeros(p, dtype=dtype, device=X.device)
    Xc = X - xm
    form = form or choose_form(n, p)
    if form == "primal":
        s, V = eig_gram(Xc.double().T @ Xc.double())
        s, V = s.to(dtype), V.to(dtype)
    else:
        s, U = eig_gram(Xc.double() @ Xc.double().T)
        s, U = s.to(dtype), U.to(dtype)
    n_targets = Y.shape[1]
    coef = torch.zeros((p, n_targets), dtype=dtype, device=X.device)
    intercept = torch.zeros(n_targets, dtype=dtype, device=X.device)
    alphas_per_target = np.asarray(alphas_per_target, dtype=np.float64)
    for sl in _batches(n_targets, n_targets_batch):
        Yb = Y[:, sl]
        ym = Yb.mean(0) if fit_intercept else torch.zeros_like(Yb[0])
        Yc = Yb - ym
        A = V.T @ (Xc.T @ Yc) if form == "primal" else U.T @ Yc
        a_batch = alphas_per_target[sl]
        for alpha in np.unique(a_batch):
            idx = torch.as_tensor(np.flatnonzero(a_batch == alpha), device=X.device)
            scaled = A[:, idx] / (s + float(alpha))[:, None]
            W = V @ scaled if form == "primal" else Xc.T @ (U @ scaled)
            coef[:, sl.start + idx] = W
        intercept[sl] = ym - xm @ coef[:, sl]
    return coef, intercept
