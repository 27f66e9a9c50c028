"""Metric laws as property tests (hypothesis): symmetry, invariances, triangle inequality."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroalign.compare import (
    GaussianStochasticMetric,
    ShapeMetric,
    cka,
    compare_rdms,
    distance_matrix,
    rdm,
    shape_distance,
)

SETTINGS = settings(max_examples=20, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def _orth(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


@SETTINGS
@given(seed=seeds, alpha=st.sampled_from([0.0, 0.5, 1.0]),
       score_method=st.sampled_from(["angular", "euclidean"]))
def test_shape_metric_symmetry_rotation_triangle(seed, alpha, score_method):
    rng = np.random.default_rng(seed)
    X, Y, Z = (rng.standard_normal((20, 5)) for _ in range(3))
    d = lambda a, b: shape_distance(a, b, alpha=alpha, score_method=score_method)  # noqa: E731
    assert abs(d(X, Y) - d(Y, X)) < 1e-8
    assert d(X, X @ _orth(rng, 5) + 3.0) < 1e-6  # rotation and translation
    assert d(X, X[:, rng.permutation(5)]) < 1e-6  # permutation of channels
    assert d(X, Z) <= d(X, Y) + d(Y, Z) + 1e-8
    D = distance_matrix([X, Y, Z], ShapeMetric(alpha, score_method)).values
    assert np.allclose(D, D.T) and np.all(np.diag(D) == 0)


@SETTINGS
@given(seed=seeds)
def test_cca_invariant_to_invertible_maps(seed):
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((30, 4))
    A = rng.standard_normal((4, 4)) + 3 * np.eye(4)
    assert abs(shape_distance(X, Y, alpha=0.0) - shape_distance(X @ A, Y, alpha=0.0)) < 1e-6


@SETTINGS
@given(seed=seeds, kernel=st.sampled_from(["linear", "rbf"]), debiased=st.booleans())
def test_cka_symmetric_and_rotation_invariant(seed, kernel, debiased):
    rng = np.random.default_rng(seed)
    X, Y = rng.standard_normal((15, 6)), rng.standard_normal((15, 4))
    assert abs(cka(X, Y, kernel, debiased) - cka(Y, X, kernel, debiased)) < 1e-10
    assert abs(cka(X, X @ _orth(rng, 6), kernel, debiased) - 1) < 1e-8


@SETTINGS
@given(seed=seeds, metric=st.sampled_from(["correlation", "euclidean", "sqeuclidean"]))
def test_rdm_zero_diagonal_symmetry_and_channel_permutation(seed, metric):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((8, 5))
    D = rdm(X, metric).values
    assert np.all(np.diag(D) == 0) and np.allclose(D, D.T) and (D >= -1e-12).all()
    np.testing.assert_allclose(rdm(X[:, rng.permutation(5)], metric).values, D, atol=1e-10)
    if metric != "correlation":
        np.testing.assert_allclose(rdm(X @ _orth(rng, 5), metric).values, D, atol=1e-10)


@SETTINGS
@given(seed=seeds, method=st.sampled_from(["cosine", "pearson", "spearman", "rho_a", "tau_a",
                                          "cosine_cov", "pearson_cov", "bures"]))
def test_compare_rdms_symmetric_and_stimulus_permutation(seed, method):
    rng = np.random.default_rng(seed)
    a = rdm(rng.standard_normal((7, 4))).values
    b = rdm(rng.standard_normal((7, 4))).values
    s = compare_rdms(a, b, method)
    assert abs(s - compare_rdms(b, a, method)) < 1e-8
    p = rng.permutation(7)
    assert abs(s - compare_rdms(a[p][:, p], b[p][:, p], method)) < 1e-8


def _gauss(rng, m=4, n=2):
    A = rng.standard_normal((m, n, n))
    return rng.standard_normal((m, n)), A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(n)


@settings(max_examples=15, deadline=None)
@given(seed=seeds, alpha=st.sampled_from([0.5, 1.0, 1.5]))
def test_gaussian_stochastic_bound_and_symmetry(seed, alpha):
    rng = np.random.default_rng(seed)
    X, Y = _gauss(rng), _gauss(rng)

    def d(a, x, y):  # several restarts: the fit is non-convex
        return min(GaussianStochasticMetric(a).fit_score(x, y),
                   GaussianStochasticMetric(a, init="rand", n_restarts=4, seed=1).fit_score(x, y))

    d0, d2, da = d(0.0, X, Y), d(2.0, X, Y), d(alpha, X, Y)
    assert da >= np.sqrt((1 - alpha / 2) * d0**2 + (alpha / 2) * d2**2) - 1e-4
    assert abs(da - d(alpha, Y, X)) < 1e-3 * max(1.0, da)
    Q = _orth(rng, 2)
    rot = (X[0] @ Q, Q.T @ X[1] @ Q)
    assert d(alpha, X, rot) < 1e-4
