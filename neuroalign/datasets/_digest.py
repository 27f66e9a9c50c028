"""SHA-256 of input files for the ingest's content-keyed resume, without a second read.

:meth:`~neuroalign.datasets._ingest.IngestPlan.write` records the SHA-256 of every file a
block was read from. A reader that reads the whole file anyway hashes it in the same pass
(:class:`StreamDigest`, fed the pieces it reads; or :class:`BackgroundDigest`, a thread
reading the file beside a library that reads it) and hands the digest over with
:func:`record_digest`; the write uses it when the file's stat is unchanged, and hashes the
file itself otherwise. Hashing runs on a second thread: ``hashlib`` and file reads release
the GIL.
"""

from __future__ import annotations

import hashlib
import os
import threading
from contextvars import ContextVar
from pathlib import Path

__all__ = ["wants_digests", "record_digest", "file_stat", "BackgroundDigest", "StreamDigest",
           "content_digest"]

_DIGEST_PIECE = 8 * 2**20

# digests that readers computed while reading a block: {path: (stat key, sha256)}; set by
# IngestPlan.write around each block's read (None elsewhere, e.g. in IngestPlan.load)
_SEEN_DIGESTS: ContextVar[dict | None] = ContextVar("neuroalign_ingest_digests", default=None)


# files already being hashed ahead of their block by IngestPlan.write: {path: BackgroundDigest}
_AHEAD: ContextVar[dict | None] = ContextVar("neuroalign_ingest_ahead", default=None)


def wants_digests(path=None) -> bool:
    """True while :meth:`IngestPlan.write` reads a block and keeps the files' digests
    (and ``path``, if given, is not already being hashed ahead of its block)."""
    if _SEEN_DIGESTS.get() is None:
        return False
    ahead = _AHEAD.get()
    return path is None or not ahead or str(path) not in ahead


def record_digest(path, stat_key: tuple, digest: str) -> None:
    """Hand the SHA-256 of ``path`` (as it was at ``stat_key``) to the running write.

    A reader that read the whole file anyway calls this so the write does not hash it a
    second time; the write uses it only if the file's stat is still ``stat_key``.
    """
    seen = _SEEN_DIGESTS.get()
    if seen is not None:
        seen[str(path)] = (tuple(stat_key), digest)


def file_stat(path) -> tuple:
    """(size, mtime_ns, ctime_ns, inode, device): what changes when a file is replaced."""
    st = Path(path).stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class BackgroundDigest:
    """SHA-256 of a file computed on a second thread while the caller reads it.

    ``hashlib`` and file reads release the GIL, so the hash overlaps the caller's work.
    :meth:`finish` waits and calls :func:`record_digest` if the file did not change
    meanwhile; :meth:`cancel` stops the thread early (on errors).
    """

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.stat = file_stat(self.path)
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="neuroalign-digest", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            digest = _sha256_file(self.path, self._stop)
            if not self._stop.is_set():
                self._digest = digest
        except BaseException as err:  # reported by finish()
            self._error = err

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> tuple[tuple, str | None]:
        """Wait; (stat when the hash started, the digest or None if cancelled)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.stat, self._digest

    def finish(self) -> str | None:
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._digest is not None and file_stat(self.path) == self.stat:
            record_digest(self.path, self.stat, self._digest)
        return self._digest

    def __enter__(self) -> BackgroundDigest:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.cancel()


class StreamDigest:
    """SHA-256 of a file that a reader scans whole, fed its pieces in file order.

    The hashing runs on a second thread (``hashlib`` releases the GIL), so it overlaps
    the reader's own work on each piece; :meth:`feed` returns the future to wait for
    before the piece's buffer is reused. :meth:`finish` calls :func:`record_digest` if
    the whole file was fed and did not change meanwhile.
    """

    def __init__(self, path) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.path = Path(path)
        self.stat = file_stat(self.path)
        self._hash = hashlib.sha256()
        self._pos = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="neuroalign-digest")

    def feed(self, offset: int, view):
        if offset != self._pos:
            raise ValueError(f"StreamDigest of {self.path}: piece at byte {offset}, expected "
                             f"the next one at {self._pos}.")
        self._pos += len(view)
        return self._pool.submit(self._hash.update, view)

    def finish(self) -> str | None:
        self._pool.shutdown(wait=True)
        if self._pos != self.stat[0] or file_stat(self.path) != self.stat:
            return None
        digest = self._hash.hexdigest()
        record_digest(self.path, self.stat, digest)
        return digest

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _sha256_file(path, stop: threading.Event | None = None) -> str:
    """SHA-256 of a file, read in pieces; the kernel is asked to read the next pieces
    ahead (``POSIX_FADV_WILLNEED``) so the disk works while the CPU hashes."""
    h = hashlib.sha256()
    buf = bytearray(_DIGEST_PIECE)
    view = memoryview(buf)
    advise = getattr(os, "posix_fadvise", None)
    with open(path, "rb", buffering=0) as f:
        fd, pos = f.fileno(), 0
        while stop is None or not stop.is_set():
            if advise is not None:
                advise(fd, pos + _DIGEST_PIECE, 2 * _DIGEST_PIECE, os.POSIX_FADV_WILLNEED)
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            pos += n
    return h.hexdigest()


def content_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the whole file at ``path``."""
    return _sha256_file(path)
