"""``neuroalign decode`` and ``neuroalign generate``: reconstruction and brain-guided images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import Overwrite, app, fail
from neuroalign.exceptions import NeuroalignError

_ERRORS = (OSError, ValueError, KeyError, NeuroalignError)


@app.command("decode")
def decode(
    recipe: Annotated[Path, typer.Argument(help="Decode recipe (TOML), e.g. decoders/simulated-unclip.toml.")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: the recipe's 'out').")] = None,
    overwrite: Overwrite = False,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow downloading weights (pipeline, metric networks); as allow_download = true in the recipe.")] = False,
) -> None:
    """Decode images from brain responses: store -> embedding -> diffusion, with metrics.

    Writes grid.png (ground truth above reconstructions), metrics.json and metrics.csv; the
    last line says whether the reconstructions beat chance and their low-level input. An
    existing output folder is an error unless it is an earlier decode output and --overwrite
    is given; a folder of your own files is never replaced.
    """
    from neuroalign.recipes._decode import run_decode_recipe

    if not recipe.is_file():
        fail(f"recipe {str(recipe)!r} does not exist.")
    try:
        table = run_decode_recipe(recipe, out, overwrite=overwrite,
                                  allow_download=True if allow_download else None)
    except KeyError as err:  # str(KeyError) quotes its message
        fail(err.args[0] if err.args else repr(err))
    except _ERRORS as err:
        fail(str(err))
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
    overwrite: Overwrite = False,
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow downloading weights (pipeline, encoder network).")] = False,
) -> None:
    """Generate images that drive an ROI, guided by a differentiable encoder (BrainDiVE-style).

    Writes grid.png (unguided row above guided row, same seeds) and activations.json. An
    existing output folder is an error unless it is an earlier generate output and
    --overwrite is given; a folder of your own files is never replaced.
    """
    from neuroalign.recipes._decode import load_recipe, run_generate

    try:
        cfg = load_recipe(recipe) if recipe is not None else {}
    except _ERRORS as err:
        fail(str(err))
    given = {"encoder": encoder, "roi": roi, "n": n, "pipeline": pipeline, "scale": scale, "steps": steps}
    settings = {"n": 8, "pipeline": "tiny", "scale": 10.0, "steps": 12}
    settings.update({k: v for k, v in cfg.items() if k in given})
    settings.update({k: v for k, v in given.items() if v is not None})
    settings["allow_download"] = allow_download or cfg.get("allow_download") is True
    missing = [k for k in ("encoder", "roi") if k not in settings]
    if missing:
        raise typer.BadParameter(f"missing {', '.join('--' + m for m in missing)} (or a --recipe giving them)")
    try:
        res = run_generate(settings.pop("encoder"), settings.pop("roi"), out=out, seed=seed,
                           overwrite=overwrite, **settings)
    except _ERRORS as err:
        fail(str(err))
    for key, value in res.items():
        typer.echo(f"{key}: {value}")
