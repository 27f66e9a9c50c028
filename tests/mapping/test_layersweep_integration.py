"""layer_preference takes a real LayerSweep (neuroalign.encoders) over several models."""

import numpy as np
import xarray as xr

from neuroalign.encoders import LayerSweep
from neuroalign.mapping import layer_preference, summarize_by_roi


def test_layer_preference_of_a_layer_sweep_over_two_models(sim_nsd_large, sim_nsd_large_features):
    rois = list(sim_nsd_large.layer_of_roi())
    store = sim_nsd_large.store().load().na.roi(rois).na.average_repetitions()
    rng = np.random.default_rng(0)
    ids = sim_nsd_large_features["stimulus_id"].values
    feats = {
        "truth": sim_nsd_large_features,
        # a second "model" of two layers that carries no signal (random features)
        "other": xr.Dataset({n: (("stimulus", f"{n}_unit"), rng.standard_normal((len(ids), 16)))
                             for n in ("layer1", "layer4")}, coords={"stimulus_id": ("stimulus", ids)}),
    }
    res = LayerSweep(cv=3, device="cpu").fit(feats, store).to_dataset()
    assert list(dict.fromkeys(res["model"].values.tolist())) == ["truth", "other"]
    assert not any("/" in name for name in res["layer"].values)  # the model is a coordinate
    pref = layer_preference(res)
    assert "model" in pref.dims and set(pref["model"].values) == {"truth", "other"}
    best = pref["best_layer"].sel(model="truth")
    for roi, layer in sim_nsd_large.layer_of_roi().items():
        mask = store[f"roi_{roi}"].values
        names, counts = np.unique(best.values[mask], return_counts=True)
        assert names[np.argmax(counts)] == layer, roi
    # normalised depth runs 0..1 within each model, whatever its number of layers
    assert float(pref["best_depth_norm"].sel(model="other").max()) <= 1.0
    summary = summarize_by_roi(pref, store)
    assert set(sim_nsd_large.layer_of_roi()) <= set(summary["roi"].values.tolist())


def test_layer_preference_of_a_sweep_result_dataset(sim_nsd_large, sim_nsd_large_features):
    """The results Dataset of a real fit (held-out test split) goes straight into
    layer_preference, which keeps the sweep's own choice (by cross-validation in the
    training data: its best_layer) and that layer's held-out score. That choice recovers
    each ROI's layer; per-voxel choices by the 40 test images alone would be too noisy to
    pin (hV4/PPA neighbours within ~0.01)."""
    store = sim_nsd_large.store().load().na.roi(list(sim_nsd_large.layer_of_roi()))
    ds = LayerSweep(cv=3, device="cpu", test_split="test").fit(sim_nsd_large_features, store).to_dataset(
        ceiling=store.na.noise_ceiling())
    assert ds["score"].dims == ("layer", "neuroid") and ds["score"].attrs["kind"] == "test"
    pref = layer_preference(ds)
    assert pref.sizes["neuroid"] == ds.sizes["neuroid"]
    np.testing.assert_array_equal(pref["best_layer"].values, ds["best_layer"].values)
    np.testing.assert_allclose(pref["best_score"].values, ds["best_score"].values)
    summary = summarize_by_roi(pref)
    cv_pref = summarize_by_roi(layer_preference(ds["cv_score"]))
    for roi, layer in sim_nsd_large.layer_of_roi().items():
        assert summary["best_layer"].sel(roi=roi).item() == layer, roi
        assert cv_pref["best_layer"].sel(roi=roi).item() == layer, roi
    np.testing.assert_array_equal(layer_preference(ds["cv_score"])["best_layer"].values, ds["best_layer"].values)
