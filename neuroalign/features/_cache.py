"""Zarr feature cache: batch-by-batch atomic writes, resume, and keyed hits.

One extraction at a time writes a cache (the cache path's lock, held by
:func:`neuroalign.features.extract` from the cache check to the rename); a cache is a
neuroalign output folder (marker kind ``"feature cache"``), so ``overwrite=True`` replaces
only an earlier cache, never a folder of the user's; and every write error (a full disk)
is raised, naming the batch, with the finished batches kept for the rerun to resume from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._files import (
    check_target,
    clean_stale,
    read_marker,
    recover,
    replace_dir,
    target_lock,
    write_marker,
)
from neuroalign._logging import get_logger
from neuroalign.exceptions import (
    CacheMismatchError,
    DataFormatError,
    OutputExistsError,
    StoreCorruptError,
)
from neuroalign.store._io import COMPLETE_MARKER, read_zarr, write_manifest

__all__ = ["FeatureCache", "cache_key", "COMPLETE_MARKER"]

log = get_logger(__name__)

_ZARR_FORMAT = 2
#: Marker kind of a finished cache.
KIND = "feature cache"


def cache_key(fields: dict[str, Any]) -> str:
    """Hash of the cache-key fields (model, weights, layers, transform, stimuli, ...)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _write_json_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True, default=str))
    os.replace(tmp, path)


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    parts = [f"{k}: cached {old.get(k)!r}, requested {new.get(k)!r}" for k in keys
             if json.dumps(old.get(k), sort_keys=True, default=str)
             != json.dumps(new.get(k), sort_keys=True, default=str)]
    return "; ".join(parts) or "(unknown fields)"


class FeatureCache:
    """A features zarr at ``path``, built in ``.<name>.partial`` beside it.

    The partial folder holds the preallocated arrays, the cache key and the list of
    finished batches (replaced atomically after each batch's chunks are written). When all
    batches are done it gets its manifest, is marked complete and renamed to ``path``.
    Hold :meth:`locked` around the whole use (check, resume, writes, finalise).
    """

    def __init__(self, path: str | os.PathLike, fields: dict[str, Any], *, overwrite: bool = False):
        self.path = Path(path)
        self.fields = json.loads(json.dumps(fields, sort_keys=True, default=str))
        self.key = cache_key(self.fields)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        self.state_file = self.path.with_name(f".{self.path.name}.partial-state.json")
        self.overwrite = overwrite
        self.done: set[int] = set()
        self.initialised = False
        self._arrays: dict[str, Any] | None = None  # zarr arrays, opened once per run
        self.batch_size: int | None = None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cache path's write lock (a second extraction into it is refused)."""
        with target_lock(self.path, what=KIND):
            recover(self.path)
            yield

    # -- state --------------------------------------------------------------------------
    def _check_key(self, state: dict[str, Any], what: str) -> None:
        if state.get("cache_key") != self.key:
            old = state.get("cache_fields")
            old = json.loads(old) if isinstance(old, str) else (old or {})
            raise CacheMismatchError(
                f"cache={str(self.path)!r}: {what} was written for other settings "
                f"({_diff(old, self.fields)}). Pass overwrite=True (CLI: --overwrite) to "
                "replace it, or another cache path."
            )

    def hit(self) -> bool:
        """``True`` when a complete cache with this key exists (a mismatch raises).

        Raises :class:`OutputExistsError` when ``path`` is not a feature cache neuroalign
        wrote (it is never replaced, not even with ``overwrite=True``).
        """
        if not self.path.exists() and not self.path.is_symlink():
            return False
        if self.overwrite:  # refuse what is not ours now, before the model runs
            check_target(self.path, overwrite=True, kind=KIND)
            return False
        info = read_marker(self.path)
        if info is None or info.get("invalid") or self.path.is_symlink():
            check_target(self.path, overwrite=True, kind=KIND)  # raises the named error
            return False  # an empty folder: fill it
        if not info.get("legacy") and info.get("kind") != KIND:
            check_target(self.path, overwrite=True, kind=KIND)
        if not (self.path / COMPLETE_MARKER).exists():
            raise DataFormatError(
                f"{self.path}: exists but is not a complete neuroalign feature cache. "
                "Pass overwrite=True to replace it, or another cache path."
            )
        attrs_path = self.path / ".zattrs"
        attrs = json.loads(attrs_path.read_text()) if attrs_path.exists() else {}
        if "cache_key" not in attrs:
            raise DataFormatError(
                f"{self.path}: not a neuroalign feature cache (no 'cache_key' attribute). "
                "Pass overwrite=True to replace it, or another cache path."
            )
        self._check_key(attrs, "the cache")
        return True

    def open(self) -> xr.Dataset:
        try:
            return read_zarr(self.path, what=KIND)
        except StoreCorruptError as err:
            raise StoreCorruptError(
                f"{err} (A feature cache: pass overwrite=True, or --overwrite, to compute it "
                "again.)"
            ) from None

    def _partial_is_ours(self) -> bool:
        if not self.partial.exists():
            return True
        if self.partial.is_symlink() or not self.partial.is_dir():
            return False
        # the zarr group neuroalign preallocates (no marker inside: zarr would warn about it
        # on every batch write)
        names = {p.name for p in self.partial.iterdir()}
        return not names or ".zgroup" in names

    def resume(self) -> set[int]:
        """Finished batch starts of an interrupted run with the same key (else start clean)."""
        try:
            state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        except (OSError, ValueError):
            state = {}
        if not self._partial_is_ours():
            raise OutputExistsError(
                f"{self.partial}: exists and neuroalign did not write it (it is where the "
                f"cache {self.path.name!r} is built); it is left untouched. Move it away, or "
                "choose another cache path."
            )
        if self.partial.exists() and state.get("initialised") and not self.overwrite:
            self._check_key(state, "an interrupted extraction")
            self.done = set(state.get("done", []))
            self.batch_size = int(state["batch_size"])
            self.initialised = True
            log.info("resuming %s: %d batches already written", self.path, len(self.done))
        else:  # nothing usable: start clean
            shutil.rmtree(self.partial, ignore_errors=True)
            self.state_file.unlink(missing_ok=True)
        return self.done

    # -- writing ------------------------------------------------------------------------
    def _failed(self, err: OSError, what: str) -> OSError:
        """``err`` again, with the cache, what failed and how to resume in its message."""
        new = OSError(err.errno, f"{self.path}: {what} failed ({err.strerror or err}). The "
                      f"batches written so far are kept in {self.partial}; run the same "
                      "extraction again to resume.")
        new.filename = getattr(err, "filename", None)
        return new

    def initialise(self, template: xr.Dataset, chunk: int) -> None:
        """Write coordinates and preallocate (lazily, no data) the feature arrays."""
        import dask.array as da

        self._arrays = None

        try:
            self.partial.mkdir(parents=True, exist_ok=True)
            lazy = xr.Dataset(coords=template.coords, attrs=template.attrs)
            encoding = {}
            for name, var in template.data_vars.items():
                chunks = (chunk, *var.shape[1:])
                lazy[name] = (var.dims, da.zeros(var.shape, dtype=var.dtype, chunks=chunks), var.attrs)
                encoding[name] = {"chunks": chunks}
            lazy.to_zarr(self.partial, mode="w", compute=False, zarr_format=_ZARR_FORMAT,
                         consolidated=False, encoding=encoding)
            self.initialised = True
            self.batch_size = int(chunk)
            self._save_progress()
        except OSError as err:
            raise self._failed(err, "preparing the feature cache") from err

    def _save_progress(self) -> None:
        _write_json_atomic({"cache_key": self.key, "cache_fields": self.fields,
                            "done": sorted(self.done), "initialised": self.initialised,
                            "batch_size": self.batch_size},
                           self.state_file)

    def write(self, start: int, stop: int, arrays: dict[str, np.ndarray], dims: dict[str, tuple]) -> None:
        """Write one batch into its region, then record it as done.

        Raises
        ------
        OSError
            The write failed (e.g. ``ENOSPC``, a full disk); the message names the cache and
            the batch. The batch is not recorded, so a rerun writes it again.
        """
        try:
            if self._arrays is None:  # one open per run, not one xarray to_zarr per batch
                import zarr

                group = zarr.open_group(str(self.partial), mode="r+", zarr_format=_ZARR_FORMAT)
                self._arrays = {name: group[name] for name in arrays}
            for name, arr in arrays.items():
                target = self._arrays[name]
                if target.shape[1:] != arr.shape[1:] or target.dtype != arr.dtype:
                    raise ValueError(
                        f"{self.path}: the features of layer {name!r} have shape "
                        f"{arr.shape[1:]!r} and dtype {arr.dtype} in stimuli {start}..{stop - 1}, "
                        f"but the cache holds {target.shape[1:]!r} {target.dtype}. Expected the "
                        "same model and layers for every batch."
                    )
                target[start:stop] = arr
            self.done.add(start)
            self._save_progress()
        except OSError as err:
            self.done.discard(start)
            raise self._failed(err, f"writing the features of stimuli {start}..{stop - 1}") from err

    def finalise(self, attrs: dict[str, Any]) -> xr.Dataset:
        """Write attrs, consolidate, write the manifest, mark complete, rename into place."""
        import zarr

        attrs = {**attrs, "cache_key": self.key,
                 "cache_fields": json.dumps(self.fields, sort_keys=True)}
        try:
            group = zarr.open_group(str(self.partial), mode="r+", zarr_format=_ZARR_FORMAT)
            group.attrs.update(json.loads(json.dumps(attrs, default=str)))
            zarr.consolidate_metadata(str(self.partial))
            write_manifest(self.partial)
            write_marker(self.partial, KIND, entries=os.listdir(self.partial))
            replace_dir(self.partial, self.path, overwrite=self.overwrite, kind=KIND)
        except OSError as err:
            if isinstance(err, OutputExistsError):
                raise
            raise self._failed(err, "finishing the feature cache") from err
        self.state_file.unlink(missing_ok=True)
        clean_stale(self.path)
        return self.open()
