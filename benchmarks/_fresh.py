"""Run one side of a benchmark in a fresh Python process and read back its figures.

A worker prints one JSON line (``{"seconds": ..., "peak_rss_MiB": ...}``, the latter from
:func:`self_peak_rss_mib`, the process's own ``ru_maxrss``) last on stdout; this adds the
process's wall time and the load average before and after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_fresh(script: str | Path, args: list[str], *, env: dict | None = None,
              timeout: float | None = None) -> dict:
    """``python script *args`` in a new process; its last JSON line plus
    ``process_wall_s`` (process, imports included) and ``load_before``/``load_after``."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env, cwd=ROOT)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"error": f"timed out after {timeout} s", "stderr": err[-2000:]}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"error": f"exit {proc.returncode}", "stderr": err[-3000:]}
    res = json.loads(lines[-1])
    res["process_wall_s"] = time.perf_counter() - t0
    res["load_before"] = [round(x, 2) for x in load0]
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return res


def self_peak_rss_mib() -> float:
    """Peak resident memory of the calling process so far (MiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
