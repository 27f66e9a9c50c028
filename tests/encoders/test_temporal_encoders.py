import numpy as np
import pytest
import xarray as xr
from enc_helpers import feature_da

from neuroalign.encoders import Delayer, FIREncoder, TimeResolvedEncoder, block_folds, make_delays
from neuroalign.exceptions import DimensionError
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


def test_block_folds_are_contiguous():
    folds = block_folds(100, 5)
    for _, val in folds:
        runs = np.split(val, np.flatnonzero(np.diff(val) != 1) + 1)
        assert all(len(r) >= 5 for r in runs)


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
    held = win.score(X, Y)
    assert held.dims == ("neuroid", "time") and float(held.isel(time=2).mean()) > 0.8


def test_time_resolved_on_store_joins_stimuli():
    store, signal = make_store(n_stimuli=40, n_neuroids=5, n_times=4, ncsnr=3.0, return_signal=True)
    avg = store.na.average_repetitions()
    ids = signal["stimulus_id"].values
    feats = feature_da(signal.values.astype(np.float32), ids)
    enc = TimeResolvedEncoder(alphas=ALPHAS, cv=4).fit(feats, store)
    assert "neuroid_id" in enc.cv_scores_.coords
    assert float(enc.score(feats, avg).mean()) > 0.8


def test_temporal_errors():
    X = np.zeros((20, 3))
    with pytest.raises(DimensionError, match="Expected 3 dims"):
        TimeResolvedEncoder().fit(X, np.zeros((20, 4)))
    with pytest.raises(ValueError, match="Invalid value for 'window' in TimeResolvedEncoder"):
        TimeResolvedEncoder(window=9).fit(X, np.zeros((20, 2, 4)))
    with pytest.raises(DimensionError, match="expected \\(sample, 'neuroid', 'time'\\)"):
        TimeResolvedEncoder().fit(feature_da(X, np.arange(20).astype(str)),
                                  xr.DataArray(np.zeros((20, 2)), dims=("stimulus", "neuroid")))
    with pytest.raises(DimensionError, match="expected the same number of rows"):
        FIREncoder().fit(X, np.zeros((19, 2)))
