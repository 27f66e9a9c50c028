"""Ingest plans: a store's coordinates plus blocks of responses read one file at a time.

Every adapter builds an :class:`IngestPlan`. :meth:`IngestPlan.load` reads the blocks
into memory; :meth:`IngestPlan.write` streams them into a zarr store one block (one
session file) at a time, reading the next block while the current one is written, so
peak memory is bounded by two blocks, not by the whole subject. The per-byte work of a
block (cast, layout, ``pwrite``, SHA-256) is spread over the cores, chunk by chunk
(:mod:`~neuroalign.datasets._chunkfiles`); the store's bytes and digests are those of a
single thread.

The store is written directly in its final layout: chunks that hold every presentation
of a slab of neuroids (as :func:`~neuroalign.store.save_store` writes), stored
uncompressed. An uncompressed zarr chunk is the C-order bytes of its values, so the rows
of one block are one contiguous byte range of every chunk file, at a known offset; each
block is written straight into place (``pwrite``), in any order and again after an
interruption, and no rechunking pass or second copy of the store is ever made. (The
betas compress to about half with blosc-zstd, but at 25-60 MB/s per core, well below
disk speed; a store can be recompressed later with :func:`~neuroalign.store.save_store`.)
The SHA-256 of each chunk file for the store's manifest is computed from the bytes as
they are written, so the finished store is never read back to be hashed (except the
chunk files a resumed ingest did not write whole, in order).

A write holds the target's lock (:func:`neuroalign._files.atomic_dir`) from start to end:
a second writer to the same target gets :class:`~neuroalign.exceptions.TargetLockedError`
naming the holder, a lock left by a killed process is taken over, and a folder at the
target that neuroalign did not write is never replaced. Blocks go into a
``.<name>.partial`` folder beside the target, covered by the same lock, that records the
finished blocks; it is renamed into place only when complete.

Resuming is keyed on content, never on file sizes and times alone. For every block
written, the SHA-256 of each file it was read from is recorded; a rerun re-hashes those
files and keeps a finished block only when every digest is unchanged, so a file replaced
by one of the same size with its old mtime (``cp -p``, ``rsync -t``) is read again. The
hashing is off the critical path (:mod:`~neuroalign.datasets._digest`): files are hashed
on a background thread after their block is written, a block enters the resume state
once its digests are in, an interrupted ingest finishes the digests of the blocks it
wrote before it exits, and a complete one drops those still pending. A file that changes
(size, times or inode) while its block is read is an error; one that changes after that
but before it is hashed keeps its block out of the resume state. The coordinates (built
from the small files: design, masks, metadata) decide what each block reads, so they are
hashed as a whole and any change to them starts clean; the finished store takes its
coordinates from the partial store (identical by that hash) and its attrs from the
current plan.
A full hash rather than a sampled one: a sample misses a change between its probes, and
a single changed beta block is exactly the kind of change that must not be missed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._files import atomic_dir, is_neuroalign_dir, write_marker
from neuroalign._logging import get_logger, progress
from neuroalign.datasets._chunkfiles import ChunkFiles as _ChunkFiles
from neuroalign.datasets._chunkfiles import Workers
from neuroalign.datasets._digest import DigestQueue, content_digest, file_stat
from neuroalign.exceptions import DataFormatError, OutputExistsError
from neuroalign.store import check_store, write_manifest
from neuroalign.store._io import _ZARR_FORMAT
from neuroalign.store._schema import CHUNK_BYTES as _TARGET_CHUNK_BYTES  # tests lower it
from neuroalign.store._schema import RESPONSE_VAR

__all__ = ["Block", "IngestPlan", "Scaled", "content_digest", "describe_files", "file_fingerprint"]

log = get_logger(__name__)

_PROGRESS_FILE = ".neuroalign-ingest.json"
_STATE_VERSION = 3  # 3: final layout written in place, uncompressed


@dataclass
class Scaled:
    """Values stored as integers, and their divisor: the block's values are
    ``values.astype(float32) / divisor`` (float32 arithmetic, as ``arr /= divisor``);
    with ``divisor=None``, values of another float dtype (e.g. big-endian) that are cast
    exactly: ``values.astype(float32)``.

    A :class:`Block` may read these instead of float32: half the memory for int16 data,
    no pass over the values in the reader, and the streamed write divides or casts while
    it lays the values out in the store's chunks (one pass instead of a cast, a division
    and a copy).
    """

    values: np.ndarray  # (rows, ...) any strides
    divisor: np.float32 | None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    def into(self, out: np.ndarray, cols: slice = slice(None)) -> None:
        """Write ``values[:, cols] / divisor`` (float32) into ``out``."""
        if self.divisor is None:
            np.copyto(out, self.values[:, cols], casting="same_kind")
        else:
            np.divide(self.values[:, cols], np.float32(self.divisor), out=out, dtype=np.float32)

    def to_float32(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        self.into(out)
        return out


@dataclass
class Block:
    """Rows ``start:stop`` of the sample dim, read by ``read()`` (shape (stop-start, ...)).

    ``files`` are the files ``read()`` reads; their content digests decide whether a
    block written by an interrupted ingest can be kept. ``read()`` returns float32 values,
    or :class:`Scaled` integers.
    """

    key: str
    start: int
    stop: int
    read: Callable[[], np.ndarray | Scaled]
    files: Sequence[str | os.PathLike] = ()


@dataclass
class IngestPlan:
    """What an adapter will produce: coordinates and attrs now, responses block by block.

    A dataclass; its fields are its parameters.

    Parameters
    ----------
    skeleton : xr.Dataset
        The store without ``responses``: all coordinates, attrs and per-neuroid variables.
    dims : tuple of str
        Dims of ``responses``.
    blocks : list of Block
        Contiguous blocks along the first dim covering it exactly.
    fingerprint : dict
        What identifies the inputs (options, the files read and their sizes); an
        interrupted write resumes only when it, the skeleton's content and the content of
        each finished block's files are unchanged.
    desc : str
        Label of the progress bar.
    """

    skeleton: xr.Dataset
    dims: tuple[str, ...]
    blocks: list[Block]
    fingerprint: dict = field(default_factory=dict)
    desc: str = "ingest"
    _files: _ChunkFiles | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(self.skeleton.sizes[d]) for d in self.dims)

    def _check_block(self, block: Block, arr: np.ndarray | Scaled) -> np.ndarray | Scaled:
        expected = (block.stop - block.start, *self.shape[1:])
        if arr.shape != expected:
            raise DataFormatError(
                f"{block.key}: read an array of shape {arr.shape!r}, expected {expected!r}."
            )
        return arr if isinstance(arr, Scaled) else np.asarray(arr, dtype=np.float32)

    def load(self) -> xr.Dataset:
        """Read every block into memory and return the validated store.

        Returns
        -------
        xr.Dataset
            The store, checked with :func:`neuroalign.store.check_store`.
        """
        out = np.empty(self.shape, dtype=np.float32)
        for block in progress(self.blocks, desc=self.desc, unit="file"):
            arr = self._check_block(block, block.read())
            if isinstance(arr, Scaled):
                arr.into(out[block.start : block.stop])
            else:
                out[block.start : block.stop] = arr
        ds = self.skeleton.assign({RESPONSE_VAR: (self.dims, out)})
        return check_store(ds)

    # -- streaming -------------------------------------------------------------------------
    def _chunks(self) -> tuple[int, ...]:
        """Chunks of the store: every presentation, and a slab of neuroids.

        The neuroid width makes a chunk no bigger than ~32 MiB, and no bigger than one
        block (a chunk never holds more values than one session file gives).
        """
        sizes = [b.stop - b.start for b in self.blocks] or [1]
        rest = int(np.prod(self.shape[2:])) if len(self.shape) > 2 else 1
        n_rows, n_neuroid = self.shape[0], self.shape[1]
        per = _TARGET_CHUNK_BYTES // max(4 * n_rows * rest, 1)
        per = min(per, -(-max(sizes) * n_neuroid // max(n_rows, 1)))
        per = max(1, min(n_neuroid, per))
        return (max(n_rows, 1), per, *self.shape[2:])

    def write(self, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Stream the blocks into a zarr store at ``out`` (locked, atomic, resumable).

        Parameters
        ----------
        out : path-like
            Target store folder (conventionally ``*.zarr``).
        overwrite : bool
            Replace an existing store at ``out`` that neuroalign wrote (only once the new
            one is complete). A folder that neuroalign did not write is never replaced.

        Returns
        -------
        Path
            ``out``, openable with :func:`neuroalign.store.open_store`.

        Raises
        ------
        OutputExistsError
            ``out`` exists (without ``overwrite``), or holds files neuroalign did not write.
        TargetLockedError
            Another live process is writing ``out``.
        """
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(out, overwrite=overwrite, kind="store") as tmp:
            partial = out.with_name(f".{out.name}.partial")
            self._write_partial(partial)
            self._finalize(partial, tmp)  # renames partial to tmp, under the lock
        log.info("ingested %s (%s)", out, dict(zip(self.dims, self.shape, strict=True)))
        return out

    def _fingerprint(self, chunks) -> str:
        # the skeleton's variables decide what each block reads (voxels, trials): any change
        # restarts; its attrs do not (they are taken from the current plan at the end)
        return _hash({"fp": self.fingerprint, "shape": list(self.shape), "chunks": list(chunks),
                      "skeleton": _hash_variables(self.skeleton), "version": _STATE_VERSION})

    def _write_partial(self, partial: Path) -> None:
        import dask.array as da

        chunks = self._chunks()
        fp = self._fingerprint(chunks)
        state_path = partial / _PROGRESS_FILE
        done: dict[str, dict[str, str]] = {}
        digests = _Digests()
        if partial.exists():
            if not (is_neuroalign_dir(partial) or state_path.is_file()):
                raise OutputExistsError(
                    f"{partial}: exists and holds files that neuroalign did not write; it is "
                    "left untouched. Move it away to ingest into "
                    f"{partial.with_name(partial.name[1:-len('.partial')])}."
                )
            try:
                state = json.loads(state_path.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("fingerprint") == fp and isinstance(state.get("done"), dict):
                done = _still_valid(state["done"], self.blocks, digests)
                log.info("resuming ingest into %s: %d of %d blocks already written",
                         partial, len(done), len(self.blocks))
            else:
                log.info("discarding a stale partial ingest at %s", partial)
                shutil.rmtree(partial)
        if not partial.exists():
            ds = self.skeleton.assign(
                {RESPONSE_VAR: (self.dims, da.zeros(self.shape, chunks=chunks, dtype=np.float32))}
            )
            check_store(ds)
            # metadata and every other variable now; the responses' chunks by _ChunkFiles
            ds.to_zarr(partial, mode="w", compute=False, zarr_format=_ZARR_FORMAT,
                       consolidated=True,
                       encoding={RESPONSE_VAR: {"chunks": chunks, "compressors": None}})
            write_marker(partial, "partial ingest")
        _write_json(state_path, {"fingerprint": fp, "done": done})
        self._files = files = _ChunkFiles(partial / RESPONSE_VAR, self.shape, chunks)
        hashes = DigestQueue()
        # the next block is read (on a worker) while this one is written (by the workers,
        # chunk by chunk): two blocks in memory at most
        waiting: list[tuple[str, dict]] = []  # written blocks, digests pending
        complete = False
        workers = Workers()
        try:
            files.workers = workers if workers.n > 1 else None
            todo = [b for b in self.blocks if b.key not in done]
            blocks = workers.read_ahead(self._read_block, todo)
            for block in progress(todo, desc=self.desc, unit="file"):
                arr, before = next(blocks)[1]
                files.write_rows(block.start, arr)
                del arr  # before the next read starts
                waiting.append((block.key, {p: (st, hashes.submit(p, st)) for p, st in before.items()}))
                if _take_digests(waiting, done, wait=False):
                    _write_json(state_path, {"fingerprint": fp, "done": done})
            complete = True
        finally:
            try:
                workers.close()  # a block read ahead ends first
                hashes.close()  # the low-priority thread stops; what it finished is kept
                # interrupted: finish the digests of the blocks written (here, at this
                # thread's priority), so a resume keeps them; complete: pending digests
                # would only serve a resume, drop them
                if not complete and _take_digests(waiting, done, wait=True, hashes=hashes):
                    _write_json(state_path, {"fingerprint": fp, "done": done})
            finally:
                hashes.close()

    def _read_block(self, block: Block) -> tuple[np.ndarray | Scaled, dict[str, tuple]]:
        """Read one block; a file that changed while it was read is an error.

        Returns the values and the stat of each of its files before the read.
        """
        before = {str(p): file_stat(p) for p in block.files}
        arr = self._check_block(block, block.read())
        for p in block.files:  # a file replaced while it was read: the block is not its data
            if file_stat(p) != before[str(p)]:
                raise DataFormatError(
                    f"{p}: changed while it was being read (size, time or inode differ). "
                    "Run the ingest again once the file is complete."
                )
        return arr, before

    def _finalize(self, partial: Path, tmp: Path) -> None:
        """Give the finished partial store the current plan's attrs and rename it to ``tmp``.

        Its responses are complete in their final chunks already (see :class:`_ChunkFiles`);
        coordinates and variables are those it was created with, identical to this plan's
        by the fingerprint. Only attrs (e.g. input file digests) may be newer.
        """
        import zarr
        from xarray.backends.zarr import encode_zarr_attr_value

        group = zarr.open_group(str(partial), mode="r+", zarr_format=_ZARR_FORMAT)
        group.attrs.put({k: encode_zarr_attr_value(v) for k, v in self.skeleton.attrs.items()})
        with warnings.catch_warnings():  # our marker and state files are not zarr's
            warnings.filterwarnings("ignore", message=r"Object at \S+ is not recognized")
            zarr.consolidate_metadata(str(partial), zarr_format=_ZARR_FORMAT)
        os.replace(partial, tmp)
        (tmp / _PROGRESS_FILE).unlink()
        write_marker(tmp, "store")
        # chunk sizes and checksums, then the completion marker; the digests of the chunk
        # files written whole by this run come from the bytes written, the rest are read
        write_manifest(tmp, known=self._files.digests() if self._files is not None else None)


class _Digests:
    """SHA-256 of files, computed at most once per file per ingest (keyed on its stat)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple, str]] = {}

    stat = staticmethod(file_stat)

    def __call__(self, path) -> str:
        key = file_stat(path)
        hit = self._cache.get(str(path))
        if hit is not None and hit[0] == key:
            return hit[1]
        digest = content_digest(path)
        self._cache[str(path)] = (key, digest)
        return digest


def _take_digests(waiting: list, done: dict, *, wait: bool, hashes: DigestQueue | None = None) -> bool:
    """Move written blocks whose digests are in from ``waiting`` to ``done`` (with
    ``wait``: all of them, the missing digests computed now by ``hashes.result_now``); a
    block whose file changed after its read (digest None) is left out. True when ``done``
    changed.

    ``waiting`` holds ``(key, {path: (stat, future digest)})``."""
    changed = False
    for key, pending in list(waiting):
        if not wait and not all(f.done() for _, f in pending.values()):
            continue
        waiting.remove((key, pending))
        digests = {p: (hashes.result_now(p, st) if wait else f.result()) for p, (st, f) in pending.items()}
        if all(d is not None for d in digests.values()):
            done[key] = digests
            changed = True
        else:
            log.info("%s: changed after it was read; its block will be read again on resume", key)
    return changed


def _still_valid(done: dict, blocks: Sequence[Block], digests: _Digests) -> dict[str, dict[str, str]]:
    """The finished blocks whose files still have the recorded content."""
    by_key = {b.key: b for b in blocks}
    keep = {}
    for key, recorded in done.items():
        block = by_key.get(key)
        if block is None or not isinstance(recorded, dict):
            continue
        files = {str(p) for p in block.files}
        if set(recorded) != files:
            continue
        changed = [p for p in sorted(files) if not Path(p).is_file() or digests(p) != recorded[p]]
        if changed:
            log.info("%s: content changed since it was written; reading it again", changed[0])
            continue
        keep[key] = recorded
    return keep


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _hash(obj) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _hash_variables(ds: xr.Dataset) -> str:
    """SHA-256 of every variable of ``ds`` (name, dims, dtype, values, attrs)."""
    h = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        var = ds.variables[name]
        values = np.asarray(var.values)
        h.update(json.dumps([name, list(var.dims), str(values.dtype), list(values.shape),
                             var.attrs], sort_keys=True, default=str).encode())
        if values.dtype.kind in "OUS":
            h.update(json.dumps([str(v) for v in values.ravel()]).encode())
        else:
            h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def describe_files(paths, root: Path | None = None, *, hash_limit: int = 64 * 2**20) -> dict[str, dict]:
    """``{path: {"size": bytes, "sha256": hex}}`` of input files, for a store's ``source``.

    Files up to ``hash_limit`` bytes get a SHA-256; larger ones (beta files of a whole
    session) only their size, so describing the inputs never reads gigabytes twice (the
    ingest's resume check hashes those, block by block).
    """
    out: dict[str, dict] = {}
    for p in paths:
        p = Path(p)
        size = p.stat().st_size
        entry: dict = {"size": int(size)}
        if size <= hash_limit:
            entry["sha256"] = content_digest(p)
        key = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)
        out[key] = entry
    return out


def file_fingerprint(paths) -> dict[str, int]:
    """``{path: size}`` of the input files: which inputs a plan reads.

    Not a content check: the content of every file a block reads is hashed when the block
    is written and checked again before a resumed ingest keeps it (:meth:`IngestPlan.write`).
    """
    return {str(p): int(Path(p).stat().st_size) for p in paths}
