"""Fixtures of the dataset-adapter tests: small simulations, built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("NEUROALIGN_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def adapter_sim_nsd(tmp_path_factory):
    """A small simulated NSD tree (60 images, 3 sessions)."""
    from neuroalign.datasets import simulate

    root = tmp_path_factory.mktemp("adapter-sim") / "nsd"
    return simulate(root, n_images=60, n_test=12, n_sessions=3, seed=5)


@pytest.fixture(scope="session")
def adapter_sim_eeg(tmp_path_factory):
    """A small simulated THINGS-EEG2 tree."""
    from neuroalign.datasets import simulate

    root = tmp_path_factory.mktemp("adapter-sim") / "eeg"
    return simulate(root, format="things-eeg2", n_images=30, n_test=6, n_test_repetitions=5, seed=6)
