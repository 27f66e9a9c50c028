"""Checked readers of the file formats the adapters share (HDF5, NIfTI, MGH, .mat, .ctab).

Each reader turns a missing, truncated or malformed file into a ``FileNotFoundError`` or a
:class:`~neuroalign.exceptions.DataFormatError` that names the file, what was found and
what was expected.
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import DataFormatError, UnsafeFileError
from neuroalign.store._builders import repetitions_in_order

__all__ = [
    "PublishedCountWarning",
    "MissingSessionsWarning",
    "require_file",
    "only_one",
    "check_choice",
    "open_hdf5",
    "h5_dataset",
    "load_nifti",
    "h5_read",
    "image_shape",
    "check_integers",
    "check_labels",
    "check_label_names",
    "load_mgh",
    "load_mat",
    "load_npy_dict",
    "load_npy_array",
    "load_pickle_file",
    "unpickle_restricted",
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


def only_one(paths: Sequence[Path], what: str, *, kind: str = "file") -> Path | None:
    """The one existing path of ``paths`` (None if none); two existing ones are an error.

    Used where a dataset may be laid out in more than one way: finding both is ambiguous,
    and guessing which one the user meant could silently read the wrong copy.
    """
    found = [Path(p) for p in paths if (Path(p).is_dir() if kind == "folder" else Path(p).is_file())]
    if len(found) > 1:
        raise DataFormatError(
            f"{found[0]} and {found[1]}: two {kind}s for {what}; expected one. Move one of them "
            "away (or pass the one to use explicitly)."
        )
    return found[0] if found else None


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


def h5_read(d, path: Path, selection: Any = ()) -> np.ndarray:
    """``d[selection]``; a corrupt or truncated chunk raises DataFormatError naming the file."""
    try:
        return d[selection]
    except (OSError, RuntimeError, KeyError) as err:  # h5py: filter/inflate/short-read failures
        raise DataFormatError(
            f"{path}: cannot read dataset {d.name.lstrip('/')!r} ({type(err).__name__}: {err}); "
            "the file is truncated or corrupt. Download it again."
        ) from err


def _image_kind(path: Path) -> str:
    name = Path(path).name.lower()
    return "MGH" if name.endswith((".mgh", ".mgz")) else "NIfTI"


def load_nifti(path: Path, what: str = "a NIfTI image"):
    """``nibabel.load`` of a NIfTI or MGH file; missing, truncated or corrupt files raise
    clear errors."""
    import nibabel as nib

    require_file(path, what)
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise DataFormatError(f"{path}: cannot be read as {_image_kind(path)}: the file is empty "
                              f"(0 bytes). Expected {what}.")
    try:
        img = _load_mgh(path) if _image_kind(path) == "MGH" else nib.load(str(path))
        img.header.get_data_shape()
    except Exception as err:  # nibabel raises several types (ImageFileError, EOFError, ...)
        raise DataFormatError(
            f"{path}: cannot be read as {_image_kind(path)} ({type(err).__name__}: {err}). "
            f"Expected {what}."
        ) from err
    return img


def _load_mgh(path: Path):
    """An MGH/MGZ image on a lazy proxy, its header read through a handle that is closed.

    ``nibabel.load`` leaves the header's file handle of an MGH file open (nibabel 5's
    ``MGHImage.from_file_map``): one leaked descriptor per session file.
    """
    from nibabel.freesurfer.mghformat import MGHImage
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path), "rb") as f:
        header = MGHImage.header_class.from_fileobj(f)
    proxy = MGHImage.ImageArrayProxy(str(path), header.copy(), mmap=True)
    return MGHImage(proxy, header.get_affine(), header,
                    file_map=MGHImage.filespec_to_file_map(str(path)))


def image_shape(img) -> tuple[int, ...]:
    """The image's shape as plain ints (MGH headers give numpy ints)."""
    return tuple(int(x) for x in img.shape)


def nifti_array(img, path: Path, *, dtype=None) -> np.ndarray:
    """All voxels of ``img`` (unscaled if ``dtype`` is an int type); truncation -> error.

    A gzip-compressed file (``.nii.gz``, ``.mgz``) is read through a stream that is then
    read to its end, so gzip's CRC-32 is checked: flipped bytes in a stored (incompressible)
    deflate block would otherwise load as silently wrong values.
    """
    import gzip

    import nibabel as nib

    def values(image):
        unscaled = getattr(image.dataobj, "get_unscaled", None)
        if dtype is not None and np.dtype(dtype).kind == "i" and unscaled is not None:
            return np.asarray(unscaled())
        return np.asarray(image.dataobj)

    try:
        if str(path).lower().endswith((".gz", ".mgz")):
            with gzip.open(path, "rb") as stream:
                holder = nib.FileHolder(filename=str(path), fileobj=stream)
                klass = type(img)
                arr = values(klass.from_file_map({k: holder for k, _ in klass.files_types}))
                while stream.read(2**20):  # reaching the end checks the CRC and length
                    pass
        else:
            arr = values(img)
    except Exception as err:  # gzip/zlib/EOF errors on truncated or corrupt files
        raise DataFormatError(
            f"{path}: truncated or corrupt image data ({type(err).__name__}: {err}). "
            f"Expected {int(np.prod(img.shape))} values of shape {image_shape(img)!r}."
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


# -- pickles and .npy -----------------------------------------------------------------------
#
# Two published formats are pickles: THINGS-EEG2's preprocessed dicts and image metadata
# (``np.save`` of a dict, or ``pickle.dump``), and Algonauts' ``mapping_*.npy`` dicts. They
# hold dicts, lists, strings, numbers and numpy arrays, nothing else. A pickle can name any
# importable callable and call it while it loads, so these files are read with an unpickler
# that admits only the globals that such content needs: the numpy functions that rebuild an
# array, a dtype or a numpy scalar, and a few builtin containers and numbers. Anything else
# raises UnsafeFileError before it is called. Plain arrays are read with allow_pickle=False.

_NPY_MAGIC = b"\x93NUMPY"


def _latin1_encode(obj: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it (latin-1 only)."""
    if str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return str(obj).encode("latin-1", errors)


@cache
def _safe_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core", "numpy._core"):  # written by numpy 1.x and 2.x
        allowed[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    for mod in ("builtins", "__builtin__"):  # Python 3 and 2 names
        for obj in (set, frozenset, complex, bytearray):
            allowed[(mod, obj.__name__)] = obj
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path, what: str) -> None:
        super().__init__(file, encoding="latin1")  # numpy's choice for Python-2 arrays
        self._path, self._what = path, what

    def find_class(self, module: str, name: str) -> Any:
        obj = _safe_globals().get((module, name))
        if obj is None:
            raise UnsafeFileError(
                f"{self._path}: refused to load: its pickle names {module}.{name}, which is not "
                f"part of {self._what} (only dicts, lists, strings, numbers and numpy arrays are "
                "read). Loading it could run code; neuroalign never unpickles anything else. "
                "Use a copy of the file from the dataset's official source."
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(f"{self._path}: refused to load: its pickle uses persistent ids, "
                              f"which {self._what} does not hold.")


def unpickle_restricted(data: bytes, path: Path, what: str) -> Any:
    """Unpickle ``data`` admitting only dicts, lists, str, numbers and numpy arrays.

    Raises
    ------
    UnsafeFileError
        The pickle names any other global (the message names it and ``path``).
    DataFormatError
        The bytes are not a complete pickle.
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), Path(path), what).load()
    except UnsafeFileError:
        raise
    except Exception as err:  # UnpicklingError, EOFError, ValueError, TypeError, ...
        raise DataFormatError(
            f"{path}: cannot be read as a pickle ({type(err).__name__}: {err}); the file is "
            f"truncated or corrupt. Expected {what}."
        ) from err


def _npy_header(f, path: Path, what: str) -> tuple[tuple, bool, np.dtype]:
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(f)
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        return read(f)
    except Exception as err:
        raise DataFormatError(
            f"{path}: has a broken .npy header ({type(err).__name__}: {err}). Expected {what}."
        ) from err


def load_pickle_file(path: Path, what: str) -> Any:
    """The object in a ``.npy`` file (an ``np.save``d object array) or a ``pickle.dump`` file.

    Read with :func:`unpickle_restricted`: a file that names any global beyond numpy
    arrays, dtypes and builtin containers raises UnsafeFileError. A ``.npy`` of a plain
    (non-object) dtype is read with ``allow_pickle=False``.
    """
    path = require_file(Path(path), what)
    with open(path, "rb") as f:
        head = f.read(len(_NPY_MAGIC))
        if not head:
            raise DataFormatError(f"{path}: is empty (0 bytes). Expected {what}.")
        if head != _NPY_MAGIC:  # a pickle.dump file
            f.seek(0)
            return unpickle_restricted(f.read(), path, what)
        f.seek(0)
        shape, _, dtype = _npy_header(f, path, what)
        if not dtype.hasobject:
            return load_npy_array(path, what)
        obj = unpickle_restricted(f.read(), path, what)
    if not isinstance(obj, np.ndarray) or obj.shape != tuple(shape):
        raise DataFormatError(
            f"{path}: its .npy header announces an object array of shape {tuple(shape)!r}, but "
            f"the pickle holds {type(obj).__name__}. Expected {what}."
        )
    return obj


def load_npy_array(path: Path, what: str, *, mmap: bool = False) -> np.ndarray:
    """A plain ``.npy`` array (``allow_pickle=False``); object arrays raise UnsafeFileError."""
    path = require_file(Path(path), what)
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: is empty (0 bytes). Expected {what}.")
    with open(path, "rb") as f:
        if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
            raise DataFormatError(f"{path}: is not a .npy file (no NUMPY magic). Expected {what}.")
        f.seek(0)
        shape, _, dtype = _npy_header(f, path, what)
    if dtype.hasobject:
        raise UnsafeFileError(
            f"{path}: refused to load: it holds pickled Python objects (dtype {dtype!s}) where "
            f"the format is a plain array ({what}). Loading it could run code."
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as err:  # short data: ValueError / OSError
        raise DataFormatError(
            f"{path}: cannot be read as .npy ({type(err).__name__}: {err}); the file is "
            f"truncated or corrupt. Expected {what} of shape {tuple(shape)!r} dtype {dtype!s}."
        ) from err


def load_npy_dict(path: Path, keys: Iterable[str], what: str) -> dict[str, Any]:
    """A dict saved with ``np.save`` (0-d object array) or ``pickle.dump`` (restricted unpickler)."""
    obj = load_pickle_file(path, what)
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        obj = obj.item()
    if not isinstance(obj, dict):
        found = f"an array of shape {obj.shape!r}" if isinstance(obj, np.ndarray) else type(obj).__name__
        raise DataFormatError(f"{path}: holds {found}, expected a dict ({what}).")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DataFormatError(
            f"{path}: missing key(s) {format_list(missing)}. Keys present: "
            f"{format_list(sorted(map(str, obj))) or 'none'}."
        )
    return obj


def check_integers(values, path: Path, key: str, *, minimum: int | None = None,
                   what: str = "values") -> np.ndarray:
    """``values`` as int64 after checking they are finite whole numbers >= ``minimum``."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise DataFormatError(f"{path}: {key!r} has dtype {arr.dtype!s}, expected numbers ({what}).")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            shown = format_list(sorted({float(x) for x in arr[bad][:50]}, key=str), limit=3)
            raise DataFormatError(
                f"{path}: {key!r} holds non-integer values ({shown}) at {int(bad.sum())} "
                f"position(s), expected whole numbers ({what})."
            )
    out = arr.astype(np.int64)
    if minimum is not None and out.size and out.min() < minimum:
        raise DataFormatError(
            f"{path}: {key!r} holds {what} down to {int(out.min())}, expected {what} >= {minimum}."
        )
    return out


def check_labels(values, path: Path, what: str = "an ROI label file") -> np.ndarray:
    """Integer labels of an ROI volume/surface (float storage allowed), as int64."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise DataFormatError(f"{path}: dtype {arr.dtype!s}, expected integer labels ({what}).")
    if arr.dtype.kind == "f":
        nonfinite = ~np.isfinite(arr)
        if nonfinite.any():
            raise DataFormatError(
                f"{path}: holds {int(nonfinite.sum())} non-finite value(s); expected integer "
                f"labels ({what})."
            )
        frac = arr != np.round(arr)
        if frac.any():
            shown = format_list(sorted({float(x) for x in arr[frac][:50]}), limit=3)
            raise DataFormatError(
                f"{path}: holds non-integer label values ({shown}); expected integer labels ({what})."
            )
    return arr.astype(np.int64)


def check_label_names(values: np.ndarray, labels: dict[int, str], path: Path, table: Path | str,
                      unit: str = "voxel(s)") -> None:
    """Every positive label value must be named in the label table."""
    present, counts = np.unique(values[values > 0], return_counts=True)
    unknown = [(int(v), int(c)) for v, c in zip(present, counts, strict=True) if int(v) not in labels]
    if unknown:
        shown = ", ".join(f"{v} ({c} {unit})" for v, c in unknown[:5])
        raise DataFormatError(
            f"{path}: label value(s) {shown} not in {Path(str(table)).name} (which names "
            f"{format_list(sorted(labels))}). Expected the label table of this ROI file."
        )


def repetition_index(ids: Sequence[Any]) -> np.ndarray:
    """0-based order of each row among the rows with the same id (first showing -> 0)."""
    return repetitions_in_order(ids)


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
