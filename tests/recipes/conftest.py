"""A small store of the user's own (make_store) with a features file, for the recipe tests."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr


@pytest.fixture(scope="session")
def own_data(tmp_path_factory):
    """(folder, store path, features path): a store whose responses are a linear read-out of
    the features' 'good' layer plus noise, and a 'noise' layer of random features."""
    from neuroalign.store import save_store
    from neuroalign.testing import make_store

    root = tmp_path_factory.mktemp("own")
    rois = {"A": np.arange(24) < 12, "B": np.arange(24) >= 12}
    ds, sig = make_store(n_stimuli=40, n_neuroids=24, n_repetitions=2, n_test=10, rois=rois, seed=0,
                         ncsnr=2.0, return_signal=True)
    save_store(ds, root / "store.zarr")
    ids = sig["stimulus_id"].values
    rng = np.random.default_rng(1)
    feats = xr.Dataset(
        {"good": (("stimulus", "good_unit"), sig.values @ rng.standard_normal((24, 16))),
         "noise": (("stimulus", "noise_unit"), rng.standard_normal((40, 8)))},
        coords={"stimulus_id": ("stimulus", ids)},
    )
    # rows in another order than the store's: the join is by stimulus_id
    feats = feats.isel(stimulus=rng.permutation(40))
    feats.to_zarr(root / "features.zarr", zarr_format=2, consolidated=True)
    return root, root / "store.zarr", root / "features.zarr"
