"""Exact features and layer-sweep scores for a simulated brain (the CLI's self-contained path).

Uses the ground-truth network of a :class:`~neuroalign.datasets.simulate.SimulationResult`
and the private closed-form ridge (to be replaced by ``neuroalign.encoders.LayerSweep``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger, progress

__all__ = ["simulated_images", "simulated_features", "simulated_scores", "SIM_LAYERS"]

log = get_logger(__name__)

SIM_LAYERS = ("layer1", "layer2", "layer3", "layer4")


def simulated_images(sim, store: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images of the store's stimuli (averaged store order) and their stimulus ids,
    read by :class:`neuroalign.stimuli.StimulusSet` from the store's ``stimulus_set``."""
    from neuroalign.stimuli import StimulusSet
    from neuroalign.store import average_repetitions, is_trial_level

    av = average_repetitions(store) if is_trial_level(store) else store
    ids = np.asarray(av["stimulus_id"].values).astype(str)
    stimuli = StimulusSet.from_store(av)
    return np.stack(stimuli.load(stimuli.positions(ids.tolist()).tolist())), ids


def simulated_features(sim, store: xr.Dataset | None = None, layers=SIM_LAYERS) -> xr.Dataset:
    """Features Dataset (``(stimulus, <layer>_unit)`` per layer) of the simulation's network."""
    from neuroalign.datasets.simulate import build_network, pooled_activations

    store = sim.store() if store is None else store
    imgs, ids = simulated_images(sim, store)
    model = sim.truth["model"]
    log.info("features of %s (seed %s) for %d images", model["arch"], model["seed"], len(imgs))
    acts = pooled_activations(build_network(model["arch"], int(model["seed"])), imgs, list(layers))
    return xr.Dataset(
        {name: (("stimulus", f"{name}_unit"), a) for name, a in acts.items()},
        coords={"stimulus_id": ("stimulus", ids)},
        attrs={"model": f"{model['arch']}-seed{model['seed']}"},
    )


def simulated_scores(sim, store: xr.Dataset, features: xr.Dataset, *, n_splits: int = 5) -> xr.DataArray:
    """Cross-validated ridge score (Pearson r) of each layer: dims ``('layer', 'neuroid'[, 'time'])``."""
    from neuroalign.encoders._scoring import pearson_r
    from neuroalign.encoders._solvers import cv_predict
    from neuroalign.mapping._units import DEFAULT_ALPHAS
    from neuroalign.store import average_repetitions, cv_folds, is_trial_level
    from neuroalign.store._join import match_stimuli

    av = average_repetitions(store) if is_trial_level(store) else store
    resp = av["responses"].transpose("stimulus", "neuroid", ...)
    pos = match_stimuli(features["stimulus_id"].values, av["stimulus_id"].values,
                        func="simulated_scores")
    Y = np.asarray(resp.values, dtype=float).reshape(resp.shape[0], -1)
    folds = cv_folds(av, n_splits)
    layers = [str(v) for v in features.data_vars]
    sc = np.stack([
        pearson_r(cv_predict(np.asarray(features[name].values)[pos], Y, folds, DEFAULT_ALPHAS),
                  Y).reshape(resp.shape[1:])
        for name in progress(layers, desc="layer sweep", unit="layer")
    ])
    coords = {k: v for k, v in av.coords.items() if v.dims in (("neuroid",), ("time",))}
    return xr.DataArray(sc, dims=("layer",) + resp.dims[1:], coords={"layer": layers, **coords},
                        name="score")
