import os

import numpy as np
import pytest
from enc_helpers import planted

from neuroalign.encoders import RidgeEncoder, _scaleout
from neuroalign.store import cv_folds

ALPHAS = np.logspace(-2, 4, 9)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_partition_invariance_1_2_4_workers_three_batch_sizes(workers, request, tmp_path):
    """1, 2 and 4 workers x batches of 5, 16 and 45 neuroids (one cell): alphas identical to
    the single-process fit, cv scores and weights to 1e-12 (float64)."""
    c = request.getfixturevalue({1: "client1", 2: "client", 4: "client4"}[workers])
    X, Y, _ = planted(n=90, t=45, seed=4)
    X, Y = X.astype(np.float64) * 1e3 + 5.0, Y.astype(np.float64)  # units and a mean
    kw = dict(alphas=ALPHAS, dtype="float64", device="cpu")
    single = RidgeEncoder(**kw).fit(X, Y)
    assert len(np.unique(single.best_alphas_)) >= 3  # the choice varies across neuroids
    assert len(c.scheduler_info()["workers"]) == workers
    for batch in (5, 16, 45):
        dist = RidgeEncoder(**kw).fit(X, Y, client=c, result_path=tmp_path / f"{workers}-{batch}",
                                      batch_size=batch)
        assert dist.scaleout_info_["n_batches"] == -(-45 // batch)
        assert dist.form_ == single.form_
        np.testing.assert_array_equal(dist.best_alphas_, single.best_alphas_)
        np.testing.assert_allclose(dist.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)
        np.testing.assert_allclose(dist.coef_, single.coef_, rtol=0, atol=1e-12 * np.abs(single.coef_).max())
        np.testing.assert_allclose(dist.predict(X), single.predict(X), rtol=0, atol=1e-10)


@pytest.mark.parametrize(("workers", "batch_size"), [(1, 7), (1, 100), (2, 4), (2, 13), (2, 45)])
def test_any_batch_size_and_workers_match_the_single_process_fit(batch_size, workers, client, client1, tmp_path):
    """In float64, batches of any size on 1 or 2 workers give the single-process alphas and
    scores to 1e-12 (float32 agrees to its own rounding, ~1e-7, with the same alphas)."""
    X, Y, _ = planted(n=100, t=45)
    c = client1 if workers == 1 else client
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-6)):
        single = RidgeEncoder(alphas=ALPHAS, dtype=dtype, device="cpu").fit(X, Y)
        dist = RidgeEncoder(alphas=ALPHAS, dtype=dtype, device="cpu").fit(
            X, Y, client=c, result_path=tmp_path / dtype, batch_size=batch_size)
        assert dist.scaleout_info_["n_batches"] == -(-45 // batch_size)
        np.testing.assert_array_equal(dist.best_alphas_, single.best_alphas_)
        np.testing.assert_allclose(dist.cv_scores_, single.cv_scores_, rtol=0, atol=tol)
        np.testing.assert_allclose(dist.coef_, single.coef_, rtol=0, atol=100 * tol)


def test_repeated_fits_of_the_same_data(client, tmp_path):
    """Fitting the same X again and again (a rerun, a sweep) never loses the scattered data."""
    X, Y, _ = planted(n=60, t=12)
    ref = RidgeEncoder(alphas=ALPHAS, device="cpu").fit(X, Y)
    for i in range(8):
        enc = RidgeEncoder(alphas=ALPHAS, device="cpu").fit(X, Y, client=client, result_path=tmp_path / f"r{i}.zarr",
                                                             batch_size=(3, 12)[i % 2])
        np.testing.assert_array_equal(enc.best_alphas_, ref.best_alphas_)


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


def test_other_fits_in_the_same_folder_never_reuse_its_cells(client, tmp_path):
    """Other alphas, other responses, other features: other keys, every cell fitted anew."""
    X, Y, _ = planted(n=60, t=20)
    path = tmp_path / "r"
    RidgeEncoder(alphas=ALPHAS).fit(X, Y, client=client, result_path=path, batch_size=10)
    Y2 = Y.copy()
    Y2[0, 0] += 1.0  # changes batch 0's responses only
    X2 = X[::-1].copy()
    for alphas, XX, YY, computed in ((ALPHAS[:3], X, Y, [0, 1]), (ALPHAS, X, Y2, [0]),
                                     (ALPHAS, X2, Y, [0, 1])):
        enc = RidgeEncoder(alphas=alphas).fit(XX, YY, client=client, result_path=path,
                                              batch_size=10)
        assert enc.scaleout_info_["computed"] == computed
        ref = RidgeEncoder(alphas=alphas).fit(XX, YY)
        np.testing.assert_array_equal(enc.best_alphas_, ref.best_alphas_)
        np.testing.assert_allclose(enc.cv_scores_, ref.cv_scores_, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="Invalid value for 'batch_size'"):
        RidgeEncoder(alphas=ALPHAS).fit(X, Y, client=client, result_path=tmp_path / "b", batch_size=0)


def _cells(path):
    return sorted((path / "cells").glob("*.npz"), key=lambda f: f.stat().st_mtime_ns)


@pytest.mark.parametrize("damage", ["delete", "corrupt", "truncate"])
def test_a_deleted_or_corrupt_cell_is_the_only_one_fitted_again(damage, tmp_path):
    """In-process cells (no client): a rerun loads the good cells and refits the bad one."""
    X, Y, _ = planted(n=80, t=30)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    path = tmp_path / "grid"
    first = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(X, Y, result_path=path, batch_size=7)
    assert first.scaleout_info_["computed"] == [0, 1, 2, 3, 4]
    again = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(X, Y, result_path=path, batch_size=7)
    assert again.scaleout_info_["computed"] == []
    cells = sorted((path / "cells").glob("*.npz"))
    assert len(cells) == 5
    victim = cells[2]
    if damage == "delete":
        victim.unlink()
    elif damage == "corrupt":  # same length, other bytes: the checksum or the zip format says so
        raw = bytearray(victim.read_bytes())
        for i in range(len(raw) // 2, len(raw) // 2 + 64):
            raw[i] ^= 0xFF
        victim.write_bytes(bytes(raw))
    else:
        victim.write_bytes(victim.read_bytes()[:100])
    redo = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(X, Y, result_path=path, batch_size=7)
    assert len(redo.scaleout_info_["computed"]) == 1
    assert len(redo.scaleout_info_["skipped"]) == 4
    assert victim.is_file()
    single = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(X, Y)
    for enc in (first, redo):
        np.testing.assert_array_equal(enc.best_alphas_, single.best_alphas_)
        np.testing.assert_allclose(enc.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)
        np.testing.assert_allclose(enc.coef_, single.coef_, rtol=0, atol=1e-10)
    assert not list((path / "cells").glob(".tmp-*"))


def test_cluster_local_two_workers_matches_the_single_process_fit(tmp_path):
    pytest.importorskip("dask.distributed")
    X, Y, _ = planted(n=70, t=25)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    single = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(X, Y)
    enc = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(
        X, Y, cluster="local", cluster_options={"n_workers": 2, "processes": False},
        result_path=tmp_path / "r", batch_size=6)
    assert enc.scaleout_info_["n_batches"] == 5
    np.testing.assert_array_equal(enc.best_alphas_, single.best_alphas_)
    np.testing.assert_allclose(enc.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)


SLURM = {"cores": 8, "memory": "32GB", "walltime": "04:00:00", "queue": "gpu",
         "account": "lab42", "job_extra": ["--constraint=a100", "--gres=gpu:1"]}


def test_slurm_job_script_holds_what_the_options_ask_for():
    cluster = _scaleout.make_cluster("slurm", {**SLURM, "jobs": 3})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p gpu", "#SBATCH -A lab42", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=30G", "#SBATCH -t 04:00:00", "#SBATCH --constraint=a100",
                 "#SBATCH --gres=gpu:1"):
        assert line in script.splitlines(), (line, script)


def test_pbs_job_script_holds_what_the_options_ask_for():
    cluster = _scaleout.make_cluster("pbs", {**SLURM, "job_extra": ["-l ngpus=1"]})
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#PBS -q gpu", "#PBS -A lab42", "#PBS -l select=1:ncpus=8:mem=30GB",
                 "#PBS -l walltime=04:00:00", "#PBS -l ngpus=1"):
        assert line in script.splitlines(), (line, script)


def test_bad_cluster_values_are_named():
    with pytest.raises(ValueError, match=r"Invalid value for 'cluster' in RidgeEncoder.fit\(\): 'slurmm'"):
        _scaleout.get_client("slurmm", func="RidgeEncoder.fit")
    with pytest.raises(ValueError, match=r"Invalid value for 'cluster_options' with cluster='slurm'"):
        _scaleout.make_cluster("slurm", {"coress": 4})


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


def test_layer_sweep_cells_match_the_single_process_sweep_and_rerun_only_missing(client, tmp_path):
    """A grid of layers x neuroid batches: any workers and batch sizes give the single-process
    sweep; a rerun fits nothing; a deleted cell is the only one fitted again."""
    from neuroalign.encoders import LayerSweep

    rng = np.random.default_rng(3)
    layers = {f"l{i}": rng.standard_normal((60, 10 + 15 * i)) for i in range(3)}
    Y = layers["l1"] @ rng.standard_normal((25, 22)) + 2 * rng.standard_normal((60, 22))
    kw = dict(alphas=ALPHAS, cv=4, dtype="float64", device="cpu")
    single = LayerSweep(**kw).fit(layers, Y)
    for c, batch in ((None, 5), (client, 22), (client, 3)):
        path = tmp_path / f"sweep-{batch}"
        sweep = LayerSweep(**kw).fit(layers, Y, client=c, result_path=path, batch_size=batch)
        np.testing.assert_array_equal(sweep.best_alphas_.values, single.best_alphas_.values)
        np.testing.assert_allclose(sweep.cv_scores_.values, single.cv_scores_.values, rtol=0,
                                   atol=1e-12)
        n_cells = 3 * -(-22 // batch)
        assert len(list((path / "cells").glob("*.npz"))) == n_cells
    again = LayerSweep(**kw).fit(layers, Y, result_path=path, batch_size=3)
    assert all(info["computed"] == [] for info in again.scaleout_info_.values())
    sorted((path / "cells").glob("*.npz"))[4].unlink()
    redo = LayerSweep(**kw).fit(layers, Y, result_path=path, batch_size=3)
    assert sum(len(info["computed"]) for info in redo.scaleout_info_.values()) == 1
    np.testing.assert_allclose(redo.cv_scores_.values, single.cv_scores_.values, rtol=0, atol=1e-12)


def test_responses_streamed_from_zarr_give_the_in_memory_cells(tmp_path):
    """A zarr array of responses is read one batch of columns per cell: same keys, same fit."""
    zarr = pytest.importorskip("zarr")
    X, Y, _ = planted(n=70, t=24)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    z = zarr.open_array(str(tmp_path / "y.zarr"), mode="w", shape=Y.shape, chunks=(70, 8),
                        dtype="float64")
    z[:] = Y
    params = {"fit_intercept": True, "dtype": "float64", "form": None, "n_targets_batch": 4096,
              "relative_alphas": True, "seed": None}
    folds = cv_folds(np.arange(70).astype(str), 5)
    mem = _scaleout.cached_ridge(X, Y, folds, ALPHAS, params, result_path=tmp_path / "c",
                                 batch_size=8)
    streamed = _scaleout.cached_ridge(X, z, folds, ALPHAS, params, result_path=tmp_path / "c",
                                      batch_size=8)
    assert streamed["info"]["computed"] == []  # the same cells, found by their keys
    fresh = _scaleout.cached_ridge(X, z, folds, ALPHAS, params, result_path=tmp_path / "d",
                                   batch_size=8)
    for key in ("best_alphas", "cv_scores", "coef"):
        np.testing.assert_array_equal(fresh[key], mem[key])


class _Reads:
    """Responses read one batch of columns at a time, noting how many cells were on disk
    at each read (as a zarr array would be read)."""

    def __init__(self, Y, cells):
        self.Y, self.cells, self.log = Y, cells, []
        self.shape, self.dtype = Y.shape, Y.dtype

    def __getitem__(self, key):
        self.log.append(len(list(self.cells.glob("[!.]*.npz"))) if self.cells.exists() else 0)
        return self.Y[key]


def test_a_client_gets_a_bounded_number_of_batches_at_a_time(client1, tmp_path):
    """The driver reads (and submits) a batch only when a cell in flight is done: at most 4
    batches ahead on 1 worker, never the whole responses at once."""
    X, Y, _ = planted(n=60, t=40)
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    params = {"fit_intercept": True, "dtype": "float64", "form": None, "n_targets_batch": 4096,
              "relative_alphas": True, "seed": None}
    folds = cv_folds(np.arange(60).astype(str), 5)
    reads = _Reads(Y, tmp_path / "c" / "cells")
    out = _scaleout.cached_ridge(X, reads, folds, ALPHAS, params, result_path=tmp_path / "c",
                                 batch_size=2, client=client1)
    assert out["info"]["computed"] == list(range(20))
    submits = reads.log[20:]  # after one read per batch for its key
    assert len(submits) == 20
    for j, on_disk in enumerate(submits):
        assert on_disk >= j - 3, (j, submits)
    ref = _scaleout.cached_ridge(X, Y, folds, ALPHAS, params, result_path=tmp_path / "d",
                                 batch_size=40)
    np.testing.assert_array_equal(out["best_alphas"], ref["best_alphas"])


def test_without_result_path_the_temporary_cells_go_and_a_remote_cluster_needs_one(
        client, tmp_path, monkeypatch):
    """cluster=/client= without result_path: cells in a temporary folder, removed once the
    fit is done; Slurm/PBS/a scheduler address: a named error (the workers must write where
    this process reads)."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    X, Y, _ = planted(n=50, t=12)
    enc = RidgeEncoder(alphas=ALPHAS).fit(X, Y, client=client, batch_size=5)
    assert enc.scaleout_info_["n_batches"] == 3 and enc.scaleout_info_["result_path"] is None
    assert list(tmp_path.iterdir()) == []
    for cluster in ("slurm", "tcp://10.0.0.1:8786", {"kind": "pbs", "cores": 4}):
        with pytest.raises(ValueError, match=r"Invalid value for 'result_path' in "
                                             r"RidgeEncoder.fit\(\): None with cluster='(slurm|tcp://10.0.0.1:8786|pbs)'\. "
                                             r"Expected a folder that the workers and this process share"):
            RidgeEncoder(alphas=ALPHAS).fit(X, Y, cluster=cluster)


def test_a_local_cluster_of_processes_leaves_this_process_environment_as_it_was(
        monkeypatch, tmp_path):
    """dask's nanny sets OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_ ... in the parent's
    os.environ when it spawns a worker, for good: after the fit, every process the user
    starts would inherit them. The fit puts the environment back."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    for key in ("MALLOC_TRIM_THRESHOLD_", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(key, raising=False)
    X, Y, _ = planted(n=80, p=6, t=5, seed=3)
    before = dict(os.environ)
    single = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(X, Y)
    enc = RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu").fit(
        X, Y, cluster="local", cluster_options={"n_workers": 1, "processes": True},
        result_path=tmp_path / "cells", batch_size=2)
    assert dict(os.environ) == before
    np.testing.assert_allclose(enc.cv_scores_, single.cv_scores_, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_a_script_without_a_main_guard_is_told_how_to_start_a_local_cluster(tmp_path):
    """A script that starts ``cluster="local"`` (worker processes) at its top level: each
    worker process imports it again and fails, and dask says only "Nanny failed to start".
    The error says what to do."""
    import subprocess
    import sys

    script = tmp_path / "fit.py"
    script.write_text(
        "import numpy as np\n"
        "from neuroalign.encoders import RidgeEncoder\n"
        "rng = np.random.default_rng(0)\n"
        "X, Y = rng.standard_normal((60, 5)), rng.standard_normal((60, 4))\n"
        "RidgeEncoder(device='cpu').fit(X, Y, cluster={'kind': 'local', 'n_workers': 1},\n"
        f"                              result_path={str(tmp_path / 'cells')!r})\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode != 0
    assert ("RuntimeError: cluster='local': its worker processes failed to start. A script that "
            "starts a local cluster of processes must run its code under `if __name__ == "
            "\"__main__\":`") in out.stderr, out.stderr[-3000:]
    assert not (tmp_path / "cells" / "cells").exists() or not any((tmp_path / "cells" / "cells").iterdir())


def _big_cell(i, size):
    return {"x": np.full(size, float(i))}


def test_cached_cells_are_not_held_while_the_others_are_computed(tmp_path):
    """A rerun after a kill: the cells on disk are checked one at a time, not loaded and
    kept while the missing ones are computed (at whole-brain size that was a layer's
    weights), and cells damaged or missing are the only ones computed."""
    import tracemalloc

    from neuroalign._scaleout import Cell, run_cells

    size = 250_000  # 2 MB a cell
    keys = [f"k{i}" for i in range(8)]
    kw = dict(names=("x",), folder=tmp_path)
    cells, info = run_cells(_big_cell, keys, lambda i: (i, size), **kw)
    assert info["computed"] == list(range(8))
    (tmp_path / "cells" / "k5.npz").unlink()
    seen = []

    def task(i, n):
        seen.append(tracemalloc.get_traced_memory()[0])
        return _big_cell(i, n)

    tracemalloc.start()
    try:
        cells, info = run_cells(task, keys, lambda i: (i, size), **kw)
    finally:
        tracemalloc.stop()
    assert info["computed"] == [5] and info["skipped"] == [0, 1, 2, 3, 4, 6, 7]
    assert seen[0] < 2 * size * 8  # not the 7 cached cells (14 MB)
    assert [float(c["x"][0]) for c in cells] == list(range(8))
    lazy, _ = run_cells(_big_cell, keys, lambda i: (i, size), lazy=True, **kw)
    assert all(isinstance(c, Cell) for c in lazy) and lazy[3]["x"][7] == 3.0
    with pytest.raises(KeyError):
        lazy[3]["y"]


def test_cells_are_assembled_one_at_a_time(tmp_path):
    """A fit in cells assembles its weights from the cells on disk one cell at a time: the
    rerun of a finished grid peaks at about the output, not the output plus every cell
    (np.concatenate of the loaded cells), with the same numbers."""
    import tracemalloc

    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 600))
    Y = X[:, :20] @ rng.standard_normal((20, 800)) + rng.standard_normal((100, 800))
    folds = cv_folds(np.arange(100).astype(str), 5)
    params = dict(fit_intercept=True, dtype="float64", form=None, n_targets_batch=4096,
                  relative_alphas=True, seed=None)
    kw = dict(result_path=tmp_path, batch_size=80)
    first = _scaleout.cached_ridge(X, Y, folds, ALPHAS, params, **kw)
    assert first["info"]["computed"] == list(range(10))
    tracemalloc.start()
    try:
        again = _scaleout.cached_ridge(X, Y, folds, ALPHAS, params, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert again["info"]["computed"] == []
    weights = 600 * 800 * 8
    assert peak < 1.5 * weights, peak / weights  # was above 2 (all cells, then their concat)
    for k in ("coef", "intercept", "best_alphas", "cv_scores", "y_offset"):
        np.testing.assert_array_equal(again[k], first[k])
    single = RidgeEncoder(alphas=ALPHAS, dtype="float64").fit(X, Y)
    np.testing.assert_array_equal(again["best_alphas"], single.best_alphas_)


def _slow_cell(i):
    import time

    time.sleep(0.04)
    return {"x": np.full(3, float(i))}


def test_cells_in_this_process_show_their_progress(tmp_path, monkeypatch, capsys):
    """A grid of cells computed in this process reports its progress (heartbeat lines when
    output is not a terminal), counting only the cells it computes."""
    from neuroalign._scaleout import run_cells

    monkeypatch.delenv("NEUROALIGN_PROGRESS", raising=False)
    monkeypatch.setenv("NEUROALIGN_HEARTBEAT", "0.05")
    keys = [f"k{i}" for i in range(6)]
    run_cells(_slow_cell, keys[:2], lambda i: (i,), names=("x",), folder=tmp_path)
    capsys.readouterr()
    cells, info = run_cells(_slow_cell, keys, lambda i: (i,), names=("x",), folder=tmp_path,
                            what="my grid")
    assert info["computed"] == [2, 3, 4, 5]
    err = capsys.readouterr().err
    assert "my grid: done, 4 cell" in err, err
