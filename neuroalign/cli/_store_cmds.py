"""``neuroalign info``: describe a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import app, fail
from neuroalign.exceptions import NeuroalignError


@app.command("info")
def info(
    store: Annotated[Path, typer.Argument(help="Path to a store (.zarr folder).")],
) -> None:
    """Print a summary of STORE: sizes, splits, sessions, ROIs and reliability."""
    from neuroalign.store import open_store, summary

    try:
        ds = open_store(store)
    except (FileNotFoundError, NeuroalignError) as err:
        fail(str(err))
    typer.echo(f"store: {store}")
    typer.echo(summary(ds))
