"""The encoders and feature extraction on a CUDA device give the CPU's numbers (skipped
without a GPU).

``NEUROALIGN_GPU_TESTS_DEVICE=cpu`` runs this module without a GPU, on torch tensors on
the CPU (the ridge core's torch path), to check the tests themselves::

    NEUROALIGN_GPU_TESTS_DEVICE=cpu python -m pytest -n 0 -m gpu tests/encoders/test_encoders_gpu.py
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import xarray as xr

torch = pytest.importorskip("torch")

from neuroalign.encoders import BandedRidgeEncoder, LayerSweep, RidgeEncoder  # noqa: E402
from neuroalign.store import open_store, save_store  # noqa: E402
from neuroalign.testing import make_store  # noqa: E402

DEVICE = os.environ.get("NEUROALIGN_GPU_TESTS_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE != "cpu" and not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
ALPHAS = np.logspace(-3, 5, 12)


@pytest.fixture
def on_device(monkeypatch):
    """A context in which ``device=DEVICE`` solves on torch (on the CPU for a dry run)."""
    @contextlib.contextmanager
    def ctx():
        if DEVICE != "cpu":
            yield
            return
        import neuroalign.encoders._solvers as solvers
        from neuroalign.encoders._backend import TorchOps

        with monkeypatch.context() as m:
            m.setattr(solvers, "compute_backend", lambda *arrays: TorchOps("cpu"))
            yield
    return ctx


def _data(n, p, t, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * rng.uniform(0.5, 3.0, p) + rng.uniform(-50, 50, p)
    W = rng.standard_normal((p, t)) * rng.uniform(0.0, 0.4, t)
    Y = ((X - X.mean(0)) @ W + rng.standard_normal((n, t)) + 20.0) * scale
    return X, Y


def _same_fit(a, b, *, rtol):
    np.testing.assert_array_equal(a.best_alphas_, b.best_alphas_)
    np.testing.assert_allclose(a.cv_scores_, b.cv_scores_, rtol=rtol, atol=1e-12)
    scale = np.abs(a.coef_).max()
    np.testing.assert_allclose(np.asarray(a.coef_), np.asarray(b.coef_), rtol=rtol,
                               atol=rtol * scale)


@pytest.mark.parametrize(("n", "p"), [(80, 30), (60, 150)])  # primal, and dual (p > n)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scale", [1.0, 1e-13])
def test_ridge_in_float64_equals_the_cpu(n, p, seed, scale, on_device):
    X, Y = _data(n, p, 17, seed, scale)
    kw = dict(alphas=ALPHAS, cv=4, dtype="float64")
    ref = RidgeEncoder(device="cpu", **kw).fit(X, Y)
    with on_device():
        got = RidgeEncoder(device=DEVICE, **kw).fit(X, Y)
        pred = np.asarray(got.predict(X[:9]))
    assert got.form_ == ref.form_ == ("primal" if p < n else "dual")
    _same_fit(ref, got, rtol=1e-8)
    np.testing.assert_allclose(pred, np.asarray(ref.predict(X[:9])), rtol=1e-8,
                               atol=1e-8 * np.abs(Y).max())


def test_ridge_in_float32_equals_the_cpu_to_float32(on_device):
    X, Y = _data(200, 40, 300, 3)
    kw = dict(alphas=ALPHAS, cv=5, dtype="float32")
    ref = RidgeEncoder(device="cpu", **kw).fit(X, Y)
    with on_device():
        got = RidgeEncoder(device=DEVICE, **kw).fit(X, Y)
    assert np.mean(ref.best_alphas_ == got.best_alphas_) >= 0.95
    same = ref.best_alphas_ == got.best_alphas_
    np.testing.assert_allclose(got.cv_scores_[same], ref.cv_scores_[same], rtol=1e-3, atol=1e-5)


def _store_features(seed):
    store = make_store(n_stimuli=40, n_neuroids=33, seed=seed, dtype=np.float64)
    values = store["responses"].values.copy()
    values[:, 4] = np.nan   # a dead neuroid
    values[:, 20] = 3.0     # a constant one
    store["responses"] = (store["responses"].dims, values)
    rng = np.random.default_rng(seed)
    ids = np.unique(store["stimulus_id"].values)[::-1]
    feats = xr.DataArray(rng.standard_normal((ids.size, 12)), dims=("stimulus", "unit"),
                         coords={"stimulus_id": ("stimulus", ids)}, name="layer")
    return store, feats


@pytest.mark.filterwarnings("ignore::neuroalign.exceptions.DataQualityWarning")
def test_ridge_from_a_store_on_disk_equals_the_cpu_in_memory(tmp_path, on_device):
    store, feats = _store_features(0)
    opened = open_store(save_store(store, tmp_path / "s.zarr", neuroid_chunk=5))
    kw = dict(alphas=ALPHAS, cv=4, dtype="float64", n_targets_batch=8)
    ref = RidgeEncoder(device="cpu", **kw).fit(feats, store)
    with on_device():
        got = RidgeEncoder(device=DEVICE, **kw).fit(feats, opened)
    np.testing.assert_array_equal(got.valid_neuroids_, ref.valid_neuroids_)
    assert not got.valid_neuroids_[[4, 20]].any()
    _same_fit(ref, got, rtol=1e-8)


@pytest.mark.filterwarnings("ignore::neuroalign.exceptions.DataQualityWarning")
def test_layer_sweep_equals_the_cpu(on_device):
    store, feats = _store_features(1)
    rng = np.random.default_rng(5)
    layers = xr.Dataset({f"l{k}": (("stimulus", f"u{k}"), feats.values @ rng.standard_normal((12, 8 + k)))
                         for k in range(3)}, coords={"stimulus_id": feats.stimulus_id})
    kw = dict(alphas=ALPHAS, cv=4, test_split="test", dtype="float64")
    ref = LayerSweep(device="cpu", **kw).fit(layers, store)
    with on_device():
        got = LayerSweep(device=DEVICE, **kw).fit(layers, store)
    np.testing.assert_array_equal(got.best_layer_.values, ref.best_layer_.values)
    np.testing.assert_array_equal(got.best_alphas_.values, ref.best_alphas_.values)
    np.testing.assert_allclose(got.scores_.values, ref.scores_.values, rtol=1e-8, atol=1e-12)


def test_banded_ridge_equals_the_cpu():
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal((90, 10)), rng.standard_normal((90, 25))
    Y = A @ rng.standard_normal((10, 6)) + 0.3 * B @ rng.standard_normal((25, 6)) \
        + rng.standard_normal((90, 6))
    kw = dict(n_iter=4, alphas=[0.1, 1.0, 100.0], cv=3, random_state=0)
    ref = BandedRidgeEncoder(device="cpu", **kw).fit({"a": A, "b": B}, Y)
    got = BandedRidgeEncoder(device=DEVICE, **kw).fit({"a": A, "b": B}, Y)
    np.testing.assert_allclose(np.asarray(got.predict({"a": A, "b": B})),
                               np.asarray(ref.predict({"a": A, "b": B})), rtol=1e-5, atol=1e-6)
