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


@pytest.fixture(scope="module")
def lazy_on_disk(tmp_path_factory):
    """Responses 9 x 7 saved with chunks of 3 neuroids, opened lazily, and their values."""
    from neuroalign.store import open_store, save_store

    ds = make_store(n_stimuli=9, n_neuroids=7, n_repetitions=1, n_test=3, seed=3)
    path = save_store(ds, tmp_path_factory.mktemp("lazy") / "s.zarr", neuroid_chunk=3)
    return open_store(path).responses, ds.responses.values


def _keys(rng, n_rows, n_cols):
    """Index keys numpy accepts on a (rows, cols) array: lists and arrays of ints and
    bools, negative and repeated positions, slices, ints, Ellipsis."""
    perm = rng.permutation(n_cols)
    mask = rng.random(n_cols) < 0.5
    rows = rng.permutation(n_rows)[:4]
    return [
        (slice(None), perm.tolist()), (slice(None), perm[:3].tolist()),
        (slice(None), list(perm[:2] - n_cols)), (slice(None), perm), (slice(None), [0, 0, 2]),
        (slice(None), mask), (slice(None), mask.tolist()), (slice(None), []),
        (slice(None), np.array([], dtype=int)), (slice(None), int(perm[0])),
        (slice(None), -1), (slice(None), np.int64(perm[1])), (slice(None), slice(1, None, 2)),
        (slice(None), slice(None, None, -1)), (rows[:3], perm[:3]), (rows.tolist(), perm[:4].tolist()),
        (int(rows[0]), perm[:3].tolist()), (rows, slice(2, 5)), (slice(1, 4), perm.tolist()),
        (int(rows[1]),), (Ellipsis, perm[:2].tolist()), (perm[:2].tolist(), Ellipsis),
        (slice(None), perm[:3].reshape(3, 1)), (rows[:2, None], perm[:3][None, :]),
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lazy_responses_index_as_numpy_does(lazy_on_disk, seed):
    from neuroalign.store import LazyResponses

    data, values = lazy_on_disk
    lazy = LazyResponses(data)
    for key in _keys(np.random.default_rng(seed), *values.shape):
        key = key[0] if len(key) == 1 else key
        want = values[key]
        got = np.asarray(lazy[key])
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=repr(key))
    # a column selection stays on disk, and a view of a view indexes its own columns
    view = lazy[:, [5, 0, 3, 1]]
    assert isinstance(view, LazyResponses) and view.shape == (values.shape[0], 4)
    np.testing.assert_array_equal(np.asarray(view[:, [2, 0]]), values[:, [5, 0, 3, 1]][:, [2, 0]])
    np.testing.assert_array_equal(np.asarray(view[:, -1]), values[:, 1])


def test_lazy_responses_refuse_what_numpy_refuses_and_what_they_do_not_support(lazy_on_disk):
    from neuroalign.store import LazyResponses

    data, values = lazy_on_disk
    lazy = LazyResponses(data)
    with pytest.raises(IndexError, match="columns of LazyResponses .*out of bounds"):
        lazy[:, [0, 7]]
    with pytest.raises(IndexError, match="columns of LazyResponses .*boolean index did not match"):
        lazy[:, [True, False]]
    with pytest.raises(IndexError, match="rows of LazyResponses .*out of bounds"):
        lazy[[0, 9], :]
    with pytest.raises(IndexError, match="LazyResponses.*too many indices: 3"):
        lazy[:, 0, 0]
    with pytest.raises(IndexError, match="LazyResponses.*None \\(np.newaxis\\)"):
        lazy[None, :]
    with pytest.raises(IndexError, match="columns of LazyResponses.*integer.*or boolean"):
        lazy[:, [0.5, 1.5]]
    with pytest.raises(IndexError, match="shapes \\(3,\\) and \\(2,\\), which do not broadcast"):
        lazy[[0, 1, 2], [0, 1]]
