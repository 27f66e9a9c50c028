"""FeatureCache.write goes straight to the zarr arrays: values land in their rows, a batch
of the wrong shape or dtype is refused by name."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.features._cache import FeatureCache


def _template(n=6):
    return xr.Dataset(
        {"layer1": (("stimulus", "layer1_unit"), np.zeros((n, 3), dtype=np.float32)),
         "blocks.2": (("stimulus", "blocks.2_unit"), np.zeros((n, 2), dtype=np.float32))},
        coords={"stimulus_id": ("stimulus", [f"s{i}" for i in range(n)])})


def test_batches_land_in_their_rows_in_any_order(tmp_path):
    cache = FeatureCache(tmp_path / "f.zarr", {"model": "m"})
    cache.initialise(_template(), chunk=2)
    rng = np.random.default_rng(0)
    full = {"layer1": rng.random((6, 3), dtype=np.float32),
            "blocks.2": rng.random((6, 2), dtype=np.float32)}
    dims = {k: v.dims for k, v in _template().data_vars.items()}
    for start in (4, 0, 2):  # out of order, as a resumed run writes them
        cache.write(start, start + 2, {k: v[start:start + 2] for k, v in full.items()}, dims)
    assert cache.done == {0, 2, 4}
    ds = xr.open_zarr(cache.partial, consolidated=False)
    for k, v in full.items():
        np.testing.assert_array_equal(ds[k].values, v)


def test_wrong_shape_or_dtype_is_refused(tmp_path):
    cache = FeatureCache(tmp_path / "f.zarr", {"model": "m"})
    cache.initialise(_template(), chunk=2)
    dims = {k: v.dims for k, v in _template().data_vars.items()}
    ok = {"blocks.2": np.zeros((2, 2), dtype=np.float32)}
    with pytest.raises(ValueError, match=r"layer 'layer1' have shape \(4,\) .* holds \(3,\)"):
        cache.write(0, 2, {"layer1": np.zeros((2, 4), dtype=np.float32), **ok}, dims)
    with pytest.raises(ValueError, match=r"layer 'layer1' .* dtype float64 .* float32"):
        cache.write(0, 2, {"layer1": np.zeros((2, 3)), **ok}, dims)
    assert cache.done == set()
