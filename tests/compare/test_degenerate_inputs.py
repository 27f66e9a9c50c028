"""Units, constant and NaN inputs: a number only where the comparison is defined, the same
number in any units, a named error otherwise."""

import warnings

import numpy as np
import pytest
import rsatoolbox
import torch

from neuroalign.compare import COMPARE_METHODS, cka, compare_rdms, rdm, rsa_noise_ceiling


@pytest.fixture
def rdms():
    rng = np.random.default_rng(0)
    a = np.stack([rdm(rng.standard_normal((9, 6))).values for _ in range(3)])
    b = np.stack([rdm(rng.standard_normal((9, 6)), "sqeuclidean").values for _ in range(2)])
    return a, b


@pytest.mark.parametrize("method", COMPARE_METHODS)
@pytest.mark.parametrize("factor", [1e-13, 1e6])
def test_compare_rdms_does_not_depend_on_units(rdms, method, factor):
    a, b = rdms
    np.testing.assert_allclose(compare_rdms(a * factor, b, method), compare_rdms(a, b, method),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("value", [0.3, 0.1, 1 / 3, 7.7, 1e-13 / 3])
def test_constant_rdm_has_no_correlation(rdms, value):
    """A constant RDM (whose centring leaves only rounding) raises for pearson and
    spearman: it used to give ~4e-16. rho-a and tau-a are defined (0)."""
    _, b = rdms
    const = np.full(36, value)
    for method in ("pearson", "spearman", "pearson_cov"):
        with pytest.raises(ValueError, match="'a' in compare_rdms\\(\\): an RDM with zero norm"):
            compare_rdms(const, b, method)
        with pytest.raises(ValueError, match="'b' in compare_rdms\\(\\): an RDM with zero norm"):
            compare_rdms(b, const, method)
    for method in ("rho_a", "tau_a"):
        np.testing.assert_array_equal(compare_rdms(const, b, method), 0.0)
    # a constant RDM has a second moment (equidistant stimuli): cosine_cov is defined
    ref = rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(const[None]), rsatoolbox.rdm.RDMs(b),
                                 method="cosine_cov")[0]
    np.testing.assert_allclose(compare_rdms(const, b, "cosine_cov"), ref, rtol=1e-10)


def test_other_undefined_comparisons_raise(rdms):
    _, b = rdms
    with pytest.raises(ValueError, match="'a' in compare_rdms\\(\\): an RDM with zero norm"):
        compare_rdms(np.zeros(36), b, "cosine")
    for method in ("cosine_cov", "pearson_cov", "bures"):  # G = 0
        with pytest.raises(ValueError, match="'a' in compare_rdms\\(\\)"):
            compare_rdms(np.zeros(36), b, method)
    gap = np.zeros(36)  # with missing pairs
    gap[[0, 5]] = np.nan
    with pytest.raises(ValueError, match="'a' in compare_rdms\\(\\)"):
        compare_rdms(gap, b, "cosine_cov")
    negative = -b[0][np.triu_indices(9, 1)]  # tr G < 0 (e.g. crossnobis): no square root
    with pytest.raises(ValueError, match="'a' in compare_rdms\\(\\)"):
        compare_rdms(negative, b, "bures")


def test_noise_ceiling_with_a_constant_subject_raises_cleanly(rdms):
    a, _ = rdms
    data = a.copy()
    data[1] = 0.5
    np.fill_diagonal(data[1], 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero warning on the way
        with pytest.raises(ValueError, match="an RDM with zero norm"):
            rsa_noise_ceiling(data, "pearson")


def _kornblith_linear(X, Y):
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return np.linalg.norm(Xc.T @ Yc) ** 2 / (np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc))


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_does_not_depend_on_units(kernel, debiased):
    """Kernels of data in tiny units underflowed (1e-100: 'centred kernel is zero')."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20, 6))
    Y = X @ rng.standard_normal((6, 30)) + rng.standard_normal((20, 30))
    base = cka(X, Y, kernel, debiased)
    for factor in (1e-13, 1e-100, 1e6, 1e100):
        assert cka(X * factor, Y, kernel, debiased) == pytest.approx(base, rel=1e-10)
        assert cka(torch.from_numpy(X * factor), Y / factor, kernel, debiased) == pytest.approx(
            base, rel=1e-10)


def test_cka_rank_deficient_and_constant_inputs():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((25, 4))
    Xr = np.c_[X[:, :2], 2 * X[:, :2], X[:, :1] - X[:, 1:2]]  # 5 channels, rank 2
    Y = rng.standard_normal((25, 40))  # more channels than stimuli
    assert cka(Xr, Y) == pytest.approx(_kornblith_linear(Xr, Y), rel=1e-10)
    assert cka(Xr * 1e-13, Y * 1e6) == pytest.approx(_kornblith_linear(Xr, Y), rel=1e-10)
    # constant over stimuli up to rounding: no CKA of rounding noise (it gave ~1e-33)
    C = np.zeros((25, 3)) + np.array([0.3, 0.1 + 0.7, 1 / 3])
    with pytest.raises(ValueError, match="'X' in cka\\(\\): its centred kernel is zero"):
        cka(C, Y)
    with pytest.raises(ValueError, match="'Y' in cka\\(\\): its centred kernel is zero"):
        cka(Y, C * 1e-13, debiased=True)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_constant_channel_changes_nothing(kernel):
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((40, 5)), rng.standard_normal((40, 7))
    Xk = np.c_[X, np.full(40, 1e12 / 3)]  # centring leaves rounding of ~1e-4
    assert cka(Xk, Y, kernel) == pytest.approx(cka(X, Y, kernel), rel=1e-12)
    assert cka(Xk, Y, kernel, True) == pytest.approx(cka(X, Y, kernel, True), rel=1e-12)


@pytest.mark.parametrize("method", ["cosine", "pearson", "spearman"])
def test_an_undefined_rdm_is_nan_and_leaves_the_others_unchanged(rdms, method):
    """With ``nan=True`` (as the bootstrap scores resamples) a zero-norm RDM in a stack is
    NaN, and every other pair is scored exactly as without it, on both sides."""
    from neuroalign.compare._compare_rdms import _compare_vectors
    from neuroalign.compare._rdm import squareform_vector

    a, b = rdms
    va, vb = squareform_vector(a) * 3.7, squareform_vector(b) * 0.2
    dead = np.full((1, va.shape[1]), 0.0 if method == "cosine" else 0.4)
    ref = _compare_vectors(va, vb, method, "test")
    left = _compare_vectors(np.vstack([va[:1], dead, va[1:]]), vb, method, "test", nan=True)
    assert np.isnan(left[1]).all()
    np.testing.assert_allclose(np.delete(left, 1, axis=0), ref, rtol=1e-12)
    right = _compare_vectors(va, np.vstack([dead, vb]), method, "test", nan=True)
    assert np.isnan(right[:, 0]).all()
    np.testing.assert_allclose(right[:, 1:], ref, rtol=1e-12)


@pytest.mark.parametrize("units", [1.0, 1e-9, 1e-13, 1e9])
@pytest.mark.parametrize("seed", range(3))
def test_a_k_by_k_stack_is_read_as_a_stack_in_any_units(seed, units):
    """k RDM vectors of k pairs (3 over 3 stimuli, 6 over 4) are a stack, not one square
    RDM, whatever the units: the symmetry test had an absolute tolerance (1e-8), so in
    1e-9 units every such stack passed as symmetric (silently wrong for k = 3). A square
    RDM symmetric only to rounding stays one RDM in any units."""
    from scipy.spatial.distance import pdist, squareform

    rng = np.random.default_rng(seed)
    A, b = rng.random((3, 3)), rng.random(3)
    expect = [np.corrcoef(a, b)[0, 1] for a in A]
    np.testing.assert_allclose(compare_rdms(A * units, b * units, "pearson"), expect,
                               rtol=1e-10)
    A6, b6 = rng.random((6, 6)), rng.random(6)
    np.testing.assert_allclose(compare_rdms(A6 * units, b6 * units), compare_rdms(A6, b6),
                               rtol=1e-12)
    lo, up = rsa_noise_ceiling(A * units, "pearson")  # 3 subjects' vectors of 3 pairs
    assert (lo, up) == pytest.approx(rsa_noise_ceiling(A, "pearson"), rel=1e-10)
    for n in (3, 4, 9):
        D = squareform(pdist(rng.standard_normal((n, 5))))
        rounded = D * (1 + 1e-13 * rng.standard_normal((n, n)))  # not exactly symmetric
        assert not np.array_equal(rounded, rounded.T)
        vec = D[np.triu_indices(n, 1)]
        one = compare_rdms(rounded * units, vec, "pearson")
        assert isinstance(one, float) and one == pytest.approx(1.0, rel=1e-10)
        with_nan = rounded.copy()
        with_nan[0, 1] = with_nan[1, 0] = np.nan  # a missing pair, on both sides
        assert isinstance(compare_rdms(with_nan * units, vec, "spearman"), float)
