"""Automatic primal/dual form: the kernel (dual) form when features outnumber the training
samples, ``form=`` overrides, and both give the same alphas and predictions (also against
himalaya's KernelRidgeCV and scikit-learn's RidgeCV on identical inputs)."""

import numpy as np
import pytest
from himalaya.kernel_ridge import KernelRidgeCV
from sklearn.linear_model import RidgeCV as SkRidgeCV

from neuroalign.encoders import RidgeEncoder, ridge_cv
from neuroalign.encoders._solvers import choose_form
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
