"""Progress feedback: bars on a terminal, heartbeat lines when output goes to a file."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from neuroalign._logging import heartbeat, progress, progress_mode


@pytest.fixture
def heartbeat_env(monkeypatch):
    monkeypatch.delenv("NEUROALIGN_PROGRESS", raising=False)
    monkeypatch.setenv("NEUROALIGN_HEARTBEAT", "0.05")


def test_modes(monkeypatch, heartbeat_env):
    assert progress_mode() == "heartbeat"  # pytest's captured stderr is not a terminal
    assert progress_mode(disable=True) == "off"
    assert progress_mode(disable=False) == "bar"
    monkeypatch.setenv("NEUROALIGN_PROGRESS", "0")
    assert progress_mode() == "off"
    monkeypatch.setenv("NEUROALIGN_PROGRESS", "1")
    assert progress_mode() == "bar"


def test_heartbeat_lines_for_a_long_loop(capsys, heartbeat_env):
    out = []
    for i in progress(range(6), desc="layer sweep", unit="layer"):
        time.sleep(0.03)
        out.append(i)
    assert out == list(range(6))  # the items are passed through unchanged
    err = capsys.readouterr().err
    beats = [ln for ln in err.splitlines() if "layer sweep:" in ln and "elapsed" in ln]
    assert beats, err
    assert re.search(r"\[neuroalign\] layer sweep: \d/6 layer \(\d+ %\), 0:00 elapsed, "
                     r"about 0:00 left", err)
    assert re.search(r"layer sweep: done, 6 layer in 0:00", err)


def test_short_loop_is_silent(capsys, monkeypatch):
    monkeypatch.delenv("NEUROALIGN_PROGRESS", raising=False)
    monkeypatch.setenv("NEUROALIGN_HEARTBEAT", "30")
    assert list(progress(range(3), desc="quick")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_disabled_is_silent(capsys, heartbeat_env):
    for _ in progress(range(3), desc="x", disable=True):
        time.sleep(0.06)
    assert capsys.readouterr().err == ""


def test_heartbeat_step(capsys, heartbeat_env):
    with heartbeat("training tiny pipeline"):
        time.sleep(0.2)
    err = capsys.readouterr().err
    assert "training tiny pipeline: still running, 0:00 elapsed" in err
    assert "training tiny pipeline: done in 0:00" in err


def test_heartbeat_step_error_propagates_and_thread_ends(heartbeat_env):
    import threading

    with pytest.raises(RuntimeError, match="boom"), heartbeat("failing"):
        raise RuntimeError("boom")
    assert not [t for t in threading.enumerate() if t.name.startswith("neuroalign-heartbeat")]


def test_redirected_cli_process_prints_heartbeats(tmp_path):
    """A real process whose stderr is a file gets heartbeat lines (no bar escape codes)."""
    code = (
        "import time\n"
        "from neuroalign._logging import progress\n"
        "for _ in progress(range(5), desc='decoding', unit='step'):\n"
        "    time.sleep(0.05)\n"
    )
    log = tmp_path / "log.txt"
    env = {"NEUROALIGN_HEARTBEAT": "0.04", "PYTHONPATH": ".", "PATH": "/usr/bin:/bin"}
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", code], stderr=f, check=True, env=env)
    text = log.read_text()
    assert "[neuroalign] decoding:" in text and "/5 step" in text
    assert "\r" not in text and "\x1b[" not in text
