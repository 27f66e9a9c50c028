"""Zarr I/O for stores and results: atomic saves, manifests, checked opens.

Everything neuroalign writes as zarr goes through :func:`write_zarr`: zarr format 2,
consolidated metadata, strings as fixed-width unicode, attrs made JSON-safe, and a
*manifest* (every file's size and SHA-256, :data:`MANIFEST`) written before the completion
marker. :func:`read_zarr` (and :func:`open_store` on top of it) checks the manifest when it
opens a folder: every file present with its recorded size (cheap: one ``stat`` per chunk),
and, for folders up to :data:`VERIFY_AT_OPEN_BYTES`, every checksum too. A deleted,
truncated or altered chunk is a :class:`~neuroalign.exceptions.StoreCorruptError` naming
the array and the chunk, never NaN or empty values in its place. :func:`verify_store`
(``neuroalign store verify``) checks every checksum of a folder of any size.

Folders written by earlier versions have no manifest; they open as before (an info log
says that their completeness is not checked).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._files import LEGACY_MARKERS, MANIFEST, OUTPUT_MARKER, atomic_dir, check_target
from neuroalign._logging import get_logger
from neuroalign.exceptions import DataFormatError, NeuroalignError, StoreCorruptError
from neuroalign.store._join import index_stimuli
from neuroalign.store._schema import CHUNK_BYTES, NEUROID_DIM, RESPONSE_VAR, check_store

__all__ = [
    "save_store",
    "open_store",
    "atomic_dir",
    "COMPLETE_MARKER",
    "MANIFEST",
    "write_manifest",
    "write_zarr",
    "read_zarr",
    "save_results",
    "verify_store",
    "check_integrity",
]

log = get_logger(__name__)

#: File written last inside a zarr folder; a folder without it is not complete.
COMPLETE_MARKER = ".neuroalign-complete"
# MANIFEST (sizes and checksums of every file of a zarr folder, written before
# COMPLETE_MARKER) is defined in neuroalign._files, whose check_target reads it too.
#: Folders up to this many bytes get every checksum checked when opened.
VERIFY_AT_OPEN_BYTES = 128 * 2**20
_ZARR_FORMAT = 2
_NOT_DATA = {MANIFEST, COMPLETE_MARKER, OUTPUT_MARKER, *LEGACY_MARKERS}


# -- manifests -------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * 2**20), b""):
            h.update(block)
    return h.hexdigest()


def _data_files(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        for name in sorted(filenames):
            if rel == Path(".") and name in _NOT_DATA:
                continue
            out.append((rel / name).as_posix())
    return out


def write_manifest(path: str | os.PathLike, *, known: dict[str, tuple[int, str]] | None = None) -> Path:
    """Record every file of the zarr folder ``path`` (size, SHA-256), then mark it complete.

    Call it last, once everything in ``path`` is written (inside the temporary folder of an
    :class:`~neuroalign._files.atomic_dir`): it writes :data:`MANIFEST` and then
    :data:`COMPLETE_MARKER` (which records that a manifest exists, so that a deleted
    manifest is noticed too).

    Parameters
    ----------
    path : path-like
        The zarr folder.
    known : dict, optional
        ``{relative path: (size, sha256 hex)}`` of files whose digest the writer computed
        from the bytes it wrote (a streamed ingest), so they are not read back. Used only
        where the file has that size now; every other file is read and hashed.

    Returns
    -------
    Path
        The manifest file.
    """
    path = Path(path)
    known = known or {}
    files = {}
    for rel in _data_files(path):
        size = (path / rel).stat().st_size
        hit = known.get(rel)
        files[rel] = [size, hit[1] if hit is not None and hit[0] == size else _sha256(path / rel)]
    manifest = path / MANIFEST
    manifest.write_text(json.dumps({"tool": "neuroalign", "manifest_version": 1,
                                    "algorithm": "sha256", "files": files}, indent=0) + "\n")
    (path / COMPLETE_MARKER).write_text(json.dumps({"complete": True, "manifest": MANIFEST}) + "\n")
    return manifest


def _describe(rel: str, arrays: list[str]) -> str:
    """``array 'responses', chunk '0.3'`` or ``metadata file 'responses/.zarray'``."""
    name = rel.rsplit("/", 1)[-1]
    if name.startswith(".z") or name == "zarr.json":
        return f"metadata file {rel!r}"
    for arr in sorted(arrays, key=len, reverse=True):
        if rel.startswith(arr + "/"):
            return f"array {arr!r}, chunk {rel[len(arr) + 1:]!r}"
    return f"file {rel!r}"


def _read_manifest(path: Path, what: str) -> dict | None:
    """The manifest's ``files``; ``None`` for a folder of an earlier version (no manifest)."""
    manifest = path / MANIFEST
    marker = path / COMPLETE_MARKER
    says = False
    try:
        says = json.loads(marker.read_text()).get("manifest") == MANIFEST
    except (OSError, ValueError, AttributeError):
        pass
    if not manifest.is_file():
        if says:
            raise StoreCorruptError(
                f"{path}: damaged {what}: its manifest {MANIFEST!r} is missing, so its chunks "
                "cannot be checked. Restore the folder from a copy, or write it again."
            )
        return None
    try:
        files = json.loads(manifest.read_text())["files"]
        if not isinstance(files, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise StoreCorruptError(
            f"{path}: damaged {what}: its manifest {MANIFEST!r} is unreadable. Restore the "
            "folder from a copy, or write it again."
        ) from None
    return files


def _problems(path: Path, files: dict, checksums: bool) -> list[str]:
    arrays = [rel.rsplit("/", 1)[0] for rel in files if rel.endswith("/.zarray")]
    problems = []
    for rel, (size, digest) in files.items():
        p = path / rel
        where = _describe(rel, arrays)
        try:
            actual = p.stat().st_size
        except OSError:
            problems.append(f"{where} is missing")
            continue
        if actual != size:
            problems.append(f"{where} has {actual} bytes, expected {size} (truncated or altered)")
        elif checksums and _sha256(p) != digest:
            problems.append(f"{where} fails its checksum (altered)")
    return problems


def _raise(path: Path, what: str, problems: list[str]) -> None:
    raise StoreCorruptError(
        f"{path}: damaged {what}: {'; '.join(problems[:5])}"
        + (f"; ... ({len(problems) - 5} more)" if len(problems) > 5 else "")
        + ". Restore the folder from a copy, or write it again."
    )


def check_integrity(path: str | os.PathLike, *, what: str = "store",
                    verify: bool | None = None) -> None:
    """Check a zarr folder against its manifest (see :func:`write_manifest`).

    Parameters
    ----------
    path : path-like
    what : str
        What the folder is, for the message.
    verify : bool, optional
        Also check every checksum (reads every byte). Default: only for folders up to
        :data:`VERIFY_AT_OPEN_BYTES`; larger ones get the sizes checked.

    Raises
    ------
    StoreCorruptError
        A file is missing, has another size, or (with checksums) other contents; the
        message names the array and chunk.
    """
    path = Path(path)
    files = _read_manifest(path, what)
    if files is None:
        log.info("%s: no manifest (written by an earlier neuroalign version); its chunks are "
                 "not checked", path)
        return
    if verify is None:
        verify = sum(size for size, _ in files.values()) <= VERIFY_AT_OPEN_BYTES
    problems = _problems(path, files, bool(verify))
    if problems:
        _raise(path, what, problems)


def verify_store(path: str | os.PathLike) -> dict[str, Any]:
    """Check every checksum of a zarr folder written by neuroalign (or of each such folder in
    an output folder, e.g. a fit's ``results.zarr``).

    Parameters
    ----------
    path : path-like
        A store, a zarr folder or an output folder holding such folders.

    Returns
    -------
    dict
        ``{"folders": [...], "files": n, "bytes": n}`` of what was checked.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    StoreCorruptError
        A file is missing, truncated or altered (all of them are named); or ``path`` is
        incomplete.
    DataFormatError
        Nothing under ``path`` has a manifest (a folder of an earlier version, or not
        neuroalign's): it cannot be verified.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such store or folder.")
    folders = [path] if (path / COMPLETE_MARKER).exists() or (path / MANIFEST).exists() else sorted(
        p for p in path.iterdir() if p.is_dir() and ((p / MANIFEST).exists() or (p / COMPLETE_MARKER).exists()))
    if not folders and (path / ".zgroup").exists():
        raise StoreCorruptError(
            f"{path}: not a complete neuroalign store (no {COMPLETE_MARKER!r} marker); it may "
            "be the remains of an interrupted save."
        )
    problems, n_files, n_bytes, checked = [], 0, 0, []
    for folder in folders:
        if not (folder / COMPLETE_MARKER).exists():
            problems.append(f"{folder.name}: incomplete (no {COMPLETE_MARKER!r} marker)")
            continue
        files = _read_manifest(folder, "store")
        if files is None:
            continue
        prefix = "" if folder == path else f"{folder.name}: "
        problems += [prefix + p for p in _problems(folder, files, True)]
        n_files += len(files)
        n_bytes += sum(size for size, _ in files.values())
        checked.append(str(folder))
    if problems:
        _raise(path, "store" if folders == [path] else "output", problems)
    if not checked:
        raise DataFormatError(
            f"{path}: has no neuroalign manifest ({MANIFEST!r}), so it cannot be verified "
            "(written by an earlier version, or not by neuroalign). Save it again with "
            "save_store() to add one."
        )
    return {"folders": checked, "files": n_files, "bytes": n_bytes}


# -- writing and reading zarr ----------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _zarr_ready(ds: xr.Dataset) -> xr.Dataset:
    """Strings as fixed-width unicode, JSON-safe attrs, no stale encodings."""
    out = ds.copy()
    strings = {name: (var.dims, np.asarray(var.values).astype(str), var.attrs)
               for name, var in out.variables.items() if var.dtype.kind in "OT"}
    if strings:
        out = out.assign_coords({k: v for k, v in strings.items() if k in out.coords})
        out = out.assign({k: v for k, v in strings.items() if k not in out.coords})
    for var in out.variables.values():
        var.attrs = _json_safe(dict(var.attrs))
        var.encoding = {}
    out.attrs = _json_safe(dict(out.attrs))
    return out


def write_zarr(ds: xr.Dataset, path: str | os.PathLike, *,
               encoding: dict[str, Any] | None = None) -> Path:
    """Write ``ds`` as the one zarr layout neuroalign uses, with its manifest.

    Format 2, consolidated metadata, strings as fixed-width unicode, attrs made
    JSON-serialisable; then :func:`write_manifest`. Not atomic by itself: call it on the
    temporary folder of an :class:`~neuroalign._files.atomic_dir` (or use
    :func:`save_results` / :func:`save_store`).

    Parameters
    ----------
    ds : xr.Dataset
        What to write.
    path : path-like
        The zarr folder (replaced if present).
    encoding : dict, optional
        Per-variable zarr encoding (chunks, compressors), as :meth:`xarray.Dataset.to_zarr`.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    _zarr_ready(ds).to_zarr(path, mode="w", zarr_format=_ZARR_FORMAT, consolidated=True,
                            encoding=encoding or {})
    write_manifest(path)
    return path


def save_results(ds: xr.Dataset, path: str | os.PathLike, *, overwrite: bool = False,
                 kind: str = "results") -> Path:
    """Write a results Dataset to the zarr folder ``path`` atomically (see :func:`write_zarr`).

    Parameters
    ----------
    ds : xr.Dataset
        The results.
    path : path-like
        The zarr folder; it appears only when complete.
    overwrite : bool
        Replace an earlier output of the same kind (never a folder neuroalign did not write).
    kind : str
        What the folder is, recorded in its ``.neuroalign`` marker.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and may not be replaced.
    """
    path = Path(path)
    with atomic_dir(path, overwrite=overwrite, kind=kind) as tmp:
        write_zarr(ds, tmp)
    return path


def open_dataset_file(path: str | os.PathLike, *, what: str) -> xr.Dataset:
    """A Dataset from a zarr folder or a netCDF file given by the user.

    A zarr folder that neuroalign wrote (it carries the completion marker) is read with
    :func:`read_zarr`, so it is checked against its manifest; other zarr folders and
    netCDF files are opened as they are.

    Parameters
    ----------
    path : path-like
        A ``.zarr`` folder (or any folder) or a netCDF file.
    what : str
        What the file is, for error messages (e.g. ``"results zarr"``).

    Returns
    -------
    xr.Dataset
        Its contents (lazy).
    """
    path = Path(path)
    if path.suffix == ".zarr" or path.is_dir():
        if (path / COMPLETE_MARKER).exists():
            return read_zarr(path, what=what)
        return xr.open_zarr(path)
    return xr.open_dataset(path)


def read_zarr(path: str | os.PathLike, chunks: Any = None, *, what: str = "zarr folder",
              verify: bool | None = None) -> xr.Dataset:
    """Open a zarr folder written by :func:`write_zarr`, checked against its manifest.

    Parameters
    ----------
    path : path-like
        The zarr folder.
    chunks : optional
        As :func:`open_store`.
    what : str
        What the folder is, for error messages.
    verify : bool, optional
        Check every checksum (default: for folders up to :data:`VERIFY_AT_OPEN_BYTES`).

    Returns
    -------
    xr.Dataset
        The folder's contents (lazy).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or is incomplete (an interrupted write).
    StoreCorruptError
        A file is missing, truncated or altered (see :func:`check_integrity`).
    DataFormatError
        The metadata cannot be read as zarr.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}.")
    if not (path / COMPLETE_MARKER).exists():
        raise FileNotFoundError(
            f"{path}: not a complete neuroalign {what} (no {COMPLETE_MARKER!r} marker); "
            f"it may be the remains of an interrupted save. Write it again."
        )
    check_integrity(path, what=what, verify=verify)
    try:
        ds = xr.open_zarr(path, chunks=chunks, consolidated=True, zarr_format=_ZARR_FORMAT)
    except Exception as err:  # zarr raises several types for corrupt metadata
        raise DataFormatError(f"{path}: cannot be read as a zarr store ({err}).") from err
    for name in ds.variables:  # kept: the chunks on disk (for reads a chunk at a time)
        enc = ds.variables[name].encoding
        ds.variables[name].encoding = ({"preferred_chunks": enc["preferred_chunks"]}
                                       if "preferred_chunks" in enc else {})
    return index_stimuli(ds)  # features and averaged stores: stimulus_id is an index


# -- stores ----------------------------------------------------------------------------------
def _neuroid_chunk(ds: xr.Dataset) -> int:
    resp = ds[RESPONSE_VAR]
    per_neuroid = resp.dtype.itemsize * int(np.prod([n for d, n in resp.sizes.items() if d != NEUROID_DIM]))
    return int(max(1, min(resp.sizes[NEUROID_DIM], CHUNK_BYTES // max(per_neuroid, 1))))


def save_store(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    neuroid_chunk: int | None = None,
) -> Path:
    """Write a store to ``path`` as zarr, chunked along ``neuroid``, atomically.

    The store is validated with :func:`check_store`, written into a temporary folder beside
    ``path`` with its manifest (sizes and checksums of every chunk), marked complete, and
    renamed into place. An interrupted save leaves no folder at ``path`` (and no partial
    folder that :func:`open_store` would accept); its temporary folder is removed by the
    next successful save to ``path``.

    Parameters
    ----------
    ds : xr.Dataset
        The store.
    path : path-like
        Target folder (conventionally ``*.zarr``).
    overwrite : bool
        Replace an existing store at ``path`` (only a store neuroalign wrote, and only once
        the new one is complete).
    neuroid_chunk : int, optional
        Neuroids per chunk; by default chunks of about 32 MiB.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and is not a store neuroalign wrote, or ``overwrite`` is False.
    TargetLockedError
        Another process is saving to ``path``; the message names it.
    """
    check_store(ds)
    path = Path(path)
    check_target(path, overwrite=overwrite, kind="store")
    chunk = int(neuroid_chunk) if neuroid_chunk else _neuroid_chunk(ds)
    encoding: dict[str, Any] = {}
    for name, var in ds.variables.items():
        if NEUROID_DIM in var.dims:
            encoding[name] = {
                "chunks": tuple(chunk if d == NEUROID_DIM else n for d, n in var.sizes.items())
            }
    # dask chunks must not straddle zarr chunks: align them to the zarr chunking.
    out = ds.chunk({NEUROID_DIM: chunk}) if ds.chunks else ds
    with atomic_dir(path, overwrite=overwrite, kind="store") as tmp:
        write_zarr(out, tmp, encoding=encoding)
    log.info("saved store %s (%s)", path, dict(ds[RESPONSE_VAR].sizes))
    return path


def open_store(
    path: str | os.PathLike, chunks: int | dict | str | None = None, *, check: bool = True,
    verify: bool | None = None,
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
    verify : bool, optional
        Check every chunk's checksum. Default: for stores up to
        :data:`VERIFY_AT_OPEN_BYTES`; larger ones get every chunk's presence and size
        checked (run :func:`verify_store` or ``neuroalign store verify`` for the rest).

    Returns
    -------
    xr.Dataset
        The store (checked with :func:`check_store` when ``check``).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or is an incomplete store (an interrupted save).
    StoreCorruptError
        A chunk is missing, truncated or altered; the message names the array and chunk.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from neuroalign.store import from_arrays, open_store, save_store
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.zarr")
    >>> store = from_arrays(np.arange(12.0).reshape(4, 3), ["a", "b", "a", "c"])
    >>> _ = save_store(store, path)
    >>> back = open_store(path)
    >>> dict(back.sizes), back["stimulus_id"].values.tolist()
    ({'presentation': 4, 'neuroid': 3}, ['a', 'b', 'a', 'c'])
    >>> back["responses"].values[2].tolist()
    [6.0, 7.0, 8.0]
    """
    path = Path(path)
    if isinstance(chunks, int) and not isinstance(chunks, bool):
        chunks = {NEUROID_DIM: chunks}
    if path.exists() and not (path / COMPLETE_MARKER).exists():
        raise FileNotFoundError(
            f"{path}: not a complete neuroalign store (no {COMPLETE_MARKER!r} marker); "
            "it may be the remains of an interrupted save. Write it again with save_store()."
        )
    ds = read_zarr(path, chunks, what="store", verify=verify)
    if check:
        try:
            check_store(ds)
        except NeuroalignError:
            raise
        except Exception as err:  # a chunk that decodes to garbage (no manifest to tell)
            raise StoreCorruptError(
                f"{path}: damaged store: its values cannot be read ({type(err).__name__}: {err})."
            ) from err
    return ds
