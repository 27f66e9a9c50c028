"""Demo stages 8-10: attention routing, decoding held-out stimuli, brain-guided images.

Split from :mod:`neuroalign.recipes._demo` (stages 1-7); same conventions: each stage prints
progress, adds a report section, and checks itself against the simulation's truth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from neuroalign.recipes._demo import DemoConfig
    from neuroalign.recipes._html import Report

__all__ = ["stage_routing", "stage_decode", "stage_guided", "GUIDED_ROIS"]

#: ROIs the guided-generation stage drives (one high-level, one mid-level).
GUIDED_ROIS = ("FFA-1", "PPA")


def _routing_sim(cfg: DemoConfig):
    """A second simulated brain whose ROI ``EBA`` reads ``layer3`` at a target's random position."""
    from neuroalign.datasets.simulate import SimulationResult, simulate
    from neuroalign.datasets.simulate._nsd import DEFAULT_ROIS

    root = cfg.out / "sim-routing"
    if (root / "truth.json").exists():
        return SimulationResult.load(root)
    # the routing ROI needs enough images per target position (7 x 7 grid): 360 in both modes;
    # one ordinary ROI keeps the tree a valid NSD tree while staying small
    return simulate(root, seed=cfg.seed, routing_roi=True, n_images=360, n_test=60,
                    rois=DEFAULT_ROIS[:1])


def stage_routing(cfg: DemoConfig, report: Report) -> None:
    import matplotlib.pyplot as plt
    import xarray as xr

    from neuroalign.decoders import store_images
    from neuroalign.encoders import AttentionRoutingEncoder, RidgeEncoder
    from neuroalign.recipes._demo import _done, _stage
    from neuroalign.recipes._truth_features import simulated_truth_tokens
    from neuroalign.store import index_stimuli

    t0 = _stage(cfg, "8. attention routing vs ridge on the routing ROI (EBA)")
    sim = _routing_sim(cfg)
    store = sim.store().load()
    grid = int(sim.truth["routing"]["grid"])
    eba = store.na.roi("EBA")
    tokens = simulated_truth_tokens(store, "layer3", grid=grid)
    train = eba.na.split("train").na.average_repetitions()
    test = eba.na.split("test").na.average_repetitions()
    # the token features cover every stimulus; fit and score join them to each split by id
    enc = AttentionRoutingEncoder(rois=["EBA"], device="cpu").fit(tokens, train)
    r_attn = enc.score(tokens, test)
    tte = index_stimuli(tokens).sel(stimulus_id=test.stimulus_id.values)

    def flat(t):
        a = t["layer3"]
        return xr.DataArray(a.values.reshape(len(a), -1), dims=("stimulus", "feature"),
                            coords={"stimulus_id": ("stimulus", a.stimulus_id.values)})

    r_ridge = RidgeEncoder(device="cpu").fit(flat(tokens), train).score(flat(tokens), test)
    med_attn, med_ridge = float(r_attn.median()), float(r_ridge.median())
    maps = enc.routing_maps(tte).sel(roi="EBA")
    cells = np.asarray(sim.truth["routing"]["target_cell_by_nsd_id"])
    nsd_of = dict(zip(store.stimulus_id.values.tolist(), store.nsd_id.values.tolist(), strict=True))
    true_cell = cells[[nsd_of[s] for s in tte.stimulus_id.values]]
    hit = float((maps.values.argmax(-1) == true_cell).mean())
    cfg.echo(f"  median test r: attention routing {med_attn:.3f}, ridge on all tokens {med_ridge:.3f}")
    cfg.echo(f"  routing map peaks on the target's cell in {100 * hit:.0f} % of test images "
             f"(chance {100 / grid ** 2:.0f} %)")
    report.check("attention routing beats ridge on the routing ROI (median test r, margin 0.1)",
                 "routing > ridge", f"{med_attn:.3f} vs {med_ridge:.3f}", med_attn > med_ridge + 0.1)
    report.check("routing maps peak on the true target cell (in > 10x the chance share of test images)",
                 f"chance {1 / grid ** 2:.2f}", f"{hit:.2f}", hit > 10 / grid ** 2)
    test_avg = store.na.split("test").na.average_repetitions()
    order = {s: i for i, s in enumerate(test_avg.stimulus_id.values)}
    images = store_images(test_avg)
    fig, axes = plt.subplots(2, 5, figsize=(11, 4.6))
    for k in range(5):
        sid = tte.stimulus_id.values[k]
        axes[0, k].imshow(images[order[sid]])
        axes[0, k].set_title(f"target cell {true_cell[k]}", fontsize=8)
        axes[1, k].imshow(maps.values[k].reshape(grid, grid), cmap="magma")
        axes[1, k].set_title(f"map peak {int(maps.values[k].argmax())}", fontsize=8)
        for ax in axes[:, k]:
            ax.set_axis_off()
    report.section("8. Attention routing", "A second simulated brain: every image holds a target "
                   f"object at a random cell of a {grid}x{grid} grid, and ROI EBA reads layer-3 "
                   "features at the target's position only. Ridge must weight every position; the "
                   "attention-routing encoder learns a query that finds the target, then reads it "
                   "out. Both use the same layer-3 tokens; scores are Pearson r on held-out images.")
    report.table([{"encoder": "attention routing", "median test r": round(med_attn, 3)},
                  {"encoder": "ridge (all tokens)", "median test r": round(med_ridge, 3)}])
    report.figure(fig, caption="Held-out images (top) and the encoder's routing maps (bottom)")
    _done(cfg, t0)


def _pipeline(cfg: DemoConfig):
    from neuroalign.decoders import tiny_pipeline

    kw = dict(n_images=64, steps=30) if cfg.quick else dict(n_images=300, steps=300)
    name = f"tiny-{kw['n_images']}x{kw['steps']}"
    path = cfg.out / "pipelines" / name
    if "pipeline" not in cfg.state:
        cfg.echo(f"  diffusion pipeline: the project's tiny 32 px model ({path}; trained on first "
                 "use, then cached)")
        cfg.state["pipeline"] = tiny_pipeline(path, seed=0, **kw)
    return cfg.state["pipeline"], path


def stage_decode(cfg: DemoConfig, report: Report) -> None:
    import matplotlib.pyplot as plt
    from PIL import Image

    from neuroalign.recipes._decode import run_decode
    from neuroalign.recipes._demo import _done, _stage

    t0 = _stage(cfg, "9. decode held-out stimuli: retrieval and reconstructions")
    _, pipe_path = _pipeline(cfg)
    from neuroalign.recipes._recipe import recipe_from_dict

    recipe = {
        "kind": "decode",
        "store": {"path": str(cfg.state["store_path"])},
        "pipeline": {"source": "tiny", "path": str(pipe_path)},
        "decoder": {"kind": "ridge"},
        "lowlevel": {"size": 8},
        "reconstruct": {"mode": "img2img", "strength": 0.5, "num_inference_steps": 20,
                        "guidance_scale": 2.0, "n_samples": 2 if cfg.quick else 4},
        "metrics": {"preset": "simulated", "networks": ["alexnet2", "alexnet5"], "weights": "none"},
    }
    out = cfg.out / ("decode-quick" if cfg.quick else "decode")
    # the demo folder's own output
    table = run_decode(recipe_from_dict(recipe, source="demo").config, out, overwrite=True)
    chance = table["retrieval chance"]
    cfg.echo(f"  retrieval (test brain -> its image's embedding): {table['retrieval forward']:.3f} "
             f"(chance {chance:.3f})")
    metrics = [k for k in ("PixCorr", "SSIM", "alexnet2 2-way", "alexnet5 2-way") if k in table]
    base = "low-level input"
    for k in metrics:
        cfg.echo(f"  {k:<15} reconstructions {table[k]:.3f}, {base} {table[f'{k} {base}']:.3f}, "
                 f"chance {table[f'{k} chance']:.3f} (p above chance {table[f'{k} p above chance']:.2g})")
    cfg.echo(f"  reconstructions: {table['verdict']}")
    alpha = 0.05  # one-sided paired tests over the test images (check_reconstructions)
    at_chance = [k for k in metrics if not table[f"{k} p above chance"] < alpha]
    improves = all(table[f"{k} p better than {base}"] < alpha for k in metrics)
    worse = [k for k in metrics if table[f"{k} p worse than {base}"] < alpha]
    report.check("held-out retrieval above 3x chance", f"chance {chance:.3f}",
                 f"{table['retrieval forward']:.3f}", table["retrieval forward"] > 3 * chance)
    report.check("reconstructions: 2-way identification above chance (paired over test images, "
                 "p < 0.05)", "chance 0.5",
                 "; ".join(f"{k} {table[k]:.3f}" for k in metrics if k.endswith("2-way")),
                 not any(k.endswith("2-way") for k in at_chance))
    # PixCorr and SSIM, and the refinement itself, are judged against the low-level input it
    # started from: with the tiny offline pipeline the diffusion step makes that input worse,
    # and the report says so (NOT SHOWN, with the reason) instead of passing it
    pix = [k for k in metrics if not k.endswith("2-way")]
    report.check("reconstructions: PixCorr and SSIM above chance (mismatched pairs; paired over "
                 "test images, p < 0.05)", "; ".join(f"{k} {table[f'{k} chance']:.3f}" for k in pix),
                 "; ".join(f"{k} {table[k]:.3f}" for k in pix) + (
                     f" (at chance: {', '.join(k for k in pix if k in at_chance)})"
                     if set(pix) & set(at_chance) else ""),
                 True if not set(pix) & set(at_chance) else (None if worse else False))
    report.check("the diffusion refinement improves on its low-level input (every metric)",
                 "; ".join(f"{k} {table[f'{k} {base}']:.3f}" for k in metrics),
                 "; ".join(f"{k} {table[k]:.3f}" for k in metrics) + (
                     f" (worse on {len(worse)}/{len(metrics)})" if worse else ""),
                 True if improves else None)
    rows = [{"metric": k, "reconstructions": round(table[k], 4),
             base: round(table[f"{k} {base}"], 4), "chance": round(table[f"{k} chance"], 4)}
            for k in metrics]
    retrieval = [{"retrieval (top-1 among the test images)": f"{k} ({what})",
                  "score": round(table[f"retrieval {k}"], 4), "chance": round(chance, 4)}
                 for k, what in (("forward", "brain -> image"), ("backward", "image -> brain"))]
    fig, ax = plt.subplots(figsize=(11, 1.8))
    ax.imshow(np.asarray(Image.open(out / "grid.png")))
    ax.set_axis_off()
    report.section("9. Decoding", "Ridge from held-out brain responses to the image embedding of "
                   "the diffusion model's own image encoder (retrieval among the test images), and "
                   "Brain-Diffuser-style reconstructions: a predicted 8x8 low-level image refined "
                   "by img2img, conditioned on the predicted embedding. The pipeline is the "
                   "project's tiny 32 px model trained on the simulation's image families, so "
                   "reconstructions are judged by the field's metrics, not by looks: against "
                   "chance (2-way 0.5; PixCorr and SSIM of each reconstruction against the wrong "
                   "images) and against the low-level input the diffusion step started from. The "
                   "same run as `neuroalign decode examples/recipes/decode-img2img.toml`.")
    report.text(f"Verdict: the reconstructions are {table['verdict']}" + (
        "" if improves else " This offline pipeline, trained for seconds on procedural images, "
        "shows the plumbing only: the decoded information is carried by the low-level "
        "prediction, and the diffusion step does not add to it. A trained or pretrained "
        "pipeline (examples/recipes/decode-nsd-unclip.toml) is what can show that it does.")).table(rows)
    report.table(retrieval)
    report.figure(fig, caption="Held-out images (top) and reconstructions from the brain (bottom)")
    _done(cfg, t0)


def stage_guided(cfg: DemoConfig, report: Report) -> None:
    import matplotlib.pyplot as plt
    import scipy.stats
    from PIL import Image

    from neuroalign.recipes._decode import run_generate
    from neuroalign.recipes._demo import _done, _stage

    t0 = _stage(cfg, f"10. brain-guided images for {' and '.join(GUIDED_ROIS)}")
    sim = cfg.state["sim"]
    pipe, _ = _pipeline(cfg)
    # six seeds in both modes: one sample's true response moves with float rounding (the
    # guidance follows a gradient for 12 steps), so the check is a paired test over seeds,
    # not a verdict on each of three samples
    n = 6
    rows, grids = [], []
    for roi in GUIDED_ROIS:
        # the encoder the generator climbs: ridge on pooled features of the network that won
        # the layer sweep (the generating architecture and seed), fitted on the averaged store
        out = cfg.out / ("guided-quick" if cfg.quick else "guided") / roi
        res = run_generate(sim.root, roi, n=n, out=out, pipeline=pipe, scale=50.0, steps=12,
                           seed=cfg.seed, overwrite=True)  # the demo folder's own output
        true_g, true_p = np.asarray(res["true_guided"]), np.asarray(res["true_unguided"])
        stim_mean = res["true_stimulus_mean"]
        wins = float(np.mean(true_g > true_p))
        p_paired = float(scipy.stats.ttest_rel(true_g, true_p, alternative="greater").pvalue)
        rows.append({"ROI": roi, "true response, guided (mean)": round(float(true_g.mean()), 3),
                     "unguided, same seeds": round(float(true_p.mean()), 3),
                     "stimulus-set mean": round(stim_mean, 3) + 0.0, "guided > unguided": f"{wins:.0%}",
                     "paired p": f"{p_paired:.2g}"})
        cfg.echo(f"  {roi:<6} true response: guided {true_g.mean():.3f}, unguided {true_p.mean():.3f}, "
                 f"stimulus mean {stim_mean:.3f}; guided wins {wins:.0%} (paired t-test p {p_paired:.2g})")
        report.check(f"guided images drive the TRUE {roi} response above unguided ones (same seeds; "
                     "paired t-test over seeds, p < 0.05) and above the stimulus-set mean",
                     f"unguided {true_p.mean():.3f}, stimuli {stim_mean:.3f}",
                     f"{true_g.mean():.3f} (p {p_paired:.2g})",
                     p_paired < 0.05 and true_g.mean() > stim_mean)
        grids.append((roi, np.asarray(Image.open(out / "grid.png"))))
    fig, axes = plt.subplots(len(grids), 1, figsize=(1.6 * n, 3.4 * len(grids)), squeeze=False)
    for ax, (roi, grid) in zip(axes[:, 0], grids, strict=True):
        ax.imshow(grid)
        ax.set_title(f"{roi}: unguided (top) and guided (bottom), same seeds", fontsize=9, loc="left")
        ax.set_axis_off()
    report.section("10. Brain-guided generation", "BrainDiVE-style: at each denoising step the "
                   "sample moves along the gradient of the encoder's predicted ROI response. The "
                   "images are then scored by the simulation's TRUE response of that ROI, which the "
                   "generator never sees. The same run as `neuroalign generate "
                   "examples/recipes/generate-ffa.toml`.").table(rows)
    report.figure(fig, caption="Unguided and guided samples from the same seeds")
    _done(cfg, t0)
