"""Direct readers for the uncompressed layouts of NSD's large beta files.

NSD's func1pt8mm HDF5 betas are chunked one voxel per chunk (h5py chunks
``(trials, 1, 1, 1)``, ~700,000 chunks per session), unfiltered. h5py reads such a file
at ~70 MB/s, chunk by chunk through HDF5's chunk machinery, whatever the selection. Here
HDF5's chunk index is read once per layout (``chunk_iter``, ~1-5 s for 700,000 chunks;
reused for the other sessions, whose bytes outside the chunk data are identical: checked
in the same pass that reads the chunks, the result kept only when they are) and the
chunks holding the wanted voxels are read as raw bytes, sorted by file offset and
coalesced into large reads: disk speed.
The fsaverage ``.mgh`` betas are one raw big-endian array after a 284-byte header; their
trials are read in large pieces. Large reads of either format go past the page cache
where the file system allows it (:mod:`~neuroalign.datasets._direct`); the others are
read ahead by the kernel (``POSIX_FADV_WILLNEED``) while the CPU takes what it wants from
the current piece.

Either reader returns ``None`` when the file does not have the layout it handles
(filters, partial-trial chunks, gzip): the caller then reads it with h5py / nibabel.
Values are returned exactly as stored (cast to float32), as those libraries give them.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from neuroalign.datasets._direct import Reader, pread
from neuroalign.exceptions import DataFormatError

__all__ = ["read_h5_voxels", "read_mgh_frames"]

_RANGE_BYTES = 64 * 2**20  # at most one read of this size (plus one chunk) at a time
_GAP_BYTES = 256 * 2**10  # chunks closer than this are read in one go, gap included


def _prefetch(fd: int, ranges) -> None:
    """Ask the kernel to start reading all ``(start, stop)`` ranges now, in parallel
    (``POSIX_FADV_WILLNEED``): many small reads then come from the page cache instead of
    waiting on the disk one by one (4x faster for the ~12,000 gaps of an NSD file)."""
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        for a, b in ranges:
            if b > a:  # (a length of 0 would mean: to the end of the file)
                advise(fd, int(a), int(b - a), os.POSIX_FADV_WILLNEED)


@dataclass
class _ChunkIndex:
    """Byte offset of every chunk (by linear chunk index; -1: never written), chunks
    stored in an unexpected way (``bad``), and the file's bytes outside chunk data
    (``gaps``, None when too many to compare) and their digest."""

    key: tuple
    table: np.ndarray
    bad: np.ndarray
    gaps: np.ndarray | None  # (m, 2) [start, stop) byte ranges not holding chunk data
    gap_digest: str | None = None


# chunk indexes of recent files, reused for a file whose every byte outside the chunk
# data is identical (same layout: HDF5 reads its index from exactly those bytes)
_INDEX_CACHE: OrderedDict[tuple, _ChunkIndex] = OrderedDict()
_INDEX_CACHE_SIZE = 4
_GAP_LIMIT = 256 * 2**20  # files with more non-chunk bytes than this are not cached


def _remember(index: _ChunkIndex) -> None:
    _INDEX_CACHE[index.key] = index
    _INDEX_CACHE.move_to_end(index.key)
    while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
        _INDEX_CACHE.popitem(last=False)


def _gap_digest(path: Path, gaps: np.ndarray) -> str:
    """SHA-256 of the ranges ``gaps`` and of the file's bytes in them."""
    h = hashlib.sha256(np.ascontiguousarray(gaps, dtype="<i8").tobytes())
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(int((gaps[:, 1] - gaps[:, 0]).max(initial=0)))
        _prefetch(fd, gaps.tolist())
        for a, b in gaps.tolist():
            h.update(pread(fd, buf, a, b - a, path))
    finally:
        os.close(fd)
    return h.hexdigest()


def _hdf5_chunks(d):
    """HDF5's index of the written chunks: byte offsets, sizes, filter masks, corners.

    Collected into compact arrays as HDF5 iterates (8 bytes a number: ~40 MB for NSD's
    ~700,000 chunks, where a list of h5py's records would take ~150 MB).
    """
    from array import array

    offsets, sizes, masks, corner = array("q"), array("q"), array("q"), array("q")

    def take(info) -> None:
        offsets.append(info.byte_offset)
        sizes.append(info.size)
        masks.append(info.filter_mask)
        corner.extend(info.chunk_offset)

    d.id.chunk_iter(take)
    as_np = [np.frombuffer(a, dtype=np.int64) if len(a) else np.empty(0, np.int64)
             for a in (offsets, sizes, masks, corner)]
    return as_np[0], as_np[1], as_np[2], as_np[3].reshape(-1, d.ndim)


def _chunk_index(d, path: Path, grid, chunk, size: int) -> _ChunkIndex:
    """HDF5's own index of ``d``'s chunks (``chunk_iter``), and the file's bytes outside
    the chunk data (``gaps``; None when chunks overlap or they are too many to compare).

    Why an index can be reused for another file (:func:`read_h5_voxels`): HDF5 finds a
    dataset's chunks by parsing metadata (superblock, object header, B-tree nodes) that
    lies outside the chunk data. If every byte outside file A's chunk data is identical in
    file B, parsing B reads the same bytes at the same addresses as parsing A, so B's
    chunks are where A's are; only their contents differ. Comparing those bytes (~4 % of
    an NSD session file) costs far less than iterating ~700,000 chunks.
    """
    file_size = path.stat().st_size
    key = (file_size, d.shape, d.dtype.str, d.chunks)
    gy, gx = grid[1], grid[2]
    cz, cy, cx = chunk
    offsets, sizes, masks, corner = _hdf5_chunks(d)
    n = len(offsets)
    lin = ((corner[:, 1] // cz) * gy + corner[:, 2] // cy) * gx + corner[:, 3] // cx
    ok = (sizes == size) & (masks == 0)
    n_chunks = int(np.prod(grid))
    table = np.full(n_chunks, -1, dtype=np.int64)
    table[lin[ok]] = offsets[ok]
    bad = np.zeros(n_chunks, dtype=bool)
    bad[lin[~ok]] = True
    # the bytes outside chunk data; overlapping chunks (a corrupt file): no caching
    o = np.argsort(offsets)
    lo, hi = offsets[o], offsets[o] + sizes[o]
    gaps = None
    if not (n and (np.any(lo[1:] < hi[:-1]) or hi[-1] > file_size)):
        edges, ends = np.r_[0, hi], np.r_[lo, file_size]
        keep = ends > edges
        gaps = np.c_[edges[keep], ends[keep]]
        if int((gaps[:, 1] - gaps[:, 0]).sum()) > _GAP_LIMIT:
            gaps = None
    return _ChunkIndex(key, table, bad, gaps)


def _direct_chunks(d) -> tuple[int, ...] | None:
    """The chunk shape when every chunk can be read as raw bytes, else None."""
    from h5py import h5d

    if d.chunks is None or d.chunks[0] != d.shape[0] or not hasattr(d.id, "chunk_iter"):
        return None
    plist = d.id.get_create_plist()
    if plist.get_layout() != h5d.CHUNKED or plist.get_nfilters() != 0:
        return None
    return tuple(int(c) for c in d.chunks)


class _Gather:
    """Copies the wanted chunks' values out of pieces of the file into ``out`` (n, T)."""

    def __init__(self, out, vox, starts, which, local, size, T, per_chunk, dtype):
        self.out, self.vox, self.starts, self.local = out, vox, starts, local
        self.size, self.T, self.per_chunk, self.dtype = size, T, per_chunk, dtype
        self.order = np.argsort(which, kind="stable")
        self.sorted_which = which[self.order]

    def __call__(self, base: int, view: memoryview) -> None:
        """Take every wanted chunk lying wholly in ``view`` (file bytes from ``base``)."""
        a = int(np.searchsorted(self.starts, base))
        b = int(np.searchsorted(self.starts, base + len(view) - self.size, side="right"))
        if b <= a:
            return
        lo, hi = np.searchsorted(self.sorted_which, [a, b])
        sel = self.order[lo:hi]
        rows_out = self.vox[sel]
        # one copy of each wanted chunk, already in output order, then cast into place
        raw = np.frombuffer(view, dtype=np.uint8)
        rows = sliding_window_view(raw, self.size)[self.starts[self.sorted_which[lo:hi]] - base]
        if self.per_chunk == 1:  # 2-d source: numpy's fast cast-and-scatter (7x a 3-d view)
            self.out[rows_out] = rows.view(self.dtype).reshape(len(sel), self.T)
        else:
            vals = rows.view(self.dtype).reshape(len(sel), self.T, self.per_chunk)
            self.out[rows_out] = vals[np.arange(len(sel)), :, self.local[rows_out]]


def read_h5_voxels(d, path: Path, zyx: np.ndarray, dtype=np.float32) -> np.ndarray | None:
    """Values (trials, n) of 4-D dataset ``d`` (trials, Z, Y, X) at voxels ``zyx`` (n, 3).

    Only the chunks of the wanted voxels are read, sorted by file offset, nearby ones in
    one read.

    Parameters
    ----------
    d : h5py.Dataset
        Open dataset, shape (T, Z, Y, X).
    path : Path
        Its file (named in errors, and read directly).
    zyx : ndarray of int, shape (n, 3)
        Wanted voxels as (z, y, x) indices.
    dtype : dtype
        Of the result: float32 (default), or the stored dtype (no cast).

    Returns
    -------
    ndarray of ``dtype``, shape (T, n), or None
        The stored values (unscaled; a transposed view of a C-ordered (n, T) array), or
        None when the layout is not one whose chunks hold every trial of a block of voxels
        without filters (nothing was read then).
    """
    chunks = _direct_chunks(d)
    if chunks is None:
        return None
    T = int(d.shape[0])
    grid = tuple(-(-int(n) // c) for n, c in zip(d.shape[1:], chunks[1:], strict=True))
    size = T * int(np.prod(chunks[1:])) * d.dtype.itemsize
    file_size = path.stat().st_size
    key = (file_size, d.shape, d.dtype.str, d.chunks)
    cached = _INDEX_CACHE.get(key)
    if cached is not None:
        # read with the index of a file of the same layout, hashing this file's bytes
        # outside the chunk data in the same pass; kept only when they are identical
        try:
            got = _read_voxels(d, path, zyx, dtype, cached, chunks, grid, size, file_size)
        except DataFormatError:  # e.g. a chunk past the end: not this file's index
            got = None
        if got is not None and got[1] == cached.gap_digest:
            _INDEX_CACHE.move_to_end(key)
            return got[0]
        _INDEX_CACHE.pop(key, None)
    index = _chunk_index(d, path, grid, chunks[1:], size)
    got = _read_voxels(d, path, zyx, dtype, index, chunks, grid, size, file_size)
    if got is None:
        return None
    if index.gaps is not None and got[1] is not None:
        index.gap_digest = got[1]
        _remember(index)
    return got[0]


def _read_voxels(d, path: Path, zyx, dtype, index: _ChunkIndex, chunks, grid, size: int,
                 file_size: int) -> tuple[np.ndarray, str | None] | None:
    """The values (T, n) at ``zyx`` read with ``index``, and the digest of the file's bytes
    in ``index.gaps`` (:func:`_gap_digest`, taken in the same pass); None when a wanted
    chunk is stored in some other way (h5py reads it then)."""
    T = int(d.shape[0])
    cz, cy, cx = chunks[1:]
    per_chunk = cz * cy * cx
    z, y, x = (np.asarray(zyx[:, a], dtype=np.int64) for a in range(3))
    lin = ((z // cz) * grid[1] + y // cy) * grid[2] + x // cx
    local = ((z % cz) * cy + y % cy) * cx + x % cx
    if index.bad[lin].any():
        return None  # a wanted chunk is stored in some other way: let h5py read it
    off = index.table[lin]
    # filled neuroid-major (n, T): each chunk's trials are one contiguous row, so the
    # scatter into voxel order moves whole rows; the caller gets the (T, n) view
    out = np.empty((len(z), T), dtype=dtype)
    absent = off < 0  # never written: HDF5 gives the fill value
    if absent.any():
        fill = d.fillvalue
        out[absent] = np.asarray(0 if fill is None else fill).astype(dtype)
    vox = np.flatnonzero(~absent)
    starts, which = np.unique(off[vox], return_inverse=True)  # sorted chunk offsets
    if len(starts) and starts[-1] + size > file_size:
        raise DataFormatError(
            f"{path}: chunk data of dataset {d.name.lstrip('/')!r} run to byte "
            f"{int(starts[-1] + size)}, but the file has {file_size} bytes; the file is "
            "truncated or corrupt. Download it again."
        )
    take = _Gather(out, vox, starts, which, local, size, T, per_chunk, d.dtype)
    fd = os.open(path, os.O_RDONLY)
    try:
        digest = _read_ranges(fd, path, starts, size, take, index.gaps)
    finally:
        os.close(fd)
    return out.T, digest


def _read_ranges(fd: int, path: Path, starts: np.ndarray, size: int, take,
                 gaps: np.ndarray | None = None) -> str | None:
    """Read only the wanted chunks, nearby ones coalesced, at most _RANGE_BYTES at once.

    With ``gaps`` (the file's bytes outside chunk data), also return their digest as
    :func:`_gap_digest` computes it, in the same pass: a gap inside a range is hashed from
    the bytes read for the chunks, the others are read on their own, in file order.
    """
    h = None
    if gaps is not None:
        h = hashlib.sha256(np.ascontiguousarray(gaps, dtype="<i8").tobytes())
        g_lo, g_hi = gaps[:, 0], gaps[:, 1]
    if len(starts):
        brk = np.ones(len(starts), dtype=bool)
        brk[1:] = ((np.diff(starts) > size + _GAP_BYTES)
                   | (starts[1:] // _RANGE_BYTES != starts[:-1] // _RANGE_BYTES))
        first = np.flatnonzero(brk)
        last = np.append(first[1:], len(starts)) - 1
        lo, hi = starts[first], starts[last] + size
    else:
        lo = hi = np.empty(0, dtype=np.int64)
    inside = np.zeros(0 if gaps is None else len(gaps), dtype=bool)
    if gaps is not None and len(lo):  # a gap never straddles a range (ranges end at chunks)
        r = np.searchsorted(lo, g_lo, side="right") - 1
        inside = (r >= 0) & (g_hi <= hi[np.maximum(r, 0)])
    alone = [] if gaps is None else gaps[~inside].tolist()
    ranges = list(zip(lo.tolist(), hi.tolist(), strict=True))
    gbuf = bytearray(max((b - a for a, b in alone), default=0))
    g = 0  # next gap to hash
    with Reader(fd, path) as reader:
        # the kernel reads ahead what goes through the page cache (not the large ranges
        # read directly: they would be read twice)
        _prefetch(fd, [(a, b) for a, b in ranges if not reader.direct(b - a)] + alone)
        for base, end in ranges:
            view = reader.read(base, end - base)
            if h is not None:
                while g < len(gaps) and g_lo[g] < end:
                    a, b = int(g_lo[g]), int(g_hi[g])
                    h.update(view[a - base : b - base] if inside[g] else pread(fd, gbuf, a, b - a, path))
                    g += 1
            take(base, view)
    if h is None:
        return None
    for a, b in gaps[g:].tolist():
        h.update(pread(fd, gbuf, a, b - a, path))
    return h.hexdigest()


def _preadv_rows(fd: int, rows: list[np.ndarray], offset: int, path: Path) -> None:
    """Fill the contiguous arrays ``rows`` with the file's bytes from ``offset`` on, in
    order (one ``preadv`` when it reads them whole)."""
    views = [memoryview(r.reshape(-1).view(np.uint8)) for r in rows]
    need = sum(len(v) for v in views)
    got = 0
    while views:
        n = os.preadv(fd, views, offset + got)
        if n == 0:
            raise DataFormatError(
                f"{path}: ends at byte {offset + got}, but its data continue to byte "
                f"{offset + need}; the file is truncated. Download it again."
            )
        got += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]


def read_mgh_frames(path: Path, img, columns: np.ndarray,
                    out: np.ndarray | None = None) -> np.ndarray | None:
    """Frames x ``columns`` of an uncompressed ``.mgh`` of shape (V, 1, 1, T), float.

    Returns None for other files (``.mgz``, scaled data, other shapes). The values are
    those ``nibabel`` gives (``img.dataobj``), written into ``out`` (T, len(columns)) when
    given, cast to its dtype, else into a new float32 array. When ``out`` has the file's
    own dtype (big-endian) and the columns are all of them, no value is cast: the frames
    are read straight into it, or, where large reads go past the page cache
    (:mod:`~neuroalign.datasets._direct`), copied into it from the reader's aligned buffer.
    The frames are read in order, ~64 MiB at a time.
    """
    proxy = img.dataobj
    if not str(path).lower().endswith(".mgh") or getattr(proxy, "order", None) != "F":
        return None
    shape = tuple(int(s) for s in proxy.shape)
    if len(shape) != 4 or shape[1:3] != (1, 1):
        return None
    if float(getattr(proxy, "slope", 1.0)) != 1.0 or float(getattr(proxy, "inter", 0.0)) != 0.0:
        return None
    dtype = np.dtype(proxy.dtype)
    V, T = shape[0], shape[3]
    offset = int(proxy.offset)
    frame = V * dtype.itemsize
    need = offset + frame * T
    file_size = path.stat().st_size
    if file_size < need:
        raise DataFormatError(
            f"{path}: truncated or corrupt image data (the file has {file_size} bytes, its "
            f"header describes {need}). Expected {V * T} values of shape {shape!r}."
        )
    columns = np.asarray(columns, dtype=np.int64)
    if out is None or out.shape != (T, len(columns)):
        out = np.empty((T, len(columns)), dtype=np.float32)
    if len(columns) and columns[0] >= 0 and np.array_equal(
            columns, np.arange(columns[0], columns[0] + len(columns))):
        # a run of columns (the whole surface): a slice, cast straight into ``out``
        columns = slice(int(columns[0]), int(columns[0]) + len(columns))
    # every column, in the file's dtype, each row of ``out`` contiguous: read in place
    in_place = (isinstance(columns, slice) and columns == slice(0, V) and out.dtype == dtype
                and out.strides[1] == dtype.itemsize)
    step = max(1, min(_RANGE_BYTES // max(frame, 1), 512 if in_place else T))
    fd = os.open(path, os.O_RDONLY)
    try:
        with Reader(fd, path) as reader:
            # large pieces are read past the page cache, through the reader's aligned buffer
            in_place = in_place and not reader.direct(step * frame)
            for t0 in range(0, T, step):
                m = min(step, T - t0)
                if not reader.direct(m * frame):  # the disk reads the next piece meanwhile
                    _prefetch(fd, [(offset + (t0 + m) * frame, offset + min(t0 + m + step, T) * frame)])
                if in_place:
                    _preadv_rows(fd, list(out[t0 : t0 + m]), offset + t0 * frame, path)
                    continue
                view = reader.read(offset + t0 * frame, m * frame)
                out[t0 : t0 + m] = np.frombuffer(view, dtype=dtype).reshape(m, V)[:, columns]
                del view
    finally:
        os.close(fd)
    return out
