"""Shared fixtures: small simulated datasets, built once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("NEUROALIGN_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _close_figures():
    """Plot functions return pyplot-managed figures: close those a test leaves open."""
    yield
    import sys

    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close("all")


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
    """``neuroalign demo --quick`` run once per session: (out folder, CliRunner result)."""
    from typer.testing import CliRunner

    from neuroalign.cli import app

    out = tmp_path_factory.mktemp("demo")
    return out, CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)])


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
