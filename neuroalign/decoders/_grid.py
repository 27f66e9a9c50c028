"""Image grids: rows of images saved as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["save_grid"]


def save_grid(rows: list[np.ndarray], path: str | Path, *, scale: int = 2) -> Path:
    """Save rows of images as one PNG grid.

    Parameters
    ----------
    rows : list of ndarray
        uint8 images, each row ``(n, H, W, 3)`` (rows may differ in size; each image is
        resized to the largest).
    path : path-like
        The PNG file.
    scale : int
        Upsampling factor of the largest image size.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from PIL import Image

    from neuroalign.decoders.metrics import resize_images

    size = max(r.shape[1] for r in rows) * scale
    n = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (size + 2), n * (size + 2), 3), 255, np.uint8)
    for i, row in enumerate(rows):
        row = np.round(resize_images(row, size) * 255).astype(np.uint8)
        for j, img in enumerate(row):
            canvas[i * (size + 2):i * (size + 2) + size, j * (size + 2):j * (size + 2) + size] = img
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path
