"""SHA-256 of input files for the ingest's content-keyed resume, off the critical path.

:meth:`~neuroalign.datasets._ingest.IngestPlan.write` records, for every block it wrote,
the SHA-256 of each file the block was read from; a resumed ingest keeps a block only
when those digests are unchanged. Hashing a file costs about as much CPU as reading it
(SHA-256 runs at ~0.5-2 GB/s a core), so it never holds up the ingest: once a block is
read and written, its files are queued for hashing on a background thread, and the block counts as finished in the resume state when its
digests are in. A complete ingest drops the hashes still pending (they only serve a
resume); an interrupted one first finishes those of the blocks it wrote (on its own
thread, at its own priority). On Linux the
hashing thread runs at the lowest CPU priority (``nice`` 19, that thread only), so it
takes only the CPU time that the ingest leaves idle (waiting on the disk): it never slows
the ingest down, and the hashes it has not finished when the ingest completes are simply
dropped.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

__all__ = ["file_stat", "content_digest", "DigestQueue"]

_DIGEST_PIECE = 8 * 2**20


def _lower_priority() -> None:
    """Give the calling thread the lowest CPU priority (Linux: ``setpriority`` on a thread
    id affects that thread only); elsewhere, or when refused, do nothing."""
    if sys.platform.startswith("linux") and hasattr(threading, "get_native_id"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except OSError:  # pragma: no cover - e.g. a sandbox that forbids it
            pass


def file_stat(path) -> tuple:
    """(size, mtime_ns, ctime_ns, inode, device): what changes when a file is replaced."""
    st = Path(path).stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _sha256_file(path, stop: threading.Event | None = None) -> str | None:
    """SHA-256 of a file (None if ``stop`` is set meanwhile), read in pieces past the page
    cache where the file system allows it (:mod:`~neuroalign.datasets._direct`: the ingest
    read the file that way too, so it is not cached), else with the kernel asked to read
    the next pieces ahead (``POSIX_FADV_WILLNEED``) while the CPU hashes."""
    from neuroalign.datasets._direct import Reader

    h = hashlib.sha256()
    advise = getattr(os, "posix_fadvise", None)
    path = Path(path)
    with open(path, "rb", buffering=0) as f, Reader(f.fileno(), path) as reader:
        fd, pos = f.fileno(), 0
        while True:
            if stop is not None and stop.is_set():
                return None
            if advise is not None and not reader.direct(_DIGEST_PIECE):
                advise(fd, pos + _DIGEST_PIECE, 2 * _DIGEST_PIECE, os.POSIX_FADV_WILLNEED)
            view = reader.read(pos, _DIGEST_PIECE, to_end=True)
            if not len(view):
                break
            h.update(view)
            pos += len(view)
    return h.hexdigest()


def content_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the whole file at ``path``."""
    return _sha256_file(path)


class DigestQueue:
    """Hashes files in order on one background thread (``hashlib`` and file reads release
    the GIL, so it runs beside the caller's work).

    :meth:`submit` returns a future of the file's SHA-256, or of None when the file no
    longer has the stat it had when it was read (its digest would not be of that content)
    or the queue was closed first. A file submitted twice with the same stat is hashed
    once.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="neuroalign-digest",
                                        initializer=_lower_priority)
        self._stop = threading.Event()
        self._futures: dict[tuple, Future] = {}

    def submit(self, path, stat: tuple) -> Future:
        key = (str(path), tuple(stat))
        if key not in self._futures:
            self._futures[key] = self._pool.submit(self._hash, Path(path), tuple(stat))
        return self._futures[key]

    def _hash(self, path: Path, stat: tuple) -> str | None:
        if self._stop.is_set() or not path.is_file() or file_stat(path) != stat:
            return None
        digest = _sha256_file(path, self._stop)
        return digest if digest is not None and file_stat(path) == stat else None

    def result_now(self, path, stat: tuple) -> str | None:
        """The digest of ``path`` as it had ``stat``: the background one when it is in,
        else computed now on the calling thread (at its priority; after :meth:`close`, for
        an interrupted ingest that must not wait on the low-priority thread)."""
        fut = self._futures.get((str(path), tuple(stat)))
        if (fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None
                and fut.result() is not None):
            return fut.result()
        path = Path(path)
        try:
            if not path.is_file() or file_stat(path) != tuple(stat):
                return None
            digest = _sha256_file(path)
            return digest if file_stat(path) == tuple(stat) else None
        except OSError:  # removed meanwhile: its block is read again on resume
            return None

    def close(self) -> None:
        """Stop: the running hash ends at its next piece, queued ones are dropped."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
