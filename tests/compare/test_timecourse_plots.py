"""Time-resolved RSA and the plotting helpers."""

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from neuroalign.compare import (
    distance_matrix,
    plot_mds,
    plot_model_scores,
    plot_rdms,
    plot_timecourse,
    rdm,
    rsa,
    rsa_timecourse,
)
from neuroalign.compare._compare_rdms import rank_average
from neuroalign.exceptions import DimensionError
from neuroalign.testing import make_store


@pytest.fixture
def eeg():
    """Signal only from the third time point on: the model must score there, not before."""
    ds, sig = make_store(n_stimuli=16, n_neuroids=20, n_repetitions=2, n_times=6,
                         ncsnr=2.0, seed=0, return_signal=True)
    ds = ds.copy(deep=True)
    rng = np.random.default_rng(1)
    ds["responses"][:, :, :2] = rng.standard_normal(ds["responses"][:, :, :2].shape)
    half = np.array(["a"] * 10 + ["b"] * 10)
    ds = ds.assign_coords(subject=("neuroid", half))
    return ds, sig


def test_rsa_timecourse_finds_signal_onset(eeg):
    ds, sig = eeg
    noise_model = xr.DataArray(np.random.default_rng(2).standard_normal((16, 20)),
                               dims=("stimulus", "unit"),
                               coords={"stimulus_id": ("stimulus", sig.stimulus_id.values)})
    res = rsa_timecourse({"true": sig, "noise": noise_model}, ds, method="pearson",
                         generalize=True)
    score = res.score.sel(model="true").values
    assert score[2:].min() > 0.5 and np.abs(score[:2]).max() < 0.4
    assert res.per_subject.sizes["subject"] == 2
    g = res.generalization.values
    assert np.allclose(g, g.T) and g[3, 4] > g[0, 4]
    np.testing.assert_allclose(np.diag(g), 1.0)
    fig = plot_timecourse(res, title="eeg")
    assert isinstance(fig, Figure) and len(fig.axes) >= 2


def test_rsa_timecourse_errors(eeg):
    ds, sig = eeg
    with pytest.raises(ValueError, match="'metric' in rsa_timecourse\\(\\): 'crossnobis'"):
        rsa_timecourse({"m": sig}, ds, metric="crossnobis")
    with pytest.raises(DimensionError, match="Expected a 'time' dim"):
        rsa_timecourse({"m": sig}, ds.isel(time=0))
    with pytest.raises(ValueError, match="'by' in rsa_timecourse\\(\\): 'subj'"):
        rsa_timecourse({"m": sig}, ds, by="subj")


def test_plots_return_figures(tmp_path):
    rng = np.random.default_rng(0)
    X = {f"s{i}": rng.standard_normal((12, 5)) for i in range(4)}
    rdms = {k: rdm(v) for k, v in X.items()}
    fig = plot_rdms(rdms)
    assert isinstance(fig, Figure) and sum(ax.get_visible() for ax in fig.axes) >= 4
    subj = np.stack([r.values for r in rdms.values()])
    res = rsa({"a": X["s0"], "b": X["s1"]}, subj, n_bootstrap=20)
    fig = plot_model_scores(res, title="scores")
    fig.savefig(tmp_path / "scores.png")
    assert (tmp_path / "scores.png").stat().st_size > 0
    fig = plot_mds(distance_matrix(X))
    assert [t.get_text() for t in fig.axes[0].texts] == list(X)


def test_parallel_ranking_matches_scipy():
    from scipy.stats import rankdata

    rng = np.random.default_rng(0)
    v = np.round(rng.random((2, 120_000)), 3)  # long rows, with ties
    np.testing.assert_array_equal(rank_average(v), rankdata(v, axis=1))
