"""The ridge core on numpy and on torch: the same numbers, results of the input's kind, and
no torch for numpy input."""

import numpy as np
import pytest

from neuroalign.encoders import RidgeEncoder, ridge_cv, ridge_refit
from neuroalign.store import cv_folds

torch = pytest.importorskip("torch")

ALPHAS = np.logspace(-3, 5, 12)


def make(n, p, t=15, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * rng.uniform(0.5, 3.0, p) + rng.uniform(-50, 50, p)
    W = rng.standard_normal((p, t)) * rng.uniform(0.0, 0.4, t)
    Y = (X - X.mean(0)) @ W + rng.standard_normal((n, t)) + 20.0
    return X, Y


@pytest.fixture
def torch_cpu(monkeypatch):
    """A callable that switches the core to torch for CPU tensors (one torch thread: its
    OpenMP threads spin for long on a loaded machine)."""
    import neuroalign.encoders._backend as backend
    from neuroalign._config import thread_limits

    with thread_limits(1, blas=False):
        yield lambda: monkeypatch.setattr(backend, "TORCH_ON_CPU", True)


@pytest.mark.parametrize("cv", ["primal", "dual", "loo"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_numpy_and_torch_agree_in_float64(cv, fit_intercept, seed, torch_cpu):
    X, Y = make(60, 25 if cv != "dual" else 90, seed=seed)
    folds = "loo" if cv == "loo" else cv_folds(np.arange(len(X)).astype(str), 4)
    form = None if cv == "loo" else cv
    kw = dict(fit_intercept=fit_intercept, form=form, refit=True, n_targets_batch=7)
    a = ridge_cv(X, Y, ALPHAS, folds, **kw)
    torch_cpu()
    b = ridge_cv(torch.from_numpy(X), torch.from_numpy(Y), ALPHAS, folds, **kw)
    assert isinstance(a.coef, np.ndarray) and torch.is_tensor(b.coef)
    assert a.form == b.form == ("loo" if cv == "loo" else cv)
    np.testing.assert_array_equal(a.best_alphas, b.best_alphas)
    np.testing.assert_allclose(a.cv_mse, b.cv_mse, rtol=1e-10)
    np.testing.assert_allclose(a.cv_r2, b.cv_r2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.cv_scores, b.cv_scores, rtol=1e-9, atol=1e-12)
    scale = np.abs(a.coef).max()
    np.testing.assert_allclose(a.coef, b.coef.numpy(), rtol=1e-8, atol=1e-10 * scale)
    np.testing.assert_allclose(a.intercept, b.intercept.numpy(), rtol=1e-9)
    np.testing.assert_allclose(a.x_offset, b.x_offset, rtol=1e-12)
    np.testing.assert_allclose(a.y_offset, b.y_offset, rtol=1e-12)
    assert a.alpha_scale == pytest.approx(b.alpha_scale, rel=1e-12)
    ca, ia = ridge_refit(X, Y, a.best_alphas, fit_intercept=fit_intercept, form=form)
    cb, ib = ridge_refit(torch.from_numpy(X), torch.from_numpy(Y), a.best_alphas,
                         fit_intercept=fit_intercept, form=form)
    np.testing.assert_allclose(ca, cb.numpy(), rtol=1e-8, atol=1e-10 * scale)
    np.testing.assert_allclose(ia, ib.numpy(), rtol=1e-9)
    if cv != "loo":  # the refit of ridge_cv is ridge_refit at the chosen alphas
        np.testing.assert_allclose(a.coef, ca, rtol=1e-9, atol=1e-12 * scale)


@pytest.mark.parametrize("cv", ["primal", "dual", "loo"])
def test_numpy_and_torch_agree_in_float32(cv, torch_cpu):
    X, Y = make(80, 20 if cv != "dual" else 120, t=40, seed=3)
    folds = "loo" if cv == "loo" else cv_folds(np.arange(len(X)).astype(str), 5)
    form = None if cv == "loo" else cv
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    a = ridge_cv(X32, Y32, ALPHAS, folds, form=form, refit=True)
    torch_cpu()
    b = ridge_cv(torch.from_numpy(X32), torch.from_numpy(Y32), ALPHAS, folds, form=form,
                 refit=True)
    assert a.coef.dtype == np.float32 and b.coef.dtype == torch.float32
    assert np.mean(a.best_alphas == b.best_alphas) >= 0.95
    np.testing.assert_allclose(a.cv_mse, b.cv_mse, rtol=1e-4)
    same = a.best_alphas == b.best_alphas
    np.testing.assert_allclose(a.coef[:, same], b.coef.numpy()[:, same], rtol=1e-3,
                               atol=1e-4 * np.abs(a.coef).max())


def test_cpu_tensors_are_solved_with_numpy_and_come_back_as_tensors():
    X, Y = make(50, 12, seed=4)
    folds = cv_folds(np.arange(len(X)).astype(str), 5)
    a = ridge_cv(X, Y, ALPHAS, folds, refit=True)
    b = ridge_cv(torch.from_numpy(X), torch.from_numpy(Y), ALPHAS, folds, refit=True)
    assert torch.is_tensor(b.coef) and torch.is_tensor(b.intercept)
    assert b.coef.device.type == "cpu" and b.coef.dtype == torch.float64
    # the same code on the same numbers: identical, not merely close
    np.testing.assert_array_equal(a.coef, b.coef.numpy())
    np.testing.assert_array_equal(a.cv_mse, b.cv_mse)
    # mixed kinds are accepted, and the result takes the tensor's kind
    c = ridge_cv(X, torch.from_numpy(Y), ALPHAS, folds, refit=True)
    assert torch.is_tensor(c.coef)
    np.testing.assert_array_equal(a.coef, c.coef.numpy())


@pytest.mark.parametrize("dtype", ["float32", np.float32, np.dtype("float32"), "torch"])
def test_dtype_may_be_named_or_numpy_or_torch(dtype):
    X, Y = make(40, 8, seed=5)
    folds = cv_folds(np.arange(len(X)).astype(str), 4)
    ref = ridge_cv(X.astype(np.float32), Y, ALPHAS, folds, refit=True)
    res = ridge_cv(X, Y, ALPHAS, folds, refit=True,
                   dtype=torch.float32 if dtype == "torch" else dtype)
    assert res.coef.dtype == np.float32
    np.testing.assert_allclose(res.cv_mse, ref.cv_mse, rtol=1e-4)
    # no dtype: the data's own (float64 here)
    assert ridge_cv(X, Y, ALPHAS, folds, refit=True).coef.dtype == np.float64
    # integer data work in float64
    assert ridge_cv(np.round(X).astype(np.int64), Y, ALPHAS, folds, refit=True).coef.dtype == np.float64


def test_encoder_on_cpu_passes_numpy_to_the_core(monkeypatch):
    import neuroalign.encoders._ridge as ridge_mod

    seen = []
    real = ridge_mod.ridge_cv

    def spy(X, Y, *args, **kwargs):
        seen.append((type(X), type(Y)))
        return real(X, Y, *args, **kwargs)

    monkeypatch.setattr(ridge_mod, "ridge_cv", spy)
    X, Y = make(40, 8, seed=6)
    for device in ("cpu", "auto"):
        RidgeEncoder(alphas=ALPHAS, device=device).fit(X.astype(np.float32), Y)
    if not torch.cuda.is_available():
        assert seen == [(np.ndarray, np.ndarray)] * 2


def test_non_finite_targets_raise_without_numpy_warnings():
    import warnings

    from neuroalign.exceptions import DataFormatError

    X, Y = make(30, 4, seed=7)
    Y[3, 1], Y[5, 2] = np.inf, np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataFormatError, match=r"'Y' holds NaN or infinite values in 2 "
                                                  r"target columns 1, 2\."):
            ridge_cv(X, Y, ALPHAS, [(np.arange(20), np.arange(20, 30))])
