"""Safe writes: one writer per target, atomic folders, and never touching what is not ours.

Every folder neuroalign writes (stores, results, caches, demo and recipe outputs) carries a
marker file, :data:`OUTPUT_MARKER`: JSON naming the tool, the *kind* of output (``"store"``,
``"fit output"``, ``"simulation"`` ...) and, for folders written in one go, the entries
neuroalign put in it. The rules that follow from it:

- :func:`target_lock` gives one process at a time the right to write a target. The lock is
  an OS file lock (``filelock``) on ``.NAME.lock`` beside the target, so a lock left by a
  killed process is released by the kernel and taken over by the next writer; the holder's
  pid, host and start time are recorded beside it (``.NAME.lock.owner``) so that a second
  writer's error names the holder. Neither is ever written through a symbolic link
  planted at its name (as another user can in a shared folder such as ``/tmp``): a link at
  the lock file is refused, one at the record is replaced by a new file, and the link's
  target is never touched.
- :class:`atomic_dir` builds a folder beside the target and renames it into place. An
  existing target is replaced only when *all* of these hold (:func:`check_target`):
  ``overwrite=True``; it carries a neuroalign marker; the marker's kind is the kind being
  written (a fit output never replaces a simulation or a store); and it holds nothing but
  the files neuroalign listed, at any depth (a file the user added anywhere in an output
  folder keeps it from being replaced, and is named). The listing is the manifest
  (:data:`MANIFEST`) of each zarr folder, which lists every chunk, and the marker's
  ``files`` for every other file; outputs of earlier versions, whose marker lists only
  top-level names, are checked against those and their manifests, and any other file in
  their subfolders keeps them. A folder without a marker (the user's own files) is never
  deleted, nor is a file or a symbolic link. Temporary folders of earlier, killed writes to the same
  target (``.NAME.tmp-XXXXXXXX`` and ``.NAME.old-XXXXXXXX``, neuroalign's names) are
  removed after the next successful write: every writer holds the target's lock while its
  temporary folder exists, so one found while holding the lock belongs to a dead writer.
- :func:`claim_dir` is for working folders that neuroalign fills over several runs (the
  demo's folder): it accepts a missing or empty folder, or one that already carries a
  marker of the same kind, and refuses any other non-empty folder. It never deletes.
- A single file goes into an output folder with :func:`add_file` (recorded in the
  folder's marker, so that the folder's next overwrite accepts and replaces it), or stands
  alone (an HTML report at a path of the user's choice) with :func:`write_file`. A file
  carries no marker beside it: its writer tells its own files by their content (the
  report's stamp, with a hash of the page). Either replaces an existing file only with
  ``overwrite=True`` and only when neuroalign wrote it; a file of the user's, a folder or a
  link at that name is never replaced.

The marker is trusted: neuroalign cannot tell its own marker from a copied or hand-made
one, so a folder carrying a valid marker of the right kind (and only the listed entries)
is treated as neuroalign's output and replaced on ``overwrite=True``. Do not copy
``.neuroalign`` files into folders of your own. An unreadable marker is not trusted.
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
from collections.abc import Iterable, Iterator
from pathlib import Path

from neuroalign._logging import get_logger
from neuroalign._validation import format_list
from neuroalign._version import __version__
from neuroalign.exceptions import OutputExistsError, TargetLockedError

__all__ = [
    "OUTPUT_MARKER",
    "MANIFEST",
    "LEGACY_MARKERS",
    "target_lock",
    "atomic_dir",
    "claim_dir",
    "check_target",
    "unlisted_files",
    "replace_dir",
    "recover",
    "clean_stale",
    "add_file",
    "write_file",
    "is_neuroalign_dir",
    "read_marker",
    "write_marker",
]

log = get_logger(__name__)

#: Marker file in every folder neuroalign writes (JSON: tool, version, kind, created, entries).
OUTPUT_MARKER = ".neuroalign"
#: Markers written by earlier versions (stores and feature caches), accepted as proof of
#: ownership for the kinds in :data:`LEGACY_KINDS`.
LEGACY_MARKERS = (".neuroalign-complete",)
LEGACY_KINDS = ("store", "feature cache")
_MARKERS = (OUTPUT_MARKER, *LEGACY_MARKERS)
#: Sizes and checksums of every file of a zarr folder (written by
#: :func:`neuroalign.store.write_manifest`); it also tells :func:`check_target` which files
#: of that folder neuroalign wrote.
MANIFEST = ".neuroalign-manifest.json"


def _abs(target: str | os.PathLike) -> Path:
    """``target`` as an absolute, normalised path (``.`` and ``..`` resolved, links kept)."""
    path = Path(os.path.abspath(os.fspath(target)))
    if not path.name:
        raise OutputExistsError(f"{path}: the file-system root cannot be an output path.")
    return path


def _lock_paths(target: Path) -> tuple[Path, Path]:
    return (target.with_name(f".{target.name}.lock"),
            target.with_name(f".{target.name}.lock.owner"))


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _holder(owner: Path) -> str:
    try:  # read without following a link planted at the record's name
        with os.fdopen(os.open(owner, os.O_RDONLY | _NOFOLLOW)) as f:
            info = json.loads(f.read(4096))
        return (f"process {info.get('pid')} on {info.get('host')} "
                f"(since {info.get('started')})")
    except (OSError, ValueError, AttributeError):
        return "process"


def _write_record(path: Path, data: str | bytes) -> None:
    """Write ``path`` (a lock record, a marker, a file added to an output) as a new file
    renamed over whatever is there, never through a link.

    The file is created under a new name (``O_EXCL | O_NOFOLLOW``) and renamed onto
    ``path``: a symbolic link planted at ``path`` is replaced, its target is not touched.
    A folder at ``path`` is an :class:`OutputExistsError` (it is left as it is).
    """
    if path.is_dir() and not path.is_symlink():
        raise OutputExistsError(
            f"{path}: exists and is a folder, not neuroalign's record; it is left untouched. "
            "Move it away, or write to another path."
        )
    if path.is_symlink():
        log.warning("%s: is a symbolic link (to %s); replaced by neuroalign's record, its "
                    "target left untouched", path, os.readlink(path))
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        Another live process (or another writer in this process) holds the lock; the
        message names it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with target_lock(d / "store.zarr", what="store"):
    ...     pass
    """
    from filelock import FileLock, Timeout

    target = _abs(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path, owner = _lock_paths(target)
    # thread_local=False + is_singleton=False: a second writer in this process opens its
    # own descriptor, and flock() refuses it just as it refuses another process
    lock = FileLock(str(lock_path), timeout=timeout, thread_local=False)
    linked = OutputExistsError(
        f"{lock_path}: is a symbolic link, not neuroalign's lock file; it is left untouched. "
        f"Remove it, or write this {what} to another path."
    )
    if lock_path.is_symlink():
        raise linked
    try:
        lock.acquire()
    except Timeout:
        raise TargetLockedError(
            f"{target}: another neuroalign {_holder(owner)} is writing this {what}. Wait for "
            "it to finish, or write to another path."
        ) from None
    except OSError as err:  # filelock opens with O_NOFOLLOW: a link planted meanwhile
        if lock_path.is_symlink():
            raise linked from err
        raise
    written = False
    try:
        if os.path.lexists(owner) and not owner.is_symlink():  # a holder died: take over
            log.info("%s: taking over a stale lock (%s)", target, _holder(owner))
        # never write_text: it follows a link planted at the record's name
        _write_record(owner, json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }))
        written = True
        yield
    finally:
        if written:
            with contextlib.suppress(OSError):
                owner.unlink()
        # the (empty) lock file stays: unlinking it would let a waiting writer lock a
        # deleted inode while a third one locks a new file
        lock.release()


def read_marker(path: str | os.PathLike) -> dict | None:
    """The ownership marker of folder ``path``.

    Returns ``None`` when ``path`` is not a folder or carries no marker, ``{"kind": None,
    "legacy": True}`` for a marker of an earlier version, and ``{"invalid": True}`` when
    the marker cannot be read as neuroalign's JSON.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    marker = path / OUTPUT_MARKER
    if marker.is_file():
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            return {"invalid": True}
        if not isinstance(info, dict) or info.get("tool") != "neuroalign" or \
                not isinstance(info.get("kind"), str):
            return {"invalid": True}
        return info
    if any((path / m).is_file() for m in LEGACY_MARKERS):
        return {"kind": None, "legacy": True}
    return None


def is_neuroalign_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder carrying a (readable) neuroalign marker."""
    info = read_marker(path)
    return info is not None and not info.get("invalid")


def _manifest_files(path: str) -> Iterable[str] | None:
    """The files a manifest lists (relative to its folder); ``None`` when it is unreadable."""
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | _NOFOLLOW)) as f:
            files = json.load(f)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, dict) else None


def unlisted_files(root: str | os.PathLike, listed: Iterable[str] = ()) -> list[str]:
    """Files under ``root`` that neither ``listed`` nor a manifest accounts for.

    A folder holding a readable :data:`MANIFEST` (a zarr folder neuroalign wrote) accounts
    for the files its manifest lists and for its own markers; every other file must be in
    ``listed`` (paths relative to ``root``, ``/``-separated). ``root``'s own markers are
    never listed. Anything that is not a folder counts as a file; symbolic links are not
    followed. Cheap for stores of many chunks: one directory read per folder and one read
    of each manifest, no ``stat`` and no read of any other file.

    Returns
    -------
    list of str
        The unaccounted files, sorted, as ``/``-separated paths relative to ``root``.
    """
    known = set(_MARKERS)
    found: list[str] = []
    stack = [(os.fspath(root), "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            entries = list(it)
        for e in entries:
            if e.name == MANIFEST and e.is_file(follow_symlinks=False):
                files = _manifest_files(e.path)
                if files is not None:
                    known.update(prefix + rel for rel in files)
                    known.update(prefix + m for m in (MANIFEST, *_MARKERS))
            if e.is_dir(follow_symlinks=False):
                stack.append((e.path, f"{prefix}{e.name}/"))
            else:
                found.append(prefix + e.name)
    listed = set(listed)
    return sorted(f for f in found if f not in known and f not in listed)


def write_marker(folder: str | os.PathLike, kind: str, *,
                 entries: Iterable[str] | None = None) -> None:
    """Write the ownership marker into ``folder``.

    ``entries``: the names neuroalign wrote into the folder (for a folder written in one
    go; call it last, once everything is written); ``None`` for a working folder that fills
    over several runs. With ``entries``, the marker also lists as ``files`` every file
    under ``folder`` that no manifest lists (:func:`unlisted_files`), so that
    :func:`check_target` can tell any file added later, at any depth.
    """
    info = {"tool": "neuroalign", "version": __version__, "kind": kind,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if entries is not None:
        info["entries"] = sorted(set(entries) - set(_MARKERS))
        info["files"] = unlisted_files(folder)
    _write_record(Path(folder) / OUTPUT_MARKER, json.dumps(info) + "\n")


def _a(kind: str) -> str:
    """``kind`` with its indefinite article."""
    return f"{'an' if kind[:1].lower() in 'aeio' or kind.startswith('RSA') else 'a'} {kind}"


def _kind_of(info: dict) -> str:
    return "neuroalign output (earlier version)" if info.get("legacy") else str(info["kind"])


def _same_kind(info: dict, kind: str) -> bool:
    return kind in LEGACY_KINDS if info.get("legacy") else info.get("kind") == kind


def _not_ours(target: Path, what: str) -> OutputExistsError:
    return OutputExistsError(
        f"{target}: exists and holds files that neuroalign did not write (no "
        f"{OUTPUT_MARKER!r} marker); it is left untouched. Choose another path for this "
        f"{what}, or move those files away."
    )


def check_target(target: str | os.PathLike, *, overwrite: bool = False,
                 kind: str = "output folder",
                 inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """Raise unless ``target`` may be written (created, or replaced) as a ``kind``.

    Call it before long work so that a refused output fails at once; :class:`atomic_dir`
    checks again, under the lock, just before it replaces anything.

    Parameters
    ----------
    target : path-like
    overwrite : bool
        Whether an existing neuroalign output of the same kind may be replaced.
    kind : str
        What is about to be written.
    inputs : iterable of path-like
        Paths this run reads; ``target`` must not be one of them nor a folder holding one.

    Raises
    ------
    OutputExistsError
        ``target`` is a file or a link; a non-empty folder without a neuroalign marker (or
        with an unreadable one); a neuroalign output of another kind; an output of this kind
        without ``overwrite``; one holding files, at any depth, that neuroalign did not
        write (or list) there, named; or it is (or holds) one of ``inputs``.
    """
    target = _abs(target)
    for inp in inputs:
        if inp is None:
            continue
        src = Path(os.path.realpath(inp))
        if src == Path(os.path.realpath(target)) or Path(os.path.realpath(target)) in src.parents:
            raise OutputExistsError(
                f"{target}: is (or holds) this run's input {os.fspath(inp)!r}; writing the "
                f"{kind} there would replace it. Choose another output folder."
            )
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise OutputExistsError(
            f"{target}: exists and is not a folder neuroalign wrote (a file or a link); it is "
            f"left untouched. Choose another path for this {kind}."
        )
    names = {p.name for p in target.iterdir()}
    if not names:
        return  # an empty folder holds nothing to lose
    info = read_marker(target)
    if info is None:
        raise _not_ours(target, kind)
    if info.get("invalid"):
        raise OutputExistsError(
            f"{target}: its {OUTPUT_MARKER!r} marker is not neuroalign's (unreadable); the "
            f"folder is left untouched. Choose another path for this {kind}."
        )
    if not _same_kind(info, kind):
        raise OutputExistsError(
            f"{target}: holds {_a(_kind_of(info))} written by neuroalign, not {_a(kind)}; it is "
            f"left untouched. Choose another path for this {kind}."
        )
    if not overwrite:
        raise OutputExistsError(
            f"{target}: already exists ({_a(kind)} written by neuroalign). Pass overwrite=True "
            "(--overwrite) to replace it."
        )
    if isinstance(info.get("entries"), list):
        top = names - set(info["entries"]) - set(_MARKERS)  # a folder of the user's, even empty
        full = isinstance(info.get("files"), list)  # earlier versions listed top-level names
        deep = unlisted_files(target, info["files"] if full else info["entries"])
        foreign = sorted(top.union(f for f in deep if f.split("/", 1)[0] not in top))
        if foreign:
            raise OutputExistsError(
                f"{target}: {_a(kind)} written by neuroalign, but it also holds "
                f"{format_list(foreign, limit=5)}, which neuroalign did not write there"
                + ("" if full else " (or did not record: outputs of earlier versions list only "
                   "their top-level names)")
                + "; it is left untouched. Move those away, or choose another path."
            )


def replace_dir(src: str | os.PathLike, target: str | os.PathLike, *, overwrite: bool = False,
                kind: str = "output folder") -> None:
    """Rename the finished folder ``src`` to ``target``, replacing an old output there.

    The caller holds ``target``'s :func:`target_lock` and has written the marker into
    ``src``. ``target`` is checked with :func:`check_target` first; the old output is
    renamed aside, ``src`` renamed into place (the old one is put back if that fails), and
    only then is the old one deleted.
    """
    target = _abs(target)
    check_target(target, overwrite=overwrite, kind=kind)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    try:
        os.replace(src, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_STALE = r"^\.{name}\.(tmp|old)-[0-9a-f]{{8}}$"


def clean_stale(target: str | os.PathLike, keep: Path | None = None) -> None:
    """Remove temporary folders that earlier, killed writes to ``target`` left.

    Call it holding ``target``'s lock: a live writer would hold it, so every temporary
    folder of this target found now (named ``.NAME.tmp-XXXXXXXX`` or ``.NAME.old-XXXXXXXX``
    by neuroalign) belongs to a writer that died. Nothing else is touched.
    """
    target = _abs(target)
    pattern = re.compile(_STALE.format(name=re.escape(target.name)))
    for p in target.parent.iterdir():
        if p != keep and pattern.match(p.name) and p.is_dir() and not p.is_symlink():
            log.info("removing %s, left by an interrupted write", p)
            shutil.rmtree(p, ignore_errors=True)


def recover(target: str | os.PathLike) -> None:
    """Put back an output that a write killed between its two renames left aside.

    :func:`replace_dir` renames the old output to ``.NAME.old-XXXXXXXX`` and then the new
    one into place; a writer killed between the two leaves no ``target``. Call this holding
    ``target``'s lock: when ``target`` is missing and one such folder exists, it is renamed
    back (instead of being removed as a stale temporary).
    """
    target = _abs(target)
    if target.exists() or target.is_symlink() or not target.parent.is_dir():
        return
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.old-[0-9a-f]{{8}}$")
    old = [p for p in target.parent.iterdir()
           if pattern.match(p.name) and p.is_dir() and not p.is_symlink()]
    if len(old) == 1:
        log.info("%s: restoring the output an interrupted write left at %s", target, old[0])
        os.replace(old[0], target)


class atomic_dir:
    """Build a folder beside ``target`` and rename it into place, under the target's lock.

    On success the new folder (with the ownership marker listing what it holds) replaces
    ``target``; an existing ``target`` is replaced only as :func:`check_target` allows
    (``overwrite=True``, a neuroalign output of the same kind, nothing foreign in it). On
    error the temporary folder is deleted and ``target`` is untouched, so a crash never
    leaves a half-written folder at ``target``. After a successful rename, temporary
    folders of earlier killed writes to the same target are removed.

    The caller creates the temporary folder (``tmp.mkdir()``, or a writer such as
    ``to_zarr`` that creates it).

    Parameters
    ----------
    target : path-like
    overwrite : bool
        Replace an existing neuroalign folder of the same kind at ``target``.
    kind : str
        What is written (recorded in the marker and named in errors).

    Raises
    ------
    OutputExistsError
        On entry, when ``target`` may not be written (see :func:`check_target`).
    TargetLockedError
        Another process is writing ``target``.

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
        self.target = _abs(target)
        self.overwrite = overwrite
        self.kind = kind
        self.tmp = self.target.with_name(f".{self.target.name}.tmp-{uuid.uuid4().hex[:8]}")
        self._lock: contextlib.AbstractContextManager | None = None

    def __enter__(self) -> Path:
        check_target(self.target, overwrite=self.overwrite, kind=self.kind)  # fail before locking
        self._lock = target_lock(self.target, what=self.kind)
        self._lock.__enter__()
        try:
            recover(self.target)
            check_target(self.target, overwrite=self.overwrite, kind=self.kind)
        except BaseException:
            self._release()
            raise
        return self.tmp

    def _release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__(None, None, None)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                return
            try:
                self.tmp.mkdir(parents=True, exist_ok=True)
                write_marker(self.tmp, self.kind, entries=os.listdir(self.tmp))
                replace_dir(self.tmp, self.target, overwrite=self.overwrite, kind=self.kind)
            except BaseException:
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise
            clean_stale(self.target, keep=self.tmp)
        finally:
            self._release()


def claim_dir(path: str | os.PathLike, *, kind: str = "output folder") -> Path:
    """Make ``path`` a neuroalign working folder, or refuse if it holds the user's files.

    A missing or empty folder is created and marked; a folder that carries the marker of
    the same kind is accepted as is (reruns reuse what it holds); any other non-empty folder
    raises :class:`~neuroalign.exceptions.OutputExistsError` and is left untouched. Nothing
    is ever deleted.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputExistsError(
            f"{path}: exists and is not a folder (a file or a link); it is left untouched. "
            f"Choose another path for this {kind}."
        )
    if path.is_dir() and any(path.iterdir()):
        info = read_marker(path)
        if info is None:
            raise OutputExistsError(
                f"{path}: exists and holds files that neuroalign did not write (no "
                f"{OUTPUT_MARKER!r} marker); it is left untouched. Choose another path for "
                f"this {kind}, or an empty folder."
            )
        if info.get("invalid") or info.get("legacy") or info.get("kind") != kind:
            raise OutputExistsError(
                f"{path}: holds "
                f"{'a folder with an unreadable marker' if info.get('invalid') else _a(_kind_of(info))}"
                f", not {_a(kind)}; it is left untouched. Choose another path for this {kind}."
            )
        return path
    path.mkdir(parents=True, exist_ok=True)
    write_marker(path, kind)
    return path


def add_file(folder: str | os.PathLike, name: str, data: str | bytes, *,
             kind: str = "output folder", overwrite: bool = True) -> Path:
    """Write ``name`` into the neuroalign output ``folder`` (a ``kind``) after the fact.

    The file is written beside its final name and renamed into place, under the folder's
    lock, and recorded in the folder's marker so that a later ``overwrite`` still
    recognises every entry as neuroalign's. An existing ``name`` is replaced only when the
    marker lists it (neuroalign wrote it) and ``overwrite`` is true.
    """
    folder = _abs(folder)
    with target_lock(folder, what=kind):
        info = read_marker(folder)
        if info is None or info.get("invalid") or not _same_kind(info, kind):
            raise OutputExistsError(
                f"{folder}: not {_a(kind)} written by neuroalign; {name!r} is not written there."
            )
        dest = folder / name
        if os.path.lexists(dest) and isinstance(info.get("entries"), list) \
                and name not in info["entries"]:
            raise OutputExistsError(
                f"{dest}: exists and neuroalign did not write it; it is left untouched. "
                "Choose another name, or move that file away."
            )
        if os.path.lexists(dest) and not overwrite:
            raise OutputExistsError(
                f"{dest}: already exists (written by neuroalign into {_a(kind)}). Pass "
                "overwrite=True (--overwrite) to replace it."
            )
        _write_record(dest, data)
        if isinstance(info.get("entries"), list) and name not in info["entries"]:
            info["entries"] = sorted([*info["entries"], name])
            if isinstance(info.get("files"), list):
                info["files"] = sorted({*info["files"], name})
            _write_record(folder / OUTPUT_MARKER, json.dumps(info) + "\n")
    return dest


def write_file(path: str | os.PathLike, data: str | bytes, *, owned, overwrite: bool = False,
               kind: str = "file") -> Path:
    """Write the single file ``path`` (not inside an output folder), atomically, under its lock.

    The file is written beside its final name and renamed into place, never through a link.
    An existing ``path`` is replaced only when ``overwrite`` is true and ``owned(path)``
    says that neuroalign wrote it: a file has no marker beside it, so its writer tells its
    own files by their content (an HTML report by its stamp). A file of the user's, a
    folder or a symbolic link at ``path`` is never replaced.

    Parameters
    ----------
    path : path-like
    data : str or bytes
    owned : callable
        ``owned(path) -> bool``: whether the existing file at ``path`` is one neuroalign
        wrote (unchanged since).
    overwrite : bool
        Replace an existing file that neuroalign wrote.
    kind : str
        What the file is, for the error messages.

    Returns
    -------
    Path
        ``path``, absolute.

    Raises
    ------
    OutputExistsError
        ``path`` is a folder or a link, a file neuroalign did not write, or one it wrote
        while ``overwrite`` is false.
    TargetLockedError
        Another process is writing ``path``.
    """
    path = _abs(path)
    with target_lock(path, what=kind):
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise OutputExistsError(
                f"{path}: exists and is not a file neuroalign wrote (a folder or a link); it is "
                f"left untouched. Choose another path for this {kind}."
            )
        if path.exists():
            if not owned(path):
                raise OutputExistsError(
                    f"{path}: exists and is not {_a(kind)} neuroalign wrote (or it was changed "
                    f"since); it is left untouched, even with overwrite. Choose another path "
                    f"for this {kind}, or move that file away."
                )
            if not overwrite:
                raise OutputExistsError(
                    f"{path}: already exists ({_a(kind)} written by neuroalign). Pass "
                    "overwrite=True (--overwrite) to replace it."
                )
        _write_record(path, data)
    return path
