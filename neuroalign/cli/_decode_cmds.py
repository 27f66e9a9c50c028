"""``neuroalign decode`` and ``neuroalign generate``: reconstruction and brain-guided images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import app


@app.command("decode")
def decode(
    recipe: Annotated[Path, typer.Argument(help="Decode recipe (TOML), e.g. decoders/simulated-unclip.toml.")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: the recipe's 'out').")] = None,
) -> None:
    """Decode images from brain responses: store -> embedding -> diffusion, with metrics.

    Writes grid.png (ground truth above reconstructions), metrics.json and metrics.csv.
    """
    from neuroalign.decoders._recipes import run_decode_recipe

    table = run_decode_recipe(recipe, out)
    width = max(len(k) for k in table)
    for key, value in table.items():
        typer.echo(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


@app.command("generate")
def generate(
    encoder: Annotated[Path, typer.Option("--encoder", help="Simulated dataset folder, or a torch.save-d encoder module.")],
    roi: Annotated[str, typer.Option("--roi", help="Target: an ROI ('FFA-1') or a contrast ('FFA-1 - PPA').")],
    n: Annotated[int, typer.Option("--n", help="Number of images.")] = 8,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("generate-out"),
    pipeline: Annotated[str, typer.Option("--pipeline", help="'tiny' (trained on first use, cached) or a pipeline folder / HF id.")] = "tiny",
    scale: Annotated[float, typer.Option("--scale", help="Guidance scale.")] = 100.0,
    steps: Annotated[int, typer.Option("--steps", help="Sampling steps.")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="First seed.")] = 0,
) -> None:
    """Generate images that drive an ROI, guided by a differentiable encoder (BrainDiVE-style).

    Writes grid.png (unguided row above guided row, same seeds) and activations.json.
    """
    from neuroalign.decoders._recipes import run_generate

    res = run_generate(encoder, roi, n=n, out=out, pipeline=pipeline, scale=scale, steps=steps, seed=seed)
    for key, value in res.items():
        typer.echo(f"{key}: {value}")
