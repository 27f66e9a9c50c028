"""RidgeEncoder on awkward inputs: joins by id, non-finite features and responses, empty
splits, and results that say what they hold."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.encoders import RidgeEncoder, ridge_cv
from neuroalign.exceptions import DataFormatError, DataQualityWarning, StimulusMismatchError
from neuroalign.testing import make_store

ALPHAS = np.logspace(-2, 4, 7)
# every test here runs with the ridge core on numpy and on torch (tests/encoders/conftest.py)
pytestmark = pytest.mark.usefixtures("ridge_backend")


def store_and_features(seed=0, n_stimuli=30, n_extra=0):
    store, signal = make_store(n_stimuli=n_stimuli, n_neuroids=6, ncsnr=2.0, seed=seed,
                               return_signal=True)
    rng = np.random.default_rng(seed + 100)
    ids = np.asarray(signal["stimulus_id"].values)
    feats = np.concatenate([signal.values, rng.standard_normal((len(ids), 4))], axis=1)
    extra_ids = np.array([f"extra-{i}" for i in range(n_extra)])
    extra = rng.standard_normal((n_extra, feats.shape[1]))
    da = xr.DataArray(np.concatenate([feats, extra]), dims=("stimulus", "layer_unit"),
                      coords={"stimulus_id": ("stimulus", np.concatenate([ids, extra_ids]))},
                      name="layer")
    return store, da


# -- joins by stimulus_id -------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_join_by_id_not_by_row_order(seed):
    store, feats = store_and_features(seed)
    ref = RidgeEncoder(alphas=ALPHAS, cv=5, dtype="float64").fit(feats, store)
    _, wide = store_and_features(seed, n_extra=7)  # features of a larger stimulus set ...
    perm = np.random.default_rng(seed).permutation(wide.sizes["stimulus"])
    shuffled = wide.isel(stimulus=perm)  # ... in another row order
    assert not np.array_equal(shuffled["stimulus_id"].values, np.sort(shuffled["stimulus_id"].values))
    enc = RidgeEncoder(alphas=ALPHAS, cv=5, dtype="float64").fit(shuffled, store)
    np.testing.assert_array_equal(enc.best_alphas_, ref.best_alphas_)
    np.testing.assert_allclose(enc.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(enc.cv_scores_, ref.cv_scores_, rtol=1e-10)
    test = store.na.average_repetitions()
    np.testing.assert_allclose(enc.score(shuffled, test).values, ref.score(feats, test).values, rtol=1e-10)
    pred = enc.predict(shuffled)  # labelled predictions follow the features' rows
    by_id = pred.assign_coords(stimulus=pred["stimulus_id"].values).sel(stimulus=feats["stimulus_id"].values)
    np.testing.assert_allclose(by_id.values, ref.predict(feats).values, rtol=1e-10)
    assert float(ref.score(feats, test).mean()) > 0.8  # the signal is found at all


def test_join_refuses_missing_and_duplicated_stimuli():
    store, feats = store_and_features()
    with pytest.raises(StimulusMismatchError, match="missing from the features: 'stim-0003'"):
        RidgeEncoder(alphas=ALPHAS).fit(feats.isel(stimulus=[i for i in range(30) if i != 3]), store)
    with pytest.raises(StimulusMismatchError, match="repeated stimulus_id values: 'stim-0000'"):
        RidgeEncoder(alphas=ALPHAS).fit(xr.concat([feats, feats.isel(stimulus=[0])], "stimulus"), store)


# -- non-finite features ---------------------------------------------------------------------
def test_nan_and_inf_features_are_named_at_fit_and_predict():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((40, 5)), rng.standard_normal((40, 3))
    X[4, 2] = np.nan
    X[7, 0] = np.inf
    msg = (r"RidgeEncoder.fit: features 'X' hold 1 NaN and 1 infinite values, in 2 of 40 rows 4, 7 "
           r"and 2 of 5 columns 0, 2\. Expected finite features")
    with pytest.raises(DataFormatError, match=msg):
        RidgeEncoder(alphas=ALPHAS).fit(X, Y)
    enc = RidgeEncoder(alphas=ALPHAS).fit(np.nan_to_num(X, posinf=0.0), Y)
    with pytest.raises(DataFormatError, match=r"RidgeEncoder.predict: features 'X' hold 1 NaN and 1 "
                       r"infinite values, in 2 of 40 rows 4, 7"):
        enc.predict(X)


def test_nan_features_name_the_stimuli_of_labelled_inputs():
    store, feats = store_and_features(n_extra=2)
    bad = feats.copy()
    bad.values[5, 1] = np.nan  # a stimulus of the store
    bad.values[-1, 0] = np.nan  # an extra stimulus, not used: no error for it
    with pytest.raises(DataFormatError, match=r"3 NaN and 0 infinite values, in 3 of 90 rows 17, 79, 86 "
                       r"\(stimulus_id 'stim-0005'\) and 1 of 10 columns 1\."):
        RidgeEncoder(alphas=ALPHAS).fit(bad, store)
    ok = feats.copy()
    ok.values[-1, 0] = np.nan
    enc = RidgeEncoder(alphas=ALPHAS).fit(ok, store)  # NaN only in a stimulus not in the store
    with pytest.raises(DataFormatError, match=r"RidgeEncoder.predict: .*\(stimulus_id 'extra-1'\)"):
        enc.predict(ok)


def test_ridge_cv_refuses_non_finite_inputs():
    import torch

    X = torch.zeros((10, 2), dtype=torch.float64).normal_()
    Y = torch.zeros((10, 3), dtype=torch.float64).normal_()
    Y[2, 1] = float("nan")
    with pytest.raises(DataFormatError, match=r"ridge_cv: 'Y' holds NaN or infinite values in 1 "
                       r"target columns 1\."):
        ridge_cv(X, Y, ALPHAS, [(np.arange(5), np.arange(5, 10))])
    with pytest.raises(ValueError, match="fold 1 has an empty training set"):
        ridge_cv(X, Y[:, :1], ALPHAS, [(np.arange(5), np.arange(5, 10)), (np.array([], int), np.arange(10))])


# -- empty splits --------------------------------------------------------------------------
def test_empty_training_split_is_a_named_error():
    from sklearn.model_selection import PredefinedSplit

    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((12, 2))
    with pytest.raises(ValueError, match=r"Invalid value for 'cv' in RidgeEncoder\(\): fold 0 of the "
                       "given folds has an empty training set"):
        RidgeEncoder(alphas=ALPHAS, cv=[(np.array([], int), np.arange(12))]).fit(X, Y)
    with pytest.raises(ValueError, match="fold 0 of PredefinedSplit has an empty training set"):
        RidgeEncoder(alphas=ALPHAS, cv=PredefinedSplit(np.zeros(12, int))).fit(X, Y)
    with pytest.raises(ValueError, match=r"PredefinedSplit with 5 entries in test_fold; expected one "
                       r"per row \(12\)"):
        RidgeEncoder(alphas=ALPHAS, cv=PredefinedSplit(np.arange(5))).fit(X, Y)


# -- score on NaN or constant test neuroids ------------------------------------------------
@pytest.mark.parametrize("metric", ["pearson", "r2"])
def test_score_is_nan_for_nan_or_constant_test_neuroids(metric):
    store, feats = store_and_features()
    enc = RidgeEncoder(alphas=ALPHAS, metric=metric).fit(feats, store)
    test = store.na.average_repetitions()
    resp = test["responses"].values.copy()
    resp[3, 1] = np.nan
    resp[:, 4] = 2.0
    test["responses"] = (test["responses"].dims, resp)
    with pytest.warns(DataQualityWarning, match=r"2 of 6 neuroids score NaN \(1 with NaN or inf test "
                      r"responses: '.*1'; 1 with constant test responses: '.*4'; 0 excluded"):
        s = enc.score(feats, test)
    assert np.isnan(s.values[[1, 4]]).all()
    assert np.isfinite(s.values[[0, 2, 3, 5]]).all() and float(s[0]) > 0.5


# -- results say what they hold --------------------------------------------------------------
@pytest.mark.parametrize("metric", ["pearson", "r2"])
def test_to_dataset_names_metric_and_kind(metric):
    store, feats = store_and_features()
    enc = RidgeEncoder(alphas=ALPHAS, metric=metric).fit(feats, store)
    ds = enc.to_dataset()
    assert ds.attrs["metric"] == "r2" and ds.attrs["score_kind"] == "cv"
    assert ds["score"].attrs["metric"] == "r2" and ds["score"].attrs["kind"] == "cv"
    np.testing.assert_array_equal(ds["score"].values[0], enc.cv_scores_)  # R² whatever the metric
    np.testing.assert_array_equal(ds["best_score"].values, enc.cv_scores_)
    assert ds.sizes["layer"] == 1 and ds.attrs["results_schema"] == "1"
    held = enc.to_dataset(test_scores=enc.score(feats, store), test_split="test")
    assert held.attrs["metric"] == metric and held.attrs["score_kind"] == "test"
    np.testing.assert_array_equal(held["cv_score"].values[0], enc.cv_scores_)
    assert ds.attrs["alpha_scale"] == enc.alpha_scale_


def test_relative_alphas_is_validated():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match=r"Invalid value for 'relative_alphas' in RidgeEncoder\(\): 'yes'"):
        RidgeEncoder(relative_alphas="yes").fit(rng.standard_normal((20, 2)), rng.standard_normal((20, 1)))
