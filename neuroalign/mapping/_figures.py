"""ROI bar plots with noise ceilings, and layer-preference profiles along the hierarchy."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign._plotting import new_figure
from neuroalign._validation import check_option
from neuroalign.exceptions import DimensionError
from neuroalign.mapping._common import as_scores, roi_masks
from neuroalign.mapping._layers import layer_depths, roi_layer_profile

__all__ = ["save_figure", "plot_roi_scores", "plot_layer_profile", "new_figure"]

log = get_logger(__name__)

FORMATS = ("png", "svg", "pdf")


def save_figure(fig, path: str | Path | None, *, dpi: int = 150) -> Path | None:
    """Save ``fig`` to ``path`` (PNG, SVG or PDF, from its suffix), written atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure (it stays open: close it with ``plt.close(fig)`` when done).
    path : path-like or None
        File name ending in ``.png``, ``.svg`` or ``.pdf``; ``None`` writes nothing.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    pathlib.Path or None
        The file written, or ``None`` when ``path`` is ``None``.

    Raises
    ------
    ValueError
        ``path`` has another suffix.
    """
    if path is None:
        return None
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(
            f"Invalid value for 'save': {str(path)!r}. Expected a file name ending in "
            f"{', '.join('.' + f for f in FORMATS)}."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    tmp.replace(path)
    log.info("figure written to %s", path)
    return path


def _ceiling(noise_ceiling, kind: str) -> np.ndarray:
    nc = np.asarray(noise_ceiling, dtype=float)
    if kind == "r":
        return np.sqrt(np.clip(nc, 0, None) / 100.0)
    if kind == "r2":
        return nc / 100.0
    return nc


def plot_roi_scores(
    scores: xr.DataArray,
    *,
    store: xr.Dataset | None = None,
    rois: list[str] | None = None,
    noise_ceiling: xr.DataArray | np.ndarray | None = None,
    ceiling_as: Literal["r", "r2", "percent", "none"] = "r",
    group_dim: str | None = None,
    title: str | None = None,
    ylabel: str = "prediction accuracy (r)",
    save: str | Path | None = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """Bar plot of the mean score per ROI, with the ROI's noise ceiling drawn over each bar.

    Parameters
    ----------
    scores : xr.DataArray
        One score per neuroid (dims ``('neuroid',)``), or several sets along one more dim
        (models, layers: ``group_dim``) drawn as grouped bars. A dim ``layer`` with no
        ``group_dim`` given is reduced to each neuroid's best layer.
    store : xr.Dataset, optional
        Source of the ROI masks (matched on ``neuroid_id``) when the scores carry none.
    rois : list of str, optional
        ROIs to show (default: all).
    noise_ceiling : DataArray or array, optional
        Per-neuroid noise ceiling in percent of explainable variance, as
        :func:`neuroalign.store.noise_ceiling` returns. Default: the store's
        ``noise_ceiling`` variable when present; none otherwise.
    ceiling_as : {"r", "r2", "percent", "none"}
        How to put the ceiling in the units of the scores: ``sqrt(NC/100)`` for
        correlations, ``NC/100`` for R², unchanged, or no ceiling.
    group_dim : str, optional
        The extra dim of ``scores`` (default: the one that is not ``neuroid``).
    title : str, optional
        Axes title.
    ylabel : str
        Label of the y axis (say what the scores are).
    save : path, optional
        Write the figure (``.png``/``.svg``/``.pdf``).
    figsize : (float, float), optional
        Figure size in inches (default: from the number of ROIs and groups).

    Returns
    -------
    matplotlib.figure.Figure
        One axes; bars in ``ax.patches`` (ROI-major), ceilings as lines labelled
        ``"noise ceiling"``. The figure is pyplot-managed: it displays in
        Jupyter; close it with ``plt.close(fig)`` in batch use.
    """
    check_option(ceiling_as, ("r", "r2", "percent", "none"), name="ceiling_as", func="plot_roi_scores")
    if not isinstance(scores, xr.DataArray) or "neuroid" not in scores.dims:
        raise DimensionError(
            f"plot_roi_scores(): scores must be a DataArray with a 'neuroid' dim; got "
            f"{getattr(scores, 'dims', type(scores).__name__)!r}."
        )
    if "layer" in scores.dims and group_dim != "layer":
        scores = scores.max("layer", skipna=True)
    extra = [d for d in scores.dims if d != "neuroid"]
    if len(extra) > 1:
        raise DimensionError(
            f"plot_roi_scores(): scores have dims {scores.dims!r}; expected 'neuroid' and at "
            "most one group dim."
        )
    gdim = group_dim or (extra[0] if extra else None)
    s = scores.transpose(gdim, "neuroid") if gdim else scores.expand_dims(_group=[""])
    gdim = gdim or "_group"
    groups = (np.asarray(s[gdim].values).astype(str) if gdim in s.coords
              else np.arange(s.sizes[gdim]).astype(str))
    masks = roi_masks(scores, store, rois, func="plot_roi_scores")
    if noise_ceiling is None and store is not None and "noise_ceiling" in store:
        noise_ceiling = store["noise_ceiling"]
    nc = None
    if noise_ceiling is not None and ceiling_as != "none":
        if isinstance(noise_ceiling, xr.DataArray) and "neuroid_id" in noise_ceiling.coords \
                and "neuroid_id" in scores.coords:
            noise_ceiling = noise_ceiling.set_index(neuroid="neuroid_id").sel(
                neuroid=scores["neuroid_id"].values).values
        nc = _ceiling(noise_ceiling, ceiling_as)
        if nc.shape != (scores.sizes["neuroid"],):
            raise DimensionError(
                f"plot_roi_scores(): noise_ceiling has shape {nc.shape!r}; expected one value "
                f"per neuroid ({scores.sizes['neuroid']})."
            )
    vals = np.asarray(s.values, dtype=float)
    fig = new_figure(figsize=figsize or (1.2 + 0.9 * len(masks) * max(1, len(groups)) ** 0.5, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(groups)
    colors = [f"C{g % 10}" for g in range(len(groups))]
    for r, m in enumerate(masks.values()):
        for g in range(len(groups)):
            v = vals[g, m]
            v = v[np.isfinite(v)]
            mean = v.mean() if v.size else np.nan
            sem = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 else 0.0
            x = r - 0.4 + width * (g + 0.5)
            ax.bar(x, mean, width=width * 0.9, yerr=sem, color=colors[g],
                   label=groups[g] if r == 0 and len(groups) > 1 else None, capsize=2)
        if nc is not None:
            c = np.nanmean(nc[m])
            ax.hlines(c, r - 0.45, r + 0.45, colors="k", linestyles="--", linewidth=1.5,
                      label="noise ceiling" if r == 0 else None)
    ax.set_xticks(range(len(masks)))
    ax.set_xticklabels(list(masks), rotation=30 if len(masks) > 5 else 0)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="0.5", linewidth=0.8)
    if len(groups) > 1 or nc is not None:
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_layer_profile(
    sweep: Any,
    *,
    store: xr.Dataset | None = None,
    rois: list[str] | None = None,
    x: Literal["depth", "layer"] = "depth",
    relative: bool = False,
    title: str | None = None,
    save: str | Path | None = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """Layer-preference profiles: mean score of each layer per ROI, along the hierarchy.

    Parameters
    ----------
    sweep : scores as in :func:`neuroalign.mapping.layer_preference`
        Dims ``('layer', 'neuroid')``; a ``model`` coord on ``layer`` gives one panel per model.
    store, rois : as in :func:`neuroalign.mapping.roi_layer_profile`
    x : {"depth", "layer"}
        x axis: depth normalised to [0, 1] within the model, or the layer names.
    relative : bool
        Divide each ROI's profile by its maximum (within each model), so that the shape
        of flat profiles is visible.
    title : str, optional
        Figure title.
    save : path, optional
        Write the figure (``.png``/``.svg``/``.pdf``).
    figsize : (float, float), optional
        Figure size in inches (default: from the number of models).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per model, one line per ROI; a marker on each ROI's best layer. The figure is pyplot-managed: it displays in
        Jupyter; close it with ``plt.close(fig)`` in batch use.
    """
    check_option(x, ("depth", "layer"), name="x", func="plot_layer_profile")
    scores = as_scores(sweep, func="plot_layer_profile")
    if "time" in scores.dims:
        raise DimensionError(
            "plot_layer_profile(): scores have a 'time' dim; select a time point or average "
            "over time first (or use best_layer_over_time)."
        )
    model, _, norm = layer_depths(scores)
    models = list(dict.fromkeys(model))
    prof = roi_layer_profile(scores, store, rois)
    names = np.asarray(prof["layer"].values).astype(str) if "layer" in prof.coords else \
        np.array([f"layer{i}" for i in range(prof.sizes["layer"])])
    fig = new_figure(figsize=figsize or (3.6 * len(models) + 1.0, 3.2))
    axes = [fig.add_subplot(1, len(models), i + 1) for i in range(len(models))]
    for ax, m in zip(axes, models, strict=True):
        idx = np.flatnonzero(model == m)
        xs = norm[idx] if x == "depth" else np.arange(len(idx))
        for r, roi in enumerate(prof["roi"].values):
            ys = prof.values[r, idx]
            if relative and np.nanmax(np.abs(ys)) > 0:
                ys = ys / np.nanmax(ys)
            ax.plot(xs, ys, "-", color=f"C{r % 10}", label=str(roi), marker=".")
            if np.isfinite(ys).any():
                b = int(np.nanargmax(ys))
                ax.plot(xs[b], ys[b], marker="*", markersize=11, color=f"C{r % 10}",
                        markeredgecolor="k", linestyle="none")
        if x == "layer":
            ax.set_xticks(xs)
            ax.set_xticklabels(names[idx], rotation=45, ha="right", fontsize=7)
            ax.set_xlabel("layer")
        else:
            ax.set_xlabel("normalised depth")
            ax.set_xlim(-0.05, 1.05)
        ax.set_title(m or (title or "layer profile"))
        ax.axhline(0, color="0.5", linewidth=0.8)
    axes[0].set_ylabel("mean score / ROI maximum" if relative else "mean score")
    axes[-1].legend(fontsize=7, frameon=False, loc="best")
    if title and models != [""]:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, save)
    return fig
