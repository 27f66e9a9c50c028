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
    roi_summary,
)


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
    np.testing.assert_allclose(ceiling_normalise([0.5, -0.2, 0.3], [25.0, 50.0, 0.0]), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(ceiling_normalise([0.2], [40.0], metric="r2"), [0.5])
    with pytest.raises(ValueError, match="Invalid value for 'metric' in ceiling_normalise"):
        ceiling_normalise([0.1], [1.0], metric="spearman")


def test_fdr_matches_scipy():
    p = np.random.default_rng(1).random(200) ** 3
    reject, adj = fdr_bh(p, 0.05)
    np.testing.assert_allclose(adj, false_discovery_control(p), rtol=1e-12)
    np.testing.assert_array_equal(reject, adj <= 0.05)
    with pytest.raises(ValueError, match="Invalid value for 'q' in fdr_bh"):
        fdr_bh(p, 1.5)


@pytest.mark.parametrize("grouped", [False, True])
def test_permutation_test_finds_real_effects_only(grouped):
    rng = np.random.default_rng(0)
    n = 60
    y = rng.standard_normal((n, 20))
    pred = rng.standard_normal((n, 20))
    pred[:, :5] = y[:, :5] + 0.5 * rng.standard_normal((n, 5))
    groups = np.repeat(np.arange(n // 2), 2).astype(str) if grouped else None
    out = permutation_test(y, pred, n_permutations=200, groups=groups, seed=0)
    assert out["significant"][:5].all()
    assert out["significant"][5:].sum() <= 1
    assert out["p_value"].min() >= 1 / 201


def test_bootstrap_ci_covers_mean_and_shrinks():
    v = np.random.default_rng(0).normal(0.3, 0.1, 400)
    m, lo, hi = bootstrap_roi(v, n_boot=500)
    assert lo < m < hi and lo < 0.3 < hi and hi - lo < 0.05
    m2, lo2, hi2 = bootstrap_roi(v, np.arange(400) < 40, n_boot=500)
    assert hi2 - lo2 > hi - lo
    with pytest.raises(ValueError, match="selects no neuroids"):
        bootstrap_roi(v, np.zeros(400, bool))
    with pytest.raises(ValueError, match="Invalid value for 'ci'"):
        bootstrap_roi(v, ci=95)


def test_roi_summary():
    ds = xr.Dataset({"score": ("neuroid", [1.0, 2.0, 3.0])},
                    coords={"roi_A": ("neuroid", [True, True, False]), "roi_B": ("neuroid", [False, False, True])})
    s = roi_summary(ds)
    assert s.sel(roi="A").item() == 1.5 and s.sel(roi="B").item() == 3.0
