"""``neuroalign fit RECIPE.toml``: run a whole encoding study from a recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import Overwrite, app, fail
from neuroalign.exceptions import NeuroalignError


@app.command("fit")
def fit_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (TOML), e.g. encoders/sim-ridge-layer-sweep.toml.")],
    store: Annotated[str | None, typer.Option("--store", help="Use this store instead of the recipe's [store].")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Output folder (default: [outputs] dir).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Fit voxelwise encoders as a recipe says: store, features, encoder, CV and outputs.

    Writes results.zarr (per-neuroid score, best alpha/layer, ceiling-normalised score),
    summary.json (per-ROI means with bootstrap CIs) and a copy of the recipe. An existing
    output folder is an error unless it is an earlier fit's output and --overwrite is given;
    a folder of your own files (or one holding the input store) is never replaced.
    """
    from neuroalign.recipes._fit import run_recipe

    if not recipe.exists():
        fail(f"recipe {str(recipe)!r} does not exist.")
    try:
        summary = run_recipe(recipe, store=store, out=out, overwrite=overwrite)
    except (OSError, ValueError, KeyError, NeuroalignError) as err:
        fail(str(err))
    typer.echo(json.dumps(summary, indent=2, default=float))
