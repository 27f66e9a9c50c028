"""Where a built store's stimuli live: the ``stimulus_set`` attribute of :func:`from_arrays`.

The attribute is what ``StimulusSet.from_store`` reads: ``{"kind": "image-files", "root",
"file_coord"}`` or ``{"kind": "hdf5-brick", "path", "key", "id_coord"}``, with a
per-presentation coordinate (``image_file`` or ``image_index``). Images given as an array
are written to an HDF5 file only when the caller names it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign._files import target_lock
from neuroalign._validation import format_list
from neuroalign.exceptions import (
    DataFormatError,
    DimensionError,
    OutputExistsError,
    StimulusMismatchError,
)

__all__ = ["record_images"]

_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def _image_ids(image_ids: Any, n: int, *, what: str, func: str) -> np.ndarray:
    from neuroalign.store._builders import stimulus_ids_of

    if image_ids is None:
        raise ValueError(
            f"{func}(): 'images' is {what} of {n} images; pass 'image_ids', the stimulus id of "
            "each image in order (images are joined to trials by id, never by position)."
        )
    ids, _ = stimulus_ids_of(image_ids, name="image_ids", func=func)
    if len(ids) != n:
        raise DimensionError(
            f"Invalid value for 'image_ids' in {func}(): {len(ids)} ids for {what} of {n} images. "
            "Expected one id per image."
        )
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataFormatError(
            f"Invalid value for 'image_ids' in {func}(): duplicated id(s) "
            f"{format_list(uniq[counts > 1], limit=5)}. Expected one image per stimulus."
        )
    return ids


def _rows(trial_ids: np.ndarray, ids: np.ndarray, *, where: str, func: str) -> np.ndarray:
    pos = {s: n for n, s in enumerate(ids.tolist())}
    missing = sorted({s for s in trial_ids.tolist() if s not in pos})
    if missing:
        raise StimulusMismatchError(
            f"{func}(): {len(missing)} stimulus id(s) of the trials have no image in {where}: "
            f"{format_list(missing, limit=5)}."
        )
    return np.array([pos[s] for s in trial_ids.tolist()], dtype=np.int64)


def _check_brick(shape: tuple, dtype: Any, where: str, func: str) -> None:
    if len(shape) != 4 or shape[-1] != 3 or np.dtype(dtype) != np.uint8:
        raise DataFormatError(
            f"{func}(): {where} has shape {tuple(shape)!r} and dtype {dtype}. Expected uint8 "
            "images (N, H, W, 3)."
        )


def _write_brick(path: Path, images: np.ndarray, key: str, func: str) -> None:
    import h5py

    with target_lock(path, what="image file"):
        if path.exists():
            raise OutputExistsError(
                f"Invalid value for 'write_images' in {func}(): {path} exists; it is left "
                "untouched. Name a new file."
            )
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with h5py.File(tmp, "w") as f:
                f.create_dataset(key, data=images, chunks=(1, *images.shape[1:]))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _folder(root: Path, trial_ids: np.ndarray, func: str) -> tuple[dict, dict]:
    from neuroalign.stimuli._set import IMAGE_EXTENSIONS

    files: dict[str, list[str]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            rel = p.relative_to(root).as_posix()
            files.setdefault(rel.rsplit(".", 1)[0], []).append(rel)
    clash = {k: v for k, v in files.items() if len(v) > 1}
    wanted = set(trial_ids.tolist())
    clash = {k: v for k, v in clash.items() if k in wanted}
    if clash:
        k = sorted(clash)[0]
        raise DataFormatError(
            f"Invalid value for 'images' in {func}(): {root} holds several files for stimulus "
            f"{k!r} ({format_list(clash[k])}). Expected one image file per stimulus id."
        )
    missing = sorted(wanted - set(files))
    if missing:
        raise StimulusMismatchError(
            f"{func}(): {len(missing)} stimulus id(s) of the trials have no image file in {root} "
            f"(expected <id> plus an image extension): {format_list(missing, limit=5)}."
        )
    coord = np.array([files[s][0] for s in trial_ids.tolist()], dtype=str)
    return ({"image_file": coord},
            {"kind": "image-files", "root": str(root.resolve()), "file_coord": "image_file"})


def record_images(images: Any, trial_ids: np.ndarray, *, image_ids: Sequence[Any] | None,
                  key: str, write: str | os.PathLike | None, func: str) -> tuple[dict, dict]:
    """Per-presentation coordinates and the ``stimulus_set`` attribute for ``images``."""
    if isinstance(images, str | os.PathLike):
        path = Path(images)
        if write is not None:
            raise ValueError(
                f"{func}(): 'write_images' is for images given as an array; 'images' is the path "
                f"{str(path)!r}, recorded as it is."
            )
        if path.is_dir():
            if image_ids is not None:
                raise ValueError(
                    f"{func}(): 'image_ids' is for an HDF5 file or an array; the files of the "
                    f"folder {str(path)!r} are named by stimulus id."
                )
            return _folder(path, trial_ids, func)
        if not path.is_file():
            raise FileNotFoundError(f"Invalid value for 'images' in {func}(): {path}: no such folder or file.")
        if path.suffix.lower() not in _HDF5_SUFFIXES:
            raise DataFormatError(
                f"Invalid value for 'images' in {func}(): {path}. Expected a folder of image "
                f"files or an HDF5 file ({', '.join(_HDF5_SUFFIXES)})."
            )
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if key not in f:
                    raise DataFormatError(
                        f"{path}: no dataset {key!r} (images_key). Datasets present: "
                        f"{format_list(list(f.keys()))}."
                    )
                shape, dtype = f[key].shape, f[key].dtype
        except OSError as err:
            raise DataFormatError(f"{path}: cannot be read as HDF5 ({err}).") from err
        _check_brick(shape, dtype, f"{path} dataset {key!r}", func)
        ids = _image_ids(image_ids, shape[0], what=f"the HDF5 file {path.name}", func=func)
        rows = _rows(trial_ids, ids, where=str(path), func=func)
        return ({"image_index": rows},
                {"kind": "hdf5-brick", "path": str(path.resolve()), "key": key, "id_coord": "image_index"})
    arr = np.asarray(images)
    _check_brick(arr.shape, arr.dtype, "'images' (an array)", func)
    ids = _image_ids(image_ids, arr.shape[0], what="an array", func=func)
    rows = _rows(trial_ids, ids, where="'images'", func=func)
    if write is None:
        raise ValueError(
            f"{func}(): 'images' is an array, which a store cannot hold. Pass write_images="
            "'path/to/images.h5' to write it there as an HDF5 brick (nothing is written "
            "otherwise), or give a folder of image files."
        )
    path = Path(write)
    if path.suffix.lower() not in _HDF5_SUFFIXES:
        raise ValueError(
            f"Invalid value for 'write_images' in {func}(): {str(path)!r}. Expected a new file "
            f"ending in {' or '.join(_HDF5_SUFFIXES)}."
        )
    _write_brick(path, arr, key, func)
    return ({"image_index": rows},
            {"kind": "hdf5-brick", "path": str(path.resolve()), "key": key, "id_coord": "image_index"})
