"""Maps people can look at: fsaverage surfaces (nilearn) and sensor topographies (MNE).

Volumes are in :mod:`neuroalign.mapping._volume`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import DataFormatError, DimensionError
from neuroalign.mapping._figures import new_figure, save_figure

__all__ = ["FSAVERAGE_VERTICES", "FSAVERAGE5_VERTICES", "SURFACE_VIEWS", "to_fsaverage5",
           "surface_rois", "plot_surface_map", "plot_topomaps"]

log = get_logger(__name__)

FSAVERAGE_VERTICES = 163842  # per hemisphere, icosahedron order 7
FSAVERAGE5_VERTICES = 10242  # per hemisphere, icosahedron order 5
SURFACE_VIEWS = ("lateral", "medial", "ventral", "dorsal", "anterior", "posterior", "flat")
_HEMIS = {"left": ("lh", "left", "l"), "right": ("rh", "right", "r")}


def _hemi_key(value) -> str | None:
    v = str(value).lower()
    for key, names in _HEMIS.items():
        if v in names:
            return key
    return None


def to_fsaverage5(values, *, name: str = "values") -> dict[str, np.ndarray]:
    """Resample fsaverage data to fsaverage5 for display: ``{"left": (10242,), "right": (10242,)}``.

    FreeSurfer's fsaverage meshes are nested icosahedral subdivisions: every order keeps
    the vertices of the order below as its first vertices, in the same order, and adds the
    midpoints of their edges after them. So fsaverage5's 10242 vertices are the first
    10242 of fsaverage's 163842 (per hemisphere), and resampling is taking that prefix
    (this decimates, it does not smooth).

    Parameters
    ----------
    values : array-like, mapping or xr.DataArray
        Per-vertex values: an array of ``2 * N`` values (left hemisphere first) or a mapping
        ``{"left"/"lh": (N,), "right"/"rh": (N,)}`` with N = 163842 (fsaverage) or 10242
        (fsaverage5); or a DataArray on ``neuroid`` with coords ``hemisphere`` and
        ``vertex`` (fsaverage indices; vertices absent from it become NaN).
    name : str
        What ``values`` are, for error messages.

    Returns
    -------
    dict of str to ndarray
        ``{"left": (10242,), "right": (10242,)}`` float arrays on fsaverage5.
    """
    out = {}
    if isinstance(values, xr.DataArray) and "neuroid" in values.dims:
        if values.ndim != 1 or "vertex" not in values.coords or "hemisphere" not in values.coords:
            raise DimensionError(
                f"to_fsaverage5(): {name!r} is a DataArray with dims {values.dims!r} and coords "
                f"{format_list(list(values.coords))}; expected one value per neuroid with "
                "coords 'hemisphere' and 'vertex'."
            )
        vert = np.asarray(values["vertex"].values, dtype=int)
        hemi = np.array([_hemi_key(h) for h in values["hemisphere"].values])
        v = np.asarray(values.values, dtype=float)
        for key in ("left", "right"):
            arr = np.full(FSAVERAGE5_VERTICES, np.nan)
            sel = (hemi == key) & (vert < FSAVERAGE5_VERTICES)
            arr[vert[sel]] = v[sel]
            out[key] = arr
        return out
    if isinstance(values, Mapping):
        parts = {}
        for k, v in values.items():
            key = _hemi_key(k)
            if key is None:
                raise KeyError(f"to_fsaverage5(): unknown hemisphere {k!r} in {name!r}; expected 'left'/'lh' or 'right'/'rh'.")
            parts[key] = np.asarray(v, dtype=float).ravel()
    else:
        arr = np.asarray(values, dtype=float).ravel()
        if arr.size % 2:
            raise DataFormatError(
                f"to_fsaverage5(): {name!r} has {arr.size} values; expected 2 x 163842 "
                "(fsaverage) or 2 x 10242 (fsaverage5), left hemisphere first."
            )
        parts = {"left": arr[: arr.size // 2], "right": arr[arr.size // 2 :]}
    for key, arr in parts.items():
        if arr.size not in (FSAVERAGE_VERTICES, FSAVERAGE5_VERTICES):
            raise DataFormatError(
                f"to_fsaverage5(): {name!r} has {arr.size} values in the {key} hemisphere; "
                f"expected {FSAVERAGE_VERTICES} (fsaverage) or {FSAVERAGE5_VERTICES} (fsaverage5)."
            )
        out[key] = arr[:FSAVERAGE5_VERTICES]
    return out


def surface_rois(store_or_values, rois: Sequence[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """ROI masks on fsaverage5 from the ``roi_*`` coordinates of a surface store.

    Parameters
    ----------
    store_or_values : xr.Dataset or xr.DataArray
        A surface store (or a DataArray on ``neuroid``) with ``hemisphere``, ``vertex`` and
        ``roi_*`` coordinates.
    rois : sequence of str, optional
        ROIs to convert (default: all).

    Returns
    -------
    dict
        ``{roi: {"left": bool (10242,), "right": bool (10242,)}}``, as
        :func:`plot_surface_map` takes for outlines.
    """
    obj = store_or_values
    names = [str(c)[4:] for c in obj.coords if str(c).startswith("roi_")]
    rois = names if rois is None else list(rois)
    unknown = [r for r in rois if r not in names]
    if unknown:
        raise KeyError(f"surface_rois(): unknown ROI(s) {format_list(unknown)}. Available: {format_list(names)}.")
    out = {}
    for r in rois:
        da = xr.DataArray(np.asarray(obj["roi_" + r].values, dtype=float), dims="neuroid",
                          coords={"vertex": ("neuroid", obj["vertex"].values),
                                  "hemisphere": ("neuroid", obj["hemisphere"].values)})
        res = to_fsaverage5(da)
        out[r] = {k: np.nan_to_num(v) > 0 for k, v in res.items()}
    return out


def _fsaverage5():
    from nilearn import datasets

    mesh = datasets.load_fsaverage("fsaverage5")
    try:
        sulc = datasets.load_fsaverage_data(mesh="fsaverage5", data_type="sulcal")
        bg = {k: np.asarray(sulc.data.parts[k]) for k in ("left", "right")}
    except Exception as err:  # display only: a missing background map is not an error
        log.warning("fsaverage5 sulcal depth unavailable (%s); plotting without background", err)
        bg = {"left": None, "right": None}
    return mesh, bg


def _outline(plotting, mesh, mask: np.ndarray, color, ax, fig, roi: str) -> bool:
    if not mask.any():
        return False
    labels = mask.astype(int)
    try:
        plotting.plot_surf_contours(mesh, labels, levels=[1], colors=[color], axes=ax, figure=fig)
    except ValueError as err:
        log.warning("ROI %r outline skipped: %s", roi, err)
        return False
    return True


def plot_surface_map(
    values,
    *,
    views: Sequence[str] = ("lateral", "medial", "ventral", "flat"),
    hemispheres: Sequence[str] = ("left", "right"),
    surface: str = "inflated",
    rois: Mapping[str, Any] | None = None,
    cmap: str = "RdBu_r",
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
    title: str | None = None,
    colorbar_label: str = "",
    save: str | Path | None = None,
) -> Any:
    """Per-vertex values on the fsaverage5 surface, several views per hemisphere, with ROI outlines.

    Full-fsaverage data (NSD's 163842 vertices per hemisphere) are resampled to fsaverage5
    with :func:`to_fsaverage5`. Meshes and sulcal depth come with nilearn (no network).

    Parameters
    ----------
    values : array-like, mapping or xr.DataArray
        See :func:`to_fsaverage5`.
    views : sequence of str
        Any of ``"lateral"``, ``"medial"``, ``"ventral"``, ``"dorsal"``, ``"anterior"``,
        ``"posterior"`` (on the ``surface`` mesh) and ``"flat"`` (the flat patch).
    hemispheres : sequence of {"left", "right"}
    surface : {"inflated", "pial", "white_matter", "sphere"}
        Mesh of the 3-d views.
    rois : mapping, optional
        ``{name: mask}`` with masks as accepted by :func:`to_fsaverage5` (or the output of
        :func:`surface_rois`); each ROI is outlined in its own colour.
    cmap, vmin, vmax, threshold : display options
        One colour range for all panels (default: the data's range; symmetric around 0
        when the data have both signs).
    title : str, optional
        Figure title.
    colorbar_label : str
        Label of the colour bar.
    save : path, optional
        Write the figure (``.png``/``.svg``/``.pdf``).

    Returns
    -------
    matplotlib.figure.Figure
        ``len(hemispheres) * len(views)`` 3-d panels and one colour bar. The figure is pyplot-managed: it displays in
        Jupyter; close it with ``plt.close(fig)`` in batch use.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from nilearn import plotting

    for v in views:
        check_option(v, SURFACE_VIEWS, name="views", func="plot_surface_map")
    hemis = []
    for h in hemispheres:
        key = _hemi_key(h)
        if key is None:
            raise ValueError(
                f"Invalid value for 'hemispheres' in plot_surface_map(): {h!r}. Expected 'left' or 'right'."
            )
        hemis.append(key)
    check_option(surface, ("inflated", "pial", "white_matter", "sphere"), name="surface", func="plot_surface_map")
    data = to_fsaverage5(values)
    shown = np.concatenate([data[h] for h in hemis])
    finite = shown[np.isfinite(shown)]
    if vmin is None or vmax is None:
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if lo < 0 < hi:
            lo, hi = -max(-lo, hi), max(-lo, hi)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    if vmax <= vmin:
        vmax = vmin + 1e-9
    masks = {}
    for name, m in (rois or {}).items():
        masks[name] = to_fsaverage5(m, name=f"rois[{name!r}]") if not (
            isinstance(m, Mapping) and set(m) <= {"left", "right"}) else m
    mesh, bg = _fsaverage5()
    fig = new_figure(figsize=(2.6 * len(views) + 0.8, 2.6 * len(hemis)))
    axes = []
    for r, h in enumerate(hemis):
        for c, view in enumerate(views):
            ax = fig.add_subplot(len(hemis), len(views), r * len(views) + c + 1, projection="3d")
            m = mesh["flat" if view == "flat" else surface].parts[h]
            plotting.plot_surf_stat_map(
                m, data[h],
                bg_map=bg[h], hemi=h, view="dorsal" if view == "flat" else view,
                axes=ax, figure=fig, colorbar=False, cmap=cmap, vmin=vmin, vmax=vmax,
                threshold=threshold, symmetric_cbar=False,
            )
            for k, (name, mk) in enumerate(masks.items()):
                _outline(plotting, m, np.asarray(mk[h], bool), f"C{k % 10}", ax, fig, name)
            ax.set_title(f"{h} {view}", fontsize=8)
            axes.append(ax)
    sm = ScalarMappable(norm=Normalize(vmin=vmin, vmax=vmax), cmap=cmap)
    cb = fig.colorbar(sm, ax=axes, shrink=0.6, fraction=0.03)
    cb.set_label(colorbar_label)
    if masks:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=f"C{k % 10}", label=n) for k, n in enumerate(masks)]
        fig.legend(handles=handles, loc="lower left", fontsize=7, frameon=False)
    if title:
        fig.suptitle(title)
    save_figure(fig, save)
    return fig


def plot_topomaps(
    values: xr.DataArray,
    *,
    times: Sequence[float] | int = 6,
    montage: str | None = None,
    cmap: str = "RdBu_r",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    colorbar_label: str = "",
    save: str | Path | None = None,
) -> Any:
    """Sensor topographies over time (MNE ``plot_topomap``), one panel per time point.

    Parameters
    ----------
    values : xr.DataArray
        Dims ``('neuroid', 'time')`` with a ``sensor`` coord (channel names of ``montage``),
        e.g. a score per sensor and time, or ``best_depth_norm`` of
        :func:`neuroalign.mapping.best_layer_over_time`.
    times : int or sequence of float
        Number of evenly spaced time points, or the times (s; nearest sample is shown).
    montage : str, optional
        An MNE built-in montage (offline). Default: ``"colin27_1020"`` where this MNE has
        it (the 10-20 positions, renamed in MNE 1.13), else ``"standard_1020"``.
    cmap, vmin, vmax : one colour range for all panels (default symmetric, ± the largest absolute value,
        or the data's range when all values have one sign).
    title : str, optional
        Figure title.
    colorbar_label : str
        Label of the colour bar.
    save : path, optional
        Write the figure (``.png``/``.svg``/``.pdf``).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per time point plus the colour bar. The figure is pyplot-managed: it displays in
        Jupyter; close it with ``plt.close(fig)`` in batch use.
    """
    import mne

    if not isinstance(values, xr.DataArray) or set(values.dims) != {"neuroid", "time"}:
        raise DimensionError(
            f"plot_topomaps(): values have dims {getattr(values, 'dims', None)!r}; expected "
            "('neuroid', 'time')."
        )
    if "sensor" not in values.coords:
        raise DimensionError("plot_topomaps(): values have no 'sensor' coordinate on 'neuroid'.")
    v = values.transpose("neuroid", "time")
    names = [str(s) for s in v["sensor"].values]
    if montage is None:
        builtin = mne.channels.get_builtin_montages()
        montage = "colin27_1020" if "colin27_1020" in builtin else "standard_1020"
    mont = mne.channels.make_standard_montage(montage)
    unknown = [n for n in names if n not in mont.ch_names]
    if unknown:
        raise ValueError(
            f"plot_topomaps(): sensors {format_list(unknown)} are not in montage {montage!r}."
        )
    tvals = np.asarray(v["time"].values, dtype=float)
    if isinstance(times, int):
        idx = np.unique(np.linspace(0, len(tvals) - 1, max(1, times)).round().astype(int))
    else:
        idx = np.array([int(np.abs(tvals - t).argmin()) for t in times])
    data = np.asarray(v.values, dtype=float)
    shown = data[:, idx]
    finite = shown[np.isfinite(shown)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo < 0 < hi:
        lo, hi = -max(-lo, hi), max(-lo, hi)
    vmin = lo if vmin is None else vmin
    vmax = hi if vmax is None else vmax
    info = mne.create_info(names, sfreq=100.0, ch_types="eeg")
    info.set_montage(mont, on_missing="raise", verbose="error")
    fig = new_figure(figsize=(1.7 * len(idx) + 0.8, 2.0))
    axes = [fig.add_subplot(1, len(idx), n + 1) for n in range(len(idx))]
    im = None
    for ax, t in zip(axes, idx, strict=True):
        im, _ = mne.viz.plot_topomap(np.nan_to_num(data[:, t]), info, axes=ax, show=False,
                                     vlim=(vmin, vmax), cmap=cmap, contours=0)
        ax.set_title(f"{tvals[t] * 1000:.0f} ms", fontsize=8)
    cb = fig.colorbar(im, ax=axes, shrink=0.8, fraction=0.03)
    cb.set_label(colorbar_label)
    if title:
        fig.suptitle(title)
    save_figure(fig, save)
    return fig
