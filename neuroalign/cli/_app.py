"""The typer application shared by the command modules."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from neuroalign._version import __version__

app = typer.Typer(
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


def fail(message: str, code: int = 2) -> None:
    """Print ``message`` to stderr and exit with ``code`` (no traceback for user errors)."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the ``neuroalign`` console script."""
    app()
