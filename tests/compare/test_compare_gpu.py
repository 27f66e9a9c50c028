"""The torch path on a CUDA device gives the numpy numbers (skipped without a GPU)."""

import numpy as np
import pytest
import torch

from neuroalign.compare import cka, distance_matrix, rdm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_cuda_equals_numpy():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((50, 30)), rng.standard_normal((50, 20))
    for metric in ("correlation", "euclidean", "sqeuclidean"):
        np.testing.assert_allclose(rdm(X, metric, device="cuda").values, rdm(X, metric).values,
                                   rtol=1e-8, atol=1e-10)
    assert cka(X, Y, "rbf", device="cuda") == pytest.approx(cka(X, Y, "rbf"), rel=1e-8)
    np.testing.assert_allclose(distance_matrix([X, Y, X[:, :10]], "cca", device="cuda").values,
                               distance_matrix([X, Y, X[:, :10]], "cca").values, rtol=1e-6)


def test_cuda_rank_deficient_and_scaled_inputs():
    from neuroalign.compare import ShapeMetric

    rng = np.random.default_rng(1)
    wide = [rng.standard_normal((12, 30)) * 1e-6, rng.standard_normal((12, 18)) * 1e6]
    L = rng.standard_normal((40, 3))
    low = [L @ rng.standard_normal((3, 9)), np.c_[L, L[:, :1] * 2, np.full(40, 1e12 / 3)]]
    for systems in (wide, low):
        for metric in (ShapeMetric(0.0), ShapeMetric(0.3, "euclidean"), ShapeMetric(1.0)):
            np.testing.assert_allclose(distance_matrix(systems, metric, device="cuda").values,
                                       distance_matrix(systems, metric).values,
                                       rtol=1e-8, atol=1e-7)
    assert cka(low[0] * 1e-13, low[1], device="cuda") == pytest.approx(cka(low[0], low[1]),
                                                                        rel=1e-8)


def test_cuda_searchlight_equals_numpy():
    from neuroalign.compare import searchlight

    rng = np.random.default_rng(2)
    ijk = np.argwhere(np.ones((6, 6, 6), dtype=bool))
    data, models = rng.standard_normal((10, len(ijk))), rng.random((2, 45))
    for method in ("spearman", "pearson"):
        np.testing.assert_allclose(
            searchlight(data, models, ijk=ijk, radius=2, method=method, device="cuda").values,
            searchlight(data, models, ijk=ijk, radius=2, method=method).values,
            rtol=1e-8, atol=1e-10, equal_nan=True)
