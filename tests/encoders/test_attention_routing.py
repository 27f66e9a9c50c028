"""AttentionRoutingEncoder: routes the right token, beats ridge where the location varies."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.encoders import AttentionRoutingEncoder, RidgeEncoder
from neuroalign.exceptions import DimensionError, NotFittedError


def routed_data(n=400, n_tokens=16, n_units=12, n_vox=20, seed=0):
    """Tokens with a marker at a random location; voxels read out the marked token."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_tokens, n_units)).astype(np.float32)
    X[:, :, 0] = 0.0
    where = rng.integers(0, n_tokens, n)
    X[np.arange(n), where, 0] = 4.0  # the target is findable from token content
    target = X[np.arange(n), where, 1:]
    W = rng.standard_normal((n_units - 1, n_vox))
    Y = (target @ W + 0.3 * rng.standard_normal((n, n_vox))).astype(np.float32)
    ids = np.array([f"s{i:04d}" for i in range(n)])
    tok = xr.DataArray(X, dims=("stimulus", "token", "u_unit"),
                       coords={"stimulus_id": ("stimulus", ids), "row": ("token", np.arange(n_tokens) // 4),
                               "col": ("token", np.arange(n_tokens) % 4)}, name="u")
    resp = xr.DataArray(Y, dims=("stimulus", "neuroid"),
                        coords={"stimulus_id": ("stimulus", ids),
                                "neuroid_id": ("neuroid", [f"v{i}" for i in range(n_vox)]),
                                "roi_EBA": ("neuroid", np.ones(n_vox, bool))})
    return tok, resp, where


@pytest.fixture(scope="module")
def fitted():
    tok, resp, where = routed_data()
    tr, te = slice(0, 320), slice(320, None)
    enc = AttentionRoutingEncoder(d_model=32, max_epochs=150, patience=25, lr=5e-3, device="cpu")
    enc.fit(tok.isel(stimulus=tr), resp.isel(stimulus=tr))
    return enc, tok, resp, where, tr, te


def test_routing_beats_ridge_on_the_same_tokens(fitted):
    enc, tok, resp, _, tr, te = fitted
    r_attn = enc.score(tok.isel(stimulus=te), resp.isel(stimulus=te))
    assert r_attn.dims == ("neuroid",)
    flat = xr.DataArray(tok.values.reshape(len(tok), -1), dims=("stimulus", "f"),
                        coords={"stimulus_id": tok.stimulus_id})
    ridge = RidgeEncoder(alphas=np.logspace(-1, 5, 13)).fit(flat.isel(stimulus=tr), resp.isel(stimulus=tr))
    r_ridge = ridge.score(flat.isel(stimulus=te), resp.isel(stimulus=te))
    assert float(r_attn.median()) > 0.8
    assert float(r_attn.median()) > float(r_ridge.median()) + 0.3


def test_routing_maps_point_at_the_target(fitted):
    enc, tok, _, where, _, te = fitted
    maps = enc.routing_maps(tok.isel(stimulus=te))
    assert maps.dims == ("stimulus", "roi", "token") and list(maps.roi.values) == ["EBA"]
    np.testing.assert_allclose(maps.sum("token").values, 1.0, atol=1e-5)
    assert "row" in maps.coords and "stimulus_id" in maps.coords
    hit = (maps.sel(roi="EBA").values.argmax(-1) == where[te]).mean()
    assert hit > 0.9


def test_voxel_queries_and_numpy_inputs():
    tok, resp, where = routed_data(n=200, n_vox=6)
    enc = AttentionRoutingEncoder(voxel_queries=True, d_model=16, max_epochs=5, device="cpu")
    enc.fit(tok.values, resp.values)
    assert enc.predict(tok.values).shape == (200, 6)
    assert enc.routing_maps(tok.values).dims == ("stimulus", "neuroid", "token")
    assert enc.groups_ == ["all"]


def test_routing_errors():
    tok, resp, _ = routed_data(n=60, n_vox=4)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        AttentionRoutingEncoder().predict(tok)
    with pytest.raises(DimensionError, match="Expected 3 dims"):
        AttentionRoutingEncoder().fit(tok.values[:, 0], resp.values)
    with pytest.raises(ValueError, match="Invalid value for 'rois' in AttentionRoutingEncoder: \\['FFA'\\]"):
        AttentionRoutingEncoder(rois=["FFA"], max_epochs=1).fit(tok, resp)
    with pytest.raises(ValueError, match="Invalid value for 'n_heads'"):
        AttentionRoutingEncoder(d_model=10, n_heads=3).fit(tok, resp)
    with pytest.raises(ValueError, match="Invalid value for 'val_fraction'"):
        AttentionRoutingEncoder(val_fraction=0.9).fit(tok, resp)
    with pytest.raises(DimensionError, match="Expected \\(60, n_neuroids\\)"):
        AttentionRoutingEncoder().fit(tok.values, resp.values[:10])
    with pytest.raises(TypeError, match="X must be token features with a 'stimulus_id'"):
        AttentionRoutingEncoder().fit(tok.values, resp)
    enc = AttentionRoutingEncoder(max_epochs=1, d_model=8).fit(tok, resp)
    with pytest.raises(DimensionError, match="was fitted with"):
        enc.predict(tok.values[:, :3])


def _quick(**kw):
    return AttentionRoutingEncoder(d_model=16, max_epochs=8, patience=8, device="cpu", **kw)


def test_shuffled_rows_give_the_same_fit():
    """Rows are put in stimulus order before training: a shuffled store (and token rows in
    another order) gives the same model, scores and maps."""
    tok, resp, _ = routed_data(n=120, n_tokens=8, n_vox=5, seed=3)
    rng = np.random.default_rng(0)
    a = _quick().fit(tok, resp)
    b = _quick().fit(tok.isel(stimulus=rng.permutation(120)), resp.isel(stimulus=rng.permutation(120)))
    np.testing.assert_allclose(b.predict(tok).values, a.predict(tok).values, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b.cv_scores_, a.cv_scores_, atol=1e-6)
    np.testing.assert_allclose(b.score(tok, resp).values, a.score(tok, resp).values, atol=1e-6)
    assert a.history_ == pytest.approx(b.history_, abs=1e-6)


def test_nan_neuroid_is_excluded_and_nan():
    tok, resp, _ = routed_data(n=120, n_tokens=8, n_vox=5, seed=4)
    bad = resp.copy()
    bad.values[7, 2] = np.nan
    with pytest.warns(UserWarning):
        enc = _quick().fit(tok, bad)
    assert not enc.valid_neuroids_[2]
    assert np.isnan(enc.cv_scores_[2]) and np.isfinite(np.delete(enc.cv_scores_, 2)).all()
    assert np.isnan(enc.predict(tok).values[:, 2]).all()
    s = enc.score(tok, resp)
    assert np.isnan(s.values[2]) and np.isfinite(np.delete(s.values, 2)).all()
    assert s.attrs["metric"] == "pearson"
    ds = enc.to_dataset()
    assert ds.sizes["neuroid"] == 4 and ds.attrs["metric"] == "r2" and ds.attrs["score_kind"] == "cv"


def test_attention_routing_follows_the_contract_that_applies():
    """Token features are 3-d, so scikit-learn's checks do not run; the rest applies."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError
    from sklearn.utils.validation import check_is_fitted

    rng = np.random.default_rng(2)
    tok = rng.standard_normal((40, 3, 4)).astype(np.float32)
    Y = tok[:, 1] @ rng.standard_normal((4, 2))
    est = AttentionRoutingEncoder(d_model=8, max_epochs=2, batch_size=16, random_state=3)
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and fresh.get_params()["seed"] == "deprecated"
    with pytest.raises(NotFittedError, match="AttentionRoutingEncoder is not fitted yet"):
        fresh.predict(tok)
    with pytest.raises(SklearnNotFittedError):
        fresh.predict(tok)
    a = clone(est).fit(tok, Y)
    check_is_fitted(a)
    b = clone(est).fit(tok, Y)
    np.testing.assert_array_equal(a.predict(tok), b.predict(tok))  # random_state seeds it all
    with pytest.warns(FutureWarning, match="'seed' is deprecated.*random_state=3"):
        old = AttentionRoutingEncoder(d_model=8, max_epochs=2, batch_size=16, seed=3).fit(tok, Y)
    np.testing.assert_array_equal(old.predict(tok), a.predict(tok))
    with pytest.raises(TypeError, match="got both 'seed' \\(deprecated\\) and 'random_state'"):
        AttentionRoutingEncoder(max_epochs=1, seed=1, random_state=2).fit(tok, Y)
