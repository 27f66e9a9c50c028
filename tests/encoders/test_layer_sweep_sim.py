"""LayerSweep on the simulated brain: the true layer of every ROI is recovered."""

import numpy as np
import pytest

from neuroalign.encoders import LayerSweep, RidgeEncoder, roi_summary
from neuroalign.exceptions import StimulusMismatchError


@pytest.fixture(scope="module")
def sim(sim_nsd_large, sim_nsd_large_features):
    return sim_nsd_large, sim_nsd_large.store().load(), sim_nsd_large_features


def test_sweep_recovers_true_layer_of_every_roi(sim):
    res, store, feats = sim
    sweep = LayerSweep().fit(feats, store.na.average_repetitions())
    best = sweep.roi_best_layer()
    ds = sweep.to_dataset()
    for roi, layer in res.layer_of_roi().items():
        assert best.sel(roi=roi).item() == layer
        in_roi = ds[f"roi_{roi}"].values
        vals, counts = np.unique(ds["best_layer"].values[in_roi], return_counts=True)
        assert vals[np.argmax(counts)] == layer
    assert sweep.scores_.dims == ("layer", "neuroid") and sweep.layers_ == list(feats.data_vars)


def test_ceiling_normalised_scores_approach_one(sim):
    """The true layers explain most of what the noise ceiling allows: the ROI's ratio of mean
    r² to mean ceiling is near 1 (0.73-0.95 over simulation and fold seeds; ridge on 200
    training images shrinks it a little)."""
    res, store, feats = sim
    sweep = LayerSweep(test_split="test").fit(feats, store)
    ds = sweep.to_dataset(ceiling=store.na.noise_ceiling())
    assert ds.attrs["score_kind"] == "test" and ds.attrs["metric"] == "pearson"
    summary = roi_summary(ds, n_bootstrap=200)
    assert summary.attrs["aggregate"] == "mean" and summary["score"].attrs["source"] == "best_score"
    for roi in res.layer_of_roi():
        row = summary.sel(roi=roi)
        assert 0.65 < float(row["ceiling_normalised"]) < 1.2, roi
        assert float(row["ceiling_normalised_ci_low"]) < 1.0 < float(row["ceiling_normalised_ci_high"]) + 0.35, roi
        assert float(row["score"]) > 0.5, roi
    # a single true-layer encoder reaches the same on its ROI
    roi_store = store.na.roi("FFA-1")
    train, test = roi_store.na.split("train"), roi_store.na.split("test").na.average_repetitions()
    f4 = feats[["layer4"]]  # features of every stimulus: the join takes each split's rows
    enc = RidgeEncoder().fit(f4, train)
    r = enc.score(f4, test)
    assert float(r.median()) > 0.7


def test_sweep_errors(sim):
    _, store, feats = sim
    with pytest.raises(ValueError, match=r"'test_split' in LayerSweep\(\): 'val'. Expected one of 'train', 'test'"):
        LayerSweep(test_split="val").fit(feats, store)
    with pytest.raises(StimulusMismatchError, match="missing from the features"):
        LayerSweep(test_split="test").fit(feats.isel(stimulus=slice(1, None)), store)
    with pytest.raises(TypeError, match=r"Invalid value for 'features' \(X\) in LayerSweep.fit\(\): list"):
        LayerSweep().fit([1, 2], store)
    sweep = LayerSweep().fit({"a": feats["layer1"]}, store.na.average_repetitions())
    with pytest.raises(KeyError, match="Expected one of \\['a'\\]"):
        sweep.predict(feats["layer1"], layer="b")
    assert sweep.predict(feats["layer1"], layer="a").shape == (feats.sizes["stimulus"], store.sizes["neuroid"])
