"""Large reads and writes of an ingest, without the page cache (``O_DIRECT``) where it can.

A buffered read or write copies every byte through the kernel's page cache. On the
virtual machines most users run on, that copy (and the reclaim of the pages it fills)
costs about a second of kernel CPU per GiB, on the same cores that the ingest's casts and
checksums need: at whole-brain size (10 GB read, 9 GB written per 10 sessions) it was more
than half the ingest's CPU time. With ``O_DIRECT`` the disk moves the bytes straight to and
from the process's memory (measured on this kind of machine: 2.2 GB/s read with 0.04 s of
kernel CPU per GiB, against 0.75 GB/s and 1.2 s buffered).

``O_DIRECT`` asks that the file offset, the length and the memory address be multiples of
the device's block size; :data:`ALIGN` (4,096) is a multiple of every common one. So:

* :class:`Reader` reads the aligned range around what is asked into an aligned buffer of
  its own and returns a view of the asked bytes;
* :func:`write_at` writes the aligned middle of a buffer directly and its unaligned first
  and last bytes (less than one block each) through the page cache; the caller lays its
  buffer out so that the middle's address is aligned (:func:`aligned_buffer`). The two
  kinds of write never touch the same block, so the kernel keeps the file coherent.

It is used on the file systems where it was measured to help (:data:`DIRECT_FS`: ext4,
xfs). Small pieces (under :data:`MIN_DIRECT`), other file systems (btrfs, where it was
slower; network and unmeasured ones), file systems that refuse ``O_DIRECT`` (``EINVAL`` at
open or at the first read or write), platforms without it (macOS, Windows) and
``NEUROALIGN_DIRECT_IO=0`` use ordinary buffered I/O; ``NEUROALIGN_DIRECT_IO=1`` asks for
it on any file system. The bytes read or written are the same either way (tested).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np

from neuroalign.exceptions import DataFormatError

__all__ = ["ALIGN", "DIRECT_FS", "MIN_DIRECT", "Reader", "aligned_buffer", "direct_io", "fs_type",
           "open_direct", "pread", "write_at"]

ALIGN = 4096
MIN_DIRECT = 1 << 20  # pieces smaller than this go through the page cache


#: File systems on which ``O_DIRECT`` was measured to make the ingest faster: ext4 (a
#: virtio disk: whole brain 1.86x -> 1.18x the raw read) and xfs (7.4-7.8 s against
#: 8.3-8.4 s buffered). On btrfs it was slower (10.2-10.3 s against 8.4-9.0 s: its direct
#: I/O checksums each write synchronously), and others were not measured: there the ingest
#: reads and writes through the page cache unless ``NEUROALIGN_DIRECT_IO=1``.
DIRECT_FS = frozenset({"ext4", "xfs"})
_MODES = ("0", "1", "auto", "")


def direct_io(path: str | os.PathLike | None = None) -> bool:
    """Whether large ingest I/O on ``path`` (a file or folder) bypasses the page cache:
    the platform has ``O_DIRECT`` and ``NEUROALIGN_DIRECT_IO`` is ``1`` (always), or
    unset / ``auto`` and ``path`` is on a file system of :data:`DIRECT_FS`; never with
    ``NEUROALIGN_DIRECT_IO=0``. A file system that refuses it still falls back.

    >>> from neuroalign.datasets._direct import direct_io, fs_type
    >>> on = direct_io(".")  # True on ext4 or xfs (unless NEUROALIGN_DIRECT_IO=0)
    >>> on == (fs_type(".") in DIRECT_FS) or "NEUROALIGN_DIRECT_IO" in os.environ
    True
    """
    mode = os.environ.get("NEUROALIGN_DIRECT_IO", "auto").strip().lower()
    if mode not in _MODES:
        raise ValueError(
            f"Invalid value for the environment variable NEUROALIGN_DIRECT_IO: {mode!r}. "
            "Expected 0 (reads and writes through the page cache), 1 (past it, where the file "
            "system allows) or auto (past it on ext4 and xfs).")
    if not hasattr(os, "O_DIRECT") or mode == "0":
        return False
    if mode == "1":
        return True
    return path is not None and fs_type(path) in DIRECT_FS


def fs_type(path: str | os.PathLike) -> str | None:
    """The type of the file system holding ``path`` (``"ext4"``, ``"xfs"``, ``"btrfs"``,
    ``"nfs"`` ...) from ``/proc/self/mountinfo``; None where that is not readable."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    where = os.path.realpath(path)
    best, kind = "", None
    for line in lines:  # "id parent dev root MOUNT_POINT options ... - FSTYPE source ..."
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        mount = fields[4].encode().decode("unicode_escape")  # spaces come as \040
        inside = where == mount or where.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, right.split()[0]
    return kind


def open_direct(path: Path, flags: int) -> int | None:
    """``os.open(path, flags | O_DIRECT)``, or None where the file system refuses it."""
    try:
        return os.open(path, flags | os.O_DIRECT)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # the file system refuses it
            return None
        raise


def aligned_buffer(nbytes: int, phase: int = 0, reuse: np.ndarray | None = None) -> np.ndarray:
    """A uint8 array of ``nbytes`` whose address is ``phase`` modulo :data:`ALIGN`: a view
    of ``reuse`` (an earlier result's ``.base``) when that is large enough, else of a new
    array."""
    raw = reuse
    if raw is None or raw.size < int(nbytes) + ALIGN:
        raw = np.empty(int(nbytes) + ALIGN, dtype=np.uint8)
    skip = (int(phase) - raw.ctypes.data) % ALIGN
    return raw[skip : skip + int(nbytes)]


def pread(fd: int, buf, offset: int, length: int, path: Path, *, need: int | None = None) -> memoryview:
    """Bytes ``offset : offset + length`` of the open file ``fd`` read into ``buf``.

    ``need``: the bytes that must exist (default ``length``); a read that ends at the end
    of the file after them is complete. Raises :class:`DataFormatError` naming ``path``
    when the file ends earlier.
    """
    need = length if need is None else need
    view = memoryview(buf).cast("B")[:length]
    got = 0
    while got < length:
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            if got >= need:
                break
            raise DataFormatError(
                f"{path}: ends at byte {offset + got}, but its data continue to byte "
                f"{offset + need}; the file is truncated. Download it again."
            )
        got += n
    return view[:got]


class Reader:
    """Reads pieces of one file, large ones with ``O_DIRECT`` (see the module).

    ``fd`` is the file opened for ordinary reads (used for small pieces and as the
    fallback); the reader opens its own ``O_DIRECT`` descriptor and closes it in
    :meth:`close`. The view :meth:`read` returns is valid until its next call.
    """

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path
        self.dfd = open_direct(path, os.O_RDONLY) if direct_io(path) else None
        self._buf: np.ndarray | None = None
        self._small = bytearray()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.dfd is not None:
            os.close(self.dfd)
            self.dfd = None

    def direct(self, length: int) -> bool:
        """Whether a piece of ``length`` bytes is read past the page cache."""
        return self.dfd is not None and length >= MIN_DIRECT

    def read(self, offset: int, length: int, *, to_end: bool = False) -> memoryview:
        """Bytes ``offset : offset + length``: a :class:`DataFormatError` if the file is
        shorter, or with ``to_end`` those up to its end."""
        if self.direct(length):
            a = offset - offset % ALIGN
            b = -(-(offset + length) // ALIGN) * ALIGN
            if self._buf is None or len(self._buf) < b - a:
                self._buf = aligned_buffer(b - a)
            try:
                view = pread(self.dfd, self._buf, a, b - a, self.path,
                             need=0 if to_end else offset + length - a)
                return view[offset - a : offset - a + length]
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self.close()  # refused after all: buffered from now on
        if len(self._small) < length:
            self._small = bytearray(length)
        return pread(self.fd, self._small, offset, length, self.path, need=0 if to_end else None)


def write_at(fd: int, dfd: int | None, data: memoryview, offset: int) -> bool:
    """Write ``data`` at ``offset``: its aligned middle through ``dfd`` (``O_DIRECT``; the
    address of that middle must be aligned, see :func:`aligned_buffer` with ``phase =
    offset``), the rest through ``fd``. Returns False when ``dfd`` refused the write
    (``EINVAL``); everything was then written through ``fd``."""
    data = data.cast("B") if data.format != "B" else data
    n = len(data)
    head = min(n, (-offset) % ALIGN)
    mid = (n - head) // ALIGN * ALIGN if dfd is not None and n >= MIN_DIRECT else 0
    ok = True
    if mid:
        try:
            _pwrite_all(dfd, data[head : head + mid], offset + head)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            ok, mid = False, 0
    if mid:
        _pwrite_all(fd, data[:head], offset)
        _pwrite_all(fd, data[head + mid :], offset + head + mid)
    else:
        _pwrite_all(fd, data, offset)
    return ok


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)
