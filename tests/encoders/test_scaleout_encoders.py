"""cluster= / result_path= on the time-resolved encoders and banded ridge: cells of
neuroids (of (neuroid, window) targets) give the single-process fit, and a rerun fits only
the missing cells."""

import numpy as np
import pytest

from neuroalign.encoders import FIREncoder, TimeResolvedEncoder

ALPHAS = np.logspace(-2, 4, 9)


def _cube(seed=0, n=90, p=8, v=5, T=6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    gain = np.exp(-0.5 * ((np.arange(T) - 3) / 1.5) ** 2)
    Y = (X @ rng.standard_normal((p, v)))[:, :, None] * gain + rng.standard_normal((n, v, T))
    return X, Y


@pytest.mark.parametrize(("use_client", "batch"), [(False, 4), (True, 7), (True, 30)])
def test_time_resolved_cells_match_the_single_process_fit(client, tmp_path, use_client, batch):
    X, Y = _cube()
    kw = dict(window=2, step=1, alphas=ALPHAS, dtype="float64", device="cpu")
    single = TimeResolvedEncoder(**kw).fit(X, Y)
    path = tmp_path / "tr"
    enc = TimeResolvedEncoder(**kw).fit(X, Y, client=client if use_client else None,
                                        result_path=path, batch_size=batch)
    n_targets = 5 * 5  # neuroids x windows (6 times, window 2, step 1)
    assert enc.scaleout_info_["n_batches"] == -(-n_targets // batch)
    np.testing.assert_array_equal(enc.best_alphas_.values, single.best_alphas_.values)
    np.testing.assert_allclose(enc.cv_scores_.values, single.cv_scores_.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(enc.predict(X), single.predict(X), rtol=0, atol=1e-10)
    again = TimeResolvedEncoder(**kw).fit(X, Y, result_path=path, batch_size=batch)
    assert again.scaleout_info_["computed"] == []


def test_fir_cells_match_the_single_process_fit_and_rerun_only_missing(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 4))
    Y = np.roll(X @ rng.standard_normal((4, 9)), 2, axis=0) + rng.standard_normal((120, 9))
    kw = dict(delays=(0, 1, 2, 3), alphas=ALPHAS, dtype="float64", device="cpu")
    single = FIREncoder(**kw).fit(X, Y)
    path = tmp_path / "fir"
    enc = FIREncoder(**kw).fit(X, Y, result_path=path, batch_size=2)
    assert enc.scaleout_info_["computed"] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(enc.best_alphas_, single.best_alphas_)
    np.testing.assert_allclose(enc.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(enc.delay_weights_, single.delay_weights_, rtol=0, atol=1e-10)
    sorted((path / "cells").glob("*.npz"))[1].unlink()
    redo = FIREncoder(**kw).fit(X, Y, result_path=path, batch_size=2)
    assert len(redo.scaleout_info_["computed"]) == 1
    np.testing.assert_allclose(redo.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)
    # other delays: other features, other keys, nothing reused
    other = FIREncoder(**{**kw, "delays": (0, 1)}).fit(X, Y, result_path=path, batch_size=2)
    assert other.scaleout_info_["skipped"] == []


@pytest.mark.parametrize(("use_client", "batch"), [(False, 3), (True, 5), (True, 40)])
def test_banded_cells_match_the_single_process_fit(client, tmp_path, use_client, batch):
    """Banded ridge in cells of neuroids: the same random search (candidate space weights,
    folds) per cell, each neuroid's choice its own: the single-process fit."""
    from neuroalign.encoders import BandedRidgeEncoder

    rng = np.random.default_rng(5)
    A, B = rng.standard_normal((80, 6)), rng.standard_normal((80, 9))
    Y = A @ rng.standard_normal((6, 14)) * rng.random(14) + B @ rng.standard_normal((9, 14)) * \
        rng.random(14) + 2 * rng.standard_normal((80, 14))
    Y[:, 3] = 1.0  # a constant neuroid: NaN as in the single-process fit
    spaces = {"a": A, "b": B}
    kw = dict(alphas=np.logspace(-2, 4, 7), n_iter=6, device="cpu", random_state=2)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = BandedRidgeEncoder(**kw).fit(spaces, Y)
        path = tmp_path / "b"
        enc = BandedRidgeEncoder(**kw).fit(spaces, Y, client=client if use_client else None,
                                           result_path=path, batch_size=batch)
        assert enc.scaleout_info_["n_batches"] == -(-13 // batch)
        np.testing.assert_array_equal(enc.best_alphas_, single.best_alphas_)
        np.testing.assert_array_equal(enc.space_weights_.values, single.space_weights_.values)
        np.testing.assert_allclose(enc.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)
        np.testing.assert_allclose(enc.coef_, single.coef_, rtol=0, atol=1e-5)
        assert np.isnan(enc.cv_scores_[3])
        again = BandedRidgeEncoder(**kw).fit(spaces, Y, result_path=path, batch_size=batch)
        assert again.scaleout_info_["computed"] == []
        other = BandedRidgeEncoder(**{**kw, "random_state": 3}).fit(spaces, Y, result_path=path,
                                                                     batch_size=batch)
        assert other.scaleout_info_["skipped"] == []  # other candidate weights: other keys
