import numpy as np
import pytest
import xarray as xr
from enc_helpers import feature_da

from neuroalign.encoders import Delayer, FIREncoder, TimeResolvedEncoder, block_folds, make_delays
from neuroalign.exceptions import DimensionError
from neuroalign.store import check_results
from neuroalign.testing import make_store

ALPHAS = np.logspace(-2, 4, 9)


def test_make_delays_shifts():
    X = np.arange(12.0).reshape(6, 2)
    D = make_delays(X, (0, 2, -1))
    np.testing.assert_array_equal(D[:, :2], X)
    np.testing.assert_array_equal(D[2:, 2:4], X[:-2])
    assert np.all(D[:2, 2:4] == 0)
    np.testing.assert_array_equal(D[:-1, 4:], X[1:])
    np.testing.assert_array_equal(Delayer((0, 2, -1)).fit(X).transform(X), D)
    with pytest.raises(ValueError, match="Invalid value for 'delays' in make_delays"):
        make_delays(X, ())
    with pytest.raises(ValueError, match="Invalid value for 'delays' in make_delays"):
        make_delays(X, (1.5,))


@pytest.mark.parametrize(("n", "k", "blocks"), [(100, 5, None), (203, 4, 10), (57, 3, 9)])
def test_block_folds_never_interleave_neighbours(n, k, blocks):
    """Each sample's fold changes only at block boundaries: neighbours share a fold except
    where one block ends; every sample is validated exactly once."""
    folds = block_folds(n, k, n_blocks=blocks)
    n_blocks = blocks or 4 * k
    fold_of = np.full(n, -1)
    for f, (train, val) in enumerate(folds):
        assert np.intersect1d(train, val).size == 0 and len(train) + len(val) == n
        assert (fold_of[val] == -1).all()
        fold_of[val] = f
    assert (fold_of >= 0).all()
    assert np.count_nonzero(np.diff(fold_of)) <= n_blocks - 1
    runs = np.split(np.arange(n), np.flatnonzero(np.diff(fold_of)) + 1)
    assert min(len(r) for r in runs) >= n // n_blocks


def test_fir_recovers_a_planted_kernel():
    """A kernel spread over delays 1-3 (rising then decaying) is recovered, delay by delay."""
    rng = np.random.default_rng(1)
    n, p, v = 500, 4, 6
    X = rng.standard_normal((n, p))
    kernel = np.stack([rng.standard_normal((p, v)) * g for g in (0.0, 1.0, 0.6, 0.25)])  # delays 0-3
    Y = sum(make_delays(X, (d,)) @ kernel[d] for d in range(4)) + 0.2 * rng.standard_normal((n, v))
    enc = FIREncoder(delays=(0, 1, 2, 3), alphas=ALPHAS).fit(X, Y)
    assert enc.delay_weights_.shape == (4, p, v)
    np.testing.assert_allclose(enc.delay_weights_, kernel, atol=0.1)
    assert np.median(enc.cv_scores_) > 0.9
    ds = enc.to_dataset()
    assert ds.attrs["metric"] == "r2" and ds.attrs["score_kind"] == "cv" and ds.attrs["delays"] == [0, 1, 2, 3]
    assert ds.attrs["cv"] == "5-fold, contiguous blocks of samples (neuroalign.encoders.block_folds)"


def test_fir_block_folds_stop_autocorrelation_leaking():
    """Two independent random walks: shuffled folds let the spurious fit interpolate between
    neighbours (high CV R²); contiguous blocks do not."""
    rng = np.random.default_rng(2)
    n = 400
    X = np.cumsum(rng.standard_normal((n, 3)), 0)
    Y = np.cumsum(rng.standard_normal((n, 8)), 0)
    enc = FIREncoder(delays=(0, 1), alphas=ALPHAS).fit(X, Y)
    assert np.median(enc.cv_scores_) < 0.2, enc.cv_scores_
    from sklearn.model_selection import KFold

    leaky = FIREncoder(delays=(0, 1), alphas=ALPHAS, cv=KFold(5, shuffle=True, random_state=0)).fit(X, Y)
    assert np.median(leaky.cv_scores_) > np.median(enc.cv_scores_) + 0.2


def test_fir_nan_neuroid():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((80, 2)), rng.standard_normal((80, 3))
    Y[4, 1] = np.nan
    with pytest.warns(UserWarning):
        enc = FIREncoder(alphas=ALPHAS).fit(X, Y)
    assert np.isnan(enc.cv_scores_[1]) and np.isfinite(enc.cv_scores_[[0, 2]]).all()
    assert np.isnan(enc.score(X, np.nan_to_num(Y))[1])


def test_fir_encoder_recovers_hemodynamic_lag():
    rng = np.random.default_rng(0)
    n, p = 600, 6
    X = rng.standard_normal((n, p))
    w = rng.standard_normal((p, 8))
    Y = np.zeros((n, 8))
    Y[3:] = X[:-3] @ w  # the response lags the features by 3 samples
    Y += 0.3 * rng.standard_normal(Y.shape)
    enc = FIREncoder(delays=(1, 2, 3, 4), alphas=ALPHAS).fit(X, Y)
    energy = (enc.delay_weights_ ** 2).sum((1, 2))
    assert np.argmax(energy) == 2  # delay 3
    assert np.median(enc.score(X, Y)) > 0.9
    plain = FIREncoder(delays=(0,), alphas=ALPHAS).fit(X, Y)
    assert np.median(plain.score(X, Y)) < 0.3


def test_time_resolved_encoder_peaks_where_the_signal_is():
    rng = np.random.default_rng(0)
    n, p, v, T = 160, 10, 6, 12
    X = rng.standard_normal((n, p)).astype(np.float32)
    gain = np.exp(-0.5 * ((np.arange(T) - 7) / 1.5) ** 2)
    Y = (X @ rng.standard_normal((p, v)))[:, :, None] * gain + rng.standard_normal((n, v, T))
    enc = TimeResolvedEncoder(alphas=ALPHAS).fit(X, Y)
    assert enc.cv_scores_.dims == ("neuroid", "time") and enc.cv_scores_.sizes["time"] == T
    assert int(np.argmax(enc.cv_scores_.mean("neuroid").values)) == 7
    assert enc.predict(X).shape == (n, v, T)
    win = TimeResolvedEncoder(window=3, step=3, alphas=ALPHAS).fit(X, Y)
    np.testing.assert_allclose(win.times_, [1, 4, 7, 10])
    held = win.score(X, Y)  # array in, array out: (n_neuroids, n_windows)
    assert isinstance(held, np.ndarray) and held.shape == (v, 4) and held[:, 2].mean() > 0.8
    # a 2-d y is one time point per neuroid: predictions and scores in its shape
    one = TimeResolvedEncoder(alphas=ALPHAS).fit(X, Y[:, :, 7])
    assert one.predict(X).shape == (n, v) and one.score(X, Y[:, :, 7]).shape == (v,)
    np.testing.assert_allclose(one.cv_scores_.values[:, 0], enc.cv_scores_.values[:, 7],
                               rtol=1e-4, atol=1e-5)


def test_time_resolved_on_store_joins_stimuli():
    store, signal = make_store(n_stimuli=40, n_neuroids=5, n_times=4, ncsnr=3.0, return_signal=True)
    avg = store.na.average_repetitions()
    ids = signal["stimulus_id"].values
    feats = feature_da(signal.values.astype(np.float32), ids)
    enc = TimeResolvedEncoder(alphas=ALPHAS, cv=4).fit(feats, store)
    assert "neuroid_id" in enc.cv_scores_.coords
    assert float(enc.score(feats, avg).mean()) > 0.8
    ds = enc.to_dataset()
    check_results(ds)
    assert ds["score"].dims == ("layer", "neuroid", "time") and ds.attrs["metric"] == "r2"
    assert ds["best_score"].dims == ("neuroid", "time") and list(ds["layer"].values) == [feats.name]
    np.testing.assert_array_equal(ds["score"].values[0], enc.cv_scores_.values)
    assert ds.attrs["cv"] == "4-fold, stimulus-grouped, shuffled with seed 0 (neuroalign.store.cv_folds)"


def test_time_resolved_planted_latency_and_shuffled_presentations():
    """Signal at one latency per neuroid group is found there; shuffling the presentations of
    the store (and the feature rows) gives the same scores and alphas."""
    rng = np.random.default_rng(4)
    n_stim, T = 60, 8
    store = make_store(n_stimuli=n_stim, n_neuroids=6, n_times=T, n_repetitions=2, ncsnr=1.0, seed=4)
    ids = np.array([f"stim-{i:04d}" for i in range(n_stim)])
    X = rng.standard_normal((n_stim, 5))
    sig = X @ rng.standard_normal((5, 6))
    latency = np.array([2, 2, 2, 5, 5, 5])
    gain = np.exp(-0.5 * ((np.arange(T)[None] - latency[:, None]) / 0.7) ** 2)  # (neuroid, time)
    codes = np.searchsorted(ids, store["stimulus_id"].values)
    resp = sig[codes][:, :, None] * gain + 0.5 * rng.standard_normal(store["responses"].shape)
    store = store.copy(data={"responses": resp.astype(np.float32), "true_ncsnr": store["true_ncsnr"].values})
    feats = feature_da(X.astype(np.float32), ids)
    enc = TimeResolvedEncoder(alphas=ALPHAS, cv=4, dtype="float64").fit(feats, store)
    np.testing.assert_array_equal(enc.cv_scores_.values.argmax(1), latency)
    order = rng.permutation(store.sizes["presentation"])
    frows = rng.permutation(n_stim)
    again = TimeResolvedEncoder(alphas=ALPHAS, cv=4, dtype="float64").fit(
        feats.isel(stimulus=frows), store.isel(presentation=order))
    np.testing.assert_allclose(again.cv_scores_.values, enc.cv_scores_.values, atol=1e-10)
    np.testing.assert_array_equal(again.best_alphas_.values, enc.best_alphas_.values)


def test_temporal_errors():
    X = np.zeros((20, 3))
    with pytest.raises(DimensionError, match="Expected 3 dims"):
        TimeResolvedEncoder().fit(X, np.zeros((20, 4, 2, 2)))
    with pytest.raises(ValueError, match="Invalid value for 'window' in TimeResolvedEncoder"):
        TimeResolvedEncoder(window=9).fit(X, np.zeros((20, 2, 4)))
    with pytest.raises(DimensionError, match="expected \\(sample, 'neuroid', 'time'\\)"):
        TimeResolvedEncoder().fit(feature_da(X, np.arange(20).astype(str)),
                                  xr.DataArray(np.zeros((20, 2)), dims=("stimulus", "neuroid")))
    with pytest.raises(DimensionError, match="expected the same number of rows"):
        FIREncoder().fit(X, np.zeros((19, 2)))


def test_time_resolved_predict_is_labelled_for_xarray_features():
    store, signal = make_store(n_stimuli=30, n_neuroids=3, n_times=4, ncsnr=3.0, return_signal=True)
    ids = signal["stimulus_id"].values
    feats = feature_da(signal.values.astype(np.float32), ids)
    enc = TimeResolvedEncoder(alphas=ALPHAS, cv=3).fit(feats, store)
    pred = enc.predict(feats.isel(stimulus=slice(None, None, -1)))
    assert isinstance(pred, xr.DataArray) and pred.dims == ("stimulus", "neuroid", "time")
    assert list(pred["stimulus_id"].values) == list(ids[::-1])
    np.testing.assert_array_equal(pred["time"].values, enc.times_)
    assert "neuroid_id" in pred.coords
    np.testing.assert_allclose(pred.values, enc.predict(feats.values[::-1]))
