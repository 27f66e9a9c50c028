"""On the simulated routing ROI (target at a random location), attention routing beats
ridge on the same token features and its routing maps point at the target."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.datasets.simulate import simulate
from neuroalign.encoders import AttentionRoutingEncoder, RidgeEncoder
from neuroalign.recipes import simulated_truth_tokens


def test_routing_roi_is_opt_in(tmp_path):
    with pytest.raises(ValueError, match="'routing_roi' in simulate\\(\\): True is only available"):
        simulate(tmp_path / "eeg", format="things-eeg2", routing_roi=True)


@pytest.mark.slow
def test_attention_routing_beats_ridge_on_simulated_routing_roi(tmp_path):
    res = simulate(tmp_path / "nsd", routing_roi=True, n_images=360, n_test=60)
    assert res.layer_of_roi()["EBA"] == "layer3@target"
    cells = np.asarray(res.truth["routing"]["target_cell_by_nsd_id"])
    store = res.store().load()
    eba = store.na.roi("EBA")
    tokens = simulated_truth_tokens(store, "layer3", grid=res.truth["routing"]["grid"])
    train = eba.na.split("train").na.average_repetitions()
    test = eba.na.split("test").na.average_repetitions()
    in_train = np.isin(tokens.stimulus_id.values, train.stimulus_id.values)
    ttr, tte = tokens.isel(stimulus=in_train), tokens.isel(stimulus=~in_train)
    enc = AttentionRoutingEncoder(rois=["EBA"]).fit(ttr, train)
    r_attn = float(enc.score(tte, test).median())

    def flat(t):
        a = t["layer3"]
        return xr.DataArray(a.values.reshape(len(a), -1), dims=("stimulus", "f"),
                            coords={"stimulus_id": ("stimulus", a.stimulus_id.values)})

    ridge = RidgeEncoder().fit(flat(ttr), train)
    r_ridge = float(ridge.score(flat(tte), test).median())
    assert r_attn > r_ridge + 0.15, (r_attn, r_ridge)
    maps = enc.routing_maps(tte).sel(roi="EBA")
    nsd_of = dict(zip(store.stimulus_id.values.tolist(), store.nsd_id.values.tolist(), strict=True))
    true_cell = cells[[nsd_of[s] for s in tte.stimulus_id.values]]
    assert (maps.values.argmax(-1) == true_cell).mean() > 0.7
    # the ground-truth brain answers for ordinary ROIs and refuses the position-dependent one
    from neuroalign.decoders import store_images

    imgs = store_images(test.isel(stimulus=slice(0, 2)))
    brain = res.brain()
    assert np.isfinite(brain.roi_response(imgs, "FFA-1")).all()
    assert np.isnan(brain.signal(imgs)[:, store["roi_EBA"].values]).all()
    with pytest.raises(ValueError, match="ROI 'EBA' reads 'layer3@target'"):
        brain.roi_response(imgs, "EBA")
