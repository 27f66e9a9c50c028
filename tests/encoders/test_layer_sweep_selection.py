"""LayerSweep chooses each neuroid's layer inside the training data and reports the held-out
score of that choice; NaN layers never win; score/predict/to_dataset hand-offs."""

import warnings

import numpy as np
import pytest
import xarray as xr

from neuroalign.encoders import LayerSweep, _sweep
from neuroalign.exceptions import DataQualityWarning, DimensionError
from neuroalign.mapping import layer_preference
from neuroalign.store import check_results
from neuroalign.testing import make_store

ALPHAS = np.logspace(-1, 5, 7)
LAYERS = ["layer1", "layer2", "layer3", "layer4"]


def sweep_data(n_stimuli=100, n_neuroids=400, n_test=40, planted=None, noise=1.0, seed=0):
    """Store and 4 layers of 8 random units; ``planted`` maps a layer to the neuroids it drives
    (the others are pure noise)."""
    rng = np.random.default_rng(seed)
    rois = {"A": np.arange(n_neuroids) < n_neuroids // 2, "B": np.arange(n_neuroids) >= n_neuroids // 2}
    store = make_store(n_stimuli, n_neuroids, n_repetitions=2, n_test=n_test, rois=rois, seed=seed)
    ids = np.array([f"stim-{i:04d}" for i in range(n_stimuli)])
    X = {name: rng.standard_normal((n_stimuli, 8)) for name in LAYERS}
    sig = np.zeros((n_stimuli, n_neuroids))
    for name, cols in (planted or {}).items():
        sig[:, cols] = X[name] @ rng.standard_normal((8, len(cols))) / np.sqrt(8)
    codes = np.searchsorted(ids, store["stimulus_id"].values)
    resp = sig[codes] + noise * rng.standard_normal(store["responses"].shape)
    store = store.copy(data={"responses": resp.astype(np.float32), "true_ncsnr": store["true_ncsnr"].values})
    order = rng.permutation(n_stimuli)  # features in another row order: joined on stimulus_id
    feats = xr.Dataset({n: (("stimulus", f"{n}_unit"), X[n][order]) for n in LAYERS},
                       coords={"stimulus_id": ("stimulus", ids[order])})
    return feats, store


@pytest.fixture(scope="module")
def noise_fit():
    feats, store = sweep_data(n_neuroids=400, seed=11)
    return LayerSweep(alphas=ALPHAS, test_split="test", device="cpu").fit(feats, store), feats, store


def test_pure_noise_best_layer_test_score_is_unbiased(noise_fit):
    """On pure noise the held-out score of the chosen layer averages 0 and is positive for
    about half the neuroids (choosing on the test set gives mean ~0.2 and ~95 % positive)."""
    sweep, _, _ = noise_fit
    ds = sweep.to_dataset()
    s = ds["best_score"].values
    se = s.std() / np.sqrt(s.size)
    assert abs(s.mean()) < 4 * se, (s.mean(), se)
    assert abs((s > 0).mean() - 0.5) < 4 * np.sqrt(0.25 / s.size), (s > 0).mean()
    # each layer's own test score is also centred on 0: no layer is special
    assert np.all(np.abs(ds["score"].mean("neuroid").values) < 4 * se)
    assert "unbiased" in ds["best_score"].attrs["estimate"]  # not a maximum over layers
    assert ds.attrs["selection"] == "cv-r2 within train"


def test_choice_ignores_the_test_split(noise_fit):
    """New test responses change the test scores but not the choice of layer or alpha."""
    sweep, feats, store = noise_fit
    rng = np.random.default_rng(5)
    is_test = store["split"].values == "test"
    resp = store["responses"].values.copy()
    resp[is_test] = rng.standard_normal(resp[is_test].shape)
    other = LayerSweep(alphas=ALPHAS, test_split="test", device="cpu").fit(
        feats, store.copy(data={"responses": resp, "true_ncsnr": store["true_ncsnr"].values}))
    np.testing.assert_array_equal(other.best_layer_.values, sweep.best_layer_.values)
    np.testing.assert_array_equal(other.best_alphas_.values, sweep.best_alphas_.values)
    np.testing.assert_array_equal(other.cv_scores_.values, sweep.cv_scores_.values)
    assert not np.allclose(other.test_scores_.values, sweep.test_scores_.values)


def test_planted_layers_recovered_and_reported_with_their_own_test_score():
    planted = {"layer2": np.arange(0, 100), "layer4": np.arange(100, 200)}
    feats, store = sweep_data(n_neuroids=200, planted=planted, noise=0.7, seed=3)
    sweep = LayerSweep(alphas=ALPHAS, test_split="test", device="cpu").fit(feats, store)
    ds = sweep.to_dataset()
    for layer, cols in planted.items():
        assert (ds["best_layer"].values[cols] == layer).mean() > 0.95, layer
        chosen = ds["best_layer"].values[cols] == layer
        np.testing.assert_allclose(ds["best_score"].values[cols][chosen],
                                   ds["score"].sel(layer=layer).values[cols][chosen])
        assert np.median(ds["best_score"].values[cols]) > 0.5
    assert dict(zip(sweep.roi_best_layer().roi.values, sweep.roi_best_layer().values, strict=True)) == \
        {"A": "layer2", "B": "layer4"}
    # score() of each neuroid's best layer on the held-out split is the reported score
    test = store.na.split("test").na.average_repetitions()
    np.testing.assert_allclose(sweep.score(feats, test).values, ds["best_score"].values, atol=1e-6)
    np.testing.assert_allclose(sweep.score(feats["layer2"], test, layer="layer2").values,
                               sweep.test_scores_.sel(layer="layer2").values, atol=1e-6)
    pred = sweep.predict(feats)
    assert pred.dims == ("stimulus", "neuroid") and pred.shape == (100, 200)
    one = sweep.predict(feats["layer2"].values, layer="layer2")
    np.testing.assert_allclose(pred.values[:, :100], one[:, :100], rtol=1e-5, atol=1e-5)


def test_dataset_names_metric_kind_and_scheme():
    feats, store = sweep_data(n_neuroids=40, planted={"layer1": np.arange(20)}, seed=4)
    held = LayerSweep(alphas=ALPHAS, test_split="test", device="cpu").fit(feats, store).to_dataset(
        ceiling=np.full(40, 50.0))
    assert held.attrs["metric"] == "pearson" and held.attrs["score_kind"] == "test"
    assert held.attrs["split"] == "test" and held.attrs["encoder"] == "LayerSweep"
    assert check_results(held) is held
    assert held.attrs["cv"] == "5-fold, stimulus-grouped, shuffled with seed 0 (neuroalign.store.cv_folds)"
    assert held["score"].dims == ("layer", "neuroid")
    assert held["score"].attrs == {"metric": "pearson", "kind": "test"}
    assert held["cv_score"].attrs == {"metric": "r2", "kind": "cv"}
    np.testing.assert_allclose(held["ceiling_normalised"].values,
                               np.clip(held["best_score"].values, 0, None) ** 2 / 0.5)
    cv = LayerSweep(alphas=ALPHAS, cv=4, device="cpu").fit(feats, store.na.average_repetitions())
    ds = cv.to_dataset(ceiling=np.full(40, 50.0))
    assert ds.attrs["metric"] == "r2" and ds.attrs["score_kind"] == "cv" and ds.attrs["split"] == "all"
    assert "cv_score" not in ds  # the score is the cross-validated R² itself
    np.testing.assert_allclose(ds["best_score"].values, ds["score"].max("layer").values)
    assert "maximum over layers" in ds["best_score"].attrs["estimate"]
    assert "ceiling_normalised" in ds
    np.testing.assert_array_equal(cv.cv_scores_.values, cv.scores_.values)
    # the per-layer scores go straight into mapping.layer_preference
    pref = layer_preference(ds)
    np.testing.assert_array_equal(pref["best_layer"].values, ds["best_layer"].values)
    assert layer_preference(held)["best_layer"].dims == ("neuroid",)


def test_excluded_neuroid_is_nan_and_left_out():
    feats, store = sweep_data(n_neuroids=30, planted={"layer3": np.arange(30)}, seed=6)
    resp = store["responses"].values.copy()
    resp[np.flatnonzero(store["split"].values == "train")[3], 7] = np.nan  # a training trial
    store = store.copy(data={"responses": resp, "true_ncsnr": store["true_ncsnr"].values})
    with pytest.warns(UserWarning):
        sweep = LayerSweep(alphas=ALPHAS, test_split="test", device="cpu").fit(feats, store)
    assert sweep.best_layer_.values[7] == ""
    assert np.isnan(sweep.cv_scores_.values[:, 7]).all() and np.isnan(sweep.test_scores_.values[:, 7]).all()
    ds = sweep.to_dataset()
    assert ds.sizes["neuroid"] == 29 and ds.attrs["n_excluded"] == 1
    assert "n00007" not in ds["neuroid_id"].values
    test = store.na.split("test").na.average_repetitions()
    s = sweep.score(feats, test)
    assert np.isnan(s.values[7]) and np.isfinite(np.delete(s.values, 7)).all()
    assert np.isnan(sweep.predict(feats).values[:, 7]).all()
    assert (sweep.roi_best_layer().values == "layer3").all()


def _nan_solver(monkeypatch, layer_calls: dict[int, np.ndarray]):
    """Make the solver return NaN cv scores for some columns on some layers (by call order)."""
    real = _sweep.ridge_cv
    calls = {"n": 0}

    def fake(*args, **kwargs):
        res = real(*args, **kwargs)
        cols = layer_calls.get(calls["n"])
        calls["n"] += 1
        if cols is not None:
            res.cv_scores = res.cv_scores.copy()
            res.cv_scores[cols] = np.nan
        return res

    monkeypatch.setattr(_sweep, "ridge_cv", fake)


def test_nan_layer_never_wins(monkeypatch):
    """A layer whose score is NaN is never a neuroid's (or an ROI's) best layer."""
    feats, store = sweep_data(n_neuroids=40, planted={"layer1": np.arange(40)}, noise=0.5, seed=7)
    avg = store.na.average_repetitions()
    # layer1 (the true one) NaN for neuroids 0-4; layer4 NaN for neuroid 30 (ROI B)
    _nan_solver(monkeypatch, {0: np.arange(5), 3: np.array([30])})
    sweep = LayerSweep(alphas=ALPHAS, cv=4, device="cpu").fit(feats, avg)
    best = sweep.best_layer_.values
    assert not np.isin(best[:5], ["layer1", ""]).any()
    assert (best[5:] == "layer1").all()
    assert dict(zip(sweep.roi_best_layer().roi.values, sweep.roi_best_layer().values, strict=True)) == \
        {"A": "layer1", "B": "layer1"}
    ds = sweep.to_dataset()
    assert np.isfinite(ds["best_score"].values).all()


def test_all_nan_neuroid_gets_no_layer_and_a_warning(monkeypatch):
    feats, store = sweep_data(n_neuroids=20, planted={"layer2": np.arange(20)}, seed=8)
    every = np.array([4])
    _nan_solver(monkeypatch, {0: every, 1: every, 2: every, 3: every})
    with pytest.warns(DataQualityWarning, match=r"1 neuroid\(s\) have a NaN score on every layer \('n00004'\)"):
        sweep = LayerSweep(alphas=ALPHAS, cv=4, device="cpu").fit(feats, store.na.average_repetitions())
    assert sweep.best_layer_.values[4] == ""
    ds = sweep.to_dataset()
    assert ds["best_layer"].values[4] == "" and np.isnan(ds["best_score"].values[4])
    with pytest.warns(DataQualityWarning, match="NaN on every layer"):
        pref = layer_preference(ds)
    assert pref["best_layer"].values[4] == ""


def test_roi_without_scores_gets_empty_layer(monkeypatch):
    feats, store = sweep_data(n_neuroids=20, planted={"layer2": np.arange(20)}, seed=9)
    roi_b = np.arange(10, 20)
    _nan_solver(monkeypatch, dict.fromkeys(range(4), roi_b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        sweep = LayerSweep(alphas=ALPHAS, cv=4, device="cpu").fit(feats, store.na.average_repetitions())
    with pytest.warns(DataQualityWarning, match=r"1 ROI\(s\) have no neuroid with a score: 'B'"):
        best = sweep.roi_best_layer()
    assert best.sel(roi="B").item() == "" and best.sel(roi="A").item() == "layer2"


def test_score_and_predict_errors():
    feats, store = sweep_data(n_neuroids=10, seed=10)
    sweep = LayerSweep(alphas=ALPHAS, test_split="test", device="cpu").fit(feats, store)
    test = store.na.split("test").na.average_repetitions()
    with pytest.raises(ValueError, match="must hold the features of every layer"):
        sweep.predict(feats["layer1"].values)
    with pytest.raises(KeyError, match=r"Invalid value for 'layer' in LayerSweep.score\(\): 'conv'"):
        sweep.score(feats, test, layer="conv")
    with pytest.raises(KeyError, match="the features lack the layer"):
        sweep.score(feats[["layer1"]], test)
    with pytest.raises(DimensionError, match=r"X \(layer 'layer1'\) has 3 features, but LayerSweep is expecting 8 features as input"):
        sweep.predict(feats["layer1"].values[:, :3], layer="layer1")
    with pytest.raises(ValueError, match="'test_split' in LayerSweep: 'test' holds every presentation"):
        LayerSweep(test_split="test").fit(feats, store.assign_coords(split=("presentation", ["test"] * store.sizes["presentation"])))
    with pytest.raises(ValueError, match="sample_weight is not supported"):
        sweep.score(feats, test, sample_weight=np.ones(40))


def test_shuffled_presentations_give_the_same_sweep():
    """Folds depend on the set of stimuli, not on the row order: a shuffled store gives the
    same scores, alphas and layers."""
    feats, store = sweep_data(n_neuroids=30, planted={"layer2": np.arange(15)}, seed=12)
    a = LayerSweep(alphas=ALPHAS, test_split="test", dtype="float64", device="cpu").fit(feats, store)
    perm = np.random.default_rng(0).permutation(store.sizes["presentation"])
    b = LayerSweep(alphas=ALPHAS, test_split="test", dtype="float64", device="cpu").fit(
        feats, store.isel(presentation=perm))
    np.testing.assert_allclose(b.cv_scores_.values, a.cv_scores_.values, atol=1e-10)
    np.testing.assert_allclose(b.test_scores_.values, a.test_scores_.values, atol=1e-10)
    np.testing.assert_array_equal(b.best_layer_.values, a.best_layer_.values)
    np.testing.assert_array_equal(b.best_alphas_.values, a.best_alphas_.values)
