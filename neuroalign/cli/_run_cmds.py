"""``neuroalign run RECIPE.toml``: run any recipe (fit, decode or generate)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import Overwrite, app, fail
from neuroalign.exceptions import NeuroalignError


@app.command("run")
def run_cmd(
    recipe: Annotated[Path, typer.Argument(help="Recipe file (TOML) from encoders/ or decoders/.")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: the recipe's).")] = None,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a recipe value: --set data.store=/data/nsd.zarr (repeatable; value read as TOML).",
    )] = None,
    overwrite: Overwrite = False,
) -> None:
    """Run a recipe, whatever its kind: fit encoders (an encoder table, as `neuroalign fit`),
    decode images (data / pipeline / reconstruct tables, as `neuroalign decode`) or generate
    brain-guided images (top-level encoder + roi, as `neuroalign generate`). A top-level
    kind = "fit" | "decode" | "generate" says it explicitly.

    Relative paths in the recipe are relative to the current directory. Writes the runner's
    outputs and run.json (the recipe as run, with the --set overrides). An existing output
    folder is an error unless it is an earlier output of the same kind of recipe and
    --overwrite is given; a folder of your own files is never replaced.
    """
    from neuroalign.recipes._registry import run_recipe

    if not recipe.is_file():
        fail(f"recipe {str(recipe)!r} does not exist.")
    try:
        res = run_recipe(recipe, out=out, sets=tuple(sets or ()), overwrite=overwrite)
    except KeyError as err:  # str(KeyError) quotes its message
        fail(err.args[0] if err.args else repr(err))
    except (OSError, ValueError, NeuroalignError) as err:
        fail(str(err))
    typer.echo(f"{res['kind']} -> {res['out']}")
    typer.echo(json.dumps(res["result"], indent=2, default=float))
