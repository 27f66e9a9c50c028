import numpy as np
import pytest
import xarray as xr
from scipy.stats import false_discovery_control, pearsonr

from neuroalign.encoders import (
    bootstrap_roi,
    ceiling_normalise,
    fdr_bh,
    pearson_r,
    permutation_test,
    r2_score,
    results_from_scores,
    roi_summary,
)
from neuroalign.encoders._scoring import nan_argmax
from neuroalign.exceptions import DataFormatError, DataQualityWarning, DimensionError


def test_pearson_and_r2_match_references():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((50, 4)), rng.standard_normal((50, 4))
    b[:, 0] += a[:, 0]
    ref = [pearsonr(a[:, i], b[:, i])[0] for i in range(4)]
    np.testing.assert_allclose(pearson_r(a, b), ref, atol=1e-12)
    from sklearn.metrics import r2_score as sk_r2

    np.testing.assert_allclose(r2_score(a, b), sk_r2(a, b, multioutput="raw_values"))
    const = np.ones((50, 1))
    assert pearson_r(a[:, :1], const)[0] == 0.0 and r2_score(const, a[:, :1])[0] == 0.0


def test_ceiling_normalise():
    # a neuroid without explainable variance has no normalised score (NaN, never 0 or inf)
    np.testing.assert_allclose(ceiling_normalise([0.5, -0.2, 0.3], [25.0, 50.0, 0.0]), [1.0, 0.0, np.nan])
    np.testing.assert_allclose(ceiling_normalise([0.2], [40.0], metric="r2"), [0.5])
    with pytest.raises(ValueError, match="Invalid value for 'metric' in ceiling_normalise"):
        ceiling_normalise([0.1], [1.0], metric="spearman")


@pytest.mark.parametrize("seed", range(4))
def test_fdr_matches_scipy_with_ties_and_ones(seed):
    rng = np.random.default_rng(seed)
    p = rng.random(200) ** 3
    p[:20] = p[20:40]  # ties
    p[40:50] = 1.0
    p[50:55] = 0.0
    p = rng.permutation(p)
    reject, adj = fdr_bh(p, 0.05)
    np.testing.assert_allclose(adj, false_discovery_control(p), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(reject, adj <= 0.05)
    assert reject.sum() >= 5  # the zeros at least


def test_fdr_nan_and_errors():
    p = np.array([0.01, np.nan, 0.02, 0.5])
    reject, adj = fdr_bh(p)
    np.testing.assert_allclose(adj[[0, 2, 3]], false_discovery_control(p[[0, 2, 3]]))
    assert np.isnan(adj[1]) and not reject[1]
    with pytest.raises(ValueError, match="Invalid value for 'q' in fdr_bh"):
        fdr_bh(p, 1.5)
    with pytest.raises(ValueError, match=r"Invalid value for 'p' in fdr_bh\(\): values outside \[0, 1\], e.g. 1.5"):
        fdr_bh([0.1, 1.5])


def _stimulus_data(n_stim=30, n_rep=3, n_cols=20, seed=0):
    """Rows = repetitions of stimuli; y has a strong stimulus effect, pred one value per stimulus."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(n_stim), n_rep)
    effect = rng.standard_normal((n_stim, n_cols))
    y = effect[codes] + 0.3 * rng.standard_normal((len(codes), n_cols))
    pred = rng.standard_normal((n_stim, n_cols))[codes]  # unrelated to y: the null
    return y, pred, effect, codes, np.array([f"s{c:03d}" for c in codes])


@pytest.mark.parametrize("grouped", [False, True])
def test_permutation_test_finds_real_effects_only(grouped):
    y, pred, effect, codes, groups = _stimulus_data()
    rng = np.random.default_rng(1)
    pred[:, :5] = (effect[:, :5] + 0.5 * rng.standard_normal((30, 5)))[codes]
    out = permutation_test(y, pred, n_permutations=200, groups=groups if grouped else None, random_state=0)
    assert out["significant"][:5].all()
    # BH at q = 0.05 with 5 true effects: ~0.2 false discoveries expected among the 15 nulls;
    # 4 or more has probability < 0.1 %
    assert out["significant"][5:].sum() <= 3
    assert out["p_value"].min() >= 1 / 201


@pytest.mark.parametrize("grouped", [False, True])
def test_permutation_null_rejection_rate_is_nominal(grouped):
    """On null data the share of p <= 0.05 over many neuroids stays at the nominal 5 %.
    Repeated stimuli make rows dependent: permuting rows instead of whole stimuli gives a
    too-narrow null and rejects ~17 % here; permuting stimuli keeps the rate nominal."""
    if grouped:
        y, pred, _, _, groups = _stimulus_data(n_cols=400, seed=2)
    else:
        rng = np.random.default_rng(2)
        y, pred, groups = rng.standard_normal((40, 400)), rng.standard_normal((40, 400)), None
    out = permutation_test(y, pred, n_permutations=99, groups=groups, random_state=3)
    rate = float((out["p_value"] <= 0.05).mean())
    bound = 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)
    assert 0.015 < rate <= bound, rate
    assert out["significant"].sum() <= 2  # FDR over null neuroids


def test_grouped_permutation_needs_one_prediction_per_stimulus():
    y, pred, _, _, groups = _stimulus_data(n_cols=3)
    pred[0, 0] += 1.0
    with pytest.raises(ValueError, match="rows of one stimulus in 'groups' have different predictions"):
        permutation_test(y, pred, groups=groups, n_permutations=5)
    with pytest.raises(ValueError, match=r"Invalid value for 'groups' in permutation_test\(\): shape \(5,\)"):
        permutation_test(y, pred, groups=groups[:5], n_permutations=5)


def test_bootstrap_ci_covers_mean_and_shrinks():
    v = np.random.default_rng(0).normal(0.3, 0.1, 400)
    m, lo, hi = bootstrap_roi(v, n_bootstrap=500)
    assert lo < m < hi and lo < 0.3 < hi and hi - lo < 0.05
    m2, lo2, hi2 = bootstrap_roi(v, np.arange(400) < 40, n_bootstrap=500)
    assert hi2 - lo2 > hi - lo
    with pytest.raises(ValueError, match="selects no neuroids"):
        bootstrap_roi(v, np.zeros(400, bool))
    with pytest.raises(ValueError, match="Invalid value for 'ci'"):
        bootstrap_roi(v, ci=95)
    with pytest.raises(ValueError, match="Invalid value for 'aggregate' in bootstrap_roi"):
        bootstrap_roi(v, aggregate="trimmed")


def test_bootstrap_intervals_cover_the_planted_value():
    """95 % intervals cover the planted mean (and the planted ratio of means) in >= 90 % of
    100 seeds."""
    hits, ratio_hits = 0, 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        v = rng.normal(0.3, 0.1, 60)
        _, lo, hi = bootstrap_roi(v, n_bootstrap=400, random_state=seed)
        hits += lo <= 0.3 <= hi
        c = rng.uniform(0.2, 0.6, 60)
        e = 0.8 * c + rng.normal(0, 0.05, 60)  # explained variance: 0.8 of the ceiling
        _, lo, hi = bootstrap_roi(e, ceiling=c, n_bootstrap=400, random_state=seed)
        ratio_hits += lo <= 0.8 <= hi
    assert hits >= 90 and ratio_hits >= 90, (hits, ratio_hits)


def _two_rois():
    """ROI 'strong': r = 0.6 at a 40 % ceiling (normalised 0.9). ROI 'weak': r = 0.2 at a
    30 % ceiling (0.133), plus 10 neuroids at a 1 % ceiling whose chance r = 0.3 gives
    per-neuroid ratios of 9."""
    score = np.r_[np.full(20, 0.6), np.full(10, 0.2), np.full(10, 0.3)]
    ceiling = np.r_[np.full(20, 40.0), np.full(10, 30.0), np.full(10, 1.0)]
    strong = np.arange(40) < 20
    da = xr.DataArray(score[None], dims=("layer", "neuroid"),
                      coords={"layer": ["l1"], "neuroid_id": ("neuroid", [f"v{i}" for i in range(40)]),
                              "roi_strong": ("neuroid", strong), "roi_weak": ("neuroid", ~strong)})
    return results_from_scores(da, metric="pearson", score_kind="test", split="test", ceiling=ceiling)


def test_roi_summary_ratio_of_means_above_threshold():
    ds = _two_rois()
    s = roi_summary(ds)
    assert s["ceiling_normalised"].sel(roi="strong").item() == pytest.approx(0.9)
    assert s["ceiling_normalised"].sel(roi="weak").item() == pytest.approx(0.04 / 0.3)
    assert s["ceiling_normalised"].sel(roi="strong") > s["ceiling_normalised"].sel(roi="weak")
    assert list(s["n_above_threshold"].values) == [20, 10] and list(s["n_neuroids"].values) == [20, 20]
    assert s["score"].sel(roi="weak").item() == pytest.approx(0.25)  # raw score beside it
    assert s["score"].attrs == {"metric": "pearson", "kind": "test", "aggregate": "mean", "source": "best_score"}
    assert s["ceiling_normalised"].attrs["aggregate"] == \
        "ratio of means over neuroids with noise ceiling >= 10 %"
    assert s.attrs["metric"] == "pearson" and s.attrs["ceiling_threshold"] == 10.0
    # ratio of means differs from the mean of ratios when ceilings vary
    ds2 = ds.copy()
    ds2["noise_ceiling"].values[:10] = 80.0
    strong = roi_summary(ds2)["ceiling_normalised"].sel(roi="strong").item()
    assert strong == pytest.approx(0.36 / 0.6)  # not mean(0.36/0.8, 0.36/0.4) = 0.675
    med = roi_summary(ds2, aggregate="median", ceiling_threshold=0.5)
    assert med["ceiling_normalised"].sel(roi="weak").item() == pytest.approx((0.04 / 0.3 + 9.0) / 2)
    assert med["score"].attrs["aggregate"] == "median"


def test_roi_summary_bootstrap_nan_and_errors():
    ds = _two_rois()
    ds["best_score"].values[0] = np.nan
    s = roi_summary(ds, n_bootstrap=200)
    assert s["n_neuroids"].sel(roi="strong").item() == 19
    for name in ("score", "ceiling_normalised"):
        lo, hi = s[f"{name}_ci_low"].values, s[f"{name}_ci_high"].values
        assert np.all(lo <= s[name].values + 1e-12) and np.all(s[name].values <= hi + 1e-12)
    ds["best_score"].values[20:] = np.nan
    with pytest.warns(DataQualityWarning, match=r"1 ROI\(s\) have no neuroid with a finite 'best_score': 'weak'"):
        s = roi_summary(ds)
    assert np.isnan(s["score"].sel(roi="weak").item()) and np.isnan(s["ceiling_normalised"].sel(roi="weak").item())
    with pytest.raises(ValueError, match="An ROI mean of per-neuroid ratios is dominated"):
        roi_summary(ds, "ceiling_normalised")
    with pytest.raises(KeyError, match="Invalid value for 'var' in roi_summary"):
        roi_summary(ds, "r")
    with pytest.raises(ValueError, match="Invalid value for 'metric' in roi_summary"):
        roi_summary(ds, metric="spearman")
    with pytest.raises(DataFormatError, match="Results attribute 'metric' is 'spearman'"):
        roi_summary(ds.assign_attrs(metric="spearman"))
    with pytest.raises(DimensionError, match=r"Results are missing the variable 'alpha' on \('layer', 'neuroid'\)"):
        roi_summary(xr.Dataset({"score": ("neuroid", [1.0])}, attrs={"metric": "r2"}).expand_dims("layer"))


def test_roi_summary_without_ceiling():
    da = xr.DataArray([[1.0, 2.0, 3.0]], dims=("layer", "neuroid"),
                      coords={"layer": ["l"], "neuroid_id": ("neuroid", ["a", "b", "c"]),
                              "roi_A": ("neuroid", [True, True, False]), "roi_B": ("neuroid", [False, False, True])})
    ds = results_from_scores(da, metric="r2", score_kind="cv", split="all")
    s = roi_summary(ds)
    assert s["score"].sel(roi="A").item() == 1.5 and s["score"].sel(roi="B").item() == 3.0
    assert "ceiling_normalised" not in s


def test_nan_argmax_rule():
    v = np.array([[np.nan, 0.1, np.nan], [0.2, np.nan, np.nan], [0.2, 0.0, np.nan]])
    idx, none = nan_argmax(v)
    np.testing.assert_array_equal(idx[:2], [1, 0])  # NaN never wins; ties go to the first
    np.testing.assert_array_equal(none, [False, False, True])


def test_old_names_are_deprecated_aliases():
    v = np.random.default_rng(0).standard_normal(50)
    with pytest.warns(FutureWarning, match="bootstrap_roi\\(\\): 'n_boot' is deprecated.*n_bootstrap=300"):
        old = bootstrap_roi(v, n_boot=300, random_state=4)
    assert old == bootstrap_roi(v, n_bootstrap=300, random_state=4)
    with pytest.warns(FutureWarning, match="'seed' is deprecated.*random_state=4"):
        assert bootstrap_roi(v, n_bootstrap=300, seed=4) == old
    assert bootstrap_roi(v, n_bootstrap=300, random_state=5) != old
    with pytest.raises(TypeError, match="got both 'seed' \\(deprecated\\) and 'random_state'"):
        bootstrap_roi(v, seed=1, random_state=2)
    y, pred = np.random.default_rng(1).standard_normal((2, 30, 4))
    with pytest.warns(FutureWarning, match="permutation_test\\(\\): 'seed' is deprecated"):
        a = permutation_test(y, pred, n_permutations=20, seed=2)
    b = permutation_test(y, pred, n_permutations=20, random_state=2)
    np.testing.assert_array_equal(a["p_value"], b["p_value"])


@pytest.mark.parametrize("aggregate", ["mean", "median"])
@pytest.mark.parametrize("with_ceiling", [False, True])
def test_bootstrap_roi_equals_a_direct_percentile_bootstrap(aggregate, with_ceiling):
    """Estimate and interval against a plain percentile bootstrap on the same draws: the
    ROI's finite values (positive ceilings) resampled with replacement; the aggregate is the
    mean or median, or with a ceiling the ratio of means or the median of ratios."""
    rng = np.random.default_rng(3)
    v = rng.gamma(1.5, 0.2, 60) - 0.05  # skewed: mean and median differ
    v[[4, 17]] = np.nan
    c = rng.uniform(0.2, 0.9, 60)
    c[9] = 0.0  # no positive ceiling: left out with one
    mask = np.ones(60, bool)
    mask[50:] = False
    ceiling = c if with_ceiling else None
    est, lo, hi = bootstrap_roi(v, mask, ceiling=ceiling, aggregate=aggregate, n_bootstrap=500,
                                random_state=11)
    keep = mask & ~np.isnan(v) & ((c > 0) if with_ceiling else True)
    x, y = v[keep], c[keep]

    def stat(xs, ys):
        if not with_ceiling:
            return xs.mean(-1) if aggregate == "mean" else np.median(xs, -1)
        return xs.sum(-1) / ys.sum(-1) if aggregate == "mean" else np.median(xs / ys, -1)

    idx = np.random.default_rng(11).integers(0, x.size, size=(500, x.size))
    boots = stat(x[idx], y[idx])
    assert est == pytest.approx(float(stat(x, y)), rel=1e-12)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(boots, [0.025, 0.975])), rel=1e-12)
    other = bootstrap_roi(v, mask, ceiling=ceiling, aggregate="median" if aggregate == "mean"
                          else "mean", n_bootstrap=500, random_state=11)[0]
    assert abs(other - est) > 1e-3  # the two aggregates are told apart on skewed values


# -- held-out scores a block of neuroids at a time ---------------------------------------------
def _scoring_data(seed: int):
    """A ridge fitted on 300 x 6 -> 3,000 neuroids, and held-out data with a NaN, an inf,
    a constant and an all-NaN (dead) neuroid in different blocks."""
    from neuroalign.encoders import RidgeEncoder

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((360, 6))
    Y = X @ rng.standard_normal((6, 3000)) + rng.standard_normal((360, 3000))
    enc = RidgeEncoder(alphas=[0.1, 10.0], cv=3).fit(X[:300], Y[:300])
    Yt = Y[300:].copy()
    Yt[5, 17] = np.nan
    Yt[:, 1500] = 3.0
    Yt[9, 2999] = np.inf
    Yt[:, 40] = np.nan
    return enc, X[300:], Yt


@pytest.mark.parametrize("seed", [0, 1])
def test_scores_in_blocks_equal_the_whole_and_name_the_same_neuroids(seed, monkeypatch):
    import neuroalign.encoders._neuroid_scores as ns
    from neuroalign.exceptions import DataQualityWarning

    enc, Xt, Yt = _scoring_data(seed)
    monkeypatch.setattr(ns, "SCORE_BLOCK", 10**9)  # one block: every neuroid at once
    with pytest.warns(DataQualityWarning) as whole_warned:
        whole = enc.score(Xt, Yt)
    monkeypatch.setattr(ns, "SCORE_BLOCK", 60 * 137)  # blocks of 137 neuroids
    with pytest.warns(DataQualityWarning) as block_warned:
        blocks = enc.score(Xt, Yt)
    np.testing.assert_allclose(blocks, whole, rtol=1e-12, atol=1e-14)
    bad = [17, 40, 1500, 2999]
    assert np.isnan(blocks[bad]).all() and np.isfinite(np.delete(blocks, bad)).all()
    assert [str(w.message) for w in block_warned] == [str(w.message) for w in whole_warned]
    assert "4 of 3000 neuroids score NaN" in str(block_warned[0].message)
    # the named warning only: no numpy RuntimeWarning (an all-NaN neuroid's nanmax) beside it
    assert {w.category for w in [*whole_warned, *block_warned]} == {DataQualityWarning}
    # and both are Pearson r of the whole predictions, neuroid by neuroid
    ok = np.isfinite(Yt).all(0)
    ok[ok] = Yt[:, ok].std(0) > 0
    np.testing.assert_allclose(blocks[ok], ns.pearson_r(Yt[:, ok], enc.predict(Xt)[:, ok]), rtol=1e-12)


@pytest.mark.filterwarnings("ignore::neuroalign.exceptions.DataQualityWarning")  # neuroid 40
def test_scores_hold_a_block_of_predictions_not_all(monkeypatch):
    import tracemalloc

    import neuroalign.encoders._neuroid_scores as ns

    enc, Xt, Yt = _scoring_data(2)
    Yt = np.nan_to_num(Yt, posinf=0.0)
    Yt[:, 1500] += np.arange(60)
    monkeypatch.setattr(ns, "SCORE_BLOCK", 60 * 100)
    tracemalloc.start()
    try:
        enc.score(Xt, Yt)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # all the predictions at once would take 1.44 MB (float64), and the scoring a few times that
    assert peak < 0.5 * Yt.nbytes, peak


@pytest.mark.parametrize("keep", ["all", "best"])
def test_layer_sweep_scores_in_blocks_equal_the_whole(keep, monkeypatch):
    import neuroalign.encoders._neuroid_scores as ns
    from neuroalign.encoders import LayerSweep

    rng = np.random.default_rng(3)
    layers = {"a": rng.standard_normal((200, 5)), "b": rng.standard_normal((200, 7))}
    # the first 700 neuroids follow layer a, the others layer b; one constant at fit
    Y = np.concatenate([layers["a"] @ rng.standard_normal((5, 700)),
                        layers["b"] @ rng.standard_normal((7, 800))], 1) + rng.standard_normal((200, 1500))
    Y[:160, 333] = 1.0
    train = {k: v[:160] for k, v in layers.items()}
    test = {k: v[160:] for k, v in layers.items()}
    sweep = LayerSweep(alphas=[0.1, 10.0], cv=3, keep_weights=keep).fit(train, Y[:160])
    assert not sweep.valid_neuroids_[333]
    monkeypatch.setattr(ns, "SCORE_BLOCK", 10**9)
    with pytest.warns(UserWarning):
        whole = sweep.score(test, Y[160:])
    monkeypatch.setattr(ns, "SCORE_BLOCK", 40 * 97)  # blocks of 97 neuroids
    with pytest.warns(UserWarning):
        blocks = sweep.score(test, Y[160:])
    np.testing.assert_allclose(blocks, whole, rtol=1e-12, atol=1e-14)
    assert np.isnan(blocks[333]) and np.isfinite(np.delete(blocks, 333)).all()
    best = sweep.best_layer_.values if hasattr(sweep.best_layer_, "values") else sweep.best_layer_
    assert (best[:700] == "a").mean() > 0.95 and (best[800:] == "b").mean() > 0.95
    # the blocks' predictions are those of predict(), neuroid by neuroid
    ok = sweep.valid_neuroids_
    np.testing.assert_allclose(blocks[ok], ns.pearson_r(Y[160:, ok], sweep.predict(test)[:, ok]), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_permutation_test_gives_undefined_scores_nan_and_leaves_them_out_of_the_fdr(seed):
    """A neuroid with a missing response, constant responses or (Pearson r) constant
    predictions has no score: NaN score and p-value, named in a warning, and not counted
    among the FDR's tests (they used to score 0 with p = 1, which raised every other
    neuroid's corrected p-value)."""
    from neuroalign.exceptions import DataQualityWarning

    rng = np.random.default_rng(seed)
    y_true = rng.standard_normal((40, 62))
    y_pred = y_true + 0.3 * rng.standard_normal((40, 62))
    y_true[5, 1:59] = np.nan      # missing responses
    y_true[:, 59] = 2.0           # constant responses
    y_pred[:, 60] = 1.0           # a constant prediction (a neuroid excluded at fit)
    y_pred[3, 61] = np.inf
    for metric in ("pearson", "r2"):
        with pytest.warns(DataQualityWarning, match="no defined score") as warned:
            res = permutation_test(y_true, y_pred, metric=metric, n_permutations=199,
                                   random_state=seed)
        undefined = np.r_[1:60, 61] if metric == "r2" else np.r_[1:62]
        assert "columns 1, 2, 3" in str(warned[0].message)
        for key in ("score", "p_value", "p_fdr"):
            assert np.isnan(res[key][undefined]).all(), (metric, key)
        assert not res["significant"][undefined].any()
        defined = np.setdiff1d(np.arange(62), undefined)
        assert np.isfinite(res["score"][defined]).all()
        alone = permutation_test(y_true[:, defined], y_pred[:, defined], metric=metric,
                                 n_permutations=199, random_state=seed)
        np.testing.assert_allclose(res["score"][defined], alone["score"], rtol=1e-13)
        for key in ("p_value", "p_fdr", "significant"):
            np.testing.assert_array_equal(res[key][defined], alone[key])
