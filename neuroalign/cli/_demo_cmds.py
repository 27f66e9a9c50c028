"""``neuroalign demo``: the end-to-end demo on the embedded simulated brain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import app


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's data and outputs.")] = Path("neuroalign-demo"),
    quick: Annotated[bool, typer.Option("--quick", help="A smaller brain: finishes in a few minutes.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the simulated brain.")] = 0,
) -> None:
    """Run the end-to-end demo on the embedded simulated brain and check it against the truth.

    Stages: simulate an NSD-format brain, ingest it with the NSD adapter, estimate
    reliability, extract features of three candidate networks, run a ridge layer sweep and
    RSA. Each stage prints what it recovered next to the truth; OUT/report.html gathers
    figures, tables and the truth-vs-recovered table. Reruns reuse what is in OUT.
    """
    import matplotlib

    matplotlib.use("Agg")
    from neuroalign.cli._demo import DemoConfig, run_demo

    report = run_demo(DemoConfig(out=out, quick=quick, seed=seed, echo=typer.echo))
    if not report.all_passed:
        raise typer.Exit(1)
