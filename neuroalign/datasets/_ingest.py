"""Ingest plans: a store's coordinates plus blocks of responses read one file at a time.

Every adapter builds an :class:`IngestPlan`. :meth:`IngestPlan.load` reads the blocks
into memory; :meth:`IngestPlan.write` streams them into a zarr store one block (one
session file) at a time, so peak memory is bounded by one block, not by the whole
subject.

A write holds the target's lock (:func:`neuroalign._files.atomic_dir`) from start to end:
a second writer to the same target gets :class:`~neuroalign.exceptions.TargetLockedError`
naming the holder, a lock left by a killed process is taken over, and a folder at the
target that neuroalign did not write is never replaced. Blocks go into a
``.<name>.partial`` folder beside the target, covered by the same lock, that records the
finished blocks; the store is renamed into place only when complete.

Resuming is keyed on content, never on file sizes and times alone. When a block is
written, the SHA-256 of each file it was read from is recorded with it (the file is read
for the block anyway, so hashing it costs one extra sequential read, from the page cache,
at ~2 GB/s); a rerun re-hashes those files and keeps a finished block only when every
digest is unchanged, so a file replaced by one of the same size with its old mtime
(``cp -p``, ``rsync -t``) is read again. The coordinates (built from the small files:
design, masks, metadata) decide what each block reads, so they are hashed as a whole and
any change to them starts clean; the finished store takes its coordinates and attrs from
the current plan, its responses from the partial store.
A full hash rather than a sampled one: a sample misses a change between its probes, and
a single changed beta block is exactly the kind of change that must not be missed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._files import atomic_dir, is_neuroalign_dir, write_marker
from neuroalign._logging import get_logger, progress
from neuroalign.exceptions import DataFormatError, OutputExistsError
from neuroalign.store import check_store, write_manifest
from neuroalign.store._schema import RESPONSE_VAR

__all__ = ["Block", "IngestPlan", "content_digest", "describe_files", "file_fingerprint"]

log = get_logger(__name__)

_PROGRESS_FILE = ".neuroalign-ingest.json"
_STATE_VERSION = 2
_ZARR_FORMAT = 2
_TARGET_CHUNK_BYTES = 32 * 2**20


@dataclass
class Block:
    """Rows ``start:stop`` of the sample dim, read by ``read()`` (shape (stop-start, ...)).

    ``files`` are the files ``read()`` reads; their content digests decide whether a
    block written by an interrupted ingest can be kept.
    """

    key: str
    start: int
    stop: int
    read: Callable[[], np.ndarray]
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

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(self.skeleton.sizes[d]) for d in self.dims)

    def _check_block(self, block: Block, arr: np.ndarray) -> np.ndarray:
        expected = (block.stop - block.start, *self.shape[1:])
        if arr.shape != expected:
            raise DataFormatError(
                f"{block.key}: read an array of shape {arr.shape!r}, expected {expected!r}."
            )
        return np.asarray(arr, dtype=np.float32)

    def load(self) -> xr.Dataset:
        """Read every block into memory and return the validated store.

        Returns
        -------
        xr.Dataset
            The store, checked with :func:`neuroalign.store.check_store`.
        """
        out = np.empty(self.shape, dtype=np.float32)
        for block in progress(self.blocks, desc=self.desc, unit="file"):
            out[block.start : block.stop] = self._check_block(block, block.read())
        ds = self.skeleton.assign({RESPONSE_VAR: (self.dims, out)})
        return check_store(ds)

    # -- streaming -------------------------------------------------------------------------
    def _chunks(self) -> tuple[int, ...]:
        """Chunks of the partial store: one block of rows, and the final neuroid width."""
        sizes = [b.stop - b.start for b in self.blocks] or [1]
        rows = sizes[0]
        if any(b.start % rows for b in self.blocks):
            rows = max(1, int(np.gcd.reduce(np.asarray(sizes, dtype=np.int64))))
        rest = int(np.prod(self.shape[2:])) if len(self.shape) > 2 else 1
        n_neuroid = self.shape[1]
        # The final store keeps all rows per chunk. Its neuroid width makes a chunk no bigger
        # than ~32 MiB and no bigger than one block (so the rechunk never holds more than
        # about one session's worth of values).
        per = _TARGET_CHUNK_BYTES // max(4 * self.shape[0] * rest, 1)
        per = min(per, -(-max(sizes) * n_neuroid // max(self.shape[0], 1)))
        per = max(1, min(n_neuroid, per))
        return (rows, per, *self.shape[2:])

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
            self._finalize(partial, tmp)
            shutil.rmtree(partial)  # still under the lock: no other writer can be resuming it
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
            ds.to_zarr(partial, mode="w", compute=False, zarr_format=_ZARR_FORMAT,
                       consolidated=True, encoding={RESPONSE_VAR: {"chunks": chunks}})
            write_marker(partial, "partial ingest")
        _write_json(state_path, {"fingerprint": fp, "done": done})
        first = self.dims[0]
        for block in progress(self.blocks, desc=self.desc, unit="file"):
            if block.key in done:
                continue
            before = {str(p): digests.stat(p) for p in block.files}
            recorded = {str(p): digests(p) for p in block.files}
            arr = self._check_block(block, block.read())
            for p in block.files:  # a file replaced while it was read: its digest is not its data
                if digests.stat(p) != before[str(p)]:
                    raise DataFormatError(
                        f"{p}: changed while it was being read (size, time or inode differ). "
                        "Run the ingest again once the file is complete."
                    )
            region = xr.Dataset({RESPONSE_VAR: (self.dims, arr)})
            region.to_zarr(partial, region={first: slice(block.start, block.stop)},
                           zarr_format=_ZARR_FORMAT)
            del arr, region
            done[block.key] = recorded
            _write_json(state_path, {"fingerprint": fp, "done": done})

    def _finalize(self, partial: Path, tmp: Path) -> None:
        """Rechunk the partial store into ``tmp``: all presentations per chunk, as
        save_store writes it; one neuroid slab (all sessions, <= ~32 MiB) at a time."""
        import dask

        chunks = self._chunks()
        first = self.dims[0]
        src = xr.open_zarr(partial, chunks={}, consolidated=True, zarr_format=_ZARR_FORMAT)
        # responses from the partial store; coordinates, variables and attrs from this plan
        # (identical variables by the fingerprint; attrs such as file digests may be newer)
        final = self.skeleton.assign({RESPONSE_VAR: (self.dims, src[RESPONSE_VAR].data)})
        final_chunks = (self.shape[0], chunks[1], *self.shape[2:])
        final = final.chunk({first: -1, self.dims[1]: chunks[1]})
        with dask.config.set(scheduler="synchronous"):
            final.to_zarr(tmp, mode="w", zarr_format=_ZARR_FORMAT, consolidated=True,
                          encoding={RESPONSE_VAR: {"chunks": final_chunks}})
        write_manifest(tmp)  # chunk sizes and checksums, then the completion marker


class _Digests:
    """SHA-256 of files, computed at most once per file per ingest (keyed on its stat)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple, str]] = {}

    @staticmethod
    def stat(path) -> tuple:
        st = Path(path).stat()
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)

    def __call__(self, path) -> str:
        key = self.stat(path)
        hit = self._cache.get(str(path))
        if hit is not None and hit[0] == key:
            return hit[1]
        digest = content_digest(path)
        self._cache[str(path)] = (key, digest)
        return digest


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


def content_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the whole file at ``path``, read in 8 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(8 * 2**20), b""):
            h.update(piece)
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
