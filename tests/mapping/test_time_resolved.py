"""Time-resolved layer preference on the simulated THINGS-EEG2 brain."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import xarray as xr
from PIL import Image

from neuroalign.mapping import best_layer_over_time, plot_topomaps, roi_layer_profile

LAYERS = ["layer1", "layer2", "layer3", "layer4"]


def test_best_layer_per_time_matches_latency_truth(sim_eeg):
    from neuroalign.datasets.simulate import build_network, pooled_activations
    from neuroalign.mapping._ridge import cv_scores
    from neuroalign.store import average_repetitions, cv_folds

    av = average_repetitions(sim_eeg.store())
    root = sim_eeg.root / "image_set"
    images = np.stack([np.asarray(Image.open(root / f).convert("RGB")) for f in av["image_file"].values])
    acts = pooled_activations(build_network("resnet18", 0), images, LAYERS)
    resp = av["responses"].transpose("stimulus", "neuroid", "time")
    Y = resp.values.reshape(resp.shape[0], -1)
    folds = cv_folds(av, 5)
    sc = np.stack([cv_scores(acts[name], Y, folds).reshape(resp.shape[1:]) for name in LAYERS])
    coords = {k: v for k, v in av.coords.items() if v.dims in (("neuroid",), ("time",))}
    scores = xr.DataArray(sc, dims=("layer", "neuroid", "time"), coords={"layer": LAYERS, **coords})

    per_roi = best_layer_over_time(scores, by="roi")
    prof = roi_layer_profile(scores)
    truth = sim_eeg.layer_of_roi()
    latency = sim_eeg.truth["latency_of_roi"]
    depth_at = {}
    for roi, layer in truth.items():
        # the ROI's best score over time peaks at its true latency (within 30 ms)
        best = per_roi["best_score"].sel(roi=roi)
        peak = float(best["time"].values[int(np.nanargmax(best.values))])
        assert abs(peak - latency[roi]) <= 0.03 + 1e-9, (roi, peak)
        # at that latency the true layer is within a small margin of the best one
        # (random-weight ResNet stages predict each other's read-outs almost equally well)
        at = prof.sel(roi=roi).sel(time=latency[roi], method="nearest")
        assert float(at.max() - at.sel(layer=layer)) < 0.05, (roi, at.values)
        depth_at[roi] = per_roi["best_depth_norm"].sel(roi=roi).sel(time=latency[roi], method="nearest").item()
    # early (occipital) sensors prefer a shallow stage, late (parietal) ones a deep stage
    assert depth_at["occipital"] < 0.5 < depth_at["parietal"]
    # before stimulus onset nothing is predictable
    assert float(per_roi["best_score"].sel(time=slice(None, -0.05)).max()) < 0.35

    per_sensor = best_layer_over_time(scores)
    assert per_sensor["best_layer"].dims == ("neuroid", "time")
    fig = plot_topomaps(per_sensor["best_depth_norm"], times=[latency[r] for r in truth],
                        cmap="viridis", vmin=0, vmax=1)
    assert len([ax for ax in fig.axes if ax.get_title().endswith("ms")]) == 3
