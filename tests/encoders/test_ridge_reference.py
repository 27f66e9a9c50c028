"""RidgeEncoder / ridge_cv against scikit-learn and himalaya on identical inputs, and the
numbers that must not depend on units, precision or ties."""

import numpy as np
import pytest
import torch
from himalaya.ridge import RidgeCV as HimalayaRidgeCV
from sklearn.linear_model import Ridge
from sklearn.linear_model import RidgeCV as SkRidgeCV
from sklearn.metrics import r2_score
from sklearn.preprocessing import StandardScaler

from neuroalign.encoders import RidgeEncoder, TimeResolvedEncoder, ridge_cv
from neuroalign.store import cv_folds

ALPHAS = np.logspace(-2, 5, 15)
# every test here runs with the ridge core on numpy and on torch (tests/encoders/conftest.py)
pytestmark = pytest.mark.usefixtures("ridge_backend")
SEEDS = [0, 1, 2]


def make(n=100, p=20, t=30, seed=0, noise=1.0, rank=None, x_mean=0.0, y_mean=0.0):
    """Planted linear responses; the signal share varies across targets."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, rank or p))
    X = Z @ rng.standard_normal((rank, p)) / np.sqrt(rank) if rank else Z
    W = rng.standard_normal((p, t)) * rng.uniform(0.05, 0.5, t) / np.sqrt(p) * 4
    Y = X @ W + noise * rng.standard_normal((n, t))
    return X + x_mean, Y + y_mean


def standardised(X):
    return StandardScaler().fit_transform(X)


# -- leave-one-out against scikit-learn's RidgeCV ------------------------------------------
@pytest.mark.parametrize("n,p", [(30, 80), (80, 20), (40, 40)])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_loo_errors_match_sklearn(n, p, fit_intercept, seed):
    X, Y = make(n, p, t=25, seed=seed, x_mean=2.0, y_mean=3.0)
    sk = SkRidgeCV(alphas=ALPHAS, alpha_per_target=True, store_cv_results=True,
                   fit_intercept=fit_intercept).fit(X, Y)
    ref = sk.cv_results_.mean(0).T  # (n_alphas, n_targets): mean squared LOO error
    res = ridge_cv(torch.from_numpy(X), torch.from_numpy(Y), ALPHAS, "loo",
                   fit_intercept=fit_intercept, relative_alphas=False, refit=True)
    np.testing.assert_allclose(res.cv_mse, ref, rtol=1e-9)
    np.testing.assert_array_equal(res.best_alphas, sk.alpha_)
    np.testing.assert_allclose(res.coef.numpy(), sk.coef_.T, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(res.intercept.numpy(), np.broadcast_to(sk.intercept_, (Y.shape[1],)),
                               rtol=1e-7, atol=1e-9)


def test_loo_encoder_matches_sklearn_on_standardised_features():
    X, Y = make(60, 150, t=40, seed=3)
    Xz = standardised(X)
    ours = RidgeEncoder(alphas=ALPHAS, cv="loo", dtype="float64").fit(Xz, Y)
    ref = SkRidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(Xz, Y)
    assert ours.alpha_scale_ == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_array_equal(ours.best_alphas_, ref.alpha_)
    np.testing.assert_allclose(ours.predict(Xz), ref.predict(Xz), rtol=1e-7, atol=1e-9)


# -- k-fold against himalaya (same folds) --------------------------------------------------
@pytest.mark.parametrize("case", ["n>p", "p>n", "rank-deficient"])
@pytest.mark.parametrize("seed", SEEDS)
def test_kfold_matches_himalaya(case, seed):
    shape = {"n>p": dict(n=120, p=30), "p>n": dict(n=50, p=150), "rank-deficient": dict(n=60, p=80, rank=10)}
    X, Y = make(**shape[case], t=30, seed=seed)
    Xz = standardised(X) if case != "rank-deficient" else X / X.std()
    folds = cv_folds(np.arange(len(X)).astype(str), 5)
    ours = RidgeEncoder(alphas=ALPHAS, cv=5, dtype="float64", relative_alphas=False).fit(Xz, Y)
    ref = HimalayaRidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=True).fit(Xz, Y)
    np.testing.assert_allclose(ours.best_alphas_, np.asarray(ref.best_alphas_), rtol=1e-12)
    np.testing.assert_allclose(ours.predict(Xz), np.asarray(ref.predict(Xz)), rtol=1e-6, atol=1e-8)


def test_relative_alphas_on_standardised_features_equal_absolute_ones():
    X, Y = make(120, 30, seed=4)
    Xz = standardised(X)
    rel = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(Xz, Y)
    ab = RidgeEncoder(alphas=ALPHAS, dtype="float64", relative_alphas=False).fit(Xz, Y)
    np.testing.assert_array_equal(rel.best_alphas_, ab.best_alphas_)
    np.testing.assert_allclose(rel.coef_, ab.coef_, rtol=1e-10)
    # on raw features the relative penalty is alpha * mean feature variance
    raw = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(X * 7.0, Y)
    assert raw.alpha_scale_ == pytest.approx(49.0 * X.var(0).mean(), rel=1e-10)
    folds = cv_folds(np.arange(len(X)).astype(str), 5)
    ref = HimalayaRidgeCV(alphas=ALPHAS * raw.alpha_scale_, cv=folds, fit_intercept=True).fit(X * 7.0, Y)
    np.testing.assert_allclose(raw.best_alphas_ * raw.alpha_scale_, np.asarray(ref.best_alphas_), rtol=1e-9)


def test_float32_matches_himalaya_float32():
    X, Y = make(150, 40, seed=5)
    Xz, Y = standardised(X).astype(np.float32), Y.astype(np.float32)
    folds = cv_folds(np.arange(len(X)).astype(str), 5)
    ours = RidgeEncoder(alphas=ALPHAS, cv=5).fit(Xz, Y)
    ref = HimalayaRidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=True).fit(Xz, Y)
    assert np.mean(np.isclose(ours.best_alphas_, np.asarray(ref.best_alphas_), rtol=1e-6)) >= 0.95
    np.testing.assert_allclose(ours.predict(Xz), np.asarray(ref.predict(Xz)), rtol=1e-3,
                               atol=1e-3 * Y.std())


def test_repeated_stimuli_match_himalaya_on_grouped_folds():
    import xarray as xr

    rng = np.random.default_rng(6)
    n_stim, reps = 40, 3
    ids = np.array([f"s{i:02d}" for i in range(n_stim)])
    F = rng.standard_normal((n_stim, 25))
    order = rng.permutation(n_stim * reps)  # presentations in random order
    rows = np.repeat(np.arange(n_stim), reps)[order]
    Y = F[rows] @ rng.standard_normal((25, 20)) * 0.3 + rng.standard_normal((len(rows), 20))
    feats = xr.DataArray(F, dims=("stimulus", "u"), coords={"stimulus_id": ("stimulus", ids)})
    resp = xr.DataArray(Y, dims=("presentation", "neuroid"),
                        coords={"stimulus_id": ("presentation", ids[rows])})
    ours = RidgeEncoder(alphas=ALPHAS, cv=5, dtype="float64", relative_alphas=False).fit(feats, resp)
    folds = cv_folds(ids[rows], 5)
    ref = HimalayaRidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=True).fit(F[rows], Y)
    np.testing.assert_allclose(ours.best_alphas_, np.asarray(ref.best_alphas_), rtol=1e-12)
    np.testing.assert_allclose(ours.predict(F), np.asarray(ref.predict(F)), rtol=1e-6, atol=1e-8)


# -- what cv_scores_ means ------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("form", ["primal", "dual"])
def test_cv_scores_are_mean_fold_r2_about_the_validation_mean(seed, form):
    # few samples per fold and a response mean that drifts across folds: a training-mean
    # denominator would differ clearly
    X, Y = make(40, 10, t=12, seed=seed, noise=1.0)
    Y = Y + np.linspace(-1, 1, len(Y))[:, None]
    enc = RidgeEncoder(alphas=ALPHAS, cv=4, dtype="float64", form=form).fit(X, Y)
    folds = cv_folds(np.arange(len(X)).astype(str), 4)
    per_fold = []
    for tr, te in folds:
        fold = np.empty(Y.shape[1])
        for j in range(Y.shape[1]):
            m = Ridge(alpha=enc.best_alphas_[j] * enc.alpha_scale_).fit(X[tr], Y[tr, j])
            fold[j] = r2_score(Y[te, j], m.predict(X[te]))
        per_fold.append(fold)
    np.testing.assert_allclose(enc.cv_scores_, np.mean(per_fold, 0), atol=1e-6)


def test_loo_cv_scores_are_one_minus_press_over_sst():
    X, Y = make(50, 10, t=8, seed=7)
    enc = RidgeEncoder(alphas=ALPHAS, cv="loo", dtype="float64", relative_alphas=False).fit(X, Y)
    sk = SkRidgeCV(alphas=ALPHAS, alpha_per_target=True, store_cv_results=True).fit(X, Y)
    press = sk.cv_results_[:, np.arange(Y.shape[1]), np.searchsorted(ALPHAS, sk.alpha_)].sum(0)
    np.testing.assert_allclose(enc.cv_scores_, 1 - press / ((Y - Y.mean(0)) ** 2).sum(0), rtol=1e-9)


# -- float32 with a large mean -------------------------------------------------------------
@pytest.mark.parametrize("cv", [5, "loo"])
@pytest.mark.parametrize("form", ["primal", "dual"])
@pytest.mark.parametrize("seed", SEEDS)
def test_float32_gives_the_float64_answer_with_large_means(cv, form, seed):
    rng = np.random.default_rng(seed)
    X, Y = make(120, 30 if form == "primal" else 150, t=20, seed=seed)
    X = X + rng.uniform(1e3, 1e4, X.shape[1])  # large and unequal feature means
    Y = Y * 0.5 + 500.0  # mean ~1000 sd: float32 outputs resolve 1e-4 sd
    a = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype="float64", form=form).fit(X, Y)
    b = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype="float32", form=form).fit(X, Y)
    sd = Y.std(0)
    assert np.mean(a.best_alphas_ == b.best_alphas_) >= 0.9
    np.testing.assert_allclose(b.cv_scores_, a.cv_scores_, atol=1e-3)
    assert np.max(np.abs(b.predict(X) - a.predict(X)) / sd) < 1e-3
    # float32 input data too (the cast itself is the only loss)
    c = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype="float32", form=form).fit(X.astype(np.float32),
                                                                           Y.astype(np.float32))
    assert np.max(np.abs(c.predict(X.astype(np.float32)) - a.predict(X)) / sd) < 1e-2
    assert np.median(c.cv_scores_) > np.median(a.cv_scores_) - 0.02


def test_float32_every_alpha_and_fold_mean_error_matches_float64():
    X, Y = make(90, 25, t=10, seed=8)
    X, Y = X + 5e3, Y + 1e4
    folds = cv_folds(np.arange(len(X)).astype(str), 3)
    r64 = ridge_cv(torch.from_numpy(X), torch.from_numpy(Y), ALPHAS, folds, refit=True)
    r32 = ridge_cv(torch.from_numpy(X), torch.from_numpy(Y), ALPHAS, folds, refit=True,
                   dtype=torch.float32)
    np.testing.assert_allclose(r32.cv_mse, r64.cv_mse, rtol=1e-4)
    np.testing.assert_allclose(r32.coef.numpy(), r64.coef.numpy(), rtol=1e-3, atol=1e-4 * np.abs(r64.coef.numpy()).max())
    for tr, te in folds:  # each fold on its own
        a = ridge_cv(torch.from_numpy(X), torch.from_numpy(Y), ALPHAS, [(tr, te)])
        b = ridge_cv(torch.from_numpy(X), torch.from_numpy(Y), ALPHAS, [(tr, te)], dtype=torch.float32)
        np.testing.assert_allclose(b.cv_mse, a.cv_mse, rtol=1e-4)


# -- units -----------------------------------------------------------------------------------
FACTORS = [1e-15, 1e-13, 1e-4, 1e15]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cv", [5, "loo"])
def test_units_change_nothing(dtype, cv):
    X, Y = make(100, 20, t=20, seed=9)
    base = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype=dtype).fit(X, Y)
    for cx in FACTORS:
        for cy in FACTORS:
            enc = RidgeEncoder(alphas=ALPHAS, cv=cv, dtype=dtype).fit(X * cx, Y * cy)
            same = np.mean(enc.best_alphas_ == base.best_alphas_)
            assert same == 1.0 if dtype == "float64" else same >= 0.9, (cx, cy, same)
            tol = 1e-7 if dtype == "float64" else 1e-3
            np.testing.assert_allclose(enc.cv_scores_, base.cv_scores_, atol=tol)
            np.testing.assert_allclose(enc.predict(X * cx) / cy, base.predict(X), rtol=tol,
                                       atol=tol * Y.std())
            assert enc.alpha_scale_ == pytest.approx(base.alpha_scale_ * cx ** 2, rel=1e-6)


def test_meg_units_time_resolved_encoder():
    rng = np.random.default_rng(10)
    n, p, v, t = 80, 10, 3, 4
    X = rng.standard_normal((n, p))
    cube = np.einsum("np,pvt->nvt", X, rng.standard_normal((p, v, t)) * 0.5) + rng.standard_normal((n, v, t))
    base = TimeResolvedEncoder(alphas=ALPHAS, cv=5).fit(X, cube)
    tesla = TimeResolvedEncoder(alphas=ALPHAS, cv=5).fit(X, cube * 1e-13)
    assert float(np.median(tesla.cv_scores_)) > 0.3
    np.testing.assert_allclose(tesla.cv_scores_.values, base.cv_scores_.values, atol=1e-3)
    assert np.mean(tesla.best_alphas_.values == base.best_alphas_.values) >= 0.9


def test_tiny_units_match_sklearn_on_identical_inputs():
    X, Y = make(60, 15, t=15, seed=11)
    X, Y = X * 1e-13, Y * 1e-13
    ours = RidgeEncoder(alphas=ALPHAS, cv="loo", dtype="float64").fit(X, Y)
    ref = SkRidgeCV(alphas=ALPHAS * ours.alpha_scale_, alpha_per_target=True).fit(X, Y)
    np.testing.assert_allclose(ours.best_alphas_ * ours.alpha_scale_, ref.alpha_, rtol=1e-12)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-7, atol=1e-9 * Y.std())
    # k-fold: the alpha with the lowest mean fold MSE of scikit-learn's Ridge (no ties here)
    kf = RidgeEncoder(alphas=ALPHAS, cv=5, dtype="float64").fit(X, Y)
    folds = cv_folds(np.arange(len(X)).astype(str), 5)
    mse = np.zeros((len(ALPHAS), Y.shape[1]))
    for a, alpha in enumerate(ALPHAS):
        for tr, te in folds:
            m = Ridge(alpha=alpha * kf.alpha_scale_).fit(X[tr], Y[tr])
            mse[a] += ((m.predict(X[te]) - Y[te]) ** 2).mean(0) / len(folds)
    np.testing.assert_array_equal(kf.best_alphas_, ALPHAS[np.argmin(mse, 0)])


# -- ties ------------------------------------------------------------------------------------
def test_exact_ties_go_to_the_largest_alpha_in_kfold_and_the_first_in_loo():
    rng = np.random.default_rng(12)
    n = 40
    X = np.column_stack([rng.standard_normal(n), np.full(n, 2.0)])
    Y = np.column_stack([X[:, 0] * 2 + rng.standard_normal(n), rng.standard_normal(n)])
    Xflat = np.full((n, 3), 2.0)  # no feature varies: every alpha predicts the training mean
    kf = RidgeEncoder(alphas=ALPHAS, cv=5, dtype="float64").fit(Xflat, Y)
    np.testing.assert_array_equal(kf.best_alphas_, [ALPHAS[-1]] * 2)
    loo = RidgeEncoder(alphas=ALPHAS, cv="loo", dtype="float64").fit(Xflat, Y)
    np.testing.assert_array_equal(loo.best_alphas_, [ALPHAS[0]] * 2)  # scikit-learn's rule
    sk = SkRidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(Xflat, Y)
    np.testing.assert_array_equal(loo.best_alphas_, sk.alpha_)
    # himalaya's rule on the same exact tie
    folds = cv_folds(np.arange(n).astype(str), 5)
    him = HimalayaRidgeCV(alphas=ALPHAS, cv=folds, fit_intercept=True).fit(Xflat, Y)
    np.testing.assert_allclose(kf.best_alphas_, np.asarray(him.best_alphas_), rtol=1e-12)
    # a real signal is not a tie
    assert RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(X, Y).best_alphas_[0] < ALPHAS[-1]


def test_layer_sweep_and_fir_encoder_do_not_depend_on_units():
    from neuroalign.encoders import FIREncoder, LayerSweep

    X, Y = make(90, 12, t=8, seed=13)
    layers = {"a": X[:, :6], "b": X[:, 6:]}
    base = LayerSweep(alphas=ALPHAS, cv=5).fit(layers, Y)
    tiny = LayerSweep(alphas=ALPHAS, cv=5).fit({k: v * 1e-13 for k, v in layers.items()}, Y * 1e-13)
    np.testing.assert_allclose(tiny.scores_.values, base.scores_.values, atol=1e-3)
    assert np.mean(tiny.best_alphas_.values == base.best_alphas_.values) >= 0.9
    fir = FIREncoder(delays=(0, 1), alphas=ALPHAS, cv=4).fit(X, Y)
    fir_tiny = FIREncoder(delays=(0, 1), alphas=ALPHAS, cv=4).fit(X * 1e13, Y * 1e-13)
    np.testing.assert_allclose(fir_tiny.cv_scores_, fir.cv_scores_, atol=1e-3)
    np.testing.assert_allclose(fir_tiny.predict(X * 1e13) * 1e13, fir.predict(X), rtol=1e-3,
                               atol=1e-3 * Y.std())
