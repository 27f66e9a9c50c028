"""The schema gate: every error names what is missing and what is present."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.exceptions import DataFormatError, DimensionError, SplitLeakageError
from neuroalign.store import check_store, open_store, save_store, split_overlap, summary
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


def test_missing_split_and_subject(ds):
    with pytest.raises(DimensionError, match="missing the coordinate 'split' on dim 'presentation'"):
        check_store(ds.drop_vars("split"))
    with pytest.raises(DimensionError, match="missing the coordinate 'subject' on dim 'neuroid'"):
        check_store(ds.drop_vars("subject"))


def test_string_coordinate_holding_other_objects(ds):
    ids = ds.stimulus_id.values.astype(object)
    ids[3] = 7
    ids = np.concatenate([ids[3:4], ids[:3], ids[4:]])  # the non-str first, where it is checked
    with pytest.raises(DataFormatError, match="coordinate 'stimulus_id' has dtype object, expected str"):
        check_store(ds.assign_coords(stimulus_id=("presentation", ids)))


@pytest.mark.parametrize("name,dim,good,bad,expected", [
    ("session", "presentation", 0, 0.5, "int"),
    ("run", "presentation", 0, 0.5, "int"),
    ("trial", "presentation", 0, 0.5, "int"),
    ("hemisphere", "neuroid", "lh", 1, "str"),
    ("sensor", "neuroid", "MEG0111", 1, "str"),
    ("i", "neuroid", 0, 0.5, "int"),
    ("j", "neuroid", 0, 0.5, "int"),
    ("k", "neuroid", 0, 0.5, "int"),
    ("vertex", "neuroid", 0, 0.5, "int"),
])
def test_optional_coordinates_are_checked_when_present(ds, name, dim, good, bad, expected):
    n = ds.sizes[dim]
    check_store(ds.assign_coords({name: (dim, np.full(n, good))}))
    bad_values = np.full(n, bad)
    with pytest.raises(DataFormatError, match=f"coordinate '{name}' has dtype {bad_values.dtype}, expected {expected}"):
        check_store(ds.assign_coords({name: (dim, bad_values)}))
    other = "neuroid" if dim == "presentation" else "presentation"
    with pytest.raises(DimensionError, match=f"coordinate '{name}' has dims \\('{other}',\\), expected \\('{dim}',\\)"):
        check_store(ds.drop_vars(name, errors="ignore").assign_coords({name: (other, np.full(ds.sizes[other], good))}))


def test_averaged_store_coordinates(ds):
    av = ds.na.average_repetitions()
    with pytest.raises(DataFormatError, match="coordinate 'n_repetitions' has dtype float64, expected int"):
        check_store(av.assign_coords(n_repetitions=av.n_repetitions.astype(float)))
    with pytest.raises(DimensionError, match="missing the coordinate 'stimulus_id' on dim 'stimulus'"):
        check_store(av.drop_vars("stimulus_id"))


def test_roi_must_be_on_neuroid(ds):
    mask = np.zeros(ds.sizes["presentation"], dtype=bool)
    with pytest.raises(DataFormatError, match=r"ROI coordinate 'roi_x' must be bool on dim 'neuroid', got dtype bool on dims \('presentation',\)"):
        check_store(ds.assign_coords(roi_x=("presentation", mask)))


def test_noise_ceiling_variable_checked(ds):
    with pytest.raises(DataFormatError, match="variable 'noise_ceiling' must be float on dim 'neuroid', got dtype int64"):
        check_store(ds.assign(noise_ceiling=("neuroid", np.arange(4))))
    with pytest.raises(DataFormatError, match=r"variable 'ncsnr' must be float on dim 'neuroid', got dtype float64 on dims \('presentation',\)"):
        check_store(ds.assign(ncsnr=("presentation", np.ones(ds.sizes["presentation"]))))
    check_store(ds.assign(noise_ceiling=("neuroid", np.full(4, 50.0)), ncsnr=("neuroid", np.ones(4))))


# -- split leakage ----------------------------------------------------------------------


def leaky(ds, n=1):
    """Move one presentation of each of the first ``n`` train stimuli into 'test'."""
    split = ds.split.values.copy()
    train_ids = list(dict.fromkeys(ds.stimulus_id.values[split == "train"]))[:n]
    for s in train_ids:
        split[np.flatnonzero(ds.stimulus_id.values == s)[0]] = "test"
    return ds.assign_coords(split=("presentation", split)), sorted(train_ids)


def test_stimulus_in_both_splits_is_an_error(ds):
    bad, ids = leaky(ds, 2)
    with pytest.raises(SplitLeakageError, match=rf"2 stimuli have presentations in both 'train' and 'test': "
                       rf"'{ids[0]}', '{ids[1]}'. A model would be trained and tested on the same images. "
                       r"Give every presentation .* or set ds.attrs\['allow_split_overlap'\] = True"):
        check_store(bad)
    with pytest.raises(SplitLeakageError, match=ids[0]):
        bad.na.split("test")  # every split selection goes through the check


def test_split_overlap_opt_out_survives_save_and_shows(ds, tmp_path):
    bad, ids = leaky(ds)
    allowed = bad.assign_attrs(allow_split_overlap=True)
    assert check_store(allowed) is allowed
    assert split_overlap(allowed).tolist() == ids
    test = allowed.na.split("test")
    assert ids[0] in test.stimulus_id.values and ids[0] in allowed.na.split("train").stimulus_id.values
    back = open_store(save_store(allowed, tmp_path / "s.zarr"))
    assert back.attrs["allow_split_overlap"] is True
    text = summary(back)
    assert f"split overlap: ALLOWED (allow_split_overlap=True); 1 stimuli in both train and test: '{ids[0]}'" in text
    assert "split overlap" not in summary(ds)
    with pytest.raises(SplitLeakageError, match=r"allows it \(allow_split_overlap=True\).*Average each split on its own"):
        allowed.na.average_repetitions()
    with pytest.raises(SplitLeakageError):
        check_store(bad.assign_attrs(allow_split_overlap=False))
    with pytest.raises(DataFormatError, match=r"attribute 'allow_split_overlap' is 'yes'; expected True or False"):
        check_store(ds.assign_attrs(allow_split_overlap="yes"))


@pytest.fixture(scope="module")
def wide():
    """1,200 presentations and 1,500 neuroids: more values than the first thousand."""
    return make_store(400, 1500, n_repetitions=3, n_test=40, seed=2)


@pytest.mark.parametrize("name,dim", [("stimulus_id", "presentation"), ("split", "presentation"),
                                      ("neuroid_id", "neuroid"), ("subject", "neuroid"),
                                      ("hemisphere", "neuroid")])
@pytest.mark.parametrize("bad", [np.nan, None, 7, b"x"], ids=["nan", "None", "int", "bytes"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_value_of_a_string_coordinate_is_checked(wide, name, dim, bad, seed):
    n = wide.sizes[dim]
    values = (np.asarray(wide.coords[name].values) if name in wide.coords
              else np.full(n, "lh")).astype(object)
    rows = np.sort(np.random.default_rng(seed).choice(np.arange(1000, n), 7, replace=False))
    values[rows] = bad
    ds = wide.assign_coords({name: (dim, values)}).assign_attrs(allow_split_overlap=True)
    held = ds.coords[name].values  # xarray keeps None as NaN
    shown = ", ".join(f"{r}: {held[r]!r}" for r in rows[:5]).replace("(", "\\(").replace(")", "\\)")
    with pytest.raises(DataFormatError, match=(
            f"coordinate '{name}' has dtype object, expected str: 7 of its {n} values on "
            f"'{dim}' are not str, at positions {shown}, ...")):
        check_store(ds)
    for r in rows:  # the same coordinate with str everywhere passes
        values[r] = "train" if name == "split" else f"ok-{r}"
    check_store(wide.assign_coords({name: (dim, values)}).assign_attrs(allow_split_overlap=True))
