"""Stochastic shape metrics (Duong et al., ICLR 2023), netrep conventions.

**Gaussian**: each system is ``(means, covariances)`` per stimulus, ``means`` of shape
``(n_stimuli, n_channels)`` and ``covariances`` ``(n_stimuli, n_channels, n_channels)``.
Over orthogonal ``T`` (``group="orth"``, or permutations / identity),

``d^2 = mean_i [ alpha ||mu_xi - T^T mu_yi||^2 + (2 - alpha) B^2(S_xi, T^T S_yi T) ]``

with ``B^2(A, C) = tr A + tr C - 2 tr((A^1/2 C A^1/2)^1/2)`` the squared Bures distance.
``alpha = 2`` compares means only, ``alpha = 1`` is the 2-Wasserstein distance,
``alpha = 0`` covariances only. Means are NOT centred and nothing is normalised. The fit
alternates per-stimulus rotations ``Q_i`` of the covariance square roots with a global
Procrustes step for ``T`` (netrep's algorithm, initialised from the means); it is a
non-convex problem, so ``n_restarts`` random initialisations can be added. The score is
``sign(d^2) sqrt(|d^2|)``.

**Energy**: each system is repeated samples ``(n_stimuli, n_repeats, n_channels)``; the
fit is iteratively reweighted Procrustes over all ``n_repeats^2`` pairs of repeats; the
score is ``sqrt(max(0, mean_i [E|X - Y| - (E|X - X'| + E|Y - Y'|) / 2]))`` (``X - Y`` over
all ``r^2`` pairs, ``X - X'`` over the ``r (r - 1) / 2`` pairs), so repeats must be
independent across the two systems.

Both are metrics (lower is more similar).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from neuroalign._validation import check_option, check_positive_int
from neuroalign.compare._inputs import check_finite, to_numpy
from neuroalign.exceptions import DimensionError, NotFittedError

__all__ = ["GaussianStochasticMetric", "EnergyStochasticMetric", "sq_bures"]

GROUPS = ("orth", "perm", "identity")


def _align(A: np.ndarray, B: np.ndarray, group: str) -> np.ndarray:
    """``T`` in the group minimising ``||A T - B||_F``."""
    if group == "orth":
        U, _, Vt = np.linalg.svd(A.T @ B)
        return U @ Vt
    if group == "perm":
        r, c = linear_sum_assignment(A.T @ B, maximize=True)
        T = np.zeros((A.shape[1], A.shape[1]))
        T[r, c] = 1.0
        return T
    return np.eye(A.shape[1])


def _sqrtm_psd(C: np.ndarray) -> np.ndarray:
    v, u = np.linalg.eigh(C)
    return (u * np.sqrt(np.maximum(v, 0.0))[..., None, :]) @ np.swapaxes(u, -1, -2)


def sq_bures(A: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared Bures distance of PSD matrices (batched over leading dims).

    ``tr A + tr C - 2 sum svd(A^1/2 C^1/2)``; negative eigenvalues are clipped to 0.
    """
    va, ua = np.linalg.eigh(A)
    vc, uc = np.linalg.eigh(C)
    sa = ua * np.sqrt(np.maximum(va, 0.0))[..., None, :]
    sc = uc * np.sqrt(np.maximum(vc, 0.0))[..., None, :]
    nuc = np.linalg.svd(np.swapaxes(sa, -1, -2) @ sc, compute_uv=False).sum(axis=-1)
    return va.sum(axis=-1) + vc.sum(axis=-1) - 2 * nuc


def _check_gaussian(X: Any, name: str, func: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(X, tuple | list) or len(X) != 2:
        raise DimensionError(
            f"Invalid value for {name!r} in {func}: {type(X).__name__}. Expected a tuple "
            "(means (n_stimuli, n_channels), covariances (n_stimuli, n_channels, n_channels))."
        )
    means = np.asarray(to_numpy(X[0]), dtype=np.float64)
    covs = np.asarray(to_numpy(X[1]), dtype=np.float64)
    if means.ndim != 2 or covs.shape != means.shape + (means.shape[1],):
        raise DimensionError(
            f"Invalid value for {name!r} in {func}: means {means.shape!r} and covariances "
            f"{covs.shape!r}. Expected (n_stimuli, n_channels) and "
            "(n_stimuli, n_channels, n_channels)."
        )
    check_finite(means, name=f"{name}[0]", func=func.rstrip("()"))
    check_finite(covs, name=f"{name}[1]", func=func.rstrip("()"))
    if not np.allclose(covs, np.swapaxes(covs, 1, 2), atol=1e-10 * max(1.0, np.abs(covs).max())):
        raise ValueError(
            f"Invalid value for {name!r} in {func}: covariances are not symmetric. "
            "Expected symmetric positive semi-definite covariance matrices."
        )
    w = np.linalg.eigvalsh(covs)
    if (w.min(axis=1) < -1e-8 * np.maximum(1.0, w.max(axis=1))).any():
        raise ValueError(
            f"Invalid value for {name!r} in {func}: covariances with negative eigenvalues "
            f"(min {w.min():.3g}). Expected positive semi-definite matrices (rank-deficient "
            "covariances are fine)."
        )
    return means, covs


class GaussianStochasticMetric:
    """Interpolated 2-Wasserstein distance between Gaussian responses (netrep).

    Parameters
    ----------
    alpha : float in [0, 2]
        ``2`` means only, ``1`` 2-Wasserstein, ``0`` covariances only (Bures).
    group : {"orth", "perm", "identity"}
        Alignment group.
    init : {"means", "rand"}
        Initial ``T``: Procrustes of the means, or random orthogonal.
    n_restarts : int
        Random restarts (``init="rand"``); the lowest loss wins.
    niter, tol : int, float
        Iterations and stopping tolerance of the alternating fit.
    seed : int, optional
        Seed of the random initialisations.

    Attributes
    ----------
    T_ : ndarray
        The alignment: ``Y`` is mapped by ``mu @ T_`` and ``T_^T S T_``.
    loss_history_ : list of float

    Notes
    -----
    A metric (lower is more similar): ``is_metric = True``, ``higher_is_better = False``.
    """

    is_metric = True
    higher_is_better = False

    def __init__(self, alpha: float = 1.0, *, group: Literal["orth", "perm", "identity"] = "orth",
                 init: Literal["means", "rand"] = "means", n_restarts: int = 1,
                 niter: int = 1000, tol: float = 1e-8, seed: int | None = 0) -> None:
        self.alpha = alpha
        self.group = group
        self.init = init
        self.n_restarts = n_restarts
        self.niter = niter
        self.tol = tol
        self.seed = seed

    def _validate(self) -> None:
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, int | float) or not 0 <= a <= 2:
            raise ValueError(
                f"Invalid value for 'alpha' in GaussianStochasticMetric(): {a!r}. Expected a "
                "number in [0, 2] (0 covariances only, 1 2-Wasserstein, 2 means only)."
            )
        check_option(self.group, GROUPS, name="group", func="GaussianStochasticMetric")
        check_option(self.init, ("means", "rand"), name="init", func="GaussianStochasticMetric")
        check_positive_int(self.n_restarts, name="n_restarts", func="GaussianStochasticMetric")
        check_positive_int(self.niter, name="niter", func="GaussianStochasticMetric")

    def _fit_one(self, mx, my, sx, sy, T):
        a = float(self.alpha)
        losses = []
        for it in range(self.niter):
            # per-stimulus rotation Q_i aligning T^T S_yi to S_xi
            M = sy @ T @ sx  # (T^T sy)^T sx, batched
            U, _, Vt = np.linalg.svd(M)
            Q = U @ Vt
            QtSy = np.swapaxes(Q, 1, 2) @ sy
            A = np.concatenate([a * mx, (2 - a) * sx.reshape(-1, sx.shape[-1])])
            B = np.concatenate([a * my, (2 - a) * QtSy.reshape(-1, sy.shape[-1])])
            T = _align(B, A, self.group)
            losses.append(float(np.linalg.norm(A - B @ T)))
            if it >= 2 and losses[-2] - losses[-1] < self.tol:
                break
        return T, losses

    def fit(self, X: Any, Y: Any) -> GaussianStochasticMetric:
        """Fit the alignment of ``Y`` to ``X``; each a tuple ``(means, covariances)``."""
        self._validate()
        mx, cx = _check_gaussian(X, "X", "GaussianStochasticMetric.fit()")
        my, cy = _check_gaussian(Y, "Y", "GaussianStochasticMetric.fit()")
        if mx.shape != my.shape:
            raise DimensionError(
                f"GaussianStochasticMetric.fit(): 'X' means {mx.shape!r} and 'Y' means "
                f"{my.shape!r}. Expected equal shapes (same stimuli and width)."
            )
        sx, sy = _sqrtm_psd(cx), _sqrtm_psd(cy)
        rng = np.random.default_rng(self.seed)
        best = (np.inf, None, None)
        n_starts = 1 if self.init == "means" else self.n_restarts
        for _ in range(n_starts):
            if self.init == "means":
                T0 = _align(my, mx, self.group)
            else:
                T0, _ = np.linalg.qr(rng.standard_normal((mx.shape[1], mx.shape[1])))
            T, losses = self._fit_one(mx, my, sx, sy, T0)
            if losses[-1] < best[0]:
                best = (losses[-1], T, losses)
        self.T_, self.loss_history_ = best[1], best[2]
        self.n_features_in_ = mx.shape[1]
        return self

    def score(self, X: Any, Y: Any) -> float:
        """Distance under the fitted alignment (``sign(d^2) sqrt(|d^2|)``)."""
        if not hasattr(self, "T_"):
            raise NotFittedError(
                "This GaussianStochasticMetric is not fitted yet. Call fit(X, Y) before score."
            )
        mx, cx = _check_gaussian(X, "X", "GaussianStochasticMetric.score()")
        my, cy = _check_gaussian(Y, "Y", "GaussianStochasticMetric.score()")
        if mx.shape[1] != self.n_features_in_ or my.shape != mx.shape:
            raise DimensionError(
                f"GaussianStochasticMetric.score(): means {mx.shape!r} and {my.shape!r}. "
                f"Expected equal shapes with {self.n_features_in_} channels as in fit."
            )
        T = self.T_
        a = float(self.alpha)
        mean_term = np.sum((mx - my @ T) ** 2, axis=1)
        cov_term = sq_bures(cx, T.T @ cy @ T)
        d2 = float(np.mean(a * mean_term + (2 - a) * cov_term))
        return float(np.sign(d2) * np.sqrt(abs(d2)))

    def fit_score(self, X: Any, Y: Any) -> float:
        """``fit(X, Y).score(X, Y)``."""
        return self.fit(X, Y).score(X, Y)


def _check_samples(X: Any, name: str, func: str) -> np.ndarray:
    X = np.asarray(to_numpy(X), dtype=np.float64)
    if X.ndim != 3 or X.shape[1] < 2:
        raise DimensionError(
            f"Invalid value for {name!r} in {func}: shape {X.shape!r}. Expected "
            "(n_stimuli, n_repeats >= 2, n_channels)."
        )
    check_finite(X, name=name, func=func.rstrip("()"))
    return X


class EnergyStochasticMetric:
    """Energy-distance stochastic shape metric on repeated samples (netrep).

    Parameters
    ----------
    group : {"orth", "perm", "identity"}
        Alignment group.
    niter, tol : int, float
        Iterations and tolerance of the iteratively reweighted Procrustes fit.

    Attributes
    ----------
    Q_ : ndarray
        Alignment applied to ``Y`` (``Y @ Q_``).
    loss_history_ : list of float

    Notes
    -----
    A metric (lower is more similar). Repeats must be independent across the two systems.
    """

    is_metric = True
    higher_is_better = False

    def __init__(self, *, group: Literal["orth", "perm", "identity"] = "orth",
                 niter: int = 100, tol: float = 1e-6) -> None:
        self.group = group
        self.niter = niter
        self.tol = tol

    def fit(self, X: Any, Y: Any) -> EnergyStochasticMetric:
        """Fit ``Q`` aligning ``Y`` to ``X``, both ``(n_stimuli, n_repeats, n_channels)``."""
        check_option(self.group, GROUPS, name="group", func="EnergyStochasticMetric")
        check_positive_int(self.niter, name="niter", func="EnergyStochasticMetric")
        X = _check_samples(X, "X", "EnergyStochasticMetric.fit()")
        Y = _check_samples(Y, "Y", "EnergyStochasticMetric.fit()")
        if X.shape != Y.shape:
            raise DimensionError(
                f"EnergyStochasticMetric.fit(): 'X' {X.shape!r} and 'Y' {Y.shape!r}. "
                "Expected equal shapes."
            )
        m, r, n = X.shape
        ii, jj = np.meshgrid(np.arange(r), np.arange(r), indexing="ij")
        Xp = X[:, ii.ravel()].reshape(-1, n)
        Yp = Y[:, jj.ravel()].reshape(-1, n)
        w = np.ones(len(Xp))
        losses = [float(np.mean(np.linalg.norm(Xp - Yp, axis=-1)))]
        Q = np.eye(n)
        for _ in range(self.niter):
            Q = _align(w[:, None] * Yp, w[:, None] * Xp, self.group)
            resid = np.linalg.norm(Xp - Yp @ Q, axis=-1)
            losses.append(float(np.mean(resid)))
            w = 1.0 / np.maximum(np.sqrt(resid), 1e-6)
            if losses[-2] - losses[-1] < self.tol:
                break
        self.Q_, self.loss_history_ = Q, losses
        return self

    def score(self, X: Any, Y: Any) -> float:
        """Energy distance under the fitted alignment."""
        if not hasattr(self, "Q_"):
            raise NotFittedError(
                "This EnergyStochasticMetric is not fitted yet. Call fit(X, Y) before score."
            )
        X = _check_samples(X, "X", "EnergyStochasticMetric.score()")
        Y = _check_samples(Y, "Y", "EnergyStochasticMetric.score()") @ self.Q_
        r = X.shape[1]
        iu, ju = np.triu_indices(r, k=1)
        dxy = np.linalg.norm(X[:, :, None] - Y[:, None, :], axis=-1).mean(axis=(1, 2))
        dxx = np.linalg.norm(X[:, iu] - X[:, ju], axis=-1).mean(axis=1)
        dyy = np.linalg.norm(Y[:, iu] - Y[:, ju], axis=-1).mean(axis=1)
        return float(np.sqrt(max(0.0, dxy.mean() - 0.5 * (dxx.mean() + dyy.mean()))))

    def fit_score(self, X: Any, Y: Any) -> float:
        """``fit(X, Y).score(X, Y)``."""
        return self.fit(X, Y).score(X, Y)
