"""unit_to_roi finds planted units; select_units and aligned_units list them."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.exceptions import DataQualityWarning, DimensionError, StimulusMismatchError
from neuroalign.mapping import aligned_units, select_units, unit_to_roi
from neuroalign.testing import make_store

SIM_ROIS = ["V1v", "hV4", "PPA", "FFA-1"]
LAYERS = ["layer1", "layer2", "layer3", "layer4"]


def planted(n_units=40, n_stimuli=80, seed=0):
    """Store whose ROI A follows units 3 and 7, ROI B unit 12; features with those units."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_stimuli, n_units))
    rois = {"A": np.r_[np.ones(10, bool), np.zeros(10, bool)], "B": np.r_[np.zeros(10, bool), np.ones(10, bool)]}
    store = make_store(n_stimuli, 20, n_repetitions=2, ncsnr=2.0, rois=rois, seed=seed)
    sig = np.zeros((n_stimuli, 20))
    sig[:, :10] = (X[:, [3]] + X[:, [7]]) / np.sqrt(2)
    sig[:, 10:] = X[:, [12]]
    ids = np.array([f"stim-{i:04d}" for i in range(n_stimuli)])
    codes = np.searchsorted(ids, store["stimulus_id"].values)
    noise = rng.standard_normal(store["responses"].shape) * 0.5
    store = store.copy(data={"responses": (sig[codes] + noise).astype(np.float32),
                             "true_ncsnr": store["true_ncsnr"].values})
    order = rng.permutation(n_stimuli)  # features in another order: joined on stimulus_id
    feats = xr.Dataset({"fc": (("stimulus", "fc_unit"), X[order])},
                       coords={"stimulus_id": ("stimulus", ids[order])}, attrs={"model": "toy"})
    return feats, store


@pytest.mark.parametrize("method", ["correlation", "encoding"])
def test_planted_units_found_with_small_p(method):
    feats, store = planted()
    tab = unit_to_roi(feats, store, method=method, n_permutations=199, random_state=1)
    assert tab.sizes["unit"] == 40 and list(tab["roi_candidate"].values) == ["A", "B"]
    # the planted units are selected; of the 37 null units ~0.4 pass alpha = 0.01 by chance
    # (3 or more: < 1 %), so the test allows two
    sel_a = set(select_units(tab, "A", alpha=0.01)["unit_index"].values)
    sel_b = set(select_units(tab, "B", alpha=0.01)["unit_index"].values)
    assert {3, 7} <= sel_a and len(sel_a - {3, 7}) <= 2, sel_a
    assert {12} <= sel_b and len(sel_b - {12}) <= 2, sel_b
    assert list(select_units(tab, "A", alpha=None, top=2)["unit_index"].values) in ([3, 7], [7, 3])
    assert list(select_units(tab, "B", alpha=None, top=1)["unit_index"].values) == [12]
    assert tab["p_value"].values[[3, 7, 12]].max() <= 1 / 200 + 1e-12
    others = np.setdiff1d(np.arange(40), [3, 7, 12])
    assert np.mean(tab["p_value"].values[others] > 0.05) > 0.8  # nulls mostly not significant
    assert (tab["model"].values == "toy").all() and (tab["layer"].values == "fc").all()
    if method == "encoding":  # shares of one ROI's prediction sum to 1
        np.testing.assert_allclose(tab["match"].sum("unit").values, 1.0, atol=1e-8)


def test_no_permutations_gives_nan_p():
    feats, store = planted()
    tab = unit_to_roi(feats["fc"], store, n_permutations=0)
    assert np.isnan(tab["p_value"].values).all()
    assert len(select_units(tab, "A", alpha=0.05, top=2)["unit"]) == 2


def test_errors():
    feats, store = planted()
    with pytest.raises(ValueError, match="Invalid value for 'method'"):
        unit_to_roi(feats, store, method="cka")
    with pytest.raises(StimulusMismatchError, match="stim-0000"):
        unit_to_roi(feats.isel(stimulus=feats["stimulus_id"].values != "stim-0000"), store)
    two = feats.assign(fc2=feats["fc"].rename(fc_unit="fc2_unit"))
    with pytest.raises(ValueError, match="pass layer="):
        unit_to_roi(two, store)
    with pytest.raises(KeyError, match="Invalid value for 'layer'"):
        unit_to_roi(two, store, layer="conv")
    with pytest.raises(DimensionError, match="reduce token dims"):
        unit_to_roi(feats["fc"].expand_dims(token=2), store)
    with pytest.raises(TypeError, match="features must be"):
        unit_to_roi(np.zeros((3, 3)), store)
    with pytest.raises(KeyError, match="unknown ROI"):
        unit_to_roi(feats, store, rois=["FFA"])
    with pytest.raises(ValueError, match="'split' in unit_to_roi"):
        unit_to_roi(feats, store, split="val")
    with pytest.raises(ValueError, match="Invalid value for 'n_permutations'"):
        unit_to_roi(feats, store, n_permutations=-3)
    tab = unit_to_roi(feats, store, n_permutations=0)
    with pytest.raises(KeyError, match="Invalid value for 'roi' in select_units"):
        select_units(tab, "FFA")
    with pytest.raises(ValueError, match="no tables"):
        aligned_units([])


def test_aligned_units_lists_models_together():
    feats, store = planted()
    t1 = unit_to_roi(feats, store, n_permutations=199)
    feats2, _ = planted()
    t2 = unit_to_roi(feats2.assign_attrs(model="toy2"), store, n_permutations=199)
    al = aligned_units({"toy": t1, "toy2": t2}, alpha=0.01)
    a = al.isel(match=al["roi"].values == "A")
    assert set(a["model"].values) == {"toy", "toy2"}
    assert {3, 7} <= set(a["unit_index"].values)  # planted; a chance unit may join at alpha 0.01
    top = aligned_units({"toy": t1, "toy2": t2}, rois="A", top=2)
    assert set(top["unit_index"].values) == {3, 7}
    assert list(al["roi"].values) == sorted(al["roi"].values)  # grouped by ROI
    same = aligned_units([t1, t2], rois="B", top=1)
    assert list(same["model"].values) == ["toy", "toy2"] and list(same["unit_index"].values) == [12, 12]


@pytest.mark.slow
def test_simulated_planted_units(sim_units, units_features):
    """On the simulated brain, named channels drive each ROI; the encoding method finds them."""
    store = sim_units.store()
    planted_units = {r: sim_units.truth["rois"][r]["units"] for r in SIM_ROIS}
    for nd in sim_units.truth["neuroids"]:  # every voxel of an ROI reads out its planted units
        if nd.get("roi"):
            assert nd["channels"] == planted_units[nd["roi"]]
    layer_of = sim_units.layer_of_roi()
    for roi in SIM_ROIS:
        enc = unit_to_roi(units_features, store, layer=layer_of[roi], rois=SIM_ROIS,
                          method="encoding", n_permutations=99)
        # every planted unit maps to its own ROI, and the strongest unit of the ROI is planted
        assert (enc["roi"].values[planted_units[roi]] == roi).all(), roi
        top = select_units(enc, roi, alpha=None, top=1)["unit_index"].item()
        assert top in planted_units[roi], (roi, top)
        corr = unit_to_roi(units_features, store, layer=layer_of[roi], rois=SIM_ROIS, n_permutations=0)
        # correlation: planted units track their ROI far above the layer's typical unit
        match = corr["match"].sel(roi_candidate=roi).values
        assert match[planted_units[roi]].mean() > np.median(match), roi


def noise_brain(seed, n_stimuli=30, n_units=6, n_voxels=9, rois=("A", "B", "C")):
    """Features and a store of pure noise (no unit tracks any ROI); ROIs of 3 voxels each."""
    from neuroalign.store import from_arrays

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_stimuli, n_units))
    ids = np.array([f"s{i:03d}" for i in range(n_stimuli)])
    Y = rng.standard_normal((n_stimuli, n_voxels))
    masks = {r: np.arange(n_voxels) // 3 == k for k, r in enumerate(rois)}
    feats = xr.DataArray(X, dims=("stimulus", "u"), name="fc",
                         coords={"stimulus_id": ("stimulus", ids), "u": np.arange(n_units)})
    return feats, Y, ids, masks, from_arrays


@pytest.mark.parametrize("method", ["correlation", "encoding"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unit_with_nan_activation_is_never_selected(method, seed):
    """A unit with a NaN (or inf) activation gets NaN strength and p-value, roi '' and a
    warning naming it; it was the most significant unit (p = 1/(n+1)) on pure noise. The
    other units keep their results: bit for bit (correlation) and those of a run without
    the bad units (encoding, whose ridge is fit on the usable units)."""
    feats, Y, ids, masks, from_arrays = noise_brain(seed)
    store = from_arrays(Y, ids, rois=masks)
    rng = np.random.default_rng(100 + seed)
    bad = np.sort(rng.choice(6, size=2, replace=False))
    X = feats.values.copy()
    X[rng.integers(0, 30), bad[0]] = np.nan  # one NaN stimulus, anywhere
    X[[0, -1], bad[1]] = [np.nan, np.inf] if seed % 2 else [np.inf, np.nan]
    dirty = feats.copy(data=X)
    kw = dict(method=method, n_permutations=99, random_state=seed)
    with pytest.warns(DataQualityWarning, match=rf"unit_to_roi\(\): 2 of 6 units of layer 'fc' "
                      rf"have no defined match: 2 with NaN or inf activations \({bad[0]}, {bad[1]}\)"):
        tab = unit_to_roi(dirty, store, **kw)
    assert (tab["roi"].values[bad] == "").all()
    assert np.isnan(tab["strength"].values[bad]).all() and np.isnan(tab["p_value"].values[bad]).all()
    assert np.isnan(tab["match"].values[bad]).all()
    for roi in masks:
        for alpha in (0.05, 1.0, None):
            assert not set(select_units(tab, roi, alpha=alpha)["unit_index"].values) & set(bad)
    good = np.setdiff1d(np.arange(6), bad)
    if method == "correlation":  # the units are independent: other finite values change nothing
        X2 = X.copy()
        X2[:, bad] = rng.standard_normal((30, 2))
        ref = unit_to_roi(feats.copy(data=X2), store, **kw)
        ref = ref.isel(unit=good)
    else:
        ref = unit_to_roi(dirty.isel(u=good), store, **kw)
    for name in ("roi", "strength", "p_value", "match"):
        np.testing.assert_array_equal(tab[name].values[good], ref[name].values, err_msg=name)


@pytest.mark.parametrize("method", ["correlation", "encoding"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_constant_unit_has_no_roi(method, seed):
    """A dead unit (constant over the stimuli) has no correlation: it used to get strength
    0, p = 1 and the first candidate ROI as its roi, counted among that ROI's units."""
    feats, Y, ids, masks, from_arrays = noise_brain(seed)
    store = from_arrays(Y, ids, rois=masks)
    X = feats.values.copy()
    X[:, 2] = 0.5
    with pytest.warns(DataQualityWarning, match=r"1 of 6 units of layer 'fc' have no defined "
                                                r"match: 1 constant \(2\)"):
        tab = unit_to_roi(feats.copy(data=X), store, method=method, n_permutations=49,
                          random_state=seed)
    assert tab["roi"].values[2] == "" and np.isnan(tab["strength"].values[2])
    assert np.isnan(tab["p_value"].values[2]) and np.isnan(tab["match"].values[2]).all()
    assert (tab["roi"].values[np.r_[0:2, 3:6]] != "").all()
    for roi in masks:
        for alpha in (0.05, 1.0, None):
            assert 2 not in select_units(tab, roi, alpha=alpha)["unit_index"].values


def _all_nan_roi_store(seed, nan_roi, order):
    feats, Y, ids, masks, from_arrays = noise_brain(seed)
    X = feats.values
    X[:, 5] = -(X[:, 0] + X[:, 1])  # unit 5 anti-correlated with the ROIs that hold data
    Y[:, :3] += 2 * X[:, [0]]
    Y[:, 3:6] += 2 * X[:, [1]]
    Y[:, 6:] += 2 * X[:, [2]]
    names = ["A", "B", "C"]
    Y[:, masks[nan_roi]] = np.nan  # no valid data in this ROI
    rois = {names[k]: masks[names[k]] for k in order}
    return feats.copy(data=X), from_arrays(Y, ids, rois=rois), [names[k] for k in order]


@pytest.mark.parametrize("method", ["correlation", "encoding"])
@pytest.mark.parametrize(("seed", "nan_roi", "order"),
                         [(0, "C", (0, 1, 2)), (1, "A", (0, 1, 2)), (2, "B", (2, 1, 0)),
                          (3, "C", (2, 0, 1))])
def test_roi_without_valid_data_never_wins(method, seed, nan_roi, order):
    """An ROI whose voxels are all NaN scored r = 0 and won the units that match nothing
    better; it now has NaN match, never wins, is named in a warning, and the others get
    what they get without it, bit for bit (p-values included: the null is the maximum
    over the ROIs that hold data)."""
    feats, store, names = _all_nan_roi_store(seed, nan_roi, order)
    kw = dict(method=method, n_permutations=49, random_state=seed)
    with pytest.warns(DataQualityWarning, match=rf"ROI\(s\) '{nan_roi}' have no usable neuroid"):
        tab = unit_to_roi(feats, store, **kw)
    assert list(tab["roi_candidate"].values) == names
    assert np.isnan(tab["match"].sel(roi_candidate=nan_roi).values).all()
    assert nan_roi not in set(tab["roi"].values)
    assert np.isfinite(tab["strength"].values).all() and np.isfinite(tab["p_value"].values).all()
    rest = [r for r in names if r != nan_roi]
    ref = unit_to_roi(feats, store, rois=rest, **kw)
    for name in ("roi", "strength", "p_value"):
        np.testing.assert_array_equal(tab[name].values, ref[name].values, err_msg=name)
    np.testing.assert_array_equal(tab["match"].sel(roi_candidate=rest).values, ref["match"].values)
    if method == "encoding":
        assert np.isnan(tab["encoder_alpha"].sel(roi_candidate=nan_roi).item())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nan_voxels_are_left_out_of_their_roi(seed):
    """A voxel with a NaN (for some stimulus or all) is left out of its ROI's average, as
    encoders leave such neuroids out of a fit; the warning names it."""
    feats, Y, ids, masks, from_arrays = noise_brain(seed)
    Y[:, :3] += feats.values[:, [0]]
    rng = np.random.default_rng(seed)
    v_some, v_all = rng.choice(3, size=2, replace=False) + np.array([0, 3])
    Y2 = Y.copy()
    Y2[rng.integers(0, 30), v_some] = np.nan
    Y2[:, v_all] = np.nan
    nid = np.array([f"vox{i}" for i in range(9)])
    store = from_arrays(Y2, ids, rois=masks, neuroid_ids=nid)
    with pytest.warns(DataQualityWarning, match=rf"2 of 9 neuroids .*'vox{v_some}', 'vox{v_all}'"):
        tab = unit_to_roi(feats, store, n_permutations=49, random_state=seed)
    keep = np.setdiff1d(np.arange(9), [v_some, v_all])
    ref = unit_to_roi(feats, from_arrays(Y[:, keep], ids, rois={r: m[keep] for r, m in masks.items()},
                                         neuroid_ids=nid[keep]),
                      n_permutations=49, random_state=seed)
    np.testing.assert_allclose(tab["match"].values, ref["match"].values, rtol=1e-12)
    np.testing.assert_array_equal(tab["roi"].values, ref["roi"].values)
    np.testing.assert_allclose(tab["p_value"].values, ref["p_value"].values, rtol=1e-12)


def test_no_usable_roi_or_unit_raises():
    feats, Y, ids, masks, from_arrays = noise_brain(0)
    Y[:, :6] = np.nan
    with pytest.raises(ValueError, match=r"no candidate ROI has usable data: 'A', 'B' hold only"):
        unit_to_roi(feats, from_arrays(Y, ids, rois=masks), rois=["A", "B"], n_permutations=0)
    with pytest.raises(ValueError, match=r"every unit of layer 'fc' has NaN or inf"):
        unit_to_roi(feats * np.nan, from_arrays(Y[:, 6:], ids, rois={"C": np.ones(3, bool)}),
                    n_permutations=0)
