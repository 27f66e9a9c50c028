"""Zarr I/O for stores: atomic saves, lazy or dask-backed opens."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._files import atomic_dir
from neuroalign._logging import get_logger
from neuroalign.exceptions import DataFormatError
from neuroalign.store._schema import NEUROID_DIM, RESPONSE_VAR, check_store

__all__ = ["save_store", "open_store", "atomic_dir", "COMPLETE_MARKER"]

log = get_logger(__name__)

#: File written last inside a store folder; a folder without it is not a complete store.
COMPLETE_MARKER = ".neuroalign-complete"
_ZARR_FORMAT = 2
_TARGET_CHUNK_BYTES = 32 * 2**20


def _neuroid_chunk(ds: xr.Dataset) -> int:
    resp = ds[RESPONSE_VAR]
    per_neuroid = resp.dtype.itemsize * int(np.prod([n for d, n in resp.sizes.items() if d != NEUROID_DIM]))
    return int(max(1, min(resp.sizes[NEUROID_DIM], _TARGET_CHUNK_BYTES // max(per_neuroid, 1))))


def save_store(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    neuroid_chunk: int | None = None,
) -> Path:
    """Write a store to ``path`` as zarr, chunked along ``neuroid``, atomically.

    The store is validated with :func:`check_store`, written into a temporary folder beside
    ``path``, marked complete, and renamed into place. An interrupted save leaves no folder
    at ``path`` (and no partial folder that :func:`open_store` would accept).

    Parameters
    ----------
    ds : xr.Dataset
        The store.
    path : path-like
        Target folder (conventionally ``*.zarr``).
    overwrite : bool
        Replace an existing store at ``path`` (only once the new one is complete).
    neuroid_chunk : int, optional
        Neuroids per chunk; by default chunks of about 32 MiB.

    Returns
    -------
    Path
        ``path``.
    """
    check_store(ds)
    path = Path(path)
    chunk = int(neuroid_chunk) if neuroid_chunk else _neuroid_chunk(ds)
    encoding: dict[str, Any] = {}
    for name, var in ds.variables.items():
        if NEUROID_DIM in var.dims:
            encoding[name] = {
                "chunks": tuple(chunk if d == NEUROID_DIM else n for d, n in var.sizes.items())
            }
    # dask chunks must not straddle zarr chunks: align them to the zarr chunking.
    out = ds.chunk({NEUROID_DIM: chunk}) if ds.chunks else ds
    for name in encoding:
        out[name].encoding.pop("chunks", None)
        out[name].encoding.pop("preferred_chunks", None)
    with atomic_dir(path, overwrite=overwrite, kind="store") as tmp:
        out.to_zarr(tmp, mode="w", zarr_format=_ZARR_FORMAT, consolidated=True, encoding=encoding)
        (tmp / COMPLETE_MARKER).write_text("complete\n")
    log.info("saved store %s (%s)", path, dict(ds[RESPONSE_VAR].sizes))
    return path


def open_store(
    path: str | os.PathLike, chunks: int | dict | str | None = None, *, check: bool = True
) -> xr.Dataset:
    """Open a store written by :func:`save_store`.

    Parameters
    ----------
    path : path-like
        The store folder.
    chunks : None, int, dict or "auto"
        ``None`` opens lazily without dask (values are read on access);
        an int gives dask chunks of that many neuroids; a dict or ``"auto"`` is passed to
        :func:`xarray.open_zarr`. Any value but ``None`` returns dask-backed arrays.
    check : bool
        Run :func:`check_store` on the result.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or is an incomplete store (an interrupted save).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such store.")
    if not (path / COMPLETE_MARKER).exists():
        raise FileNotFoundError(
            f"{path}: not a complete neuroalign store (no {COMPLETE_MARKER!r} marker); "
            "it may be the remains of an interrupted save. Write it again with save_store()."
        )
    if isinstance(chunks, int) and not isinstance(chunks, bool):
        chunks = {NEUROID_DIM: chunks}
    try:
        ds = xr.open_zarr(path, chunks=chunks, consolidated=True, zarr_format=_ZARR_FORMAT)
    except Exception as err:  # zarr raises several types for corrupt metadata
        raise DataFormatError(f"{path}: cannot be read as a zarr store ({err}).") from err
    for name in ds.variables:
        ds.variables[name].encoding = {}
    if check:
        check_store(ds)
    return ds
