"""LayerSweep(keep_weights="best"): only each neuroid's best layer's weights are kept (the
others dropped as the layers are fitted), with the scores, alphas, best layers and the
best-layer predictions of keep_weights="all", whatever the order of the layers, ties,
NaN scores and cells; one layer's predictions for every neuroid are refused by name; the
preflight counts one layer's weights."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from neuroalign import _preflight as pf
from neuroalign.encoders import LayerSweep
from neuroalign.store import from_arrays

ALPHAS = np.logspace(-2, 4, 7)


def _data(seed=0, n=90):
    """Four layers of different widths; neuroids driven by layers a, b, c or none; layer d
    is a copy of layer b (exact ties: b must win, being first); one neuroid constant
    (excluded), one NaN in a presentation."""
    rng = np.random.default_rng(seed)
    ids = [f"s{i:03d}" for i in range(n)]
    widths = {"a": 4, "b": 7, "c": 5}
    mats = {k: rng.standard_normal((n, w)) for k, w in widths.items()}
    mats["d"] = mats["b"].copy()
    cols = [mats[k] @ rng.standard_normal((widths[k], 3)) for k in ("a", "b", "c")]
    Y = np.hstack(cols + [rng.standard_normal((n, 2))]) + 0.7 * rng.standard_normal((n, 11))
    Y[:, 9] = 1.0  # constant: excluded
    feats = xr.Dataset({k: (("stimulus", f"u_{k}"), v) for k, v in mats.items()},
                       coords={"stimulus_id": ("stimulus", ids)})
    return feats, from_arrays(Y, ids), mats


def _fit(feats, store, keep, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LayerSweep(alphas=ALPHAS, cv=5, dtype="float64", device="cpu",
                          keep_weights=keep).fit(feats, store, **kw)


@pytest.mark.parametrize("order", [["a", "b", "c", "d"], ["d", "c", "b", "a"], ["c", "a", "d", "b"]])
def test_best_only_gives_the_all_weights_results(order, tmp_path):
    feats, store, mats = _data()
    feats = feats[order]
    full, best = _fit(feats, store, "all"), _fit(feats, store, "best")
    for attr in ("cv_scores_", "best_alphas_"):
        xr.testing.assert_identical(getattr(best, attr), getattr(full, attr))
    np.testing.assert_array_equal(best.best_layer_.values, full.best_layer_.values)
    # b and d tie exactly: the first of them in the order wins, in both
    first = [k for k in order if k in ("b", "d")][0]
    assert set(full.best_layer_.values[3:6]) == {first}
    assert full.best_layer_.values[9] == ""  # the constant neuroid
    X = {k: mats[k] for k in order}
    np.testing.assert_array_equal(best.predict(X), full.predict(X))
    # each valid neuroid's weights are kept once, by its best layer, in its column order
    ok = full.valid_neuroids_
    owners = full.best_layer_.values[ok]
    kept = np.full(int(ok.sum()), "", dtype=object)
    for name, enc in best.encoders_.items():
        cols = enc["columns"]
        assert np.all(np.diff(cols) > 0) and enc["coef"].shape == (mats[name].shape[1], len(cols))
        kept[cols] = name
        np.testing.assert_array_equal(enc["coef"], full.encoders_[name]["coef"][:, cols])
    assert kept.tolist() == owners.tolist()
    assert sum(e["coef"].size for e in best.encoders_.values()) < \
        sum(e["coef"].size for e in full.encoders_.values()) / 2


def test_one_layers_predictions_are_refused_by_name_and_cells_give_the_same():
    feats, store, mats = _data(1)
    best = _fit(feats, store, "best")
    with pytest.raises(ValueError, match=r"LayerSweep.predict\(layer='b'\): this sweep kept the weights "
                                         r"of each neuroid's best layer only \(keep_weights='best'\)"):
        best.predict(mats["b"], layer="b")
    with pytest.raises(ValueError, match=r"Invalid value for 'keep_weights' in LayerSweep"):
        _fit(feats, store, "some")


def test_cells_and_a_rerun_keep_the_same_weights(tmp_path):
    feats, store, mats = _data(2)
    plain = _fit(feats, store, "best")
    cells = _fit(feats, store, "best", result_path=tmp_path / "c", batch_size=4)
    again = _fit(feats, store, "best", result_path=tmp_path / "c", batch_size=4)
    assert all(i["computed"] == [] for i in again.scaleout_info_.values())
    for sweep in (cells, again):
        np.testing.assert_array_equal(sweep.best_layer_.values, plain.best_layer_.values)
        for name, enc in plain.encoders_.items():
            np.testing.assert_array_equal(sweep.encoders_[name]["columns"], enc["columns"])
            np.testing.assert_allclose(sweep.encoders_[name]["coef"], enc["coef"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(sweep.predict(mats), plain.predict(mats), rtol=0, atol=1e-9)


def test_a_nan_score_never_wins_and_a_neuroid_without_a_layer_keeps_nothing():
    """Scores NaN on every layer for one neuroid (patched): no layer keeps its weights, its
    prediction is NaN; a NaN on the first layer only: a later layer takes it."""
    feats, store, mats = _data(3)
    from neuroalign.encoders import _sweep

    real = _sweep.ridge_cv

    def nan_scores(*args, **kwargs):
        res = real(*args, **kwargs)
        res.cv_scores = res.cv_scores.copy()
        res.cv_scores[0] = np.nan  # the first valid neuroid: NaN on every layer
        if nan_scores.calls == 0:
            res.cv_scores[1] = np.nan  # the second: NaN on the first layer only
        nan_scores.calls += 1
        return res

    nan_scores.calls = 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_sweep, "ridge_cv", nan_scores)
        best = _fit(feats, store, "best")
        nan_scores.calls = 0
        full = _fit(feats, store, "all")
    assert best.best_layer_.values[0] == "" and best.best_layer_.values[1] not in ("", "a")
    np.testing.assert_array_equal(best.best_layer_.values, full.best_layer_.values)
    assert all(0 not in enc["columns"] for enc in best.encoders_.values())
    pred = best.predict(mats)
    assert np.isnan(pred[:, 0]).all() and np.isfinite(pred[:, 1]).all()
    np.testing.assert_array_equal(pred, full.predict(mats))


def test_the_preflight_counts_one_layers_weights():
    sizes = [1024] * 12
    t, n = 327_684, 30_000
    everything = pf.sweep_memory(sizes, t)
    one = pf.sweep_memory(sizes, t, keep="best")
    assert everything == 12 * 1024 * t * 4 + 12 * 3 * t * 8
    assert one == 1024 * t * 4 + 12 * 3 * t * 8
    kw = dict(n_alphas=10, n_folds=5)
    assert pf.sweep_peak(n, sizes, t, keep="best", **kw) < pf.sweep_peak(n, sizes, t, **kw)
    layers = {f"l{i}": np.empty((n, 1024), np.float32) for i in range(12)}
    budget = 16 * 2**30  # a whole-brain 12-layer sweep with a 16 GiB budget, store on disk
    disk = dict(responses=False, batch=20_000, **kw)
    with pytest.raises(pf.MemoryPreflightError, match=r"keep 15\.\d\d GiB of weights(?s:.*)"
                                                      r"To lower it: keep_weights='best'"):
        pf.check_sweep(layers, n, t, budget=budget, **disk)
    need = pf.check_sweep(layers, n, t, budget=budget, keep="best", **disk)
    assert need < budget
    # the responses in memory (39 GB of float32) are counted whole
    with pytest.raises(pf.MemoryPreflightError):
        pf.check_sweep(layers, n, t, budget=budget, keep="best", **kw)
    # on disk the responses are not held: each fit reads a batch (and zarr some chunks)
    assert pf.sweep_peak(n, sizes, t, responses=False, batch=20_000, **kw) == \
        pf.sweep_peak(n, sizes, t, batch=20_000, **kw) - t * n * 4 + \
        pf.disk_read_memory(n, 20_000, t)
