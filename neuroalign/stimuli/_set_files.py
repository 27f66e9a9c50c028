"""Image stimulus sets read from disk: every image of a folder, an HDF5 brick, or the
files a store's ``stimulus_set`` attribute points at. These are the constructors
:meth:`StimulusSet.from_folder`, :meth:`StimulusSet.from_hdf5` and
:meth:`StimulusSet.from_store` (each takes the class as ``cls``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError

if TYPE_CHECKING:
    from neuroalign.stimuli._set import StimulusSet

__all__ = ["IMAGE_EXTENSIONS", "from_folder", "from_hdf5", "from_store"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


#: Pillow's modes of unsigned 16-bit pixels (16-bit PNG, TIFF, PGM).
_MODES_16 = ("I;16", "I;16L", "I;16B", "I;16N")


def _read_image(path: Path) -> np.ndarray:
    """The image at ``path`` as uint8 RGB ``(H, W, 3)``.

    8-bit images go through Pillow's ``convert("RGB")`` (grayscale repeated, palette looked
    up, alpha dropped, CMYK converted). One-channel images of more than 8 bits, which that
    conversion clips (a 16-bit ramp comes out white), are scaled to 8 bits first, then
    repeated over the 3 channels:

    - 16-bit (modes ``I;16``, ``I;16L``, ``I;16B``, ``I;16N``): the high byte, ``v >> 8``
      (0..255 -> 0, 65535 -> 255), as Pillow itself reduces 16-bit RGB PNGs;
    - 32-bit integer (mode ``I``, as which some formats and Pillow versions give 16-bit
      images): read as 16-bit, ``v >> 8``, when every value lies in [0, 65535];
    - 32-bit float (mode ``F``, float TIFF): values in [0, 1],
      ``min(floor(v * 256), 255)`` (256 bins of equal width; 1.0 -> 255).

    Raises
    ------
    DataFormatError
        A mode ``I`` image with values outside [0, 65535], or a mode ``F`` image with
        values outside [0, 1] or NaN: no scale to 8 bits is known for them; the message
        names the file, the mode and the values found.
    """
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in (*_MODES_16, "I", "F"):
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
        values = np.asarray(img)
        mode = img.mode
    if mode == "F":
        if values.size and not np.isfinite(values).all():
            raise DataFormatError(
                f"{path}: a 32-bit float image (Pillow mode 'F') with NaN or infinite values; "
                "expected values in [0, 1] (scaled to 0..255)."
            )
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if lo < 0 or hi > 1:
            raise DataFormatError(
                f"{path}: a 32-bit float image (Pillow mode 'F') with values from {lo:g} to "
                f"{hi:g}; expected values in [0, 1] (scaled to 0..255). Save it as 8- or "
                "16-bit."
            )
        gray = np.minimum(np.floor(values.astype(np.float64) * 256), 255).astype(np.uint8)
    else:
        if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise DataFormatError(
                f"{path}: a 32-bit integer image (Pillow mode 'I') with values from "
                f"{int(values.min())} to {int(values.max())}; expected 16-bit values in "
                "[0, 65535] (scaled to 0..255 as v >> 8). Save it as 8- or 16-bit."
            )
        gray = (values.astype(np.uint32) >> 8).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def from_folder(
    cls, path: str | os.PathLike, *, extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> StimulusSet:
    """Every image file under ``path`` (recursively, sorted).

    Ids are the file paths relative to ``path`` without extension (``cat/001``).

    Parameters
    ----------
    path : path-like
        The folder.
    extensions : sequence of str
        File suffixes counted as images (case-insensitive).

    Returns
    -------
    StimulusSet
        An image set reading the files on demand.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of images.")
    exts = {e.lower() for e in extensions}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise DataFormatError(
            f"{root}: no image files (expected extensions {format_list(sorted(exts))})."
        )
    rel = [f.relative_to(root).as_posix() for f in files]
    return cls._from_files(root, rel, [r.rsplit(".", 1)[0] for r in rel])


#: Version of the rules by which :func:`_read_image` turns a file into pixels, hashed with
#: the files: a change to them gives file-backed sets a new content hash. 2: images of more
#: than 8 bits are scaled, not clipped.
READ_RULES = 2


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{path}: image file of stimulus set is missing.")


def _files_digest(root: Path, rel: Sequence[str]) -> str:
    """SHA-256 over the names (relative to ``root``) and the bytes of the files.

    Every byte of every file is read (1,000 JPEGs of 58 kB in 0.07 s from the page
    cache); sizes and modification times play no part.

    Raises
    ------
    FileNotFoundError
        A file is gone since the set was built; the message names it.
    """
    h = hashlib.sha256()
    for r in rel:
        try:
            with open(root / r, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise _missing(root / r) from None
        h.update(json.dumps([r, digest]).encode())
    return h.hexdigest()


def _from_files(cls, root: Path, rel: list[str], ids: list[str]) -> StimulusSet:
    for r in rel:
        if not (root / r).is_file():
            raise _missing(root / r)

    def loader(indices: Sequence[int]) -> list[np.ndarray]:
        return [_read_image(root / rel[i]) for i in indices]

    def fingerprint() -> dict:
        return {"files": _files_digest(root, rel), "read_rules": READ_RULES}

    return cls(ids, modality="image", loader=loader, source={"image_file": rel},
               fingerprint=fingerprint)


def from_hdf5(
    cls,
    path: str | os.PathLike,
    key: str = "imgBrick",
    *,
    indices: Sequence[int] | None = None,
    ids: Sequence[str] | None = None,
    id_name: str = "nsd_id",
) -> StimulusSet:
    """Images of an HDF5 brick ``(N, H, W, 3)`` uint8 (NSD's ``nsd_stimuli.hdf5``).

    Parameters
    ----------
    path : path-like
        The HDF5 file.
    key : str
        Dataset holding the brick.
    indices : sequence of int, optional
        Rows to use (default: all), recorded as source ``id_name``.
    ids : sequence of str, optional
        Stimulus ids (default ``nsd-{index:05d}``).
    id_name : str
        Name of the source identifier holding the row indices.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such HDF5 file.")
    with h5py.File(path, "r") as f:
        if key not in f:
            raise DataFormatError(
                f"{path}: no dataset {key!r}. Expected one of {format_list(list(f.keys()))}."
            )
        shape, dtype = f[key].shape, f[key].dtype
    if len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
        raise DataFormatError(
            f"{path}: dataset {key!r} has shape {shape} and dtype {dtype}, expected "
            "uint8 (N, H, W, 3)."
        )
    rows = np.arange(shape[0]) if indices is None else np.asarray(indices, dtype=int)
    if rows.size and (rows.min() < 0 or rows.max() >= shape[0]):
        raise IndexError(
            f"Invalid value for 'indices' in StimulusSet.from_hdf5(): values outside "
            f"[0, {shape[0]}) of {path} dataset {key!r}."
        )
    ids = [f"nsd-{int(r):05d}" for r in rows] if ids is None else list(ids)

    def loader(pos: Sequence[int]) -> list[np.ndarray]:
        want = rows[np.asarray(pos, dtype=int)]
        # h5py fancy indexing needs increasing unique indices: sort, read, un-permute.
        uniq, inverse = np.unique(want, return_inverse=True)
        with h5py.File(path, "r") as f:
            block = f[key][uniq.tolist()] if len(uniq) > 1 else f[key][int(uniq[0]):int(uniq[0]) + 1]
        return list(block[inverse])

    def fingerprint() -> dict:
        return {"hdf5_rows": _rows_digest(path, key, rows), "key": key}

    return cls(ids, modality="image", loader=loader, source={id_name: rows.tolist()},
               fingerprint=fingerprint)


def _rows_digest(path: Path, key: str, rows: np.ndarray) -> str:
    """SHA-256 over the shape, dtype and bytes of the rows ``rows`` of dataset ``key`` (in
    the order of ``rows``; each distinct row read once, in runs of consecutive rows of at
    most 64 MB). Rows the set does not use play no part, nor do the file's size and
    modification time."""
    import h5py

    h = hashlib.sha256()
    rows = np.asarray(rows, dtype=np.int64)
    with h5py.File(path, "r") as f:
        data = f[key]
        h.update(json.dumps([list(data.shape), data.dtype.str]).encode())
        h.update(rows.tobytes())
        uniq = np.unique(rows)
        per_row = max(1, int(np.prod(data.shape[1:])) * data.dtype.itemsize)
        step = max(1, 64 * 2**20 // per_row)
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        for run in np.split(uniq, breaks) if uniq.size else []:
            for a in range(int(run[0]), int(run[-1]) + 1, step):
                h.update(np.ascontiguousarray(data[a:min(a + step, int(run[-1]) + 1)]).data)
    return h.hexdigest()


def from_store(cls, ds, *, stimulus_ids: Sequence[str] | None = None) -> StimulusSet:
    """The stimuli of a store, from its ``stimulus_set`` attribute.

    One entry per unique ``stimulus_id`` of the store, in order of first presentation.
    The attribute says where the pixels live: ``{"kind": "hdf5-brick", "path", "key",
    "id_coord"}`` (NSD) or ``{"kind": "image-files", "root", "file_coord"}``.

    Parameters
    ----------
    ds : xr.Dataset
        A store with a ``stimulus_id`` coordinate.
    stimulus_ids : sequence of str, optional
        Restrict to (and order by) these ids.
    """
    spec = ds.attrs.get("stimulus_set")
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise DataFormatError(
            f"store attribute 'stimulus_set' is {spec!r}; expected a dict with 'kind' "
            "('hdf5-brick' or 'image-files') saying where the stimuli live. Build the "
            "stimulus set with StimulusSet.from_folder() or from_hdf5() instead."
        )
    if "stimulus_id" not in ds.coords:
        raise DataFormatError(
            "store has no 'stimulus_id' coordinate; expected one on 'presentation'."
        )
    sid = np.asarray(ds["stimulus_id"].values).astype(str)
    _, first = np.unique(sid, return_index=True)
    first = np.sort(first)
    kind = spec["kind"]
    if kind == "hdf5-brick":
        coord = spec.get("id_coord", "nsd_id")
        if coord not in ds.coords:
            raise DataFormatError(
                f"store attribute 'stimulus_set' names id_coord {coord!r}, but the store "
                f"has no such coordinate (coordinates: {format_list(list(ds.coords))})."
            )
        rows = np.asarray(ds[coord].values)[first].astype(int)
        out = cls.from_hdf5(spec["path"], spec.get("key", "imgBrick"), indices=rows,
                            ids=sid[first].tolist(), id_name=coord)
    elif kind == "image-files":
        coord = spec.get("file_coord", "image_file")
        if coord not in ds.coords:
            raise DataFormatError(
                f"store attribute 'stimulus_set' names file_coord {coord!r}, but the store "
                f"has no such coordinate (coordinates: {format_list(list(ds.coords))})."
            )
        files = np.asarray(ds[coord].values).astype(str)[first].tolist()
        out = cls._from_files(Path(spec["root"]), files, sid[first].tolist())
    else:
        raise DataFormatError(
            f"store attribute 'stimulus_set' has kind {kind!r}; expected 'hdf5-brick' or "
            "'image-files'."
        )
    return out.subset(stimulus_ids) if stimulus_ids is not None else out
