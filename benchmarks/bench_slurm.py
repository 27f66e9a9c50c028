"""neuroalign's ``cluster="slurm"`` path through a real Slurm scheduler, end to end.

A benchmark and demonstration, not part of the test suite: it needs ``sbatch`` on PATH and
a controller that answers (on one machine, ``sudo benchmarks/slurm_local.sh start`` gives
a single-node Slurm) and skips with a message otherwise (exit status 0). Every Slurm job is one dask worker (dask-jobqueue
``SLURMCluster``), started with this process's python and this checkout on PYTHONPATH.

Checks (exit status 1 when one fails):

1. ``RidgeEncoder.fit`` (1,000 stimuli x 128 features -> 4,000 neuroids, 10 alphas, 16
   cells) on 1 and 2 Slurm jobs: alphas equal to the in-process fit, cv scores to 1e-12,
   weights to 1e-10; the searchlight (9^3 voxels, 12 cells) on 2 jobs: equal to 1e-12.
2. ``scancel`` of the worker job mid-grid (1 job: the fit fails, naming the missing cells;
   2 jobs: one cancelled, the other finishes the grid), then a rerun: it computes only the
   missing cells, the cells found are untouched (same mtimes), the result is the same.
   ``data_rdms`` (no data scattered to the workers): with its only job cancelled it gives
   up after ``LOST_WORKERS_TIMEOUT_S`` (10 s here) naming the missing cells; with a second
   job still queued (held 20 s), it waits for that job's worker and completes; so does the
   ridge, whose features, lost with the cancelled job's worker, are scattered again.
   Jobs waiting in the queue (45 s behind a job holding both CPUs) are waited for; a job
   refused by sbatch, or one dying before its worker joins, is a named error.
3. The driver SIGKILLed mid-grid (a subprocess): its orphaned worker job leaves the queue
   by itself (the worker's death timeout), and a rerun computes only the missing cells.
4. A fit recipe with a ``[cluster]`` table ``kind = "slurm"`` run by ``neuroalign run``:
   its results equal those of the same recipe without the table; a rerun computes no cell
   and submits no job (``sdiag``'s count of jobs submitted is unchanged).
5. Workers on other network hosts (``benchmarks/netns_nodes.sh up``: two network
   namespaces on a bridge; skipped without them): the ridge on 2 jobs, the scheduler bound
   to the bridge, equals the in-process fit; a scheduler bound where the workers cannot
   reach it is a named error once their jobs end.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/bench_slurm.py [--root /tmp/x] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ALPHAS = np.logspace(-1, 4, 10)
N_CELLS = 16  # 4,000 neuroids in batches of 250
FAILED: list[str] = []
FIGURES: dict = {"runs": []}


def check(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
    if not ok:
        FAILED.append(what)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cells(path: Path) -> dict[str, int]:
    """The cells written under ``path`` (not the temporaries) and their mtimes."""
    return {f.name: f.stat().st_mtime_ns for f in (path / "cells").glob("*.npz")
            if not f.name.startswith(".")}


def squeue() -> list[tuple[str, str, str]]:
    """(job id, name, state) of the jobs in the queue."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True)
    return [tuple(line.split()) for line in out.stdout.splitlines() if line.strip()]


def job_record(job_id: str) -> str:
    """The job as the scheduler remembers it: sacct, else ``scontrol show job``."""
    out = subprocess.run(["sacct", "-n", "-X", "-j", job_id, "-o", "JobID,JobName,State,Elapsed"],
                         capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        return " ".join(out.stdout.split())
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
    fields = dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)
    return " ".join(f"{k}={fields.get(k, '?')}" for k in ("JobId", "JobName", "JobState", "RunTime"))


def jobs_submitted() -> int | None:
    """The controller's count of jobs submitted since it started (``sdiag``), or None."""
    out = subprocess.run(["sdiag"], capture_output=True, text=True)
    m = re.search(r"Jobs submitted:\s*(\d+)", out.stdout)
    return int(m.group(1)) if m else None


class Watch:
    """Polls squeue while a run goes: the dask-worker jobs seen (id -> last state)."""

    def __init__(self, name: str = "dask-worker") -> None:
        self.name, self.jobs, self._stop = name, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for job, name, state in squeue():
                if name == self.name:
                    self.jobs[job] = state
            time.sleep(0.2)

    def __enter__(self) -> Watch:
        self.before = {j for j, n, _ in squeue() if n == self.name}
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for job in self.before:
            self.jobs.pop(job, None)


def record(name: str, wall: float, info: dict | None, watch: Watch | None, **extra) -> None:
    row = {"run": name, "wall_s": round(wall, 2), "loadavg": loadavg(), **extra}
    if info is not None:
        row["computed"] = f"{len(info['computed'])} of {info['n_batches']}"
    if watch is not None:
        row["jobs"] = {j: job_record(j) for j in sorted(watch.jobs, key=int)}
    FIGURES["runs"].append(row)
    print(f"- {name}: {row['wall_s']} s, cells computed {row.get('computed', '-')}, "
          f"jobs {sorted(watch.jobs, key=int) if watch else '-'}, load {row['loadavg']}",
          flush=True)
    for rec in row.get("jobs", {}).values():
        print(f"    {rec}")


def slurm_options(root: Path, jobs: int) -> dict:
    return {"jobs": jobs, "cores": 1, "memory": "3GB", "walltime": "00:15:00",
            "queue": os.environ.get("BENCH_SLURM_PARTITION", "debug"),
            "log_directory": str(root / "logs"), "python": sys.executable,
            "job_script_prologue": [f"export PYTHONPATH={ROOT}", "export OMP_NUM_THREADS=1"]}


def start_blocker(cpus: int, seconds: int) -> str:
    """Submit a job holding ``cpus`` CPUs for ``seconds``; its id once it runs."""
    job = subprocess.run(["sbatch", "--parsable", "-J", "blocker", "-c", str(cpus), "--mem",
                          "1000", "-o", "/dev/null", "--wrap", f"sleep {seconds}"],
                         capture_output=True, text=True).stdout.strip()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (job, "blocker", "RUNNING") not in squeue():
        time.sleep(0.2)
    return job


def ridge_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 128))
    Y = X @ rng.standard_normal((128, 4000)) * 0.1 + rng.standard_normal((1000, 4000))
    return X, Y


def same_ridge(enc, ref, what: str) -> None:
    check(bool(np.array_equal(enc.best_alphas_, ref.best_alphas_)), f"{what}: alphas equal")
    d = float(np.nanmax(np.abs(enc.cv_scores_ - ref.cv_scores_)))
    check(d <= 1e-12, f"{what}: cv scores within 1e-12 (max |diff| {d:.1e})")
    d = float(np.max(np.abs(np.asarray(enc.coef_) - np.asarray(ref.coef_))))
    check(d <= 1e-10, f"{what}: weights within 1e-10 (max |diff| {d:.1e})")


def ridge():
    from neuroalign.encoders import RidgeEncoder

    return RidgeEncoder(alphas=ALPHAS, dtype="float64", device="cpu")


def scancel_after(path: Path, n: int, how_many: int, watch: Watch, out: dict) -> threading.Thread:
    """A thread: once ``n`` cells are written, scancel ``how_many`` running worker jobs."""

    def run():
        deadline = time.monotonic() + 300
        while len(cells(path)) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        running = sorted((j for j, s in watch.jobs.items() if s == "RUNNING"), key=int)
        out["cancelled"], out["cells_at_cancel"] = running[:how_many], len(cells(path))
        subprocess.run(["scancel", *running[:how_many]], check=False)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def bench_ridge(root: Path) -> None:
    print("\n## RidgeEncoder.fit, 1000 x 128 -> 4000 neuroids, 10 alphas, 16 cells", flush=True)
    X, Y = ridge_data()
    t = time.perf_counter()
    ref = ridge().fit(X, Y)
    record("ridge, in process (no cells)", time.perf_counter() - t, None, None)
    for jobs in (1, 2):
        path = root / f"ridge-{jobs}job"
        with Watch() as w:
            t = time.perf_counter()
            enc = ridge().fit(X, Y, cluster="slurm", cluster_options=slurm_options(root, jobs),
                                  result_path=path, batch_size=250)
            wall = time.perf_counter() - t
        record(f"ridge, slurm, {jobs} job(s)", wall, enc.scaleout_info_, w)
        check(len(enc.scaleout_info_["computed"]) == N_CELLS, f"{jobs} job(s): {N_CELLS} cells computed")
        check(len(w.jobs) == jobs, f"{jobs} job(s): {jobs} dask-worker job(s) seen in squeue ({sorted(w.jobs)})")
        same_ridge(enc, ref, f"ridge on {jobs} Slurm job(s)")

    for jobs in (1, 2):
        print(f"\n## scancel mid-grid, {jobs} job(s)", flush=True)
        path = root / f"ridge-scancel-{jobs}"
        out: dict = {}
        with Watch() as w:
            killer = scancel_after(path, 3, 1, w, out)
            t = time.perf_counter()
            err = None
            try:
                enc = ridge().fit(X, Y, cluster="slurm",
                                      cluster_options=slurm_options(root, jobs),
                                      result_path=path, batch_size=250)
            except RuntimeError as e:
                err = e
            wall = time.perf_counter() - t
            killer.join(timeout=5)
        found = cells(path)
        record(f"ridge, slurm, {jobs} job(s), scancel {out.get('cancelled')} after "
               f"{out.get('cells_at_cancel')} cells", wall,
               None if err else enc.scaleout_info_, w, error=repr(err)[:300] if err else None,
               cells_on_disk=len(found))
        check(bool(out.get("cancelled")), f"{jobs} job(s): a running worker job was cancelled")
        if jobs == 1:
            check(err is not None and "are missing" in str(err),
                  f"1 job cancelled: the fit fails naming the missing cells ({str(err)[:140]!r})")
        else:
            check(err is None, f"2 jobs, 1 cancelled: the other job finishes the grid ({err!r})")
        rerun_ridge(root, X, Y, ref, path, found, f"after scancel ({jobs} job(s))")

    print("\n## driver SIGKILLed mid-grid", flush=True)
    path = root / "ridge-driverkill"
    np.save(root / "X.npy", X)
    np.save(root / "Y.npy", Y)
    code = textwrap.dedent(f"""
        import numpy as np
        from neuroalign.encoders import RidgeEncoder
        X, Y = np.load({str(root / 'X.npy')!r}), np.load({str(root / 'Y.npy')!r})
        RidgeEncoder(alphas=np.logspace(-1, 4, 10), dtype="float64", device="cpu").fit(
            X, Y, cluster="slurm", cluster_options={slurm_options(root, 1)!r},
            result_path={str(path)!r}, batch_size=250)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    with Watch() as w:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        while len(cells(path)) < 3 and proc.poll() is None and time.perf_counter() - t < 300:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        killed_at = time.perf_counter()
        found = cells(path)
        orphans = {j for j, s in w.jobs.items() if s in ("RUNNING", "PENDING", "CONFIGURING")}
        while orphans & {j for j, _, _ in squeue()} and time.perf_counter() - killed_at < 180:
            time.sleep(0.5)
        gone_after = time.perf_counter() - killed_at
        left = orphans & {j for j, _, _ in squeue()}
    at_kill, found = len(found), cells(path)  # the orphan may finish the cell it was fitting
    record(f"ridge, driver SIGKILLed after {at_kill} cells ({len(found)} once its job left)",
           killed_at - t, None, w, orphan_jobs_gone_after_s=round(gone_after, 1))
    check(proc.returncode == -signal.SIGKILL, "the driver was killed mid-grid")
    check(0 < len(found) < N_CELLS, f"killed mid-grid ({len(found)} of {N_CELLS} cells on disk)")
    check(not left, f"the orphaned worker job(s) {sorted(orphans)} left the queue by themselves "
                    f"({gone_after:.0f} s after the kill)")
    if left:
        subprocess.run(["scancel", *left], check=False)
    rerun_ridge(root, X, Y, ref, path, found, "after the driver's kill")


def rerun_ridge(root: Path, X, Y, ref, path: Path, found: dict, after_what: str) -> None:
    """Rerun the ridge grid of ``path`` on 1 job: only the cells not in ``found`` are
    computed, those found are untouched (mtimes), the result is the in-process one."""
    with Watch() as w:
        t = time.perf_counter()
        enc = ridge().fit(X, Y, cluster="slurm", cluster_options=slurm_options(root, 1),
                          result_path=path, batch_size=250)
        wall = time.perf_counter() - t
    info = enc.scaleout_info_
    record(f"ridge, rerun {after_what}", wall, info, w)
    check(len(info["computed"]) == N_CELLS - len(found) and len(info["skipped"]) == len(found),
          f"rerun computes only the missing cells ({len(info['computed'])} = {N_CELLS} - {len(found)})")
    after = cells(path)
    check({k: after.get(k) for k in found} == found, "the cells found are untouched (mtimes)")
    same_ridge(enc, ref, f"ridge {after_what} and rerun")


def bench_lost_workers(root: Path) -> None:
    """data_rdms (no data scattered to the workers: nothing is lost with them) on 1 job,
    cancelled mid-grid: the driver gives up after LOST_WORKERS_TIMEOUT_S, naming the
    missing cells (it waited for ever before), and a rerun computes only those."""
    import xarray as xr

    from neuroalign import _scaleout_workers as sw
    from neuroalign.compare import data_rdms, pseudo_subjects
    from neuroalign.testing import make_store

    timeout = 10.0
    print(f"\n## data_rdms, 24 subjects, 1 job cancelled mid-grid "
          f"(LOST_WORKERS_TIMEOUT_S = {timeout:.0f} s here, 60 s by default)", flush=True)
    store = pseudo_subjects(make_store(n_stimuli=150, n_neuroids=24 * 400, n_repetitions=2,
                                       seed=1), 24, seed=0)
    t = time.perf_counter()
    ref = data_rdms(store, "crossnobis")
    record("data_rdms crossnobis, in process (no cells)", time.perf_counter() - t, None, None)
    path = root / "rdms"
    old, sw.LOST_WORKERS_TIMEOUT_S = sw.LOST_WORKERS_TIMEOUT_S, timeout
    out: dict = {}
    try:
        with Watch() as w:
            killer = scancel_after(path, 2, 1, w, out)
            t = time.perf_counter()
            err = None
            try:
                data_rdms(store, "crossnobis", cluster="slurm", result_path=path,
                          cluster_options=slurm_options(root, 1))
            except RuntimeError as e:
                err = e
            wall = time.perf_counter() - t
            killer.join(timeout=5)
    finally:
        sw.LOST_WORKERS_TIMEOUT_S = old
    found = cells(path)
    record(f"data_rdms, slurm, 1 job, scancel {out.get('cancelled')} after "
           f"{out.get('cells_at_cancel')} cells", wall, None, w,
           error=repr(err)[:300] if err else None, cells_on_disk=len(found))
    check(err is not None and "every worker was lost" in str(err) and "are missing" in str(err),
          f"the fit fails naming the missing cells ({str(err)[:160]!r})")
    check(wall < 120, f"... after {wall:.0f} s, not waiting for ever")
    with Watch() as w:
        t = time.perf_counter()
        got = data_rdms(store, "crossnobis", cluster="slurm", result_path=path,
                        cluster_options=slurm_options(root, 1))
        wall = time.perf_counter() - t
    n_new = len(cells(path)) - len(found)
    record("data_rdms, rerun", wall, None, w, computed=f"{n_new} new cells")
    check(n_new == 24 - len(found), f"rerun computes only the missing cells ({n_new} = 24 - {len(found)})")
    after = cells(path)
    check({k: after.get(k) for k in found} == found, "the cells found are untouched (mtimes)")
    try:
        xr.testing.assert_identical(got, ref)
        same = True
    except AssertionError:
        same = False
    check(same, "data_rdms after the cancel and rerun: identical to the in-process RDMs")

    def run_rdms():
        return data_rdms(store, "crossnobis", cluster="slurm", result_path=root / "rdms-queued",
                         cluster_options=slurm_options(root, 2))

    def same_rdms(got):
        try:
            xr.testing.assert_identical(got, ref)
            return True
        except AssertionError:
            return False

    queued_then_cancelled(root, "data_rdms", root / "rdms-queued", run_rdms, 24, timeout,
                          lambda got: check(same_rdms(got), "data_rdms completed by the queued "
                                            "job: identical to the in-process RDMs"))
    # the ridge's features are scattered to the workers: lost with the cancelled job's, they
    # are scattered again to the queued job's worker (the grid failed there before)
    X, Y = ridge_data()
    ref_ridge = ridge().fit(X, Y)
    queued_then_cancelled(
        root, "ridge (features scattered to the workers)", root / "ridge-queued",
        lambda: ridge().fit(X, Y, cluster="slurm", cluster_options=slurm_options(root, 2),
                            result_path=root / "ridge-queued", batch_size=250),
        N_CELLS, timeout, lambda enc: same_ridge(enc, ref_ridge, "ridge completed by the queued job"),
        rescattered=True)


def queued_then_cancelled(root: Path, what: str, path: Path, run, n_cells: int, timeout: float,
                          compare, rescattered: bool = False) -> None:
    """``run()`` on 2 jobs, one held in the queue (a blocker job holds 1 CPU for 30 s), the
    running one cancelled mid-grid: the grid waits for the queued job's worker and
    completes; ``compare(result)`` checks it against the in-process run."""
    from neuroalign import _scaleout_workers as sw

    print(f"\n## {what}, 2 jobs, one held in the queue (a job holds 1 CPU for 30 s), the "
          "running one cancelled mid-grid", flush=True)
    blocker = start_blocker(1, 30)
    old, sw.LOST_WORKERS_TIMEOUT_S = sw.LOST_WORKERS_TIMEOUT_S, timeout
    out: dict = {}
    seen: list[str] = []

    class Seen(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler, logger = Seen(level=logging.INFO), logging.getLogger("neuroalign._scaleout")
    logger.addHandler(handler)
    level, _ = logger.level, logger.setLevel(logging.INFO)
    try:
        with Watch() as w:
            def hold_then_cancel():
                deadline = time.monotonic() + 300
                while len(cells(path)) < 2 and time.monotonic() < deadline:
                    time.sleep(0.02)
                running = [j for j, st in w.jobs.items() if st == "RUNNING"]
                queued = [j for j, st in w.jobs.items() if st == "PENDING"]
                out.update(cancelled=running, held=queued, cells_at_cancel=len(cells(path)))
                # the queued job stays queued for 20 s after the running one goes (held: a
                # cancelled job's CPU would otherwise start it at once)
                subprocess.run(["scontrol", "hold", *queued], check=False)
                subprocess.run(["scancel", *running], check=False)
                time.sleep(20)
                subprocess.run(["scontrol", "release", *queued], check=False)

            killer = threading.Thread(target=hold_then_cancel, daemon=True)
            killer.start()
            t = time.perf_counter()
            err = None
            try:
                got = run()
            except RuntimeError as e:
                err = e
            wall = time.perf_counter() - t
            killer.join(timeout=30)
    finally:
        sw.LOST_WORKERS_TIMEOUT_S = old
        logger.removeHandler(handler)
        logger.setLevel(level)
    subprocess.run(["scancel", blocker], check=False)
    waited = [m for m in seen if "still in the queue" in m]
    again = [m for m in seen if "scattering it again" in m]
    record(f"{what}, slurm, 2 jobs (1 queued behind {blocker}, held 20 s), scancel "
           f"{out.get('cancelled')} after {out.get('cells_at_cancel')} cells", wall, None, w,
           error=repr(err)[:300] if err else None, cells_on_disk=len(cells(path)),
           log=(waited[:1] + again[:1]))
    check(bool(waited), f"the driver saw the queued job once every worker had gone ({waited[:1]})")
    if rescattered:
        check(len(again) == 1, f"the lost data was scattered again once ({again})")
    check(err is None and len(cells(path)) == n_cells and len(w.jobs) == 2 and wall > 20,
          f"the grid waits for the queued job's worker ({wall:.0f} s) and completes ({err!r})")
    if err is None:
        compare(got)


def bench_hosts(root: Path) -> None:
    """The ridge on 2 Slurm jobs whose dask workers run on two other network hosts
    (``benchmarks/netns_nodes.sh up``: network namespaces 10.77.0.2 and 10.77.0.3 on a
    bridge, this host 10.77.0.1): the scheduler is bound to the bridge
    (``scheduler_options={"interface": "na-br0"}``) and the workers to their own interface
    (``interface="eth0"``), as on a cluster whose compute nodes reach the login node on
    its cluster network only. Skipped when the namespaces are not up."""
    wrapper = Path("/tmp/neuroalign-netns-python")
    up = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    print("\n## ridge on 2 jobs whose workers run on two other network hosts", flush=True)
    if "na-node2" not in up or "na-node3" not in up or not wrapper.exists():
        print("SKIPPED: the network namespaces are not up (sudo benchmarks/netns_nodes.sh up)")
        return
    X, Y = ridge_data()
    ref = ridge().fit(X, Y)
    path, logs = root / "ridge-hosts", root / "logs-hosts"
    options = slurm_options(root, 2) | {
        "python": str(wrapper), "interface": "eth0", "log_directory": str(logs),
        "scheduler_options": {"interface": "na-br0", "dashboard_address": ":0"}}
    with Watch() as w:
        t = time.perf_counter()
        enc = ridge().fit(X, Y, cluster="slurm", cluster_options=options, result_path=path,
                          batch_size=250)
        wall = time.perf_counter() - t
    text = " ".join(f.read_text() for f in logs.glob("*.err"))
    workers = sorted(set(re.findall(r"Start worker at:\s+tcp://([\d.]+):", text)))
    scheduler = sorted(set(re.findall(r"Registered to:\s+tcp://([\d.]+):", text)))
    record("ridge, slurm, 2 jobs, workers on hosts 10.77.0.2 and 10.77.0.3", wall,
           enc.scaleout_info_, w, workers=workers, scheduler=scheduler)
    check(workers == ["10.77.0.2", "10.77.0.3"],
          f"the two workers ran on the two other hosts ({workers})")
    check(scheduler == ["10.77.0.1"], f"they reached the scheduler on the bridge ({scheduler})")
    check(len(enc.scaleout_info_["computed"]) == N_CELLS, f"{N_CELLS} cells computed")
    same_ridge(enc, ref, "ridge with workers on two other hosts")
    # the scheduler bound where the compute nodes cannot reach it (this host's loopback):
    # the workers give up (death_timeout 10 s), their jobs end, a named error says why
    bad = options | {"jobs": 1, "death_timeout": 10,
                     "scheduler_options": {"interface": "lo", "dashboard_address": ":0"}}
    with Watch() as w:
        t = time.perf_counter()
        err = None
        try:
            ridge().fit(X, Y, cluster="slurm", cluster_options=bad, result_path=root / "ridge-lo",
                        batch_size=250)
        except RuntimeError as e:
            err = e
        wall = time.perf_counter() - t
    record("ridge, slurm, scheduler on this host's loopback, workers on another host", wall,
           None, w, error=repr(err)[:400] if err else None)
    check(err is not None and "not reachable from it" in str(err) and "127.0.0.1" in str(err)
          and wall < 60, f"a named error after {wall:.0f} s ({str(err)[-240:]!r})")


def bench_queue(root: Path) -> None:
    """Jobs that wait in the queue (behind a job holding both CPUs), jobs refused by sbatch
    (an unknown partition), jobs that die before their worker joins (no such python)."""
    print("\n## a job waiting in the queue; a job refused; a job dying before its worker joins",
          flush=True)
    X, Y = ridge_data()
    X, Y = X[:200, :32], Y[:200, :400]
    ref = ridge().fit(X, Y)
    blocker = start_blocker(2, 45)
    with Watch() as w:
        t = time.perf_counter()
        err = None
        try:
            enc = ridge().fit(X, Y, cluster="slurm", cluster_options=slurm_options(root, 1),
                              result_path=root / "queued", batch_size=100)
        except Exception as e:  # reported below
            err = e
        wall = time.perf_counter() - t
    subprocess.run(["scancel", blocker], check=False)
    record(f"ridge, 1 job queued behind job {blocker} (sleep 45 on both CPUs)", wall,
           None if err else enc.scaleout_info_, w, error=repr(err)[:300] if err else None)
    check(err is None and wall > 35, f"the fit waits for its queued job ({wall:.0f} s), no "
                                     f"timeout ({err!r})")
    if err is None:
        same_ridge(enc, ref, "ridge after a queue wait")
    for case, opts in (("refused: partition 'nope'", {"queue": "nope"}),
                       ("dying: python '/nonexistent/python'", {"python": "/nonexistent/python"})):
        t = time.perf_counter()
        err = None
        try:
            ridge().fit(X, Y, cluster="slurm", cluster_options=slurm_options(root, 1) | opts,
                        result_path=root / "bad", batch_size=100)
        except RuntimeError as e:
            err = e
        wall = time.perf_counter() - t
        record(f"ridge, job {case}", wall, None, None, error=str(err)[:200] if err else None)
        want = "could be submitted" if "refused" in case else "left the queue before"
        check(err is not None and want in str(err) and wall < 60,
              f"{case}: a named error after {wall:.0f} s ({str(err)[:120]!r})")


def bench_searchlight(root: Path) -> None:
    from neuroalign.compare import searchlight

    print("\n## searchlight, 9^3 voxels, 40 stimuli, 2 models, 12 cells", flush=True)
    rng = np.random.default_rng(8)
    ijk = np.argwhere(np.ones((9, 9, 9), dtype=bool))
    data, models = rng.standard_normal((40, len(ijk))), rng.random((2, 40 * 39 // 2))
    kw = dict(ijk=ijk, radius=2.0, threshold=0.5, method="spearman", show_progress=False)
    t = time.perf_counter()
    ref = searchlight(data, models, **kw)
    record("searchlight, in process (no cells)", time.perf_counter() - t, None, None)
    with Watch() as w:
        t = time.perf_counter()
        got = searchlight(data, models, cluster="slurm", cluster_options=slurm_options(root, 2),
                          result_path=root / "searchlight", batch_size=64, **kw)
        wall = time.perf_counter() - t
    n_cells = got.attrs.get("n_cells")
    record("searchlight, slurm, 2 jobs", wall, None, w, computed=f"{got.attrs.get('n_cells_computed')} of {n_cells}")
    d = float(np.nanmax(np.abs(got.values - ref.values)))
    check(bool(np.array_equal(np.isnan(got.values), np.isnan(ref.values))) and d <= 1e-12,
          f"searchlight on 2 Slurm jobs: same NaNs, values within 1e-12 (max |diff| {d:.1e})")
    check(n_cells == got.attrs.get("n_cells_computed") and n_cells >= 8,
          f"searchlight: all {n_cells} cells computed on the workers")


RECIPE = """kind = "fit"
[store]
path = "{store}"
[features]
path = "{feats}"
layers = ["good"]
[encoder]
kind = "ridge"
cv = 3
alphas = {{ logspace = [-2, 4, 7] }}
[encoder.params]
dtype = "float64"
[outputs]
n_boot = 10
"""

CLUSTER = """[cluster]
kind = "slurm"
jobs = 2
cores = 1
memory = "3GB"
walltime = "00:15:00"
queue = "{queue}"
job_extra = ["--comment=neuroalign-bench-slurm"]
batch_size = 50
[cluster.options]
log_directory = "{logs}"
python = "{python}"
job_script_prologue = ["export PYTHONPATH={root}", "export OMP_NUM_THREADS=1"]
"""


def bench_recipe(root: Path) -> None:
    import xarray as xr

    from neuroalign.store import save_store
    from neuroalign.testing import make_store

    print("\n## fit recipe with [cluster] kind = \"slurm\", run by `neuroalign run`", flush=True)
    rec = root / "recipe"
    rec.mkdir()
    ds, sig = make_store(n_stimuli=120, n_neuroids=400, n_repetitions=2, n_test=20, seed=0,
                         ncsnr=2.0, return_signal=True)
    save_store(ds, rec / "store.zarr")
    rng = np.random.default_rng(1)
    feats = xr.Dataset({"good": (("stimulus", "good_unit"),
                                 sig.values[:, :64] @ rng.standard_normal((64, 32)))},
                       coords={"stimulus_id": ("stimulus", sig["stimulus_id"].values)})
    feats.to_zarr(rec / "features.zarr", zarr_format=2, consolidated=True)
    base = RECIPE.format(store=rec / "store.zarr", feats=rec / "features.zarr")
    (rec / "plain.toml").write_text(base)
    (rec / "slurm.toml").write_text(base + CLUSTER.format(
        queue=os.environ.get("BENCH_SLURM_PARTITION", "debug"), logs=root / "logs",
        python=sys.executable, root=ROOT))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")

    def run(recipe: str, out: str, *extra: str) -> tuple[float, str]:
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "neuroalign", "-v", "run", str(rec / recipe),
                            "--out", str(rec / out), *extra], env=env, capture_output=True,
                           text=True, cwd=rec)
        if p.returncode:
            print(p.stdout[-2000:], p.stderr[-3000:])
        check(p.returncode == 0, f"neuroalign run {recipe} exits 0")
        return time.perf_counter() - t, p.stderr

    wall, _ = run("plain.toml", "plain")
    record("recipe without [cluster] (one process)", wall, None, None)
    with Watch() as w:
        wall, log = run("slurm.toml", "slurm")
    m = re.search(r"(\d+) cells, (\d+) cached, (\d+) to compute", log)
    record("recipe, [cluster] kind = slurm, 2 jobs", wall, None, w,
           computed=f"{m.group(3)} of {m.group(1)}" if m else "? (no log line)")
    check(m is not None and m.group(3) == m.group(1) == "8", "recipe: 8 of 8 cells computed")
    check(len(w.jobs) == 2, f"recipe: 2 dask-worker jobs seen in squeue ({sorted(w.jobs)})")
    comments = [subprocess.run(["scontrol", "-o", "show", "job", j], capture_output=True,
                               text=True).stdout for j in w.jobs]
    check(all("Comment=neuroalign-bench-slurm" in c for c in comments),
          "recipe: the job_extra directive reached the jobs (scontrol: Comment=...)")
    plain = xr.open_zarr(rec / "plain" / "results.zarr")
    slurm = xr.open_zarr(rec / "slurm" / "results.zarr")
    for name in plain.data_vars:
        a, b = plain[name].values, slurm[name].values
        if np.issubdtype(a.dtype, np.number):
            d = float(np.nanmax(np.abs(a - b))) if a.size else 0.0
            check(bool(np.array_equal(np.isnan(a), np.isnan(b))) and d <= 1e-12,
                  f"recipe: results.zarr {name!r} equal to the one-process run (max |diff| {d:.1e})")
    submitted = jobs_submitted()
    with Watch() as w:
        wall, log = run("slurm.toml", "slurm", "--overwrite")
    m = re.search(r"(\d+) cells, (\d+) cached, (\d+) to compute", log)
    record("recipe rerun (--overwrite), cells on disk", wall, None, w,
           computed=f"{m.group(3)} of {m.group(1)}" if m else "? (no log line)")
    check(m is not None and m.group(3) == "0", "recipe rerun: no cell computed")
    after = jobs_submitted()
    check(not w.jobs and submitted is not None and after == submitted,
          f"recipe rerun: no job submitted (sdiag: {submitted} -> {after} jobs submitted; "
          f"squeue saw {sorted(w.jobs)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/neuroalign-bench-slurm")
    parser.add_argument("--json", default=None)
    parser.add_argument("--only", choices=("ridge", "lost", "queue", "searchlight", "recipe", "hosts"),
                        default=None)
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        print("SKIPPED: sbatch is not on PATH (no Slurm here); on one machine, "
              "`sudo benchmarks/slurm_local.sh install && sudo benchmarks/slurm_local.sh start`.")
        return 0
    ping = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if ping.returncode != 0 or not ping.stdout.strip():
        print(f"SKIPPED: Slurm is installed but its controller does not answer "
              f"({(ping.stderr or ping.stdout).strip()[:200]!r}); on one machine, "
              "`sudo benchmarks/slurm_local.sh start`.")
        return 0
    import distributed  # noqa: F401 - its loggers are set up on import: quieted below

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    for name in ("distributed", "distributed.scheduler", "distributed.core"):
        logging.getLogger(name).setLevel(logging.ERROR)
    root = Path(args.root).resolve()
    json_path = Path(args.json).resolve() if args.json else None
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    FIGURES.update(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   loadavg_before=loadavg(), sinfo=subprocess.run(
                       ["sinfo", "-h", "-o", "%P %D %c %m %T"], capture_output=True,
                       text=True).stdout.strip())
    print(f"Slurm: {FIGURES['sinfo']}; load {FIGURES['loadavg_before']}", flush=True)
    os.chdir(root)  # anything written to the current folder lands here
    t = time.perf_counter()
    for name, step in (("ridge", bench_ridge), ("lost", bench_lost_workers), ("queue", bench_queue),
                       ("searchlight", bench_searchlight), ("recipe", bench_recipe),
                       ("hosts", bench_hosts)):
        if args.only in (None, name):
            step(root)
    FIGURES.update(total_s=round(time.perf_counter() - t, 1), loadavg_after=loadavg(),
                   failed=FAILED)
    print(f"\ntotal {FIGURES['total_s']} s; load {FIGURES['loadavg_after']}; "
          f"{len(FAILED)} check(s) failed", flush=True)
    if json_path:
        json_path.write_text(json.dumps(FIGURES, indent=1))
    for what in FAILED:
        print(f"FAILED: {what}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
