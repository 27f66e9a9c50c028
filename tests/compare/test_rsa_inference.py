"""RSA inference, noise ceiling (against rsatoolbox) and the simulated brain."""

import h5py
import numpy as np
import pytest
import rsatoolbox
import xarray as xr

from neuroalign.compare import (
    compare_rdms,
    data_rdms,
    pseudo_subjects,
    rdm,
    rsa,
    rsa_noise_ceiling,
)
from neuroalign.exceptions import DimensionError
from neuroalign.testing import make_store


def _subjects(n_stim=20, n_subj=5, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal((n_stim, 10))
    subj = np.stack([
        rdm(truth @ rng.standard_normal((10, 30)) + noise * rng.standard_normal((n_stim, 30))).values
        for _ in range(n_subj)
    ])
    return truth, subj


@pytest.mark.parametrize("ours, theirs", [("spearman", "spearman"), ("pearson", "corr"),
                                          ("cosine", "cosine"), ("rho_a", "rho-a")])
def test_noise_ceiling_matches_rsatoolbox(ours, theirs):
    _, subj = _subjects()
    ref = rsatoolbox.inference.boot_noise_ceiling(rsatoolbox.rdm.RDMs(subj), method=theirs)
    lo, hi = rsa_noise_ceiling(subj, ours)
    np.testing.assert_allclose([lo, hi], ref, rtol=1e-4)
    assert lo < hi


def test_rsa_ranks_planted_model_and_tests_differences():
    truth, subj = _subjects(n_stim=24, n_subj=6)
    rng = np.random.default_rng(1)
    models = {"true": truth, "half": np.c_[truth[:, :5], rng.standard_normal((24, 5))],
              "random": rng.standard_normal((24, 10))}
    res = rsa(models, subj, bootstrap="both", n_bootstrap=200)
    score = res.score.to_series()
    assert score.idxmax() == "true" and score.idxmin() == "random"
    assert (res.ci_low <= res.score).all() and (res.score <= res.ci_high).all()
    assert res.p_difference.sel(model="true", model_other="random") < 0.05
    assert res.p_zero.sel(model="true") < 0.05
    assert res.p_zero.sel(model="random") > 0.01
    # per-subject scores are compare_rdms of each pair
    np.testing.assert_allclose(
        res.per_subject.sel(model="true").values,
        compare_rdms(rdm(truth), subj, "spearman"), rtol=1e-12)
    lo, hi = float(res.noise_ceiling_lower), float(res.noise_ceiling_upper)
    assert lo <= score["true"] <= hi


@pytest.mark.parametrize("bootstrap", ["stimulus", "subject", "none"])
def test_rsa_bootstrap_modes(bootstrap):
    truth, subj = _subjects(n_stim=12, n_subj=3)
    res = rsa({"m": truth, "n": truth[:, ::-1] ** 2}, subj, bootstrap=bootstrap, n_bootstrap=50,
              method="pearson", seed=3)
    again = rsa({"m": truth, "n": truth[:, ::-1] ** 2}, subj, bootstrap=bootstrap,
                n_bootstrap=50, method="pearson", seed=3)
    xr.testing.assert_identical(res, again)
    if bootstrap == "none":
        assert np.isnan(res.ci_low).all()
    else:
        assert np.isfinite(res.bootstrap).all() and (res.se > 0).all()


def test_rsa_errors():
    truth, subj = _subjects(n_stim=12, n_subj=3)
    with pytest.raises(ValueError, match="'bootstrap' in rsa\\(\\): 'subjects'"):
        rsa({"m": truth}, subj, bootstrap="subjects")
    with pytest.raises(ValueError, match="'subject' with 1 subject RDM"):
        rsa({"m": truth}, subj[0], bootstrap="subject")
    with pytest.raises(ValueError, match="at least 2 subjects \\(or pseudo-subjects"):
        rsa({"m": truth}, subj[0], n_bootstrap=5)
    with pytest.raises(ValueError, match="'n_bootstrap' in rsa\\(\\): 0"):
        rsa({"m": truth}, subj, n_bootstrap=0)
    with pytest.raises(ValueError, match="'ci' in rsa\\(\\): 1.5"):
        rsa({"m": truth}, subj, ci=1.5)
    with pytest.raises(DimensionError, match="over 11 stimuli and data RDMs over 12"):
        rsa({"m": truth[:11]}, subj)
    with pytest.raises(ValueError, match="with 3 stimuli"):
        rsa({"m": truth[:3]}, subj[:, :3, :3], noise_ceiling=False)
    with pytest.raises(ValueError, match="'models' in rsa\\(\\): empty"):
        rsa({}, subj)
    with pytest.raises(DimensionError, match="a stack of 3 RDMs"):
        rsa({"m": subj}, subj)
    nan = subj.copy()
    nan[0, 1, 2] = nan[0, 2, 1] = np.nan
    with pytest.raises(ValueError, match="'data' in rsa\\(\\): 1 NaN or infinite"):
        rsa({"m": truth}, nan)
    with pytest.raises(ValueError, match="'models' in rsa\\(\\): 1 NaN"):
        rsa({"m": nan[0]}, subj)


def test_data_rdms_and_pseudo_subjects():
    ds = make_store(n_stimuli=10, n_neuroids=24, n_repetitions=2, seed=0)
    ps = pseudo_subjects(ds, 3, seed=1)
    assert sorted(set(ps.subject.values)) == ["pseudo-00", "pseudo-01", "pseudo-02"]
    d = data_rdms(ps)
    assert d.dims == ("subject", "stimulus_i", "stimulus_j") and d.sizes["subject"] == 3
    cv = data_rdms(ps, "crossnobis")
    assert cv.sizes["stimulus_i"] == 10 and cv.attrs["metric"] == "crossnobis"
    with pytest.raises(ValueError, match="'by' in data_rdms\\(\\): 'hemi'"):
        data_rdms(ps, by="hemi")
    with pytest.raises(ValueError, match="Expected a trial-level store"):
        data_rdms(ps.na.average_repetitions(), "crossnobis")
    with pytest.raises(ValueError, match="'n_subjects' in pseudo_subjects\\(\\): 25"):
        pseudo_subjects(ds, 25)
    with pytest.raises(ValueError, match="'n_subjects' in pseudo_subjects\\(\\): 1"):
        pseudo_subjects(ds, 1)
    # rsa accepts labelled data RDMs and joins models on stimulus_id
    avg = ds.na.average_repetitions()
    feats = xr.DataArray(np.random.default_rng(0).standard_normal((10, 4)),
                         dims=("stimulus", "unit"),
                         coords={"stimulus_id": ("stimulus", avg.stimulus_id.values[::-1])})
    res = rsa({"f": feats}, d, n_bootstrap=20)
    assert list(res.subject.values) == list(d.subject.values)
    # a store as data: one RDM per subject
    direct = rsa({"f": feats}, ps, n_bootstrap=20)
    np.testing.assert_allclose(direct.score, res.score)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    from neuroalign.datasets.simulate import simulate

    out = tmp_path_factory.mktemp("sim") / "nsd"
    return simulate(out, n_images=120, n_test=20, n_sessions=3, seed=0)


@pytest.mark.slow
def test_rsa_on_simulated_brain_ranks_true_layer_and_ceiling_brackets(simulated):
    """Pseudo-subjects: each ROI's neuroids (60 here) split at random into 4 disjoint groups.

    Different neuroids of one ROI are different random read-outs of the same layer, as
    different brains' voxels sample one area differently; the noise ceiling then
    measures how well the pooled group RDM predicts a new group.
    """
    from neuroalign.datasets.simulate import build_network, pooled_activations

    store = simulated.store().load()
    layers = ["layer1", "layer2", "layer3", "layer4"]
    avg = store.na.average_repetitions()
    nsd_ids = avg.coords["nsd_id"].values
    path = store.attrs["stimulus_set"]["path"]
    with h5py.File(path, "r") as f:
        brick = f["imgBrick"]
        images = np.stack([brick[int(i)] for i in nsd_ids])
    acts = pooled_activations(build_network("resnet18", 0), images, layers)
    # The simulated neuroids are random linear read-outs of each layer's channels z-scored
    # with the simulation's statistics, so their expected squared distances are those of
    # the z-scored channels: compare squared-Euclidean RDMs of the z-scored layers.
    brain = simulated.brain()
    acts = {k: (v - brain.layer_mean[k]) / brain.layer_sd[k] for k, v in acts.items()}
    models = {
        name: xr.DataArray(acts[name], dims=("stimulus", f"{name}_unit"),
                           coords={"stimulus_id": ("stimulus", avg.stimulus_id.values)})
        for name in layers
    }
    for roi, layer in simulated.layer_of_roi().items():
        sub = pseudo_subjects(store.na.roi(roi), 4, seed=0)
        data = data_rdms(sub, "sqeuclidean")
        res = rsa(models, data, method="pearson", bootstrap="none",
                  model_metric="sqeuclidean")
        score = res.score.to_series()
        assert score.idxmax() == layer, (roi, score.to_dict())
        lo, hi = float(res.noise_ceiling_lower), float(res.noise_ceiling_upper)
        assert lo <= score[layer] <= hi, (roi, lo, score[layer], hi)
