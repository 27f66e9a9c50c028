import numpy as np
import pytest
from enc_helpers import planted

from neuroalign.encoders import RidgeEncoder, _scaleout

ALPHAS = np.logspace(-2, 4, 9)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def test_distributed_fit_matches_single_process(client, tmp_path):
    X, Y, _ = planted(n=100, t=45)
    single = RidgeEncoder(alphas=ALPHAS, n_targets_batch=10).fit(X, Y)
    dist = RidgeEncoder(alphas=ALPHAS).fit(X, Y, client=client, result_path=tmp_path / "r.zarr",
                                           batch_size=10)
    assert dist.scaleout_info_["n_batches"] == 5
    np.testing.assert_array_equal(dist.best_alphas_, single.best_alphas_)
    np.testing.assert_allclose(dist.coef_, single.coef_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dist.intercept_, single.intercept_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dist.cv_scores_, single.cv_scores_, atol=1e-10)


def test_rerun_after_failure_completes_only_missing_batches(client, tmp_path, monkeypatch):
    X, Y, _ = planted(n=100, t=40)
    path = tmp_path / "r.zarr"
    original = _scaleout.distributed_ridge

    def failing(*args, **kwargs):
        return original(*args, **kwargs, _fail_batches=(1, 3))

    monkeypatch.setattr(_scaleout, "distributed_ridge", failing)
    with pytest.raises(RuntimeError, match=r"batches \[1, 3\] of .* are missing"):
        RidgeEncoder(alphas=ALPHAS).fit(X, Y, client=client, result_path=path, batch_size=10)
    monkeypatch.setattr(_scaleout, "distributed_ridge", original)
    enc = RidgeEncoder(alphas=ALPHAS).fit(X, Y, client=client, result_path=path, batch_size=10)
    assert enc.scaleout_info_["computed"] == [1, 3]
    assert enc.scaleout_info_["skipped"] == [0, 2]
    single = RidgeEncoder(alphas=ALPHAS, n_targets_batch=10).fit(X, Y)
    np.testing.assert_array_equal(enc.best_alphas_, single.best_alphas_)
    np.testing.assert_allclose(enc.coef_, single.coef_, rtol=1e-5, atol=1e-5)


def test_result_path_of_another_fit_is_refused(client, tmp_path):
    X, Y, _ = planted(n=60, t=20)
    path = tmp_path / "r.zarr"
    RidgeEncoder(alphas=ALPHAS).fit(X, Y, client=client, result_path=path, batch_size=10)
    with pytest.raises(ValueError, match="belongs to a different fit"):
        RidgeEncoder(alphas=ALPHAS[:3]).fit(X, Y, client=client, result_path=path, batch_size=10)
    with pytest.raises(ValueError, match="Invalid value for 'batch_size'"):
        RidgeEncoder(alphas=ALPHAS).fit(X, Y, client=client, result_path=tmp_path / "b.zarr", batch_size=0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_any_batch_size_gives_the_single_process_fit(client, tmp_path, dtype):
    X, Y, _ = planted(n=80, t=23)
    X = X.astype(np.float64) * 1e-12 + 1e-9  # odd units and a mean: the scaling must not depend on the batch
    single = RidgeEncoder(alphas=ALPHAS, dtype=dtype).fit(X, Y)
    tol = 1e-10 if dtype == "float64" else 1e-5
    for batch in (1, 7, 23):
        dist = RidgeEncoder(alphas=ALPHAS, dtype=dtype).fit(
            X, Y, client=client, result_path=tmp_path / f"{batch}.zarr", batch_size=batch)
        np.testing.assert_array_equal(dist.best_alphas_, single.best_alphas_)
        np.testing.assert_allclose(dist.cv_scores_, single.cv_scores_, atol=tol)
        np.testing.assert_allclose(dist.predict(X), single.predict(X), rtol=tol, atol=tol * Y.std())
        assert dist.alpha_scale_ == pytest.approx(single.alpha_scale_, rel=1e-12)
