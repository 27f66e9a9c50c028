"""Timing and peak-memory helpers shared by the benchmarks."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any


def measure(func: Callable[[], Any], *, repeat: int = 1) -> tuple[float, float, Any]:
    """Best wall time (s) over ``repeat`` runs, peak traced memory (MiB) and the result.

    Peak memory is measured with tracemalloc, which sees numpy allocations.
    """
    best = float("inf")
    peak = 0.0
    out = None
    for _ in range(repeat):
        gc.collect()
        tracemalloc.start()
        t0 = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
    return best, peak, out


def report(name: str, ours: tuple[float, float], ref: tuple[float, float], ref_name: str) -> str:
    """One line: times, peaks and the ratios (reference / ours)."""
    (t1, m1), (t2, m2) = ours, ref
    return (
        f"{name:<28} neuroalign {t1:8.3f} s {m1:8.1f} MiB | {ref_name:<22} {t2:8.3f} s {m2:8.1f} MiB"
        f" | speed-up x{t2 / t1:5.1f}  memory ratio x{m2 / max(m1, 1e-9):5.1f}"
    )
