"""The Python chain, each output the next input: simulate -> store on disk -> features ->
LayerSweep -> results (checked, saved, reopened) -> maps (layer preference, ROI summaries)."""

import numpy as np

from neuroalign.encoders import LayerSweep, roi_summary
from neuroalign.mapping import layer_preference, roi_layer_profile, summarize_by_roi
from neuroalign.store import check_results, open_results, open_store, save_results, save_store


def test_simulate_store_features_fit_results_map(sim_nsd_large, sim_nsd_large_features, tmp_path):
    truth = sim_nsd_large.layer_of_roi()
    # simulate -> store on disk (the ROIs only, to keep it quick)
    save_store(sim_nsd_large.store().load().na.roi(list(truth)), tmp_path / "store.zarr")
    store = open_store(tmp_path / "store.zarr")
    # features of the whole stimulus set, in their own order: joined on stimulus_id
    feats = sim_nsd_large_features.isel(
        stimulus=np.random.default_rng(0).permutation(sim_nsd_large_features.sizes["stimulus"]))
    # fit -> results of the one schema
    sweep = LayerSweep(cv=3, device="cpu", test_split="test").fit(feats, store)
    res = sweep.to_dataset(ceiling=store.na.noise_ceiling(split="test"))
    assert check_results(res) is res
    assert res.attrs["score_kind"] == "test" and res.attrs["split"] == "test"
    save_results(res, tmp_path / "results.zarr")
    back = open_results(tmp_path / "results.zarr")
    # results -> maps, exactly as written
    pref = layer_preference(back)
    assert pref["best_layer"].dims == ("neuroid",)
    rois = summarize_by_roi(pref, store, rois=list(truth))
    profile = roi_layer_profile(back, store, rois=list(truth))
    summary = roi_summary(back)
    for roi, layer in truth.items():
        mask = np.asarray(back[f"roi_{roi}"].values, bool)
        names, counts = np.unique(back["best_layer"].values[mask], return_counts=True)
        assert names[np.argmax(counts)] == layer, roi  # chosen by CV within train
        assert rois["n_neuroids"].sel(roi=roi).item() == mask.sum()
        assert profile.sel(roi=roi).idxmax("layer").item() == layer, roi  # ROI-mean held-out score
        assert float(summary["score"].sel(roi=roi)) > 0.3, roi
        assert 0.5 < float(summary["ceiling_normalised"].sel(roi=roi)) < 1.3, roi
