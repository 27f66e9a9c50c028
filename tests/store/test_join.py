"""The one join of features and responses (neuroalign.store.join_features): on stimulus_id,
never by row position; features may cover more stimuli; a split is taken by name."""

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroalign.exceptions import DimensionError, StimulusMismatchError
from neuroalign.store import index_stimuli, join_features, match_stimuli
from neuroalign.testing import make_store


def _features(ids, n_units=3, seed=0):
    """Features whose first unit encodes the stimulus number (so a wrong row is visible)."""
    rng = np.random.default_rng(seed)
    num = np.array([int(s.split("-")[1]) for s in ids], dtype=float)
    a = np.column_stack([num, rng.standard_normal((len(ids), n_units - 1))])
    return xr.Dataset(
        {"l1": (("stimulus", "l1_unit"), a), "l2": (("stimulus", "l2_unit"), 2 * a[:, :2])},
        coords={"stimulus_id": ("stimulus", np.asarray(ids))}, attrs={"model": "net"},
    )


@pytest.fixture(scope="module")
def store():
    return make_store(n_stimuli=12, n_neuroids=4, n_repetitions=2, n_test=4, seed=1)


def _expected_row(feats, sid):
    return feats["l1"].values[list(feats["stimulus_id"].values).index(sid)]


def test_extra_and_shuffled_features_and_split_by_name(store):
    rng = np.random.default_rng(0)
    ids = np.array([f"stim-{i:04d}" for i in range(20)])  # 8 stimuli the store does not hold
    feats = _features(ids).isel(stimulus=rng.permutation(20))
    joined = join_features(feats, store, split="train")
    rows = np.flatnonzero(store["split"].values == "train")
    assert joined.sample_dim == "presentation" and joined.responses.shape == (len(rows), 4)
    np.testing.assert_array_equal(joined.responses, store["responses"].values[rows])
    np.testing.assert_array_equal(joined.stimulus_id, store["stimulus_id"].values[rows])
    assert set(joined.split) == {"train"}
    for r, sid in enumerate(joined.stimulus_id):  # every row holds its own stimulus's features
        np.testing.assert_array_equal(joined.features["l1"][r], _expected_row(feats, sid))
    assert joined.matrix().shape == (len(rows), 5) and joined.matrix("l2").shape == (len(rows), 2)
    assert list(joined.neuroids["neuroid_id"].values) == list(store["neuroid_id"].values)
    # the test split, averaged: one row per stimulus, still by id
    avg = store.na.average_repetitions()
    test = join_features(feats, avg, split="test")
    assert test.sample_dim == "stimulus" and len(test.stimulus_id) == 4
    assert test.features["l1"][:, 0].tolist() == [int(s[5:]) for s in test.stimulus_id]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_row_order_of_either_side_never_matters(store, seed):
    rng = np.random.default_rng(seed)
    ids = np.array([f"stim-{i:04d}" for i in range(15)])
    feats = _features(ids)
    base = join_features(feats, store)
    perm_s = rng.permutation(store.sizes["presentation"])
    joined = join_features(feats.isel(stimulus=rng.permutation(15)), store.isel(presentation=perm_s))
    np.testing.assert_array_equal(joined.matrix(), base.matrix()[perm_s])
    np.testing.assert_array_equal(joined.responses, base.responses[perm_s])


def test_missing_duplicated_and_bad_split_are_named(store):
    ids = np.array([f"stim-{i:04d}" for i in range(12)])
    feats = _features(ids)
    with pytest.raises(StimulusMismatchError, match=r"join_features\(\): joined on stimulus_id, 2 stimuli of "
                       r"the store are missing from the features: 'stim-0000', 'stim-0001'\. Expected "
                       r"features for every stimulus"):
        join_features(feats.isel(stimulus=slice(2, None)), store)
    dup = xr.concat([feats, feats.isel(stimulus=[3])], dim="stimulus")
    with pytest.raises(StimulusMismatchError, match=r"the features hold repeated stimulus_id values: 'stim-0003'"):
        join_features(dup, store)
    with pytest.raises(ValueError, match=r"Invalid value for 'split' in join_features\(\): 'val'\. The "
                       r"store's splits are 'test', 'train'"):
        join_features(feats, store, split="val")
    with pytest.raises(DimensionError, match=r"the features have no 'stimulus_id' coordinate"):
        join_features(feats.drop_vars("stimulus_id"), store)
    with pytest.raises(KeyError, match=r"Invalid value for 'layers' in join_features\(\): 'l9'"):
        join_features(feats, store, layers=["l9"])
    with pytest.raises(TypeError, match=r"features must be an xr.Dataset"):
        join_features(np.zeros((3, 2)), store)


def test_match_stimuli_exact_mode():
    assert match_stimuli(["b", "a", "c"], ["a", "b", "c", "a"], func="f").tolist() == [1, 0, 2, 1]
    with pytest.raises(StimulusMismatchError, match=r"1 stimuli of B are not in A: 'c'"):
        match_stimuli(["a", "b", "c"], ["b", "a"], have_name="B", want_name="A", func="f", exact=True)
    with pytest.raises(StimulusMismatchError, match=r"A hold repeated stimulus_id values: 'a'"):
        match_stimuli(["a", "b"], ["a", "a", "b"], have_name="B", want_name="A", func="f", exact=True)


def test_stimulus_id_is_an_index_on_features_and_averaged_stores(store):
    avg = store.na.average_repetitions()
    assert "stimulus_id" in avg.xindexes
    picked = avg.sel(stimulus_id=["stim-0003", "stim-0001"])
    assert list(picked["stimulus_id"].values) == ["stim-0003", "stim-0001"]
    assert "stimulus_id" not in store.xindexes  # trial level: ids repeat, no index
    feats = index_stimuli(_features(np.array(["stim-0001", "stim-0000"])))
    assert "stimulus_id" in feats.xindexes and index_stimuli(feats) is feats
