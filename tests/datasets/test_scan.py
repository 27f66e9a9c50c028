"""Direct readers of NSD's large files (raw HDF5 chunks, raw MGH frames) against h5py and
nibabel, the chunk-index cache, single-pass hashing, and the in-place store layout."""

from __future__ import annotations

import hashlib
import json

import h5py
import nibabel as nib
import numpy as np
import pytest
import zarr
from h5py import h5d, h5p

from neuroalign.datasets import _digest, _direct, _ingest, _scan, ingest_nsd, load_nsd
from neuroalign.datasets.simulate import simulate_nsd_scale
from neuroalign.exceptions import DataFormatError
from neuroalign.store import open_store

T = 9


def _write(path, data, chunks, *, early=False, order=None, fill=0):
    """An int16 (T, Z, Y, X) dataset; ``order`` writes chunk by chunk in that order."""
    with h5py.File(path, "w") as f:
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk(chunks)
        dcpl.set_fill_value(np.array(fill, dtype="<i2"))
        if early:
            dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
        d = f.create_dataset("betas", shape=data.shape, dtype="<i2", dcpl=dcpl)
        if order is None:
            d[...] = data
        else:
            for z, y, x in order:
                sl = (slice(None), slice(z, z + chunks[1]), slice(y, y + chunks[2]), slice(x, x + chunks[3]))
                d[sl] = data[sl]


def _read(path, zyx):
    with h5py.File(path, "r") as f:
        return _scan.read_h5_voxels(f["betas"], path, zyx)


def _expected(data, zyx):
    return data[:, zyx[:, 0], zyx[:, 1], zyx[:, 2]].astype(np.float32)


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    """Pieces of a few chunks: many reads, pieces cut next to chunks, coalescing gaps."""
    monkeypatch.setattr(_scan, "_RANGE_BYTES", 1000)
    monkeypatch.setattr(_scan, "_GAP_BYTES", 100)
    _scan._INDEX_CACHE.clear()


@pytest.mark.parametrize("layout", ["voxel", "voxel-early", "voxel-shuffled", "boxes", "sparse-fill"])
def test_direct_reader_equals_h5py(tmp_path, layout):
    rng = np.random.default_rng(0)
    data = rng.integers(-32768, 32767, size=(T, 5, 6, 7), dtype=np.int16)
    path = tmp_path / "b.hdf5"
    chunks = (T, 2, 4, 3) if layout == "boxes" else (T, 1, 1, 1)  # boxes: edge chunks too
    cells = [(z, y, x) for z in range(5) for y in range(6) for x in range(7)]
    order = None
    if layout == "voxel-shuffled":  # chunks stored out of order
        order = [cells[i] for i in rng.permutation(len(cells))]
    if layout == "sparse-fill":  # a third of the chunks never written: the fill value
        order = [c for i, c in enumerate(cells) if i % 3]
        data[:, 0, 0, 0] = 77
    _write(path, data, chunks, early=layout == "voxel-early", order=order, fill=77)
    zyx = np.argwhere(np.ones((5, 6, 7), bool))[rng.integers(0, 210, 60)]  # any order, repeats
    with h5py.File(path, "r") as f:
        want = f["betas"][()][:, zyx[:, 0], zyx[:, 1], zyx[:, 2]].astype(np.float32)
    np.testing.assert_array_equal(_read(path, zyx), want)


def test_filtered_or_trial_chunked_files_are_left_to_h5py(tmp_path):
    data = np.arange(T * 2 * 3 * 4, dtype=np.int16).reshape(T, 2, 3, 4)
    with h5py.File(tmp_path / "c.hdf5", "w") as f:
        f.create_dataset("betas", data=data, chunks=(T, 1, 1, 1), compression="gzip")
    with h5py.File(tmp_path / "t.hdf5", "w") as f:
        f.create_dataset("betas", data=data, chunks=(3, 1, 1, 1))
    with h5py.File(tmp_path / "n.hdf5", "w") as f:
        f.create_dataset("betas", data=data)
    for name in ("c", "t", "n"):
        assert _read(tmp_path / f"{name}.hdf5", np.array([[0, 1, 2]])) is None


def test_index_cache_is_used_only_for_the_same_layout(tmp_path, monkeypatch):
    from dataclasses import replace

    rng = np.random.default_rng(1)
    cells = [(z, y, x) for z in range(5) for y in range(6) for x in range(7)]
    a, b, c = (rng.integers(-999, 999, size=(T, 5, 6, 7), dtype=np.int16) for _ in range(3))
    _write(tmp_path / "a.hdf5", a, (T, 1, 1, 1))
    _write(tmp_path / "b.hdf5", b, (T, 1, 1, 1))  # same layout, other values
    _write(tmp_path / "c.hdf5", c, (T, 1, 1, 1), order=cells[::-1])  # another layout
    built = []
    real = _scan._hdf5_chunks
    monkeypatch.setattr(_scan, "_hdf5_chunks", lambda d: (built.append(d.file.filename), real(d))[1])
    zyx = np.argwhere(np.ones((5, 6, 7), bool))
    c_key = (tmp_path / "c.hdf5").stat().st_size, (T, 5, 6, 7), "<i2", (T, 1, 1, 1)
    for name, data in (("a", a), ("b", b), ("c", c), ("b", b)):
        path = tmp_path / f"{name}.hdf5"
        if name == "c":  # the worst case: a's index cached under c's size and shape
            _scan._INDEX_CACHE[c_key] = replace(_scan._INDEX_CACHE[next(iter(_scan._INDEX_CACHE))], key=c_key)
        np.testing.assert_array_equal(_read(path, zyx), _expected(data, zyx))
    # a: HDF5's index; b: a's (the same bytes outside the chunks); c: its own; b: a's
    assert [p.rsplit("/", 1)[-1] for p in built] == ["a.hdf5", "c.hdf5"]


@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("early", [False, True])
def test_gaps_are_hashed_in_the_pass_that_reads_the_chunks(tmp_path, monkeypatch, early, direct):
    if direct:  # every range read past the page cache (where the file system allows it)
        monkeypatch.setattr(_direct, "MIN_DIRECT", 1)
        monkeypatch.setenv("NEUROALIGN_DIRECT_IO", "1")
    monkeypatch.setattr(_scan, "_GAP_BYTES", 8000)  # ranges that hold B-tree nodes
    monkeypatch.setattr(_scan, "_RANGE_BYTES", 10**6)
    path = tmp_path / "a.hdf5"
    _write(path, np.random.default_rng(4).integers(-999, 999, size=(T, 8, 10, 12), dtype=np.int16),
           (T, 1, 1, 1), early=early)
    size = T * 2
    with h5py.File(path, "r") as f:
        index = _scan._chunk_index(f["betas"], path, (8, 10, 12), (1, 1, 1), size)
    assert index.gaps is not None and len(index.gaps) > 6
    want = _scan._gap_digest(path, index.gaps)
    reads, real = [], _direct.pread
    for mod in (_scan, _direct):  # the gaps' reads and the ranges'
        monkeypatch.setattr(mod, "pread", lambda fd, buf, a, n, p, **kw: reads.append(n) or real(fd, buf, a, n, p, **kw))
    rng = np.random.default_rng(5)
    for sel in (np.arange(960), np.sort(rng.choice(960, 9, replace=False)), np.array([959]), np.array([], int)):
        reads.clear()
        starts, taken = np.unique(index.table[sel]), []
        with open(path, "rb") as f:
            got = _scan._read_ranges(f.fileno(), path, starts, size, lambda base, v, t=taken: t.append(base),
                                     index.gaps)
        assert got == want, sel  # the same digest as the separate pass
        assert bool(taken) == bool(len(sel))  # the chunks were handed over
        if len(sel) == 960:  # every chunk read: the gaps between them come with them
            assert len(reads) < len(index.gaps)
    with open(path, "rb") as f:
        assert _scan._read_ranges(f.fileno(), path, starts, size, lambda *a: None) is None


def test_truncated_chunk_data_is_a_named_error(tmp_path):
    data = np.ones((T, 2, 3, 4), dtype=np.int16)
    path = tmp_path / "b.hdf5"
    _write(path, data, (T, 1, 1, 1), early=True)
    with h5py.File(path, "r") as f:
        offsets, sizes, _, _ = _scan._hdf5_chunks(f["betas"])
        end = int((offsets + sizes).max())
    with h5py.File(path, "r") as f:
        d = f["betas"]
        with open(path, "r+b") as raw:
            raw.truncate(end - 5)
        with pytest.raises(DataFormatError, match=r"b.hdf5: chunk data of dataset 'betas' run to byte "
                           rf"{end}, but the file has {end - 5} bytes; the file is truncated"):
            _scan.read_h5_voxels(d, path, np.array([[1, 2, 3], [0, 0, 0]]))


def test_mgh_reader_equals_nibabel(tmp_path, monkeypatch):
    monkeypatch.setattr(_scan, "_RANGE_BYTES", 4 * 50 * 3)  # 3 frames a read
    rng = np.random.default_rng(2)
    vals = rng.standard_normal((50, 1, 1, 13)).astype(np.float32)
    vals[3] = np.nan
    path = tmp_path / "lh.betas_session01.mgh"
    nib.save(nib.MGHImage(vals, np.eye(4)), str(path))
    cols = np.array([7, 3, 3, 49, 0])
    img = nib.load(path)
    got = _scan.read_mgh_frames(path, img, cols)
    np.testing.assert_array_equal(got, np.asarray(img.dataobj)[cols, 0, 0, :].T)
    for run in (np.arange(50), np.arange(4, 9), np.arange(49, 50)):  # runs read as a slice
        np.testing.assert_array_equal(_scan.read_mgh_frames(path, img, run),
                                      np.asarray(img.dataobj)[run, 0, 0, :].T)
    gz = tmp_path / "lh.betas_session01.mgz"
    nib.save(nib.MGHImage(vals, np.eye(4)), str(gz))
    assert _scan.read_mgh_frames(gz, nib.load(gz), cols) is None  # gzip: nibabel reads it
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    with pytest.raises(DataFormatError, match=r"lh.betas_session01.mgh: truncated or corrupt image data"):
        _scan.read_mgh_frames(path, img, cols)


def test_mgh_frames_are_read_straight_into_a_big_endian_block(tmp_path, monkeypatch):
    monkeypatch.setattr(_scan, "_RANGE_BYTES", 4 * 50 * 3)  # 3 frames a read
    vals = np.random.default_rng(3).standard_normal((50, 1, 1, 13)).astype(np.float32)
    vals[3] = np.nan
    vals.view(np.int32)[5, 0, 0, 2] = 0x7FC00123  # a NaN with a payload: bits kept
    path = tmp_path / "lh.betas_session01.mgh"
    nib.save(nib.MGHImage(vals, np.eye(4)), str(path))
    img = nib.load(path)
    real, calls = _scan.os.preadv, []

    def short(fd, views, offset):  # the kernel may return fewer bytes than asked
        calls.append(len(views))
        first = views[0]
        return real(fd, [first[: max(1, len(first) // 3)]], offset)

    monkeypatch.setattr(_scan.os, "preadv", short)
    block = np.full((13, 70), 7, dtype=">f4")  # both hemispheres; lh in columns 10:60
    got = _scan.read_mgh_frames(path, img, np.arange(50), out=block[:, 10:60])
    assert got.base is block or got.base is block.base
    assert max(calls) > 1  # several rows in one preadv
    want = np.asarray(img.dataobj)[:, 0, 0, :].T
    np.testing.assert_array_equal(block[:, 10:60].astype(np.float32).view(np.int32),
                                  want.astype(np.float32).view(np.int32))  # bitwise
    assert (block[:, :10] == 7).all() and (block[:, 60:] == 7).all()
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    with pytest.raises(DataFormatError, match=r"lh.betas_session01.mgh: truncated or corrupt image data"):
        _scan.read_mgh_frames(path, img, np.arange(50), out=block[:, 10:60])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return simulate_nsd_scale(tmp_path_factory.mktemp("scan") / "nsd", sessions=3, volume_shape=(10, 12, 9),
                              n_vertices=(200, 150), n_images=300, n_shared=30, n_sessions=4,
                              trials_per_session=225)


def test_a_complete_ingest_does_not_wait_for_its_hashes(tree, tmp_path, monkeypatch):
    import threading

    release, started, finished = threading.Event(), [], []

    def slow_hash(self, path, stat):  # a resume hash that takes until the test lets it go
        started.append(path)
        for _ in range(1000):  # (10 s at most: an ingest that waited fails, not hangs)
            if release.wait(0.01):
                break
            if self._stop.is_set():
                return None
        finished.append(path)
        return "x"

    monkeypatch.setattr(_digest.DigestQueue, "_hash", slow_hash)
    for space in ("func1pt8mm", "fsaverage"):
        out = ingest_nsd(tree.root, 1, tmp_path / f"{space}.zarr", space=space, sessions=[1, 2, 3])
        np.testing.assert_array_equal(open_store(out).responses.values,
                                      load_nsd(tree.root, 1, space=space, sessions=[1, 2, 3]).responses.values)
    assert started and not finished  # hashing ran beside the ingest, and was dropped at the end
    release.set()


def test_resume_state_has_the_files_digests(tree, tmp_path):
    plan = _ingest_plan(tree.root, "fsaverage")
    boom = plan.blocks[2]
    boom.read = lambda: (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        plan.write(tmp_path / "r.zarr")
    state = json.loads((tmp_path / ".r.zarr.partial/.neuroalign-ingest.json").read_text())
    for block in plan.blocks[:2]:
        assert state["done"][block.key] == {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in block.files}
    assert plan.blocks[2].key not in state["done"]


def _ingest_plan(root, space):
    from neuroalign.datasets import nsd_plan

    return nsd_plan(root, 1, space=space, sessions=[1, 2, 3])


def test_store_is_written_in_its_final_uncompressed_layout(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(_ingest, "_TARGET_CHUNK_BYTES", 675 * 4 * 7)  # 7 neuroids a chunk
    out = ingest_nsd(tree.root, 1, tmp_path / "s.zarr", mask=None, rois=(), sessions=[1, 2, 3])
    arr = zarr.open_array(str(out / "responses"), mode="r", zarr_format=2)
    n = arr.shape[1]
    assert arr.chunks == (675, 7) and arr.metadata.compressor is None and n % 7
    chunk_files = sorted(p.name for p in (out / "responses").iterdir() if not p.name.startswith("."))
    assert chunk_files == sorted(f"0.{c}" for c in range(-(-n // 7)))  # one file per neuroid slab
    mem = load_nsd(tree.root, 1, mask=None, rois=(), sessions=[1, 2, 3])
    disk = open_store(out)
    np.testing.assert_array_equal(disk.responses.values, mem.responses.values)
    assert disk.attrs["source"] == json.loads(json.dumps(mem.attrs["source"]))
    assert not (out / ".neuroalign-ingest.json").exists()
    assert json.loads((out / ".neuroalign").read_text())["kind"] == "store"


def test_a_changed_session_is_rewritten_in_place_on_resume(tree, tmp_path):
    import shutil

    root = tmp_path / "nsd"
    shutil.copytree(tree.root, root)
    plan = _ingest_plan(root, "func1pt8mm")
    plan.blocks[2].read = lambda: (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        plan.write(tmp_path / "r.zarr")
    before = load_nsd(root, 1, sessions=[1, 2, 3]).responses.values
    # session 2 (already written) changes: the resumed ingest rewrites its rows in place
    p2 = root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session02.hdf5"
    with h5py.File(p2, "r+") as f:
        f["betas"][...] = -f["betas"][()]
    out = ingest_nsd(root, 1, tmp_path / "r.zarr", sessions=[1, 2, 3])
    after = open_store(out).responses.values
    np.testing.assert_array_equal(after, load_nsd(root, 1, sessions=[1, 2, 3]).responses.values)
    np.testing.assert_array_equal(after[225:450], -before[225:450])
    np.testing.assert_array_equal(after[:225], before[:225])


def _hashed_from_disk(monkeypatch) -> list[str]:
    """Record the files the store manifest reads back to hash."""
    from neuroalign.store import _io

    reads, real = [], _io._sha256
    monkeypatch.setattr(_io, "_sha256", lambda p: reads.append(p.relative_to(p.parents[1]).as_posix()) or real(p))
    return reads


def _manifest_is_true(out):
    from neuroalign.store import MANIFEST, verify_store

    files = json.loads((out / MANIFEST).read_text())["files"]
    for rel, (size, digest) in files.items():
        data = (out / rel).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest), rel
    assert verify_store(out)["files"] == len(files)


def test_the_manifest_digests_chunks_as_written_without_reading_them_back(tree, tmp_path, monkeypatch):
    monkeypatch.setattr(_ingest, "_TARGET_CHUNK_BYTES", 675 * 4 * 7)  # 7 neuroids a chunk
    reads = _hashed_from_disk(monkeypatch)
    out = ingest_nsd(tree.root, 1, tmp_path / "s.zarr", mask=None, rois=(), sessions=[1, 2, 3])
    assert not [r for r in reads if r.startswith("responses/") and "/.z" not in r]
    assert any(r.startswith("neuroid_id/") for r in reads)  # other arrays are read back
    _manifest_is_true(out)  # includes the last chunk's zero padding


def test_a_resumed_ingest_reads_back_the_chunks_it_did_not_write_whole(tree, tmp_path, monkeypatch):
    plan = _ingest_plan(tree.root, "fsaverage")
    plan.blocks[1].read = lambda: (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        plan.write(tmp_path / "r.zarr")
    reads = _hashed_from_disk(monkeypatch)
    out = ingest_nsd(tree.root, 1, tmp_path / "r.zarr", space="fsaverage", sessions=[1, 2, 3])
    chunks = sorted(p.name for p in (out / "responses").iterdir() if not p.name.startswith("."))
    assert sorted(r.split("/")[1] for r in reads if r.startswith("responses/0.")) == chunks
    _manifest_is_true(out)  # rows 225: were hashed as written, rows :225 were not
    np.testing.assert_array_equal(open_store(out).responses.values,
                                  load_nsd(tree.root, 1, space="fsaverage", sessions=[1, 2, 3]).responses.values)


def test_write_manifest_reads_a_file_whose_known_size_is_stale(tmp_path):
    from neuroalign.store import MANIFEST, write_manifest

    (tmp_path / "a").mkdir()
    (tmp_path / "a/0").write_bytes(b"12345")
    (tmp_path / "a/1").write_bytes(b"678")
    write_manifest(tmp_path, known={"a/0": (5, "given"), "a/1": (4, "stale")})
    files = json.loads((tmp_path / MANIFEST).read_text())["files"]
    assert files == {"a/0": [5, "given"], "a/1": [3, hashlib.sha256(b"678").hexdigest()]}


def test_a_failed_write_is_raised_and_only_written_blocks_are_resumable(tree, tmp_path, monkeypatch):
    real = _ingest._ChunkFiles.write_rows

    def full_disk(self, start, arr):
        if start >= 450:  # the third session
            raise OSError(28, "No space left on device")
        return real(self, start, arr)

    monkeypatch.setattr(_ingest._ChunkFiles, "write_rows", full_disk)
    plan = _ingest_plan(tree.root, "func1pt8mm")
    with pytest.raises(OSError, match="No space left"):
        plan.write(tmp_path / "r.zarr")
    state = json.loads((tmp_path / ".r.zarr.partial/.neuroalign-ingest.json").read_text())
    assert sorted(state["done"]) == sorted(b.key for b in plan.blocks[:2])
    assert not (tmp_path / "r.zarr").exists()


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_resume_hashing_runs_at_the_lowest_priority_on_its_own_thread_only():
    import os
    import threading

    def nice_of_this_thread(path, stat):
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    q = _digest.DigestQueue()
    try:
        q._hash = nice_of_this_thread
        assert q.submit(__file__, (0,)).result() == 19
    finally:
        q.close()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller  # unchanged


def test_published_layout_is_read_as_int16_with_its_divisor(tree):
    from neuroalign.datasets._nsd_files import _read_volume_hdf5

    path = tree.root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session02.hdf5"
    ijk = np.array([[0, 0, 0], [9, 11, 8], [3, 4, 5], [3, 4, 6]])
    got = _read_volume_hdf5(path, ijk)
    assert isinstance(got, _ingest.Scaled) and got.values.dtype == np.int16
    with h5py.File(path, "r") as f:
        full = f["betas"][()]  # (T, Z, Y, X)
    want = full[:, ijk[:, 2], ijk[:, 1], ijk[:, 0]].astype(np.float32) / np.float32(300)
    np.testing.assert_array_equal(got.to_float32().view(np.int32), want.view(np.int32))  # bitwise
    part = np.empty((len(want), 2), dtype=np.float32)
    got.into(part, slice(1, 3))
    np.testing.assert_array_equal(part, want[:, 1:3])


def test_an_interrupted_ingest_does_not_wait_on_the_low_priority_hashes(tree, tmp_path, monkeypatch):
    import time

    def stuck(self, path, stat):  # a background hash starved of CPU: runs until closed
        while not self._stop.wait(0.01):
            pass
        return None

    monkeypatch.setattr(_digest.DigestQueue, "_hash", stuck)
    plan = _ingest_plan(tree.root, "func1pt8mm")
    plan.blocks[2].read = lambda: (_ for _ in ()).throw(KeyboardInterrupt)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        plan.write(tmp_path / "r.zarr")
    assert time.perf_counter() - t0 < 10
    state = json.loads((tmp_path / ".r.zarr.partial/.neuroalign-ingest.json").read_text())
    assert state["done"] == {b.key: {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in b.files}
                             for b in plan.blocks[:2]}


def test_result_now_takes_the_background_digest_or_hashes_now(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc" * 1000)
    st = _digest.file_stat(p)
    q = _digest.DigestQueue()
    try:
        assert q.submit(p, st).result() == hashlib.sha256(b"abc" * 1000).hexdigest()
        p.write_bytes(b"xyz" * 1000)  # now other content: the recorded digest is of the old one
        assert q.result_now(p, st) == hashlib.sha256(b"abc" * 1000).hexdigest()
    finally:
        q.close()
    st2 = _digest.file_stat(p)
    assert q.result_now(p, st2) == hashlib.sha256(b"xyz" * 1000).hexdigest()  # never submitted
    p.unlink()
    assert q.result_now(p, st2) is None  # removed: read again on resume
