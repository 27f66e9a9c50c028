"""Reading a store's stimulus pixels (the ``stimulus_set`` attr written by the adapters)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign.exceptions import DataFormatError

__all__ = ["store_images"]


def store_images(store: xr.Dataset) -> np.ndarray:
    """uint8 images ``(n_samples, H, W, 3)``, one per row of ``store`` (presentation or stimulus).

    Supports ``stimulus_set = {"kind": "hdf5-brick", "path", "key", "id_coord"}`` (NSD) and
    ``{"kind": "image-files", "root", "file_coord"}`` (THINGS-EEG2).

    Parameters
    ----------
    store : xr.Dataset
        A store whose ``stimulus_set`` attribute says where its images are.

    Returns
    -------
    ndarray of uint8, shape (n_samples, H, W, 3)
        The image of each row.
    """
    spec = store.attrs.get("stimulus_set")
    if not isinstance(spec, dict) or "kind" not in spec:
        raise DataFormatError(
            "The store has no 'stimulus_set' attribute saying where its images are; got "
            f"{spec!r}. Expected a dict with 'kind' 'hdf5-brick' or 'image-files'."
        )
    if spec["kind"] == "hdf5-brick":
        import h5py

        coord = spec.get("id_coord", "nsd_id")
        rows = np.asarray(store.coords[coord].values, dtype=int)
        uniq, inv = np.unique(rows, return_inverse=True)
        with h5py.File(spec["path"], "r") as f:
            brick = f[spec["key"]][uniq.tolist()]
        return np.asarray(brick, dtype=np.uint8)[inv]
    if spec["kind"] == "image-files":
        from PIL import Image

        root = Path(spec["root"])
        files = np.asarray(store.coords[spec.get("file_coord", "image_file")].values).astype(str)
        cache: dict[str, np.ndarray] = {}
        out = []
        for name in files:
            if name not in cache:
                cache[name] = np.asarray(Image.open(root / name).convert("RGB"), dtype=np.uint8)
            out.append(cache[name])
        return np.stack(out)
    raise DataFormatError(
        f"Unknown stimulus_set kind {spec['kind']!r}. Expected 'hdf5-brick' or 'image-files'."
    )
