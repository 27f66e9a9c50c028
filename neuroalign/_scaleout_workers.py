"""The workers of cells on a dask client: waiting for the first one (jobs in a queue),
noticing when they are all gone (a Slurm/PBS job cancelled, preempted or past its walltime
is not replaced by dask-jobqueue), and reading a finished cell's status without gathering
its result. Used by :func:`neuroalign._scaleout.run_cells`."""

from __future__ import annotations

from neuroalign._logging import get_logger

log = get_logger("neuroalign._scaleout")


#: Seconds the cells' workers may all be gone (after at least one had joined) before the
#: cells still to run are given up (named as missing, for a rerun): a Slurm/PBS job that is
#: cancelled, preempted or past its walltime is not replaced, and the tasks would wait for a
#: worker for ever. The clock starts only once a worker has joined (before that, jobs
#: waiting in the queue are waited for without limit); a Slurm/PBS job of the cluster still
#: in the queue when the time is up restarts it (its worker is waited for).
LOST_WORKERS_TIMEOUT_S = 60.0
#: How often (seconds) the driver looks at the workers while waiting for cells.
_POLL_S = 1.0


def _n_workers(client) -> int | None:
    try:
        return len(client.nthreads())
    except Exception:  # pragma: no cover - a scheduler that does not answer: not counted
        return None


def _lost_workers(seconds: float) -> RuntimeError:
    return RuntimeError(
        f"every worker was lost and none joined for {seconds:.0f} s (a Slurm/PBS job "
        "cancelled, preempted or past its walltime is not replaced)")


#: Seconds between the looks at a dask-jobqueue cluster's jobs while waiting for the first
#: worker (jobs may wait in the queue for hours: that wait has no limit).
_JOB_CHECK_S = 10.0


def _job_ids(jobs: dict) -> list[str]:
    """The scheduler's ids of a dask-jobqueue cluster's jobs that were submitted."""
    return [str(j.job_id) for j in list(jobs.values()) if getattr(j, "job_id", None)]


#: The dask-jobqueue clusters whose jobs' states this module asks the scheduler for.
_QUEUED_KINDS = ("SLURMCluster", "PBSCluster")
#: PBS (PBS Pro, OpenPBS, Torque) job states of a job that has ended.
_PBS_ENDED = frozenset("CFX")


def _live_jobs(kind: str, ids: list[str]) -> set[str] | None:
    """The jobs among ``ids`` that the batch system still holds (queued, held, running ...):
    Slurm's ``squeue``, PBS's ``qstat``; None when it does not answer (or for another
    kind of cluster)."""
    import subprocess

    if kind == "SLURMCluster":
        cmd = ["squeue", "-h", "-o", "%i", "-t", "PD,CF,R,S,CG", "-j", ",".join(ids)]
    elif kind == "PBSCluster":
        cmd = ["qstat", *ids]
    else:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    if kind == "SLURMCluster":
        return set(out.stdout.split()) & set(ids) if out.returncode == 0 else None
    # qstat prints a row per job it knows ("1234.server  name  user  time  S  queue"), and
    # for a job that has left (PBS Pro without -x, Torque after keep_completed) an error on
    # stderr with a non-zero status, while still printing the others
    live = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0][:1].isdigit():
            job = parts[0].split(".")[0]
            if job in ids and parts[-2] not in _PBS_ENDED:
                live.add(job)
    if out.returncode != 0 and not live and "nknown" not in out.stderr:
        return None  # not an unknown job: qstat itself failed
    return live


def _wait_for_a_worker(client) -> None:
    """Wait until a worker has joined ``client``'s scheduler, for as long as the jobs of a
    dask-jobqueue cluster wait in the queue (no limit), but raise when the jobs could not
    be submitted, or (Slurm, PBS) left the queue without their worker ever joining.

    Without this wait, scattering the data with no worker yet fails after dask's connect
    timeout (30 s): on a cluster whose jobs wait in the queue longer, every fit failed."""
    import time

    if _n_workers(client):
        return
    cluster = getattr(client, "cluster", None)
    jobs = getattr(cluster, "workers", None)
    kind = type(cluster).__name__
    start = last_check = last_log = time.monotonic()
    jobqueue = isinstance(jobs, dict) and hasattr(cluster, "job_script")
    ids: list[str] = []
    while not _n_workers(client):
        time.sleep(_POLL_S)
        now = time.monotonic()
        if now - last_log > 60:
            last_log = now
            log.info("%s: waiting %.0f s for the first worker%s", kind, now - start,
                     f" (job(s) {', '.join(ids) or 'being submitted'} in the queue)"
                     if jobqueue else "")
        if not jobqueue:
            continue  # a scheduler address or a cluster of the user's: its workers may come
        done = len(jobs) >= len(getattr(cluster, "worker_spec", jobs))  # submissions over
        ids = _job_ids(jobs)
        if done and jobs and not ids:
            raise RuntimeError(
                f"{kind}: none of the {len(jobs)} job(s) could be submitted (the submit "
                "command's error is logged above: e.g. an unknown partition/queue or "
                f"account, or too much memory or time asked). Job script:\n"
                f"{cluster.job_script()}")
        if ids and kind in _QUEUED_KINDS and now - last_check > _JOB_CHECK_S:
            last_check = now
            if _live_jobs(kind, ids) == set() and not _n_workers(client):
                system = "Slurm" if kind == "SLURMCluster" else "PBS"
                raise RuntimeError(
                    f"{kind}: the {system} job(s) {', '.join(ids)} left the queue before their "
                    "dask worker joined: see the jobs' output (cluster option "
                    "'log_directory'); e.g. the python executable (option 'python') or "
                    "neuroalign not found on the compute node, or the scheduler's address "
                    f"{_address(client)} not reachable from it (bind the scheduler to the "
                    "cluster's network: cluster option scheduler_options={'interface': "
                    "...}; the workers' own: option 'interface').")


def _address(client) -> str:
    try:
        return str(client.scheduler.address)
    except Exception:  # pragma: no cover - a client without a scheduler
        return "(unknown)"


def _jobs_still_queued(client) -> list[str]:
    """The Slurm/PBS jobs of ``client``'s dask-jobqueue cluster that the batch system still
    holds (queued ...), among those the cluster still counts (a job whose worker left is
    dropped from them after dask's ``lost-worker-timeout``, 15 s): [] for any other client."""
    cluster = getattr(client, "cluster", None)
    jobs = getattr(cluster, "workers", None)
    kind = type(cluster).__name__
    if kind not in _QUEUED_KINDS or not isinstance(jobs, dict):
        return []
    ids = _job_ids(jobs)
    return sorted(_live_jobs(kind, ids) or ()) if ids else []


def _task_errors(fut) -> list:
    """The error of a finished cell's future ([] when it succeeded), never its result: the
    cell is on disk, and gathering a result from a worker gone meanwhile waits for ever
    (its task queued again, for a worker that may never come)."""
    from concurrent.futures import CancelledError

    if fut.status == "error":
        return [fut.exception()]
    if fut.status == "cancelled":
        return [CancelledError(f"cell task {fut.key} was cancelled")]
    return []
