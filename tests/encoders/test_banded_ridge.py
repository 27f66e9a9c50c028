import numpy as np
import pytest
import xarray as xr
from enc_helpers import feature_da

from neuroalign.encoders import BandedRidgeEncoder, RidgeEncoder, variance_partitioning
from neuroalign.exceptions import NotFittedError

VP_ENCODER = RidgeEncoder(alphas=np.logspace(-1, 4, 6), device="cpu")


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


def test_matches_himalaya_group_ridge_on_identical_inputs():
    """Same folds, alphas, iterations and seed as himalaya's GroupRidgeCV (alias
    BandedRidgeCV): identical space weights and weights; cv_scores_ is the CV R² at the
    chosen hyperparameters (brute force with scikit-learn), not himalaya's -MSE."""
    from himalaya.ridge import BandedRidgeCV
    from sklearn.linear_model import Ridge

    from neuroalign.store import cv_folds

    A, B, Y = _two_spaces(n=90, seed=2)
    Y = Y[:, ::2]
    alphas = np.logspace(-1, 4, 6)
    enc = BandedRidgeEncoder(n_iter=5, alphas=alphas, cv=3, device="cpu").fit({"a": A, "b": B}, Y)
    folds = cv_folds(np.arange(90).astype(str), 3)
    ref = BandedRidgeCV(groups="input", fit_intercept=True, cv=folds, random_state=0,
                        solver_params={"alphas": alphas, "n_iter": 5, "progress_bar": False}).fit([A, B], Y)
    np.testing.assert_allclose(enc.space_weights_.values, np.exp(ref.deltas_), rtol=1e-6)
    np.testing.assert_allclose(enc.coef_, ref.coef_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(enc.intercept_, ref.intercept_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(enc.best_alphas_, ref.best_alphas_, rtol=1e-5)
    w = enc.space_weights_.values
    brute = np.zeros(Y.shape[1])
    for t in range(Y.shape[1]):
        Z = np.concatenate([A * np.sqrt(w[0, t]), B * np.sqrt(w[1, t])], 1)
        r2 = []
        for tr, va in folds:
            p = Ridge(alpha=1.0).fit(Z[tr], Y[tr, t]).predict(Z[va])
            r2.append(1 - ((Y[va, t] - p) ** 2).sum() / ((Y[va, t] - Y[va, t].mean()) ** 2).sum())
        brute[t] = np.mean(r2)
    np.testing.assert_allclose(enc.cv_scores_, brute, atol=1e-5)
    assert np.all(enc.cv_scores_ <= 1) and np.median(enc.cv_scores_) > 0.3
    ds = enc.to_dataset()
    assert ds.attrs["metric"] == "r2" and ds.attrs["score_kind"] == "cv"
    assert ds.attrs["cv"] == "3-fold, stimulus-grouped, shuffled with seed 0 (neuroalign.store.cv_folds)"
    np.testing.assert_array_equal(ds["score"].values[0], enc.cv_scores_)


def test_split_r2_matches_himalaya_and_sums_to_joint(fitted):
    from himalaya.scoring import r2_score_split

    enc, Xte, Yte, _ = fitted
    split = enc.score_split(Xte, Yte)
    parts = enc.predict(Xte, split=True).astype(np.float64)
    parts[0] -= enc.intercept_
    ref = r2_score_split(Yte - Yte.mean(0), parts - parts.mean(1, keepdims=True))
    np.testing.assert_allclose(split.values, ref, rtol=1e-6, atol=1e-8)
    pred = enc.predict(Xte).astype(np.float64)
    joint = 1 - ((Yte - Yte.mean(0) - (pred - pred.mean(0))) ** 2).sum(0) / ((Yte - Yte.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(split.sum("space").values, joint, atol=1e-6)
    assert split.attrs == {"metric": "r2", "kind": "held-out"}


def test_nan_neuroid_is_nan_everywhere():
    A, B, Y = _two_spaces(n=80)
    Y = Y.copy()
    Y[5, 3] = np.nan
    with pytest.warns(UserWarning):
        enc = BandedRidgeEncoder(n_iter=3, alphas=[1.0, 100.0], device="cpu").fit({"a": A, "b": B}, Y)
    assert np.isnan(enc.cv_scores_[3]) and np.isnan(enc.space_weights_.values[:, 3]).all()
    assert np.isfinite(np.delete(enc.cv_scores_, 3)).all()
    Yc = Y.copy()
    Yc[5, 3] = 0.0
    assert np.isnan(enc.score({"a": A, "b": B}, Yc)[3])
    assert np.isnan(enc.score_split({"a": A, "b": B}, Yc).values[:, 3]).all()
    assert enc.to_dataset().sizes["neuroid"] == 19


def test_variance_partitioning_unique_and_shared():
    A, B, Y = _two_spaces()
    tr, te = slice(0, 160), slice(160, None)
    vp = variance_partitioning({"vision": A[tr], "language": B[tr]}, Y[tr],
                               {"vision": A[te], "language": B[te]}, Y[te], encoder=VP_ENCODER)
    assert vp.unique.sel(space="vision").values[:10].mean() > 0.5
    assert vp.unique.sel(space="language").values[:10].mean() < 0.1
    assert abs(vp.shared.values.mean()) < 0.1
    np.testing.assert_allclose(vp.joint_r2.values, vp.r2.sel(subset="vision+language").values)


def test_xarray_spaces_joined_on_stimulus():
    A, B, Y = _two_spaces(n=80)
    ids = np.array([f"s{i:02d}" for i in range(80)])
    feats = xr.Dataset({"vision": feature_da(A, ids, "vision"), "language": feature_da(B, ids, "language")})
    resp = xr.DataArray(Y, dims=("stimulus", "neuroid"), coords={"stimulus_id": ("stimulus", ids)})
    enc = BandedRidgeEncoder(n_iter=3, alphas=[1.0, 100.0], device="cpu").fit(feats, resp)
    assert enc.spaces_ == ["vision", "language"] and enc.coef_.shape == (28, 20)
    # each space in its own row order: joined on stimulus_id, same fit and scores
    p, q = np.random.default_rng(0).permutation(80), np.random.default_rng(1).permutation(80)
    shuffled = {"vision": feature_da(A[p], ids[p], "vision"), "language": feature_da(B[q], ids[q], "language")}
    enc2 = BandedRidgeEncoder(n_iter=3, alphas=[1.0, 100.0], device="cpu").fit(shuffled, resp)
    np.testing.assert_allclose(enc2.coef_, enc.coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(enc2.score(shuffled, resp).values, enc.score(feats, resp).values, atol=1e-5)
    np.testing.assert_allclose(enc2.predict(shuffled), enc.predict(shuffled), rtol=1e-4, atol=1e-4)


def test_variance_partitioning_joins_each_space_on_stimulus_id():
    """Rows of one feature set permuted: joined on stimulus_id the answer is unchanged
    (matched by position it would collapse to R² ~ 0)."""
    A, B, Y = _two_spaces()
    ids = np.array([f"s{i:03d}" for i in range(200)])
    tr, te = np.arange(160), np.arange(160, 200)

    def split(rows, perm_b):
        b_rows = rows[perm_b]
        X = {"vision": feature_da(A[rows], ids[rows], "vision"), "language": feature_da(B[b_rows], ids[b_rows], "language")}
        resp = xr.DataArray(Y[rows], dims=("stimulus", "neuroid"),
                            coords={"stimulus_id": ("stimulus", ids[rows]),
                                    "neuroid_id": ("neuroid", [f"v{i}" for i in range(20)])})
        return X, resp

    rng = np.random.default_rng(0)
    Xtr, Ytr = split(tr, np.arange(160))
    Xte, Yte = split(te, np.arange(40))
    plain = variance_partitioning(Xtr, Ytr, Xte, Yte, encoder=VP_ENCODER)
    Xtr_p, _ = split(tr, rng.permutation(160))
    Xte_p, _ = split(te, rng.permutation(40))
    perm = variance_partitioning(Xtr_p, Ytr, Xte_p, Yte, encoder=VP_ENCODER)
    for v in ("joint_r2", "r2", "unique", "shared"):
        np.testing.assert_allclose(perm[v].values, plain[v].values, atol=1e-5, err_msg=v)
    assert float(perm["r2"].sel(subset="language").values[10:].mean()) > 0.5
    assert list(perm["neuroid_id"].values[:2]) == ["v0", "v1"]
    assert perm.attrs["metric"] == "r2" and perm["unique"].attrs["kind"] == "held-out"
    with pytest.raises(TypeError, match="must all be xarray objects"):
        variance_partitioning({"vision": A[tr], "language": Xtr["language"]}, Ytr, Xte, Yte)


def test_banded_errors():
    A, B, Y = _two_spaces(n=60)
    with pytest.raises(ValueError, match="at least 2 feature spaces"):
        BandedRidgeEncoder().fit({"vision": A}, Y)
    with pytest.raises(TypeError, match="Invalid value for 'X' in BandedRidgeEncoder.fit\\(\\): ndarray"):
        BandedRidgeEncoder().fit(A, xr.DataArray(Y, dims=("stimulus", "neuroid")))
    with pytest.raises(ValueError, match="Invalid value for 'alphas' in BandedRidgeEncoder"):
        BandedRidgeEncoder(alphas=[-1.0]).fit({"a": A, "b": B}, Y)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        BandedRidgeEncoder().predict({"a": A, "b": B})
    with pytest.raises(ValueError, match="variance_partitioning\\(\\) needs at least 2"):
        variance_partitioning({"a": A}, Y, {"a": A}, Y)
    with pytest.raises(KeyError, match="X_test lacks the space\\(s\\) 'b'"):
        variance_partitioning({"a": A, "b": B}, Y, {"a": A}, Y)
    with pytest.raises(ValueError, match="Invalid value for 'cv' in BandedRidgeEncoder: 'loo'"):
        BandedRidgeEncoder(cv="loo").fit({"a": A, "b": B}, Y)


def test_predict_with_other_spaces_raises(fitted):
    from neuroalign.exceptions import DimensionError

    enc, Xte, _, _ = fitted
    with pytest.raises(DimensionError, match="differ from the fitted spaces"):
        enc.predict({"audio": Xte["vision"], "language": Xte["language"]})


def test_one_array_is_one_space_and_equals_ridge():
    """A plain array is one feature space: banded ridge then is ridge with the alpha chosen
    by the same criterion (mean validation error over the same folds)."""
    from sklearn.model_selection import KFold

    A, _, Y = _two_spaces(n=120, seed=3)
    folds = list(KFold(4).split(A))
    alphas = np.logspace(-1, 4, 11)
    band = BandedRidgeEncoder(alphas=alphas, cv=folds, n_iter=1).fit(A, Y)
    ridge = RidgeEncoder(alphas=alphas, cv=folds, relative_alphas=False, dtype="float64").fit(A, Y)
    assert band.spaces_ == ["X"] and band.n_features_in_ == 12
    np.testing.assert_allclose(band.best_alphas_, ridge.best_alphas_, rtol=1e-6)
    np.testing.assert_allclose(band.coef_, ridge.coef_, rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(band.predict(A), ridge.predict(A), rtol=2e-3, atol=2e-3)


def test_predict_is_labelled_for_xarray_features():
    A, B, Y = _two_spaces(n=60, seed=4)
    ids = np.array([f"s{i:03d}" for i in range(60)])
    fa, fb = feature_da(A, ids), feature_da(B, ids)
    resp = xr.DataArray(Y, dims=("stimulus", "neuroid"),
                        coords={"stimulus_id": ("stimulus", ids),
                                "neuroid_id": ("neuroid", [f"v{i}" for i in range(20)])})
    enc = BandedRidgeEncoder(cv=3, n_iter=2).fit({"a": fa, "b": fb}, resp)
    order = np.random.default_rng(0).permutation(60)
    pred = enc.predict({"a": fa.isel(stimulus=order), "b": fb.isel(stimulus=order)})
    assert isinstance(pred, xr.DataArray) and pred.dims == ("stimulus", "neuroid")
    assert list(pred["stimulus_id"].values) == list(ids[order])
    assert list(pred["neuroid_id"].values[:2]) == ["v0", "v1"]
    plain = enc.predict({"a": A, "b": B})
    assert isinstance(plain, np.ndarray)
    np.testing.assert_allclose(pred.values, plain[order], rtol=1e-5, atol=1e-5)
    parts = enc.predict({"a": fa, "b": fb}, split=True)
    assert parts.dims == ("space", "stimulus", "neuroid") and list(parts["space"].values) == ["a", "b"]
