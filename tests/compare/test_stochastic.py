"""Stochastic shape metrics against a loop-by-loop reference of netrep's formulas."""

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes, sqrtm

from neuroalign.compare import EnergyStochasticMetric, GaussianStochasticMetric, sq_bures
from neuroalign.exceptions import DimensionError, NotFittedError


def _gaussians(m=6, n=3, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((m, n))
    A = rng.standard_normal((m, n, n))
    covs = A @ np.swapaxes(A, 1, 2) / n + 0.1 * np.eye(n)
    return means, covs


# ---- reference, per stimulus and per iteration, from netrep's published algorithm
def _ref_bures(A, B):
    sA = np.real(sqrtm(A))
    return np.trace(A) + np.trace(B) - 2 * np.trace(np.real(sqrtm(sA @ B @ sA)))


def _ref_fit(X, Y, alpha, niter=1000, tol=1e-8):
    (mx, cx), (my, cy) = X, Y
    sx = [np.real(sqrtm(c)) for c in cx]
    sy = [np.real(sqrtm(c)) for c in cy]
    T = orthogonal_procrustes(my, mx)[0]
    losses = []
    for i in range(niter):
        Qs = [orthogonal_procrustes(T.T @ b, a)[0] for a, b in zip(sx, sy, strict=True)]
        A = np.vstack([alpha * mx] + [(2 - alpha) * a for a in sx])
        B = np.vstack([alpha * my] + [Q.T @ ((2 - alpha) * b) for Q, b in zip(Qs, sy, strict=True)])
        T = orthogonal_procrustes(B, A)[0]
        losses.append(np.linalg.norm(A - B @ T))
        if i >= 2 and losses[-2] - losses[-1] < tol:
            break
    return T


def _ref_score(X, Y, T, alpha):
    (mx, cx), (my, cy) = X, Y
    a = np.sum((mx - my @ T) ** 2, axis=1)
    b = np.array([_ref_bures(p, T.T @ q @ T) for p, q in zip(cx, cy, strict=True)])
    d2 = np.mean(alpha * a + (2 - alpha) * b)
    return np.sign(d2) * np.sqrt(abs(d2))


def test_sq_bures_matches_reference():
    _, covs = _gaussians()
    ref = [_ref_bures(covs[0], c) for c in covs]
    np.testing.assert_allclose(sq_bures(covs[0][None], covs), ref, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_gaussian_matches_netrep_algorithm(alpha):
    X, Y = _gaussians(seed=1), _gaussians(seed=2)
    T = _ref_fit(X, Y, alpha)
    metric = GaussianStochasticMetric(alpha).fit(X, Y)
    np.testing.assert_allclose(metric.T_, T, atol=1e-6)
    assert metric.score(X, Y) == pytest.approx(_ref_score(X, Y, T, alpha), rel=1e-4)


def test_gaussian_alpha2_is_procrustes_of_means():
    X, Y = _gaussians(seed=3), _gaussians(seed=4)
    (mx, _), (my, _) = X, Y
    closed = np.sqrt(2 * (np.sum(mx**2) + np.sum(my**2)
                          - 2 * np.linalg.svd(my.T @ mx, compute_uv=False).sum()) / len(mx))
    assert GaussianStochasticMetric(2.0).fit_score(X, Y) == pytest.approx(closed, rel=1e-8)


def test_gaussian_restarts_and_errors():
    X, Y = _gaussians(seed=5), _gaussians(seed=6)
    d1 = GaussianStochasticMetric(1.0).fit_score(X, Y)
    d_r = GaussianStochasticMetric(1.0, init="rand", n_restarts=3, seed=0).fit_score(X, Y)
    assert d_r == pytest.approx(d1, rel=0.05)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        GaussianStochasticMetric().score(X, Y)
    with pytest.raises(ValueError, match="'alpha' in GaussianStochasticMetric\\(\\): 3"):
        GaussianStochasticMetric(3).fit(X, Y)
    with pytest.raises(ValueError, match="'group' in GaussianStochasticMetric\\(\\): 'rot'"):
        GaussianStochasticMetric(group="rot").fit(X, Y)
    with pytest.raises(DimensionError, match="Expected a tuple"):
        GaussianStochasticMetric().fit(X[0], Y)
    with pytest.raises(DimensionError, match="means \\(6, 3\\) and covariances \\(6, 2, 2\\)"):
        GaussianStochasticMetric().fit((X[0], X[1][:, :2, :2]), Y)
    bad = X[1].copy()
    bad[0, 0, 1] += 1
    with pytest.raises(ValueError, match="not symmetric"):
        GaussianStochasticMetric().fit((X[0], bad), Y)
    with pytest.raises(ValueError, match="negative eigenvalues"):
        GaussianStochasticMetric().fit((X[0], -X[1]), Y)
    nan = X[0].copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        GaussianStochasticMetric().fit((nan, X[1]), Y)
    with pytest.raises(DimensionError, match="Expected equal shapes"):
        GaussianStochasticMetric().fit(X, (Y[0][:4], Y[1][:4]))
    # rank-deficient covariances are accepted (Bures on PSD matrices)
    rd = np.zeros_like(X[1])
    rd[:, 0, 0] = 1.0
    assert np.isfinite(GaussianStochasticMetric(0.0).fit_score((X[0], rd), Y))


def _ref_energy_score(X, Y):
    m, r, _ = X.shape
    dxy = np.mean([[np.linalg.norm(X[i, a] - Y[i, b]) for a in range(r) for b in range(r)]
                   for i in range(m)], axis=1)
    dxx = np.mean([[np.linalg.norm(X[i, a] - X[i, b]) for a in range(r) for b in range(a + 1, r)]
                   for i in range(m)], axis=1)
    dyy = np.mean([[np.linalg.norm(Y[i, a] - Y[i, b]) for a in range(r) for b in range(a + 1, r)]
                   for i in range(m)], axis=1)
    return np.sqrt(max(0, dxy.mean() - 0.5 * (dxx.mean() + dyy.mean())))


def test_energy_metric():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((5, 4, 3)) + rng.standard_normal((5, 1, 3)) * 3
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    metric = EnergyStochasticMetric().fit(X, X @ Q)
    assert metric.loss_history_[-1] <= metric.loss_history_[0]
    Y = rng.standard_normal((5, 4, 3))
    m = EnergyStochasticMetric().fit(X, Y)
    assert m.score(X, Y) == pytest.approx(_ref_energy_score(X, Y @ m.Q_), rel=1e-10)
    # independent repeats of the same distribution after rotation: near zero distance
    Z = rng.standard_normal((5, 40, 3)) * 0.1 + rng.standard_normal((5, 1, 3))
    Z2 = (rng.standard_normal((5, 40, 3)) * 0.1 + Z[:, :1] - (Z[:, :1] - Z.mean(1, keepdims=True))) @ Q
    far = rng.standard_normal((5, 40, 3))
    assert EnergyStochasticMetric().fit_score(Z, Z2) < EnergyStochasticMetric().fit_score(Z, far)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        EnergyStochasticMetric().score(X, Y)
    with pytest.raises(DimensionError, match="n_repeats >= 2"):
        EnergyStochasticMetric().fit(X[:, :1], Y[:, :1])
    with pytest.raises(DimensionError, match="Expected equal shapes"):
        EnergyStochasticMetric().fit(X, Y[:4])
