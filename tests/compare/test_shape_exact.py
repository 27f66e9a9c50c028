"""Generalised shape metrics against netrep (golden values computed with netrep's
``LinearMetric`` by hand; netrep is not imported) and, where netrep depends on units,
rank or zero-padding, against the exact closed form (module docstring of ``_shape``),
for every path: ``ShapeMetric.fit_score``, ``shape_distance`` and ``distance_matrix`` on
numpy and on torch."""

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from neuroalign.compare import ShapeMetric, distance_matrix, partial_whiten, shape_distance


def _data():
    rng = np.random.default_rng(2024)
    X = rng.standard_normal((30, 5))
    Y = X @ rng.standard_normal((5, 5)) + rng.standard_normal((30, 5))
    Y7 = np.c_[Y, rng.standard_normal((30, 2))]
    Xw, Yw = rng.standard_normal((10, 15)), rng.standard_normal((10, 12))
    return {"equal": (X, Y), "widths": (X, Y7), "wide": (Xw, Yw)}


# netrep.metrics.LinearMetric(alpha, score_method=m).fit_score(X, Y) on _data()
NETREP = {
    ("equal", 0.0, "angular"): 0.7251408472845781,
    ("equal", 0.0, "euclidean"): 23.524271379928372,
    ("equal", 0.5, "angular"): 0.5757379411377791,
    ("equal", 0.5, "euclidean"): 22.121707059415964,
    ("equal", 1.0, "angular"): 0.5613092310648404,
    ("equal", 1.0, "euclidean"): 21.99698967429806,
    ("widths", 0.0, "angular"): 0.8059323309025118,
    ("widths", 0.0, "euclidean"): 26.34458472554751,
    ("widths", 0.5, "angular"): 0.5834190871882552,
    ("widths", 0.5, "euclidean"): 23.445455930195116,
    ("widths", 1.0, "angular"): 0.5659618224868097,
    ("widths", 1.0, "euclidean"): 23.255417794169357,
    ("wide", 0.0, "angular"): 0.0,
    ("wide", 0.0, "euclidean"): 1.4261196158341893,
    ("wide", 0.5, "angular"): 0.4735148442379364,
    ("wide", 0.5, "euclidean"): 5.177136241687672,
    ("wide", 1.0, "angular"): 0.5894838329379943,
    ("wide", 1.0, "euclidean"): 6.359288676415864,
}
# netrep counts zero-padded channels and the null directions of rank-deficient data (its
# eigenvalues clipped at 1e-7) in its variance preservation: its euclidean scale then
# depends on the partner's width and on the rank
NETREP_WRONG = {("widths", 0.0, "euclidean"), ("widths", 0.5, "euclidean"),
                ("wide", 0.0, "euclidean"), ("wide", 0.5, "euclidean")}


def _paths(X, Y, alpha, method, torch=False):
    """The distance by every path: fitted metric, shape_distance, distance_matrix (numpy,
    and torch when asked)."""
    m = ShapeMetric(alpha, method)
    out = [
        m.fit_score(X, Y),
        shape_distance(X, Y, alpha=alpha, score_method=method),
        distance_matrix({"x": X, "y": Y}, m).values[0, 1],
    ]
    if torch:
        out.append(distance_matrix({"x": X, "y": Y}, m, device="cpu").values[0, 1])
    return np.array(out)


def _exact(X, Y, alpha, method):
    """The closed form from the SVD of each centred system on its numerical range."""
    def basis(Z):
        Zc = Z - Z.mean(0)
        U, s, _ = np.linalg.svd(Zc, full_matrices=False)
        r = s > s[0] * max(Zc.shape) * 1e-15
        U, s = U[:, r], s[r]
        gain = alpha * s + (1 - alpha)  # s * (alpha + (1 - alpha) / s)
        return U * gain, np.sqrt(np.sum(s**2) / np.sum(gain**2))
    (bx, sx), (by, sy) = basis(X), basis(Y)
    nuc = np.linalg.svd(bx.T @ by, compute_uv=False).sum()
    if method == "angular":
        return np.arccos(min(1.0, nuc / (np.linalg.norm(bx) * np.linalg.norm(by))))
    return np.sqrt(max(0.0, sx**2 * np.sum(bx**2) + sy**2 * np.sum(by**2) - 2 * sx * sy * nuc))


def _close(got, want, *, rel=1e-9, angle=False):
    """Angles near 0 are known to ~1e-8 rad only (arccos of 1 - rounding)."""
    atol = 1e-7 if angle else 0.0
    np.testing.assert_allclose(got, want, rtol=rel, atol=atol)


@pytest.mark.parametrize("key", sorted(NETREP))
def test_agrees_with_netrep_or_closed_form(key):
    name, alpha, method = key
    X, Y = _data()[name]
    got = _paths(X, Y, alpha, method, torch=True)
    _close(got, _exact(X, Y, alpha, method), angle=method == "angular")
    if key in NETREP_WRONG:
        assert abs(got[0] - NETREP[key]) > 1e-3 * NETREP[key]
    else:
        _close(got, NETREP[key], rel=1e-6, angle=method == "angular")


@pytest.mark.parametrize("factor", [1e-13, 1e-6, 1e6])
@pytest.mark.parametrize("name", ["equal", "widths", "wide"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_units_do_not_change_the_answer(factor, name, alpha):
    """Angular distances are unit-free; euclidean ones scale as the data. (netrep at 1e-6:
    every eigenvalue clipped, CCA becomes Procrustes, 0.08 rad off on 'equal', 0.59 on
    'wide'; at 1e6 on 'wide' its null directions are whitened into noise.)"""
    X, Y = _data()[name]
    for method in ("angular", "euclidean"):
        base = _paths(X, Y, alpha, method)
        scaled = _paths(X * factor, Y * factor, alpha, method, torch=factor == 1e-13)
        want = base[0] if method == "angular" else base[0] * factor
        _close(scaled, np.full(len(scaled), want), rel=1e-8, angle=method == "angular")
    # each system in its own units
    _close(_paths(X * factor, Y, alpha, "angular"), _paths(X, Y, alpha, "angular"), rel=1e-8,
           angle=True)


def test_partial_whitening_depends_on_units_as_netreps():
    """For 0 < alpha < 1 the whitening blends the identity and C^-1/2 in the data's units:
    at large scale it tends to Procrustes, at small scale to CCA (by definition)."""
    X, Y = _data()["equal"]
    mid = _paths(X * 1e8, Y * 1e8, 0.5, "angular")
    _close(mid, _paths(X, Y, 1.0, "angular"), rel=1e-5)
    small = _paths(X * 1e-8, Y * 1e-8, 0.5, "angular")
    _close(small, _paths(X, Y, 0.0, "angular"), rel=1e-5)


def _rank_deficient(seed=0):
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((30, 4))
    X = L @ rng.standard_normal((4, 8))  # 8 channels, rank 4
    Y = np.c_[L[:, :3] @ rng.standard_normal((3, 5)), L[:, 3:]]  # 6 channels, rank 4
    Y = np.c_[Y, Y[:, :2] * 3.0]  # duplicated channels: 8 channels, rank 4
    return X, Y


@pytest.mark.parametrize("factor", [1.0, 1e-13, 1e6])
def test_rank_deficient_cca_is_principal_angles(factor):
    """alpha = 0: arccos(sum cos(principal angles) / sqrt(rx ry)) between the column
    spaces (independent of any whitening). netrep differs by up to 0.06 rad here."""
    X, Y = _rank_deficient()
    X, Y = X * factor, Y * factor
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    theta = subspace_angles(Xc, Yc)
    rx, ry = np.linalg.matrix_rank(Xc), np.linalg.matrix_rank(Yc)
    assert (rx, ry) == (4, 4)
    want = np.arccos(np.sum(np.cos(theta)) / np.sqrt(rx * ry))
    _close(_paths(X, Y, 0.0, "angular", torch=True), want, rel=1e-9, angle=True)
    for alpha in (0.0, 0.3, 1.0):
        for method in ("angular", "euclidean"):
            _close(_paths(X, Y, alpha, method, torch=alpha == 0.3), _exact(X, Y, alpha, method),
                   rel=1e-8, angle=method == "angular")


def test_systems_spanning_all_stimuli_are_at_cca_distance_zero(caplog):
    """More channels than stimuli: each centred system spans every direction (rank n-1), so
    CCA is 0 for any pair (netrep: 1.4e-6 rad at 1e6, 0.59 rad at 1e-6); a warning says so."""
    X, Y = _data()["wide"]
    for factor in (1.0, 1e6, 1e-6):
        with caplog.at_level("WARNING", logger="neuroalign"):
            got = _paths(X * factor, Y * factor, 0.0, "angular", torch=True)
        np.testing.assert_allclose(got, 0.0, atol=1e-12)
    assert "spans every direction of the 10 centred stimuli" in caplog.text


@pytest.mark.parametrize("seed", range(4))
def test_nearly_identical_systems_keep_full_precision(seed):
    """``arccos`` of a cosine within a rounding error of 1 is off by up to 1.5e-8 rad (and
    ``sqrt`` of a cancelled Euclidean square as much, relative), by an amount that depends
    on the summation order. Copies up to rotation, translation and scale are at distance
    ~1e-15 by every path, and a perturbation of size ``eps`` moves the distance in
    proportion to ``eps`` (the old closed forms gave noise of 1e-8 there)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((40, 7))
    Q, _ = np.linalg.qr(rng.standard_normal((7, 7)))
    E = rng.standard_normal((40, 7))
    for alpha in (0.0, 0.5, 1.0):
        copy = (2.0 if alpha == 1.0 else 1.0) * X @ Q + 3.0
        np.testing.assert_allclose(_paths(X, copy, alpha, "angular", torch=True), 0.0, atol=1e-12)
        if alpha == 1.0:
            np.testing.assert_allclose(_paths(X, X @ Q - 1.0, alpha, "euclidean", torch=True), 0.0,
                                       atol=1e-12 * np.linalg.norm(X))
        for method in ("angular", "euclidean"):
            small, large = (_paths(X, X @ Q + eps * E, alpha, method, torch=True)
                            for eps in (1e-9, 1e-7))
            assert np.all(large > 0)
            np.testing.assert_allclose(small, large / 100, rtol=1e-3)
            np.testing.assert_allclose(large, large[0], rtol=1e-6)
    # ranks 7 and 8 (an extra channel of size eps), in both orders: the narrower system is
    # aligned in the wider one's space (a thin rotation would drop that channel)
    e = rng.standard_normal((40, 1))
    for method in ("angular", "euclidean"):
        small, large = (np.r_[_paths(X, np.c_[X @ Q, eps * e], 1.0, method, torch=True),
                              _paths(np.c_[X @ Q, eps * e], X, 1.0, method, torch=True)]
                        for eps in (1e-9, 1e-7))
        assert np.all(large > 0)
        np.testing.assert_allclose(small, large / 100, rtol=1e-3)
        np.testing.assert_allclose(large, large[0], rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_zero_padding_and_zero_channels_change_nothing(alpha):
    X, Y = _data()["equal"]
    Y0 = np.c_[Y, np.zeros((30, 4))]
    for method in ("angular", "euclidean"):
        _close(_paths(X, Y0, alpha, method), _paths(X, Y, alpha, method), rel=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_euclidean_triangle_inequality_across_widths_and_ranks(alpha):
    """Each system is whitened on its own (its scale does not depend on the partner), so
    the euclidean metric is a metric across systems of different widths and ranks."""
    X, Y = _data()["widths"]
    R, _ = _rank_deficient()
    systems = {"x": X, "y": Y, "r": R, "z": np.c_[X[:, :2], np.zeros((30, 1))]}
    D = distance_matrix(systems, ShapeMetric(alpha, "euclidean")).values
    for i in range(4):
        for j in range(4):
            assert np.all(D[i, j] <= D[i] + D[:, j] + 1e-9)


def test_partial_whiten_preserves_variance_on_the_range():
    X, _ = _rank_deficient()
    Xc = X - X.mean(0)
    for alpha in (0.0, 0.4):
        Xw, Z = partial_whiten(Xc, alpha)
        assert np.sum(Xw**2) == pytest.approx(np.sum(Xc**2), rel=1e-10)
        np.testing.assert_allclose(Z, Z.T, atol=1e-12)
        # on directions without variance Z acts as s * alpha (0 for CCA): new data there
        # are not amplified by 1/sqrt(tolerance)
        null = np.linalg.svd(Xc)[2][-1]
        s = np.sqrt(np.sum(Xc**2) / np.sum(
            (alpha * np.linalg.svd(Xc, compute_uv=False)[:4] + 1 - alpha) ** 2))
        np.testing.assert_allclose(null @ Z, s * alpha * null, atol=1e-8)
    Xw, Z = partial_whiten(Xc, 1.0)
    assert np.array_equal(Z, np.eye(8)) and np.array_equal(Xw, Xc)


def test_fitted_metric_generalises_with_the_same_maps():
    """transform() applies the training whitening: scoring the training data again gives
    the fitted distance; new data give another."""
    X, Y = _rank_deficient(1)
    m = ShapeMetric(0.3).fit(X[:20], Y[:20])
    assert m.score(X[:20], Y[:20]) == pytest.approx(
        shape_distance(X[:20], Y[:20], alpha=0.3), rel=1e-9)
    assert 0 <= m.score(X[20:], Y[20:]) <= np.pi / 2


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_constant_channels_are_exactly_zero_after_centring(alpha):
    """A channel constant over stimuli (here at 1e12, whose centring leaves rounding of
    ~1e-4) carries nothing: it used to be whitened into a unit-variance channel of noise."""
    X, Y = _data()["equal"]
    Xk = np.c_[X, np.full(30, 1e12 / 3)]
    for method in ("angular", "euclidean"):
        t = alpha == 0.0
        _close(_paths(Xk, Y, alpha, method, torch=t), _paths(X, Y, alpha, method, torch=t),
               rel=1e-9)
    const = np.zeros((30, 3)) + np.array([0.3, 0.1 + 0.7, 1e12 / 3])
    for func in (lambda: ShapeMetric(alpha).fit_score(const, Y),
                 lambda: distance_matrix([Y, const], ShapeMetric(alpha))):
        with pytest.raises(ValueError, match="zero after centring"):
            func()


def test_row_order_does_not_matter():
    """Labelled systems are joined on stimulus_id: shuffling the rows of some of them (and
    unlabelled systems shuffled together) gives the same distances."""
    import xarray as xr

    X, Y = _data()["equal"]
    R, _ = _rank_deficient()
    ids = np.array([f"s{i:02d}" for i in range(30)])

    def lab(A, perm):
        return xr.DataArray(A[perm], dims=("stimulus", "unit"),
                            coords={"stimulus_id": ("stimulus", ids[perm])})

    rng = np.random.default_rng(5)
    same = np.arange(30)
    for metric in (ShapeMetric(0.0), ShapeMetric(0.5, "euclidean"), ShapeMetric(1.0)):
        base = distance_matrix({"x": lab(X, same), "y": lab(Y, same), "r": lab(R, same)}, metric)
        shuffled = distance_matrix({"x": lab(X, rng.permutation(30)), "y": lab(Y, same),
                                    "r": lab(R, rng.permutation(30))}, metric)
        np.testing.assert_allclose(shuffled.values, base.values, rtol=1e-10, atol=1e-12)
        p = rng.permutation(30)
        np.testing.assert_allclose(distance_matrix([X[p], Y[p], R[p]], metric).values,
                                   base.values, rtol=1e-10, atol=1e-12)
        assert shape_distance(lab(X, rng.permutation(30)), lab(Y, same), alpha=metric.alpha,
                              score_method=metric.score_method) == pytest.approx(
            base.values[0, 1], rel=1e-10)
