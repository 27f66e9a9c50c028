"""Stochastic shape metrics (Duong et al., ICLR 2023), netrep conventions.

**Gaussian**: each system is ``(means, covariances)`` per stimulus, ``means`` of shape
``(n_stimuli, n_channels)`` and ``covariances`` ``(n_stimuli, n_channels, n_channels)``.
Over orthogonal ``T`` (``group="orth"``, or permutations / identity),

``d^2 = mean_i [ alpha ||mu_xi - T^T mu_yi||^2 + (2 - alpha) B^2(S_xi, T^T S_yi T) ]``

with ``B^2(A, C) = tr A + tr C - 2 tr((A^1/2 C A^1/2)^1/2)`` the squared Bures distance.
``alpha = 2`` compares means only, ``alpha = 1`` is the 2-Wasserstein distance,
``alpha = 0`` covariances only. Means are NOT centred and nothing is normalised. The fit
alternates per-stimulus rotations ``Q_i`` of the covariance square roots with a global
Procrustes step for ``T`` (netrep's algorithm). The problem is non-convex and the
alternation stops in local optima (netrep's single start from the means did in 6 of 10
small random 3-channel problems for ``alpha = 0``, where the means say nothing): each fit
therefore runs from ``n_restarts`` starts (8 by default), each within both components of
the orthogonal group (rotations, reflections), and keeps the smallest distance; exhaustive
search over O(2) confirms the minimum in 2 channels, and ``start_distances_`` shows how the
starts agreed. The blocks are weighted so that the loss minimised is the reported ``d^2``
(netrep's weights ``alpha``, ``2 - alpha`` minimise another function for ``alpha`` other
than 0, 1, 2). Tolerances are relative: distances scale with the data. The score is
``sign(d^2) sqrt(|d^2|)``.

**Energy**: each system is repeated samples ``(n_stimuli, n_repeats, n_channels)``; the
fit is iteratively reweighted Procrustes over all ``n_repeats^2`` pairs of repeats; the
score is ``sqrt(max(0, mean_i [E|X - Y| - (E|X - X'| + E|Y - Y'|) / 2]))`` (``X - Y`` over
all ``r^2`` pairs, ``X - X'`` over the ``r (r - 1) / 2`` pairs), so repeats must be
independent across the two systems. netrep's absolute constants (tolerance, weight floor)
are relative to the first loss here (the same for a first loss of 1), so the fit does not
depend on units: the distance scales as the square root of the data's scale.

Both are metrics (lower is more similar).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

from neuroalign._logging import get_logger
from neuroalign._validation import check_option, check_positive_int
from neuroalign.compare._inputs import check_finite, to_numpy
from neuroalign.exceptions import DimensionError, NotFittedError

__all__ = ["GaussianStochasticMetric", "EnergyStochasticMetric", "sq_bures"]

GROUPS = ("orth", "perm", "identity")

log = get_logger(__name__)


def _align(A: np.ndarray, B: np.ndarray, group: str, det: float | None = None) -> np.ndarray:
    """``T`` in the group minimising ``||A T - B||_F``; for ``"orth"`` with ``det`` (+1 or
    -1), within that component of the orthogonal group (Kabsch)."""
    if group == "orth":
        U, _, Vt = np.linalg.svd(A.T @ B)
        T = U @ Vt
        if det is not None and np.linalg.det(T) * det < 0:
            U[:, -1] *= -1  # flip the direction of the smallest singular value
            T = U @ Vt
        return T
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

    Parameters
    ----------
    A, C : ndarray, shape (..., n, n)
        Symmetric positive semi-definite matrices (covariances).

    Returns
    -------
    ndarray, shape (...)
        The squared Bures distance of each pair.
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
    scale = np.abs(covs).max()  # tolerances relative to the data: no dependence on units
    if not np.allclose(covs, np.swapaxes(covs, 1, 2), rtol=1e-8, atol=1e-10 * scale):
        raise ValueError(
            f"Invalid value for {name!r} in {func}: covariances are not symmetric. "
            "Expected symmetric positive semi-definite covariance matrices."
        )
    w = np.linalg.eigvalsh(covs)
    if (w.min(axis=1) < -1e-8 * np.maximum(w.max(axis=1), 0)).any():
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
        First start: Procrustes of the means (``"means"``), or random.
    n_restarts : int
        Number of starts (the first as ``init`` says, the others random orthogonal or
        permutation matrices); the lowest distance wins. For ``group="orth"`` each start is
        also run within the other component of the orthogonal group (rotations and
        reflections), so ``2 n_restarts`` fits.
    niter, tol : int, float
        Iterations and stopping tolerance of the alternating fit (the fit stops when the
        loss falls by less than ``tol`` times the first loss in an iteration).
    seed : int, optional
        Seed of the random starts.

    Attributes
    ----------
    T_ : ndarray
        The alignment: ``Y`` is mapped by ``mu @ T_`` and ``T_^T S T_``.
    loss_history_ : list of float
        Loss of the best fit, ``sqrt(sum_i alpha ||mu_xi - T^T mu_yi||^2 + (2 - alpha)
        ||S_xi^1/2 - Q_i^T S_yi^1/2 T||^2)``.
    start_distances_ : ndarray
        The distance reached from each start (both components for ``"orth"``): starts
        that disagree show local optima.

    Notes
    -----
    A metric (lower is more similar): ``is_metric = True``, ``higher_is_better = False``.

    The fit alternates per-stimulus rotations ``Q_i`` (Bures) with a global Procrustes step
    for ``T`` (netrep's algorithm). It is a descent on a non-convex function with local
    optima, and the global step can jump between rotations and reflections and stay there
    (with a single start netrep misses the optimum in about one fit in ten on small random
    problems); hence the starts in both components and the restarts. Two differences from
    netrep: the blocks are weighted by ``sqrt(alpha)`` and ``sqrt(2 - alpha)``, so that the
    loss minimised is ``n_stimuli d^2`` itself (netrep weights them by ``alpha`` and
    ``2 - alpha``, which for ``alpha`` other than 0, 1, 2 minimises another function than
    the distance it reports), and the tolerance is relative, so the fit does not depend on
    units.
    """

    is_metric = True
    higher_is_better = False

    def __init__(self, alpha: float = 1.0, *, group: Literal["orth", "perm", "identity"] = "orth",
                 init: Literal["means", "rand"] = "means", n_restarts: int = 8,
                 niter: int = 1000, tol: float = 1e-10, seed: int | None = 0) -> None:
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

    def _fit_one(self, mx, my, sx, sy, T, det):
        a = float(self.alpha)
        wa, wb = np.sqrt(a), np.sqrt(2 - a)
        A = np.concatenate([wa * mx, wb * sx.reshape(-1, sx.shape[-1])])
        losses = []
        for it in range(self.niter):
            # per-stimulus rotation Q_i aligning T^T S_yi^1/2 to S_xi^1/2 (the Bures term)
            U, _, Vt = np.linalg.svd(sy @ T @ sx)
            QtSy = np.swapaxes(U @ Vt, 1, 2) @ sy
            B = np.concatenate([wa * my, wb * QtSy.reshape(-1, sy.shape[-1])])
            T = _align(B, A, self.group, det)
            losses.append(float(np.linalg.norm(A - B @ T)))
            if it >= 2 and losses[-2] - losses[-1] < self.tol * losses[0]:
                break
        return T, losses

    def _starts(self, mx, my, rng):
        n = mx.shape[1]
        for k in range(self.n_restarts):
            if k == 0 and self.init == "means":
                yield _align(my, mx, self.group)
            elif self.group == "perm":
                yield np.eye(n)[rng.permutation(n)]
            else:
                q, r = np.linalg.qr(rng.standard_normal((n, n)))
                yield q * np.sign(np.diag(r))

    def fit(self, X: Any, Y: Any) -> GaussianStochasticMetric:
        """Fit the alignment of ``Y`` to ``X``.

        Parameters
        ----------
        X, Y : tuple of (means, covariances)
            Per stimulus: means ``(n_stimuli, n_channels)`` and covariances
            ``(n_stimuli, n_channels, n_channels)``.

        Returns
        -------
        GaussianStochasticMetric
            ``self``, fitted.
        """
        self._validate()
        mx, cx = _check_gaussian(X, "X", "GaussianStochasticMetric.fit()")
        my, cy = _check_gaussian(Y, "Y", "GaussianStochasticMetric.fit()")
        if mx.shape != my.shape:
            raise DimensionError(
                f"GaussianStochasticMetric.fit(): 'X' means {mx.shape!r} and 'Y' means "
                f"{my.shape!r}. Expected equal shapes (same stimuli and width)."
            )
        self.n_features_in_ = mx.shape[1]
        if self.group == "identity":
            self.T_ = np.eye(mx.shape[1])
            self.loss_history_ = []
            self.start_distances_ = np.array([self._distance(mx, cx, my, cy, self.T_)])
            return self
        sx, sy = _sqrtm_psd(cx), _sqrtm_psd(cy)
        rng = np.random.default_rng(self.seed)
        best, dists = (np.inf, None, None), []
        dets = (1.0, -1.0) if self.group == "orth" else (None,)
        for T0 in self._starts(mx, my, rng):
            for det in dets:
                T1 = T0.copy()
                if det is not None and np.linalg.det(T1) * det < 0:
                    T1[:, -1] *= -1  # the same start, in the other component
                T, losses = self._fit_one(mx, my, sx, sy, T1, det)
                d = self._distance(mx, cx, my, cy, T)
                dists.append(d)
                if d < best[0]:
                    best = (d, T, losses)
        self.T_, self.loss_history_ = best[1], best[2]
        self.start_distances_ = np.array(dists)
        hits = int(np.sum(self.start_distances_ <= best[0] + 1e-6 * abs(best[0])))
        if len(dists) > 1 and hits == 1:
            log.warning(
                "GaussianStochasticMetric(alpha=%s): the smallest distance (%.6g) was reached "
                "from 1 of %d starts; the fit has local optima here, so a better one may exist: "
                "increase n_restarts.", self.alpha, best[0], len(dists),
            )
        return self

    def _distance(self, mx, cx, my, cy, T) -> float:
        a = float(self.alpha)
        mean_term = np.sum((mx - my @ T) ** 2, axis=1)
        cov_term = sq_bures(cx, T.T @ cy @ T)
        d2 = float(np.mean(a * mean_term + (2 - a) * cov_term))
        return float(np.sign(d2) * np.sqrt(abs(d2)))

    def score(self, X: Any, Y: Any) -> float:
        """Distance under the fitted alignment (``sign(d^2) sqrt(|d^2|)``).

        Parameters
        ----------
        X, Y : tuple of (means, covariances)
            Per stimulus: means ``(n_stimuli, n_channels)`` and covariances
            ``(n_stimuli, n_channels, n_channels)``.

        Returns
        -------
        float
            The distance.
        """
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
        return self._distance(mx, cx, my, cy, self.T_)

    def fit_score(self, X: Any, Y: Any) -> float:
        """``fit(X, Y).score(X, Y)``.

        Parameters
        ----------
        X, Y : tuple of (means, covariances)
            Per stimulus: means ``(n_stimuli, n_channels)`` and covariances
            ``(n_stimuli, n_channels, n_channels)``.

        Returns
        -------
        float
            The distance on the fitting data.
        """
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
        Iterations and tolerance of the iteratively reweighted Procrustes fit (it stops when
        the mean residual falls by less than ``tol`` times the first one).

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
                 niter: int = 100, tol: float = 1e-8) -> None:
        self.group = group
        self.niter = niter
        self.tol = tol

    def fit(self, X: Any, Y: Any) -> EnergyStochasticMetric:
        """Fit ``Q`` aligning ``Y`` to ``X``.

        Parameters
        ----------
        X, Y : array-like, shape (n_stimuli, n_repeats, n_channels)
            Samples of the response to each stimulus.

        Returns
        -------
        EnergyStochasticMetric
            ``self``, fitted.
        """
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
        # netrep's constants (weight floor 1e-6 on sqrt(resid), tolerance 1e-6) are absolute;
        # here they are relative to the first loss, so the fit does not depend on units (the
        # same as netrep's for a first loss of 1)
        floor = max(1e-12 * losses[0], np.finfo(np.float64).tiny)
        Q = np.eye(n)
        for _ in range(self.niter):
            Q = _align(w[:, None] * Yp, w[:, None] * Xp, self.group)
            resid = np.linalg.norm(Xp - Yp @ Q, axis=-1)
            losses.append(float(np.mean(resid)))
            w = 1.0 / np.sqrt(np.maximum(resid, floor))
            if losses[-2] - losses[-1] < self.tol * losses[0]:
                break
        self.Q_, self.loss_history_ = Q, losses
        return self

    def score(self, X: Any, Y: Any) -> float:
        """Energy distance under the fitted alignment.

        Parameters
        ----------
        X, Y : array-like, shape (n_stimuli, n_repeats, n_channels)
            Samples of the response to each stimulus.

        Returns
        -------
        float
            The distance.
        """
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
        """``fit(X, Y).score(X, Y)``.

        Parameters
        ----------
        X, Y : array-like, shape (n_stimuli, n_repeats, n_channels)
            Samples of the response to each stimulus.

        Returns
        -------
        float
            The distance on the fitting data.
        """
        return self.fit(X, Y).score(X, Y)
