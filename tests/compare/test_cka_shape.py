"""CKA against Kornblith's definitions; shape metrics against netrep's formulas."""

import numpy as np
import pytest
import torch
import xarray as xr

from neuroalign.compare import CKA, ShapeMetric, cka, distance_matrix, mds, shape_distance
from neuroalign.exceptions import DimensionError, NotFittedError, StimulusMismatchError

RTOL = 1e-4


# ---- reference: Kornblith et al. (2019) CKA, written from the paper's formulas
def _ref_center(G, unbiased):
    G = G.copy()
    n = len(G)
    if unbiased:
        np.fill_diagonal(G, 0)
        m = G.sum(0) / (n - 2)
        m -= m.sum() / (2 * (n - 1))
        G -= m[:, None] + m[None, :]
        np.fill_diagonal(G, 0)
    else:
        m = G.mean(0)
        m -= m.mean() / 2
        G -= m[:, None] + m[None, :]
    return G


def _ref_rbf(X, thr=1.0):
    g = X @ X.T
    d = np.diag(g)[:, None] + np.diag(g)[None, :] - 2 * g
    return np.exp(-d / (2 * thr**2 * np.median(d)))


def _ref_cka(K, L, unbiased=False):
    K, L = _ref_center(K, unbiased), _ref_center(L, unbiased)
    return (K * L).sum() / (np.linalg.norm(K) * np.linalg.norm(L))


@pytest.fixture
def XY():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 15))
    Y = X @ rng.standard_normal((15, 12)) + 0.5 * rng.standard_normal((40, 12))
    return X, Y


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_matches_kornblith(XY, debiased):
    X, Y = XY
    np.testing.assert_allclose(
        cka(X, Y, "linear", debiased), _ref_cka(X @ X.T, Y @ Y.T, debiased), rtol=RTOL)
    np.testing.assert_allclose(
        cka(X, Y, "rbf", debiased), _ref_cka(_ref_rbf(X), _ref_rbf(Y), debiased), rtol=RTOL)
    np.testing.assert_allclose(
        cka(X, Y, "rbf", debiased, threshold=0.5),
        _ref_cka(_ref_rbf(X, 0.5), _ref_rbf(Y, 0.5), debiased), rtol=RTOL)


def test_cka_wide_and_torch_paths(XY):
    X, Y = XY
    Xw = np.concatenate([X, X[:, :1] * 0 + np.random.default_rng(1).random((40, 60))], 1)
    ref = _ref_cka(Xw @ Xw.T, Y @ Y.T)
    np.testing.assert_allclose(cka(Xw, Y), ref, rtol=RTOL)
    for kernel in ("linear", "rbf"):
        for deb in (False, True):
            a = cka(X, Y, kernel, deb)
            np.testing.assert_allclose(cka(torch.from_numpy(X), Y, kernel, deb), a, rtol=1e-10)
            np.testing.assert_allclose(cka(X, Y, kernel, deb, device="cpu"), a, rtol=1e-10)


def test_cka_invariances(XY):
    X, _ = XY
    Q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((15, 15)))
    assert cka(X, 3 * X @ Q) == pytest.approx(1.0)
    assert CKA(kernel="rbf").fit(X, X).score(X, X @ Q) == pytest.approx(1.0)
    assert not CKA.is_metric and CKA.higher_is_better


def test_cka_errors(XY):
    X, Y = XY
    with pytest.raises(ValueError, match="'kernel' in cka\\(\\): 'poly'"):
        cka(X, Y, "poly")
    with pytest.raises(ValueError, match="'threshold' in cka\\(\\): 0"):
        cka(X, Y, "rbf", threshold=0)
    with pytest.raises(ValueError, match="'X' in cka\\(\\): its centred kernel is zero"):
        cka(np.ones((40, 3)), Y)
    with pytest.raises(ValueError, match="'Y' in cka\\(\\): its centred kernel is zero"):
        cka(X, np.ones((40, 30)), debiased=True)
    with pytest.raises(ValueError, match="median squared distance"):
        cka(np.r_[np.zeros((30, 3)), np.ones((10, 3))], Y, "rbf")
    with pytest.raises(DimensionError, match="at least 4 stimuli"):
        cka(X[:3], Y[:3], debiased=True)
    with pytest.raises(DimensionError, match="'X' has 40 stimuli but 'Y' has 39"):
        cka(X, Y[:39])
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="'X' in cka\\(\\): 1 NaN"):
        cka(bad, Y)


def test_cka_joins_on_stimulus_id(XY):
    X, Y = XY
    ids = np.array([f"s{i}" for i in range(40)])
    dx = xr.DataArray(X, dims=("stimulus", "u"), coords={"stimulus_id": ("stimulus", ids)})
    dy = xr.DataArray(Y, dims=("stimulus", "v"), coords={"stimulus_id": ("stimulus", ids)})
    perm = np.random.default_rng(3).permutation(40)
    assert cka(dx, dy.isel(stimulus=perm)) == pytest.approx(cka(X, Y))
    with pytest.raises(StimulusMismatchError, match="1 stimuli of 'Y' are not in 'X': 'new'"):
        cka(dx, dy.assign_coords(stimulus_id=("stimulus", np.r_[ids[1:], ["new"]])))


# ---- reference: netrep LinearMetric closed forms
def _canonical_correlations(X, Y):
    qx, _ = np.linalg.qr(X - X.mean(0))
    qy, _ = np.linalg.qr(Y - Y.mean(0))
    return np.linalg.svd(qx.T @ qy, compute_uv=False)


def test_procrustes_closed_form(XY):
    X, Y = XY
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    Yp = np.c_[Yc, np.zeros((40, 3))]
    ref = np.arccos(np.linalg.svd(Xc.T @ Yp, compute_uv=False).sum()
                    / (np.linalg.norm(Xc) * np.linalg.norm(Yc)))
    assert ShapeMetric(1.0).fit_score(X, Y) == pytest.approx(ref, rel=1e-10)
    assert shape_distance(X, Y) == pytest.approx(ref, rel=1e-10)


def test_cca_closed_form():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 6))
    Y = X @ rng.standard_normal((6, 6)) + rng.standard_normal((50, 6))
    ref = np.arccos(_canonical_correlations(X, Y).mean())
    assert ShapeMetric(0.0).fit_score(X, Y) == pytest.approx(ref, rel=1e-8)
    assert shape_distance(X, Y, alpha=0.0) == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("score_method", ["angular", "euclidean"])
def test_fast_paths_equal_fitted_metric(XY, alpha, score_method):
    X, Y = XY
    rng = np.random.default_rng(5)
    Z = rng.standard_normal((40, 20))
    ref = {(a, b): ShapeMetric(alpha, score_method).fit_score(p, q)
           for a, p in (("x", X), ("y", Y), ("z", Z)) for b, q in (("x", X), ("y", Y), ("z", Z))}
    assert shape_distance(X, Z, alpha=alpha, score_method=score_method) == pytest.approx(
        ref["x", "z"], rel=RTOL)
    D = distance_matrix({"x": X, "y": Y, "z": Z}, ShapeMetric(alpha, score_method))
    for a in "xyz":
        for b in "xyz":
            if a != b:
                assert D.sel(system_i=a, system_j=b).item() == pytest.approx(ref[a, b], rel=RTOL)
    Dt = distance_matrix([X, Y, Z], ShapeMetric(alpha, score_method), device="cpu")
    np.testing.assert_allclose(Dt.values, D.values, rtol=1e-8, atol=1e-10)


def test_shape_metric_generalises_and_errors(XY):
    X, Y = XY
    m = ShapeMetric(0.5)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        m.score(X, Y)
    m.fit(X[:30], Y[:30])
    assert 0 <= m.score(X[30:], Y[30:]) <= np.pi / 2
    with pytest.raises(ValueError, match="'alpha' in ShapeMetric\\(\\): 2"):
        ShapeMetric(2).fit(X, Y)
    with pytest.raises(ValueError, match="'score_method' in ShapeMetric\\(\\): 'cos'"):
        ShapeMetric(1, "cos").fit(X, Y)
    with pytest.raises(DimensionError, match="'X' has 15 channels and 'Y' 12"):
        ShapeMetric(zero_pad=False).fit(X, Y)
    with pytest.raises(DimensionError, match="fitted on 15"):
        m.score(X[:, :5], Y[:, :5])
    with pytest.raises(ValueError, match="zero after centring"):
        ShapeMetric().fit_score(np.ones((40, 3)), Y)
    with pytest.raises(ValueError, match="'metric' in distance_matrix\\(\\): 'cka'"):
        distance_matrix([X, Y], "cka")
    with pytest.raises(ValueError, match="Expected at least 2"):
        distance_matrix([X], "cca")
    with pytest.raises(TypeError, match="Expected a dict"):
        distance_matrix(3)
    with pytest.raises(DimensionError, match="zero_pad=False"):
        distance_matrix([X, Y], ShapeMetric(zero_pad=False))
    assert ShapeMetric.is_metric and not ShapeMetric.higher_is_better


def test_mds_recovers_planar_configuration():
    pts = np.array([[0, 0], [3, 0], [0, 4], [3, 4.0]])
    D = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    emb = mds(xr.DataArray(D, dims=("system_i", "system_j"),
                           coords={"system_i": list("abcd"), "system_j": list("abcd")}))
    De = np.linalg.norm(emb.values[:, None] - emb.values[None], axis=-1)
    np.testing.assert_allclose(De, D, atol=1e-10)
    assert list(emb.system.values) == list("abcd")
    with pytest.raises(DimensionError, match="Expected a square matrix"):
        mds(np.zeros((2, 3)))


@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("score_method", ["angular", "euclidean"])
def test_fast_path_wide_systems(alpha, score_method):
    """More channels than stimuli: each covariance is whitened on its range (rank n-1)."""
    rng = np.random.default_rng(8)
    X, Y = rng.standard_normal((10, 15)), rng.standard_normal((10, 12))
    ref = ShapeMetric(alpha, score_method).fit_score(X, Y)
    # CCA of wide systems is degenerate (every direction whitened, distance 0): arccos of 1
    # minus rounding is known to ~1e-8 radians
    atol = 1e-7 if (alpha == 0 and score_method == "angular") else 0
    assert shape_distance(X, Y, alpha=alpha, score_method=score_method) == pytest.approx(
        ref, rel=1e-9, abs=atol)
    if alpha == 0 and score_method == "angular":
        assert ref == pytest.approx(0, abs=1e-7)
