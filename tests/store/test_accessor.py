"""The ds.na accessor against pandas/scipy references, eager and dask-backed."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neuroalign.exceptions import (
    DataFormatError,
    DataQualityWarning,
    DimensionError,
    SplitLeakageError,
)
from neuroalign.store import average_repetitions, open_store, save_store, zscore
from neuroalign.testing import make_store


@pytest.fixture
def ds():
    return make_store(25, 6, n_repetitions=3, n_test=5, rois={"V1v": [1, 1, 0, 0, 0, 1], "FFA-1": [0, 0, 1, 1, 0, 0]})


def test_average_repetitions_matches_pandas(ds):
    av = ds.na.average_repetitions()
    assert av.responses.dims == ("stimulus", "neuroid")
    df = pd.DataFrame(ds.responses.values.astype(float))
    df["id"] = ds.stimulus_id.values
    ref = df.groupby("id", sort=False).mean()
    assert list(av.stimulus_id.values) == list(ref.index)
    np.testing.assert_allclose(av.responses.values, ref.values, rtol=1e-5, atol=1e-6)  # float32
    assert (av.n_repetitions.values == 3).all()
    assert set(av.split.values) == {"train", "test"}
    assert "repetition" not in av.coords and "session" not in av.coords
    assert av.na.rois == ["V1v", "FFA-1"]
    with pytest.raises(DimensionError, match="already averaged"):
        av.na.average_repetitions()


def test_average_repetitions_dask_equals_eager(ds):
    lazy = average_repetitions(ds.chunk({"neuroid": 2}))
    assert lazy.responses.chunks is not None
    np.testing.assert_allclose(lazy.responses.values, ds.na.average_repetitions().responses.values)


def test_average_repetitions_time_resolved():
    ds = make_store(8, 2, n_times=4)
    av = ds.na.average_repetitions()
    assert av.responses.dims == ("stimulus", "neuroid", "time")
    first = ds.stimulus_id.values[0]
    np.testing.assert_allclose(
        av.responses.values[0], ds.responses.values[ds.stimulus_id.values == first].mean(0), rtol=1e-6
    )


def test_inconsistent_split_is_an_error(ds):
    split = ds.split.values.copy()
    first = ds.stimulus_id.values[0]
    idx = np.flatnonzero(ds.stimulus_id.values == first)
    split[idx[0]] = "test"
    split[idx[1]] = "train"
    with pytest.raises(SplitLeakageError, match=f"both 'train' and 'test': '{first}'"):
        ds.assign_coords(split=("presentation", split)).na.average_repetitions()


def test_average_repetitions_ignores_presentation_order(ds):
    ds = ds.assign(responses=ds.responses.astype(np.float64))
    perm = np.random.default_rng(0).permutation(ds.sizes["presentation"])
    a = ds.na.average_repetitions()
    b = ds.isel(presentation=perm).na.average_repetitions().set_index(stimulus="stimulus_id")
    b = b.sel(stimulus=a.stimulus_id.values)
    np.testing.assert_allclose(b.responses.values, a.responses.values, rtol=1e-12)
    np.testing.assert_array_equal(b.n_repetitions.values, a.n_repetitions.values)
    np.testing.assert_array_equal(b.split.values, a.split.values)


def test_average_repetitions_of_a_saved_dask_store(ds, tmp_path):
    lazy = open_store(save_store(ds, tmp_path / "s.zarr", neuroid_chunk=2), chunks=2)
    av = lazy.na.average_repetitions()
    assert av.responses.chunks is not None
    np.testing.assert_array_equal(av.responses.values, ds.na.average_repetitions().responses.values)


def test_average_repetitions_nan_propagates_to_that_stimulus_only(ds):
    resp = ds.responses.values.copy()
    row = 4
    resp[row, 2] = np.nan
    av = ds.assign(responses=(ds.responses.dims, resp)).na.average_repetitions()
    clean = ds.na.average_repetitions()
    hit = list(av.stimulus_id.values).index(ds.stimulus_id.values[row])
    assert np.isnan(av.responses.values[hit, 2])
    mask = np.ones(av.responses.shape, dtype=bool)
    mask[hit, 2] = False
    np.testing.assert_array_equal(av.responses.values[mask], clean.responses.values[mask])


def test_roi_split_rois(ds):
    assert ds.na.rois == ["V1v", "FFA-1"]
    assert ds.na.roi("V1v").sizes["neuroid"] == 3
    assert ds.na.roi("roi_FFA-1").sizes["neuroid"] == 2
    assert ds.na.roi(["V1v", "FFA-1"]).sizes["neuroid"] == 5
    with pytest.raises(KeyError, match="Unknown ROI 'PPA'. ROIs of this store: 'V1v', 'FFA-1'"):
        ds.na.roi("PPA")
    test = ds.na.split("test")
    assert set(test.split.values) == {"test"} and test.sizes["presentation"] == 15
    with pytest.raises(ValueError, match=r"Invalid value for 'split' in split\(\): 'val'"):
        ds.na.split("val")


def test_zscore_by_session_matches_scipy(ds):
    z = ds.na.zscore("session")
    for s in np.unique(ds.session.values):
        m = ds.session.values == s
        np.testing.assert_allclose(
            z.responses.values[m], stats.zscore(ds.responses.values[m].astype(float), axis=0), atol=1e-5
        )
    np.testing.assert_allclose(
        zscore(ds, by=None).responses.values, stats.zscore(ds.responses.values.astype(float), axis=0), atol=1e-5
    )
    lazy = zscore(ds.chunk({"neuroid": 4}))
    np.testing.assert_allclose(lazy.responses.values, z.responses.values, atol=1e-6)
    assert z.stimulus_id.equals(ds.stimulus_id)  # coordinates kept
    with pytest.raises(KeyError, match="zscore\\(by='run'\\): the store has no coordinate 'run'"):
        ds.na.zscore("run")


def test_zscore_ddof_nan_and_constant_follow_scipy(ds):
    z1 = zscore(ds, by=None, ddof=1)
    x = ds.responses.values.astype(float)
    np.testing.assert_allclose(z1.responses.values, stats.zscore(x, axis=0, ddof=1), atol=1e-5)
    with pytest.raises(ValueError, match=r"Invalid value for 'ddof' in zscore\(\): 2. Expected one of 0, 1"):
        zscore(ds, ddof=2)
    x[3, 1] = np.nan  # a missing trial: left out of the statistics, stays NaN
    x[:, 4] = 0.1  # constant (its float64 mean is not exactly 0.1): NaN as in scipy, never 0
    dirty = ds.assign(responses=(ds.responses.dims, x))
    with pytest.warns(DataQualityWarning, match=r"zscore\(\): 1 of 6 neuroids have unusable data: 1 constant, "
                      r"infinite or \(nearly\) all NaN within a store group \('n00004'\)"):
        z = zscore(dirty, by=None)
    ref = np.full_like(x, np.nan)
    ref[:, :4] = stats.zscore(x[:, :4], axis=0, nan_policy="omit")
    ref[:, 5:] = stats.zscore(x[:, 5:], axis=0, nan_policy="omit")
    np.testing.assert_allclose(z.responses.values, ref, atol=1e-5)
    assert np.isnan(z.responses.values[:, 4]).all() and np.isnan(z.responses.values[3, 1])
    with pytest.raises(DataFormatError, match=r"'n00004'.*\(strict=True\)"):
        zscore(dirty, by=None, strict=True)


@pytest.mark.parametrize("n_times", [None, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zscore_of_a_neuroid_has_the_same_bits_alone_and_in_chunks_of_any_size(seed, n_times):
    """z-scores (NaN trials left out) do not depend on how many neuroids share a dask chunk,
    bit for bit (a boolean index once gave column-major blocks, summed in another order)."""
    store = make_store(31, 11, n_repetitions=3, n_test=10, n_times=n_times, seed=seed,
                       dtype=np.float32 if seed == 2 else np.float64)
    rng = np.random.default_rng(seed)
    store = store.isel(presentation=rng.permutation(store.sizes["presentation"]))
    x = store.responses.values.copy()
    n = x.shape[0]
    for j in rng.choice(11, 4, replace=False):
        x[rng.choice(n, rng.integers(1, 4), replace=False), j] = np.nan
    store = store.assign(responses=(store.responses.dims, x))
    want = zscore(store, ddof=seed % 2).responses.values
    alone = [zscore(store.isel(neuroid=[j]), ddof=seed % 2).responses.values for j in range(11)]
    np.testing.assert_array_equal(np.concatenate(alone, axis=1), want)
    for size in (1, 2, 3, 5):
        got = zscore(store.chunk({"neuroid": size}), ddof=seed % 2).responses.values
        np.testing.assert_array_equal(got, want, err_msg=f"chunks of {size}")


def test_operations_do_not_mutate(ds):
    before = ds.copy(deep=True)
    ds.na.average_repetitions()
    ds.na.zscore()
    ds.na.roi("V1v")
    assert ds.identical(before)


def test_accessor_passes_the_reliability_options(ds):
    from neuroalign.store import ncsnr, noise_ceiling, split_half

    np.testing.assert_array_equal(ds.na.ncsnr(ddof=0).values, ncsnr(ds, ddof=0).values)
    assert not np.array_equal(ds.na.ncsnr().values, ds.na.ncsnr(ddof=0).values)
    np.testing.assert_array_equal(ds.na.noise_ceiling(ddof=0, split="train").values,
                                  noise_ceiling(ds, ddof=0, split="train").values)
    np.testing.assert_array_equal(ds.na.split_half(seed=3).values, split_half(ds, seed=3).values)
    np.testing.assert_array_equal(ds.na.zscore(ddof=1).responses.values, zscore(ds, ddof=1).responses.values)
    dead = ds.assign(responses=ds.responses.where(ds.neuroid_id != "n00002", 1.0))
    with pytest.raises(DataFormatError, match="'n00002'"):
        dead.na.ncsnr(strict=True)
    with pytest.raises(DataFormatError, match="'n00002'"):
        dead.na.noise_ceiling(strict=True)


@pytest.mark.parametrize("n_times", [None, 3])
def test_average_of_a_store_without_presentations_is_an_empty_store(n_times):
    ds = make_store(6, 4, n_repetitions=2, n_test=2, n_times=n_times)
    empty = ds.isel(presentation=slice(0, 0))
    av = empty.na.average_repetitions()
    assert dict(av.responses.sizes) == {"stimulus": 0, "neuroid": 4, **({"time": 3} if n_times else {})}
    assert av.responses.dtype == ds.responses.dtype and av.n_repetitions.size == 0
    from neuroalign.store import check_store

    check_store(av)


@pytest.mark.parametrize("missing", ["train", "test"])
def test_a_split_without_presentations_is_named(missing):
    ds = make_store(6, 4, n_repetitions=2, n_test=0 if missing == "test" else 6)
    with pytest.raises(ValueError, match=(
            f"Invalid value for 'split' in split\\(\\): '{missing}'. The store has no "
            f"presentations in split '{missing}'; its 'split' coordinate holds "
            f"'{'train' if missing == 'test' else 'test'}' \\(12 presentations\\)")):
        ds.na.split(missing).na.average_repetitions()
    av = ds.na.average_repetitions()  # an averaged store: stimuli, not presentations
    with pytest.raises(ValueError, match=f"The store has no stimuli in split '{missing}'"):
        av.na.split(missing)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_times", [None, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_has_the_same_bits_in_any_presentation_order(seed, n_times, dtype):
    from neuroalign.store import from_arrays

    rng = np.random.default_rng(seed)
    counts = np.r_[1, 2, 3, 12, 13, rng.integers(1, 40, 20)]  # compare-swaps and np.sort
    ids = rng.permutation(np.repeat([f"s{i}" for i in range(counts.size)], counts))
    n = ids.size
    shape = (n, 50) if n_times is None else (n, 50, n_times)
    Y = (rng.normal(size=shape) * 1e3 + rng.normal(size=shape)).astype(dtype)
    ds = from_arrays(Y, ids, times=None if n_times is None else np.arange(n_times) / 10.0)
    a = average_repetitions(ds)
    for _ in range(3):
        b = average_repetitions(ds.isel(presentation=rng.permutation(n)))
        b = b.sel(stimulus_id=a.stimulus_id.values)
        np.testing.assert_array_equal(b.responses.values, a.responses.values)
    chunked = average_repetitions(ds.chunk({"neuroid": 7})).responses.values
    np.testing.assert_array_equal(chunked, a.responses.values)
    # the mean of each stimulus, summed in float64 and rounded once
    for k, sid in enumerate(a.stimulus_id.values):
        want = Y[ids == sid].astype(np.float64).mean(axis=0)
        if dtype == np.float32:  # within one float32 rounding of the float64 mean
            np.testing.assert_allclose(a.responses.values[k], want, rtol=2**-23, atol=0)
        else:  # up to 40 values of ~1e3 summed in float64
            np.testing.assert_allclose(a.responses.values[k], want, rtol=0, atol=1e-10)
