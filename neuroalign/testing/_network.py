"""A network blocker for tests (every connection attempt raises and is recorded), and
empty model caches with an online Hub client, to show what code reaches for on its own."""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

__all__ = ["NetworkBlockedError", "block_network", "empty_model_caches", "place_in_hub_cache"]


class NetworkBlockedError(ConnectionError):
    """Raised by :func:`block_network` in place of a connection or a name lookup."""


@contextlib.contextmanager
def block_network() -> Iterator[list[str]]:
    """Block the network for the ``with`` body and record each attempt.

    ``socket.socket.connect`` / ``connect_ex`` (internet families; local Unix sockets still
    work), ``socket.create_connection``, ``socket.getaddrinfo`` and
    ``socket.gethostbyname`` raise :class:`NetworkBlockedError`; the list yielded gets one
    line per attempt (``"connect ('huggingface.co', 443)"``), so a test can assert that
    nothing even tried, whatever the code under test did with the error.

    Examples
    --------
    >>> from neuroalign.testing import block_network
    >>> with block_network() as attempts:
    ...     try:
    ...         socket.create_connection(("example.org", 80))
    ...     except ConnectionError:
    ...         pass
    >>> attempts
    ["create_connection ('example.org', 80)"]
    """
    attempts: list[str] = []
    saved = {
        "connect": socket.socket.connect, "connect_ex": socket.socket.connect_ex,
        "create_connection": socket.create_connection, "getaddrinfo": socket.getaddrinfo,
        "gethostbyname": socket.gethostbyname,
    }

    def refuse(kind: str, target) -> NetworkBlockedError:
        attempts.append(f"{kind} {target!r}")
        return NetworkBlockedError(f"network blocked by neuroalign.testing.block_network: {kind} {target!r}")

    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return saved["connect"](self, address)
        raise refuse("connect", address)

    def connect_ex(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return saved["connect_ex"](self, address)
        raise refuse("connect_ex", address)

    def create_connection(address, *args, **kwargs):
        raise refuse("create_connection", address)

    def getaddrinfo(host, port, *args, **kwargs):
        raise refuse("getaddrinfo", (host, port))

    def gethostbyname(host):
        raise refuse("gethostbyname", host)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.create_connection = create_connection
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    try:
        yield attempts
    finally:
        socket.socket.connect = saved["connect"]
        socket.socket.connect_ex = saved["connect_ex"]
        socket.create_connection = saved["create_connection"]
        socket.getaddrinfo = saved["getaddrinfo"]
        socket.gethostbyname = saved["gethostbyname"]


@contextlib.contextmanager
def empty_model_caches(root: str | os.PathLike) -> Iterator[SimpleNamespace]:
    """Empty model caches under ``root`` and a Hugging Face client that is NOT offline.

    Inside: ``huggingface_hub``'s cache folder is ``root/hf-hub`` and its offline switch is
    off (whatever ``HF_HUB_OFFLINE`` said at import), its agent registry is unresolved (so
    the first request really goes out), ``TORCH_HOME`` is ``root/torch`` and ``HOME`` is
    ``root/home`` (open_clip's ``~/.cache/clip``). Together with :func:`block_network` this
    shows whether code reaches for the network on its own. Everything is restored on exit.

    Parameters
    ----------
    root : path-like
        Folder for the empty caches.

    Yields
    ------
    SimpleNamespace
        ``hub`` (the Hub cache folder), ``checkpoints`` (torch hub checkpoints folder),
        ``root``.
    """
    from huggingface_hub import constants

    root = Path(root)
    hub = root / "hf-hub"
    hub.mkdir(parents=True, exist_ok=True)
    env_keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TORCH_HOME", "HOME")
    saved_env = {k: os.environ.get(k) for k in env_keys}
    saved_const = {k: getattr(constants, k) for k in ("HF_HUB_OFFLINE", "HF_HUB_CACHE", "AGENT_HARNESSES_PATH")
                   if hasattr(constants, k)}
    try:
        agent = importlib.import_module("huggingface_hub.utils._detect_agent")
        saved_registry = (agent, getattr(agent, "_registry", None))
    except ImportError:  # older huggingface_hub: no agent registry
        saved_registry = None
    try:
        os.environ.pop("HF_HUB_OFFLINE", None)
        os.environ.pop("TRANSFORMERS_OFFLINE", None)
        os.environ["TORCH_HOME"] = str(root / "torch")
        os.environ["HOME"] = str(root / "home")
        constants.HF_HUB_OFFLINE = False
        constants.HF_HUB_CACHE = str(hub)
        if "AGENT_HARNESSES_PATH" in saved_const:
            constants.AGENT_HARNESSES_PATH = str(root / "agent-harnesses.json")
        if saved_registry is not None:
            saved_registry[0]._registry = None
        yield SimpleNamespace(hub=hub, checkpoints=root / "torch" / "hub" / "checkpoints", root=root)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for k, v in saved_const.items():
            setattr(constants, k, v)
        if saved_registry is not None:
            saved_registry[0]._registry = saved_registry[1]


def place_in_hub_cache(hub: str | os.PathLike, repo_id: str, save, *,
                       commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Lay out a repository as the Hugging Face cache does.

    ``models--org--name/refs/main`` names ``snapshots/<commit>/``, where ``save`` writes
    the files.

    Parameters
    ----------
    hub : path-like
        The Hub cache folder.
    repo_id : str
        ``"org/name"``.
    save : callable
        ``save(folder)`` writes the repository's files into ``folder``.
    commit : str
        The snapshot's commit hash.

    Returns
    -------
    pathlib.Path
        The snapshot folder.
    """
    folder = Path(hub) / f"models--{repo_id.replace('/', '--')}"
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    save(snap)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(commit)
    return snap
