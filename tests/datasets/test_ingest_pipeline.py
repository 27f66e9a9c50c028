"""The ingest's chunk writes spread over threads and its read of the next block ahead:
bit-identical stores and manifests whatever the number of threads, errors raised as they
were raised, two blocks in memory at most, and no stale block kept after an interruption."""

from __future__ import annotations

import json
import shutil
import threading
import weakref

import h5py
import numpy as np
import pytest

from neuroalign import _config
from neuroalign.datasets import _chunkfiles, _direct, _ingest, ingest_nsd, load_nsd, nsd_plan
from neuroalign.datasets._ingest import Block, IngestPlan, Scaled
from neuroalign.datasets.simulate import simulate_nsd_scale
from neuroalign.exceptions import DataFormatError
from neuroalign.store import MANIFEST, open_store
from neuroalign.testing import make_store


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return simulate_nsd_scale(tmp_path_factory.mktemp("pipe") / "nsd", sessions=3, volume_shape=(10, 12, 9),
                              n_vertices=(200, 150), n_images=300, n_shared=30, n_sessions=4,
                              trials_per_session=225)


def _threads(monkeypatch, n: int) -> None:
    monkeypatch.setattr(_config, "max_threads", lambda: n)


def _files(store) -> dict[str, bytes]:
    """Every file of the store by path, but neuroalign's marker (it holds the time written)."""
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and p.name != ".neuroalign"}


@pytest.mark.parametrize(("space", "sessions"), [("func1pt8mm", [3, 1, 2]), ("fsaverage", [2, 3, 1])])
def test_threads_give_bit_identical_stores_and_manifests(tree, tmp_path, monkeypatch, space, sessions):
    monkeypatch.setattr(_ingest, "_TARGET_CHUNK_BYTES", 675 * 4 * 7)  # 7 neuroids a chunk
    stores, calls = {}, []
    real = _chunkfiles.ChunkFiles._write_chunk
    monkeypatch.setattr(_chunkfiles.ChunkFiles, "_write_chunk",
                        lambda self, *a: calls.append(threading.current_thread().name) or real(self, *a))
    for n in (1, 3):
        _threads(monkeypatch, n)
        calls.clear()
        stores[n] = ingest_nsd(tree.root, 1, tmp_path / f"{n}.zarr", space=space, mask=None, rois=(),
                               sessions=sessions)
        on_workers = {c.startswith("neuroalign-ingest") for c in calls}
        assert on_workers == ({False} if n == 1 else {True})  # the path under test was taken
    one, three = _files(stores[1]), _files(stores[3])
    assert one.keys() == three.keys()
    chunks = [k for k in one if k.startswith("responses/0.")]
    assert len(chunks) > 3 and [k for k in one if one[k] != three[k]] == []
    manifest = json.loads(one[MANIFEST])["files"]
    assert {k: manifest[k] for k in chunks} == {k: json.loads(three[MANIFEST])["files"][k] for k in chunks}
    want = load_nsd(tree.root, 1, space=space, mask=None, rois=(), sessions=sessions).responses.values
    np.testing.assert_array_equal(open_store(stores[3]).responses.values, want)


@pytest.mark.parametrize(("space", "sessions"), [("func1pt8mm", [2, 3, 1]), ("fsaverage", [3, 1, 2])])
def test_reads_and_writes_past_the_page_cache_give_the_same_store(tree, tmp_path, monkeypatch, space, sessions):
    monkeypatch.setattr(_ingest, "_TARGET_CHUNK_BYTES", 675 * 4 * 7)  # 7 neuroids a chunk
    monkeypatch.setattr(_direct, "MIN_DIRECT", 1)  # every read and write of these small files
    _threads(monkeypatch, 2)
    opened, real = [], _direct.open_direct
    monkeypatch.setattr(_direct, "open_direct", lambda p, flags: opened.append(
        "chunk" if p.parent.name == "responses" else p.suffix) or real(p, flags))
    stores = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("NEUROALIGN_DIRECT_IO", flag)
        opened.clear()
        stores[flag] = ingest_nsd(tree.root, 1, tmp_path / f"{flag}.zarr", space=space, mask=None, rois=(),
                                  sessions=sessions)
        kinds = {".hdf5"} if space == "func1pt8mm" else {".mgh"}
        # the inputs read (and hashed for the resume state), the chunk files written
        assert set(opened) >= kinds | {"chunk"} if flag == "1" else opened == []
    # the default (auto): past the page cache on ext4 and xfs, through it elsewhere (btrfs)
    monkeypatch.delenv("NEUROALIGN_DIRECT_IO")
    for kind in ("btrfs", "xfs"):
        monkeypatch.setattr(_direct, "fs_type", lambda p, k=kind: k)
        opened.clear()
        stores[kind] = ingest_nsd(tree.root, 1, tmp_path / f"{kind}.zarr", space=space, mask=None,
                                  rois=(), sessions=sessions)
        assert (opened == []) if kind == "btrfs" else set(opened) >= kinds | {"chunk"}
    buffered, direct = _files(stores["0"]), _files(stores["1"])
    assert buffered.keys() == direct.keys() and [k for k in buffered if buffered[k] != direct[k]] == []
    assert _files(stores["btrfs"]) == buffered and _files(stores["xfs"]) == buffered
    want = load_nsd(tree.root, 1, space=space, mask=None, rois=(), sessions=sessions).responses.values
    np.testing.assert_array_equal(open_store(stores["1"]).responses.values, want)


def _plan(sizes, *, scaled=(), reads=None):
    """A plan over a ``make_store`` store, in blocks of ``sizes`` rows; blocks in
    ``scaled`` are read as int16 with a divisor. ``reads`` collects (key, thread, live
    blocks when the read starts)."""
    ds = make_store(n_stimuli=20, n_neuroids=23, n_repetitions=2, seed=1)
    n = ds.sizes["presentation"]
    assert sum(sizes) == n
    ints = np.random.default_rng(2).integers(-3000, 3000, size=(n, 23)).astype(np.int16)
    values = ds.responses.values.astype(np.float32)
    live: set[int] = set()

    def reader(i, a, b):
        def read():
            if reads is not None:
                reads.append((i, threading.current_thread().name, len(live)))
            if i in scaled:
                out = Scaled(np.asfortranarray(ints[a:b]), np.float32(300))  # a transposed layout
                arr = out.values
            else:
                out = arr = values[a:b].copy()
            live.add(i)
            weakref.finalize(arr, live.discard, i)
            return out
        return read

    blocks, start = [], 0
    for i, size in enumerate(sizes):
        blocks.append(Block(f"b{i}", start, start + size, reader(i, start, start + size)))
        start += size
    expected = values.copy()
    for i in scaled:
        a, b = sum(sizes[:i]), sum(sizes[:i + 1])
        expected[a:b] = ints[a:b].astype(np.float32) / np.float32(300)
    return IngestPlan(ds.drop_vars("responses"), ("presentation", "neuroid"), blocks), expected


def test_odd_blocks_mixing_scaled_and_float_values_are_identical_in_any_thread_count(tmp_path, monkeypatch):
    monkeypatch.setattr(_ingest, "_TARGET_CHUNK_BYTES", 80 * 4 * 5)  # 5 neuroids a chunk: 23 = 4*5 + 3
    out = {}
    for n in (1, 2, 5):
        _threads(monkeypatch, n)
        plan, expected = _plan([7, 1, 13, 19], scaled=(0, 2))
        out[n] = plan.write(tmp_path / f"{n}.zarr")
        got = open_store(out[n]).responses.values
        np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))  # bitwise
    assert _files(out[1]) == _files(out[2]) == _files(out[5])


def test_the_next_block_is_read_on_a_worker_with_two_blocks_in_memory_at_most(tmp_path, monkeypatch):
    _threads(monkeypatch, 2)
    reads = []
    plan, expected = _plan([5, 5, 5, 5, 5, 5, 5, 5], scaled=(1, 4), reads=reads)
    plan.write(tmp_path / "s.zarr")
    np.testing.assert_array_equal(open_store(tmp_path / "s.zarr").responses.values, expected)
    assert [r[0] for r in reads] == list(range(8))  # in order, each once
    assert all(name.startswith("neuroalign-ingest") for _, name, _ in reads)
    # when a read starts, at most the block being written is alive: two blocks at most
    assert max(n for _, _, n in reads) <= 1
    assert max(n for _, _, n in reads[1:]) == 1  # and it does overlap the write


def test_an_error_in_the_read_ahead_is_raised_as_it_was_and_leaves_no_store(tree, tmp_path, monkeypatch):
    _threads(monkeypatch, 2)
    plan = nsd_plan(tree.root, 1, sessions=[1, 2, 3])
    where = []

    def broken():
        where.append(threading.current_thread().name)
        raise DataFormatError("betas_session03.hdf5: a damaged chunk (test)")

    plan.blocks[2].read = broken
    with pytest.raises(DataFormatError, match=r"betas_session03.hdf5: a damaged chunk \(test\)"):
        plan.write(tmp_path / "r.zarr")
    assert where and where[0].startswith("neuroalign-ingest")  # raised on a worker
    assert not (tmp_path / "r.zarr").exists()
    state = json.loads((tmp_path / ".r.zarr.partial/.neuroalign-ingest.json").read_text())
    assert sorted(state["done"]) == sorted(b.key for b in plan.blocks[:2])  # the blocks before it


def test_a_block_read_ahead_when_the_ingest_is_killed_is_read_again(tree, tmp_path, monkeypatch):
    _threads(monkeypatch, 2)
    root = tmp_path / "nsd"
    shutil.copytree(tree.root, root)
    plan = nsd_plan(root, 1, sessions=[1, 2, 3])
    read_third = threading.Event()
    real_read = plan.blocks[2].read
    plan.blocks[2].read = lambda: read_third.set() or real_read()
    real_write = _chunkfiles.ChunkFiles.write_rows

    def killed(self, start, arr):
        if start == plan.blocks[1].start:  # writing session 2 once session 3 is read ahead
            assert read_third.wait(10)
            raise KeyboardInterrupt
        return real_write(self, start, arr)

    monkeypatch.setattr(_chunkfiles.ChunkFiles, "write_rows", killed)
    with pytest.raises(KeyboardInterrupt):
        plan.write(tmp_path / "r.zarr")
    monkeypatch.setattr(_chunkfiles.ChunkFiles, "write_rows", real_write)
    state = json.loads((tmp_path / ".r.zarr.partial/.neuroalign-ingest.json").read_text())
    assert sorted(state["done"]) == [plan.blocks[0].key]  # neither the half-written nor the read-ahead one
    folder = root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    for s in (2, 3):  # both change before the resume
        with h5py.File(folder / f"betas_session0{s}.hdf5", "r+") as f:
            f["betas"][...] = -f["betas"][()]
    out = ingest_nsd(root, 1, tmp_path / "r.zarr", sessions=[1, 2, 3])
    np.testing.assert_array_equal(open_store(out).responses.values,
                                  load_nsd(root, 1, sessions=[1, 2, 3]).responses.values)


def test_workers_map_ends_every_task_then_raises_the_first_error(monkeypatch):
    _threads(monkeypatch, 2)
    ran = []

    def task(i):
        if i in (3, 5):
            raise OSError(28, f"No space left on device ({i})")
        ran.append(i)

    with _chunkfiles.Workers() as w:
        assert w.n == 2
        with pytest.raises(OSError, match=r"No space left on device \(3\)"):
            w.map(task, range(8))
    assert sorted(ran) == [0, 1, 2, 4, 6, 7]
