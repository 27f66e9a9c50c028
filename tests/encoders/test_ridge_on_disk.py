"""A ridge fit in cells over a store left on disk (LazyResponses): the in-memory fit's
numbers, reading one batch of neuroids at a time."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.encoders import RidgeEncoder
from neuroalign.exceptions import DataQualityWarning
from neuroalign.store import LazyResponses, join_features, open_store, save_store, select_split
from neuroalign.testing import make_store

ALPHAS = np.logspace(-2, 4, 7)


def _features(store, seed):
    rng = np.random.default_rng(seed)
    ids = np.unique(store["stimulus_id"].values)
    ids = np.concatenate([ids, ["extra-1", "extra-2"]])[rng.permutation(ids.size + 2)]
    return xr.DataArray(rng.standard_normal((ids.size, 12)), dims=("stimulus", "unit"),
                        coords={"stimulus_id": ("stimulus", ids)}, name="layer")


@pytest.fixture(scope="module", params=[0, 1])
def on_disk(request, tmp_path_factory):
    seed = request.param
    store = make_store(n_stimuli=30, n_neuroids=23, seed=seed, dtype=np.float64)
    values = store["responses"].values.copy()
    values[:, 3] = np.nan          # a dead neuroid
    values[:, 11] = 2.5            # a constant one
    store["responses"] = (store["responses"].dims, values)
    path = save_store(store, tmp_path_factory.mktemp("disk") / "s.zarr", neuroid_chunk=5)
    return store, open_store(path), _features(store, seed)


def test_lazy_join_reads_only_what_is_indexed(on_disk):
    store, opened, feats = on_disk
    eager = join_features(feats, store)
    lazy = join_features(feats, opened, lazy=True)
    Y = lazy.responses
    assert isinstance(Y, LazyResponses) and Y.shape == eager.responses.shape
    np.testing.assert_array_equal(lazy.matrix(), eager.matrix())
    np.testing.assert_array_equal(np.asarray(Y), eager.responses)
    mask = np.arange(Y.shape[1]) % 3 == 1
    sub = Y[:, mask]
    assert isinstance(sub, LazyResponses) and sub.shape == (Y.shape[0], int(mask.sum()))
    np.testing.assert_array_equal(np.asarray(sub[:, 2:5]), eager.responses[:, mask][:, 2:5])
    np.testing.assert_array_equal(sub[4, np.array([0, 2])], eager.responses[4, mask][[0, 2]])
    blocks = list(sub.blocks(3))
    assert [(a, b) for a, b, _ in blocks] == [(0, 3), (3, 6), (6, 8)]
    np.testing.assert_array_equal(np.concatenate([b for *_, b in blocks], axis=1),
                                  eager.responses[:, mask])


def test_blocks_read_one_ahead_and_keep_no_block_they_yielded(on_disk, monkeypatch):
    """LazyResponses.blocks reads block k+1 in a background thread while the caller holds
    block k: the values and order of a plain read, never more than one read ahead, no
    reference kept to a yielded block, a failed read raised at its own block, and closing
    the generator early leaves no reader thread behind."""
    import threading
    import weakref
    from contextlib import closing

    store, opened, _ = on_disk
    eager = store["responses"].values
    Y = LazyResponses(opened["responses"])
    started = []
    read = LazyResponses._read
    monkeypatch.setattr(LazyResponses, "_read",
                        lambda self, cols: started.append(int(cols[0])) or read(self, cols))
    for size in (1, 4, 7, 23, 40):
        started.clear()
        seen, refs = [], []
        for a, b, block in Y.blocks(size):  # (enumerate would keep the last item alive)
            assert len(started) <= len(seen) + 2  # this block and at most the next one
            np.testing.assert_array_equal(block, eager[:, a:b])
            seen.append((a, b))
            refs.append(weakref.ref(block))
            del block
            assert refs[-1]() is None  # the generator keeps no reference to it
        assert seen == [(a, min(a + size, 23)) for a in range(0, 23, size)]
        assert started == [a for a, _ in seen]

    def failing(self, cols):
        if cols[0] == 8:
            raise OSError("chunk unreadable")
        return read(self, cols)

    monkeypatch.setattr(LazyResponses, "_read", failing)
    got = []
    with pytest.raises(OSError, match="chunk unreadable"):
        for a, _, _ in Y.blocks(4):
            got.append(a)
    assert got == [0, 4]  # the blocks before the failed one were all given
    monkeypatch.setattr(LazyResponses, "_read", read)
    with closing(Y.blocks(2)) as it:
        next(it)
    assert not [t for t in threading.enumerate() if t.name.startswith("neuroalign-read")]


@pytest.mark.parametrize("batch_size", [4, 9])
def test_fit_in_cells_on_disk_equals_the_in_memory_fit(on_disk, tmp_path, batch_size, monkeypatch):
    store, opened, feats = on_disk
    train, train_disk = select_split(store, "train"), select_split(opened, "train")
    with pytest.warns(DataQualityWarning, match="2 of 23 neuroids"):
        ref = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(feats, train)
    reads = []
    read = LazyResponses._read
    monkeypatch.setattr(LazyResponses, "_read",
                        lambda self, cols: reads.append(len(cols)) or read(self, cols))
    with pytest.warns(DataQualityWarning, match="2 of 23 neuroids"):
        disk = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(
            feats, train_disk, result_path=tmp_path / "cells", batch_size=batch_size)
    np.testing.assert_array_equal(disk.valid_neuroids_, ref.valid_neuroids_)
    np.testing.assert_array_equal(disk.best_alphas_, ref.best_alphas_)
    np.testing.assert_allclose(disk.cv_scores_, ref.cv_scores_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(disk.coef_, ref.coef_, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(disk.intercept_[11], 2.5)
    np.testing.assert_allclose(disk.predict(feats), ref.predict(feats), rtol=0, atol=1e-10)
    # after the one pass of checks, every read is one cell's batch of valid neuroids at most
    assert reads[0] == 23 and max(reads[1:]) <= batch_size
    assert disk.scaleout_info_["n_batches"] == -(-21 // batch_size)


def test_layer_sweep_in_cells_on_disk_equals_the_in_memory_sweep(on_disk, tmp_path, monkeypatch):
    from neuroalign.encoders import LayerSweep

    store, opened, feats = on_disk
    rng = np.random.default_rng(3)
    layers = xr.Dataset({"a": feats, "b": feats.copy(data=rng.standard_normal(feats.shape)),
                         "c": feats[:, :5].rename({"unit": "c_unit"})})
    train, train_disk = select_split(store, "train"), select_split(opened, "train")
    with pytest.warns(DataQualityWarning):
        ref = LayerSweep(alphas=ALPHAS, dtype="float64", device="cpu").fit(layers, train)
    reads = []
    read = LazyResponses._read
    monkeypatch.setattr(LazyResponses, "_read",
                        lambda self, cols: reads.append(len(cols)) or read(self, cols))
    with pytest.warns(DataQualityWarning):
        disk = LayerSweep(alphas=ALPHAS, dtype="float64", device="cpu").fit(
            layers, train_disk, result_path=tmp_path / "cells", batch_size=6)
    np.testing.assert_array_equal(disk.best_alphas_.values, ref.best_alphas_.values)
    np.testing.assert_allclose(disk.cv_scores_.values, ref.cv_scores_.values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(disk.best_layer_.values, ref.best_layer_.values)
    assert reads[0] == 23 and max(reads[1:]) <= 6
    # the screen, then the 21 valid neuroids in 4 cells: their keys read once for all three
    # layers (not once per layer), and each layer's fit reads each cell once
    assert len(reads) == 1 + 4 + 3 * 4
    reads.clear()  # a rerun: every cell cached, read only for its key
    with pytest.warns(DataQualityWarning):
        again = LayerSweep(alphas=ALPHAS, dtype="float64", device="cpu").fit(
            layers, train_disk, result_path=tmp_path / "cells", batch_size=6)
    assert len(reads) == 1 + 4 and all(not i["computed"] for i in again.scaleout_info_.values())
    np.testing.assert_array_equal(again.best_alphas_.values, ref.best_alphas_.values)


def test_a_store_on_disk_is_read_a_batch_at_a_time_without_cells(on_disk, monkeypatch):
    """No cells: a store opened from disk is never read whole; ridge_cv reads each batch of
    n_targets_batch neuroids when it fits it (one decomposition for all batches)."""
    from neuroalign.encoders import LayerSweep

    store, opened, feats = on_disk
    train, train_disk = select_split(store, "train"), select_split(opened, "train")
    reads = []
    read = LazyResponses._read
    monkeypatch.setattr(LazyResponses, "_read",
                        lambda self, cols: reads.append(len(cols)) or read(self, cols))
    with pytest.warns(DataQualityWarning):
        ref = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu", n_targets_batch=4).fit(
            feats, train)
    assert reads == []  # responses in memory: no LazyResponses
    with pytest.warns(DataQualityWarning):
        disk = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu", n_targets_batch=4).fit(
            feats, train_disk)
    # one pass of checks, the 21 valid neuroids in batches of 4, the constant one's value
    assert reads[0] == 23 and reads[1:-1] == [4, 4, 4, 4, 4, 1] and reads[-1] == 1
    np.testing.assert_array_equal(disk.best_alphas_, ref.best_alphas_)
    np.testing.assert_allclose(disk.cv_scores_, ref.cv_scores_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(disk.coef_, ref.coef_, rtol=0, atol=1e-10)
    reads.clear()
    layers = xr.Dataset({"a": feats, "b": feats[:, :7].rename({"unit": "b_unit"})})
    with pytest.warns(DataQualityWarning):
        sweep_ref = LayerSweep(alphas=ALPHAS, dtype="float64", device="cpu").fit(layers, train)
    with pytest.warns(DataQualityWarning):
        sweep = LayerSweep(alphas=ALPHAS, dtype="float64", device="cpu", n_targets_batch=5).fit(
            layers, train_disk)
    assert reads[0] == 23 and max(reads[1:]) == 5
    np.testing.assert_array_equal(sweep.best_alphas_.values, sweep_ref.best_alphas_.values)
    np.testing.assert_allclose(sweep.cv_scores_.values, sweep_ref.cv_scores_.values, rtol=0,
                               atol=1e-12)


def test_reads_from_disk_keep_few_chunks_in_flight(on_disk, monkeypatch):
    """zarr decodes the chunks a read touches concurrently (each twice in memory: its file
    bytes and its values); reads of responses ask for at most READ_CONCURRENCY at once (a
    lower setting of the user's kept, zarr's own setting restored after), give the values
    asked for in the order asked for, and the neuroid screen reads one chunk at a time."""
    import zarr

    import neuroalign.store._join as join
    from neuroalign.encoders._data import column_checks

    store, opened, _ = on_disk
    eager = store["responses"].values
    n = eager.shape[0]
    monkeypatch.setattr(join, "CHUNK_BYTES", 5 * n * 8)  # the fixture's chunks: 5 neuroids
    seen = []
    get = zarr.core.array.Array.get_orthogonal_selection

    def spy(self, *args, **kwargs):
        seen.append(zarr.config.get("async.concurrency"))
        return get(self, *args, **kwargs)

    monkeypatch.setattr(zarr.core.array.Array, "get_orthogonal_selection", spy)
    Y = LazyResponses(opened["responses"])
    assert Y.chunk_columns() == 5
    before = zarr.config.get("async.concurrency")
    assert before > join.READ_CONCURRENCY  # zarr's default, 10
    rng = np.random.default_rng(3)
    for sel in (slice(None), slice(3, 17), np.arange(23) % 3 == 1, rng.permutation(23)[:17]):
        seen.clear()
        np.testing.assert_array_equal(np.asarray(Y[:, sel]), eager[:, np.arange(23)[sel]])
        assert seen and set(seen) == {join.READ_CONCURRENCY}
    assert zarr.config.get("async.concurrency") == before
    with zarr.config.set({"async.concurrency": 2}):
        seen.clear()
        np.asarray(Y)
        assert set(seen) == {2}
    # the neuroid screen of a store on disk: a chunk at a time
    widths = []
    blocks = LazyResponses.blocks
    monkeypatch.setattr(LazyResponses, "blocks",
                        lambda self, size: widths.append(size) or blocks(self, size))
    got = column_checks(LazyResponses(opened["responses"]))
    assert widths == [5]
    want = column_checks(eager)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
