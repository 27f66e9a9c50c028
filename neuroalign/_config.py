"""Configuration shared by the subpackages: device resolution, thread limits, optional
dependencies, cache locations, recipe files."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["resolve_device", "cache_dir", "read_recipe", "thread_limits", "max_threads",
           "limit_this_thread", "require_torch", "torch_installed", "TORCH_INSTALL"]

_DEVICES = ("auto", "cpu", "cuda")

#: How to install PyTorch, named by every error about it being missing.
TORCH_INSTALL = (
    "pip install torch torchvision (or PyTorch's CPU-only wheels, without its 4.6 GB of CUDA "
    "libraries: pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu)"
)


def torch_installed() -> bool:
    """Whether PyTorch can be imported, without importing it."""
    if "torch" in sys.modules:
        return sys.modules["torch"] is not None
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def require_torch(what: str):
    """Import and return :mod:`torch`; an :class:`ImportError` naming ``what`` needs it and
    how to install it otherwise."""
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"{what} needs PyTorch, which is not installed ({err}). Install it with "
            f"{TORCH_INSTALL}. The store, the dataset adapters, compare and the ridge "
            "encoders work without it."
        ) from err
    return torch


def _cuda_possible() -> bool:
    """False when this machine certainly has no CUDA (or ROCm) device, decided without
    importing torch: on Linux a GPU needs its kernel driver, which shows in /proc or /dev
    (WSL2: /dev/dxg). Elsewhere, True (torch is asked)."""
    if not sys.platform.startswith("linux"):
        return True
    marks = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")
    return any(os.path.exists(m) for m in marks)


def resolve_device(device: str | None = "auto") -> str:
    """Resolve ``"auto"`` to ``"cuda"`` when a CUDA device is present, else ``"cpu"``.

    Any explicit torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``) is returned
    unchanged after a check that CUDA is present when asked for. ``"auto"`` does not import
    torch when it is not installed or when the machine has no GPU driver; ``"cuda"``
    without torch raises an :class:`ImportError` that says how to install it.
    """
    if device is None:
        device = "auto"
    if not isinstance(device, str) or not (
        device in _DEVICES or device.startswith("cuda:") or device == "mps"
    ):
        raise ValueError(
            f"Invalid value for 'device': {device!r}. Expected 'auto', 'cpu', 'cuda' or 'cuda:N'."
        )
    if device == "cpu":
        return "cpu"
    if device == "auto" and (not torch_installed() or (
            "torch" not in sys.modules and not _cuda_possible())):
        return "cpu"  # decided without importing torch
    torch = require_torch(f"device={device!r}")
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if device.startswith("cuda") and not has_cuda:
        raise RuntimeError(
            f"device={device!r} was requested but torch sees no CUDA device. "
            "Use device='cpu' or device='auto'."
        )
    return device


def cache_dir() -> Path:
    """The neuroalign cache folder (``$NEUROALIGN_CACHE`` or ``~/.cache/neuroalign``)."""
    root = os.environ.get("NEUROALIGN_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "neuroalign"
    return path


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML recipe file (any kind), with errors that name the file."""
    from neuroalign.exceptions import DataFormatError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Recipe {str(path)!r} does not exist.")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise DataFormatError(f"{path}: not a valid TOML recipe (not valid TOML: {err}).") from err


# -- thread limits -----------------------------------------------------------------------------
# OpenMP runtimes and torch (built with OpenMP) keep one thread count per thread; BLAS
# libraries (OpenBLAS with pthreads, MKL, BLIS) one per process, which threadpoolctl lets one
# Python thread at a time control. Each block sets and restores its limits in its own thread.
_LOCAL = threading.local()  # .limits: the limits of this thread's active blocks


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    """Threads neuroalign may use now in this thread: the tightest active
    :func:`thread_limits`, else the cores this process may run on. Worker pools size
    themselves by it."""
    return min([_cores(), *getattr(_LOCAL, "limits", [])])


_POOLS: list[Any] = []  # [(key of sys.modules, ThreadpoolController)]
_POOLS_LOCK = threading.Lock()


def _threadpools():
    """threadpoolctl's ``ThreadpoolController`` of the libraries loaded now.

    Building one scans every loaded shared library (2-30 ms with torch loaded, paid by each
    ``threadpool_limits`` call, i.e. by every :func:`thread_limits` block of a batch loop);
    it is rebuilt only when modules were imported since, which is how BLAS and OpenMP
    runtimes get loaded.
    """
    key = _modules_key(sys.modules)
    with _POOLS_LOCK:
        if not _POOLS or key is None or _POOLS[0][0] != key:
            from threadpoolctl import ThreadpoolController

            _POOLS[:] = [(key, ThreadpoolController())]
        return _POOLS[0][1]


def _modules_key(modules: dict) -> tuple[int, str] | None:
    """(number of modules, the last imported), or None when another thread's import
    changed ``modules`` while it was read (then the scan is redone)."""
    try:
        return len(modules), next(reversed(modules))
    except (RuntimeError, StopIteration):
        return None


def limit_this_thread(n_threads: int) -> None:
    """Limit OpenMP and torch (if imported) in the calling thread for the rest of its life,
    e.g. in the initializer of a worker pool whose threads end with the pool."""
    _threadpools().limit(limits=n_threads, user_api="openmp")
    torch = sys.modules.get("torch")  # never imported here
    if torch is not None:
        torch.set_num_threads(n_threads)
    _LOCAL.limits = [n_threads]


def map_threads(func, items) -> None:
    """``func(item)`` for every item, in at most :func:`max_threads` worker threads, each
    with ``max_threads() // workers`` BLAS, OpenMP and torch threads (restored afterwards),
    so that workers times their threads never exceed the limit; in the calling thread when
    only one worker would run. Returns when every call has ended; the first error (in the
    order of ``items``) is raised.

    Examples
    --------
    >>> out = [0] * 4
    >>> map_threads(lambda k: out.__setitem__(k, k * k), range(4))
    >>> out
    [0, 1, 4, 9]
    """
    from concurrent.futures import ThreadPoolExecutor

    items = list(items)
    limit = max_threads()
    workers = min(limit, len(items))
    if workers <= 1:
        for it in items:
            func(it)
        return
    each = max(1, limit // workers)
    with thread_limits(each), ThreadPoolExecutor(
            max_workers=workers, initializer=limit_this_thread, initargs=(each,)) as pool:
        list(pool.map(func, items))


@contextlib.contextmanager
def thread_limits(n_threads: int | None, *, blas: bool = True, torch: bool = True) -> Iterator[int]:
    """Limit the threads used inside the block; everything is restored on exit.

    Limits the BLAS and OpenMP pools (numpy, scipy, scikit-learn; through threadpoolctl),
    torch's intra-op pool (when torch is already imported; it is never imported here), and
    the worker pools neuroalign starts itself (e.g. the rank sorts of
    :func:`neuroalign.compare.compare_rdms`), which size themselves so that workers times
    their threads never exceed the limit. Blocks nest (an inner block never raises an outer
    limit); the settings found on entry are restored on exit, also by an exception.

    OpenMP and torch keep one setting per thread, so a block limits the thread that enters
    it; BLAS keeps one per process, which threadpoolctl lets one Python thread at a time
    control: enter blocks from the thread that runs the work.

    Parameters
    ----------
    n_threads : int or None
        Maximum number of threads; ``None`` changes nothing.
    blas : bool
        Limit the BLAS and OpenMP pools.
    torch : bool
        Limit torch's intra-op pool.

    Yields
    ------
    int
        The limit in force inside the block.

    Examples
    --------
    >>> import neuroalign
    >>> with neuroalign.thread_limits(1) as n:
    ...     print(n)  # BLAS, torch and neuroalign's own pools use one thread here
    1
    """
    if n_threads is None:
        yield max_threads()
        return
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(
            f"Invalid value for 'n_threads' in thread_limits(): {n_threads!r}. Expected a "
            "positive integer or None."
        )
    n = min(n_threads, max_threads())
    torch_mod = sys.modules.get("torch") if torch else None
    # read before the OpenMP limit, which torch's count follows
    torch_found = torch_mod.get_num_threads() if torch_mod is not None else None
    local = _LOCAL.__dict__.setdefault("limits", [])
    local.append(n)
    limiter = None
    try:
        if blas:
            limiter = _threadpools().limit(limits=n)
        if torch_mod is not None:
            torch_mod.set_num_threads(n)
        yield n
    finally:
        try:
            if limiter is not None:
                limiter.restore_original_limits()
            if torch_found is not None:
                torch_mod.set_num_threads(torch_found)
        finally:
            local.pop()
