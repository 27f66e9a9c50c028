"""``neuroalign map``: layer-preference and unit maps, written as figures and tables."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import Overwrite, app, fail
from neuroalign.exceptions import NeuroalignError


class FigFormat(StrEnum):
    png = "png"
    svg = "svg"
    pdf = "pdf"


@app.command("map")
def map_cmd(
    source: Annotated[Path, typer.Argument(help="A simulated dataset folder (with truth.json) or a store (.zarr).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the figures and tables.")] = Path("neuroalign-maps"),
    scores: Annotated[Path | None, typer.Option(help="LayerSweep result (.nc or .zarr) with 'score' on ('layer', 'neuroid'[, 'time']). Required unless SOURCE is a simulation.")] = None,
    rois: Annotated[str | None, typer.Option(help="Comma-separated ROIs (default: the simulated ROIs, else all).")] = None,
    fmt: Annotated[FigFormat, typer.Option("--format", "-f", help="Figure format.")] = FigFormat.png,
    units: Annotated[bool, typer.Option("--units/--no-units", help="Simulations: also map single units to ROIs (unit_to_roi, encoding).")] = False,
    n_permutations: Annotated[int, typer.Option(help="Permutations for the unit p-values.")] = 200,
    overwrite: Overwrite = False,
) -> None:
    """Map layers (and units) onto cortex and write the figures.

    Writes layer_preference.csv, roi_summary.csv and figures: ROI bars with noise
    ceilings, layer-preference profiles, and maps of the preferred depth and best score
    (fMRI volumes: slices on the store's own grid over its mean image, plus an fsaverage
    projection when the store is in an MNI space; surface stores: fsaverage; MEG/EEG:
    sensor topographies over time). An existing output folder is an error unless it is an
    earlier map output and --overwrite is given; a folder of your own files is never replaced.
    """
    from neuroalign.recipes._map import run_map

    try:
        res = run_map(source, out, scores=scores, rois=rois, fmt=fmt.value, units=units,
                      n_permutations=n_permutations, overwrite=overwrite, echo=typer.echo)
    except (OSError, KeyError, ValueError, NeuroalignError) as err:
        fail(str(err))
    typer.echo("preferred layer per ROI:")
    for line in res["lines"]:
        typer.echo(line)
    for note in res["notes"]:
        typer.echo(note)
    for p in res["written"]:
        typer.echo(f"wrote {p}")
