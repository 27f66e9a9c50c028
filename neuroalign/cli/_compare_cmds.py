"""``neuroalign rsa RECIPE`` and ``neuroalign shape SYSTEM...``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import Overwrite, app, fail
from neuroalign.exceptions import NeuroalignError


@app.command("rsa")
def rsa_cmd(
    recipe: Annotated[Path, typer.Argument(help="RSA recipe (TOML): [data], [models], [rsa], [output].")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: [output] dir).")] = None,
    n_bootstrap: Annotated[int | None, typer.Option(help="Override [rsa] n_bootstrap.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Representational similarity analysis from a recipe (tables and figures).

    Writes per ROI a score table (CSV), a model bar plot with the noise ceiling and RDM
    heatmaps (PNG). An existing output folder is an error unless it is an earlier RSA output
    and --overwrite is given; a folder of your own files is never replaced.
    """
    from neuroalign.recipes._compare import run_rsa_recipe

    if not recipe.exists():
        fail(f"{recipe}: no such recipe file.")
    try:
        files, lines = run_rsa_recipe(recipe, out, n_bootstrap, overwrite=overwrite)
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError, NeuroalignError) as err:
        fail(str(err))
    for line in lines:
        typer.echo(line)
    for f in files:
        typer.echo(f"wrote {f}")


@app.command("shape")
def shape_cmd(
    systems: Annotated[list[str], typer.Argument(
        help="Systems as NAME=PATH[:VAR] or PATH[:VAR] (.npy, .zarr, .nc features).")],
    alpha: Annotated[float, typer.Option(help="1 = Procrustes, 0 = CCA, between: partial whitening.")] = 1.0,
    score_method: Annotated[str, typer.Option(help="'angular' or 'euclidean'.")] = "angular",
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("shape-results"),
    overwrite: Overwrite = False,
) -> None:
    """Pairwise generalised shape distances among systems: CSV table and MDS figure.

    An existing output folder is an error unless it is an earlier shape output and
    --overwrite is given; a folder of your own files is never replaced.
    """
    from neuroalign.recipes._compare import _table, run_shape

    try:
        specs = {}
        for i, spec in enumerate(systems):
            name, sep, path = spec.partition("=")
            specs[name if sep else f"system_{i}"] = path if sep else spec
        rows, names, files = run_shape(specs, alpha=alpha, score_method=score_method, out=out,
                                       overwrite=overwrite)
    except (OSError, KeyError, ValueError, TypeError, NeuroalignError) as err:
        fail(str(err))
    typer.echo(f"shape distances (alpha={alpha}, {score_method}):")
    typer.echo(_table(rows, ["system"] + names))
    for f in files:
        typer.echo(f"wrote {f}")
