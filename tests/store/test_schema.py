"""The schema gate: every error names what is missing and what is present."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.exceptions import DataFormatError, DimensionError
from neuroalign.store import check_store
from neuroalign.testing import make_store


@pytest.fixture
def ds():
    return make_store(10, 4, n_repetitions=2, n_test=2, rois={"V1v": [True, False, True, False]})


def test_valid_store_passes_and_is_returned(ds):
    assert check_store(ds) is ds
    check_store(make_store(8, 3, n_times=5))
    check_store(ds.na.average_repetitions())


def test_not_a_dataset():
    with pytest.raises(TypeError, match="expects an xarray.Dataset, got DataArray"):
        check_store(xr.DataArray([1.0]))


def test_missing_responses(ds):
    with pytest.raises(DimensionError, match=r"no data variable 'responses'. Variables present: 'betas'"):
        check_store(ds.rename({"responses": "betas"}).drop_vars("true_ncsnr"))


def test_wrong_dims(ds):
    bad = ds.rename_dims({"neuroid": "voxel"})
    with pytest.raises(DimensionError, match=r"has dims \('presentation', 'voxel'\). Expected one of"):
        check_store(bad)


def test_integer_responses(ds):
    bad = ds.assign(responses=ds.responses.astype(np.int16))
    with pytest.raises(DataFormatError, match="has dtype int16, expected a float dtype"):
        check_store(bad)


def test_missing_stimulus_id_lists_present(ds):
    with pytest.raises(DimensionError, match=r"missing the coordinate 'stimulus_id' on dim 'presentation'. "
                       r"Coordinates present on 'presentation': 'repetition', 'session', 'split', 'trial'"):
        check_store(ds.drop_vars("stimulus_id"))


def test_missing_neuroid_id(ds):
    with pytest.raises(DimensionError, match="missing the coordinate 'neuroid_id' on dim 'neuroid'"):
        check_store(ds.drop_vars("neuroid_id"))


def test_missing_repetition(ds):
    with pytest.raises(DimensionError, match="missing the coordinate 'repetition'"):
        check_store(ds.drop_vars("repetition"))


def test_coordinate_on_wrong_dim(ds):
    bad = ds.drop_vars("subject").assign_coords(subject=("presentation", np.array(["s"] * ds.sizes["presentation"])))
    with pytest.raises(DimensionError, match=r"coordinate 'subject' has dims \('presentation',\), expected \('neuroid',\)"):
        check_store(bad)


def test_wrong_coordinate_dtype(ds):
    bad = ds.assign_coords(repetition=ds.repetition.astype(float))
    with pytest.raises(DataFormatError, match="coordinate 'repetition' has dtype float64, expected int"):
        check_store(bad)
    bad = ds.assign_coords(stimulus_id=("presentation", np.arange(ds.sizes["presentation"])))
    with pytest.raises(DataFormatError, match="coordinate 'stimulus_id' has dtype int64, expected str"):
        check_store(bad)


def test_bad_split_values(ds):
    split = ds.split.values.copy()
    split[0] = "val"
    with pytest.raises(DataFormatError, match=r"'split' has values 'test', 'train', 'val', expected only 'train', 'test'"):
        check_store(ds.assign_coords(split=("presentation", split)))


def test_negative_repetition(ds):
    rep = ds.repetition.values.copy()
    rep[0] = -1
    with pytest.raises(DataFormatError, match="negative values \\(min -1\\); repetitions are 0-based"):
        check_store(ds.assign_coords(repetition=("presentation", rep)))


def test_averaged_store_with_duplicates(ds):
    av = ds.na.average_repetitions()
    ids = av.stimulus_id.values.copy()
    ids[1] = ids[0]
    with pytest.raises(DataFormatError, match=r"one row per stimulus, but stimulus_id repeats: 'stim-"):
        check_store(av.assign_coords(stimulus_id=("stimulus", ids)))


def test_duplicate_neuroid_ids(ds):
    ids = ds.neuroid_id.values.copy()
    ids[1] = ids[0]
    with pytest.raises(DataFormatError, match="'neuroid_id' has duplicates: 'n00000'"):
        check_store(ds.assign_coords(neuroid_id=("neuroid", ids)))


def test_roi_must_be_bool(ds):
    with pytest.raises(DataFormatError, match="ROI coordinate 'roi_FFA' must be bool on dim 'neuroid', got dtype int64"):
        check_store(ds.assign_coords(roi_FFA=("neuroid", np.array([1, 0, 0, 1]))))


def test_time_needs_float_coordinate():
    ds = make_store(6, 2, n_times=4)
    with pytest.raises(DimensionError, match="has dim 'time' but no coordinate 'time'"):
        check_store(ds.drop_vars("time"))
    with pytest.raises(DataFormatError, match="coordinate 'time' has dtype int64, expected float seconds"):
        check_store(ds.assign_coords(time=np.arange(4)))


def test_ncsnr_variable_checked(ds):
    with pytest.raises(DataFormatError, match="variable 'ncsnr' must be float on dim 'neuroid'"):
        check_store(ds.assign(ncsnr=("neuroid", np.arange(4))))


def test_missing_attrs(ds):
    bad = ds.copy()
    del bad.attrs["units"]
    with pytest.raises(DataFormatError, match=r"missing the attribute\(s\) 'units'. Attributes present: 'dataset', 'schema_version', 'space'"):
        check_store(bad)
