"""Ingest plans: a store's coordinates plus blocks of responses read one file at a time.

Every adapter builds an :class:`IngestPlan`. :meth:`IngestPlan.load` reads the blocks
into memory; :meth:`IngestPlan.write` streams them into a zarr store one block (one
session file) at a time, so peak memory is bounded by one block, not by the whole
subject. The write goes into a ``.<name>.partial`` folder beside the target, records the
finished blocks, and is renamed into place only when complete: an interrupted ingest that
is run again with the same inputs resumes from the blocks already written, and one run
with different inputs starts clean.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger, progress
from neuroalign.exceptions import DataFormatError
from neuroalign.store import COMPLETE_MARKER, atomic_dir, check_store
from neuroalign.store._schema import RESPONSE_VAR

__all__ = ["Block", "IngestPlan"]

log = get_logger(__name__)

_PROGRESS_FILE = ".neuroalign-ingest.json"
_ZARR_FORMAT = 2
_TARGET_CHUNK_BYTES = 32 * 2**20


@dataclass
class Block:
    """Rows ``start:stop`` of the sample dim, read by ``read()`` (shape (stop-start, ...))."""

    key: str
    start: int
    stop: int
    read: Callable[[], np.ndarray]


@dataclass
class IngestPlan:
    """What an adapter will produce: coordinates and attrs now, responses block by block.

    Attributes
    ----------
    skeleton : xr.Dataset
        The store without ``responses``: all coordinates, attrs and per-neuroid variables.
    dims : tuple of str
        Dims of ``responses``.
    blocks : list of Block
        Contiguous blocks along the first dim covering it exactly.
    fingerprint : dict
        What identifies the inputs (files, sizes, mtimes, options); an interrupted write
        resumes only when the fingerprint is unchanged.
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
        """Read every block into memory and return the validated store."""
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
        """Stream the blocks into a zarr store at ``out`` (atomic, resumable).

        Parameters
        ----------
        out : path-like
            Target store folder (conventionally ``*.zarr``).
        overwrite : bool
            Replace an existing store at ``out`` (only once the new one is complete).

        Returns
        -------
        Path
            ``out``, openable with :func:`neuroalign.store.open_store`.
        """
        import dask
        import dask.array as da

        out = Path(out)
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out}: already exists. Pass overwrite=True to replace it.")
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        fp = _hash(self.fingerprint, self.shape)
        done: list[str] = []
        state_path = partial / _PROGRESS_FILE
        if partial.exists():
            try:
                state = json.loads(state_path.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("fingerprint") == fp:
                done = list(state.get("done", []))
                log.info("resuming ingest into %s: %d of %d blocks already written",
                         out, len(done), len(self.blocks))
            else:
                log.info("discarding a stale partial ingest at %s", partial)
                shutil.rmtree(partial)
        chunks = self._chunks()
        if not partial.exists():
            ds = self.skeleton.assign(
                {RESPONSE_VAR: (self.dims, da.zeros(self.shape, chunks=chunks, dtype=np.float32))}
            )
            check_store(ds)
            ds.to_zarr(partial, mode="w", compute=False, zarr_format=_ZARR_FORMAT,
                       consolidated=True, encoding={RESPONSE_VAR: {"chunks": chunks}})
            _write_json(state_path, {"fingerprint": fp, "done": []})
        first = self.dims[0]
        for block in progress(self.blocks, desc=self.desc, unit="file"):
            if block.key in done:
                continue
            arr = self._check_block(block, block.read())
            region = xr.Dataset({RESPONSE_VAR: (self.dims, arr)})
            region.to_zarr(partial, region={first: slice(block.start, block.stop)},
                           zarr_format=_ZARR_FORMAT)
            del arr, region
            done.append(block.key)
            _write_json(state_path, {"fingerprint": fp, "done": done})
        # Final layout as save_store writes it: chunked along neuroid only, every chunk
        # holding all presentations (what the store operations expect). The rechunk reads
        # one neuroid slab (all sessions) at a time, each no bigger than ~32 MiB.
        with atomic_dir(out, overwrite=overwrite) as tmp:
            src = xr.open_zarr(partial, chunks={}, consolidated=True, zarr_format=_ZARR_FORMAT)
            for name in src.variables:
                src.variables[name].encoding = {}
            final_chunks = (self.shape[0], chunks[1], *self.shape[2:])
            final = src.chunk({first: -1, self.dims[1]: chunks[1]})
            with dask.config.set(scheduler="synchronous"):  # one neuroid slab at a time
                final.to_zarr(tmp, mode="w", zarr_format=_ZARR_FORMAT, consolidated=True,
                              encoding={RESPONSE_VAR: {"chunks": final_chunks}})
            (tmp / COMPLETE_MARKER).write_text("complete\n")
        shutil.rmtree(partial, ignore_errors=True)
        log.info("ingested %s (%s)", out, dict(zip(self.dims, self.shape, strict=True)))
        return out


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def _hash(fingerprint: dict, shape) -> str:
    text = json.dumps({"fp": fingerprint, "shape": list(shape)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def describe_files(paths, root: Path | None = None, *, hash_limit: int = 64 * 2**20) -> dict[str, dict]:
    """``{path: {"size": bytes, "sha256": hex}}`` of input files, for a store's ``source``.

    Files up to ``hash_limit`` bytes get a SHA-256; larger ones (beta files of a whole
    session) only their size, so describing the inputs never reads gigabytes twice.
    """
    out: dict[str, dict] = {}
    for p in paths:
        p = Path(p)
        size = p.stat().st_size
        entry: dict = {"size": int(size)}
        if size <= hash_limit:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(2**20), b""):
                    h.update(chunk)
            entry["sha256"] = h.hexdigest()
        key = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)
        out[key] = entry
    return out


def file_fingerprint(paths) -> dict[str, list]:
    """``{path: [size, mtime_ns]}`` of the input files (cheap; used to resume safely)."""
    out = {}
    for p in paths:
        st = Path(p).stat()
        out[str(p)] = [st.st_size, st.st_mtime_ns]
    return out


