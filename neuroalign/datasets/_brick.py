"""Lazy access to an image brick in HDF5 (NSD's ``nsd_stimuli.hdf5`` ``imgBrick``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neuroalign.exceptions import DataFormatError

__all__ = ["HDF5Brick"]


class HDF5Brick:
    """Images stored as one HDF5 dataset of shape (n_images, height, width, 3), uint8.

    Nothing is read when the object is made, beyond the dataset's shape; pixels are read
    only for the rows asked for. h5py fancy indexing needs increasing unique indices, so
    the rows are read sorted and unique and then put back in the order asked for
    (the card datasets/nsd.toml).

    Parameters
    ----------
    path : path-like
        The HDF5 file (NSD: ``nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5``).
    key : str
        The dataset inside it (NSD: ``"imgBrick"``).

    Examples
    --------
    >>> brick = HDF5Brick(root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5")  # doctest: +SKIP
    >>> brick[[2950, 12, 2950]].shape  # doctest: +SKIP
    (3, 425, 425, 3)
    """

    def __init__(self, path: str | os.PathLike, key: str = "imgBrick") -> None:
        from neuroalign.datasets._formats import h5_dataset, open_hdf5

        self.path = Path(path)
        self.key = key
        with open_hdf5(self.path) as f:
            d = h5_dataset(f, self.path, key, ndim=4, dtype="uint8", axes="images, height, width, 3")
            if d.shape[3] != 3:
                raise DataFormatError(
                    f"{self.path}: dataset {key!r} has shape {d.shape!r}, expected "
                    "(n_images, height, width, 3) RGB."
                )
            self.shape: tuple[int, ...] = tuple(d.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"HDF5Brick({str(self.path)!r}, key={self.key!r}, shape={self.shape!r})"

    def __getitem__(self, index: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """Images at 0-based rows ``index``: (H, W, 3) for an int, (n, H, W, 3) otherwise."""
        from neuroalign.datasets._formats import h5_read, open_hdf5

        scalar = np.ndim(index) == 0
        rows = np.atleast_1d(np.asarray(index))
        if rows.dtype.kind not in "iu":
            raise TypeError(f"HDF5Brick indices must be integers, got dtype {rows.dtype!s}.")
        bad = rows[(rows < 0) | (rows >= len(self))]
        if bad.size:
            raise IndexError(
                f"{self.path}: image index {int(bad[0])} out of range; the brick holds "
                f"{len(self)} images (0-based rows 0..{len(self) - 1})."
            )
        uniq, inverse = np.unique(rows, return_inverse=True)
        with open_hdf5(self.path) as f:
            block = (h5_read(f[self.key], self.path, uniq.tolist()) if uniq.size
                     else np.empty((0, *self.shape[1:]), np.uint8))
        out = block[inverse.ravel()]
        return out[0] if scalar else out
