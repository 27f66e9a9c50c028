"""The Gram form of a primal fold's validation errors, the folds' decompositions from the
features' cross-product and ``X^T Y`` as the sum of the folds' parts
(:mod:`neuroalign.encoders._ridge_folds`), against a brute-force ridge per fold and
against the residual form, on awkward data and folds."""

import numpy as np
import pytest

import neuroalign._preflight as pf
import neuroalign.encoders._ridge_folds as rf
from neuroalign._preflight import folded_xty, gram_errors
from neuroalign.encoders import ridge_cv
from neuroalign.encoders._solvers import TIE_SLOPE

PENALTIES = np.logspace(-4, 4, 9)


def _brute_cv_mse(X, Y, penalties, folds):
    """Mean over folds of the validation MSE of a centred ridge solved directly (float64)."""
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    out = np.zeros((len(penalties), Y.shape[1]))
    for train, val in folds:
        xm, ym = X[train].mean(0), Y[train].mean(0)
        Xc, Yc = X[train] - xm, Y[train] - ym
        for a, pen in enumerate(penalties):
            W = np.linalg.solve(Xc.T @ Xc + pen * np.eye(X.shape[1]), Xc.T @ Yc)
            out[a] += (((X[val] - xm) @ W + ym - Y[val]) ** 2).mean(0)
    return out / len(folds)


def _data(seed, n=600, p=20, t=40):
    """Features with a constant and a duplicated column (rank deficient) and an offset;
    targets with offsets and tiny units, a constant one and two fitted almost exactly."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) @ rng.standard_normal((p, p)) + 40.0
    X[:, 3] = 2.5
    X[:, 7] = X[:, 5]
    W = rng.standard_normal((p, t))
    Y = X @ W + rng.standard_normal((n, t)) * rng.uniform(0.5, 30, t)
    Y[:, 0] = 7.0
    Y[:, 1:3] = X @ W[:, 1:3] + 1e-7 * rng.standard_normal((n, 2))
    Y[:, 3:6] *= 1e-13
    Y[:, 6:9] += 1e4
    return X, Y


def _folds(kind, n, seed):
    rng = np.random.default_rng(seed)
    rows = np.arange(n)
    if kind == "kfold":  # a shuffled partition; training sets are the complements
        return [(np.setdiff1d(rows, v), v) for v in np.array_split(rng.permutation(n), 5)]
    if kind == "repeats":  # each stimulus shown 3 times, all its rows on one side
        stim = rng.permutation(np.repeat(np.arange(n // 3), 3))
        groups = np.array_split(rng.permutation(n // 3), 4)
        return [(np.flatnonzero(~np.isin(stim, g)), np.flatnonzero(np.isin(stim, g)))
                for g in groups]
    if kind == "gap":  # a buffer of rows left out of training: not complements
        out = []
        for v in np.array_split(np.arange(n), 5):
            lo, hi = max(v[0] - 15, 0), min(v[-1] + 15, n - 1)
            out.append((np.r_[rows[:lo], rows[hi + 1:]], v))
        return out
    # "overlap": validation sets that overlap and do not cover every row
    return [(np.setdiff1d(rows, v), v)
            for v in (np.sort(rng.choice(n, n // 3, replace=False)) for _ in range(4))]


@pytest.mark.parametrize("kind", ["kfold", "repeats", "gap", "overlap"])
@pytest.mark.parametrize("seed", [0, 1])
def test_validation_errors_equal_a_brute_force_ridge(kind, seed, ridge_backend):
    X, Y = _data(seed)
    folds = _folds(kind, len(X), seed)
    n_val = min(len(v) for _, v in folds)
    assert gram_errors(n_val, X.shape[1], len(PENALTIES))  # the Gram form is in use
    res = ridge_cv(X, Y, PENALTIES, folds, relative_alphas=False, dtype="float64")
    ref = _brute_cv_mse(X, Y, PENALTIES, folds)
    scale = Y.var(0) + 1e-300  # errors compared in each target's own units
    np.testing.assert_allclose(res.cv_mse[:, 1:] / scale[1:], ref[:, 1:] / scale[1:],
                               rtol=1e-7, atol=1e-12)
    assert np.all(res.cv_mse[:, 0] < 1e-20)  # the constant target
    # the chosen alpha is the brute force's (himalaya's rule: near ties to the larger
    # alpha) wherever that is not itself a near-tie
    score = -ref / scale + TIE_SLOPE * np.log(PENALTIES)[:, None]
    srt = np.sort(score, axis=0)
    clear = (srt[-1] - srt[-2]) > 1e-6 * np.abs(srt[-1])
    assert clear.sum() > 30
    best = PENALTIES[np.argmax(score, axis=0)]
    np.testing.assert_array_equal(res.best_alphas[clear], best[clear])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", ["kfold", "gap"])
def test_gram_form_gives_the_residual_form(kind, dtype, monkeypatch):
    X, Y = _data(3, n=900, p=30, t=60)
    folds = _folds(kind, len(X), 3)
    kw = dict(dtype=dtype, refit=True)
    gram = ridge_cv(X.astype(dtype), Y.astype(dtype), PENALTIES, folds, **kw)
    monkeypatch.setattr(rf, "gram_errors", lambda *a: False)
    resid = ridge_cv(X.astype(dtype), Y.astype(dtype), PENALTIES, folds, **kw)
    tol = 1e-9 if dtype == "float64" else 2e-4
    np.testing.assert_allclose(gram.cv_mse[:, 3:], resid.cv_mse[:, 3:], rtol=tol)
    # the almost exact fits take the residual form; in float32 their SSE is rounding
    np.testing.assert_allclose(gram.cv_mse[:, 1:3], resid.cv_mse[:, 1:3],
                               rtol=1e-6 if dtype == "float64" else 2e-2)
    np.testing.assert_allclose(gram.cv_scores, resid.cv_scores, atol=tol, rtol=0)
    assert np.mean(gram.best_alphas == resid.best_alphas) >= (1.0 if dtype == "float64"
                                                               else 0.95)
    np.testing.assert_allclose(gram.coef, resid.coef, rtol=tol, atol=tol * np.abs(
        resid.coef).max())


def test_targets_fitted_almost_exactly_get_the_residual_form(monkeypatch):
    """In float32, ``|y|^2 + w^T (G w - 2 B)`` cannot resolve an SSE of 1e-10 |y|^2: such
    targets are recomputed from their residuals. Without that, their errors are wrong."""
    rng = np.random.default_rng(5)
    n, p = 1500, 25
    X = rng.standard_normal((n, p)).astype(np.float32)
    Y = np.c_[X @ rng.standard_normal((p, 4)),  # exact fits
              X @ rng.standard_normal((p, 4)) + 3 * rng.standard_normal((n, 4))]
    Y = Y.astype(np.float32)
    folds = _folds("kfold", n, 5)
    kw = dict(dtype="float32", refit=False)
    ok = ridge_cv(X, Y, PENALTIES, folds, **kw)
    monkeypatch.setattr(rf, "_GRAM_FLOOR", 0.0)
    unguarded = ridge_cv(X, Y, PENALTIES, folds, **kw)
    monkeypatch.setattr(rf, "gram_errors", lambda *a: False)
    resid = ridge_cv(X, Y, PENALTIES, folds, **kw)
    np.testing.assert_allclose(ok.cv_mse, resid.cv_mse, rtol=1e-3)
    np.testing.assert_array_equal(ok.best_alphas, resid.best_alphas)
    # the planted bug (no fallback) is visible on the exact fits only
    err = np.abs(unguarded.cv_mse[:3, :4] - resid.cv_mse[:3, :4]) / resid.cv_mse[:3, :4]
    assert err.max() > 1e-2
    np.testing.assert_allclose(unguarded.cv_mse[:, 4:], resid.cv_mse[:, 4:], rtol=1e-3)


def test_row_order_and_fold_order_do_not_matter():
    X, Y = _data(7, n=750, p=15, t=30)
    folds = _folds("kfold", len(X), 7)
    ref = ridge_cv(X, Y, PENALTIES, folds, refit=True)
    perm = np.random.default_rng(8).permutation(len(X))
    inv = np.argsort(perm)
    moved = [(np.sort(inv[tr]), np.sort(inv[va])) for tr, va in folds[::-1]]
    res = ridge_cv(X[perm], Y[perm], PENALTIES, moved, refit=True)
    np.testing.assert_allclose(res.cv_mse[:, 3:], ref.cv_mse[:, 3:], rtol=1e-9, atol=1e-30)
    # the two almost exact fits: SSEs of 1e-20 |y|^2, to rounding
    np.testing.assert_allclose(res.cv_mse[:, 1:3], ref.cv_mse[:, 1:3], rtol=1e-6)
    np.testing.assert_array_equal(res.best_alphas, ref.best_alphas)
    np.testing.assert_allclose(res.coef, ref.coef, rtol=1e-8, atol=1e-8 * np.abs(ref.coef).max())


def test_the_rules_choose_by_shape():
    # NSD-like: 6,000 validation rows, 1,024 features, 10 alphas
    assert gram_errors(6000, 1024, 10)
    assert not gram_errors(1000, 1024, 10)  # the 5,000-sample benchmark's folds
    assert not gram_errors(3071, 1024, 1) and gram_errors(3072, 1024, 1)
    assert not gram_errors(10_000, 10, 0)
    assert folded_xty(30_000, 1024, 5) and not folded_xty(2000, 600, 5)


def test_a_time_series_splitter_gets_its_own_training_rows():
    """``TimeSeriesSplit`` trains on the past only: its training rows are not the
    complement of its validation rows. The fit was silently wrong there (the full data's
    cross-product minus the validation part: up to 169 % off in validation MSE); each fold
    now uses its own training rows, as a brute force does."""
    from sklearn.model_selection import TimeSeriesSplit

    from neuroalign.encoders import RidgeEncoder
    from neuroalign.store._folds import stimulus_folds

    X, Y = _data(11, n=800, p=12, t=25)
    ids = np.array([f"s{i}" for i in range(len(X))])
    folds = stimulus_folds(TimeSeriesSplit(4), ids, func="test")
    # all but the last fold leave the later rows out of training
    assert [rf.complements(tr, va, len(X)) for tr, va in folds] == [False] * 3 + [True]
    Y = Y[:, 3:]  # not the constant target nor the exact fits
    ref = _brute_cv_mse(X, Y, PENALTIES, folds)
    enc = RidgeEncoder(alphas=PENALTIES, cv=TimeSeriesSplit(4), relative_alphas=False,
                       dtype="float64").fit(X, Y)
    score = -ref / Y.var(0) + TIE_SLOPE * np.log(PENALTIES)[:, None]
    np.testing.assert_array_equal(enc.best_alphas_, PENALTIES[np.argmax(score, 0)])


@pytest.mark.parametrize("shape", [(40, 300), (300, 40)])
def test_the_features_cross_product_is_formed_only_for_a_primal_decomposition(
        shape, monkeypatch):
    """Leave-one-out with more features than samples refits in the dual form: no
    ``p x p`` cross-product (20 GB at 50,000 features) is formed for it."""
    calls = []
    real = rf.feature_cov
    monkeypatch.setattr("neuroalign.encoders._solvers.feature_cov",
                        lambda X, ops: calls.append(X.shape) or real(X, ops))
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal(shape), rng.standard_normal((shape[0], 5))
    ridge_cv(X, Y, PENALTIES, "loo", refit=True)
    assert calls == ([] if shape[1] > shape[0] else [shape])


def test_the_preflight_counts_the_training_rows_kept_by_folds_that_are_not_complements():
    n, p, t, F = 3000, 200, 5000, 5
    kw = dict(n_alphas=10, n_folds=F, batch=1024, itemsize=4)
    n_tr = n * (F - 1) // F
    extra = pf.ridge_memory(n, p, t, complement=False, **kw) - pf.ridge_memory(n, p, t, **kw)
    assert extra >= F * n_tr * p * 4
    # ridge_cv's own call sees which folds it has
    X, Y = np.zeros((n, p), np.float32), np.zeros((n, t), np.float32)
    seen = {}
    real = pf.ridge_batch

    def spy(*a, **k):
        seen[len(seen)] = k["complement"]
        return real(*a, **k)

    for kind in ("kfold", "gap"):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(pf, "ridge_batch", spy)
            pf.ridge_cv_batch(X, Y, PENALTIES, _folds(kind, n, 0), form=None, batch=1024,
                           dtype=np.dtype("float32"), refit=True)
    assert seen == {0: True, 1: False}
