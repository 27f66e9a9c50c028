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
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow downloading weights (pipeline, metric networks); as allow_download = true in the recipe.")] = False,
) -> None:
    """Decode images from brain responses: store -> embedding -> diffusion, with metrics.

    Writes grid.png (ground truth above reconstructions), metrics.json and metrics.csv; the
    last line says whether the reconstructions beat chance and their low-level input.
    """
    from neuroalign.decoders._recipes import run_decode_recipe

    table = run_decode_recipe(recipe, out, allow_download=True if allow_download else None)
    width = max(len(k) for k in table)
    for key, value in table.items():
        typer.echo(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


@app.command("generate")
def generate(
    encoder: Annotated[Path | None, typer.Option("--encoder", help="Simulated dataset folder, or a saved encoder folder (DifferentiableRidgeEncoder.save).")] = None,
    roi: Annotated[str | None, typer.Option("--roi", help="Target: an ROI ('FFA-1') or a contrast ('FFA-1 - PPA').")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Number of images (default 8).")] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("generate-out"),
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="'tiny' (trained on first use, cached) or a pipeline folder / HF id.")] = None,
    scale: Annotated[float | None, typer.Option("--scale", help="Guidance scale (default 10, tuned for the tiny pipeline; BrainDiVE used ~100-150 on SD latents).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Sampling steps (default 12).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="First seed.")] = 0,
    recipe: Annotated[Path | None, typer.Option("--recipe", help="TOML with encoder, roi, n, scale, steps, pipeline (options override it).")] = None,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow downloading weights (pipeline, encoder network).")] = False,
) -> None:
    """Generate images that drive an ROI, guided by a differentiable encoder (BrainDiVE-style).

    Writes grid.png (unguided row above guided row, same seeds) and activations.json.
    """
    from neuroalign.decoders._recipes import load_recipe, run_generate

    cfg = load_recipe(recipe) if recipe is not None else {}
    given = {"encoder": encoder, "roi": roi, "n": n, "pipeline": pipeline, "scale": scale, "steps": steps}
    settings = {"n": 8, "pipeline": "tiny", "scale": 10.0, "steps": 12}
    settings.update({k: v for k, v in cfg.items() if k in given})
    settings.update({k: v for k, v in given.items() if v is not None})
    settings["allow_download"] = allow_download or cfg.get("allow_download") is True
    missing = [k for k in ("encoder", "roi") if k not in settings]
    if missing:
        raise typer.BadParameter(f"missing {', '.join('--' + m for m in missing)} (or a --recipe giving them)")
    res = run_generate(settings.pop("encoder"), settings.pop("roi"), out=out, seed=seed, **settings)
    for key, value in res.items():
        typer.echo(f"{key}: {value}")
