"""``neuroalign report RESULTS...``: one self-contained HTML page for results folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import app, fail
from neuroalign.exceptions import NeuroalignError


@app.command("report")
def report_cmd(
    results: Annotated[list[Path], typer.Argument(metavar="RESULTS", help="Output folders of recipes (fit, rsa, shape, map, decode, generate) or of the demo.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="PATH", help="The HTML file (default: report.html in the only folder given, else in the current directory).")] = None,
    title: Annotated[str | None, typer.Option(help="Page title.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace the page at PATH if neuroalign wrote it (an earlier report, "
                            "unchanged since); a file of your own is never replaced.")] = False,
) -> None:
    """Write one self-contained HTML page for RESULTS: a summary table first, then one
    section per folder with its tables and figures, the exact recipe and package versions.

    A page written into a recipe's output folder is recorded as one of its files, so that
    the recipe's --overwrite replaces that folder, page and all."""
    from neuroalign.recipes import write_report

    try:
        path = write_report(results, out, title=title, overwrite=overwrite)
    except (OSError, ValueError, NeuroalignError) as err:
        fail(str(err))
    typer.echo(f"report: {path}")
