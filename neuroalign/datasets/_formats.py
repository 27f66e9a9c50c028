"""Checked readers of the file formats the adapters share (HDF5, NIfTI, MGH, .mat, .ctab).

Each reader turns a missing, truncated or malformed file into a ``FileNotFoundError`` or a
:class:`~neuroalign.exceptions.DataFormatError` that names the file, what was found and
what was expected.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import DataFormatError

__all__ = [
    "PublishedCountWarning",
    "MissingSessionsWarning",
    "require_file",
    "check_choice",
    "open_hdf5",
    "h5_dataset",
    "load_nifti",
    "load_mgh",
    "load_mat",
    "read_ctab",
    "load_npy_dict",
    "repetition_index",
    "warn_count",
]


class PublishedCountWarning(UserWarning):
    """A file's size disagrees with the published count for its subject (dataset card)."""


class MissingSessionsWarning(UserWarning):
    """Some session files of a subject are absent (e.g. withheld from public copies)."""


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` or raise ``FileNotFoundError`` naming it and what it should hold."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected {what}).")
    return path


def check_choice(value: Any, valid: Sequence[Any], *, name: str, func: str) -> Any:
    """Raise ``ValueError`` listing the valid values unless ``value`` is one of them."""
    return check_option(value, valid, name=name, func=func, limit=60)


def open_hdf5(path: Path):
    """``h5py.File(path, 'r')``; a truncated or corrupt file raises DataFormatError."""
    import h5py

    require_file(path, "an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(
            f"{path}: cannot be read as HDF5 ({err}); the file is truncated or corrupt. "
            "Expected a complete HDF5 file; download it again."
        ) from err


def h5_dataset(f, path: Path, key: str, *, ndim: int, dtype: str | None = None, axes: str = ""):
    """Dataset ``key`` of open file ``f``, checked for presence, dims and dtype."""
    if key not in f:
        raise DataFormatError(
            f"{path}: has no dataset {key!r}. Keys present: {format_list(list(f.keys())) or 'none'}."
        )
    d = f[key]
    if d.ndim != ndim:
        raise DataFormatError(
            f"{path}: dataset {key!r} has shape {d.shape!r}, expected {ndim} dims{f' ({axes})' if axes else ''}."
        )
    if dtype is not None and d.dtype != np.dtype(dtype):
        raise DataFormatError(
            f"{path}: dataset {key!r} has dtype {d.dtype!s}, expected {dtype}."
        )
    return d


def load_nifti(path: Path, what: str = "a NIfTI image"):
    """``nibabel.load``; missing, truncated or corrupt files raise clear errors."""
    import nibabel as nib

    require_file(path, what)
    try:
        img = nib.load(str(path))
        img.header.get_data_shape()
    except Exception as err:  # nibabel raises several types (ImageFileError, EOFError, ...)
        raise DataFormatError(
            f"{path}: cannot be read as NIfTI ({type(err).__name__}: {err}). Expected {what}."
        ) from err
    return img


def nifti_array(img, path: Path, *, dtype=None) -> np.ndarray:
    """All voxels of ``img`` (unscaled if ``dtype`` is an int type); truncation -> error."""
    try:
        unscaled = getattr(img.dataobj, "get_unscaled", None)
        if dtype is not None and np.dtype(dtype).kind == "i" and unscaled is not None:
            arr = np.asarray(unscaled())
        else:
            arr = np.asarray(img.dataobj)
    except Exception as err:  # gzip/zlib/EOF errors on truncated files
        raise DataFormatError(
            f"{path}: truncated or corrupt image data ({type(err).__name__}: {err}). "
            f"Expected {np.prod(img.shape)} values of shape {img.shape!r}."
        ) from err
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise DataFormatError(f"{path}: image dtype is {arr.dtype!s}, expected {np.dtype(dtype)!s}.")
    return arr


def load_mgh(path: Path, what: str = "an MGH/MGZ surface file") -> np.ndarray:
    """Values of an .mgh/.mgz surface file, squeezed to (n_vertices[, n_frames])."""
    img = load_nifti(path, what)
    arr = nifti_array(img, path)
    if arr.ndim < 1 or arr.ndim > 4 or (arr.ndim >= 3 and arr.shape[1:3] != (1, 1)):
        raise DataFormatError(
            f"{path}: surface data of shape {arr.shape!r}, expected (n_vertices, 1, 1[, n_trials])."
        )
    return arr.reshape(arr.shape[0], *arr.shape[3:])


def load_mat(path: Path, keys: Iterable[str]) -> dict[str, np.ndarray]:
    """A MATLAB v5 file with the given keys present."""
    import scipy.io

    require_file(path, "a MATLAB .mat file")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as err:
        raise DataFormatError(f"{path}: cannot be read as a MATLAB file ({err}).") from err
    keys = list(keys)
    missing = [k for k in keys if k not in mat]
    if missing:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise DataFormatError(
            f"{path}: missing key(s) {format_list(missing)}. Keys present: {format_list(present) or 'none'}."
        )
    return mat


def read_ctab(path: Path) -> dict[int, str]:
    """A FreeSurfer-style ``.ctab``: lines ``index name [r g b a]`` -> ``{index: name}``."""
    require_file(path, "a .ctab label table ('index name' per line)")
    out: dict[int, str] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            idx = int(parts[0])
        except ValueError:
            raise DataFormatError(
                f"{path}: line {n} is {line!r}, expected 'index name' with an integer index."
            ) from None
        if len(parts) < 2:
            raise DataFormatError(f"{path}: line {n} is {line!r}, expected 'index name'.")
        out[idx] = parts[1]
    return out


def load_npy_dict(path: Path, keys: Iterable[str], what: str) -> dict[str, Any]:
    """A dict saved with ``np.save`` (0-d object array) or ``pickle.dump``."""
    require_file(path, what)
    try:
        obj = np.load(path, allow_pickle=True)
    except Exception as err:
        raise DataFormatError(f"{path}: cannot be read as .npy or pickle ({err}). Expected {what}.") from err
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        obj = obj.item()
    if not isinstance(obj, dict):
        found = f"an array of shape {obj.shape!r}" if isinstance(obj, np.ndarray) else type(obj).__name__
        raise DataFormatError(f"{path}: holds {found}, expected a dict ({what}).")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataFormatError(
            f"{path}: missing key(s) {format_list(missing)}. Keys present: {format_list(sorted(obj)) or 'none'}."
        )
    return obj


def repetition_index(ids: Sequence[Any]) -> np.ndarray:
    """0-based order of each row among the rows with the same id (first showing -> 0)."""
    ids = np.asarray(ids)
    _, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    sorted_inv = inverse[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_inv)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rep = np.empty(len(ids), dtype=np.int64)
    rep[order] = np.arange(len(order)) - first
    return rep


def warn_count(path: Path | str, what: str, found: Any, published: Any, subject: str) -> None:
    """Warn that ``what`` in ``path`` is ``found`` where the dataset card says ``published``."""
    if published is None or found == published:
        return
    warnings.warn(
        f"{path}: {what} is {found!r}, but the published value for {subject} is {published!r} "
        "(dataset card). The file may belong to another subject or be a modified copy.",
        PublishedCountWarning,
        stacklevel=3,
    )
