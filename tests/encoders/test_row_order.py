"""Shuffled presentations give the same fit, and every encoder draws the same folds."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign.encoders import LayerSweep, RidgeEncoder
from neuroalign.testing import make_store


def _data(seed=0):
    rng = np.random.default_rng(seed)
    store = make_store(40, 12, n_repetitions=3, seed=seed)
    ids = np.unique(store.stimulus_id.values)
    X = rng.standard_normal((len(ids), 8))
    feats = xr.Dataset({"layer": (("stimulus", "layer_unit"), X)},
                       coords={"stimulus_id": ("stimulus", ids)})
    return store, feats


def test_ridge_cv_scores_do_not_depend_on_row_order():
    store, feats = _data()
    perm = np.random.default_rng(1).permutation(store.sizes["presentation"])
    a = RidgeEncoder(cv=5).fit(feats, store)
    b = RidgeEncoder(cv=5).fit(feats, store.isel(presentation=perm))
    np.testing.assert_allclose(a.cv_scores_, b.cv_scores_, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(a.best_alphas_, b.best_alphas_)


def test_layer_sweep_and_ridge_agree_on_one_layer():
    store, feats = _data(2)
    ridge = RidgeEncoder(cv=5).fit(feats, store)
    sweep = LayerSweep(cv=5).fit(feats, store)
    # float32 work: the same folds and alphas give the same scores to float32 rounding
    np.testing.assert_allclose(np.asarray(sweep.cv_scores_).reshape(-1), ridge.cv_scores_,
                               atol=1e-6)
    np.testing.assert_array_equal(np.asarray(sweep.best_alphas_).reshape(-1), ridge.best_alphas_)
