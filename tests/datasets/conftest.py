"""Fixtures of the dataset-adapter tests: small simulations, built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("NEUROALIGN_PROGRESS", "0")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def adapter_sim_nsd(sim_nsd):
    """The shared small simulated NSD tree (tests/conftest.py), built once per session."""
    return sim_nsd


@pytest.fixture(scope="session")
def adapter_sim_eeg(sim_eeg):
    """The shared small simulated THINGS-EEG2 tree (tests/conftest.py)."""
    return sim_eeg
