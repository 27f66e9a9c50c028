import numpy as np
import pytest
import xarray as xr
from enc_helpers import feature_da

from neuroalign.encoders import BandedRidgeEncoder, variance_partitioning
from neuroalign.exceptions import NotFittedError


def _two_spaces(n=200, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, 12)).astype(np.float32)
    B = rng.standard_normal((n, 16)).astype(np.float32)
    Y = np.zeros((n, 20), np.float32)
    Y[:, :10] = A @ rng.standard_normal((12, 10))  # driven by A only
    Y[:, 10:] = B @ rng.standard_normal((16, 10))  # driven by B only
    Y += 2.0 * rng.standard_normal(Y.shape).astype(np.float32)
    return A, B, Y


@pytest.fixture(scope="module")
def fitted():
    A, B, Y = _two_spaces()
    tr, te = slice(0, 160), slice(160, None)
    enc = BandedRidgeEncoder(n_iter=5, alphas=np.logspace(-1, 4, 8)).fit({"vision": A[tr], "language": B[tr]}, Y[tr])
    return enc, {"vision": A[te], "language": B[te]}, Y[te], (A, B, Y)


def test_split_r2_attributes_variance_to_the_driving_space(fitted):
    enc, Xte, Yte, _ = fitted
    split = enc.score_split(Xte, Yte)
    assert split.dims == ("space", "neuroid")
    assert split.sel(space="vision").values[:10].mean() > 0.5
    assert abs(split.sel(space="language").values[:10].mean()) < 0.05
    assert split.sel(space="language").values[10:].mean() > 0.5
    pred = enc.predict(Xte)
    yc, pc = Yte - Yte.mean(0), pred - pred.mean(0)
    r2c = 1 - ((yc - pc) ** 2).sum(0) / (yc ** 2).sum(0)
    np.testing.assert_allclose(split.sum("space").values, r2c, atol=1e-4)
    np.testing.assert_allclose(enc.predict(Xte, split=True).sum(0), pred, atol=1e-4)
    # the regularisation follows the driving space
    w = enc.space_weights_
    assert (w.sel(space="vision").values[:10] > w.sel(space="language").values[:10]).mean() > 0.8
    assert np.all(np.isfinite(enc.score(Xte, Yte)))


def test_variance_partitioning_unique_and_shared():
    A, B, Y = _two_spaces()
    tr, te = slice(0, 160), slice(160, None)
    vp = variance_partitioning({"vision": A[tr], "language": B[tr]}, Y[tr],
                               {"vision": A[te], "language": B[te]}, Y[te])
    assert vp.unique.sel(space="vision").values[:10].mean() > 0.5
    assert vp.unique.sel(space="language").values[:10].mean() < 0.1
    assert abs(vp.shared.values.mean()) < 0.1
    np.testing.assert_allclose(vp.joint_r2.values, vp.r2.sel(subset="vision+language").values)


def test_xarray_spaces_joined_on_stimulus():
    A, B, Y = _two_spaces(n=80)
    ids = np.array([f"s{i}" for i in range(80)])
    feats = xr.Dataset({"vision": feature_da(A, ids, "vision"), "language": feature_da(B, ids, "language")})
    resp = xr.DataArray(Y, dims=("stimulus", "neuroid"), coords={"stimulus_id": ("stimulus", ids)})
    enc = BandedRidgeEncoder(n_iter=3, alphas=[1.0, 100.0]).fit(feats, resp)
    assert enc.spaces_ == ["vision", "language"] and enc.coef_.shape == (28, 20)


def test_banded_errors():
    A, B, Y = _two_spaces(n=60)
    with pytest.raises(ValueError, match="at least 2 feature spaces"):
        BandedRidgeEncoder().fit({"vision": A}, Y)
    with pytest.raises(TypeError, match="Invalid value for 'X' in BandedRidgeEncoder.fit"):
        BandedRidgeEncoder().fit(A, Y)
    with pytest.raises(ValueError, match="Invalid value for 'alphas' in BandedRidgeEncoder"):
        BandedRidgeEncoder(alphas=[-1.0]).fit({"a": A, "b": B}, Y)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        BandedRidgeEncoder().predict({"a": A, "b": B})
    with pytest.raises(ValueError, match="variance_partitioning\\(\\) needs at least 2"):
        variance_partitioning({"a": A}, Y, {"a": A}, Y)


def test_predict_with_other_spaces_raises(fitted):
    from neuroalign.exceptions import DimensionError

    enc, Xte, _, _ = fitted
    with pytest.raises(DimensionError, match="differ from the fitted spaces"):
        enc.predict({"audio": Xte["vision"], "language": Xte["language"]})
