"""Features from the simulated brain's ground-truth network (``model = "simulated-truth"``).

A thin layer over :func:`neuroalign.features.extract` (pooled features) and the
simulation's token activations (recorded by the same hook engine,
:class:`neuroalign.features._hooks.LayerRecorder`): a features Dataset with one variable per
layer, dims ``('stimulus', '<layer>_unit')`` and coord ``stimulus_id``. The
"simulated-truth" model of the fit recipe uses it (see the recipes).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["simulated_truth_features", "simulated_truth_tokens", "store_images"]


def store_images(store: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(stimulus ids, uint8 images) of a store, one per unique stimulus (ids sorted), read by
    :class:`neuroalign.stimuli.StimulusSet`."""
    from neuroalign.stimuli import StimulusSet

    stimuli = StimulusSet.from_store(store)
    ids = np.array(sorted(stimuli.ids))
    return ids, np.stack(stimuli.load(stimuli.positions(ids.tolist()).tolist()))


def simulated_truth_features(
    store: xr.Dataset,
    layers: list[str] | tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4"),
    *,
    arch: str = "resnet18",
    seed: int = 0,
) -> xr.Dataset:
    """Spatially pooled activations of the ground-truth network for the store's stimuli.

    This is :func:`neuroalign.features.extract` of ``"torchvision:{arch}"`` with random
    weights seeded by ``seed`` and the simulation's transform (the network and
    preprocessing the simulated brain was generated with), on the CPU, so truth features
    and ``extract`` agree by construction.

    Parameters
    ----------
    store : xr.Dataset
        A store of the simulation (its ``stimulus_set`` attribute says where the images are).
    layers : sequence of str
        Layers of the network.
    arch : str
        The torchvision architecture the simulation used.
    seed : int
        Seed of its random weights.

    Returns
    -------
    xr.Dataset
        One variable per layer on ``('stimulus', '<layer>_unit')``; one row per stimulus,
        ids sorted.
    """
    from neuroalign.features import extract
    from neuroalign.stimuli import StimulusSet

    stimuli = StimulusSet.from_store(store)
    stimuli = stimuli.subset(sorted(stimuli.ids))
    feats = extract(f"torchvision:{arch}", stimuli, layers=list(layers), pooling="mean",
                    weights=None, seed=seed, transform="simulation", device="cpu")
    return feats.assign_attrs(model=f"simulated-truth:{arch}", seed=seed)


def simulated_truth_tokens(
    store: xr.Dataset,
    layer: str = "layer3",
    *,
    grid: int = 7,
    arch: str = "resnet18",
    seed: int = 0,
) -> xr.Dataset:
    """Token-level features of the ground-truth network: ``layer`` pooled to a grid.

    Parameters
    ----------
    store : xr.Dataset
        A store of the simulation.
    layer : str
        The layer.
    grid : int
        Tokens per side (``grid * grid`` tokens).
    arch : str
        The torchvision architecture the simulation used.
    seed : int
        Seed of its random weights.

    Returns
    -------
    xr.Dataset
        Variable ``layer`` on dims ``('stimulus', 'token', '<layer>_unit')``, coord
        ``stimulus_id`` and the token's grid ``row`` and ``col``.
    """
    from neuroalign.datasets.simulate import build_network, token_activations

    ids, imgs = store_images(store)
    tokens = token_activations(build_network(arch, seed), imgs, layer, grid=grid)
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    return xr.Dataset(
        {layer: (("stimulus", "token", f"{layer}_unit"), tokens.astype(np.float32))},
        coords={"stimulus_id": ("stimulus", ids), "row": ("token", rows), "col": ("token", cols)},
        attrs={"model": f"simulated-truth:{arch}", "seed": seed, "grid": grid},
    )
