"""The chunk files of a streamed ingest, written by the cores available, block after block.

:class:`ChunkFiles` lays each block of rows (one session file) out in the store's neuroid
slabs: for every chunk, the block's values of that slab are divided/cast into a buffer,
written at their offset (``pwrite``; large writes past the page cache, see
:mod:`~neuroalign.datasets._direct`) and hashed (SHA-256, for the manifest). That work is
per byte and the same for every chunk, so the chunks of a block are spread over the
threads of a :class:`Workers` pool (numpy's casts, ``pwrite`` and ``hashlib`` release the
GIL); the pool also reads the next block meanwhile (:meth:`Workers.read_ahead`).

What stays exactly as in a single thread: every chunk file gets the same bytes, and its
SHA-256 is updated with its rows in order, because the chunks of one block are all written
before any chunk of the next block starts (a chunk is one task, done by one thread). At
most two blocks are in memory: the one being written and the one read ahead.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign.datasets import _direct
from neuroalign.exceptions import DataFormatError

__all__ = ["ChunkFiles", "Workers"]

_ZARR_FORMAT = 2


class Workers:
    """Threads for an ingest: :func:`neuroalign._config.max_threads` of them (each with one
    OpenMP/torch thread), or none when that is 1 (everything then runs in the caller).

    The caller only waits while the workers run, so at most ``max_threads()`` threads work
    at a time (and the low-priority resume hashing of
    :mod:`~neuroalign.datasets._digest`, which takes only CPU left idle).
    """

    def __init__(self, n_threads: int | None = None) -> None:
        from neuroalign._config import limit_this_thread, max_threads

        self.n = max(1, max_threads() if n_threads is None else n_threads)
        self._pool = (ThreadPoolExecutor(self.n, thread_name_prefix="neuroalign-ingest",
                                         initializer=limit_this_thread, initargs=(1,))
                      if self.n > 1 else None)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the tasks not started, wait for the running ones (a read ahead ends with
        its block)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def map(self, func: Callable[[Any], None], items: Iterable) -> None:
        """``func(item)`` for every item, spread over the threads; returns when every call
        has ended, then raises the first error (in the order of ``items``)."""
        items = list(items)
        if self._pool is None or len(items) < 2:
            for it in items:
                func(it)
            return
        futures = [self._pool.submit(func, it) for it in items]
        wait(futures)  # every task ends before the caller goes on (or raises)
        for f in futures:
            f.result()

    def read_ahead(self, read: Callable[[Any], Any], items: list) -> Iterator[tuple[Any, Any]]:
        """``(item, read(item))`` in order; ``read`` of the next item runs on a worker while
        the caller handles the current one (one item ahead, never more).

        An error of ``read`` is raised, as it was raised, when its item's turn comes: the
        items before it are handled first.
        """
        if self._pool is None:
            for it in items:
                yield it, read(it)
            return
        ahead: Future | None = self._pool.submit(read, items[0]) if items else None
        for k, it in enumerate(items):
            value = ahead.result()
            ahead = None  # the reference to the block goes with the caller's
            if k + 1 < len(items):
                ahead = self._pool.submit(read, items[k + 1])
            yield it, value
            del value


class ChunkFiles:
    """The uncompressed zarr v2 chunk files of ``responses``, written row block by row block.

    Chunk ``(0, c, 0...)`` holds all ``n`` rows of neuroids ``c*w : (c+1)*w`` (and every
    trailing index) in C order, so rows ``start:stop`` are bytes
    ``start*row : stop*row`` of it, ``row = w * prod(trailing) * 4``. Each chunk file is
    created at its full size (sparse) and written with ``pwrite`` at that offset; the last
    chunk's columns beyond the array are zeros (zarr ignores them).

    The SHA-256 of each chunk file is computed from the bytes as they are written, for the
    store's manifest, as long as its rows are written in order from the first (a fresh
    ingest); :meth:`digests` gives those of the files written whole that way, so the
    manifest does not read the store back. The chunks of a block are written by
    ``workers`` (:class:`Workers`), all of them before :meth:`write_rows` returns.
    """

    def __init__(self, folder: Path, shape: tuple[int, ...], chunks: tuple[int, ...],
                 workers: Workers | None = None) -> None:
        import zarr

        arr = zarr.open_array(str(folder), mode="r", zarr_format=_ZARR_FORMAT)
        meta = arr.metadata
        if (tuple(meta.chunks) != tuple(chunks) or getattr(meta, "compressor", None) is not None
                or getattr(meta, "filters", None) or arr.dtype != np.dtype("<f4")
                or getattr(meta, "order", "C") != "C"):  # pragma: no cover - guards the layout
            raise DataFormatError(f"{folder}: unexpected zarr layout {meta!r} for a streamed ingest.")
        self.folder = folder
        self.shape = shape
        self.workers = workers
        self.width = chunks[1]
        self.rest = int(np.prod(shape[2:])) if len(shape) > 2 else 1
        self.row_bytes = self.width * self.rest * 4
        self.n_chunks = -(-shape[1] // self.width)
        trailing = (0,) * (len(shape) - 2)
        keys = [meta.encode_chunk_key((0, c, *trailing)) for c in range(self.n_chunks)]
        self.paths = [folder / k for k in keys]
        self.rel = [f"{folder.name}/{k}" for k in keys]
        self._sha = [hashlib.sha256() for _ in keys]
        self._hashed = [0] * self.n_chunks  # bytes hashed from the start; -1: out of order
        self._local = threading.local()  # each thread's buffer of one chunk's rows
        self._direct = _direct.direct_io(folder)  # large writes past the page cache, while allowed

    def digests(self) -> dict[str, tuple[int, str]]:
        """``{path relative to the store: (size, SHA-256)}`` of the chunk files whose every
        byte was hashed as written, in order."""
        full = self.shape[0] * self.row_bytes
        return {rel: (full, h.hexdigest()) for rel, h, n in zip(self.rel, self._sha, self._hashed, strict=True)
                if n == full}

    def write_rows(self, start: int, arr) -> None:
        """Write rows ``start : start + len(arr)`` (float32 values, or a
        :class:`~neuroalign.datasets._ingest.Scaled`) into every chunk file."""
        def one(c: int) -> None:
            self._write_chunk(c, start, arr)

        if self.workers is None:
            for c in range(self.n_chunks):
                one(c)
        else:
            self.workers.map(one, range(self.n_chunks))

    def _piece(self, n_rows: int, phase: int) -> np.ndarray:
        """This thread's buffer of ``n_rows`` rows of one chunk, its address ``phase``
        modulo :data:`~neuroalign.datasets._direct.ALIGN` (so that the block-aligned
        middle of a write at an offset of that phase can go through ``O_DIRECT``)."""
        buf = _direct.aligned_buffer(n_rows * self.row_bytes, phase, getattr(self._local, "raw", None))
        self._local.raw = buf.base
        return buf.view("<f4").reshape(n_rows, self.width, *self.shape[2:])

    def _write_chunk(self, c: int, start: int, arr) -> None:
        from neuroalign.datasets._ingest import Scaled

        n_rows = arr.shape[0]
        full = self.shape[0] * self.row_bytes
        offset = start * self.row_bytes
        piece = self._piece(n_rows, offset % _direct.ALIGN)
        cols = slice(c * self.width, min((c + 1) * self.width, self.shape[1]))
        k = cols.stop - cols.start
        if isinstance(arr, Scaled):  # divided (or cast) as it is laid out
            arr.into(piece[:, :k], cols)
        else:
            piece[:, :k] = arr[:, cols]
        if k < self.width:  # the last chunk: columns past the end are 0
            piece[:, k:] = 0
        data = memoryview(piece).cast("B")
        fd = os.open(self.paths[c], os.O_WRONLY | os.O_CREAT, 0o666)
        dfd = None
        try:
            if os.fstat(fd).st_size != full:
                os.ftruncate(fd, full)
            if self._direct and len(data) >= _direct.MIN_DIRECT:
                dfd = _direct.open_direct(self.paths[c], os.O_WRONLY)
                self._direct = dfd is not None  # refused here: refused for every chunk
            if not _direct.write_at(fd, dfd, data, offset):
                self._direct = False
        finally:
            if dfd is not None:
                os.close(dfd)
            os.close(fd)
        # one task per chunk and block, blocks one after the other: in row order
        if self._hashed[c] == offset:  # hashlib releases the GIL on large buffers
            self._sha[c].update(data)
            self._hashed[c] = offset + len(data)
        else:
            self._hashed[c] = -1
