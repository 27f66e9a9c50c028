"""Figures that display: every plot function of neuroalign creates its figure here.

Figures are created through :mod:`matplotlib.pyplot`, so ``fig = plot_x(...)`` followed by
``plt.show()`` (or the end of a Jupyter cell) displays them with whatever backend is active
(the inline backend in Jupyter, Agg where there is no display). Pyplot keeps every figure
it creates until it is closed: in batch use call ``plt.close(fig)`` once a figure is saved,
or wrap the work in :func:`closing_new_figures`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["new_figure", "closing_new_figures"]


def new_figure(**kwargs: Any):
    """A pyplot-managed matplotlib figure (displayed by ``plt.show()`` and in Jupyter).

    Parameters
    ----------
    **kwargs
        Passed to :func:`matplotlib.pyplot.figure` (``figsize``, ``layout`` ...).

    Returns
    -------
    matplotlib.figure.Figure
        The new figure; close it with ``plt.close(fig)`` when it is no longer needed.
    """
    import matplotlib.pyplot as plt

    return plt.figure(**kwargs)


@contextlib.contextmanager
def closing_new_figures() -> Iterator[None]:
    """Close, on exit, every pyplot figure opened inside the block (and only those).

    For batch code (the CLI, report writers) that saves figures and never shows them.

    Yields
    ------
    None
        Nothing; figures opened before the block stay open.
    """
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        yield
    finally:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)
