"""Image grids: rows of images saved as one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["save_grid"]

#: Side (pixels) up to which ``save_grid`` enlarges the images.
_MAX_UPSAMPLED = 256


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
        Upsampling factor of the largest image size, up to tiles of 256 pixels: small
        images (e.g. 32 px) are enlarged to be seen, large ones (e.g. 512 px unCLIP
        samples) are kept at their own size.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> small = np.zeros((3, 32, 32, 3), np.uint8)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with Image.open(save_grid([small, small], f"{tmp}/grid.png")) as im:
    ...         print(im.size)  # 3 tiles of 64 px (and 2 px gaps) by 2 rows
    (198, 132)
    """
    from PIL import Image

    from neuroalign.decoders.metrics import resize_images

    big = max(r.shape[1] for r in rows)
    size = min(big * scale, max(big, _MAX_UPSAMPLED))
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
