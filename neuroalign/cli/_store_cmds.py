"""``neuroalign info``: describe a store; ``neuroalign store verify``: check its checksums."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import app, fail
from neuroalign.exceptions import NeuroalignError

store_app = typer.Typer(help="Stores on disk: `store verify STORE`.", no_args_is_help=True)
app.add_typer(store_app, name="store")


def _verify(path: Path) -> None:
    """Check every checksum of ``path``; print what was checked, or fail naming the damage."""
    from neuroalign.store import verify_store

    try:
        res = verify_store(path)
    except (OSError, NeuroalignError) as err:
        fail(str(err), code=1)
    typer.echo(f"verified {res['files']} files ({res['bytes'] / 2**20:.1f} MiB) in "
               f"{len(res['folders'])} zarr folder(s): all checksums match.")


@store_app.command("verify")
def verify_cmd(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="A store (.zarr folder), a results or features zarr, or an output folder holding them.")],
) -> None:
    """Check every chunk of STORE against the sizes and checksums recorded when it was saved.

    Exits with status 1 naming every missing, truncated or altered chunk (array and chunk),
    or when STORE has no manifest (written by an earlier version: save it again).
    """
    _verify(store)


@app.command("info")
def info(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="Path to a store (.zarr folder).")],
    verify: Annotated[bool, typer.Option("--verify", help="Also check every chunk's checksum (reads the whole store).")] = False,
) -> None:
    """Print a summary of STORE: sizes, splits, sessions, ROIs and reliability."""
    from neuroalign.store import open_store, summary

    if verify:
        _verify(store)
    try:
        ds = open_store(store)
    except (OSError, NeuroalignError) as err:
        fail(str(err))
    typer.echo(f"store: {store}")
    typer.echo(summary(ds))
