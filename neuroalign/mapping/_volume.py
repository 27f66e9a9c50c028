"""Maps of volumetric stores: slices on the store's own grid, and projection to fsaverage.

A volumetric store carries its grid (attrs ``affine``, ``volume_shape``; neuroid coords
``i, j, k``) but not the anatomy, so slices are drawn over the store's mean image (each
voxel's mean response). fsaverage lives in MNI305 space: a store is projected onto it only
when its voxels have MNI coordinates (``space`` names an MNI template, or the caller gives
the affine from the store's scanner space to MNI). A subject's own volume (NSD's
``func1pt8mm``) is never projected silently.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import (
    DataFormatError,
    DimensionError,
    SpaceError,
    TemplateNotAvailableError,
)
from neuroalign.mapping._figures import new_figure, save_figure

__all__ = ["volume_image", "mean_image", "plot_volume_map", "project_to_fsaverage",
           "load_fsaverage_mesh", "FSAVERAGE_MESH_VERTICES"]

log = get_logger(__name__)

#: vertices per hemisphere of FreeSurfer's fsaverage meshes (icosahedron orders 3-7)
FSAVERAGE_MESH_VERTICES = {"fsaverage3": 642, "fsaverage4": 2562, "fsaverage5": 10242,
                           "fsaverage6": 40962, "fsaverage": 163842}
_MESH_FILES = ("pial_left", "pial_right", "white_left", "white_right")


def _check_volumetric(store: xr.Dataset, func: str) -> None:
    for key in ("affine", "volume_shape"):
        if store.attrs.get(key) is None:
            raise DataFormatError(
                f"{func}(): the store has no attribute {key!r} (space "
                f"{store.attrs.get('space')!r}); expected a volumetric store."
            )
    missing = [c for c in ("i", "j", "k") if c not in store.coords]
    if missing:
        raise DataFormatError(f"{func}(): the store lacks neuroid coords {format_list(missing)}.")


def _per_neuroid(values, store: xr.Dataset, name: str, func: str) -> np.ndarray:
    """One float per neuroid of ``store``: DataArrays matched on ``neuroid_id`` (neuroids
    absent from ``values`` are NaN), arrays taken in the store's order."""
    if isinstance(values, xr.DataArray) and "neuroid_id" in values.coords and "neuroid_id" in store.coords:
        if values.dims != ("neuroid",):
            raise DimensionError(
                f"{func}(): {name!r} has dims {values.dims!r}; expected one value per neuroid ('neuroid',)."
            )
        sid = np.asarray(store["neuroid_id"].values).astype(str)
        vid = np.asarray(values["neuroid_id"].values).astype(str)
        unknown = np.setdiff1d(vid, sid)
        if unknown.size:
            raise DimensionError(
                f"{func}(): {name!r} holds {unknown.size} neuroid id(s) that the store lacks: "
                f"{format_list(unknown, limit=5)}. Expected results of this store's neuroids."
            )
        pos = {s: n for n, s in enumerate(vid.tolist())}
        v = np.full(len(sid), np.nan)
        keep = np.array([s in pos for s in sid.tolist()], dtype=bool)
        v[keep] = np.asarray(values.values, dtype=float)[[pos[s] for s in sid[keep].tolist()]]
        return v
    v = np.asarray(values, dtype=float).ravel()
    if v.size != store.sizes["neuroid"]:
        raise DimensionError(
            f"{func}(): {name!r} has {v.size} values; expected one per neuroid "
            f"({store.sizes['neuroid']})."
        )
    return v


def volume_image(values, store: xr.Dataset, *, name: str = "values"):
    """A NIfTI image of per-neuroid ``values`` on the store's grid.

    Parameters
    ----------
    values : xr.DataArray or array-like
        A DataArray on ``neuroid`` matched on ``neuroid_id`` (store neuroids it lacks are
        NaN; ids the store lacks are an error), or an array in the store's order.
    store : xr.Dataset
        Volumetric store (attrs ``affine``, ``volume_shape``; neuroid coords ``i, j, k``).
    name : str
        What ``values`` are, for error messages.

    Returns
    -------
    nibabel.Nifti1Image
        float32 volume with the store's affine; voxels outside the store are NaN.
    """
    import nibabel as nib

    _check_volumetric(store, "volume_image")
    v = _per_neuroid(values, store, name, "volume_image")
    shape = tuple(int(s) for s in store.attrs["volume_shape"])
    vol = np.full(shape, np.nan, dtype=np.float32)
    vol[store["i"].values, store["j"].values, store["k"].values] = v
    return nib.Nifti1Image(vol, np.asarray(store.attrs["affine"], dtype=float))


def mean_image(store: xr.Dataset):
    """The store's mean image: each voxel's mean response over presentations.

    Parameters
    ----------
    store : xr.Dataset
        Volumetric store (see :func:`volume_image`).

    Returns
    -------
    nibabel.Nifti1Image
        The mean over presentations (NaN trials left out) on the store's grid; NaN outside
        the store's voxels. The background of :func:`plot_volume_map`.
    """
    _check_volumetric(store, "mean_image")
    resp = store["responses"]
    other = [d for d in resp.dims if d != "neuroid"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN voxels stay NaN
        mean = np.nanmean(np.asarray(resp.transpose("neuroid", *other).values, dtype=float)
                          .reshape(resp.sizes["neuroid"], -1), axis=1)
    return volume_image(mean, store, name="mean response")


def _range(data: np.ndarray, vmin, vmax) -> tuple[float, float]:
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin is None and vmax is None and lo < 0 < hi:
        lo, hi = -max(-lo, hi), max(-lo, hi)
    return (lo if vmin is None else vmin), (hi if vmax is None else vmax)


def plot_volume_map(
    values,
    store: xr.Dataset,
    *,
    background: Any = "mean",
    display_mode: str = "z",
    cut_coords: int | Sequence[float] | None = 5,
    rois: Sequence[str] | None = None,
    cmap: str = "RdBu_r",
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
    title: str | None = None,
    save: str | Path | None = None,
) -> Any:
    """Per-voxel values (scores, preferred layer depth, ...) as slices through the store's volume.

    Drawn with nilearn's ``plot_stat_map`` on the store's own grid and affine: no
    resampling of values (nearest-neighbour display), voxels outside the store left blank.

    Parameters
    ----------
    values : xr.DataArray or array-like
        One value per neuroid (matched on ``neuroid_id`` when both carry it), e.g.
        ``results["best_score"]`` or ``layer_preference(...)["best_depth_norm"]``.
    store : xr.Dataset
        Volumetric store (attrs ``affine``, ``volume_shape``; coords ``i, j, k``).
    background : "mean", "mask", None, or a NIfTI image / path
        ``"mean"``: the store's :func:`mean_image` (the store holds no anatomy);
        ``"mask"``: the store's voxels; or an image of your own (e.g. the subject's T1,
        resampled by nilearn).
    display_mode : str
        nilearn display mode: ``"x"``, ``"y"``, ``"z"``, ``"ortho"``, ``"mosaic"``, ...
    cut_coords : int or sequence of float
        Number of slices or their positions (mm).
    rois : list of str, optional
        ROI contours (``roi_*`` coords of the store).
    cmap, vmin, vmax, threshold : display options (default range: the data's, symmetric
        around 0 when the data have both signs).
    title : str, optional
        Figure title.
    save : path, optional
        Write the figure (``.png``/``.svg``/``.pdf``).

    Returns
    -------
    matplotlib.figure.Figure
        The slices and one colour bar, whose image limits are ``(vmin, vmax)``. The figure is pyplot-managed: it displays in
        Jupyter; close it with ``plt.close(fig)`` in batch use.
    """
    import nibabel as nib
    from nilearn import plotting

    img = volume_image(values, store)
    data = np.asarray(img.dataobj)
    vmin, vmax = _range(data, vmin, vmax)
    if isinstance(background, str) and background in ("mean", "mask"):
        if background == "mean":
            bg_data = np.asarray(mean_image(store).dataobj)
        else:
            bg_data = np.zeros(data.shape, dtype=np.float32)
            bg_data[store["i"].values, store["j"].values, store["k"].values] = 1.0
        bg = nib.Nifti1Image(np.nan_to_num(bg_data, nan=0.0).astype(np.float32), img.affine)
    elif background is None or isinstance(background, str | Path | nib.spatialimages.SpatialImage):
        bg = background
    else:
        raise ValueError(
            f"Invalid value for 'background' in plot_volume_map(): {background!r}. Expected "
            "'mean', 'mask', None, or a NIfTI image or path."
        )
    # nilearn hides |value| <= threshold: voxels without a value are 0 and hidden with
    # threshold 0; real zeros are nudged off 0 (by 1e-6 of the range) so that they show.
    tiny = np.float32(1e-6 * max(abs(vmin), abs(vmax), 1e-12))
    shown = np.where(np.isfinite(data), np.where(data == 0, tiny, data), 0).astype(np.float32)
    stat = nib.Nifti1Image(shown, img.affine)
    threshold = 0.0 if threshold is None else threshold
    fig = new_figure(figsize=(2.6 * (cut_coords if isinstance(cut_coords, int) else 3) + 1, 2.6))
    display = plotting.plot_stat_map(
        stat, bg_img=bg, display_mode=display_mode,
        cut_coords=cut_coords, figure=fig, colorbar=True, cmap=cmap, vmin=vmin, vmax=vmax,
        threshold=threshold, black_bg=False, draw_cross=False, title=title,
        symmetric_cbar=False, resampling_interpolation="nearest",
    )
    for k, roi in enumerate(rois or []):
        if f"roi_{roi}" not in store.coords:
            raise KeyError(f"plot_volume_map(): unknown ROI {roi!r}; the store has no 'roi_{roi}'.")
        rimg = volume_image(store[f"roi_{roi}"].values.astype(float), store)
        display.add_contours(nib.Nifti1Image(np.nan_to_num(np.asarray(rimg.dataobj)), img.affine),
                             levels=[0.5], colors=[f"C{k % 10}"], linewidths=1.0)
    save_figure(fig, save)
    return fig


def load_fsaverage_mesh(mesh: str = "fsaverage5", *, data_dir: str | Path | None = None) -> dict:
    """fsaverage pial and white surfaces ``{"pial": {"left", "right"}, "white": {...}}``, offline.

    fsaverage5 comes with nilearn. The other meshes (``"fsaverage"`` is order 7, NSD's)
    are read from nilearn's data folder (``$NILEARN_DATA`` or ``~/nilearn_data``, or
    ``data_dir``) where ``nilearn.datasets.fetch_surf_fsaverage(mesh)`` puts them; they are
    never downloaded here.

    Parameters
    ----------
    mesh : str
        ``"fsaverage5"`` or another fsaverage mesh name of nilearn (``"fsaverage"``, ...).
    data_dir : path-like, optional
        nilearn's data folder (default: ``$NILEARN_DATA`` or ``~/nilearn_data``).

    Returns
    -------
    dict
        ``{"pial": {"left": mesh, "right": mesh}, "white": {...}}``, nilearn surface meshes.

    Raises
    ------
    TemplateNotAvailableError
        The mesh files are not on this machine; the message names the files and the folder.
    """
    from nilearn import datasets
    from nilearn.surface import load_surf_mesh

    check_option(mesh, tuple(FSAVERAGE_MESH_VERTICES), name="mesh", func="load_fsaverage_mesh")
    if mesh == "fsaverage5":
        fs = datasets.load_fsaverage("fsaverage5")  # nilearn's package data: no network
        parts = {"pial": fs["pial"].parts, "white": fs["white_matter"].parts}
        where = "nilearn's package data"
    else:
        dirs = [Path(d) / mesh for d in datasets.get_data_dirs(None if data_dir is None else str(data_dir))]
        found = next((d for d in dirs if all((d / f"{f}.gii.gz").is_file() for f in _MESH_FILES)), None)
        if found is None:
            raise TemplateNotAvailableError(
                f"load_fsaverage_mesh(): the {mesh} mesh is not on this machine, and neuroalign does "
                f"not download it. Place {', '.join(f + '.gii.gz' for f in _MESH_FILES)} in "
                f"{dirs[0]} (where nilearn.datasets.fetch_surf_fsaverage({mesh!r}) puts them), or "
                "use mesh='fsaverage5', which comes with nilearn."
            )
        parts = {kind: {h: load_surf_mesh(str(found / f"{kind}_{h}.gii.gz")) for h in ("left", "right")}
                 for kind in ("pial", "white")}
        where = str(found)
    out = {kind: {h: parts[kind][h] for h in ("left", "right")} for kind in ("pial", "white")}
    n = {len(np.asarray(m.coordinates)) for k in out.values() for m in k.values()}
    if n != {FSAVERAGE_MESH_VERTICES[mesh]}:
        raise DataFormatError(
            f"load_fsaverage_mesh(): the {mesh} surfaces in {where} have {format_list(sorted(n))} "
            f"vertices; expected {FSAVERAGE_MESH_VERTICES[mesh]} per hemisphere."
        )
    return out


def _mni_affine(store: xr.Dataset, transform: Any) -> np.ndarray:
    affine = np.asarray(store.attrs["affine"], dtype=float)
    space = str(store.attrs.get("space", ""))
    if transform is None:
        if re.search("mni", space, flags=re.IGNORECASE):
            return affine
        raise SpaceError(
            f"project_to_fsaverage(): the store's space is {space!r}, not an MNI space, so its "
            "voxels have no place on fsaverage. Pass transform=, the 4x4 affine from the store's "
            "scanner coordinates (mm) to MNI (mm), e.g. from FSL flirt or ANTs; or build the "
            "store from images in MNI space and name it in 'space' (e.g. "
            "'MNI152NLin2009cAsym'). For NSD, map the data to MNI with NSD's own "
            "transforms (nsd_mapdata) first."
        )
    t = np.asarray(transform, dtype=float)
    if t.shape != (4, 4) or not np.isfinite(t).all() or not np.allclose(t[3], [0, 0, 0, 1]) \
            or abs(np.linalg.det(t[:3, :3])) < 1e-9:
        raise DataFormatError(
            f"Invalid value for 'transform' in project_to_fsaverage(): {np.asarray(transform).tolist()!r}. "
            "Expected an invertible 4x4 affine (mm to mm) with last row (0, 0, 0, 1)."
        )
    return t @ affine


def project_to_fsaverage(
    values,
    store: xr.Dataset,
    *,
    transform: Any = None,
    mesh: str = "fsaverage5",
    radius: float = 3.0,
    data_dir: str | Path | None = None,
) -> dict[str, np.ndarray]:
    """Project per-voxel values of a volumetric store onto fsaverage (nilearn ``vol_to_surf``).

    Each vertex samples the volume along the line between its white and pial surface
    positions (nilearn's ``"depth"`` sampling, trilinear). Only the store's voxels count:
    the projection of the values and of the store's voxel mask are divided, so a vertex at
    the edge of the store gets the weighted mean of the store voxels it samples (not a
    blend with empty space), and a vertex that samples none is NaN.

    Parameters
    ----------
    values : xr.DataArray or array-like
        One value per neuroid, as for :func:`volume_image`.
    store : xr.Dataset
        Volumetric store. Its voxels must have MNI coordinates: attr ``space`` names an
        MNI template (fsaverage is in MNI305; MNI152 differs by a few mm, the usual
        approximation), or ``transform`` is given.
    transform : array (4, 4), optional
        Affine from the store's scanner coordinates (mm, through its ``affine``) to MNI mm.
    mesh : str
        ``"fsaverage5"`` (comes with nilearn) or another fsaverage mesh present in nilearn's
        data folder (see :func:`load_fsaverage_mesh`).
    radius : float
        nilearn's sampling radius (mm), used where the white surface is not.
    data_dir : path-like, optional
        nilearn's data folder, for meshes other than fsaverage5.

    Returns
    -------
    dict
        ``{"left": (n,), "right": (n,)}`` per-vertex values (n vertices per hemisphere of
        ``mesh``), ready for :func:`neuroalign.mapping.plot_surface_map`.

    Raises
    ------
    SpaceError
        The store is not in an MNI space and no ``transform`` is given.
    TemplateNotAvailableError
        ``mesh`` is not on this machine.
    """
    import nibabel as nib
    from nilearn import surface

    _check_volumetric(store, "project_to_fsaverage")
    affine = _mni_affine(store, transform)
    v = _per_neuroid(values, store, "values", "project_to_fsaverage")
    meshes = load_fsaverage_mesh(mesh, data_dir=data_dir)
    shape = tuple(int(s) for s in store.attrs["volume_shape"])
    ijk = (store["i"].values, store["j"].values, store["k"].values)
    frames = np.zeros((*shape, 2), dtype=np.float64)
    ok = np.isfinite(v)
    frames[ijk[0][ok], ijk[1][ok], ijk[2][ok], 0] = v[ok]
    frames[ijk[0][ok], ijk[1][ok], ijk[2][ok], 1] = 1.0
    img = nib.Nifti1Image(frames, affine)
    out = {}
    for hemi in ("left", "right"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # vertices outside the volume
            tex = surface.vol_to_surf(img, meshes["pial"][hemi], inner_mesh=meshes["white"][hemi],
                                      radius=radius, interpolation="linear")
        weight = tex[:, 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[hemi] = np.where(weight > 1e-6, tex[:, 0] / weight, np.nan)
    return out
