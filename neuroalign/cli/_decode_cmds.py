"""``neuroalign decode RECIPE`` and ``neuroalign generate RECIPE``."""

from __future__ import annotations

from typing import Annotated

import typer

from neuroalign.cli._app import OutOption, Overwrite, RecipeArg, SetOption, app, run_recipe_command

AllowDownload = Annotated[bool, typer.Option(
    "--allow-download", help="Allow downloading weights (pipeline, metric or encoder networks); "
                             "as allow_download = true in the recipe.")]


@app.command("decode")
def decode(recipe: RecipeArg, out: OutOption = None, sets: SetOption = None,
           overwrite: Overwrite = False, allow_download: AllowDownload = False) -> None:
    """Decode images from brain responses as a decode recipe says: store -> embedding ->
    diffusion, with metrics.

    Writes grid.png (ground truth above reconstructions), metrics.json, metrics.csv and
    run.json; the last metric says whether the reconstructions beat chance and their
    low-level input. An existing output folder is an error unless it is an earlier decode
    output and --overwrite is given; a folder of your own files is never replaced.
    """
    run_recipe_command(recipe, kind="decode", out=out, sets=sets, overwrite=overwrite,
                       allow_download=True if allow_download else None)


@app.command("generate")
def generate(recipe: RecipeArg, out: OutOption = None, sets: SetOption = None,
             overwrite: Overwrite = False, allow_download: AllowDownload = False) -> None:
    """Generate images that drive an ROI, guided by a differentiable encoder (BrainDiVE-style),
    as a generate recipe says.

    Writes grid.png (unguided row above guided row, same seeds), activations.json and
    run.json. An existing output folder is an error unless it is an earlier generate output
    and --overwrite is given; a folder of your own files is never replaced.
    """
    run_recipe_command(recipe, kind="generate", out=out, sets=sets, overwrite=overwrite,
                       allow_download=True if allow_download else None)
