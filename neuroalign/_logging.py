"""Logging and progress bars, shared by every subpackage.

The library never prints: it logs under ``neuroalign`` (with a ``NullHandler``) and shows
progress through :func:`progress`, which switches itself off when stderr is not a terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["get_logger", "progress"]

T = TypeVar("T")

logging.getLogger("neuroalign").addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """Return the logger ``name`` (a module ``__name__`` under ``neuroalign``)."""
    return logging.getLogger(name)


def _progress_enabled(disable: bool | None) -> bool:
    if disable is not None:
        return not disable
    env = os.environ.get("NEUROALIGN_PROGRESS")
    if env is not None:
        return env.strip().lower() not in {"0", "false", "no", "off", ""}
    return sys.stderr.isatty()


def progress(
    iterable: Iterable[T],
    *,
    desc: str | None = None,
    total: int | None = None,
    unit: str = "it",
    disable: bool | None = None,
) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm progress bar.

    The bar is shown only when stderr is a terminal, unless ``disable`` or the
    environment variable ``NEUROALIGN_PROGRESS`` (``1``/``0``) says otherwise.
    """
    if not _progress_enabled(disable):
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False)
