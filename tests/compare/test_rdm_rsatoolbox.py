"""RDMs and RDM comparisons against rsatoolbox on fixed-seed data."""

import numpy as np
import pytest
import rsatoolbox
import torch
import xarray as xr
from scipy.spatial.distance import pdist, squareform

from neuroalign.compare import compare_rdms, rdm
from neuroalign.exceptions import DimensionError, StimulusMismatchError
from neuroalign.testing import make_store

RTOL = 1e-4


def _rsa_rdm(X, method, **kw):
    ds = rsatoolbox.data.Dataset(X, obs_descriptors={"stim": np.arange(len(X))})
    return rsatoolbox.rdm.calc_rdm(ds, method=method, descriptor="stim", **kw).get_matrices()[0]


@pytest.fixture
def X():
    return np.random.default_rng(0).standard_normal((12, 30))


@pytest.mark.parametrize(
    "ours, theirs", [("correlation", "correlation"), ("sqeuclidean", "euclidean")]
)
def test_rdm_matches_rsatoolbox(X, ours, theirs):
    d = rdm(X, ours)
    np.testing.assert_allclose(d.values, _rsa_rdm(X, theirs), rtol=RTOL, atol=1e-12)
    assert d.dims == ("stimulus_i", "stimulus_j")
    assert np.all(np.diag(d.values) == 0)


def test_euclidean_is_plain_distance(X):
    np.testing.assert_allclose(rdm(X, "euclidean").values, squareform(pdist(X)), rtol=1e-10)
    np.testing.assert_allclose(
        rdm(X, "sqeuclidean").values, squareform(pdist(X)) ** 2 / X.shape[1], rtol=1e-10
    )


def test_mahalanobis_matches_rsatoolbox(X):
    A = np.random.default_rng(1).standard_normal((30, 30))
    P = A @ A.T / 30 + np.eye(30)
    np.testing.assert_allclose(
        rdm(X, "mahalanobis", noise=P).values, _rsa_rdm(X, "mahalanobis", noise=P), rtol=RTOL
    )


def test_poisson_matches_rsatoolbox():
    X = np.random.default_rng(2).poisson(3.0, (10, 25)).astype(float)
    np.testing.assert_allclose(rdm(X, "poisson").values, _rsa_rdm(X, "poisson"), rtol=RTOL)


def test_crossnobis_matches_rsatoolbox():
    rng = np.random.default_rng(3)
    n_cond, n_runs, p = 6, 4, 20
    signal = rng.standard_normal((n_cond, p))
    cond = np.tile(np.arange(n_cond), n_runs)
    runs = np.repeat(np.arange(n_runs), n_cond)
    Y = signal[cond] + rng.standard_normal((len(cond), p))
    A = rng.standard_normal((p, p))
    P = A @ A.T / p + np.eye(p)
    ds = rsatoolbox.data.Dataset(Y, obs_descriptors={"cond": cond, "run": runs})
    for noise in (None, P):
        ref = rsatoolbox.rdm.calc_rdm(
            ds, method="crossnobis", descriptor="cond", cv_descriptor="run", noise=noise
        ).get_matrices()[0]
        ours = rdm(Y, "crossnobis", conditions=cond, runs=runs, noise=noise)
        np.testing.assert_allclose(ours.values, ref, rtol=RTOL, atol=1e-12)


def test_crossnobis_from_trial_store_uses_repetitions():
    ds = make_store(n_stimuli=8, n_neuroids=15, n_repetitions=3, seed=1)
    d = rdm(ds, "crossnobis")
    assert d.sizes["stimulus_i"] == 8
    assert set(d.coords["stimulus_id_i"].values) == set(np.unique(ds.stimulus_id.values))
    # unbiased: distances between noise-free equal patterns average to ~0, real ones > 0
    assert np.mean(d.values[np.triu_indices(8, 1)]) > 0


def test_crossnobis_errors():
    Y = np.zeros((4, 3)) + np.arange(12).reshape(4, 3)
    with pytest.raises(ValueError, match="at least 2 runs"):
        rdm(Y, "crossnobis", conditions=[0, 1, 2, 3], runs=[0, 0, 0, 0])
    with pytest.raises(ValueError, match="condition '2' is missing from run '0'"):
        rdm(Y, "crossnobis", conditions=["0", "1", "2", "3"], runs=[0, 0, 1, 0])
    with pytest.raises(ValueError, match="'conditions' in rdm\\(metric='crossnobis'\\): None"):
        rdm(Y, "crossnobis", runs=[0, 1, 0, 1])
    with pytest.raises(DimensionError, match="shape \\(3,\\)"):
        rdm(Y, "crossnobis", conditions=[0, 1, 2], runs=[0, 1, 0, 1])
    with pytest.raises(ValueError, match="name of a coordinate"):
        rdm(Y, "crossnobis", conditions="stimulus_id", runs=[0, 1, 0, 1])


def test_rdm_errors(X):
    with pytest.raises(ValueError, match="Invalid value for 'metric' in rdm\\(\\): 'corelation'"):
        rdm(X, "corelation")
    bad = X.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        rdm(bad, "correlation")
    const = X.copy()
    const[4] = 1.0
    with pytest.raises(ValueError, match="constant across channels \\(rows \\[4\\]\\)"):
        rdm(const, "correlation")
    with pytest.raises(ValueError, match="'noise' in rdm\\(metric='mahalanobis'\\): None"):
        rdm(X, "mahalanobis")
    with pytest.raises(DimensionError, match="shape \\(3, 3\\)"):
        rdm(X, "mahalanobis", noise=np.eye(3))
    with pytest.raises(ValueError, match="not symmetric"):
        rdm(X, "mahalanobis", noise=np.triu(np.ones((30, 30))))
    with pytest.raises(ValueError, match="negative values"):
        rdm(X, "poisson")
    with pytest.raises(DimensionError, match="Expected 2 dims"):
        rdm(np.zeros(5))
    with pytest.raises(DimensionError, match="at least 2 stimuli"):
        rdm(np.zeros((1, 5)))


def test_rdm_from_store_and_dataarray():
    ds = make_store(n_stimuli=10, n_neuroids=12, seed=2)
    with pytest.raises(DimensionError, match="average_repetitions"):
        rdm(ds)
    avg = ds.na.average_repetitions()
    d = rdm(avg)
    np.testing.assert_allclose(
        d.values, _rsa_rdm(avg.responses.values.astype(float), "correlation"), rtol=RTOL
    )
    assert list(d.coords["stimulus_id_i"].values) == list(avg.stimulus_id.values)
    feats = xr.Dataset(
        {"layer1": (("stimulus", "layer1_unit"), np.random.default_rng(0).random((10, 5))),
         "layer2": (("stimulus", "layer2_unit"), np.random.default_rng(1).random((10, 6)))},
        coords={"stimulus_id": ("stimulus", avg.stimulus_id.values)},
    )
    with pytest.raises(DimensionError, match="one layer"):
        rdm(feats)
    assert rdm(feats["layer1"]).shape == (10, 10)
    with pytest.raises(DimensionError, match="Expected a 'stimulus' dim"):
        rdm(xr.DataArray(np.zeros((3, 4)), dims=("a", "b")))


def test_torch_path_equals_numpy(X):
    for metric in ("correlation", "euclidean", "sqeuclidean", "poisson"):
        Z = np.abs(X) if metric == "poisson" else X
        a = rdm(Z, metric).values
        b = rdm(torch.from_numpy(Z), metric).values
        c = rdm(Z, metric, device="cpu").values
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(c, a, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- compare


@pytest.fixture
def rdm_stacks():
    rng = np.random.default_rng(4)
    a = np.stack([rdm(rng.standard_normal((10, 8)), "correlation").values for _ in range(3)])
    b = np.stack([rdm(rng.standard_normal((10, 8)), "sqeuclidean").values for _ in range(2)])
    # plant ties in one RDM to exercise tie handling
    b[1] = np.round(b[1], 1)
    return a, b


@pytest.mark.parametrize(
    "ours, theirs",
    [("cosine", "cosine"), ("pearson", "corr"), ("spearman", "spearman"), ("rho_a", "rho-a"),
     ("tau_a", "tau-a"), ("cosine_cov", "cosine_cov"), ("pearson_cov", "corr_cov"),
     ("bures", "bures")],
)
def test_compare_matches_rsatoolbox(rdm_stacks, ours, theirs):
    a, b = rdm_stacks
    ref = rsatoolbox.rdm.compare(
        rsatoolbox.rdm.RDMs(a), rsatoolbox.rdm.RDMs(b), method=theirs
    )
    got = compare_rdms(a, b, ours)
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=1e-10)
    # single against single is a float, stack against one is 1-D
    assert isinstance(compare_rdms(a[0], b[0], ours), float)
    np.testing.assert_allclose(compare_rdms(a, b[1], ours), ref[:, 1], rtol=RTOL, atol=1e-10)


@pytest.mark.parametrize("method", ["spearman", "rho_a"])
def test_compare_torch_ranking_equals_numpy(rdm_stacks, method):
    a, b = rdm_stacks
    np.testing.assert_allclose(compare_rdms(a, b, method, device="cpu"),
                               compare_rdms(a, b, method), rtol=1e-12)
    big = np.random.default_rng(0).random((20, 45)).round(1)  # > one chunk, with ties
    np.testing.assert_allclose(compare_rdms(big, b, method, device="cpu"),
                               compare_rdms(big, b, method), rtol=1e-12)


def test_compare_nan_entries_are_left_out(rdm_stacks):
    a, b = rdm_stacks
    a, bn = a.copy(), b.copy()
    for i, j in ((0, 1), (2, 7), (3, 4)):
        a[:, i, j] = a[:, j, i] = np.nan
        bn[:, i, j] = bn[:, j, i] = np.nan
    ra, rb = rsatoolbox.rdm.RDMs(a), rsatoolbox.rdm.RDMs(bn)
    # a NaN on one side only leaves that entry out of both
    for ours, theirs in (("spearman", "spearman"), ("pearson", "corr"), ("tau_a", "tau-a"),
                         ("cosine_cov", "cosine_cov"), ("pearson_cov", "corr_cov")):
        ref = rsatoolbox.rdm.compare(ra, rb, method=theirs)
        np.testing.assert_allclose(compare_rdms(a, b, ours), ref, rtol=1e-10, atol=1e-12)
    # the covariance weighting with missing pairs is a double-centring: it differs from the
    # complete comparison and from dropping the entries from the plain cosine
    full = compare_rdms(rdm_stacks[0], b, "cosine_cov")
    assert np.abs(compare_rdms(a, b, "cosine_cov") - full).max() > 1e-4
    assert np.isfinite(compare_rdms(a, b, "bures")).all()


def test_compare_dataarrays_join_on_stimulus_id():
    rng = np.random.default_rng(5)
    ids = np.array([f"s{i}" for i in range(8)])
    X = xr.DataArray(rng.standard_normal((8, 6)), dims=("stimulus", "unit"),
                     coords={"stimulus_id": ("stimulus", ids)})
    Y = xr.DataArray(rng.standard_normal((8, 6)), dims=("stimulus", "unit"),
                     coords={"stimulus_id": ("stimulus", ids)})
    base = compare_rdms(rdm(X), rdm(Y), "pearson")
    perm = rng.permutation(8)
    assert compare_rdms(rdm(X), rdm(Y.isel(stimulus=perm)), "pearson") == pytest.approx(base)
    stack = xr.concat([rdm(X), rdm(Y)], dim="model").assign_coords(model=["x", "y"])
    out = compare_rdms(stack, rdm(Y), "pearson")
    assert out.dims == ("model",) and out.sel(model="y") == pytest.approx(1.0)
    other = Y.assign_coords(stimulus_id=("stimulus", np.r_[ids[:-1], ["zz"]]))
    with pytest.raises(StimulusMismatchError, match="'s7'"):
        compare_rdms(rdm(X), rdm(other), "pearson")


def test_compare_errors(rdm_stacks):
    a, b = rdm_stacks
    with pytest.raises(ValueError, match="'method' in compare_rdms\\(\\): 'kendall'"):
        compare_rdms(a, b, "kendall")
    with pytest.raises(DimensionError, match="45 pairs and 'b' of 3"):
        compare_rdms(a, np.ones(3), "cosine")
    with pytest.raises(ValueError, match="zero norm"):
        compare_rdms(a, np.ones(45), "pearson")
    with pytest.raises(ValueError, match="infinite"):
        compare_rdms(a, np.full(45, np.inf), "pearson")


# ------------------------------------------------------ noise-weighted RDMs, more inputs
@pytest.mark.parametrize("kind", ["full", "diagonal", "shrinkage"])
def test_mahalanobis_precisions_match_rsatoolbox(X, kind):
    rng = np.random.default_rng(11)
    if kind == "full":
        A = rng.standard_normal((30, 30))
        P = np.linalg.inv(A @ A.T / 30 + 0.5 * np.eye(30))
    elif kind == "diagonal":
        P = np.diag(rng.uniform(0.2, 5.0, 30))
    else:  # rsatoolbox's own shrinkage estimate from residuals
        resid = rng.standard_normal((40, 30)) @ rng.standard_normal((30, 30)) * 0.3
        P = rsatoolbox.data.noise.prec_from_residuals(resid)
    ref = _rsa_rdm(X, "mahalanobis", noise=P)
    ours = rdm(X, "mahalanobis", noise=P).values
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rdm(torch.from_numpy(X), "mahalanobis", noise=P).values, ref,
                               rtol=1e-10, atol=1e-12)
    if kind == "diagonal":  # the diagonal alone is accepted
        np.testing.assert_allclose(rdm(X, "mahalanobis", noise=np.diag(P)).values, ref,
                                   rtol=1e-10, atol=1e-12)
    # identity precision: rsatoolbox's "euclidean" (squared, / p)
    np.testing.assert_allclose(rdm(X, "mahalanobis", noise=np.eye(30)).values,
                               _rsa_rdm(X, "euclidean"), rtol=1e-10, atol=1e-12)


def test_poisson_with_zero_counts_matches_rsatoolbox():
    rng = np.random.default_rng(12)
    X = rng.poisson(0.7, (12, 40)).astype(float)  # many zeros
    X[3] = 0.0  # a silent stimulus
    ref = _rsa_rdm(X, "poisson")
    np.testing.assert_allclose(rdm(X, "poisson").values, ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(rdm(torch.from_numpy(X), "poisson").values, ref, rtol=1e-10,
                               atol=1e-14)
    # rates, not counts: the rsatoolbox prior (x + 0.1) / 1.1 is in the data's units
    Xr = rng.gamma(2.0, 1.5, (12, 40))
    np.testing.assert_allclose(rdm(Xr, "poisson").values, _rsa_rdm(Xr, "poisson"), rtol=1e-10)


def test_crossnobis_unbalanced_runs_match_rsatoolbox():
    """Runs with different numbers of trials per condition (repeats within a run), rows in
    any order: the fold means average the trials, as rsatoolbox's average_dataset_by."""
    rng = np.random.default_rng(13)
    n_cond, p = 5, 12
    signal = rng.standard_normal((n_cond, p))
    cond = np.r_[np.arange(5), np.arange(5), 2, np.arange(5), 0, 0, 4]
    runs = np.r_[[0] * 5, [1] * 5, 1, [2] * 5, 2, 2, 2]
    Y = signal[cond] + rng.standard_normal((len(cond), p))
    perm = rng.permutation(len(cond))
    cond, runs, Y = cond[perm], runs[perm], Y[perm]
    A = rng.standard_normal((p, p))
    P = np.linalg.inv(A @ A.T / p + np.eye(p))
    ds = rsatoolbox.data.Dataset(Y, obs_descriptors={"cond": cond, "run": runs})
    for noise in (None, P):
        ref = rsatoolbox.rdm.calc_rdm(ds, method="crossnobis", descriptor="cond",
                                      cv_descriptor="run", noise=noise)
        ours = rdm(Y, "crossnobis", conditions=cond, runs=runs, noise=noise)
        order = np.argsort(ours.coords["stimulus_id_i"].values.astype(int))
        np.testing.assert_allclose(ours.values[order][:, order], ref.get_matrices()[0],
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("metric, power", [("correlation", 0), ("euclidean", 1),
                                           ("sqeuclidean", 2), ("crossnobis", 2)])
@pytest.mark.parametrize("factor", [1e-13, 1e6])
def test_rdm_units(X, metric, power, factor):
    """RDMs scale as documented (correlation: not at all; euclidean: as the data; squared
    metrics: as its square), on numpy and torch."""
    kw = {}
    if metric == "crossnobis":
        kw = {"conditions": np.tile(np.arange(6), 2), "runs": np.repeat([0, 1], 6)}
    base = rdm(X, metric, **kw).values
    for data in (X * factor, torch.from_numpy(X * factor)):
        np.testing.assert_allclose(rdm(data, metric, **kw).values, base * factor**power,
                                   rtol=1e-9, atol=1e-12 * factor**power)
    P = np.diag(np.linspace(1, 2, 30))
    np.testing.assert_allclose(rdm(X * factor, "mahalanobis", noise=P / factor**2).values,
                               rdm(X, "mahalanobis", noise=P).values, rtol=1e-9)


def test_correlation_rdm_constant_patterns_in_any_units(X):
    """A pattern constant across channels (to rounding) has no correlation: the error names
    it in any units; a pattern with real variation in tiny units is fine."""
    for factor in (1e-13, 1.0, 1e8):
        Z = X * factor
        Z[4] = 0.1 * factor  # constant, with the rounding of 0.1
        with pytest.raises(ValueError, match="1 pattern\\(s\\) are constant across channels "
                                             "\\(rows \\[4\\]\\)"):
            rdm(Z, "correlation")
    np.testing.assert_allclose(rdm(X * 1e-13).values, rdm(X).values, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("offset", [2.0**20, -(2.0**30), 3 * 2.0**33])
@pytest.mark.parametrize("seed", range(3))
def test_distance_rdms_do_not_depend_on_a_common_offset(seed, offset):
    """Distances do not change when one vector is subtracted from every pattern. The data
    are multiples of 2^-10 and the offsets (per channel, per run for crossnobis) keep them
    exact in float64, so the shifted RDMs must equal the unshifted ones: computed as
    |x_i|^2 + |x_j|^2 - 2 x_i.x_j on uncentred data, they lost every digit (1e6 + 0.01
    noise: 75 % off)."""
    rng = np.random.default_rng(seed)
    n, p = 8, 20
    X = rng.integers(-1024, 1024, (n, p)) / 1024.0
    shift = offset * rng.integers(1, 4, p)  # a different baseline per channel
    assert np.array_equal((X + shift) - shift, X)  # exact in float64
    P = np.diag(rng.integers(1, 5, p) / 4.0)
    for data in (X + shift, torch.from_numpy(X + shift)):
        for metric, kw in (("euclidean", {}), ("sqeuclidean", {}), ("mahalanobis", {"noise": P})):
            np.testing.assert_allclose(rdm(data, metric, **kw).values, rdm(X, metric, **kw).values,
                                       rtol=1e-12, atol=1e-12, err_msg=metric)
    np.testing.assert_allclose(rdm(X + shift, "euclidean").values, squareform(pdist(X)),
                               rtol=1e-12)
    runs = np.repeat([0, 1, 2], n)
    trials = np.tile(X, (3, 1)) + rng.integers(-64, 64, (3 * n, p)) / 1024.0
    run_shift = shift * np.array([1.0, -1.0, 2.0])[runs, None]  # baselines drift per run
    kw = {"conditions": np.tile(np.arange(n), 3), "runs": runs}
    np.testing.assert_allclose(rdm(trials + run_shift, "crossnobis", **kw).values,
                               rdm(trials, "crossnobis", **kw).values, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rdm(trials + run_shift, "crossnobis", noise=P, **kw).values,
                               rdm(trials, "crossnobis", noise=P, **kw).values,
                               rtol=1e-12, atol=1e-12)
