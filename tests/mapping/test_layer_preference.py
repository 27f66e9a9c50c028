"""layer_preference and its ROI / time summaries."""

import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neuroalign.encoders import results_from_scores
from neuroalign.exceptions import DataQualityWarning, DimensionError
from neuroalign.mapping import (
    best_layer_over_time,
    layer_preference,
    roi_layer_profile,
    summarize_by_roi,
)

LAYERS = ["layer1", "layer2", "layer3", "layer4"]
SIM_ROIS = ["V1v", "hV4", "PPA", "FFA-1"]


def toy_scores():
    vals = np.array([[0.9, 0.1, 0.0, -0.2], [0.1, 0.9, 0.1, -0.1], [0.0, 0.1, 0.9, -0.3]])
    return xr.DataArray(
        vals, dims=("layer", "neuroid"),
        coords={"layer": ["a", "b", "c"], "neuroid_id": ("neuroid", list("wxyz")),
                "roi_A": ("neuroid", [True, True, False, False])},
    )


def test_best_layer_and_depths_on_known_scores():
    pref = layer_preference(toy_scores())
    assert list(pref["best_layer"].values[:3]) == ["a", "b", "c"]
    np.testing.assert_allclose(pref["best_depth_norm"].values[:3], [0, 0.5, 1])
    np.testing.assert_allclose(pref["mean_depth"].values[0], (0.1 * 1) / 1.0)
    assert np.isnan(pref["mean_depth"].values[3])  # no positive score: weighted depth undefined
    assert pref["best_layer"].values[3] == "b"  # -0.1 is the highest
    assert list(pref["neuroid_id"].values) == list("wxyz")


def test_models_of_different_depth_are_normalised_separately():
    vals = np.array([[1.0], [0.0], [0.0], [0.0], [1.0]])  # model m1: 3 layers, m2: 2 layers
    da = xr.DataArray(vals, dims=("layer", "neuroid"),
                      coords={"layer": ["x1", "x2", "x3", "y1", "y2"],
                              "model": ("layer", ["m1", "m1", "m1", "m2", "m2"])})
    pref = layer_preference(da)
    assert pref.sizes["model"] == 2
    np.testing.assert_allclose(pref["best_depth_norm"].sel(model="m1").values, [0.0])
    np.testing.assert_allclose(pref["best_depth_norm"].sel(model="m2").values, [1.0])
    assert pref["best_layer"].sel(model="m2").item() == "y2"


def test_accepts_results_of_the_schema_and_score_arrays_only():
    ds = results_from_scores(toy_scores(), metric="r2", score_kind="cv", split="all")
    assert list(layer_preference(ds)["best_layer"].values) == list(layer_preference(toy_scores())["best_layer"].values)

    class Sweep:  # no attribute guessing: an object holding scores is not results
        score = toy_scores()

    with pytest.raises(TypeError, match="expected encoder results .* got 'Sweep'"):
        layer_preference(Sweep())
    with pytest.raises(DimensionError, match="Results are missing the variable 'alpha'"):
        layer_preference(xr.Dataset({"score": toy_scores()}))
    with pytest.raises(ValueError, match="named 'm/a', 'm/b', 'm/c' with no 'model' coordinate"):
        layer_preference(toy_scores().assign_coords(layer=["m/a", "m/b", "m/c"]))


def test_errors_name_what_is_missing():
    with pytest.raises(DimensionError, match="no variable 'score'"):
        layer_preference(xr.Dataset({"r": toy_scores()}))
    with pytest.raises(DimensionError, match="missing 'neuroid'"):
        layer_preference(toy_scores().rename(neuroid="voxel"))
    with pytest.raises(TypeError, match="expected encoder results"):
        layer_preference(np.zeros((3, 4)))
    with pytest.raises(KeyError, match="unknown ROI"):
        roi_layer_profile(toy_scores(), rois=["B"])
    with pytest.raises(ValueError, match="hold no neuroids"):
        roi_layer_profile(toy_scores().assign_coords(roi_B=("neuroid", [False] * 4)), rois=["B"])
    with pytest.raises(ValueError, match="Invalid value for 'by'"):
        best_layer_over_time(toy_scores(), by="sensor")


def test_simulated_rois_prefer_their_true_layer(sim_nsd_large, nsd_scores):
    truth = sim_nsd_large.layer_of_roi()
    pref = layer_preference(nsd_scores)
    summary = summarize_by_roi(pref, rois=SIM_ROIS)
    for roi in SIM_ROIS:
        assert summary["best_layer"].sel(roi=roi).item() == truth[roi], roi
    # ROIs are ordered along the hierarchy by their mean preferred depth
    depth = [summary["best_depth_norm"].sel(roi=r).item() for r in SIM_ROIS]
    order = [LAYERS.index(truth[r]) for r in SIM_ROIS]
    assert np.argsort(depth).tolist() == np.argsort(order).tolist()
    # undriven neuroids score near 0 on every layer
    driven = np.zeros(nsd_scores.sizes["neuroid"], bool)
    for roi in SIM_ROIS:
        driven |= nsd_scores[f"roi_{roi}"].values
    assert np.median(pref["best_score"].values[~driven]) < 0.3 < np.median(pref["best_score"].values[driven])


def test_roi_profile_uses_store_masks(sim_nsd_large, nsd_scores):
    bare = nsd_scores.drop_vars([c for c in nsd_scores.coords if c.startswith("roi_")])
    prof = roi_layer_profile(bare, sim_nsd_large.store(), rois=SIM_ROIS)
    assert prof.dims == ("roi", "layer")
    np.testing.assert_allclose(prof.values, roi_layer_profile(nsd_scores, rois=SIM_ROIS).values)
    with pytest.raises(KeyError, match="not in the store"):
        roi_layer_profile(bare.assign_coords(neuroid_id=("neuroid", ["x"] * bare.sizes["neuroid"])),
                          sim_nsd_large.store())


def test_results_keep_their_own_selection_by_cv_score():
    """Held-out scores with cv_score: the layer is the one cv_score chose (the results'
    best_layer), never re-picked on the held-out scores, and best_score is its score."""
    test = toy_scores()
    # the cross-validated R² within train prefers the last layer for w, x, y, the first for z
    cv = xr.DataArray([[0.0, 0.0, 0.0, 0.5], [0.1, 0.1, 0.1, 0.2], [0.3, 0.3, 0.3, 0.1]],
                      dims=test.dims, coords=test.coords)
    ds = results_from_scores(test, cv_score=cv, metric="pearson", score_kind="test", split="test")
    pref = layer_preference(ds)
    assert list(pref["best_layer"].values) == list(ds["best_layer"].values) == ["c", "c", "c", "a"]
    np.testing.assert_allclose(pref["best_score"].values, ds["best_score"].values)
    np.testing.assert_allclose(pref["best_score"].values, [0.0, 0.1, 0.9, -0.2])
    assert "cv_score" in pref["best_score"].attrs["aggregate"]
    # the same scores without cv_score choose by themselves (the maximum, as before)
    alone = layer_preference(test)
    assert list(alone["best_layer"].values) == ["a", "b", "c", "b"]
    assert "maximum over layers" in alone["best_score"].attrs["aggregate"]
    # over time, per ROI: the ROI-mean cv_score chooses
    tt = xr.concat([test, test], "time").transpose("layer", "neuroid", "time")
    ct = xr.concat([cv, cv], "time").transpose("layer", "neuroid", "time")
    ds_t = results_from_scores(tt, cv_score=ct, metric="pearson", score_kind="test", split="test")
    roi = best_layer_over_time(ds_t, by="roi")
    assert list(roi["best_layer"].sel(roi="A").values) == ["c", "c"]


def test_best_layer_over_time_per_sensor_and_roi():
    # two sensors: layer a wins early, layer b late; sensor 1 reversed
    t = np.arange(4)
    vals = np.zeros((2, 2, 4))
    vals[0, 0] = [1, 1, 0, 0]
    vals[1, 0] = [0, 0, 1, 1]
    vals[0, 1] = [0, 0, 1, 1]
    vals[1, 1] = [1, 1, 0, 0]
    da = xr.DataArray(vals + 0.1, dims=("layer", "neuroid", "time"),
                      coords={"layer": ["a", "b"], "time": t, "roi_g": ("neuroid", [True, False])})
    per = best_layer_over_time(da)
    assert per["best_layer"].dims == ("neuroid", "time")
    assert list(per["best_layer"].values[0]) == ["a", "a", "b", "b"]
    assert list(per["best_layer"].values[1]) == ["b", "b", "a", "a"]
    roi = best_layer_over_time(da, by="roi")
    assert list(roi["best_layer"].sel(roi="g").values) == ["a", "a", "b", "b"]
    with pytest.raises(DimensionError, match="missing 'time'"):
        best_layer_over_time(da.isel(time=0))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 5)),
              elements=st.one_of(st.floats(-1, 1), st.just(np.nan))))
def test_preference_laws(vals):
    """Best score is the maximum over the layers that have one; a NaN layer never wins; a
    neuroid whose every layer is NaN gets '' and NaN (with a warning); depths lie in [0, 1];
    neuroid order does not matter."""
    da = xr.DataArray(vals, dims=("layer", "neuroid"), coords={"layer": [f"L{i}" for i in range(vals.shape[0])]})
    all_nan = np.isnan(vals).all(axis=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pref = layer_preference(da)
    assert any(issubclass(w.category, DataQualityWarning) for w in caught) == bool(all_nan.any())
    expected = np.array([np.nan if n else np.nanmax(vals[:, j]) for j, n in enumerate(all_nan)])
    np.testing.assert_allclose(pref["best_score"].values, expected)
    for j, name in enumerate(pref["best_layer"].values):
        if all_nan[j]:
            assert name == "" and np.isnan(pref["best_depth_norm"].values[j])
        else:
            assert vals[int(name[1:]), j] == expected[j]  # never a NaN layer
    for name in ("best_depth_norm", "mean_depth_norm"):
        v = pref[name].values
        assert np.all((v[np.isfinite(v)] >= 0) & (v[np.isfinite(v)] <= 1))
    perm = np.arange(vals.shape[1])[::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        back = layer_preference(da.isel(neuroid=perm))
    assert list(back["best_layer"].values) == list(pref["best_layer"].values[perm])


def test_nan_layers_never_win_in_roi_summaries():
    """An all-NaN neuroid does not vote for the ROI's layer; an ROI-mean profile skips NaN."""
    vals = np.array([[np.nan, np.nan, 0.1, np.nan], [np.nan, np.nan, 0.9, 0.5], [np.nan, 0.4, 0.2, 0.1]])
    da = xr.DataArray(vals, dims=("layer", "neuroid"),
                      coords={"layer": ["a", "b", "c"], "neuroid_id": ("neuroid", list("wxyz")),
                              "roi_A": ("neuroid", [True, True, True, True]),
                              "roi_B": ("neuroid", [True, False, False, False])})
    with pytest.warns(DataQualityWarning, match=r"NaN on every layer \(neuroids 'w'\)"):
        pref = layer_preference(da)
    assert list(pref["best_layer"].values) == ["", "c", "b", "b"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = summarize_by_roi(pref)
    assert summary["best_layer"].sel(roi="A").item() == "b"  # 2 of the 3 neuroids with a layer
    assert summary["best_layer_fraction"].sel(roi="A").item() == pytest.approx(2 / 3)
    assert summary["best_layer"].sel(roi="B").item() == "" and np.isnan(summary["best_layer_fraction"].sel(roi="B"))
    prof = roi_layer_profile(da, rois="A")
    np.testing.assert_allclose(prof.sel(roi="A").values, [0.1, 0.7, 0.7 / 3])


@pytest.mark.parametrize("names", [["layer2", "layer10"], ["layer10", "layer2"],
                                   ["fc", "conv1", "b"], ["b", "fc", "conv1"], ["conv1", "b", "fc"]])
@pytest.mark.parametrize("seed", [0, 1])
def test_roi_summary_tie_goes_to_the_first_layer_in_order(names, seed):
    """Layers preferred by as many neuroids tie; the first in the scores' layer order wins
    (nan_argmax's rule), whatever the names' alphabetical order and the neuroids' order.
    It went alphabetically: 'layer10' beat 'layer2' in either order."""
    k = len(names)
    rng = np.random.default_rng(seed)
    prefer = np.repeat(np.arange(k), 2)  # every layer the best of 2 neuroids: a k-way tie
    vals = rng.uniform(0.0, 0.5, (k, 2 * k))
    vals[prefer, np.arange(2 * k)] = 0.9
    perm = rng.permutation(2 * k)
    da = xr.DataArray(vals[:, perm], dims=("layer", "neuroid"),
                      coords={"layer": names, "roi_A": ("neuroid", np.ones(2 * k, bool))})
    summary = summarize_by_roi(layer_preference(da))
    assert summary["best_layer"].sel(roi="A").item() == names[0]
    assert summary["best_layer_fraction"].sel(roi="A").item() == pytest.approx(1 / k)
    # a tie between the later layers only: the earlier of them
    later = vals.copy()
    later[:, prefer == 0] = vals[:, prefer == 1]  # layer 0's neuroids now prefer layer 1
    later[:, [0]] = later[:, [-1]]  # ... but one prefers the last: at k = 3, layers 1 and 2 tie
    pref = layer_preference(da.copy(data=later[:, perm]))
    counts = {n: int((pref["best_layer"].values == n).sum()) for n in names}
    top = max(counts.values())
    expected = next(n for n in names if counts[n] == top)
    assert summarize_by_roi(pref)["best_layer"].sel(roi="A").item() == expected


def test_roi_summary_tie_follows_each_models_own_order():
    vals = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])
    da = xr.DataArray(vals, dims=("layer", "neuroid"),
                      coords={"layer": ["layer2", "layer10", "layer10", "layer2"],
                              "model": ("layer", ["m1", "m1", "m2", "m2"]),
                              "roi_A": ("neuroid", [True, True])})
    summary = summarize_by_roi(layer_preference(da))
    assert summary["best_layer"].sel(roi="A", model="m1").item() == "layer2"
    assert summary["best_layer"].sel(roi="A", model="m2").item() == "layer10"
