"""Reads and writes past the page cache (``O_DIRECT``): the same bytes as buffered I/O at
every offset and length, aligned or not, and a clean fall back where the file system or a
read or write refuses it."""

from __future__ import annotations

import errno
import hashlib
import os

import numpy as np
import pytest

from neuroalign.datasets import _digest, _direct
from neuroalign.exceptions import DataFormatError

A = _direct.ALIGN


@pytest.fixture
def small_direct(monkeypatch):
    """Every piece of a byte or more goes past the page cache (where the file system lets
    it, whichever it is: forced, so that the direct path is tested on any file system)."""
    monkeypatch.setattr(_direct, "MIN_DIRECT", 1)
    monkeypatch.setenv("NEUROALIGN_DIRECT_IO", "1")


def _supported(path) -> bool:
    fd = _direct.open_direct(path, os.O_RDONLY)
    if fd is None:
        return False
    os.close(fd)
    return True


def _file(tmp_path, size, seed=0):
    data = np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8).tobytes()
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    return path, data


CASES = [(0, A), (0, 3 * A + 123), (1, 10), (A - 1, 2), (5, 2 * A), (A, A), (3 * A + 100, 23),
         (2 * A + 7, A + 116)]  # the last ones end exactly at the end of the file


def test_direct_reads_give_the_bytes_of_buffered_reads(tmp_path, small_direct):
    path, data = _file(tmp_path, 3 * A + 123)
    with open(path, "rb") as f, _direct.Reader(f.fileno(), path) as reader:
        assert (reader.dfd is not None) == _supported(path)  # the direct path where possible
        for off, n in CASES + CASES[::-1]:  # the buffer is reused across sizes
            assert bytes(reader.read(off, n)) == data[off : off + n], (off, n)
        assert bytes(reader.read(3 * A, 4 * A, to_end=True)) == data[3 * A :]
        assert bytes(reader.read(len(data), A, to_end=True)) == b""
        with pytest.raises(DataFormatError, match=r"f\.bin: ends at byte 12411, but its data continue to "
                                                  r"byte 12412; the file is truncated"):
            reader.read(len(data) - 5, 6)


def test_disabled_or_refused_direct_io_reads_through_the_page_cache(tmp_path, small_direct, monkeypatch):
    path, data = _file(tmp_path, 2 * A + 5, seed=1)
    monkeypatch.setenv("NEUROALIGN_DIRECT_IO", "0")
    assert not _direct.direct_io(path)
    with open(path, "rb") as f, _direct.Reader(f.fileno(), path) as reader:
        assert reader.dfd is None and not reader.direct(10**9)
        assert bytes(reader.read(3, 2 * A)) == data[3 : 3 + 2 * A]
    monkeypatch.setenv("NEUROALIGN_DIRECT_IO", "1")
    # the file system refuses at open (tmpfs) ...
    monkeypatch.setattr(_direct.os, "open", lambda p, flags, *a, real=os.open: (
        (_ for _ in ()).throw(OSError(errno.EINVAL, "Invalid argument")) if flags & os.O_DIRECT
        else real(p, flags, *a)))
    with open(path, "rb") as f, _direct.Reader(f.fileno(), path) as reader:
        assert reader.dfd is None
        assert bytes(reader.read(7, A)) == data[7 : 7 + A]
    monkeypatch.undo()
    monkeypatch.setattr(_direct, "MIN_DIRECT", 1)
    # ... or at the first read: that read and the next ones are buffered
    real_preadv, direct_fds = os.preadv, set()

    def preadv(fd, bufs, off):
        if fd in direct_fds:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_preadv(fd, bufs, off)

    monkeypatch.setattr(_direct.os, "preadv", preadv)
    with open(path, "rb") as f, _direct.Reader(f.fileno(), path) as reader:
        direct_fds.add(reader.dfd)
        assert bytes(reader.read(9, A + 3)) == data[9 : 12 + A]
        assert reader.dfd is None and bytes(reader.read(0, 2 * A)) == data[: 2 * A]


def test_other_read_errors_are_not_hidden(tmp_path, small_direct, monkeypatch):
    path, _ = _file(tmp_path, 2 * A)
    monkeypatch.setattr(_direct.os, "preadv", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with open(path, "rb") as f, _direct.Reader(f.fileno(), path) as reader:
        with pytest.raises(OSError, match="I/O error"):
            reader.read(0, A)


@pytest.mark.parametrize("refuse", [False, True])
def test_writes_at_any_offset_give_the_bytes_asked(tmp_path, small_direct, monkeypatch, refuse):
    size = 9 * A + 77
    path = tmp_path / "w.bin"
    want = bytearray(size)
    rng = np.random.default_rng(3)
    real_pwrite, direct_fds, taken = os.pwrite, set(), []

    def pwrite(fd, data, off):
        if fd in direct_fds:
            taken.append((off, len(data)))
            if refuse:
                raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, off)

    monkeypatch.setattr(_direct.os, "pwrite", pwrite)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
    os.ftruncate(fd, size)
    try:  # writes in shuffled order, abutting and overlapping, aligned and not
        for off, n in [(3 * A + 100, 2 * A), (0, A + 1), (A + 1, 2 * A - 1), (5 * A + 100, 4 * A - 23),
                       (6 * A - 3, 5), (9 * A, 77), (A + 1, 50)]:
            payload = rng.integers(0, 256, size=n, dtype=np.uint8)
            buf = _direct.aligned_buffer(n, off)
            buf[:] = payload
            dfd = _direct.open_direct(path, os.O_WRONLY)
            if dfd is not None:
                direct_fds.add(dfd)
            before = len(taken)
            try:
                ok = _direct.write_at(fd, dfd, memoryview(buf), off)
            finally:
                if dfd is not None:
                    os.close(dfd)
            assert ok == (not refuse or len(taken) == before)  # False: refused, written buffered
            want[off : off + n] = payload.tobytes()
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(want)
    if _supported(path):  # only whole aligned blocks went directly
        assert taken and all(off % A == 0 and n % A == 0 for off, n in taken)


def test_resume_digest_reads_past_the_page_cache_the_same_bytes(tmp_path, small_direct, monkeypatch):
    monkeypatch.setattr(_digest, "_DIGEST_PIECE", 3 * A)
    path, data = _file(tmp_path, 7 * A + 11, seed=2)
    want = hashlib.sha256(data).hexdigest()
    assert _digest._sha256_file(path) == want
    monkeypatch.setenv("NEUROALIGN_DIRECT_IO", "0")
    assert _digest._sha256_file(path) == want


MOUNTINFO = r"""22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:27 / /data rw,relatime shared:2 - xfs /dev/vdb rw
31 30 0:28 / /data/scratch rw,relatime shared:3 - btrfs /dev/vdc rw
32 22 0:29 / /mnt/my\040disk rw - nfs4 server:/export rw
33 22 0:30 / /dev/shm rw - tmpfs tmpfs rw
"""


@pytest.mark.parametrize(("path", "kind", "auto"), [
    ("/home/me/nsd", "ext4", True), ("/data/nsd", "xfs", True), ("/data", "xfs", True),
    ("/data/scratch/nsd", "btrfs", False), ("/data/scratchy", "xfs", True),
    ("/mnt/my disk/x", "nfs4", False), ("/dev/shm/x", "tmpfs", False)])
def test_direct_io_is_used_where_it_was_measured_to_help(path, kind, auto, monkeypatch, tmp_path):
    """auto (the default): ext4 and xfs only (btrfs was slower, others unmeasured); the
    longest mount point holding the path decides; 1 forces it, 0 turns it off."""
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(
        info if p == "/proc/self/mountinfo" else p, *a, **k))
    monkeypatch.setattr(_direct.os.path, "realpath", lambda p: str(p))
    assert _direct.fs_type(path) == kind
    monkeypatch.delenv("NEUROALIGN_DIRECT_IO", raising=False)
    assert _direct.direct_io(path) is auto
    monkeypatch.setenv("NEUROALIGN_DIRECT_IO", "auto")
    assert _direct.direct_io(path) is auto
    monkeypatch.setenv("NEUROALIGN_DIRECT_IO", "1")
    assert _direct.direct_io(path) is True
    monkeypatch.setenv("NEUROALIGN_DIRECT_IO", "0")
    assert _direct.direct_io(path) is False
    monkeypatch.setenv("NEUROALIGN_DIRECT_IO", "yes")
    with pytest.raises(ValueError, match=r"Invalid value for the environment variable "
                                         r"NEUROALIGN_DIRECT_IO: 'yes'\. Expected 0 .*, 1 .* or auto"):
        _direct.direct_io(path)


def test_the_file_system_of_this_machine_is_named(tmp_path):
    kind = _direct.fs_type(tmp_path)
    assert isinstance(kind, str) and kind  # whatever it is, from /proc/self/mountinfo
    assert _direct.fs_type("/proc/self") == "proc"
