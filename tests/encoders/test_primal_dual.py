"""Automatic primal/dual form: the kernel (dual) form when features outnumber the training
samples, ``form=`` overrides, and both give the same alphas and predictions (also against
himalaya's KernelRidgeCV and scikit-learn's RidgeCV on identical inputs)."""

import numpy as np
import pytest
from himalaya.kernel_ridge import KernelRidgeCV
from sklearn.linear_model import RidgeCV as SkRidgeCV

from neuroalign.encoders import RidgeEncoder, ridge_cv
from neuroalign.encoders._solvers import choose_form
from neuroalign.exceptions import DataQualityWarning
from neuroalign.store import cv_folds

ALPHAS = np.logspace(-2, 5, 15)


def make(n, p, t=25, seed=0, rank=None, dup_rows=0):
    """Planted responses; ``rank`` < min(n, p) makes X rank deficient; ``dup_rows`` copies
    rows (repeated stimuli seen as separate samples)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, rank or p))
    X = Z @ rng.standard_normal((rank, p)) / np.sqrt(rank) if rank else Z
    if dup_rows:
        X[-dup_rows:] = X[:dup_rows]
    W = rng.standard_normal((p, t)) * rng.uniform(0.05, 0.5, t) / np.sqrt(p) * 4
    Y = X @ W + rng.standard_normal((n, t))
    return X, Y


CASES = {"p>>n": dict(n=50, p=240), "rank-deficient": dict(n=60, p=120, rank=12),
         "duplicate rows": dict(n=50, p=100, dup_rows=8), "n>p": dict(n=120, p=30)}


def test_choose_form_follows_the_smaller_gram_matrix():
    assert choose_form(100, 99) == "primal"
    assert choose_form(100, 100) == "primal"
    assert choose_form(100, 101) == "dual"


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_auto_form_gives_the_forced_forms_answer(case, seed):
    X, Y = make(**CASES[case], seed=seed)
    auto = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(X, Y)
    expected = "primal" if case == "n>p" else "dual"
    assert auto.form_ == expected
    for form in ("primal", "dual"):
        forced = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu", form=form).fit(X, Y)
        assert forced.form_ == form
        np.testing.assert_array_equal(forced.best_alphas_, auto.best_alphas_)
        np.testing.assert_allclose(forced.cv_scores_, auto.cv_scores_, rtol=0, atol=1e-9)
        np.testing.assert_allclose(forced.predict(X), auto.predict(X), rtol=1e-7, atol=1e-9)


def test_float32_dual_matches_float64_primal_on_p_much_larger_than_n():
    X, Y = make(60, 300, t=30, seed=3)
    ref = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu", form="primal").fit(X, Y)
    f32 = RidgeEncoder(alphas=ALPHAS, dtype="float32", device="cpu").fit(X.astype(np.float32), Y)
    assert f32.form_ == "dual"
    agree = np.mean(f32.best_alphas_ == ref.best_alphas_)
    assert agree >= 0.9, agree  # float32 rounding may flip a near-tie
    same = f32.best_alphas_ == ref.best_alphas_
    np.testing.assert_allclose(f32.predict(X)[:, same], ref.predict(X)[:, same], rtol=1e-3,
                               atol=1e-3 * Y.std())


@pytest.mark.parametrize("case", ["p>>n", "rank-deficient", "duplicate rows"])
def test_dual_matches_himalaya_kernel_ridge_cv(case):
    """Same folds, absolute alphas on the same centred data: same alphas, predictions."""
    X, Y = make(**CASES[case], seed=5)
    X = X - X.mean(0)  # himalaya's kernel ridge has no feature centring; the intercept is Y's mean
    folds = cv_folds(np.arange(len(X)).astype(str), 5)
    ours = RidgeEncoder(alphas=ALPHAS, cv=folds, dtype="float64", device="cpu",
                        relative_alphas=False).fit(X, Y)
    assert ours.form_ == "dual"
    ref = KernelRidgeCV(alphas=ALPHAS, kernel="linear", cv=folds, fit_intercept=True).fit(X, Y)
    np.testing.assert_allclose(ours.best_alphas_, np.asarray(ref.best_alphas_), rtol=1e-12)
    np.testing.assert_allclose(ours.predict(X), np.asarray(ref.predict(X)), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", ["p>>n", "rank-deficient"])
def test_dual_ridge_cv_errors_match_the_primal_ones_at_every_alpha(case):
    X, Y = make(**CASES[case], seed=7)
    folds = cv_folds(np.arange(len(X)).astype(str), 4)
    d = ridge_cv(X, Y, ALPHAS, folds, form="dual")
    p = ridge_cv(X, Y, ALPHAS, folds, form="primal")
    a = ridge_cv(X, Y, ALPHAS, folds)
    assert (d.form, p.form, a.form) == ("dual", "primal", "dual")
    np.testing.assert_allclose(d.cv_mse, p.cv_mse, rtol=1e-8)
    np.testing.assert_allclose(a.cv_r2, p.cv_r2, rtol=0, atol=1e-9)


def test_loo_on_p_greater_than_n_matches_sklearn_gram_mode():
    """Leave-one-out on p > n (scikit-learn's gram mode): same alphas and predictions."""
    X, Y = make(50, 300, seed=9)
    Xz = (X - X.mean(0)) / X.std(0)
    ours = RidgeEncoder(alphas=ALPHAS, cv="loo", dtype="float64", device="cpu").fit(Xz, Y)
    ref = SkRidgeCV(alphas=ALPHAS, alpha_per_target=True, gcv_mode="eigen").fit(Xz, Y)
    np.testing.assert_array_equal(ours.best_alphas_, ref.alpha_)
    np.testing.assert_allclose(ours.predict(Xz), ref.predict(Xz), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_dual_fit_keeps_dual_coefficients_and_forms_coef_only_when_asked(fit_intercept):
    """The dual form's weights are dual coefficients; coef (formed lazily, in the working
    dtype) is the primal form's, and predictions without it equal those with it."""
    X, Y = make(40, 150, t=12, seed=11)
    folds = cv_folds(np.arange(len(X)).astype(str), 4)
    kw = dict(fit_intercept=fit_intercept, refit=True)
    d = ridge_cv(X, Y, ALPHAS, folds, form="dual", **kw)
    p = ridge_cv(X, Y, ALPHAS, folds, form="primal", **kw)
    assert d.dual is not None and p.dual is None
    assert d.dual.dual.shape == (40, 12) and vars(d).get("_coef") is None
    pred = d.predict(X[:7])  # through the kernel
    assert vars(d).get("_coef") is None
    np.testing.assert_array_equal(d.best_alphas, p.best_alphas)
    scale = np.abs(p.coef).max()
    np.testing.assert_allclose(d.coef, p.coef, rtol=1e-7, atol=1e-10 * scale)
    assert d.coef is d.coef  # formed once, then kept
    np.testing.assert_allclose(d.intercept, p.intercept, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(pred, p.predict(X[:7]), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(pred, d.predict(X[:7]), rtol=1e-8, atol=1e-10)


def test_dual_encoder_coef_is_lazy_and_predictions_do_not_form_it():
    X, Y = make(40, 150, t=6, seed=12)
    Y[:, 2] = 3.5  # constant: excluded, predicted as its value
    with pytest.warns(DataQualityWarning, match="1 constant"):
        enc = RidgeEncoder(alphas=ALPHAS, cv=4, dtype="float64", device="cpu").fit(X, Y)
        ref = RidgeEncoder(alphas=ALPHAS, cv=4, dtype="float64", device="cpu",
                           form="primal").fit(X, Y)
    assert enc.form_ == "dual" and "_coef" not in vars(enc)
    pred = enc.predict(X[:5])
    assert "_coef" not in vars(enc)  # predict goes through the kernel
    np.testing.assert_allclose(pred[:, 2], 3.5)
    np.testing.assert_allclose(pred, ref.predict(X[:5]), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(enc.coef_, ref.coef_, rtol=1e-7, atol=1e-12)
    assert enc.coef_.shape == (150, 6) and not enc.coef_[:, 2].any()
    np.testing.assert_allclose(enc.predict(X[:5]), pred, rtol=1e-10, atol=1e-12)


def test_dual_blocks_of_features_give_the_one_block_answer(monkeypatch):
    """The Gram matrix, the kernel of new rows and coef are accumulated over blocks of
    features; tiny blocks (7 features here) give the single-block answer."""
    from neuroalign.encoders import _dual

    rng = np.random.default_rng(13)
    X = rng.standard_normal((30, 100)).astype(np.float32) * 3 + 1e3  # large mean: centred in float64
    Y = rng.standard_normal((30, 5))
    folds = cv_folds(np.arange(30).astype(str), 3)
    one = ridge_cv(X, Y, ALPHAS, folds, refit=True, dtype="float64")
    monkeypatch.setattr(_dual, "BLOCK_BYTES", 30 * 8 * 7)
    assert _dual.feature_block(30) == 7
    many = ridge_cv(X, Y, ALPHAS, folds, refit=True, dtype="float64")
    np.testing.assert_array_equal(many.best_alphas, one.best_alphas)
    np.testing.assert_allclose(many.coef, one.coef, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(many.predict(X[:4]), one.predict(X[:4]), rtol=1e-10)
    # and the float64 reference on the centred data (the mean of 1e3 costs nothing)
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(0)
    ref = ridge_cv(Xc, Y, ALPHAS, folds, refit=True, form="primal")
    np.testing.assert_array_equal(many.best_alphas, ref.best_alphas)
    np.testing.assert_allclose(many.coef, ref.coef, rtol=1e-6, atol=1e-9)


def test_dual_encoder_pickles_and_clones():
    import pickle

    from sklearn.base import clone

    X, Y = make(40, 150, t=5, seed=14)
    enc = RidgeEncoder(alphas=ALPHAS, cv=4, device="cpu").fit(X, Y)
    assert enc.form_ == "dual"
    again = pickle.loads(pickle.dumps(enc))
    np.testing.assert_array_equal(again.predict(X[:6]), enc.predict(X[:6]))
    np.testing.assert_array_equal(again.coef_, enc.coef_)
    fresh = clone(enc)
    assert not hasattr(fresh, "coef_") and "_dual" not in vars(fresh)


def test_validation_errors_of_float32_fits_are_summed_in_float64():
    """float32 residuals, float64 sums: float32 sums flip near-tied alphas (1.1 % of the
    targets of benchmarks/bench_primal_dual.py against the float64 fit, 0.05 % now)."""
    from neuroalign.encoders._backend import NumpyOps

    R = np.full((200_000, 2), 0.1, dtype=np.float32)
    R[:, 1] = -0.3
    exact = 200_000 * R[0].astype(np.float64) ** 2
    np.testing.assert_allclose(NumpyOps().sqnorm_cols(R), exact, rtol=1e-7)


def test_dual_fit_refuses_training_features_modified_after_the_fit():
    """The dual form keeps a reference to X: changed in place after the fit, it is caught
    (not silently used for coef_ or predictions)."""
    from neuroalign.exceptions import DataFormatError

    X, Y = make(40, 150, t=5, seed=15)
    enc = RidgeEncoder(alphas=ALPHAS, cv=4, dtype="float64", device="cpu").fit(X, Y)
    res = ridge_cv(X, Y, ALPHAS, cv_folds(np.arange(40).astype(str), 4), refit=True)
    Xnew = X[:3].copy()
    before = enc.predict(Xnew)
    X[7, 42] += 1e-9  # one value, slightly
    for call in (lambda: enc.predict(Xnew), lambda: enc.coef_, lambda: res.coef,
                 lambda: res.predict(Xnew)):
        with pytest.raises(DataFormatError, match=r"modified after the fit \(columns 42 "
                                                  r"differ\).*X.copy\(\)"):
            call()
    X[7, 42] -= 1e-9
    X[7, 42] = make(40, 150, t=5, seed=15)[0][7, 42]  # restored: works again
    np.testing.assert_array_equal(enc.predict(Xnew), before)


@pytest.mark.parametrize("seed", [0, 1])
def test_dual_fit_refuses_training_rows_reordered_after_the_fit(seed):
    """A reordering of X's rows in place keeps every column sum, exactly so for binary
    features: the fingerprint's row-weighted sums catch it (a swap of two rows, or a
    shuffle), while swapping two identical rows changes nothing and is accepted."""
    from neuroalign.exceptions import DataFormatError

    rng = np.random.default_rng(seed)
    X = (rng.random((40, 300)) < 0.2).astype(np.float32)
    X[11] = X[3]  # two identical rows
    Y = X @ rng.standard_normal((300, 4)) + 0.5 * rng.standard_normal((40, 4))
    Xnew = (rng.random((5, 300)) < 0.2).astype(np.float32)
    enc = RidgeEncoder(alphas=ALPHAS, cv=4, device="cpu").fit(X, Y)
    assert enc.form_ == "dual"
    before = enc.predict(Xnew)
    X[[3, 11]] = X[[11, 3]]  # identical rows swapped: the same data
    np.testing.assert_array_equal(enc.predict(Xnew), before)
    swapped = X.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert not np.array_equal(X[0], X[1])
    for other in (swapped, X[rng.permutation(len(X))]):
        # the plain column sums cannot tell (binary values: exact in any order)
        np.testing.assert_array_equal(other.astype(np.float64).sum(0), X.astype(np.float64).sum(0))
        kept = X.copy()
        X[...] = other
        for call in (lambda: enc.predict(Xnew), lambda: enc.coef_):
            with pytest.raises(DataFormatError, match="modified after the fit"):
                call()
        X[...] = kept
    np.testing.assert_array_equal(enc.predict(Xnew), before)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("reps", "n_stim", "p", "rank", "form"), [
    (2, 40, 150, None, "auto"),    # repeated stimuli, p > n: the dual form, chosen
    (1, 40, 400, None, "primal"),  # p > n, primal forced
    (1, 120, 60, 20, "dual"),      # features of rank 20 < p < n, dual forced
    (3, 50, 40, 25, "auto"),       # repetitions and low rank, primal chosen
])
def test_float32_fits_of_rank_deficient_problems_equal_float64(seed, reps, n_stim, p, rank, form):
    """Where the Gram matrix has a null space (repeated stimuli, p > n, features of low
    rank), its directions carry nothing in exact arithmetic; in float32, divided by a small
    alpha, they swamped the refit (predictions off by 0.3 % of their range, varying with
    the batch of targets) and the primal folds (other alphas). Left out, the float32 fit is
    the float64 one to float32 rounding, whatever the batch."""
    rng = np.random.default_rng(seed)
    Xs = rng.standard_normal((n_stim, rank or p)) @ (
        rng.standard_normal((rank, p)) if rank else np.eye(p))
    X = np.repeat(Xs, reps, axis=0).astype(np.float32)
    Y = (X @ rng.standard_normal((p, 20)) / np.sqrt(p) + rng.standard_normal((len(X), 20))
         ).astype(np.float32)
    groups = np.repeat(np.arange(n_stim), reps)
    folds = [(np.flatnonzero(groups % 5 != k), np.flatnonzero(groups % 5 == k)) for k in range(5)]
    alphas = np.logspace(-2, 5, 15)
    ref = RidgeEncoder(alphas=alphas, cv=folds, dtype="float64", form=form, device="cpu").fit(
        X.astype(np.float64), Y.astype(np.float64))
    R = ref.predict(Xs.astype(np.float64))
    preds = []
    for batch in (1, 7, 4096):
        enc = RidgeEncoder(alphas=alphas, cv=folds, form=form, n_targets_batch=batch,
                           device="cpu").fit(X, Y)
        assert enc.form_ == (form if form != "auto" else "dual" if p > len(X) else "primal")
        assert np.mean(enc.best_alphas_ == ref.best_alphas_) >= 0.95
        np.testing.assert_allclose(enc.cv_scores_, ref.cv_scores_, atol=1e-5)
        preds.append(enc.predict(Xs.astype(np.float32)))
        assert np.abs(preds[-1] - R).max() <= 1e-4 * np.ptp(R)
    assert max(np.abs(a - preds[0]).max() for a in preds) <= 1e-5 * np.ptp(R)


@pytest.mark.parametrize(("xs", "ys"), [(1e13, 1e-13), (1e15, 1e-15), (1e-17, 1e6), (1e-13, 1.0)])
def test_float32_dual_weights_do_not_depend_on_the_ratio_of_units(xs, ys):
    """The dual coefficients used to be kept in units of y / x^2, which leave float32 at
    opposite extremes of X's and Y's units (X * 1e15 with Y * 1e-15 predicted 117 % off,
    X * 1e-17 with Y * 1e6 NaN). Now in Y's units, the features' scale kept in float64:
    the fit in any units is the fit in plain units, rescaled."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((40, 120))
    Y = X @ rng.standard_normal((120, 3)) / 10 + rng.standard_normal((40, 3))
    base = RidgeEncoder(alphas=ALPHAS, cv=5, form="dual", device="cpu").fit(X, Y)
    enc = RidgeEncoder(alphas=ALPHAS, cv=5, form="dual", device="cpu").fit(X * xs, Y * ys)
    np.testing.assert_array_equal(enc.best_alphas_, base.best_alphas_)
    ref = base.predict(X)
    np.testing.assert_allclose(enc.predict(X * xs) / ys, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(enc.coef_ * (xs / ys), base.coef_, rtol=0,
                               atol=1e-5 * np.abs(base.coef_).max())
    np.testing.assert_allclose(enc.intercept_ / ys, base.intercept_, rtol=0,
                               atol=1e-5 * np.abs(ref).max())
