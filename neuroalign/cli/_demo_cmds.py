"""``neuroalign demo``: the end-to-end demo on the embedded simulated brain.

Stages run in order and each checks itself against the simulation's truth. Stages whose
subpackages are not part of this installation yet are reported as such.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from neuroalign.cli._app import app


def _stage(title: str) -> float:
    typer.echo(f"\n== {title}")
    return time.perf_counter()


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's data and outputs.")] = Path("neuroalign-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="A smaller brain: finishes in well under 3 minutes.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the simulated brain.")] = 0,
) -> None:
    """Run the end-to-end demo on the embedded simulated brain and check it against the truth.

    Reruns reuse what is already in OUT.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neuroalign.cli._report import Report
    from neuroalign.datasets.simulate import SimulationResult, simulate
    from neuroalign.store import ncsnr, noise_ceiling, summary

    report = Report("neuroalign demo: the simulated brain, truth vs recovered")
    t0 = _stage("1. simulate a brain with a known answer (NSD format)")
    root = out / ("sim-nsd-quick" if quick else "sim-nsd")
    if (root / "truth.json").exists():
        sim = SimulationResult.load(root)
        typer.echo(f"reusing {root}")
    else:
        kw = dict(n_images=120, n_test=24, n_sessions=3) if quick else {}
        sim = simulate(root, seed=seed, **kw)
    typer.echo(sim.summary())
    report.section("1. Simulated brain", "A seeded ResNet-18 drives each ROI through one layer; "
                   "the data are written as NSD files.").code(sim.summary())
    typer.echo(f"({time.perf_counter() - t0:.1f} s)")

    t0 = _stage("2. the stimulus-response store")
    store = sim.store().load()
    typer.echo(summary(store))
    report.section("2. Store").code(summary(store))
    typer.echo(f"({time.perf_counter() - t0:.1f} s)")

    t0 = _stage("3. reliability: estimated vs true ncsnr and noise ceiling")
    est = ncsnr(store).values
    true = sim.true_ncsnr().values
    driven = true > 0
    r = float(np.corrcoef(est[driven], true[driven])[0, 1])
    nc_est = noise_ceiling(store).values
    nc_true = sim.true_noise_ceiling().values
    err = float(np.median(np.abs(nc_est[driven] - nc_true[driven])))
    typer.echo(f"ncsnr: r(estimated, true) = {r:.3f} over {int(driven.sum())} driven voxels")
    typer.echo(f"noise ceiling: median |estimated - true| = {err:.2f} percentage points "
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
    typer.echo(f"({time.perf_counter() - t0:.1f} s)")

    typer.echo("\n== truth vs recovered")
    for c in report.checks:
        typer.echo(f"  [{'PASS' if c.passed else 'FAIL'}] {c.name}: truth {c.truth}, recovered {c.recovered}")
    path = report.save(out / "report.html")
    typer.echo(f"\nreport: {path}")
    if not report.all_passed:
        raise typer.Exit(1)
