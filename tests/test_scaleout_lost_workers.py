"""Cells on a client whose workers all go away mid-grid (a Slurm/PBS job cancelled,
preempted or past its walltime: dask-jobqueue does not replace it): the driver gives up the
cells still to run after ``LOST_WORKERS_TIMEOUT_S`` and names them, instead of waiting for
a worker for ever; a rerun computes only those."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from neuroalign import _scaleout_workers as sw
from neuroalign._scaleout import kept_environ, run_cells

N = 6


def _slow_cell(*args):
    time.sleep(0.1)
    return {"x": np.array([float(args[-1])])}


def _written(folder) -> int:
    return sum(1 for f in (folder / "cells").glob("*.npz") if not f.name.startswith("."))


@pytest.mark.parametrize("shared", [(), (np.ones(3),)], ids=["nothing-shared", "shared-data"])
def test_all_workers_gone_mid_grid_fails_naming_missing_cells_instead_of_hanging(
        tmp_path, monkeypatch, shared):
    """Without shared data the cells wait for a worker; with data scattered to the
    workers, they are cancelled when it is lost with them and wait to be submitted again
    with the data scattered anew: either way given up after the timeout."""
    distributed = pytest.importorskip("dask.distributed")
    monkeypatch.setattr(sw, "LOST_WORKERS_TIMEOUT_S", 0.5)
    monkeypatch.setattr(sw, "_POLL_S", 0.05)
    keys = [f"cell{i}" for i in range(N)]
    out: dict = {}

    def grid(client):
        try:
            run_cells(_slow_cell, keys, lambda i: (i,), names=("x",), folder=tmp_path,
                      client=client, what="grid", shared=shared)
        except RuntimeError as err:
            out["error"] = err

    with kept_environ():
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                           dashboard_address=":0")
        try:
            with distributed.Client(cluster) as client:
                t = threading.Thread(target=grid, args=(client,), daemon=True)
                t.start()
                deadline = time.monotonic() + 30
                while _written(tmp_path) < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                cluster.scale(0)  # the only worker goes, none replaces it
                t.join(timeout=30)
                assert not t.is_alive(), "run_cells waited for a worker for ever"
        finally:
            cluster.close()
    done = _written(tmp_path)
    assert 2 <= done < N
    why = (r"every worker was lost and none joined for 0 s \(a Slurm/PBS job cancelled, "
           r"preempted or past its walltime is not replaced\)")
    with pytest.raises(RuntimeError, match=(
            rf"grid: \d+ cell\(s\) failed \(RuntimeError\('{why}'\)\); batches \[.*\] of "
            r".* are missing")):
        raise out["error"]
    # the rerun (here in this process) computes only the missing cells
    cells, info = run_cells(_slow_cell, keys, lambda i: (i,), names=("x",), folder=tmp_path,
                            shared=shared)
    assert len(info["computed"]) == N - done and len(info["skipped"]) == done
    assert [float(c["x"][0]) for c in cells] == [float(i) for i in range(N)]


class _Future:
    """A finished cell's future whose worker is gone: gathering its result would wait for
    ever (its task queued again, for a worker that never comes)."""

    key = "_run_task-1"

    def __init__(self, status, exc=None):
        self.status, self._exc = status, exc

    def result(self, timeout=None):
        raise AssertionError("the driver gathered a cell's result from a worker")

    def exception(self, timeout=None):
        return self._exc


def test_finished_cells_are_checked_by_status_never_gathered():
    from concurrent.futures import CancelledError

    assert sw._task_errors(_Future("finished")) == []
    err = ValueError("bad cell")
    assert sw._task_errors(_Future("error", err)) == [err]
    (got,) = sw._task_errors(_Future("cancelled"))
    assert isinstance(got, CancelledError) and "_run_task-1 was cancelled" in str(got)


@pytest.mark.slow  # waits out a connect timeout, ~2.5 s
def test_cells_wait_for_the_first_worker_beyond_the_connect_timeout(tmp_path):
    """Jobs that wait in the queue: no worker yet when the cells start. Scattering the
    shared data then failed after dask's connect timeout (30 s; 0.5 s here)."""
    distributed = pytest.importorskip("dask.distributed")
    import dask

    keys = [f"cell{i}" for i in range(3)]
    with kept_environ(), dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        cluster = distributed.LocalCluster(n_workers=0, threads_per_worker=1, processes=False,
                                           dashboard_address=":0")
        try:
            with distributed.Client(cluster) as client:
                threading.Timer(1.5, cluster.scale, args=(1,)).start()  # the job starts
                cells, info = run_cells(_slow_cell, keys, lambda i: (i,), names=("x",),
                                        folder=tmp_path, client=client, shared=(np.ones(3),))
        finally:
            cluster.close()
    assert info["computed"] == [0, 1, 2]
    assert [float(c["x"][0]) for c in cells] == [0.0, 1.0, 2.0]


def _fake_slurm(folder, sbatch: str, squeue: str = "exit 0") -> str:
    """A folder of fake ``sbatch``, ``squeue`` and ``scancel`` commands, for PATH."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name, body in (("sbatch", sbatch), ("squeue", squeue), ("scancel", "exit 0")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize("case", ["refused", "left-the-queue"])
def test_slurm_jobs_refused_or_gone_before_a_worker_joined_are_named(tmp_path, monkeypatch,
                                                                      case):
    """sbatch refuses the job (an unknown partition ...), or the job leaves the queue
    without its worker joining (no python on the node ...): a named error, not a wait for
    ever."""
    pytest.importorskip("dask_jobqueue")
    import os

    from neuroalign._scaleout import ScaleOut

    sbatch = ('echo "sbatch: error: invalid partition specified: nope" >&2; exit 1'
              if case == "refused" else 'echo "Submitted batch job 4242"')
    monkeypatch.setenv("PATH", _fake_slurm(tmp_path, sbatch) + os.pathsep + os.environ["PATH"])
    monkeypatch.setattr(sw, "_POLL_S", 0.05)
    monkeypatch.setattr(sw, "_JOB_CHECK_S", 0.2)
    msg = (r"SLURMCluster: none of the 1 job\(s\) could be submitted \(the submit command's "
           r"error is logged above: e\.g\. an unknown partition/queue or account(?s:.*)#SBATCH -p nope"
           if case == "refused" else
           r"SLURMCluster: the Slurm job\(s\) 4242 left the queue before their dask worker "
           r"joined: see the jobs' output \(cluster option 'log_directory'\)(?s:.*)the "
           r"scheduler's address tcp://[\d.]+:\d+ not reachable from it \(bind the scheduler "
           r"to the cluster's network: cluster option scheduler_options=\{'interface'")
    with pytest.raises(RuntimeError, match=msg), kept_environ():
        with ScaleOut(cluster="slurm", result_path=tmp_path / "r", cluster_options={
                "queue": "nope", "cores": 1, "memory": "1GB", "walltime": "00:05:00",
                "log_directory": str(tmp_path / "logs")}) as so:
            run_cells(_slow_cell, ["c0"], lambda i: (i,), names=("x",), folder=so.folder,
                      client=so.client, shared=(np.ones(3),))


class SLURMCluster:
    """Stands for dask-jobqueue's cluster of the client: one job, 4242, still queued."""

    class _Job:
        job_id = "4242"

    def __init__(self):
        self.workers = {"SLURMCluster-1": self._Job()}


@pytest.mark.slow  # waits for a queued job, ~2 s per case
@pytest.mark.parametrize("shared", [(), (np.arange(3.0),), ((np.arange(3.0), np.zeros(3)),)],
                         ids=["nothing-shared", "shared-data", "shared-tuple"])
def test_a_slurm_job_still_queued_when_the_last_worker_goes_is_waited_for(tmp_path,
                                                                           monkeypatch, shared,
                                                                           caplog):
    """2 jobs, one running, one still in the queue: the running one goes mid-grid. The
    grid waits for the queued job's worker (it gave up before) and completes; data
    scattered to the workers, lost with the first one, is scattered again to the new one
    and the cells it cancelled are submitted again (they failed before)."""
    distributed = pytest.importorskip("dask.distributed")
    import logging
    import os

    monkeypatch.setattr(sw, "LOST_WORKERS_TIMEOUT_S", 0.3)
    monkeypatch.setattr(sw, "_POLL_S", 0.05)
    monkeypatch.setenv("PATH", _fake_slurm(tmp_path, "exit 1", squeue="echo 4242")
                       + os.pathsep + os.environ["PATH"])
    keys = [f"cell{i}" for i in range(N)]
    with kept_environ():
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                           dashboard_address=":0")
        try:
            with distributed.Client(cluster) as client:
                client.cluster = SLURMCluster()

                def lose_then_start():
                    while _written(tmp_path) < 2:
                        time.sleep(0.01)
                    cluster.scale(0)  # the running job goes
                    time.sleep(1.5)
                    cluster.scale(1)  # the queued one starts

                threading.Thread(target=lose_then_start, daemon=True).start()
                with caplog.at_level(logging.WARNING, logger="neuroalign._scaleout"):
                    cells, info = run_cells(_shared_cell, keys, lambda i: (i,), names=("x",),
                                            folder=tmp_path, client=client, shared=shared)
        finally:
            cluster.close()
    offset = 3.0 if shared else 0.0  # the data scattered again is the same data
    assert [float(c["x"][0]) for c in cells] == [i + offset for i in range(N)]
    assert len(info["computed"]) == N
    again = [r.getMessage() for r in caplog.records if "scattering it again" in r.getMessage()]
    assert len(again) == (1 if shared else 0), again


def _shared_cell(*args):
    time.sleep(0.1)
    return {"x": np.array([float(args[-1]) + sum(float(np.sum(a)) for a in args[:-1])])}


def test_the_data_is_scattered_again_a_bounded_number_of_times(tmp_path, monkeypatch, caplog):
    """A worker that keeps dying takes the data with it each time: after MAX_RESCATTERS
    re-scatters the cells it cancelled are named as missing, not retried for ever."""
    distributed = pytest.importorskip("dask.distributed")
    import logging

    from neuroalign import _scaleout

    monkeypatch.setattr(_scaleout, "MAX_RESCATTERS", 1)
    monkeypatch.setattr(sw, "LOST_WORKERS_TIMEOUT_S", 30.0)
    monkeypatch.setattr(sw, "_POLL_S", 0.05)
    keys = [f"cell{i}" for i in range(24)]
    stop = threading.Event()
    with kept_environ():
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                           dashboard_address=":0")
        try:
            with distributed.Client(cluster) as client:

                def churn():  # once cells run, the worker goes and another comes, again
                    while _written(tmp_path) < 1 and not stop.is_set():
                        time.sleep(0.01)
                    while not stop.is_set():
                        cluster.scale(0)
                        time.sleep(0.3)
                        cluster.scale(1)
                        time.sleep(0.4)

                t = threading.Thread(target=churn, daemon=True)
                t.start()
                with caplog.at_level(logging.WARNING, logger="neuroalign._scaleout"), \
                        pytest.raises(RuntimeError, match=r"grid: \d+ cell\(s\) failed \(.*"
                                      r"\); batches \[.*\] of .* are missing"):
                    run_cells(_shared_cell, keys, lambda i: (i,), names=("x",),
                              folder=tmp_path, client=client, what="grid",
                              shared=(np.ones(4),))
                stop.set()
                t.join()
        finally:
            cluster.close()
    again = [r for r in caplog.records if "scattering it again" in r.getMessage()]
    assert len(again) == 1
    assert 1 <= _written(tmp_path) < len(keys)
