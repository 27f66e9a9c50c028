"""The typer application shared by the command modules."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from neuroalign._version import __version__

#: ``neuroalign --help`` lists the commands in the order of a study.
COMMAND_ORDER = ("simulate", "ingest", "info", "store", "features", "fit", "rsa", "shape", "map",
                 "decode", "generate", "run", "report", "demo")


class _PipelineOrder(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        names = list(self.commands)
        rank = {n: i for i, n in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))


app = typer.Typer(
    cls=_PipelineOrder,
    name="neuroalign",
    help="Align artificial networks with brains: stores, features, encoders, RSA, generation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help texts hold TOML section names such as [data]: never read them as rich markup
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"neuroalign {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress messages.")] = False,
) -> None:
    """neuroalign command line."""
    if verbose:
        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("neuroalign").setLevel(logging.INFO)


#: The ``--overwrite`` option of every command that writes an output folder.
Overwrite = Annotated[bool, typer.Option(
    "--overwrite",
    help="Replace the output if it is an earlier output of this command (it carries "
         "neuroalign's .neuroalign marker); a folder of your own files is never replaced.",
)]


#: The arguments of every command that runs a recipe.
RecipeArg = Annotated[Path, typer.Argument(
    metavar="RECIPE", help="Recipe file (TOML with a top-level kind; see docs/recipes.md).")]
OutOption = Annotated[Path | None, typer.Option(
    "--out", "-o", metavar="PATH",
    help="Output folder (default: the recipe's [outputs] dir, else RECIPE-STEM-results beside "
         "the recipe).")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="TABLE.KEY=VALUE",
    help="Override a recipe value, e.g. --set store.path=/data/nsd.zarr (repeatable; the value "
         "is read as TOML; unknown keys are an error).")]


def run_recipe_command(recipe: Path | Any, *, kind: str | None, out: Path | None, sets,
                       overwrite: bool, **options: Any) -> dict:
    """Run a recipe (a file, or a :class:`~neuroalign.recipes.Recipe`) and print its summary."""
    from neuroalign.exceptions import NeuroalignError
    from neuroalign.recipes import run_recipe

    if isinstance(recipe, Path) and not recipe.is_file():
        fail(f"recipe {str(recipe)!r} does not exist.")
    try:
        res = run_recipe(recipe, out=out, sets=tuple(sets or ()), overwrite=overwrite, kind=kind,
                         **options)
    except KeyError as err:  # str(KeyError) quotes its message
        fail(err.args[0] if err.args else repr(err))
    except (OSError, ValueError, TypeError, NeuroalignError) as err:
        fail(str(err))
    print_result(res["result"])
    typer.echo(f"{res['kind']} results: {res['out']}")
    return res


def print_result(result: Any) -> None:
    """A runner's summary: its text lines, else one line per scalar, else JSON."""
    if isinstance(result, dict) and "text" in result:
        for line in result["text"]:
            typer.echo(line)
        return
    if isinstance(result, dict) and result and all(
            isinstance(v, str | int | float | bool) or v is None for v in result.values()):
        width = max(len(str(k)) for k in result)
        for key, value in result.items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            typer.echo(f"{key:<{width}}  {shown}")
        return
    typer.echo(json.dumps(result, indent=2, default=float))


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` to stderr and exit with ``code`` (no traceback for user errors)."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``neuroalign`` console script."""
    app()
