"""Store operations on a store left on disk (``open_store`` without ``chunks``) work a block
of neuroids at a time: the same values as on the store in memory, without reading it whole."""

from __future__ import annotations

import tracemalloc
import warnings

import dask
import numpy as np
import pytest

import neuroalign.store._io as store_io
from neuroalign.store import open_store, save_store
from neuroalign.store._join import READ_CONCURRENCY
from neuroalign.testing import make_store

#: small store chunks, so that a store of a few MB spans dozens of them
SMALL_CHUNK = 2**20


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """(in-memory store, its path): 600 presentations x 12,000 neuroids (28.8 MB float32) in
    store chunks of 1 MiB, rows shuffled, with NaN trials, a constant and an all-NaN neuroid."""
    mp = pytest.MonkeyPatch()
    mp.setattr(store_io, "CHUNK_BYTES", SMALL_CHUNK)
    ds = make_store(200, 12_000, n_repetitions=3, n_test=40, n_sessions=4, seed=3,
                    ncsnr=np.random.default_rng(3).uniform(0.2, 2.0, 12_000))
    ds = ds.isel(presentation=np.random.default_rng(4).permutation(ds.sizes["presentation"]))
    resp = ds["responses"].values.copy()
    rng = np.random.default_rng(5)
    resp[rng.integers(0, resp.shape[0], 300), rng.integers(0, resp.shape[1], 300)] = np.nan
    resp[:, 7] = 2.5
    resp[:, 11_000] = np.nan
    ds["responses"].values = resp
    path = tmp_path_factory.mktemp("ondisk") / "s.zarr"
    save_store(ds, path)
    mp.undo()
    return ds, path


OPS = {
    "noise_ceiling of the test split": lambda s: s.na.noise_ceiling(split="test"),
    "ncsnr": lambda s: s.na.ncsnr(),
    "average of the test split": lambda s: s.na.split("test").na.average_repetitions()["responses"],
    "z-scored by session": lambda s: s.na.zscore()["responses"],
    "split-half reliability": lambda s: s.na.split_half(n_splits=3),
}


def _run(op, store):
    """(result, its values, warning messages, traced peak in bytes) of ``op(store)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracemalloc.start()
        try:
            res = op(store)
            values = res.values
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return res, values, sorted(str(w.message) for w in caught if issubclass(w.category, UserWarning)), peak


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_on_a_store_on_disk_equal_the_store_in_memory_and_read_it_by_blocks(on_disk, name):
    ds, path = on_disk
    op = OPS[name]
    _, want, want_warned, _ = _run(op, ds)
    store = open_store(path)
    disk_chunk = store["responses"].encoding["preferred_chunks"]["neuroid"]
    assert disk_chunk < 600  # the store spans many chunks
    res, got, warned, _ = _run(op, store)
    np.testing.assert_array_equal(got, want)  # every neuroid's value, bit for bit
    assert warned == want_warned  # the same neuroids named (constant, all-NaN, NaN trials)
    if name != "average of the test split":
        assert any("constant" in w for w in warned), warned
    if res.chunks is not None:  # a lazy result: blocks of whole store chunks, a few at a time
        sizes = res.chunks[res.dims.index("neuroid")]
        assert len(sizes) > 1 and max(sizes) <= READ_CONCURRENCY * disk_chunk, sizes
        assert all(n % disk_chunk == 0 for n in sizes[:-1]), sizes
        return
    # computed: read by blocks, the peak does not grow with the store (read whole, the
    # other half of the store, 14.4 MB, would add to it). One block at a time here (dask's
    # threads may run a few at once, and vary in how many)
    with dask.config.set(scheduler="synchronous"):
        _, _, _, peak = _run(op, open_store(path))
        _, got_half, _, peak_half = _run(op, open_store(path).isel(neuroid=slice(0, 6_000)))
    np.testing.assert_array_equal(got_half, want[:6_000])
    assert peak - peak_half < 3e6, (name, peak / 2**20, peak_half / 2**20)


@pytest.mark.parametrize("neuroid_chunk", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_neuroid_with_nan_trials_has_the_same_bits_in_any_block_on_disk(tmp_path, seed,
                                                                         neuroid_chunk):
    """Small store chunks put a neuroid with NaN trials alone in its block, or beside other
    such neuroids: every op still gives the in-memory values bit for bit (a block of two or
    more such rows was once summed in another order than a lone one)."""
    ds = make_store(31, 12, n_repetitions=3, n_test=10, seed=seed, dtype=np.float64,
                    ncsnr=np.linspace(0.2, 2.0, 12))
    rng = np.random.default_rng(seed)
    ds = ds.isel(presentation=rng.permutation(ds.sizes["presentation"]))
    resp = ds["responses"].values.copy()
    n = len(resp)
    for j in (0, *rng.choice(np.arange(4, 12), 3, replace=False)):  # 0: alone in blocks of 4
        resp[rng.choice(n, rng.integers(1, 4), replace=False), j] = np.nan
    ds = ds.assign(responses=(ds["responses"].dims, resp))
    store = open_store(save_store(ds, tmp_path / "s.zarr", neuroid_chunk=neuroid_chunk))
    assert store["responses"].encoding["preferred_chunks"]["neuroid"] == neuroid_chunk
    for name, op in OPS.items():
        _, want, want_warned, _ = _run(op, ds)
        _, got, warned, _ = _run(op, store)
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert warned == want_warned
