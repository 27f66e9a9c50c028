"""Fixtures of the mapping tests: a simulated brain with planted units, exact features, scores."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr

LAYERS = ["layer1", "layer2", "layer3", "layer4"]
SIM_ROIS = ["V1v", "hV4", "PPA", "FFA-1"]


def exact_features(sim) -> xr.Dataset:
    """The ground-truth network's pooled activations for every simulated image (features Dataset)."""
    from neuroalign.datasets.simulate import build_network, nsd_stimulus_id, pooled_activations

    with h5py.File(sim.store_path.parent / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5") as f:
        images = f["imgBrick"][:]
    acts = pooled_activations(build_network("resnet18", 0), images, LAYERS)
    ids = [nsd_stimulus_id(i) for i in range(len(images))]
    return xr.Dataset(
        {name: (("stimulus", f"{name}_unit"), a) for name, a in acts.items()},
        coords={"stimulus_id": ("stimulus", ids)},
        attrs={"model": "resnet18-seed0"},
    )


def sweep_scores(sim, feats: xr.Dataset) -> xr.DataArray:
    """Cross-validated ridge score of every layer for every neuroid: dims ('layer', 'neuroid')."""
    from neuroalign.encoders._scoring import pearson_r
    from neuroalign.encoders._solvers import cv_predict
    from neuroalign.mapping._units import DEFAULT_ALPHAS

    def cv_scores(X, Y, folds):  # pooled held-out predictions of the ridge core, Pearson r
        return pearson_r(cv_predict(X, Y, folds, DEFAULT_ALPHAS), Y)
    from neuroalign.store import average_repetitions, cv_folds

    av = average_repetitions(sim.store())
    pos = {s: n for n, s in enumerate(feats["stimulus_id"].values)}
    rows = np.array([pos[s] for s in av["stimulus_id"].values])
    Y = av["responses"].values
    folds = cv_folds(av, 5)
    sc = np.stack([cv_scores(feats[name].values[rows], Y, folds) for name in LAYERS])
    coords = {k: v for k, v in av.coords.items() if v.dims == ("neuroid",)}
    return xr.DataArray(sc, dims=("layer", "neuroid"), coords={"layer": LAYERS, **coords}, name="score")


@pytest.fixture(scope="session")
def nsd_features(sim_nsd_large_features):
    return sim_nsd_large_features


@pytest.fixture(scope="session")
def nsd_scores(sim_nsd_large, nsd_features):
    """Cross-validated layer scores on the large simulation (``sim_nsd_large``)."""
    return sweep_scores(sim_nsd_large, nsd_features)


@pytest.fixture(scope="session")
def sim_units(tmp_path_factory):
    """Simulated NSD brain whose ROIs read out 3 planted channels each of their layer."""
    from neuroalign.datasets import simulate

    root = tmp_path_factory.mktemp("sim") / "nsd-units"
    return simulate(root, n_images=90, n_test=18, n_sessions=3, seed=5, units_per_roi=3)


@pytest.fixture(scope="session")
def units_features(sim_units):
    return exact_features(sim_units)
