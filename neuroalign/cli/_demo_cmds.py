"""``neuroalign demo``: the end-to-end demo on the embedded simulated brain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import app, fail
from neuroalign.exceptions import NeuroalignError


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's data and outputs.")] = Path("neuroalign-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="A smaller brain: finishes in a few minutes.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the simulated brain.")] = 0,
) -> None:
    """Run the end-to-end demo on the embedded simulated brain and check it against the truth.

    Stages: simulate an NSD-format brain, ingest it with the NSD adapter, estimate
    reliability, extract features of three candidate networks, ridge layer sweep with a
    layer-preference map, RSA with noise ceilings, a shape-metric distance matrix, attention
    routing vs ridge, decoding held-out stimuli, and brain-guided images for two ROIs. Each
    stage prints what it recovered next to the truth; OUT/report.html gathers figures, tables
    and the truth-vs-recovered table. Reruns reuse what is in OUT (simulations, features,
    the trained diffusion pipeline). OUT must be missing, empty or an earlier demo's folder:
    a folder of your own files is refused, and nothing in it is touched. Exits with status 1
    if any check fails.
    """
    import matplotlib

    matplotlib.use("Agg")
    from neuroalign.recipes._demo import DemoConfig, run_demo

    try:
        report = run_demo(DemoConfig(out=out, quick=quick, seed=seed, echo=typer.echo))
    except (OSError, NeuroalignError) as err:  # a refused folder, a damaged store, a full disk
        fail(str(err))
    if not report.all_passed:
        raise typer.Exit(1)
