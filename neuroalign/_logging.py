"""Logging and progress feedback, shared by every subpackage.

The library never prints results: it logs under ``neuroalign`` (with a ``NullHandler``)
and shows progress through :func:`progress` (loops) and :func:`heartbeat` (long single
steps). Where progress goes depends on where the user is:

- a terminal: a tqdm bar on stderr;
- a Jupyter notebook: a tqdm bar that renders in the notebook (the widget bar when
  ``ipywidgets`` is installed, otherwise tqdm's text bar; never the "IProgress not found"
  warning);
- anything else (output redirected to a log file, a batch job): a heartbeat line on stderr
  every ``NEUROALIGN_HEARTBEAT`` seconds (default 30) while a loop or step is running,
  saying the step, the count, the elapsed time and an estimate of the time left.
  Steps shorter than one interval print nothing.

``NEUROALIGN_PROGRESS=0`` (or ``disable=True``) switches all of it off;
``NEUROALIGN_PROGRESS=1`` forces bars even when stderr is not a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["get_logger", "progress", "heartbeat", "progress_mode"]

T = TypeVar("T")

logging.getLogger("neuroalign").addHandler(logging.NullHandler())

_DEFAULT_INTERVAL = 30.0


def get_logger(name: str) -> logging.Logger:
    """Return the logger ``name`` (a module ``__name__`` under ``neuroalign``)."""
    return logging.getLogger(name)


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except AttributeError:  # pragma: no cover - unusual IPython
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress_mode(disable: bool | None = None) -> str:
    """How progress is shown here: ``"off"``, ``"bar"``, ``"notebook"`` or ``"heartbeat"``."""
    if disable is True:
        return "off"
    env = os.environ.get("NEUROALIGN_PROGRESS")
    if disable is None and env is not None:
        if env.strip().lower() in {"0", "false", "no", "off", ""}:
            return "off"
        return "notebook" if _in_notebook() else "bar"
    if _in_notebook():
        return "notebook"
    stream = sys.stderr
    if disable is False or (stream is not None and stream.isatty()):
        return "bar"
    return "heartbeat"


def _interval() -> float:
    try:
        value = float(os.environ.get("NEUROALIGN_HEARTBEAT", _DEFAULT_INTERVAL))
    except ValueError:
        return _DEFAULT_INTERVAL
    return value if value > 0 else _DEFAULT_INTERVAL


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _emit(line: str) -> None:
    stream = sys.stderr
    if stream is None:  # pragma: no cover - pythonw
        return
    try:
        stream.write(f"[neuroalign] {line}\n")
        stream.flush()
    except (OSError, ValueError):  # a closed stream never breaks the computation
        pass


def _heartbeat_line(desc: str | None, done: int, total: int | None, unit: str,
                    elapsed: float) -> str:
    what = desc or "working"
    if total:
        pct = 100.0 * done / total
        left = f", about {_clock(elapsed / done * (total - done))} left" if done else ""
        return (f"{what}: {done}/{total} {unit} ({pct:.0f} %), "
                f"{_clock(elapsed)} elapsed{left}")
    return f"{what}: {done} {unit}, {_clock(elapsed)} elapsed"


def progress(
    iterable: Iterable[T],
    *,
    desc: str | None = None,
    total: int | None = None,
    unit: str = "it",
    disable: bool | None = None,
) -> Iterator[T]:
    """Iterate over ``iterable`` with progress feedback suited to where output goes.

    See the module docstring for the three modes (terminal bar, notebook bar, heartbeat
    lines when output is not a terminal).

    Parameters
    ----------
    iterable : iterable
    desc : str, optional
        Name of the step, shown in the bar or heartbeat line.
    total : int, optional
        Number of items (default ``len(iterable)`` when it has one).
    unit : str
        Unit of one item.
    disable : bool, optional
        ``True`` switches feedback off, ``False`` forces a bar; default: decided by the
        environment (``NEUROALIGN_PROGRESS``) and the output stream.

    Examples
    --------
    >>> from neuroalign._logging import progress
    >>> sum(progress(range(4), desc="demo", disable=True))
    6
    """
    mode = progress_mode(disable)
    if total is None and hasattr(iterable, "__len__"):
        with contextlib.suppress(TypeError):
            total = len(iterable)  # type: ignore[arg-type]
    if mode == "off":
        yield from iterable
        return
    if mode in ("bar", "notebook"):
        if mode == "notebook":
            try:
                import ipywidgets  # noqa: F401
                from tqdm.notebook import tqdm
            except ImportError:
                from tqdm.std import tqdm
        else:
            from tqdm.std import tqdm
        yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False,
                        file=sys.stderr)
        return
    interval = _interval()
    start = last = time.monotonic()
    done = 0
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= interval:
            _emit(_heartbeat_line(desc, done, total, unit, now - start))
            last = now
    elapsed = time.monotonic() - start
    if elapsed >= interval:
        _emit(f"{desc or 'working'}: done, {done} {unit} in {_clock(elapsed)}")


@contextlib.contextmanager
def heartbeat(desc: str, *, disable: bool | None = None) -> Iterator[None]:
    """Report a long single step that has no loop to count (a fit, a download-free load).

    In heartbeat mode (output not a terminal) a line ``desc: still running, M:SS elapsed``
    is printed every ``NEUROALIGN_HEARTBEAT`` seconds while the block runs, and a final
    line when it took longer than one interval; in a terminal or notebook, nothing (the
    loops inside show their own bars).

    Examples
    --------
    >>> from neuroalign._logging import heartbeat
    >>> with heartbeat("fitting", disable=True):
    ...     pass
    """
    if progress_mode(disable) != "heartbeat":
        yield
        return
    interval = _interval()
    stop = threading.Event()
    start = time.monotonic()

    def beat() -> None:
        while not stop.wait(interval):
            _emit(f"{desc}: still running, {_clock(time.monotonic() - start)} elapsed")

    thread = threading.Thread(target=beat, name=f"neuroalign-heartbeat-{desc}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        elapsed = time.monotonic() - start
        if elapsed >= interval:
            _emit(f"{desc}: done in {_clock(elapsed)}")
