"""Zarr feature cache: batch-by-batch atomic writes, resume, and keyed hits."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign.exceptions import CacheMismatchError, DataFormatError

__all__ = ["FeatureCache", "cache_key", "COMPLETE_MARKER"]

log = get_logger(__name__)

COMPLETE_MARKER = ".neuroalign-complete"
_ZARR_FORMAT = 2


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
    batches are done it is marked complete and renamed to ``path``.
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
        self.batch_size: int | None = None

    # -- state --------------------------------------------------------------------------
    def _check_key(self, state: dict[str, Any], what: str) -> None:
        if state.get("cache_key") != self.key:
            old = state.get("cache_fields")
            old = json.loads(old) if isinstance(old, str) else (old or {})
            raise CacheMismatchError(
                f"cache={str(self.path)!r}: {what} was written for other settings "
                f"({_diff(old, self.fields)}). Pass overwrite=True to replace it, or another "
                "cache path."
            )

    def hit(self) -> bool:
        """``True`` when a complete cache with this key exists (a mismatch raises)."""
        if self.path.exists():
            if self.overwrite:
                return False
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
        return False

    def open(self) -> xr.Dataset:
        ds = xr.open_zarr(self.path, consolidated=True, zarr_format=_ZARR_FORMAT)
        for name in ds.variables:
            ds.variables[name].encoding = {}
        return ds

    def resume(self) -> set[int]:
        """Finished batch starts of an interrupted run with the same key (else start clean)."""
        state = json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
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
    def initialise(self, template: xr.Dataset, chunk: int) -> None:
        """Write coordinates and preallocate (lazily, no data) the feature arrays."""
        import dask.array as da

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

    def _save_progress(self) -> None:
        _write_json_atomic({"cache_key": self.key, "cache_fields": self.fields,
                            "done": sorted(self.done), "initialised": self.initialised,
                            "batch_size": self.batch_size},
                           self.state_file)

    def write(self, start: int, stop: int, arrays: dict[str, np.ndarray], dims: dict[str, tuple]) -> None:
        """Write one batch into its region, then record it as done."""
        batch = xr.Dataset({name: (dims[name], arr) for name, arr in arrays.items()})
        batch.to_zarr(self.partial, region={"stimulus": slice(start, stop)},
                      zarr_format=_ZARR_FORMAT, consolidated=False)
        self.done.add(start)
        self._save_progress()

    def finalise(self, attrs: dict[str, Any]) -> xr.Dataset:
        """Write attrs, consolidate, mark complete and rename into place."""
        import zarr

        attrs = {**attrs, "cache_key": self.key,
                 "cache_fields": json.dumps(self.fields, sort_keys=True)}
        group = zarr.open_group(str(self.partial), mode="r+", zarr_format=_ZARR_FORMAT)
        group.attrs.update(json.loads(json.dumps(attrs, default=str)))
        zarr.consolidate_metadata(str(self.partial))
        (self.partial / COMPLETE_MARKER).write_text("complete\n")
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old")
            os.replace(self.path, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(self.partial, self.path)
        self.state_file.unlink(missing_ok=True)
        return self.open()
