"""Row order never matters: every public function that takes two stimulus-indexed inputs
(features and responses, two representations, a store and target embeddings) gives the same
answer when the rows of either input are permuted (joined on stimulus_id, never by row)."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.testing import make_store

N_STIM, N_EXTRA, N_NEUROIDS = 40, 6, 6
ALPHAS = [0.1, 1.0, 10.0, 100.0]


@pytest.fixture(scope="module")
def data():
    """A trial-level store (2 repetitions, train/test split, two ROIs) and features of 46
    stimuli (6 the store does not hold) in their own order: two layers carrying the signal."""
    rois = {"A": np.arange(N_NEUROIDS) < 3, "B": np.arange(N_NEUROIDS) >= 3}
    store, signal = make_store(n_stimuli=N_STIM, n_neuroids=N_NEUROIDS, n_repetitions=2, n_test=8,
                               ncsnr=2.0, rois=rois, seed=3, return_signal=True, dtype=np.float64)
    rng = np.random.default_rng(0)
    ids = np.r_[signal["stimulus_id"].values, [f"stim-{i:04d}" for i in range(N_STIM, N_STIM + N_EXTRA)]]
    sig = np.r_[signal.values, rng.standard_normal((N_EXTRA, N_NEUROIDS))]
    layers = {f"l{k}": sig @ rng.standard_normal((N_NEUROIDS, 5)) + (k + 0.5) * rng.standard_normal((len(ids), 5))
              for k in (1, 2)}
    feats = xr.Dataset({n: (("stimulus", f"{n}_unit"), v) for n, v in layers.items()},
                       coords={"stimulus_id": ("stimulus", ids)}, attrs={"model": "toy"})
    feats = feats.isel(stimulus=rng.permutation(len(ids)))
    return feats, store


def _shuffle(obj, seed):
    dim = "presentation" if "presentation" in obj.dims else "stimulus"
    return obj.isel({dim: np.random.default_rng(seed).permutation(obj.sizes[dim])})


def _both(data, seed):
    feats, store = data
    return (feats, store), (_shuffle(feats, seed), _shuffle(store, seed + 1))


def _close(a, b, atol=1e-6):
    a = getattr(a, "values", a)
    b = getattr(b, "values", b)
    if isinstance(a, np.ndarray) and a.dtype.kind in "USO":
        np.testing.assert_array_equal(a, b)
    else:
        assert np.isfinite(np.asarray(a, float)).any()  # not a trivial all-NaN agreement
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), atol=atol, rtol=1e-6)


def ridge(feats, store):
    from neuroalign.encoders import RidgeEncoder

    train, test = store.na.split("train"), store.na.split("test").na.average_repetitions()
    enc = RidgeEncoder(alphas=ALPHAS, cv=4, dtype="float64", device="cpu").fit(feats[["l1"]], train)
    return [enc.cv_scores_, enc.best_alphas_, enc.score(feats[["l1"]], test)]


def layer_sweep(feats, store):
    from neuroalign.encoders import LayerSweep

    sweep = LayerSweep(alphas=ALPHAS, cv=4, dtype="float64", device="cpu", test_split="test").fit(feats, store)
    res = sweep.to_dataset()
    avg = store.na.split("test").na.average_repetitions()
    return [res["score"], res["cv_score"], res["best_layer"], sweep.score(feats, avg)]


def banded(feats, store):
    from neuroalign.encoders import BandedRidgeEncoder

    avg = store.na.average_repetitions()
    enc = BandedRidgeEncoder(alphas=ALPHAS, n_iter=3, cv=4, device="cpu").fit(
        {"a": feats["l1"], "b": feats["l2"]}, avg)
    return [enc.cv_scores_, enc.space_weights_, enc.score({"a": feats["l1"], "b": feats["l2"]}, avg)]


def partitioning(feats, store):
    from neuroalign.encoders import RidgeEncoder, variance_partitioning

    train, test = store.na.split("train"), store.na.split("test").na.average_repetitions()
    x = {"a": feats["l1"], "b": _shuffle(feats["l2"], 11)}  # each space in its own order
    vp = variance_partitioning(x, train, x, test, encoder=RidgeEncoder(alphas=ALPHAS, cv=4, dtype="float64"))
    return [vp[name] for name in vp.data_vars]


def time_resolved(feats, store):
    from neuroalign.encoders import TimeResolvedEncoder

    cube = store.assign(responses=store["responses"].expand_dims(time=[0.0, 0.1], axis=-1) * [1.0, 0.5])
    enc = TimeResolvedEncoder(alphas=ALPHAS, cv=4, dtype="float64").fit(feats[["l1"]], cube)
    return [enc.cv_scores_, enc.to_dataset()["score"]]


def cka_and_shape(feats, store):
    from neuroalign.compare import cka, compare_rdms, rdm, shape_distance

    resp = store.na.average_repetitions()["responses"]
    held = np.isin(feats["stimulus_id"].values, resp["stimulus_id"].values)
    x = feats["l1"].isel(stimulus=np.flatnonzero(held))  # the same stimuli, in the features' order
    return [cka(x, resp), shape_distance(x, resp, alpha=0.5), compare_rdms(rdm(x), rdm(resp))]


def rsa_features_and_store(feats, store):
    from neuroalign.compare import rsa

    res = rsa({"a": feats["l1"], "b": feats["l2"]}, store, n_bootstrap=20, noise_ceiling=False)
    return [res["score"]]


def units_and_weights(feats, store):
    from neuroalign.mapping import unit_to_roi, voxel_weights

    units = unit_to_roi(feats, store, layer="l1", n_permutations=0, split="train")
    weights = voxel_weights(feats, store, layer="l2", split="train")
    return [units["strength"], units["roi"], weights["weights"], weights["intercept"]]


def decoder(feats, store):
    from neuroalign.decoders import EmbeddingDecoder

    target = feats["l2"].rename(l2_unit="dim")
    dec = EmbeddingDecoder(alphas=ALPHAS).fit(store.na.split("train"), target)
    pred = dec.predict(store.na.split("test").na.average_repetitions())
    return [dec.alpha_, dec.coef_, dec.intercept_, pred.sortby("stimulus_id")]


FUNCTIONS = [ridge, layer_sweep, banded, partitioning, time_resolved, cka_and_shape, rsa_features_and_store,
             units_and_weights, decoder]


@pytest.mark.parametrize("func", FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("seed", [1, 7])
def test_permuted_rows_give_the_same_answer(data, func, seed):
    (f0, s0), (f1, s1) = _both(data, seed)
    base, again = func(f0, s0), func(f1, s1)
    assert len(base) == len(again)
    for a, b in zip(base, again, strict=True):
        _close(a, b)


def test_positional_pairing_would_be_caught(data):
    """The property above can fail: pairing features with responses by row position after a
    shuffle gives a different answer (here RidgeEncoder on plain arrays)."""
    from neuroalign.encoders import RidgeEncoder

    feats, store = data
    avg = store.na.average_repetitions()
    joined = feats["l1"].sel(stimulus_id=avg["stimulus_id"].values)
    enc = RidgeEncoder(alphas=ALPHAS, cv=4, dtype="float64")
    right = enc.fit(joined.values, avg["responses"].values).cv_scores_.copy()
    wrong = enc.fit(_shuffle(joined, 3).values, avg["responses"].values).cv_scores_
    assert np.nanmean(right) > np.nanmean(wrong) + 0.2


def test_results_and_store_are_matched_by_neuroid_id(data):
    """Mapping functions that take results and a store (ROI masks) match neuroids by
    neuroid_id: the store's neuroids in another order give the same summaries."""
    from neuroalign.encoders import LayerSweep
    from neuroalign.mapping import layer_preference, roi_layer_profile, summarize_by_roi

    feats, store = data
    avg = store.na.average_repetitions()
    res = LayerSweep(alphas=ALPHAS, cv=4, dtype="float64").fit(feats, avg).to_dataset()
    res = res.drop_vars(["roi_A", "roi_B"])  # the ROI masks come from the store
    pref = layer_preference(res)
    other = store.isel(neuroid=[5, 2, 0, 4, 1, 3])
    for a, b in ((roi_layer_profile(res, store), roi_layer_profile(res, other)),
                 (summarize_by_roi(pref, store)["best_layer"], summarize_by_roi(pref, other)["best_layer"]),
                 (summarize_by_roi(pref, store)["mean_depth_norm"], summarize_by_roi(pref, other)["mean_depth_norm"])):
        _close(a, b)
    flipped = store.assign_coords(roi_A=("neuroid", ~store["roi_A"].values))
    assert not np.allclose(roi_layer_profile(res, flipped).sel(roi="A").values,
                           roi_layer_profile(res, store).sel(roi="A").values)


def test_rsa_features_missing_a_store_stimulus_are_named(data):
    from neuroalign.compare import rsa
    from neuroalign.exceptions import StimulusMismatchError

    feats, store = data
    some = feats["l1"].isel(stimulus=np.flatnonzero(feats["stimulus_id"].values != "stim-0005"))
    with pytest.raises(StimulusMismatchError, match=r"rsa\(\): joined on stimulus_id, 1 stimuli of the store "
                       r"are missing from models\['a'\]: 'stim-0005'"):
        rsa({"a": some}, store, n_bootstrap=20, noise_ceiling=False)


def test_rsa_timecourse_features_in_any_order_with_extra_stimuli():
    from neuroalign.compare import rsa_timecourse

    store, sig = make_store(n_stimuli=16, n_neuroids=8, n_repetitions=2, n_times=3, ncsnr=2.0, seed=2,
                            return_signal=True)
    store = store.assign_coords(subject=("neuroid", np.array(["a"] * 4 + ["b"] * 4)))
    rng = np.random.default_rng(0)
    ids = np.r_[sig["stimulus_id"].values, ["stim-0099", "stim-0098"]]
    model = xr.DataArray(np.r_[sig.values, rng.standard_normal((2, 8))], dims=("stimulus", "unit"),
                         coords={"stimulus_id": ("stimulus", ids)})
    base = rsa_timecourse({"m": model}, store, method="pearson")["score"].values
    again = rsa_timecourse({"m": _shuffle(model, 4)}, _shuffle(store, 5), method="pearson")["score"].values
    np.testing.assert_allclose(again, base, atol=1e-10)
    assert np.all(base > 0.3)  # the model is the signal itself
