"""Shared fixtures: small simulated datasets, built once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("NEUROALIGN_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _pin_xdist_worker() -> None:
    """Under pytest-xdist (``-n N``), give each worker its own share of the cores, so that N
    workers never run more threads than there are cores: worker k keeps cores k, k+N, ...
    (at least one). Its BLAS, OpenMP and torch pools, and neuroalign's thread limits, size
    themselves by that affinity; so do the subprocesses it starts."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    k = int(worker.removeprefix("gw"))
    mine = cores[k % len(cores)::count] or [cores[k % len(cores)]]
    os.sched_setaffinity(0, mine)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(len(mine))  # libraries loaded from now on
    from threadpoolctl import threadpool_limits

    threadpool_limits(len(mine))  # those already loaded (numpy's BLAS): kept, not restored


_pin_xdist_worker()


def pytest_collection_modifyitems(config, items):
    """The tests that read the shared quick demo first (stable order otherwise): pytest-xdist's
    work stealing hands out contiguous runs of tests and steals from their ends, so they stay
    with the worker that builds the demo, and no other worker waits on its lock."""
    items.sort(key=lambda item: "quick_demo" not in getattr(item, "fixturenames", ()))


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (the default, pyproject's addopts): one worker per core this process may
    run on (not the host's count, which a container or ``taskset`` can exceed), at most 8 (each
    worker holds torch and a simulated brain in memory)."""
    from neuroalign._config import _cores  # neuroalign's own count: the CPU affinity

    return min(_cores(), 8)


@pytest.fixture(autouse=True)
def _close_figures():
    """Plot functions return pyplot-managed figures: close those a test leaves open."""
    yield
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")


@pytest.fixture
def two_cores(monkeypatch):
    """neuroalign sees two cores (``max_threads() == 2`` outside a tighter limit), whatever
    this machine or pytest-xdist worker has: for tests of how work is split between threads."""
    from neuroalign import _config

    monkeypatch.setattr(_config, "_cores", lambda: 2)


@pytest.fixture(scope="session")
def sim_nsd(tmp_path_factory):
    """A small simulated NSD tree (SimulationResult): 90 images, 3 sessions."""
    from neuroalign.datasets import simulate

    root = tmp_path_factory.mktemp("sim") / "nsd"
    return simulate(root, n_images=90, n_test=18, n_sessions=3, seed=3)


@pytest.fixture(scope="session")
def sim_nsd_large(tmp_path_factory):
    """A simulated NSD tree big enough to tell neighbouring layers apart whatever the fold
    seed (240 images, 40 of them test, 6 sessions): for known-answer tests of layer
    recovery. ``sim_nsd`` (90 images) cannot reliably tell hV4's and PPA's layers from
    their neighbours."""
    from neuroalign.datasets import simulate

    root = tmp_path_factory.mktemp("sim") / "nsd-large"
    return simulate(root, n_images=240, n_test=40, n_sessions=6, seed=0)


@pytest.fixture(scope="session")
def sim_nsd_large_features(sim_nsd_large):
    """The ground-truth network's features (layer1-4) of ``sim_nsd_large``'s stimuli."""
    from neuroalign.recipes import simulated_truth_features

    return simulated_truth_features(sim_nsd_large.store())


@pytest.fixture(scope="session")
def sim_eeg(tmp_path_factory):
    """A small simulated THINGS-EEG2 tree (SimulationResult)."""
    from neuroalign.datasets import simulate

    root = tmp_path_factory.mktemp("sim") / "eeg"
    return simulate(root, format="things-eeg2", n_images=60, n_test=10, n_test_repetitions=12, seed=4)


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """``neuroalign demo --quick`` run once per test run, by whichever pytest-xdist worker
    asks first (the others wait for it): (out folder, result with ``exit_code`` and
    ``output``, as a CliRunner result)."""
    import json
    import traceback
    from types import SimpleNamespace

    from filelock import FileLock
    from typer.testing import CliRunner

    from neuroalign.cli import app

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    out, record = base / "quick-demo", base / "quick-demo.json"
    with FileLock(base / "quick-demo.lock"):
        if not record.exists():
            res = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])
            output = res.output
            if res.exception is not None and not isinstance(res.exception, SystemExit):
                output += "".join(traceback.format_exception(res.exception))
            record.write_text(json.dumps({"exit_code": res.exit_code, "output": output}))
        return out, SimpleNamespace(**json.loads(record.read_text()))


import torch  # noqa: E402

_TORCH_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Tests may lower torch's thread count for themselves; never let it leak to others."""
    yield
    if torch.get_num_threads() != _TORCH_THREADS:
        torch.set_num_threads(_TORCH_THREADS)


def local_client(n_workers: int, *, processes: bool = False):
    """A dask ``Client`` on a ``LocalCluster`` of ``n_workers`` one-thread workers (threads in
    this process, or worker processes), closed afterwards; the dashboard on a free port."""
    from dask import distributed

    from neuroalign._scaleout import kept_environ

    # dask's nanny leaves OMP_NUM_THREADS=1, MALLOC_TRIM_THRESHOLD_ ... in os.environ: every
    # later subprocess of the run (e.g. the measured memory peaks) would inherit them
    with kept_environ():
        cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                           processes=processes, dashboard_address=":0")
        with distributed.Client(cluster) as c:
            yield c
        cluster.close()


@pytest.fixture(scope="module")
def client():
    """Two worker threads (the scale-out tests: cells on a cluster)."""
    yield from local_client(2)


@pytest.fixture(scope="module")
def client1():
    """One worker thread."""
    yield from local_client(1)


@pytest.fixture(scope="module")
def process_client():
    """Two one-thread worker processes (kill tests)."""
    yield from local_client(2, processes=True)


@pytest.fixture(scope="module")
def client4():
    """Four worker threads."""
    yield from local_client(4)
