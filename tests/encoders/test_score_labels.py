"""score() matches the responses' neuroids (and time points) to the fit's by label: a store
in another order, or a subset of its neuroids, gets each neuroid's own score; what cannot
be matched is refused by name (it used to be paired by position, and labelled wrong)."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.encoders import (
    AttentionRoutingEncoder,
    BandedRidgeEncoder,
    LayerSweep,
    RidgeEncoder,
    TimeResolvedEncoder,
)
from neuroalign.exceptions import DataQualityWarning, DimensionError
from neuroalign.testing import make_store

ALPHAS = np.logspace(-2, 4, 7)


def _data(seed, n_neuroids=9, n_times=None):
    store, signal = make_store(n_stimuli=40, n_neuroids=n_neuroids, n_times=n_times, ncsnr=2.0,
                               return_signal=True, seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    ids = signal.stimulus_id.values
    codes = np.searchsorted(ids, store.stimulus_id.values)
    gain = rng.uniform(0, 1, store.sizes["neuroid"])  # neuroids told apart by their scores
    sig = signal.values[codes] * gain  # (presentations, neuroids)
    if n_times is not None:
        sig = sig[:, :, None] * rng.uniform(0.2, 1.0, n_times)
    resp = sig + rng.standard_normal(store["responses"].shape)
    store["responses"] = (store["responses"].dims, resp)
    feats = xr.DataArray(np.c_[signal.values, rng.standard_normal((ids.size, 4))],
                         dims=("stimulus", "unit"), coords={"stimulus_id": ("stimulus", ids)},
                         name="f")
    return feats, store, store.na.average_repetitions()


def _by_id(score):
    return dict(zip(score["neuroid_id"].values.tolist(), score.values.tolist(), strict=True))


def _check_orders(score, avg, rng):
    ref = _by_id(score(avg))
    assert len(set(np.round(list(ref.values()), 8))) == len(ref)  # distinct: a swap shows
    n = avg.sizes["neuroid"]
    for sel in (np.arange(n)[::-1], rng.permutation(n), np.sort(rng.choice(n, 4, replace=False)),
                rng.choice(n, 5, replace=False)):
        got = _by_id(score(avg.isel(neuroid=sel)))
        assert list(got) == avg["neuroid_id"].values[sel].tolist()  # the responses' order
        for k, v in got.items():
            assert v == pytest.approx(ref[k], rel=1e-12, abs=1e-14), k


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_ridge_scores_follow_the_neuroid_ids(seed, form, monkeypatch):
    import neuroalign.encoders._neuroid_scores as ns

    monkeypatch.setattr(ns, "SCORE_BLOCK", 20 * 3)  # blocks of 3 neuroids: spans of the fit
    feats, store, avg = _data(seed)
    if form == "dual":
        feats = xr.concat([feats] * 12, "unit")  # more features than rows
    enc = RidgeEncoder(alphas=ALPHAS, cv=4, form=form, dtype="float64", device="cpu").fit(feats, store)
    assert enc.form_ == form
    _check_orders(lambda y: enc.score(feats, y), avg, np.random.default_rng(seed))


def test_sweep_and_banded_scores_follow_the_neuroid_ids():
    feats, store, avg = _data(2)
    rng = np.random.default_rng(2)
    layers = xr.Dataset({"a": feats.rename(unit="ua"),
                         "b": (("stimulus", "ub"), rng.standard_normal((feats.sizes["stimulus"], 6)))},
                        coords={"stimulus_id": feats.stimulus_id})
    sweep = LayerSweep(alphas=ALPHAS, cv=4, dtype="float64", device="cpu").fit(layers, store)
    _check_orders(lambda y: sweep.score(layers, y), avg, rng)
    banded = BandedRidgeEncoder(alphas=[0.1, 10.0], n_iter=3, cv=3, random_state=0,
                                device="cpu").fit(layers, store)
    _check_orders(lambda y: banded.score(layers, y), avg, rng)


def test_routing_scores_follow_the_neuroid_ids():
    _, store, avg = _data(3)
    rng = np.random.default_rng(3)
    ids = np.unique(store.stimulus_id.values)
    tokens = xr.DataArray(rng.standard_normal((ids.size, 4, 6)), dims=("stimulus", "token", "unit"),
                          coords={"stimulus_id": ("stimulus", ids)})
    enc = AttentionRoutingEncoder(d_model=8, max_epochs=3, patience=3, device="cpu").fit(tokens, store)
    _check_orders(lambda y: enc.score(tokens, y), avg, rng)
    # an undefined score is NaN and named, never 0 (it used to be r = 0)
    flat = avg.copy(deep=True)
    flat["responses"][:, 2] = 1.5
    with pytest.warns(DataQualityWarning, match="1 with constant test responses: 'n00002'"):
        s = enc.score(tokens, flat)
    assert np.isnan(s.values[2]) and np.isfinite(np.delete(s.values, 2)).all()


def test_time_resolved_scores_follow_neuroid_ids_and_time_points():
    feats, store, avg = _data(4, n_neuroids=5, n_times=4)
    enc = TimeResolvedEncoder(alphas=ALPHAS, cv=4, dtype="float64", device="cpu").fit(feats, store)
    ref = enc.score(feats, avg)
    for sel in ({"neuroid": [4, 2, 0, 1, 3]}, {"time": [3, 1, 0, 2]},
                {"neuroid": [1, 0, 4, 3, 2], "time": [2, 3, 1, 0]}):
        got = enc.score(feats, avg.isel(sel))
        xr.testing.assert_allclose(got.sortby("time"), ref.sortby("time"))
    with pytest.raises(DimensionError, match="3 of the fit's 5 neuroids"):
        enc.score(feats, avg.isel(neuroid=[0, 1, 2]))
    with pytest.raises(DimensionError, match="time points it was not fitted on"):
        enc.score(feats, avg.assign_coords(time=avg.time.values + 1.0))


def test_unmatched_neuroids_are_refused_by_name():
    feats, store, avg = _data(5)
    enc = RidgeEncoder(alphas=ALPHAS, cv=4, device="cpu").fit(feats, store)
    other = avg.assign_coords(neuroid_id=("neuroid", ["zz"] + avg.neuroid_id.values[1:].tolist()))
    with pytest.raises(DimensionError, match=r"1 neuroids it was not fitted on \('zz'\)"):
        enc.score(feats, other)
    twice = avg.isel(neuroid=[0, 1, 1])
    with pytest.raises(DimensionError, match="repeated neuroids"):
        enc.score(feats, twice)
    X = np.asarray(feats.values)[:20]
    arr = RidgeEncoder(alphas=ALPHAS, cv=4, device="cpu").fit(X, np.asarray(avg["responses"])[:20])
    with pytest.raises(DimensionError, match="have 4 neuroids; expected the 9 of the fit"):
        arr.score(X, np.asarray(avg["responses"])[:20, :4])
