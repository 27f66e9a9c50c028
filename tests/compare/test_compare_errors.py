"""Error messages not pinned elsewhere."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.compare import (
    EnergyStochasticMetric,
    GaussianStochasticMetric,
    cka,
    compare_rdms,
    distance_matrix,
    partial_whiten,
    rdm,
)
from neuroalign.compare._rdm import vector_squareform
from neuroalign.exceptions import DataFormatError, DimensionError, StimulusMismatchError


def test_input_errors():
    with pytest.raises(DataFormatError, match="an object array"):
        rdm(np.array([[1, "a"], [2, None]], dtype=object))
    da = xr.DataArray(np.zeros((3, 4, 2)), dims=("stimulus", "neuroid", "time"))
    with pytest.raises(DimensionError, match="rsa_timecourse\\(\\) for time-resolved"):
        rdm(da)
    ids = np.array(["a", "a", "b"])
    X = xr.DataArray(np.random.default_rng(0).standard_normal((3, 4)), dims=("stimulus", "u"),
                     coords={"stimulus_id": ("stimulus", ids)})
    with pytest.raises(StimulusMismatchError, match="repeated stimulus_id"):
        cka(X, X)


def test_compare_rdms_input_errors():
    with pytest.raises(DimensionError, match="Expected square RDMs \\(k, n, n\\)"):
        compare_rdms(np.zeros((2, 3, 4)), np.zeros(6))
    with pytest.raises(DimensionError, match="Expected an RDM with dims"):
        compare_rdms(xr.DataArray(np.zeros((3, 3)), dims=("a", "b")), np.zeros(3))
    with pytest.raises(DimensionError, match="Expected an RDM \\(n, n\\)"):
        compare_rdms(np.zeros((2, 2, 2, 2)), np.zeros(3))
    a = np.array([np.nan, np.nan, 1.0])
    with pytest.raises(ValueError, match="fewer than 2 dissimilarities"):
        compare_rdms(a, np.array([1.0, 2.0, 3.0]), "pearson")
    with pytest.raises(DimensionError, match="length 4 is not an upper triangle"):
        vector_squareform(np.zeros(4))


def test_shape_and_stochastic_option_errors():
    X = np.random.default_rng(0).standard_normal((10, 3))
    with pytest.raises(ValueError, match="'alpha' in partial_whiten\\(\\): -1"):
        partial_whiten(X, -1)
    with pytest.raises(TypeError, match="'metric' in distance_matrix\\(\\): int"):
        distance_matrix([X, X], 3)
    with pytest.raises(ValueError, match="a system is zero after centring"):
        distance_matrix([X, np.ones((10, 3))])
    g = (X, np.stack([np.eye(3)] * 10))
    with pytest.raises(ValueError, match="'n_restarts' in GaussianStochasticMetric\\(\\): 0"):
        GaussianStochasticMetric(n_restarts=0).fit(g, g)
    with pytest.raises(ValueError, match="'group' in EnergyStochasticMetric\\(\\): 'x'"):
        EnergyStochasticMetric(group="x").fit(np.zeros((2, 2, 3)), np.zeros((2, 2, 3)))


def test_permutation_group_stochastic():
    rng = np.random.default_rng(1)
    means = rng.standard_normal((5, 3))
    covs = np.stack([np.eye(3)] * 5)
    perm = np.eye(3)[[2, 0, 1]]
    d = GaussianStochasticMetric(1.0, group="perm").fit_score((means, covs), (means @ perm, covs))
    assert d < 1e-8
