"""Kills during a cached grid: the driver (SIGKILL from outside, mid-grid) and a worker
process (dying mid-task). A rerun computes only what is missing; the result equals the
clean single-process run; a partial write is never read as a cell."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroalign._scaleout import kept_environ
from neuroalign.compare import searchlight
from neuroalign.encoders import RidgeEncoder, _scaleout

ROOT = Path(__file__).resolve().parents[2]
ALPHAS = np.logspace(-2, 4, 9)


def _ridge_data():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((100, 30))
    Y = X @ rng.standard_normal((30, 60)) * rng.random(60) + 3 * rng.standard_normal((100, 60))
    return X, Y


def _sl_data():
    rng = np.random.default_rng(8)
    ijk = np.argwhere(np.ones((9, 9, 9), dtype=bool))
    return rng.standard_normal((12, len(ijk))), ijk, rng.random((2, 66))


# the data go to the subprocess in files: generated there, a matrix product with other BLAS
# threads could differ in the last bits (other data, other keys)
GRIDS = {
    "ridge": """
        import numpy as np
        from test_scaleout_kill import ALPHAS
        from neuroalign.encoders import RidgeEncoder
        X, Y = np.load(DATA + "/X.npy"), np.load(DATA + "/Y.npy")
        RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(
            X, Y, result_path=PATH, batch_size=1)
    """,
    "routing": """
        import numpy as np
        from test_scaleout_kill import ROUTING
        from neuroalign.encoders import AttentionRoutingEncoder
        X, Y = np.load(DATA + "/X.npy"), np.load(DATA + "/Y.npy")
        AttentionRoutingEncoder(**ROUTING).fit(X, Y, result_path=PATH, batch_size=1)
    """,
    "searchlight": """
        import numpy as np
        from neuroalign.compare import searchlight
        data, ijk, models = (np.load(DATA + f"/{k}.npy") for k in ("data", "ijk", "models"))
        searchlight(data, models, ijk=ijk, radius=2.0, threshold=0.5, method="spearman",
                    result_path=PATH, batch_size=3, show_progress=False)
    """,
}


#: a routing fit of 30 epochs (no early stop), one epoch per cell
ROUTING = dict(d_model=16, max_epochs=30, patience=100, lr=1e-2, dropout=0.1, device="cpu")


def _cells(path: Path) -> dict[str, int]:
    """The cells written (not the temporaries ``.tmp-*``) and their mtimes."""
    return {f.name: f.stat().st_mtime_ns for f in (path / "cells").glob("*.npz")
            if not f.name.startswith(".")}


def _kill_driver_mid_grid(kind: str, path: Path, min_cells: int, **arrays) -> dict[str, int]:
    """Run the grid in a subprocess; SIGKILL it once ``min_cells`` cells are written."""
    for name, arr in arrays.items():
        np.save(path.parent / f"{name}.npy", arr)
    code = f"PATH = {str(path)!r}\nDATA = {str(path.parent)!r}\n" + textwrap.dedent(GRIDS[kind])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(Path(__file__).parent)]),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(_cells(path)) < min_cells:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the grid wrote no cells in 120 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return _cells(path)


@pytest.mark.slow
def test_driver_killed_mid_ridge_grid_rerun_fits_only_missing_cells(tmp_path):
    path = tmp_path / "grid"
    X, Y = _ridge_data()
    before = _kill_driver_mid_grid("ridge", path, 5, X=X, Y=Y)
    assert 5 <= len(before) < 60  # killed mid-grid
    # a partial write left by the killed driver (or planted): a temporary, never read
    (path / "cells" / ".tmp-killed.npz").write_bytes(b"PK\x03\x04 truncated")
    enc = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(
        X, Y, result_path=path, batch_size=1)
    info = enc.scaleout_info_
    assert len(info["skipped"]) == len(before)
    assert len(info["computed"]) == 60 - len(before)
    after = _cells(path)
    assert len(after) == 60
    assert {k: after[k] for k in before} == before  # the cells found were not rewritten
    single = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(X, Y)
    np.testing.assert_array_equal(enc.best_alphas_, single.best_alphas_)
    np.testing.assert_allclose(enc.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(enc.coef_, single.coef_, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_driver_killed_mid_searchlight_rerun_computes_only_missing_cells(tmp_path):
    path = tmp_path / "sl"
    data, ijk, models = _sl_data()
    before = _kill_driver_mid_grid("searchlight", path, 5, data=data, ijk=ijk, models=models)
    n = -(-len(ijk) // 3) - 12  # chunks of 3 centres; 12 chunks hold no centre (threshold)
    assert 5 <= len(before) < n
    kw = dict(ijk=ijk, radius=2.0, threshold=0.5, method="spearman", show_progress=False)
    sl = searchlight(data, models, result_path=path, batch_size=3, **kw)
    assert sl.attrs["n_cells"] == n
    assert sl.attrs["n_cells_computed"] == n - len(before)
    after = _cells(path)
    assert {k: after[k] for k in before} == before
    single = searchlight(data, models, **kw)
    np.testing.assert_array_equal(np.isnan(sl.values), np.isnan(single.values))
    np.testing.assert_allclose(sl.values, single.values, rtol=0, atol=1e-12)


def _worker_dies_at_cell(cell: int, tmp_path, monkeypatch) -> Path:
    """The ridge fits from here on: the worker fitting cell ``cell`` kills itself (once;
    the marker returned is left)."""
    marker = tmp_path / "killed"
    original = _scaleout.distributed_ridge

    def dying(*args, **kwargs):
        return original(*args, **kwargs, _fail={cell: f"kill:{marker}"})

    monkeypatch.setattr(_scaleout, "distributed_ridge", dying)
    return marker


@pytest.mark.slow
def test_a_worker_process_killed_mid_grid_is_replaced_and_the_result_complete(
        process_client, tmp_path, monkeypatch):
    """One of 2 worker processes dies (SIGKILL of itself) while fitting a cell: the nanny
    restarts it, the scheduler reschedules its tasks; the fit is complete and identical."""
    X, Y = _ridge_data()
    pids = set(process_client.run(os.getpid).values())
    marker = _worker_dies_at_cell(4, tmp_path, monkeypatch)
    path = tmp_path / "grid"
    enc = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(
        X, Y, client=process_client, result_path=path, batch_size=10)
    assert marker.exists()  # the worker did die mid-task
    process_client.wait_for_workers(2, timeout=60)
    assert set(process_client.run(os.getpid).values()) != pids  # one was replaced
    assert enc.scaleout_info_["computed"] == list(range(6))
    assert len(_cells(path)) == 6
    single = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(X, Y)
    np.testing.assert_array_equal(enc.best_alphas_, single.best_alphas_)
    np.testing.assert_allclose(enc.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)
    assert not list((path / "cells").glob(".tmp-*"))  # the dead task's temporary, if any


@pytest.mark.slow
def test_the_only_worker_process_killed_mid_grid_the_data_is_scattered_again(
        tmp_path, monkeypatch, caplog):
    """``cluster="local"`` with one worker process, which dies (SIGKILL of itself) while
    fitting a cell: the features scattered to it die with it. Its nanny starts a new
    worker; the features are scattered again to it and the cells they had cancelled are
    submitted again: the fit completes, identical (it failed before, naming the cells)."""
    import logging

    X, Y = _ridge_data()
    marker = _worker_dies_at_cell(2, tmp_path, monkeypatch)
    path = tmp_path / "grid"
    with kept_environ(), caplog.at_level(logging.WARNING, logger="neuroalign._scaleout"):
        enc = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(
            X, Y, cluster={"kind": "local", "n_workers": 1, "processes": True},
            result_path=path, batch_size=10)
    assert marker.exists()  # the worker did die mid-task
    assert any("scattering it again" in r.getMessage() for r in caplog.records)
    assert enc.scaleout_info_["computed"] == list(range(6)) and len(_cells(path)) == 6
    single = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(X, Y)
    np.testing.assert_array_equal(enc.best_alphas_, single.best_alphas_)
    np.testing.assert_allclose(enc.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_four_worker_processes_give_the_single_process_results(tmp_path):
    """Cells pickled to 4 worker processes (ridge, searchlight, distance matrix, data RDMs):
    the single-process results, for three batch sizes each."""
    distributed = pytest.importorskip("dask.distributed")
    from neuroalign.compare import data_rdms, distance_matrix, pseudo_subjects
    from neuroalign.testing import make_store

    X, Y = _ridge_data()
    data, ijk, models = _sl_data()
    systems = {f"s{i}": np.random.default_rng(i).standard_normal((40, 5 + i)) for i in range(6)}
    store = pseudo_subjects(make_store(n_stimuli=10, n_neuroids=24, n_repetitions=2, seed=1), 3,
                            seed=0)
    kw = dict(alphas=ALPHAS, dtype="float64", device="cpu")
    skw = dict(ijk=ijk, radius=2.0, threshold=0.5, method="spearman", show_progress=False)
    single = RidgeEncoder(**kw).fit(X, Y)
    sl = searchlight(data, models, **skw)
    D = distance_matrix(systems, "cca")
    rdms = data_rdms(store, "crossnobis")
    env = kept_environ()  # dask's nanny leaves OMP_NUM_THREADS=1 ... behind
    cluster = distributed.LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    try:
        with distributed.Client(cluster) as c:
            assert len(c.scheduler_info()["workers"]) == 4
            for b, (rb, sb, db) in enumerate(((1, 7, 1), (7, 50, 4), (60, 800, 15))):
                enc = RidgeEncoder(**kw).fit(X, Y, client=c, result_path=tmp_path / f"r{b}",
                                             batch_size=rb)
                assert enc.scaleout_info_["n_batches"] == -(-60 // rb)
                np.testing.assert_array_equal(enc.best_alphas_, single.best_alphas_)
                np.testing.assert_allclose(enc.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)
                got = searchlight(data, models, client=c, result_path=tmp_path / f"s{b}",
                                  batch_size=sb, **skw)
                np.testing.assert_allclose(got.values, sl.values, rtol=0, atol=1e-12)
                got = distance_matrix(systems, "cca", client=c, result_path=tmp_path / f"d{b}",
                                      batch_size=db)
                np.testing.assert_allclose(got.values, D.values, rtol=0, atol=1e-12)
            got = data_rdms(store, "crossnobis", client=c, result_path=tmp_path / "rdm")
            xr.testing.assert_identical(got, rdms)
    finally:
        cluster.close()
        env.restore()


@pytest.mark.slow
def test_driver_killed_mid_routing_fit_rerun_resumes_from_the_last_cell(tmp_path):
    """Attention routing's cells are chunks of epochs, each from the previous one's state:
    a rerun after a kill starts from the latest cell, trains only the epochs after it, and
    ends with the weights of an uninterrupted fit."""
    from test_attention_routing import routed_data

    from neuroalign import thread_limits
    from neuroalign.encoders import AttentionRoutingEncoder

    tok, resp, _ = routed_data(n=160, n_tokens=8, n_units=6, n_vox=8, seed=5)
    X, Y = tok.values, resp.values
    path = tmp_path / "routing"
    before = _kill_driver_mid_grid("routing", path, 3, X=X, Y=Y)
    m = len(before)
    assert 3 <= m < 30
    # the subprocess ran with one torch thread: so do the rerun and the reference (float32
    # sums over other thread counts differ in the last bits)
    with thread_limits(1):
        enc = AttentionRoutingEncoder(**ROUTING).fit(X, Y, result_path=path, batch_size=1)
        single = AttentionRoutingEncoder(**ROUTING).fit(X, Y)
    assert enc.scaleout_info_["skipped"] == list(range(m))
    assert enc.scaleout_info_["computed"] == list(range(m, 30))
    after = _cells(path)
    assert len(after) == 30 and {k: after[k] for k in before} == before
    assert enc.history_ == single.history_
    np.testing.assert_array_equal(enc.cv_scores_, single.cv_scores_)
    np.testing.assert_array_equal(enc.predict(X), single.predict(X))
