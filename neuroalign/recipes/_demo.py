"""The end-to-end demo on the simulated brain: every stage checked against the truth."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign.recipes._html import Report

__all__ = ["DemoConfig", "run_demo", "CANDIDATES", "DEMO_KIND"]

#: Marker kind of the demo's working folder (reused across runs, never replaced).
DEMO_KIND = "demo folder"

#: Candidate networks: the generating one, the same architecture with another seed, and a
#: different architecture. ``name -> (spec, seed, layers)``.
CANDIDATES: dict[str, tuple[str, int, list[str]]] = {
    "resnet18-seed0": ("torchvision:resnet18", 0, ["layer1", "layer2", "layer3", "layer4"]),
    "resnet18-seed1": ("torchvision:resnet18", 1, ["layer1", "layer2", "layer3", "layer4"]),
    "alexnet-seed0": ("torchvision:alexnet", 0, ["features.2", "features.5", "features.9", "features.12"]),
}
TRUE_MODEL = "resnet18-seed0"


@dataclass
class DemoConfig:
    out: Path
    quick: bool = False
    seed: int = 0
    echo: Callable[[str], None] = print
    state: dict[str, Any] = field(default_factory=dict)


def _stage(cfg: DemoConfig, title: str) -> float:
    cfg.echo(f"\n== {title}")
    return time.perf_counter()


def _done(cfg: DemoConfig, t0: float) -> None:
    cfg.echo(f"({time.perf_counter() - t0:.1f} s)")


def stage_simulate(cfg: DemoConfig, report: Report) -> None:
    from neuroalign.datasets.simulate import SimulationResult, simulate

    t0 = _stage(cfg, "1. simulate a brain with a known answer (NSD format)")
    root = cfg.out / ("sim-nsd-quick" if cfg.quick else "sim-nsd")
    if (root / "truth.json").exists():
        sim = SimulationResult.load(root)
        cfg.echo(f"reusing {root}")
    else:
        kw = dict(n_images=160, n_test=32, n_sessions=4) if cfg.quick else {}
        sim = simulate(root, seed=cfg.seed, **kw)
    cfg.echo(sim.summary())
    report.section("1. Simulated brain", "Procedural images pass through a seeded ResNet-18; each "
                   "ROI's voxels read out one layer, plus trial noise at a chosen ncsnr. The data "
                   "are written as NSD files.").code(sim.summary())
    cfg.state["sim"] = sim
    _done(cfg, t0)


def stage_ingest(cfg: DemoConfig, report: Report) -> None:
    from neuroalign.datasets import ingest_nsd
    from neuroalign.store import open_store, summary

    t0 = _stage(cfg, "2. ingest through the real NSD adapter")
    sim = cfg.state["sim"]
    path = cfg.out / ("store-quick.zarr" if cfg.quick else "store.zarr")
    if not path.exists():
        ingest_nsd(sim.root, 1, path)
    store = open_store(path).load()
    truth = sim.store().load()
    same = bool(
        np.array_equal(store.responses.values, truth.responses.values)
        and np.array_equal(store.stimulus_id.values, truth.stimulus_id.values)
        and np.array_equal(store.neuroid_id.values, truth.neuroid_id.values)
    )
    cfg.echo(summary(store))
    cfg.echo(f"adapter output equals the simulated betas: {same}")
    report.section("2. Store (ingested with load_nsd)").code(summary(store))
    report.check("NSD adapter returns the simulated betas exactly", "equal", "equal" if same else "different", same)
    cfg.state["store"], cfg.state["store_path"] = store, path
    _done(cfg, t0)


def stage_reliability(cfg: DemoConfig, report: Report) -> None:
    import matplotlib.pyplot as plt

    from neuroalign.store import ncsnr, noise_ceiling

    t0 = _stage(cfg, "3. reliability: estimated vs true ncsnr and noise ceiling")
    sim, store = cfg.state["sim"], cfg.state["store"]
    est = ncsnr(store).values
    true = sim.true_ncsnr().values
    driven = true > 0
    r = float(np.corrcoef(est[driven], true[driven])[0, 1])
    nc_est = noise_ceiling(store).values
    nc_true = sim.true_noise_ceiling().values
    err = float(np.median(np.abs(nc_est[driven] - nc_true[driven])))
    cfg.echo(f"ncsnr: r(estimated, true) = {r:.3f} over {int(driven.sum())} driven voxels")
    cfg.echo(f"noise ceiling: median |estimated - true| = {err:.2f} percentage points "
             f"(median true {np.median(nc_true[driven]):.1f} %)")
    report.check("ncsnr: r(estimated, true) > 0.9", "1.0", f"{r:.3f}", r > 0.9)
    report.check("noise ceiling: median |error| < 5 points", f"median {np.median(nc_true[driven]):.1f} %",
                 f"error {err:.2f}", err < 5)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    axes[0].scatter(true[driven], est[driven], s=8)
    axes[0].plot([0, true.max()], [0, true.max()], "k--", lw=1)
    axes[0].set(xlabel="true ncsnr", ylabel="estimated ncsnr", title="ncsnr")
    axes[1].scatter(nc_true[driven], nc_est[driven], s=8, color="C1")
    axes[1].plot([0, 100], [0, 100], "k--", lw=1)
    axes[1].set(xlabel="true noise ceiling (%)", ylabel="estimated (%)", title="noise ceiling")
    report.section("3. Reliability").figure(fig, caption="Estimated vs true, driven voxels")
    cfg.state["noise_ceiling"] = nc_est
    _done(cfg, t0)


def stage_features(cfg: DemoConfig, report: Report) -> None:
    from neuroalign.features import extract
    from neuroalign.stimuli import StimulusSet

    t0 = _stage(cfg, "4. features of three candidate networks")
    store = cfg.state["store"]
    stim = StimulusSet.from_store(store)
    feats = {}
    rows = []
    for name, (spec, seed, layers) in CANDIDATES.items():
        cache = cfg.out / "features" / f"{name}{'-quick' if cfg.quick else ''}.zarr"
        feats[name] = extract(spec, stim, layers=layers, weights=None, seed=seed,
                              transform="simulation", cache=cache, batch_size=32)[layers]  # network order
        dims = {k: v.shape[1] for k, v in feats[name].data_vars.items()}
        cfg.echo(f"{name}: {len(stim)} stimuli, units per layer {dims}")
        rows.append({"model": name, "spec": spec, "seed": seed, "layers": ", ".join(layers),
                     "units": ", ".join(str(v) for v in dims.values())})
    report.section("4. Candidate networks", "The generating architecture with its seed, the same "
                   "architecture with another seed, and a different architecture; all with "
                   "random weights, features cached to zarr.").table(rows)
    cfg.state["features"] = feats
    _done(cfg, t0)


def stage_layer_sweep(cfg: DemoConfig, report: Report) -> None:
    import matplotlib.pyplot as plt

    from neuroalign.encoders import LayerSweep
    from neuroalign.store import ncsnr, noise_ceiling

    t0 = _stage(cfg, "5. ridge layer sweep: which layer drives each ROI?")
    sim, store, feats = cfg.state["sim"], cfg.state["store"], cfg.state["features"]
    # cross-validated over all stimuli (folds grouped by stimulus), single-trial R²
    sweep = LayerSweep(cv=5, device="cpu").fit(feats, store)
    scores = sweep.scores_
    layers = list(scores["layer"].values)
    truth = _layer_rois(sim)
    single_trial_nc = noise_ceiling(ncsnr(store), 1).values / 100.0
    rows = []
    fig, axes = plt.subplots(1, len(truth), figsize=(4 * len(truth), 3.6), sharey=True)
    for ax, (roi, true_layer) in zip(np.atleast_1d(axes), truth.items(), strict=True):
        mask = store[f"roi_{roi}"].values
        med = np.median(scores.values[:, mask], axis=1)
        best = layers[int(np.argmax(med))]
        expected = f"{TRUE_MODEL}/{true_layer}"
        r2 = scores.values[layers.index(expected), mask]
        ceiling = np.clip(single_trial_nc[mask], 1e-6, None)
        normed = float(np.median(r2 / ceiling))
        others = [i for i, n in enumerate(layers) if not n.startswith(TRUE_MODEL + "/")]
        other_best = float(max(np.median(scores.values[i, mask] / ceiling) for i in others))
        rows.append({"ROI": roi, "true layer": expected, "recovered": best,
                     "median CV R² (true layer)": round(float(np.median(r2)), 3),
                     "R² / noise ceiling": round(normed, 3),
                     "best other network": round(other_best, 3)})
        report.check(f"layer sweep recovers the layer of {roi}", expected, best, best == expected)
        ax.bar(range(len(layers)), med, color=["C3" if n == expected else "C0" for n in layers])
        ax.set_xticks(range(len(layers)), layers, rotation=90, fontsize=7)
        ax.set_title(f"{roi} (true: {true_layer})")
    np.atleast_1d(axes)[0].set_ylabel("median cross-validated R²")
    for row in rows:
        cfg.echo(f"  {row['ROI']:<6} true {row['true layer']:<24} recovered {row['recovered']:<24} "
                 f"R²/NC {row['R² / noise ceiling']}")
    norm = float(np.median([r["R² / noise ceiling"] for r in rows]))
    beats = all(r["R² / noise ceiling"] > r["best other network"] for r in rows)
    report.check("ceiling-normalised R² of the true layers (> 0.7, and above every other network)",
                 "1.0", f"{norm:.3f}", norm > 0.7 and beats)
    report.section("5. Ridge layer sweep", "Per-voxel ridge with its own alpha, cross-validated "
                   "over all stimuli with 5 folds that keep every repetition of a stimulus in one "
                   "fold. Scores are single-trial R², normalised by the single-trial noise "
                   "ceiling (n = 1). Red: the true layer.")
    report.table(rows).figure(fig, caption="Median cross-validated R² per layer, by ROI")
    cfg.state["sweep"] = sweep
    _layer_map(cfg, report, sweep, store, truth)
    _done(cfg, t0)


def _layer_rois(sim) -> dict[str, str]:
    """ROIs that read out one plain layer (not the routing ROI's ``layer@target``)."""
    return {roi: layer for roi, layer in sim.layer_of_roi().items() if "@" not in layer}


def _layer_map(cfg: DemoConfig, report: Report, sweep, store, truth: dict[str, str]) -> None:
    """Per-voxel layer preference of the generating network: slices, and per ROI a schematic surface."""
    from neuroalign import mapping as nm
    from neuroalign.recipes._demo_schematic import schematic_surface

    pref = nm.layer_preference(sweep.to_dataset())  # mapping reads results, not estimators
    if "model" in pref.dims:
        pref = pref.sel(model=TRUE_MODEL)
    rois = list(truth)
    summary = nm.summarize_by_roi(pref, store, rois)
    rows = []
    for roi in rois:
        mode = str(summary["best_layer"].sel(roi=roi).item()).split("/")[-1]
        frac = float(summary["best_layer_fraction"].sel(roi=roi))
        depth = float(summary["best_depth_norm"].sel(roi=roi))
        rows.append({"ROI": roi, "true layer": truth[roi], "most preferred layer": mode,
                     "share of voxels": round(frac, 2), "mean preferred depth (0-1)": round(depth, 2)})
        cfg.echo(f"  {roi:<6} voxels prefer {mode} ({100 * frac:.0f} %), true {truth[roi]}")
    ok = all(r["most preferred layer"] == r["true layer"] for r in rows)
    report.check("voxel-wise layer preference: each ROI's most common preferred layer is its true layer",
                 ", ".join(truth.values()), ", ".join(r["most preferred layer"] for r in rows), ok)
    depth_label = "preferred depth (0 = layer1, 1 = layer4)"
    slices = nm.plot_volume_map(pref["best_depth_norm"], store, rois=rois, cmap="viridis",
                                vmin=0, vmax=1, title="preferred depth per voxel")
    data, masks = schematic_surface({r: float(summary["best_depth_norm"].sel(roi=r)) for r in rois})
    fig = nm.plot_surface_map(
        data, rois=masks, views=("lateral", "ventral"),
        cmap="viridis", vmin=0, vmax=1, colorbar_label=depth_label,
        title="layer preference of the generating network (schematic ROI patches)")
    report.text("Layer preference per voxel (the best layer of the generating network), "
                "drawn on the store's own grid over its mean image, and summarised per ROI. "
                "The simulated brain is a volume with no registration to fsaverage, so the "
                "surface picture is a schematic: one patch per ROI at its typical fsaverage "
                "location. Stores in an MNI space are projected for real "
                "(neuroalign.mapping.project_to_fsaverage); surface stores (NSD fsaverage) get "
                "a value at every vertex.")
    report.table(rows).figure(slices, caption="Preferred depth per voxel (slices, ROI outlines)")
    report.figure(fig, caption="Schematic: mean preferred depth per ROI as patches on fsaverage5")


def _standardise(a):
    """Every channel / voxel z-scored across stimuli (constant channels left at 0)."""
    sd = a.std("stimulus")
    return (a - a.mean("stimulus")) / sd.where(sd > 0, 1.0)


def stage_rsa(cfg: DemoConfig, report: Report) -> None:
    from neuroalign.compare import data_rdms, plot_model_scores, pseudo_subjects, rdm, rsa

    t0 = _stage(cfg, "6. RSA: every model layer against every ROI, with noise ceilings")
    sim, store, feats = cfg.state["sim"], cfg.state["store"], cfg.state["features"]
    models = {f"{model}/{layer}": rdm(_standardise(ds[layer]), "sqeuclidean")
              for model, ds in feats.items() for layer in ds.data_vars}
    rows, figs = [], []
    for roi, true_layer in _layer_rois(sim).items():
        # 4 pseudo-subjects: disjoint random sets of the ROI's voxels, as different brains
        # sample different voxels of one area; each gives a repetition-averaged data RDM
        data = data_rdms(pseudo_subjects(store.na.roi(roi), 4, seed=cfg.seed), "sqeuclidean")
        res = rsa(models, data, method="pearson", bootstrap="none")
        score = res.score.to_series().sort_values(ascending=False)
        expected = f"{TRUE_MODEL}/{true_layer}"
        rank = list(score.index).index(expected) + 1
        ranked_models = list(dict.fromkeys(n.split("/")[0] for n in score.index))
        lo, hi = float(res.noise_ceiling_lower), float(res.noise_ceiling_upper)
        other = float(score[[n for n in score.index if not n.startswith(TRUE_MODEL + "/")]].max())
        rows.append({"ROI": roi, "true layer": expected, "best": score.index[0],
                     "rank of true layer": rank, "r (true layer)": round(float(score[expected]), 3),
                     "best other network": round(other, 3), "noise ceiling": f"[{lo:.3f}, {hi:.3f}]"})
        report.check(f"RSA ranks the true model first for {roi}", TRUE_MODEL, ranked_models[0],
                     ranked_models[0] == TRUE_MODEL)
        report.check(f"RSA noise ceiling of {roi} brackets the true layer's score",
                     f"[{lo:.3f}, {hi:.3f}]", f"{score[expected]:.3f}", lo <= score[expected] <= hi)
        cfg.echo(f"  {roi:<6} best {score.index[0]:<24} rank of true layer {rank}; "
                 f"r {score[expected]:.3f} in noise ceiling [{lo:.3f}, {hi:.3f}]; best other network {other:.3f}")
        figs.append(plot_model_scores(res, title=f"{roi} (true: {expected})"))
    report.section("6. RSA", "Squared-Euclidean RDMs of every model layer (units z-scored across "
                   "stimuli) and of each ROI, compared with Pearson's r. The simulated voxels are "
                   "random linear read-outs of z-scored channels, so their expected squared "
                   "distances are those of the z-scored layer: this pairing is the one the "
                   "generating process makes exact. The noise ceiling comes from 4 pseudo-subjects "
                   "(disjoint random sets of the ROI's voxels): lower bound leave-one-subject-out, "
                   "upper bound against the mean of all. RSA separates networks sharply; "
                   "adjacent stages of one ResNet share much of their geometry through the skip "
                   "connections, so the true layer is usually, not always, ranked first (the "
                   "encoding sweep above is the layer-specific test).").table(rows)
    for fig in figs:
        report.figure(fig)
    _done(cfg, t0)


def stage_shape(cfg: DemoConfig, report: Report) -> None:
    from neuroalign.compare import distance_matrix, plot_mds

    t0 = _stage(cfg, "7. shape metrics: distances among models, layers and ROIs")
    sim, store, feats = cfg.state["sim"], cfg.state["store"], cfg.state["features"]
    avg = store.na.average_repetitions()
    systems = {}
    for model, ds in feats.items():
        for layer in ds.data_vars:
            systems[f"{model}/{layer}"] = _standardise(ds[layer])
    truth = _layer_rois(sim)
    for roi in truth:
        systems[roi] = _standardise(avg.na.roi(roi).responses)
    dist = distance_matrix(systems, "procrustes", show_progress=False)
    model_names = [n for n in systems if "/" in n]
    rows = []
    for roi, layer in truth.items():
        d = dist.sel(system_i=roi, system_j=model_names).values
        nearest = model_names[int(np.argmin(d))]
        expected = f"{TRUE_MODEL}/{layer}"
        rows.append({"ROI": roi, "true layer": expected, "nearest system": nearest,
                     "distance to true layer": round(float(dist.sel(system_i=roi, system_j=expected)), 3),
                     "nearest other network": round(float(min(
                         dist.sel(system_i=roi, system_j=n) for n in model_names
                         if not n.startswith(TRUE_MODEL + "/"))), 3)})
        cfg.echo(f"  {roi:<6} nearest {nearest:<24} (true {expected})")
    ok = all(r["nearest system"] == r["true layer"] for r in rows)
    report.check("shape metric: every ROI's nearest model system is its true layer",
                 ", ".join(r["true layer"] for r in rows), ", ".join(r["nearest system"] for r in rows), ok)
    fig = plot_mds(dist, title="Procrustes (angular) distances, classical MDS")
    report.section("7. Shape metrics", "Generalised shape metric (alpha = 1: Procrustes, angular) "
                   f"among all {len(systems)} systems: every layer of every network and every ROI "
                   "(z-scored, repetition-averaged). Each system is whitened once; all pairs then "
                   "need one small SVD each.").table(rows).figure(fig, caption="MDS of the distance matrix")
    cfg.state["shape_distances"] = dist
    _done(cfg, t0)


def _late_stages():
    from neuroalign.recipes._demo_brain import stage_decode, stage_guided, stage_routing

    return [stage_routing, stage_decode, stage_guided]


STAGES = [stage_simulate, stage_ingest, stage_reliability, stage_features, stage_layer_sweep, stage_rsa,
          stage_shape]


def run_demo(cfg: DemoConfig) -> Report:
    """Run every stage; return the report (also saved as ``out/report.html``).

    ``cfg.out`` is a working folder that reruns reuse (:func:`neuroalign._files.claim_dir`):
    missing, empty, or an earlier demo's folder; a folder of the user's files raises
    :class:`~neuroalign.exceptions.OutputExistsError` before anything is written. One demo
    at a time per folder (a second gets :class:`~neuroalign.exceptions.TargetLockedError`).
    """
    from neuroalign._files import claim_dir, target_lock

    with target_lock(cfg.out, what=DEMO_KIND):
        claim_dir(cfg.out, kind=DEMO_KIND)
        report = Report("neuroalign demo: the simulated brain, truth vs recovered",
                        figure_dir=cfg.out / "figures")
        start = time.perf_counter()
        for stage in STAGES + _late_stages():
            stage(cfg, report)
        cfg.echo("\n== truth vs recovered")
        for c in report.checks:
            cfg.echo(f"  [{c.label}] {c.name}: truth {c.truth}, recovered {c.recovered}")
        report.section("Run", f"Total time {time.perf_counter() - start:.0f} s "
                       f"({'quick' if cfg.quick else 'full'} demo).")
        (cfg.out / "checks.json").write_text(json.dumps(
            [{"check": c.name, "truth": str(c.truth), "recovered": str(c.recovered), "result": c.label}
             for c in report.checks], indent=2))
        path = report.save(cfg.out / "report.html")
    cfg.echo(f"\nreport: {path}")
    return report
