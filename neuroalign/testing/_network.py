"""A network blocker for tests: every connection attempt raises and is recorded."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

__all__ = ["NetworkBlockedError", "block_network"]


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
