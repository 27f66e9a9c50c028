"""Layer-preference and unit maps, written as figures and tables (``neuroalign map``)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np

from neuroalign._files import atomic_dir
from neuroalign._plotting import closing_new_figures
from neuroalign.exceptions import SpaceError

#: Marker kind of the output folder (replaced only by another map output, with overwrite).
MAP_KIND = "map output"


class FigFormat(StrEnum):
    png = "png"
    svg = "svg"
    pdf = "pdf"


def _open_results(path: Path):
    """Results of the schema (a Dataset: their own selection, ``best_layer``, is kept) or a
    DataArray of per-layer scores (a file holding one scores array), checked and loaded."""
    import xarray as xr

    from neuroalign.mapping._common import as_scores

    if not path.exists():
        raise FileNotFoundError(f"[results] path = {str(path)!r} does not exist (a fit output folder or a results file).")
    from neuroalign.store._io import open_dataset_file

    # results neuroalign wrote are checked against their manifest; other files read as is
    obj = open_dataset_file(path, what="results zarr")
    # results (the schema, checked by as_scores), or a file holding one scores array
    if isinstance(obj, xr.Dataset) and "results_schema" not in obj.attrs and len(obj.data_vars) == 1:
        obj = obj[list(obj.data_vars)[0]]
    as_scores(obj, func="neuroalign map")
    return obj.load()


def _write_csv(df, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=True)
    tmp.replace(path)


def run_map(cfg: dict, out: Path, *, overwrite: bool = False) -> dict:
    """Run a validated ``map`` recipe: map layers (and units) onto cortex, write the figures.

    Writes layer_preference.csv, roi_summary.csv and figures: ROI bars with noise
    ceilings, layer-preference profiles, and maps of the preferred depth and best score
    (fMRI volumes: slices on the store's own grid over its mean image, plus an fsaverage
    projection when the store is in an MNI space; surface stores: fsaverage; MEG/EEG:
    sensor topographies over time). Returns ``{"best_layer_by_roi", "text", "files"}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from neuroalign import mapping as nm
    from neuroalign.mapping import _common
    from neuroalign.recipes import _simulated
    from neuroalign.recipes._inputs import SIMULATED_TRUTH, feature_set, open_store, results_file
    from neuroalign.store import is_trial_level, noise_ceiling

    out = Path(out)
    mcfg = cfg["map"]
    fmt, units, n_permutations = FigFormat(mcfg["format"]), mcfg["units"], mcfg["n_permutations"]
    store, sim = open_store(cfg["store"])
    fspec = cfg.get("features")

    def features_of():
        if fspec.get("model") == SIMULATED_TRUTH and sim is not None:
            return _simulated.simulated_features(sim, store, layers=fspec["layers"])
        return feature_set(fspec, store, out.with_name(out.name + ".features"), overwrite=overwrite)

    features = None
    if cfg.get("results") is not None:
        sweep = _open_results(results_file(Path(cfg["results"]["path"])))
    else:
        features = features_of()
        enc = cfg.get("encoder") or {}
        if fspec.get("model") == SIMULATED_TRUTH and sim is not None:
            sweep = _simulated.simulated_scores(sim, store, features, n_splits=enc.get("cv", 5))
        else:
            from neuroalign.encoders import LayerSweep
            from neuroalign.recipes._fit import _alphas
            from neuroalign.recipes._inputs import cluster_spec

            sweep = LayerSweep(alphas=_alphas(enc.get("alphas")), cv=enc.get("cv", 5)).fit(
                features, store, cluster=cluster_spec(cfg, out)).scores_
    if units and features is None:
        features = features_of()
    rois = cfg["store"].get("rois")
    if rois:
        roi_list = [rois] if isinstance(rois, str) else list(rois)
    elif sim is not None:
        roi_list = list(sim.layer_of_roi())
    else:
        roi_list = None
    written: list[Path] = []
    notes: list[str] = []
    with atomic_dir(out, overwrite=overwrite, kind=MAP_KIND) as tmp, closing_new_figures():
        tmp.mkdir(parents=True)

        def fig_path(stem: str) -> Path:
            p = tmp / f"{stem}.{fmt.value}"
            written.append(p)
            return p

        time_resolved = "time" in sweep.dims
        # the per-layer scores (profiles); the best layer of each neuroid is the results' own
        # choice when they carry it (cv_score within train, their best_layer), see
        # layer_preference
        scores = _common.as_scores(sweep, func="neuroalign map")
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
            window = scores.sel(time=slice(0.0, 0.5)) if float(scores["time"].max()) > 0 else scores
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
            prof_scores = scores
            nc = None
            if is_trial_level(store) and "time" not in store.dims:
                nc = noise_ceiling(store)
            # the results' own best_score (the score of their best_layer); scores alone: the
            # maximum over layers
            best_score = sweep["best_score"] if "best_score" in getattr(sweep, "data_vars", ()) \
                else scores.max("layer")
            r2 = getattr(sweep, "attrs", {}).get("metric") == "r2"  # else Pearson r
            nm.plot_roi_scores(best_score, store=store, rois=roi_list, noise_ceiling=nc,
                               ceiling_as="r2" if r2 else "r",
                               ylabel="prediction accuracy (R²)" if r2 else "prediction accuracy (r)",
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
    best = {}
    if not time_resolved:
        best = {r: str(summary["best_layer"].sel(roi=r).item()) for r in roi_list}
    return {"best_layer_by_roi": best, "text": ["preferred layer per ROI:", *lines, *notes],
            "files": [str(out / p.name) for p in written]}


def map_recipe(path: str | Path, *, scores: str | Path | None = None, store: str | Path | None = None,
               options: dict | None = None, sets=()):
    """The map recipe for what ``neuroalign map PATH`` is given.

    ``PATH`` is a map recipe file; or a fit output folder (its ``results.zarr``, mapped onto
    the store its recipe read, or onto ``store``); or a store or simulation folder with
    ``scores`` (a fit output folder or a results file); or a simulation folder alone (a
    layer sweep of its generating network is fitted first). ``options`` fills the ``[map]``
    table (``format``, ``units``, ``n_permutations``) and ``rois`` the ``[store]`` table.
    """
    import json

    from neuroalign.exceptions import DataFormatError
    from neuroalign.recipes._recipe import load_recipe, recipe_from_dict
    from neuroalign.recipes._registry import RUN_FILE
    from neuroalign.recipes._simulated import SIM_LAYERS

    path = Path(path)
    options = dict(options or {})
    rois = options.pop("rois", None)
    if path.is_file() and path.suffix == ".toml":
        if scores is not None or store is not None:
            raise DataFormatError(f"map {str(path)!r}: a recipe names its own [results] and [store]; "
                                  "use --set results.path=... or --set store.path=....")
        return load_recipe(path, sets=sets, kind="map")
    if not path.exists():
        raise FileNotFoundError(f"map {str(path)!r}: no such recipe, results folder or store.")
    raw: dict = {"kind": "map"}
    run_file = path / RUN_FILE
    if path.is_dir() and (path / "results.zarr").exists() and scores is None:
        if store is None:
            if not run_file.is_file():
                raise DataFormatError(f"map {str(path)!r}: a results folder without {RUN_FILE}; "
                                      "pass --store STORE (the store the results belong to).")
            record = json.loads(run_file.read_text(encoding="utf-8"))
            fit_store = (record.get("config") or {}).get("store") or {}
            raw["store"] = {k: v for k, v in fit_store.items() if k in ("path", "simulate", "rois")}
        else:
            raw["store"] = {"path": str(Path(store).absolute())}
        raw["results"] = {"path": str(path.absolute())}
    else:
        if store is not None:
            raise DataFormatError(f"map {str(path)!r}: --store goes with a results folder as PATH; "
                                  "here PATH is the store.")
        raw["store"] = {"path": str(path.absolute())}
        if scores is not None:
            raw["results"] = {"path": str(Path(scores).absolute())}
        elif (path / "truth.json").exists():
            raw["features"] = {"model": "simulated-truth", "layers": list(SIM_LAYERS)}
        else:
            raise DataFormatError(
                f"map {str(path)!r}: a store without layer scores. Give a fit output folder as "
                "PATH, pass --scores RESULTS (a fit output folder or a results file), or write a "
                "map recipe (docs/recipes.md).")
    if rois:
        raw["store"]["rois"] = rois
    raw["map"] = {k: v for k, v in options.items() if v is not None}
    return recipe_from_dict(raw, source=None, sets=sets)
