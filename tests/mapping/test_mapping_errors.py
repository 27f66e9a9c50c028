"""Every remaining error message of neuroalign.mapping (and simulate's planted units) is pinned."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.datasets.simulate import DEFAULT_ROIS, ROISpec, planted_unit_rois, simulate
from neuroalign.exceptions import DataFormatError, DimensionError, StimulusMismatchError
from neuroalign.mapping import (
    FSAVERAGE5_VERTICES,
    plot_layer_profile,
    plot_surface_map,
    roi_layer_profile,
    select_units,
    to_fsaverage5,
    unit_to_roi,
    volume_image,
)
from neuroalign.mapping._common import align_stimuli
from neuroalign.testing import make_store


def scores(n=4):
    return xr.DataArray(np.ones((2, n)), dims=("layer", "neuroid"), coords={"layer": ["a", "b"]})


def features(store, n_units=5):
    ids = np.unique(store["stimulus_id"].values)
    X = np.random.default_rng(0).standard_normal((len(ids), n_units))
    return xr.DataArray(X, dims=("stimulus", "unit"), coords={"stimulus_id": ("stimulus", ids)})


def test_planted_unit_rois():
    rois = planted_unit_rois(DEFAULT_ROIS, 4, seed=1)
    assert all(len(r.units) == 4 and max(r.units) < 64 for r in rois)
    assert [r.layer for r in rois] == [r.layer for r in DEFAULT_ROIS]
    same = planted_unit_rois((ROISpec("A", "x", "layer1"), ROISpec("B", "x", "layer1")), 30)
    assert not set(same[0].units) & set(same[1].units)  # same layer: disjoint channels
    kept = planted_unit_rois((ROISpec("A", "x", "layer1", units=(1, 2)),), 3)
    assert kept[0].units == (1, 2)
    with pytest.raises(ValueError, match="between 1 and 64"):
        planted_unit_rois(DEFAULT_ROIS, 65)
    with pytest.raises(ValueError, match="only 4 free channels"):
        planted_unit_rois((ROISpec("A", "x", "layer1"), ROISpec("B", "x", "layer1"),
                           ROISpec("C", "x", "layer1")), 30)
    with pytest.raises(ValueError, match="Invalid value for 'units_per_roi' in simulate"):
        simulate("unused-never-written", units_per_roi=0)


def test_roi_mask_errors():
    store = make_store(10, 4, rois={"A": [True, True, False, False]})
    with pytest.raises(DimensionError, match="without 'neuroid_id' cannot be matched"):
        roi_layer_profile(scores(3), store)
    with pytest.raises(ValueError, match="no ROIs found"):
        roi_layer_profile(scores(4))
    assert roi_layer_profile(scores(4), store).sizes["roi"] == 1  # positional match


def test_stimulus_alignment_errors():
    with pytest.raises(StimulusMismatchError, match="repeated stimulus_id"):
        align_stimuli(["a", "a"], ["a"], left="features", right="store", func="f")


def test_unit_to_roi_remaining_errors():
    store = make_store(10, 4, n_repetitions=2, rois={"A": [True, True, False, False]})
    feats = features(store)
    with pytest.raises(DimensionError, match="no 'stimulus_id' coordinate"):
        unit_to_roi(feats.drop_vars("stimulus_id"), store)
    small = make_store(4, 4, n_repetitions=2, n_test=2, rois={"A": [True, True, False, False]})
    with pytest.raises(ValueError, match="2 stimuli; expected at least 3"):
        unit_to_roi(features(small), small, split="test")
    with pytest.raises(KeyError, match="expected a unit_to_roi"):
        select_units(xr.Dataset(), "A")
    eeg = make_store(10, 4, n_times=3, rois={"A": [True, True, False, False]})
    with pytest.raises(DimensionError, match="pass time="):
        unit_to_roi(features(eeg), eeg)
    tab = unit_to_roi(features(eeg), eeg, time=slice(0.0, 0.2), n_permutations=9)
    assert tab.sizes["unit"] == 5


def test_plot_and_map_remaining_errors():
    with pytest.raises(ValueError, match="Invalid value for 'x' in plot_layer_profile"):
        plot_layer_profile(scores().assign_coords(roi_A=("neuroid", [True] * 4)), x="depth_norm")
    with pytest.raises(KeyError, match="unknown hemisphere 'both'"):
        to_fsaverage5({"both": np.zeros(FSAVERAGE5_VERTICES)})
    with pytest.raises(ValueError, match="Invalid value for 'surface'"):
        plot_surface_map(np.zeros(2 * FSAVERAGE5_VERTICES), surface="flat")
    store = make_store(6, 4).assign_attrs(affine=np.eye(4).tolist(), volume_shape=[2, 2, 2])
    with pytest.raises(DataFormatError, match="lacks neuroid coords 'i', 'j', 'k'"):
        volume_image(np.zeros(4), store)
