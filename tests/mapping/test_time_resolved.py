"""Time-resolved layer preference on the simulated THINGS-EEG2 brain."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from neuroalign.mapping import best_layer_over_time, plot_topomaps, roi_layer_profile

LAYERS = ["layer1", "layer2", "layer3", "layer4"]


def time_scores(sim) -> xr.DataArray:
    """Cross-validated score of every layer for every sensor and time point of a simulated
    THINGS-EEG2 brain: dims ('layer', 'neuroid', 'time')."""
    from neuroalign.datasets.simulate import build_network, pooled_activations
    from neuroalign.encoders._scoring import pearson_r
    from neuroalign.encoders._solvers import cv_predict
    from neuroalign.mapping._units import DEFAULT_ALPHAS

    def cv_scores(X, Y, folds):  # pooled held-out predictions of the ridge core, Pearson r
        return pearson_r(cv_predict(X, Y, folds, DEFAULT_ALPHAS), Y)
    from neuroalign.store import average_repetitions, cv_folds

    av = average_repetitions(sim.store())
    root = sim.root / "image_set"
    images = np.stack([np.asarray(Image.open(root / f).convert("RGB")) for f in av["image_file"].values])
    acts = pooled_activations(build_network("resnet18", 0), images, LAYERS)
    resp = av["responses"].transpose("stimulus", "neuroid", "time")
    Y = resp.values.reshape(resp.shape[0], -1)
    folds = cv_folds(av, 5)
    sc = np.stack([cv_scores(acts[name], Y, folds).reshape(resp.shape[1:]) for name in LAYERS])
    coords = {k: v for k, v in av.coords.items() if v.dims in (("neuroid",), ("time",))}
    return xr.DataArray(sc, dims=("layer", "neuroid", "time"), coords={"layer": LAYERS, **coords})


def test_best_layer_per_time_matches_latency_truth(sim_eeg):
    """What 60 images identify whatever the seeds: each sensor group's predictability peaks
    at its latency, and nothing is predictable before onset. Which layer wins at that
    latency is NOT identifiable here (random-weight ResNet stages predict each other's
    read-outs almost equally; with other network or fold seeds the occipital sensors prefer
    layer2-3 and the parietal ones layer1): that is tested on 200 images below (slow)."""
    scores = time_scores(sim_eeg)
    per_roi = best_layer_over_time(scores, by="roi")
    truth = sim_eeg.layer_of_roi()
    latency = sim_eeg.truth["latency_of_roi"]
    for roi in truth:
        # the ROI's best score over time peaks at its true latency (within 40 ms; up to 30 ms
        # off over 28 simulation, network and fold seeds)
        best = per_roi["best_score"].sel(roi=roi)
        peak = float(best["time"].values[int(np.nanargmax(best.values))])
        assert abs(peak - latency[roi]) <= 0.04 + 1e-9, (roi, peak)
    # before stimulus onset nothing is predictable
    assert float(per_roi["best_score"].sel(time=slice(None, -0.05)).max()) < 0.35

    per_sensor = best_layer_over_time(scores)
    assert per_sensor["best_layer"].dims == ("neuroid", "time")
    fig = plot_topomaps(per_sensor["best_depth_norm"], times=[latency[r] for r in truth],
                        cmap="viridis", vmin=0, vmax=1)
    assert len([ax for ax in fig.axes if ax.get_title().endswith("ms")]) == 3


@pytest.fixture(scope="module")
def sim_eeg_200(tmp_path_factory):
    """200 images: enough for the layer at each latency to be identifiable (slow test only)."""
    from neuroalign.datasets import simulate

    return simulate(tmp_path_factory.mktemp("sim") / "eeg200", format="things-eeg2", n_images=200,
                    n_test=20, n_test_repetitions=12, seed=4)


@pytest.mark.slow
def test_layer_depth_over_time_on_a_larger_brain(sim_eeg_200):
    """With 200 images the true layer is the best (within 0.05) at each group's latency, and
    early (occipital) sensors prefer a shallow stage, late (parietal) ones a deep stage (held
    over 20 simulation, network and fold seeds: gaps <= 0.03, peaks within 20 ms)."""
    scores = time_scores(sim_eeg_200)
    per_roi = best_layer_over_time(scores, by="roi")
    prof = roi_layer_profile(scores)
    truth = sim_eeg_200.layer_of_roi()
    latency = sim_eeg_200.truth["latency_of_roi"]
    depth_at = {}
    for roi, layer in truth.items():
        best = per_roi["best_score"].sel(roi=roi)
        peak = float(best["time"].values[int(np.nanargmax(best.values))])
        assert abs(peak - latency[roi]) <= 0.03 + 1e-9, (roi, peak)
        at = prof.sel(roi=roi).sel(time=latency[roi], method="nearest")
        assert float(at.max() - at.sel(layer=layer)) < 0.05, (roi, at.values)
        depth_at[roi] = per_roi["best_depth_norm"].sel(roi=roi).sel(time=latency[roi], method="nearest").item()
    assert depth_at["occipital"] < 0.5 < depth_at["parietal"]
