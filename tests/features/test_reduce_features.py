"""reduce(): PCA on training stimuli only, random projection, spatial pooling."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from neuroalign.exceptions import DimensionError, StimulusMismatchError
from neuroalign.features import reduce


def _features(n=20, p=12, seed=0):
    rng = np.random.default_rng(seed)
    ds = xr.Dataset(
        {"a": (("stimulus", "a_unit"), rng.standard_normal((n, p))),
         "t": (("stimulus", "token", "t_unit"), rng.standard_normal((n, 1 + 16, 3)),
               {"token_grid": [4, 4], "n_prefix_tokens": 1})},
        coords={"stimulus_id": ("stimulus", [f"s{i}" for i in range(n)]),
                "token_row": ("token", np.r_[-1, np.repeat(np.arange(4), 4)])},
        attrs={"model": "m"},
    )
    return ds


def test_pca_fitted_on_training_stimuli_only():
    from sklearn.decomposition import PCA

    ds = _features()
    train = [f"s{i}" for i in range(12)]
    out = reduce(ds, "pca", n_components=3, train=train, layers=["a"])
    ref = PCA(3).fit(ds["a"].values[:12]).transform(ds["a"].values)
    np.testing.assert_allclose(np.abs(out["a"].values), np.abs(ref), atol=1e-8)
    assert out["a"].dims == ("stimulus", "a_unit") and out["a"].shape == (20, 3)
    # changing the test stimuli does not change the fitted components
    ds2 = ds.copy(deep=True)
    ds2["a"].values[12:] *= 100
    out2 = reduce(ds2, "pca", n_components=3, train=train, layers=["a"])
    np.testing.assert_allclose(out2["a"].values[:12], out["a"].values[:12], atol=1e-8)
    assert "fitted_on=12" in out["a"].attrs["reduction"]
    xr.testing.assert_identical(out["t"], ds["t"])  # not in layers: kept
    mask = reduce(ds, "pca", n_components=3, train=np.arange(20) < 12, layers=["a"])
    np.testing.assert_allclose(mask["a"].values, out["a"].values)


def test_pca_requires_train_and_known_ids():
    ds = _features()
    with pytest.raises(ValueError, match="PCA is fitted on the training stimuli only"):
        reduce(ds, "pca")
    with pytest.raises(StimulusMismatchError, match="'nope'"):
        reduce(ds, "pca", train=["s1", "nope"])
    with pytest.raises(ValueError, match="1 training stimuli. Expected at least 2"):
        reduce(ds, "pca", train=["s1"])
    with pytest.raises(ValueError, match="Invalid value for 'method' in reduce\\(\\): 'ica'"):
        reduce(ds, "ica")
    with pytest.raises(ValueError, match="Invalid value for 'layers' in reduce\\(\\): \\['zz'\\]"):
        reduce(ds, "random", layers=["zz"])


def test_random_projection_seeded_and_float16():
    ds = _features()
    a = reduce(ds, "random", n_components=5, seed=1, dtype="float16")
    b = reduce(ds, "random", n_components=5, seed=1, dtype="float16")
    c = reduce(ds, "random", n_components=5, seed=2)
    assert a["a"].shape == (20, 5) and a["a"].dtype == np.float16
    assert a["t"].dims == ("stimulus", "t_unit") and a["t"].shape == (20, 5)
    np.testing.assert_array_equal(a["a"].values, b["a"].values)
    assert not np.allclose(a["a"].values.astype(float), c["a"].values)
    # distances are roughly preserved (Johnson-Lindenstrauss) with many components
    big = reduce(ds, "random", n_components=2000, layers=["a"])
    d0 = np.linalg.norm(ds["a"].values[0] - ds["a"].values[1])
    d1 = np.linalg.norm(big["a"].values[0] - big["a"].values[1])
    assert abs(d1 / d0 - 1) < 0.15


def test_spatial_pooling_of_token_features():
    ds = _features()
    out = reduce(ds, "spatial", grid=(2, 2), layers=["t"])
    assert out["t"].shape == (20, 3 * 4)
    patches = ds["t"].values[:, 1:].reshape(20, 4, 4, 3)
    top_left = patches[:, :2, :2].mean(axis=(1, 2))  # (20, 3)
    np.testing.assert_allclose(out["t"].values.reshape(20, 3, 4)[:, :, 0], top_left, atol=1e-6)
    assert "token_row" not in out.coords
    with pytest.raises(DimensionError, match="layer 'a' has dims \\('stimulus', 'a_unit'\\)"):
        reduce(ds, "spatial", layers=["a"])
