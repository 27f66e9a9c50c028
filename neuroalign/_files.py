"""Safe writes: one writer per target, atomic folders, and never touching what is not ours.

Every folder neuroalign writes (stores, results, caches, demo and recipe outputs) carries a
marker file, :data:`OUTPUT_MARKER`. The rules that follow from it:

- :func:`target_lock` gives one process at a time the right to write a target. The lock is
  an OS file lock (``filelock``) on ``.NAME.lock`` beside the target, so a lock left by a
  killed process is released by the kernel and taken over by the next writer; the holder's
  pid, host and start time are recorded beside it so that a second writer's error names
  the holder.
- :class:`atomic_dir` builds a folder beside the target and renames it into place. An
  existing target is replaced only with ``overwrite=True`` *and* when it carries a
  neuroalign marker; a folder without one (the user's own files) is never deleted.
  Temporary folders of earlier, killed writes to the same target (``.NAME.tmp-XXXXXXXX``)
  are removed after the next successful write: every writer holds the target's lock while
  its temporary folder exists, so one found while holding the lock belongs to a dead writer.
- :func:`claim_dir` is for working folders that neuroalign fills over several runs (the
  demo's folder, a recipe's simulation folder): it accepts a missing or empty folder, or
  one that already carries the marker, and refuses any other non-empty folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from neuroalign._logging import get_logger
from neuroalign._version import __version__
from neuroalign.exceptions import OutputExistsError, TargetLockedError

__all__ = [
    "OUTPUT_MARKER",
    "LEGACY_MARKERS",
    "target_lock",
    "atomic_dir",
    "claim_dir",
    "is_neuroalign_dir",
    "write_marker",
]

log = get_logger(__name__)

#: Marker file in every folder neuroalign writes (JSON: tool, version, kind, created).
OUTPUT_MARKER = ".neuroalign"
#: Markers written by earlier versions, accepted as proof of ownership.
LEGACY_MARKERS = (".neuroalign-complete",)


def _lock_paths(target: Path) -> tuple[Path, Path]:
    return (target.with_name(f".{target.name}.lock"),
            target.with_name(f".{target.name}.lock.owner"))


def _holder(owner: Path) -> str:
    try:
        info = json.loads(owner.read_text())
        return (f"process {info.get('pid')} on {info.get('host')} "
                f"(since {info.get('started')})")
    except (OSError, ValueError):
        return "another process"


@contextlib.contextmanager
def target_lock(target: str | os.PathLike, *, what: str = "target",
                timeout: float = 0.0) -> Iterator[None]:
    """Hold the exclusive write lock of ``target`` for the duration of the block.

    Parameters
    ----------
    target : path-like
        The file or folder about to be written. The lock file ``.NAME.lock`` lies beside it.
    what : str
        What the target is, for the error message (``"store"``, ``"output folder"``).
    timeout : float
        Seconds to wait for the lock; 0 fails at once.

    Raises
    ------
    TargetLockedError
        Another live process holds the lock; the message names it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with target_lock(d / "store.zarr", what="store"):
    ...     pass
    """
    from filelock import FileLock, Timeout

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path, owner = _lock_paths(target)
    lock = FileLock(str(lock_path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise TargetLockedError(
            f"{target}: another neuroalign {_holder(owner)} is writing this {what}. Wait for "
            "it to finish, or write to another path."
        ) from None
    try:
        if owner.exists():  # the previous holder died without cleaning up: take over
            log.info("%s: taking over a stale lock (%s)", target, _holder(owner))
        owner.write_text(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }))
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        # the (empty) lock file stays: unlinking it would let a waiting writer lock a
        # deleted inode while a third one locks a new file
        lock.release()


def is_neuroalign_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder carrying a neuroalign marker."""
    path = Path(path)
    return path.is_dir() and any((path / m).is_file() for m in (OUTPUT_MARKER, *LEGACY_MARKERS))


def write_marker(folder: str | os.PathLike, kind: str) -> None:
    """Write the ownership marker into ``folder``."""
    (Path(folder) / OUTPUT_MARKER).write_text(json.dumps(
        {"tool": "neuroalign", "version": __version__, "kind": kind,
         "created": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


def _refuse(target: Path, what: str, overwrite: bool) -> None:
    """Raise unless an existing ``target`` may be replaced."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise OutputExistsError(
            f"{target}: exists and is not a folder neuroalign wrote; it is left untouched. "
            f"Choose another path for this {what}."
        )
    if not any(target.iterdir()):
        return  # an empty folder holds nothing to lose
    if not is_neuroalign_dir(target):
        raise OutputExistsError(
            f"{target}: exists and holds files that neuroalign did not write (no "
            f"{OUTPUT_MARKER!r} marker); it is left untouched. Choose another path for this "
            f"{what}, or move those files away."
        )
    if not overwrite:
        raise OutputExistsError(
            f"{target}: already exists (a {what} written by neuroalign). Pass overwrite=True "
            "(--overwrite) to replace it."
        )


class atomic_dir:
    """Build a folder beside ``target`` and rename it into place, under the target's lock.

    On success the new folder (with the ownership marker) replaces ``target``; an existing
    ``target`` is replaced only with ``overwrite=True`` and only when neuroalign wrote it
    (:data:`OUTPUT_MARKER`), never a folder of the user's. On error the temporary folder is
    deleted and ``target`` is untouched, so a crash never leaves a half-written folder at
    ``target``. After a successful rename, temporary folders of earlier killed writes to the
    same target are removed.

    The caller creates the temporary folder (``tmp.mkdir()``, or a writer such as
    ``to_zarr`` that creates it).

    Parameters
    ----------
    target : path-like
    overwrite : bool
        Replace an existing neuroalign folder at ``target``.
    kind : str
        What is written (recorded in the marker and named in errors).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_dir(d / "out", kind="results") as tmp:
    ...     tmp.mkdir()
    ...     _ = (tmp / "a.txt").write_text("hello")
    >>> sorted(p.name for p in (d / "out").iterdir())
    ['.neuroalign', 'a.txt']
    """

    def __init__(self, target: str | os.PathLike, *, overwrite: bool = False,
                 kind: str = "output folder") -> None:
        self.target = Path(target)
        self.overwrite = overwrite
        self.kind = kind
        self.tmp = self.target.with_name(f".{self.target.name}.tmp-{uuid.uuid4().hex[:8]}")
        self._lock: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> Path:
        self._lock = target_lock(self.target, what=self.kind)
        self._lock.__enter__()
        try:
            _refuse(self.target, self.kind, self.overwrite)
        except BaseException:
            self._release(None)
            raise
        return self.tmp

    def _release(self, exc_type) -> None:
        if self._lock is not None:
            self._lock.__exit__(exc_type, None, None)
            self._lock = None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                return
            if not (self.tmp / OUTPUT_MARKER).exists():
                write_marker(self.tmp, self.kind)
            old = None
            if self.target.exists():
                _refuse(self.target, self.kind, self.overwrite)  # checked again under the lock
                old = self.target.with_name(f".{self.target.name}.old-{uuid.uuid4().hex[:8]}")
                os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            self._clean_stale()
        finally:
            self._release(exc_type)

    def _clean_stale(self) -> None:
        """Remove temporary folders that earlier, killed writes to this target left.

        Called under the target's lock: a live writer would hold it, so every temporary
        folder of this target found now belongs to a writer that died.
        """
        pattern = re.compile(rf"^\.{re.escape(self.target.name)}\.(tmp|old)-[0-9a-f]{{8}}$")
        for p in self.target.parent.glob(f".{self.target.name}.*-*"):
            if p != self.tmp and p.is_dir() and not p.is_symlink() and pattern.match(p.name):
                log.info("removing %s, left by an interrupted write", p)
                shutil.rmtree(p, ignore_errors=True)


def claim_dir(path: str | os.PathLike, *, kind: str = "output folder") -> Path:
    """Make ``path`` a neuroalign working folder, or refuse if it holds the user's files.

    A missing or empty folder is created and marked; a folder that carries the marker is
    accepted as is (reruns reuse what it holds); any other non-empty folder raises
    :class:`~neuroalign.exceptions.OutputExistsError` and is left untouched.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(
            f"{path}: exists and is not a folder; it is left untouched. Choose another path "
            f"for this {kind}."
        )
    if path.is_dir() and any(path.iterdir()):
        if not is_neuroalign_dir(path):
            raise OutputExistsError(
                f"{path}: exists and holds files that neuroalign did not write (no "
                f"{OUTPUT_MARKER!r} marker); it is left untouched. Choose another path for "
                f"this {kind}, or an empty folder."
            )
        return path
    path.mkdir(parents=True, exist_ok=True)
    write_marker(path, kind)
    return path
