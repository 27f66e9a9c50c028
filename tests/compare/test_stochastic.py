"""Stochastic shape metrics against a loop-by-loop reference of netrep's formulas."""

import numpy as np
import pytest
from scipy.linalg import sqrtm

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


def _gaussians53(seed):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((5, 3))
    A = rng.standard_normal((5, 3, 3))
    return means, A @ np.swapaxes(A, 1, 2) / 3 + 0.1 * np.eye(3)


# netrep GaussianStochasticMetric(alpha).fit_score(X, Y) (its defaults: one start from the
# means' Procrustes), for alpha = 0, 0.5, 1, 1.5, 2 on (_gaussians53(s), _gaussians53(s + 1))
NETREP_GAUSS = {
    11: [1.1237066158812243, 1.5893041261265803, 1.7269334855551524, 1.8681291700088458,
         1.9813855822279394],
    15: [1.4048014107018933, 1.573869665117012, 1.6886857432569993, 1.790768978671804,
         1.8794118578323966],
}
ALPHAS = [0.0, 0.5, 1.0, 1.5, 2.0]


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_gaussian_matches_netrep_where_it_finds_the_optimum(alpha):
    X, Y = _gaussians53(11), _gaussians53(12)
    metric = GaussianStochasticMetric(alpha).fit(X, Y)
    want = NETREP_GAUSS[11][ALPHAS.index(alpha)]
    assert metric.score(X, Y) == pytest.approx(want, rel=1e-6)
    T = metric.T_
    np.testing.assert_allclose(T.T @ T, np.eye(3), atol=1e-12)
    assert metric.score(X, Y) == pytest.approx(_ref_score(X, Y, T, alpha), rel=1e-8)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_gaussian_improves_on_netreps_local_optima(alpha):
    """On (15, 16) netrep's single start stops in a local optimum for alpha = 0 (1.405,
    where an orthogonal T reaches 0.929); for alpha = 0.5, 1.5 it minimises another weighting
    than the distance it reports. Ours is never above, and is the distance at its own T."""
    X, Y = _gaussians53(15), _gaussians53(16)
    metric = GaussianStochasticMetric(alpha).fit(X, Y)
    d = metric.score(X, Y)
    assert d <= NETREP_GAUSS[15][ALPHAS.index(alpha)] + 1e-8
    assert d == pytest.approx(_ref_score(X, Y, metric.T_, alpha), rel=1e-8)
    if alpha == 0.0:
        assert d < 0.93
    # the best distance is reached from several of the 16 starts
    assert np.sum(metric.start_distances_ <= d + 1e-8) >= 2


@pytest.mark.parametrize("factor", [1e-13, 1e6])
def test_stochastic_metrics_do_not_depend_on_units(factor):
    """Distances scale as the data (Gaussian: as the means; energy: as their square root);
    netrep's absolute tolerances stop its fits early at small units."""
    X, Y = _gaussians53(11), _gaussians53(12)
    for alpha in (0.0, 1.0):
        for starts in (1, 8):  # one start: the fit itself must converge in any units
            base = GaussianStochasticMetric(alpha, n_restarts=starts).fit_score(X, Y)
            scaled = GaussianStochasticMetric(alpha, n_restarts=starts).fit_score(
                (X[0] * factor, X[1] * factor**2), (Y[0] * factor, Y[1] * factor**2))
            assert scaled == pytest.approx(base * factor, rel=1e-7, abs=0)
    Xe, Ye = _energy_data()
    base = EnergyStochasticMetric().fit_score(Xe, Ye)
    assert EnergyStochasticMetric().fit_score(Xe * factor, Ye * factor) == pytest.approx(
        base * np.sqrt(factor), rel=1e-7, abs=0)


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


def _energy_data():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((5, 4, 3)) + rng.standard_normal((5, 1, 3)) * 3
    Y = rng.standard_normal((5, 4, 3))
    Y = Y @ np.linalg.qr(rng.standard_normal((3, 3)))[0] + rng.standard_normal((5, 1, 3))
    return X, Y


def test_energy_matches_netrep():
    # netrep EnergyStochasticMetric().fit(X, Y).score(X, Y) (group "orth")
    X, Y = _energy_data()
    assert EnergyStochasticMetric().fit_score(X, Y) == pytest.approx(1.6342560063994536,
                                                                     rel=1e-6)


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


def test_stimulus_order_does_not_matter():
    X, Y = _gaussians53(11), _gaussians53(12)
    p = np.random.default_rng(0).permutation(5)
    for alpha in (0.0, 1.0):
        assert GaussianStochasticMetric(alpha).fit_score((X[0][p], X[1][p]), (Y[0][p], Y[1][p])) \
            == pytest.approx(GaussianStochasticMetric(alpha).fit_score(X, Y), rel=1e-8)
    Xe, Ye = _energy_data()
    assert EnergyStochasticMetric().fit_score(Xe[p], Ye[p]) == pytest.approx(
        EnergyStochasticMetric().fit_score(Xe, Ye), rel=1e-8)
