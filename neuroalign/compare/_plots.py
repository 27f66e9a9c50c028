"""Figures of representational comparisons (every function returns a matplotlib Figure).

Figures are pyplot-managed (see :mod:`neuroalign._plotting`): they display in Jupyter and
with ``plt.show()``; in batch use close them with ``plt.close(fig)`` once saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["plot_rdms", "plot_model_scores", "plot_mds", "plot_timecourse"]


def _figure(width: float, height: float):
    from neuroalign._plotting import new_figure

    return new_figure(figsize=(width, height), layout="constrained")


def plot_rdms(rdms: Mapping[str, Any] | Any, *, cmap: str = "viridis", max_cols: int = 4):
    """Heatmaps of one or several RDMs, each with its own colour bar.

    Parameters
    ----------
    rdms : mapping of str to RDM, or one RDM
        ``name -> RDM`` (DataArrays from :func:`rdm` or square arrays); a single RDM is
        drawn under the name ``"RDM"``.
    cmap : str
        Matplotlib colour map.
    max_cols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per RDM, titled with its name (and metric). The figure is pyplot-managed:
        it displays in Jupyter; close it with ``plt.close(fig)`` in batch use.
    """
    if not isinstance(rdms, Mapping):
        rdms = {"RDM": rdms}
    items = list(rdms.items())
    n = len(items)
    cols = min(n, max_cols)
    rows = int(np.ceil(n / cols))
    fig = _figure(3.2 * cols, 3.0 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (name, d) in zip(axes, items, strict=False):
        mat = np.asarray(d.values if isinstance(d, xr.DataArray) else d)
        im = ax.imshow(mat, cmap=cmap, interpolation="nearest")
        metric = d.attrs.get("metric", "") if isinstance(d, xr.DataArray) else ""
        ax.set_title(f"{name}" + (f" ({metric})" if metric else ""), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


def plot_model_scores(result: xr.Dataset, *, title: str | None = None):
    """Bar plot of :func:`rsa` scores with their confidence intervals and the noise ceiling.

    Parameters
    ----------
    result : xr.Dataset
        What :func:`rsa` returns (``score``, ``ci_low``, ``ci_high``,
        ``noise_ceiling_lower``, ``noise_ceiling_upper``).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        One bar per model with its interval; the noise ceiling is a grey band from its
        lower to its upper bound (absent when not computed). Pyplot-managed (see
        :func:`plot_rdms`).
    """
    fig = _figure(max(3.0, 0.8 * result.sizes["model"] + 1.5), 3.2)
    ax = fig.subplots()
    x = np.arange(result.sizes["model"])
    score = result["score"].values
    lo, hi = result["ci_low"].values, result["ci_high"].values
    yerr = None
    if np.isfinite(lo).all() and np.isfinite(hi).all():
        yerr = np.vstack([score - lo, hi - score]).clip(min=0)
    ax.bar(x, score, yerr=yerr, capsize=3, color="tab:blue")
    ncl, ncu = float(result["noise_ceiling_lower"]), float(result["noise_ceiling_upper"])
    if np.isfinite(ncl) and np.isfinite(ncu):
        ax.axhspan(ncl, ncu, color="0.8", alpha=0.6, zorder=0, label="noise ceiling")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(x, [str(m) for m in result["model"].values], rotation=45, ha="right")
    ax.set_ylabel(f"RDM similarity ({result.attrs.get('method', '')})")
    if title:
        ax.set_title(title)
    return fig


def plot_mds(distances: xr.DataArray | np.ndarray, *, labels: list[str] | None = None,
             title: str | None = None):
    """2-D classical MDS embedding of a distance matrix.

    Parameters
    ----------
    distances : xr.DataArray or ndarray, shape (n_systems, n_systems)
        Symmetric distances, e.g. from :func:`distance_matrix`.
    labels : list of str, optional
        Point labels (default: the ``system`` coordinate, or the indices).
    title : str, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        One labelled point per system, equal axis scales. Pyplot-managed (see
        :func:`plot_rdms`).
    """
    from neuroalign.compare._shape_matrix import mds

    emb = mds(distances, 2)
    if labels is None:
        labels = ([str(v) for v in emb["system"].values] if "system" in emb.coords
                  else [str(i) for i in range(emb.sizes["system"])])
    fig = _figure(4.0, 4.0)
    ax = fig.subplots()
    xy = emb.values
    ax.scatter(xy[:, 0], xy[:, 1], color="tab:orange")
    for (px, py), lab in zip(xy, labels, strict=True):
        ax.annotate(lab, (px, py), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2")
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title)
    return fig


def plot_timecourse(result: xr.Dataset, *, title: str | None = None):
    """Time course of :func:`rsa_timecourse` scores (and the generalisation matrix).

    Parameters
    ----------
    result : xr.Dataset
        What :func:`rsa_timecourse` returns; with ``generalization`` a second panel shows
        the time-by-time matrix.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One line per model over time (and the generalisation matrix). Pyplot-managed (see
        :func:`plot_rdms`).
    """
    gen = "generalization" in result
    fig = _figure(8.0 if gen else 5.0, 3.2)
    axes = np.atleast_1d(fig.subplots(1, 2 if gen else 1))
    t = result["time"].values
    for m in result["model"].values:
        axes[0].plot(t, result["score"].sel(model=m).values, label=str(m))
    axes[0].axhline(0, color="0.5", lw=0.8)
    axes[0].set_xlabel("time (s)")
    axes[0].set_ylabel(f"RDM similarity ({result.attrs.get('method', '')})")
    axes[0].legend(fontsize=8)
    if gen:
        im = axes[1].imshow(result["generalization"].values, origin="lower",
                            extent=(t[0], t[-1], t[0], t[-1]), cmap="magma")
        axes[1].set_xlabel("time (s)")
        axes[1].set_ylabel("time (s)")
        fig.colorbar(im, ax=axes[1], shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig
