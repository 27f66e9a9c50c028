"""A simulated ROI whose voxels look at a stimulus-dependent location.

With ``simulate(..., routing_roi=True)`` every image gets a small target object (a
two-colour checkerboard, colours drawn per image) pasted into one cell of a ``grid x grid``
layout, at a random cell per image. The routing ROI's voxels read out the ground-truth
network's activations of ``layer`` *at the target's cell* (the token of that cell after
adaptive average pooling to the grid), so where a voxel "looks" changes from image to
image. ``truth.json`` records the target cell of every image under ``"routing"``.
"""

from __future__ import annotations

import numpy as np

from neuroalign.datasets.simulate._truth import ROISpec, preprocess

__all__ = ["ROUTING_ROI", "ROUTED_SUFFIX", "place_targets", "token_activations", "routed_layer_key",
           "is_routed"]

ROUTED_SUFFIX = "@target"
#: The routing ROI added by ``routing_roi=True`` (EBA in NSD's floc-bodies atlas).
ROUTING_ROI = ROISpec("EBA", "floc-bodies", "layer3" + ROUTED_SUFFIX)


def is_routed(layer: str) -> bool:
    return layer.endswith(ROUTED_SUFFIX)


def routed_layer_key(layer: str) -> str:
    return layer + ROUTED_SUFFIX


def cell_bounds(cell: int, grid: int, size: int) -> tuple[int, int, int, int]:
    r, c = divmod(int(cell), grid)
    return (r * size // grid, (r + 1) * size // grid, c * size // grid, (c + 1) * size // grid)


def place_targets(images: np.ndarray, rng: np.random.Generator, *, grid: int = 7):
    """Paste one checkerboard target per image at a random grid cell.

    Returns
    -------
    images : ndarray (copy), target_cell : ndarray of int (row-major cell index per image)
    """
    out = images.copy()
    n, size = images.shape[0], images.shape[1]
    cells = rng.integers(0, grid * grid, size=n)
    for i in range(n):
        r0, r1, c0, c1 = cell_bounds(cells[i], grid, size)
        h, w = r1 - r0, c1 - c0
        yy, xx = np.mgrid[0:h, 0:w]
        check = ((yy // 2 + xx // 2) % 2).astype(bool)
        a = rng.integers(0, 256, 3)
        b = 255 - a
        patch = np.where(check[..., None], a, b)
        out[i, r0:r1, c0:c1] = patch.astype(np.uint8)
    return out, cells


def token_activations(model, images: np.ndarray, layer: str, *, grid: int = 7,
                      batch_size: int = 32) -> np.ndarray:
    """Activations of ``layer`` pooled to a ``grid x grid`` token layout: (N, grid², C)."""
    import torch
    import torch.nn.functional as F

    from neuroalign.features._hooks import LayerRecorder

    out = []
    # the one hook engine: token-level feature maps, then pooled to the grid
    with torch.no_grad(), LayerRecorder(model, [layer], pooling=None, modality="image") as rec:
        for start in range(0, len(images), batch_size):
            tok = rec.run(model, preprocess(images[start:start + batch_size]))[layer]  # (B, HW, C)
            h, w = rec.grids[layer]
            fmap = tok.transpose(1, 2).reshape(tok.shape[0], tok.shape[2], h, w)
            a = F.adaptive_avg_pool2d(fmap, grid)  # (B, C, g, g)
            out.append(a.flatten(2).transpose(1, 2).double().numpy())
    return np.concatenate(out)


def add_routed_layers(acts, lmean, lsd, images, arch, model_seed, rois, cells, grid):
    """Put the target-cell token activations of each routed ROI's layer into ``acts``."""
    from neuroalign.datasets.simulate._truth import build_network

    model = build_network(arch, model_seed)
    for spec in rois:
        if not is_routed(spec.layer) or spec.layer in acts:
            continue
        base = spec.layer[: -len(ROUTED_SUFFIX)]
        tokens = token_activations(model, images, base, grid=grid)
        a = tokens[np.arange(len(images)), cells]
        acts[spec.layer] = a
        lmean[spec.layer] = a.mean(0)
        sd = a.std(0)
        lsd[spec.layer] = np.where(sd > 0, sd, 1.0)
