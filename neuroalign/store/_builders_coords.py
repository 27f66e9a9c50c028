"""The neuroid coordinates of a store built from arrays (:func:`~neuroalign.store.from_arrays`):
one value per neuroid, voxel indices in a volume, hemispheres and ROI masks, each checked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError, DimensionError
from neuroalign.store._schema import ROI_PREFIX

_ROI_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_HEMIS = {"lh": "lh", "left": "lh", "l": "lh", "rh": "rh", "right": "rh", "r": "rh"}


def _per_neuroid(values: Any, n: int, *, name: str, func: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise DimensionError(
            f"Invalid value for {name!r} in {func}(): shape {arr.shape!r}. Expected one value "
            f"per neuroid ({n},)."
        )
    return arr


def _unique_or_raise(values: np.ndarray, *, name: str, func: str) -> None:
    uniq, counts = np.unique(values, axis=0, return_counts=True)
    if (counts > 1).any():
        dup = [tuple(int(x) for x in d) if np.ndim(d) else d for d in uniq[counts > 1]]
        raise DataFormatError(
            f"Invalid value for {name!r} in {func}(): duplicated value(s) "
            f"{format_list(dup, limit=5)}. Expected one per neuroid."
        )


def _volume_coords(ijk: Any, affine: Any, volume_shape: Any, n: int, func: str) -> dict:
    if affine is None or volume_shape is None:
        raise ValueError(
            f"{func}(): 'ijk' needs 'affine' (the volume's 4x4 voxel-to-mm matrix) and "
            f"'volume_shape' (X, Y, Z); got affine={affine!r:.40}, volume_shape={volume_shape!r}."
        )
    aff = np.asarray(affine, dtype=float)
    if aff.shape != (4, 4) or not np.isfinite(aff).all() or not np.allclose(aff[3], [0, 0, 0, 1]):
        raise DataFormatError(
            f"Invalid value for 'affine' in {func}(): {np.asarray(affine).tolist()!r}. Expected "
            "a finite 4x4 matrix with last row (0, 0, 0, 1)."
        )
    shape = np.asarray(volume_shape)
    if shape.shape != (3,) or shape.dtype.kind not in "iu" or (shape < 1).any():
        raise DataFormatError(
            f"Invalid value for 'volume_shape' in {func}(): {volume_shape!r}. Expected 3 positive "
            "integers (X, Y, Z)."
        )
    vox = np.asarray(ijk)
    if vox.ndim != 2 or vox.shape != (n, 3):
        raise DimensionError(
            f"Invalid value for 'ijk' in {func}(): shape {vox.shape!r}. Expected ({n}, 3): the "
            "voxel indices (i, j, k) of each neuroid."
        )
    if vox.dtype.kind not in "iu":
        raise DataFormatError(
            f"Invalid value for 'ijk' in {func}(): dtype {vox.dtype}. Expected integer voxel "
            "indices."
        )
    outside = (vox < 0).any(1) | (vox >= shape[None, :]).any(1)
    if outside.any():
        raise DataFormatError(
            f"Invalid value for 'ijk' in {func}(): voxel(s) "
            f"{format_list([tuple(map(int, v)) for v in vox[outside]], limit=5)} lie outside "
            f"volume_shape {tuple(int(s) for s in shape)!r}."
        )
    _unique_or_raise(vox, name="ijk", func=func)
    return {"i": vox[:, 0].astype(np.int64), "j": vox[:, 1].astype(np.int64),
            "k": vox[:, 2].astype(np.int64), "affine": aff.tolist(),
            "volume_shape": [int(s) for s in shape]}


def _hemispheres(values: Any, n: int, func: str) -> np.ndarray:
    arr = _per_neuroid(values, n, name="hemisphere", func=func).astype(str)
    norm = np.array([_HEMIS.get(h.lower(), "") for h in arr])
    if (norm == "").any():
        raise DataFormatError(
            f"Invalid value for 'hemisphere' in {func}(): {format_list(np.unique(arr[norm == '']))}."
            " Expected 'lh'/'left' or 'rh'/'right'."
        )
    return norm


def _roi_coords(rois: Mapping[str, Any] | None, n: int, func: str) -> dict[str, np.ndarray]:
    out = {}
    for name, mask in (rois or {}).items():
        if not isinstance(name, str) or not _ROI_NAME.fullmatch(name):
            raise ValueError(
                f"Invalid ROI name in 'rois' of {func}(): {name!r}. Expected letters, digits "
                "and '_.+-' (it becomes the coordinate 'roi_<name>')."
            )
        arr = np.asarray(mask)
        if arr.ndim != 1 or len(arr) != n:
            raise DimensionError(
                f"Invalid value for rois[{name!r}] in {func}(): shape {arr.shape!r}. Expected "
                f"one bool per neuroid ({n},)."
            )
        if arr.dtype.kind != "b":
            raise DataFormatError(
                f"Invalid value for rois[{name!r}] in {func}(): dtype {arr.dtype}. Expected "
                "bool (True where the neuroid is in the ROI); convert with mask.astype(bool) "
                "after checking what its values mean."
            )
        out[ROI_PREFIX + name] = arr.copy()
    return out
