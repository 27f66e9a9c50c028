import numpy as np
import pytest
import torch
import xarray as xr
from enc_helpers import feature_da, planted
from himalaya.ridge import RidgeCV as HimalayaRidgeCV
from sklearn.linear_model import RidgeCV as SkRidgeCV

from neuroalign.encoders import RidgeEncoder
from neuroalign.exceptions import DataQualityWarning, NotFittedError, StimulusMismatchError
from neuroalign.store import cv_folds
from neuroalign.testing import make_store

ALPHAS = np.logspace(-2, 4, 13)
# every test here runs with the ridge core on numpy and on torch (tests/encoders/conftest.py)
pytestmark = pytest.mark.usefixtures("ridge_backend")


def test_matches_himalaya_on_same_folds():
    X, Y, _ = planted()
    folds = cv_folds(np.arange(len(X)).astype(str), 5)
    # absolute alphas on unstandardised features, as himalaya takes them (float32 both)
    ours = RidgeEncoder(alphas=ALPHAS, cv=5, relative_alphas=False).fit(X, Y)
    ref = HimalayaRidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=True).fit(X, Y)
    np.testing.assert_allclose(ours.best_alphas_, np.asarray(ref.best_alphas_), rtol=1e-5)
    np.testing.assert_allclose(ours.predict(X), np.asarray(ref.predict(X)), atol=1e-4, rtol=1e-4)


def test_matches_sklearn_loo_alpha_per_target():
    X, Y, _ = planted()
    ours = RidgeEncoder(alphas=ALPHAS, cv="loo", relative_alphas=False).fit(X, Y)
    ref = SkRidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X, Y)
    np.testing.assert_allclose(ours.best_alphas_, ref.alpha_, rtol=1e-6)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cv", [5, "loo"])
def test_primal_and_dual_agree(cv):
    X, Y, _ = planted(n=60, p=40)
    a = RidgeEncoder(alphas=ALPHAS, cv=cv, form="primal", dtype="float64").fit(X, Y)
    b = RidgeEncoder(alphas=ALPHAS, cv=cv, form="dual", dtype="float64").fit(X, Y)
    np.testing.assert_array_equal(a.best_alphas_, b.best_alphas_)
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-8)


def test_recovers_planted_weights_and_scores():
    X, Y, W = planted(n=400, noise=0.5)
    enc = RidgeEncoder(alphas=ALPHAS).fit(X, Y)
    assert np.corrcoef(enc.coef_.ravel(), W.ravel())[0, 1] > 0.99
    r = enc.score(X, Y)
    assert r.shape == (Y.shape[1],) and np.median(r) > 0.9
    enc.set_params(metric="r2")
    assert np.median(enc.score(X, Y)) > 0.8


def test_torch_input_and_sklearn_splitter():
    X, Y, _ = planted()
    from sklearn.model_selection import KFold

    enc = RidgeEncoder(alphas=ALPHAS, cv=KFold(4)).fit(torch.from_numpy(X), torch.from_numpy(Y))
    assert enc.coef_.shape == (X.shape[1], Y.shape[1])


def _store_and_features(n_stimuli=40, seed=0):
    store, signal = make_store(n_stimuli=n_stimuli, n_neuroids=12, ncsnr=2.0, seed=seed, return_signal=True)
    ids = signal["stimulus_id"].values if "stimulus_id" in signal.coords else np.unique(store.stimulus_id)
    rng = np.random.default_rng(1)
    # features that linearly contain the signal plus distractors
    feats = np.concatenate([signal.values, rng.standard_normal((len(ids), 8))], axis=1)
    return store, feature_da(feats.astype(np.float32), ids)


def test_xarray_trial_level_fit_groups_repetitions():
    store, feats = _store_and_features()
    enc = RidgeEncoder(alphas=ALPHAS, cv=4).fit(feats, store)
    res = enc.to_dataset(ceiling=store.na.noise_ceiling(split=None))
    assert set(res.data_vars) >= {"score", "best_alpha", "ceiling_normalised"}
    assert "neuroid_id" in res.coords and res.sizes["neuroid"] == 12
    pred = enc.predict(feats)
    assert pred.dims == ("stimulus", "neuroid") and "stimulus_id" in pred.coords
    s = enc.score(feats, store.na.average_repetitions())
    assert s.dims == ("neuroid",) and float(s.mean()) > 0.8


def test_stimulus_mismatch_names_stimuli():
    store, feats = _store_and_features()
    with pytest.raises(StimulusMismatchError, match="missing from the features: 'stim-0003'"):
        RidgeEncoder(alphas=ALPHAS).fit(feats.isel(stimulus=[i for i in range(40) if i != 3]), store)
    with pytest.raises(StimulusMismatchError, match="repeated stimulus_id"):
        RidgeEncoder(alphas=ALPHAS).fit(xr.concat([feats, feats.isel(stimulus=[0])], "stimulus"), store)


def test_constant_and_nan_neuroids_excluded_with_warning():
    X, Y, _ = planted()
    Y = Y.copy()
    Y[:, 3] = 1.5
    Y[5, 7] = np.nan
    with pytest.warns(DataQualityWarning, match=r"excluding 2 of 50 neuroids \(1 with NaN or inf: "
                      r"'neuroid 7'; 1 constant: 'neuroid 3'\)"):
        enc = RidgeEncoder(alphas=ALPHAS).fit(X, Y)
    assert np.all(np.isfinite(enc.coef_))
    assert not enc.valid_neuroids_[3] and not enc.valid_neuroids_[7]
    # excluded neuroids: NaN scores and alphas (never 0), finite everywhere else
    assert np.isnan(enc.cv_scores_[[3, 7]]).all() and np.isnan(enc.best_alphas_[[3, 7]]).all()
    assert np.isfinite(np.delete(enc.cv_scores_, [3, 7])).all()
    ds = enc.to_dataset()
    assert ds.sizes["neuroid"] == 48 and ds.attrs["n_excluded"] == 2
    assert np.all(np.isfinite(ds["score"].values))
    with pytest.warns(DataQualityWarning, match="1 with constant test responses: 'neuroid 3'; 1 "
                      "excluded at fit: 'neuroid 7'"):
        s = enc.score(X, np.nan_to_num(Y))
    assert np.isnan(s[[3, 7]]).all() and np.isfinite(np.delete(s, [3, 7])).all()


def test_too_few_stimuli_for_folds():
    X, Y, _ = planted(n=4)
    with pytest.raises(ValueError, match="Too few stimuli"):
        RidgeEncoder(alphas=ALPHAS, cv=5).fit(X, Y)


@pytest.mark.parametrize("alphas", [[1.0, -1.0], [0.0], []])
def test_alphas_must_be_positive(alphas):
    X, Y, _ = planted()
    with pytest.raises(ValueError, match="Invalid value for 'alphas' in RidgeEncoder"):
        RidgeEncoder(alphas=alphas).fit(X, Y)


def test_other_errors():
    X, Y, _ = planted()
    with pytest.raises(NotFittedError, match="not fitted yet"):
        RidgeEncoder().predict(X)
    with pytest.raises(ValueError, match="Invalid value for 'form'"):
        RidgeEncoder(form="qr").fit(X, Y)
    with pytest.raises(ValueError, match="Invalid value for 'cv'"):
        RidgeEncoder(cv="kfold").fit(X, Y)
    with pytest.raises(ValueError, match="'loo' needs one row per stimulus"):
        store, feats = _store_and_features()
        RidgeEncoder(cv="loo").fit(feats, store)
    with pytest.raises(ValueError, match="expected the same number of rows"):
        RidgeEncoder().fit(X, Y[:-1])
    with pytest.raises(TypeError, match="both be xarray"):
        store, feats = _store_and_features()
        RidgeEncoder().fit(X, store)
    enc = RidgeEncoder(alphas=ALPHAS).fit(X, Y)
    with pytest.raises(ValueError, match="fitted with 30"):
        enc.predict(X[:, :5])
