"""Layer-preference and unit maps, written as figures and tables (``neuroalign map``)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np

from neuroalign._files import atomic_dir, check_target
from neuroalign.exceptions import SpaceError

#: Marker kind of the output folder (replaced only by another map output, with overwrite).
MAP_KIND = "map output"


class FigFormat(StrEnum):
    png = "png"
    svg = "svg"
    pdf = "pdf"


def _open_scores(path: Path):
    import xarray as xr

    from neuroalign.mapping._common import as_scores

    if not path.exists():
        raise FileNotFoundError(f"--scores {path}: no such file or folder.")
    if path.suffix == ".zarr" or path.is_dir():
        from neuroalign.store import COMPLETE_MARKER, read_zarr

        # results neuroalign wrote are checked against their manifest; other zarrs read as is
        obj = read_zarr(path, what="results zarr") if (path / COMPLETE_MARKER).exists() \
            else xr.open_zarr(path)
    else:
        obj = xr.open_dataset(path)
    if isinstance(obj, xr.Dataset) and "score" not in obj.data_vars and len(obj.data_vars) == 1:
        obj = obj[list(obj.data_vars)[0]]
    return as_scores(obj, func="neuroalign map").load()


def _write_csv(df, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=True)
    tmp.replace(path)


def run_map(source: Path, out: Path = Path("neuroalign-maps"), *, scores: Path | None = None,
            rois: str | None = None, fmt: str = "png", units: bool = False,
            n_permutations: int = 200, overwrite: bool = False, echo=None) -> dict:
    """Map layers (and units) onto cortex and write the figures.

    Writes layer_preference.csv, roi_summary.csv and figures: ROI bars with noise
    ceilings, layer-preference profiles, and maps of the preferred depth and best score
    (fMRI volumes: slices on the store's own grid over its mean image, plus an fsaverage
    projection when the store is in an MNI space; surface stores: fsaverage; MEG/EEG:
    sensor topographies over time). Returns ``{"lines", "notes", "written"}``.
    """
    fmt = FigFormat(fmt)
    source, out = Path(source), Path(out)
    scores = Path(scores) if scores is not None else None
    import matplotlib

    matplotlib.use("Agg")
    from neuroalign import mapping as nm
    from neuroalign.datasets.simulate import SimulationResult
    from neuroalign.mapping import _common
    from neuroalign.recipes import _simulated
    from neuroalign.store import is_trial_level, noise_ceiling, open_store

    sim = None
    check_target(out, overwrite=overwrite, kind=MAP_KIND, inputs=[source, scores])
    if (source / "truth.json").exists():
        sim = SimulationResult.load(source)
        store = sim.store()
    else:
        store = open_store(source)
    features = None
    if units and sim is None:
        raise ValueError("--units needs a simulation as SOURCE (features of its ground-truth network).")
    if scores is not None:
        sweep = _open_scores(scores)
    elif sim is not None:
        if echo is not None:
            echo(f"computing features of the ground-truth network and a ridge layer sweep for {source}")
        features = _simulated.simulated_features(sim, store)
        sweep = _simulated.simulated_scores(sim, store, features)
    else:
        raise ValueError(f"{source} is not a simulation; pass --scores with a LayerSweep result.")
    if rois:
        roi_list = [r.strip() for r in rois.split(",") if r.strip()]
    elif sim is not None:
        roi_list = list(sim.layer_of_roi())
    else:
        roi_list = None
    written: list[Path] = []
    notes: list[str] = []
    with atomic_dir(out, overwrite=overwrite, kind=MAP_KIND) as tmp:
        tmp.mkdir(parents=True)

        def fig_path(stem: str) -> Path:
            p = tmp / f"{stem}.{fmt.value}"
            written.append(p)
            return p

        time_resolved = "time" in sweep.dims
        pref = nm.layer_preference(sweep)
        if "model" in pref.dims:
            pref = pref.isel(model=0)
        masks = _common.roi_masks(sweep, store, roi_list, func="neuroalign map")
        roi_list = list(masks)
        truth = sim.layer_of_roi() if sim is not None else {}
        if time_resolved:
            per_roi = nm.best_layer_over_time(sweep, by="roi", store=store, rois=roi_list)
            df = per_roi.to_dataframe()[["best_layer", "best_score", "best_depth_norm"]]
            _write_csv(df, tmp / "roi_best_layer_over_time.csv")
            latency = (sim.truth.get("latency_of_roi") if sim is not None else None) or {}
            times = sorted(latency.values()) if latency else 6
            nm.plot_topomaps(pref["best_depth_norm"], times=times, cmap="viridis", vmin=0, vmax=1,
                             colorbar_label="preferred depth (0-1)", title="best layer over time",
                             save=fig_path("topomap_best_depth"))
            nm.plot_topomaps(pref["best_score"], times=times, cmap="magma", vmin=0,
                             colorbar_label="best score (r)", save=fig_path("topomap_best_score"))
            window = sweep.sel(time=slice(0.0, 0.5)) if float(sweep["time"].max()) > 0 else sweep
            prof_scores = window.mean("time")
            lines = []
            for roi in roi_list:
                best = per_roi["best_score"].sel(roi=roi)
                t = float(best["time"].values[int(np.nanargmax(best.values))])
                lines.append(f"  {roi:<18} peak {t * 1000:5.0f} ms: "
                             f"{per_roi['best_layer'].sel(roi=roi, time=t).item()}"
                             + (f"  (truth {truth[roi]} at {latency.get(roi, float('nan')) * 1000:.0f} ms)"
                                if roi in truth else ""))
        else:
            prof_scores = sweep
            nc = None
            if is_trial_level(store) and "time" not in store.dims:
                nc = noise_ceiling(store)
            nm.plot_roi_scores(sweep.max("layer"), store=store, rois=roi_list, noise_ceiling=nc,
                               title="best-layer score per ROI", save=fig_path("roi_scores"))
            if "affine" in store.attrs and "i" in store.coords:
                shown = pref["best_depth_norm"].where(pref["best_score"] > 0.1)
                nm.plot_volume_map(shown, store, rois=roi_list, cmap="viridis", vmin=0, vmax=1,
                                   title="preferred depth (score > 0.1)", save=fig_path("volume_best_depth"))
                nm.plot_volume_map(pref["best_score"], store, rois=roi_list, cmap="magma",
                                   title="best-layer score", save=fig_path("volume_best_score"))
                try:
                    surf = nm.project_to_fsaverage(shown, store)
                except SpaceError:
                    notes.append(f"no surface map: the store's space {store.attrs.get('space')!r} "
                                 "is not MNI (project_to_fsaverage needs a transform to MNI)")
                else:
                    hemis = [h for h in ("left", "right") if np.isfinite(surf[h]).any()]
                    if hemis:
                        nm.plot_surface_map(surf, hemispheres=hemis, cmap="viridis", vmin=0, vmax=1,
                                            colorbar_label="preferred depth",
                                            title="preferred depth, projected from the MNI volume",
                                            save=fig_path("surface_best_depth"))
                    else:
                        notes.append("no surface map: no voxel with a preferred depth reaches "
                                     "the fsaverage cortex")
            summary = nm.summarize_by_roi(pref, store, roi_list)
            if "vertex" in store.coords and "hemisphere" in store.coords:
                vals = pref["best_depth_norm"]
                if "neuroid_id" in vals.coords:
                    where = {v: n for n, v in enumerate(store["neuroid_id"].values)}
                    pos = np.array([where[v] for v in vals["neuroid_id"].values], dtype=int)
                else:
                    pos = np.arange(store.sizes["neuroid"])
                vals = vals.assign_coords(vertex=("neuroid", store["vertex"].values[pos]),
                                          hemisphere=("neuroid", store["hemisphere"].values[pos]))
                nm.plot_surface_map(vals, rois=nm.surface_rois(store, roi_list),
                                    cmap="viridis", vmin=0, vmax=1, colorbar_label="preferred depth",
                                    save=fig_path("surface_best_depth"))
            _write_csv(summary.to_dataframe(), tmp / "roi_summary.csv")
            lines = [f"  {r:<18} {summary['best_layer'].sel(roi=r).item():<10}"
                     f" ({100 * summary['best_layer_fraction'].sel(roi=r).item():.0f} % of voxels)"
                     + (f"  truth {truth[r]}" if r in truth else "") for r in roi_list]
        nm.plot_layer_profile(prof_scores, store=store, rois=roi_list, save=fig_path("layer_profile"))
        nm.plot_layer_profile(prof_scores, store=store, rois=roi_list, relative=True,
                              save=fig_path("layer_profile_relative"))
        table = pref.drop_vars([c for c in pref.coords if str(c).startswith("roi_")])
        _write_csv(table.to_dataframe(), tmp / "layer_preference.csv")
        if units:
            if features is None:
                features = _simulated.simulated_features(sim, store)
            rows = []
            for layer in features.data_vars:
                tab = nm.unit_to_roi(features, store, layer=str(layer), rois=roi_list, method="encoding",
                                     n_permutations=n_permutations,
                                     time=slice(0.0, 0.5) if time_resolved else None)
                rows.append(nm.aligned_units([tab], alpha=0.05, top=5).to_dataframe())
            import pandas as pd

            _write_csv(pd.concat(rows, ignore_index=True), tmp / "units_to_roi.csv")
            written.append(tmp / "units_to_roi.csv")
    return {"lines": lines, "notes": notes, "written": [out / p.name for p in written]}
