"""RSA bootstrap: each resample scored as rsatoolbox scores it, rsatoolbox's small-sample
rule, samples left out (warned, counted, never a p-value from no samples), p-values,
order invariance, and the coverage of the intervals on data with a planted answer."""

import warnings

import numpy as np
import pytest
import rsatoolbox
import xarray as xr
from rsatoolbox.rdm.compare import _cov_weighting
from rsatoolbox.rdm.compare import compare as rsa_compare
from scipy.spatial.distance import squareform

from neuroalign.compare import rdm, rsa
from neuroalign.compare._rsa import _score_resample
from neuroalign.exceptions import BootstrapError, DataQualityWarning

THEIRS = {"cosine": "cosine", "pearson": "corr", "spearman": "spearman", "rho_a": "rho-a",
          "tau_a": "tau-a", "cosine_cov": "cosine_cov", "pearson_cov": "corr_cov"}


def _problem(n=9, n_subj=3, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal((n, 5))
    M = np.stack([rdm(truth).values, rdm(rng.standard_normal((n, 5)), "sqeuclidean").values])
    D = np.stack([rdm(truth @ rng.standard_normal((5, 20)) + rng.standard_normal((n, 20))).values
                  for _ in range(n_subj)])
    return M, D


def _resamples(n, n_subj, count=6, seed=1):
    """Fixed resamples with repeated stimuli (and repeated subjects)."""
    rng = np.random.default_rng(seed)
    out = [(np.array([0, 0, 1, 1, 1, 4, 5, 7, 8][:n]), np.array([2.0, 0, 1][:n_subj]))]
    for _ in range(count - 1):
        out.append((np.sort(rng.integers(0, n, n)),
                    np.bincount(rng.integers(0, n_subj, n_subj), minlength=n_subj).astype(float)))
    return out


def _rsatoolbox_resample(R, sidx):
    """rsatoolbox's resampled RDMs: rows repeated, pairs of a stimulus with itself NaN."""
    return rsatoolbox.rdm.RDMs(R).subsample_pattern("index", sidx)


@pytest.mark.parametrize("method", list(THEIRS))
def test_resample_scores_equal_rsatoolbox(method):
    M, D = _problem()
    for sidx, counts in _resamples(9, 3):
        assert len(np.unique(sidx)) < len(sidx)  # every resample has missing pairs
        ref = rsa_compare(_rsatoolbox_resample(M, sidx), _rsatoolbox_resample(D, sidx),
                          method=THEIRS[method]) @ counts / counts.sum()
        ours = _score_resample(M, D, sidx, counts, method)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-10)


def _bures_from_rsatoolbox_weighting(a, b):
    """Bures similarity of the second-moment matrices that rsatoolbox's covariance
    weighting builds for RDM vectors with NaN (its own code, reshaped back to matrices)."""
    keep = ~np.isnan(a)
    n = squareform(np.zeros(len(a))).shape[0]

    def gram(v):
        w = _cov_weighting(v[keep][None], keep)[0]
        off = np.zeros(len(keep))
        off[keep] = w[:keep.sum()] / np.sqrt(2)
        G = squareform(off)
        np.fill_diagonal(G, w[keep.sum():])
        return G

    A, B = gram(a), gram(b)
    va, ua = np.linalg.eigh(A)
    sa = ua @ np.diag(np.sqrt(np.maximum(va, 0))) @ ua.T
    ev = np.linalg.eigvalsh(sa @ B @ sa)
    assert A.shape == (n, n)
    return np.sqrt(np.maximum(ev, 0)).sum() / np.sqrt(np.trace(A) * np.trace(B))


def test_bures_resample_uses_rsatoolbox_second_moments():
    """rsatoolbox's own bures cannot score a resample (it reshapes the shorter vector of
    the pairs left into a smaller RDM); ours uses the covariance weighting's G."""
    M, D = _problem()
    for sidx, counts in _resamples(9, 3, count=4):
        rm = _rsatoolbox_resample(M, sidx).get_vectors()
        rd = _rsatoolbox_resample(D, sidx).get_vectors()
        with pytest.raises(ValueError):
            rsa_compare(rsatoolbox.rdm.RDMs(rm), rsatoolbox.rdm.RDMs(rd), method="bures")
        ref = np.array([[_bures_from_rsatoolbox_weighting(x, y) for y in rd] for x in rm])
        ours = _score_resample(M, D, sidx, counts, "bures")
        np.testing.assert_allclose(ours, ref @ counts / counts.sum(), rtol=0, atol=1e-8)
    # without repeats it is rsatoolbox's bures
    sidx = np.arange(9)
    ref = rsa_compare(rsatoolbox.rdm.RDMs(M), rsatoolbox.rdm.RDMs(D), method="bures").mean(1)
    np.testing.assert_allclose(_score_resample(M, D, sidx, np.ones(3), "bures"), ref, atol=1e-8)


@pytest.mark.parametrize("method", ["cosine_cov", "pearson_cov", "bures", "spearman"])
@pytest.mark.parametrize("bootstrap", ["stimulus", "both"])
def test_rsa_bootstrap_scores_every_resample(method, bootstrap):
    """Every sample is the resample's score (same draws), intervals finite, p-values from
    all samples."""
    M, D = _problem(n=12, n_subj=4)
    n_boot = 60
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)  # nothing left out
        res = rsa(M, D, method=method, bootstrap=bootstrap, n_bootstrap=n_boot, seed=5,
                  noise_ceiling=False)
    assert (res.n_valid == n_boot).all() and np.isfinite(res.bootstrap).all()
    assert np.isfinite(res.ci_low).all() and np.isfinite(res.ci_high).all()
    assert (res.ci_low < res.ci_high).all()
    rng = np.random.default_rng(5)
    expected = np.empty((2, n_boot))
    for b in range(n_boot):
        counts = np.ones(4)
        if bootstrap == "both":  # subjects are drawn in the order of their labels
            counts = np.bincount(rng.integers(0, 4, 4), minlength=4).astype(float)
        expected[:, b] = _score_resample(M, D, np.sort(rng.integers(0, 12, 12)), counts, method)
    np.testing.assert_allclose(res.bootstrap.values, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.p_zero, (np.sum(expected <= 0, axis=1) + 1) / (n_boot + 1))


def test_few_stimuli_follow_rsatoolbox_rule():
    """Resamples with fewer than 3 distinct stimuli are left out (rsatoolbox's
    ``len(np.unique(pattern_idx)) >= 3``), and the warning says how many."""
    M, D = _problem(n=4, n_subj=2)
    n_boot = 300
    with pytest.warns(DataQualityWarning) as rec:
        res = rsa(M, D, method="pearson", n_bootstrap=n_boot, seed=2, noise_ceiling=False)
    rng = np.random.default_rng(2)
    few = np.array([len(np.unique(rng.integers(0, 4, 4))) < 3 for _ in range(n_boot)])
    np.testing.assert_array_equal(np.isnan(res.bootstrap.values[0]), few)
    assert int(res.n_valid[0]) == n_boot - few.sum()
    assert f"{few.sum()} drew fewer than 3 distinct stimuli" in str(rec[0].message)
    # the same share (88/256 for 4 stimuli) as rsatoolbox's own bootstrap leaves out
    np.random.seed(0)
    models = [rsatoolbox.model.ModelFixed(f"m{i}", rsatoolbox.rdm.RDMs(M[i:i + 1]))
              for i in range(2)]
    theirs = rsatoolbox.inference.eval_bootstrap_pattern(
        models, rsatoolbox.rdm.RDMs(D), method="corr", N=400, boot_noise_ceil=False)
    share = np.isnan(theirs.evaluations[:, 0]).mean()
    assert abs(share - 88 / 256) < 0.08 and abs(few.mean() - 88 / 256) < 0.08


def _pair_model(n):
    """A model whose dissimilarities vary only through the pair (0, 1): constant on any
    resample without both stimuli, so its correlation is undefined there."""
    d = np.full((n, n), 0.5)
    d[0, 1] = d[1, 0] = 1.0
    np.fill_diagonal(d, 0)
    return d


def test_too_few_scored_samples_raise_named_error():
    M, D = _problem(n=8, n_subj=2)
    models = np.stack([M[0], _pair_model(8)])
    with pytest.warns(DataQualityWarning, match="undefined .* for model 'model-1'"):
        with pytest.raises(BootstrapError, match=r"only \d+ of 200 bootstrap samples could be "
                                                 r"scored for model 'model-1'.*at least 100"):
            rsa(models, D, method="pearson", n_bootstrap=200, noise_ceiling=False)
    # resampling subjects only never drops a sample
    res = rsa(models, D, method="pearson", bootstrap="subject", n_bootstrap=50)
    assert (res.n_valid == 50).all()


def test_left_out_samples_are_counted_and_warned():
    """A model undefined on some resamples: those samples are NaN for it only; p-values of
    its differences use the samples shared by both models."""
    M, D = _problem(n=10, n_subj=2)
    d = np.full((10, 10), 0.5)
    d[:5, 5:] = d[5:, :5] = 1.0  # two categories
    d[0, 5:] = d[5:, 0] = 2.0
    np.fill_diagonal(d, 0)
    models = np.stack([M[0], d])
    with pytest.warns(DataQualityWarning, match="left out of 300") as rec:
        res = rsa(models, D, method="spearman", n_bootstrap=300, seed=0, noise_ceiling=False)
    nan = np.isnan(res.bootstrap.values)
    assert not nan[0].any() and 0 < nan[1].sum() < 150
    assert f"'model-1' ({nan[1].sum()})" in str(rec[0].message)
    b = res.bootstrap.values
    ok = ~nan[1]
    diff = b[0, ok] - b[1, ok]
    p = min(1, 2 * min((np.sum(diff <= 0) + 1) / (ok.sum() + 1),
                       (np.sum(diff >= 0) + 1) / (ok.sum() + 1)))
    assert float(res.p_difference[0, 1]) == pytest.approx(p)
    assert float(res.p_zero[1]) == pytest.approx((np.sum(b[1, ok] <= 0) + 1) / (ok.sum() + 1))


def test_p_values_ties_and_identical_models():
    M, D = _problem(n=10, n_subj=3)
    res = rsa(np.stack([M[0], M[0], M[1]]), D, n_bootstrap=100, bootstrap="both")
    assert float(res.p_difference[0, 1]) == 1.0  # every difference is a tie
    assert float(res.p_difference[0, 2]) == float(res.p_difference[2, 0])
    assert (np.diag(res.p_difference) == 1).all()
    p = res.p_zero.values
    assert p[0] == pytest.approx(1 / 101)  # every sample > 0: the smallest p possible


def _labelled(M, D, ids, subjects, perm=None, sperm=None):
    perm = np.arange(len(ids)) if perm is None else perm
    sperm = np.arange(len(D)) if sperm is None else sperm
    co = {"stimulus_id_i": ("stimulus_i", ids[perm]), "stimulus_id_j": ("stimulus_j", ids[perm])}
    models = {f"m{i}": xr.DataArray(M[i][perm][:, perm], dims=("stimulus_i", "stimulus_j"),
                                    coords=co) for i in range(len(M))}
    data = xr.DataArray(D[sperm][:, perm][:, :, perm], dims=("subject", "stimulus_i", "stimulus_j"),
                        coords={**co, "subject": subjects[sperm]})
    return models, data


@pytest.mark.parametrize("bootstrap", ["stimulus", "subject", "both"])
def test_rsa_does_not_depend_on_row_or_subject_order(bootstrap):
    M, D = _problem(n=10, n_subj=4)
    ids = np.array([f"img{i:02d}" for i in range(10)])
    subjects = np.array(["s1", "s2", "s3", "s4"])
    rng = np.random.default_rng(3)
    base = rsa(*_labelled(M, D, ids, subjects), method="pearson_cov", bootstrap=bootstrap,
               n_bootstrap=40, seed=1)
    other = rsa(*_labelled(M, D, ids, subjects, rng.permutation(10), rng.permutation(4)),
                method="pearson_cov", bootstrap=bootstrap, n_bootstrap=40, seed=1)
    for var in ("score", "bootstrap", "ci_low", "ci_high", "p_zero", "p_difference",
                "noise_ceiling_lower", "noise_ceiling_upper"):
        np.testing.assert_allclose(other[var].values, base[var].values, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(other.per_subject.sel(subject=["s1", "s2", "s3", "s4"]),
                               base.per_subject.sel(subject=["s1", "s2", "s3", "s4"]), rtol=1e-12)


def test_subject_bootstrap_resamples_subjects():
    M, D = _problem(n=10, n_subj=5)
    res = rsa(M, D, bootstrap="subject", n_bootstrap=30, seed=4)
    rng = np.random.default_rng(4)
    labels = [f"subject-{i}" for i in range(5)]  # drawn in the order of the labels
    order = np.argsort(labels, kind="stable")
    expected = []
    for _ in range(30):
        counts = np.empty(5)
        counts[order] = np.bincount(rng.integers(0, 5, 5), minlength=5)
        expected.append(res.per_subject.values @ counts / 5)
    np.testing.assert_allclose(res.bootstrap.values, np.array(expected).T, rtol=1e-12)


# ---------------------------------------------------------------- planted truth: coverage
def _planted(seed, n_stim, latent, A_model, B_subj, noise):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n_stim, latent))
    model = rdm(Z @ A_model)
    data = np.stack([rdm(Z @ B + noise * rng.standard_normal((n_stim, B.shape[1]))).values
                     for B in B_subj])
    return model, data


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pearson", "cosine_cov"])
def test_stimulus_bootstrap_intervals_cover_planted_score(method):
    """Stimuli drawn from a population (latent features), subjects fixed read-outs plus
    noise: the population score (mean over 4000 independent stimulus samples) is covered
    by the 95 % stimulus-bootstrap interval in at least 90 % of 40 seeds."""
    from scipy.spatial.distance import pdist

    from neuroalign.compare import compare_rdms

    rng = np.random.default_rng(12345)
    latent, n_stim = 6, 30
    A_model = rng.standard_normal((latent, 8))
    A_model[:, :3] *= 0.3  # the model weighs the latent features differently
    B_subj = [rng.standard_normal((latent, 25)) for _ in range(3)]
    noise = 2.0
    truth_draws = []
    for s in range(4000):  # the draws of _planted, RDMs by scipy (rdm() is 10x slower here)
        draw = np.random.default_rng(10_000 + s)
        Z = draw.standard_normal((n_stim, latent))
        data = np.stack([squareform(pdist(Z @ B + noise * draw.standard_normal((n_stim, B.shape[1])),
                                          "correlation")) for B in B_subj])
        model = squareform(pdist(Z @ A_model, "correlation"))
        truth_draws.append(np.mean(compare_rdms(model, data, method)))
    truth = float(np.mean(truth_draws))
    covered = []
    for seed in range(40):
        model, data = _planted(seed, n_stim, latent, A_model, B_subj, noise)
        res = rsa({"m": model}, data, method=method, bootstrap="stimulus", n_bootstrap=400,
                  seed=seed, noise_ceiling=False)
        covered.append(float(res.ci_low[0]) <= truth <= float(res.ci_high[0]))
    assert np.mean(covered) >= 0.9, (truth, np.mean(covered))
