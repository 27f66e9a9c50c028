"""``neuroalign map PATH``: layer-preference and unit maps, written as figures and tables."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import OutOption, Overwrite, SetOption, app, fail, run_recipe_command
from neuroalign.exceptions import NeuroalignError


class FigFormat(StrEnum):
    png = "png"
    svg = "svg"
    pdf = "pdf"


@app.command("map")
def map_cmd(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="A map recipe (.toml), a fit output folder, or a store / simulation folder (with --scores, or a simulation alone).")],
    out: OutOption = None,
    sets: SetOption = None,
    overwrite: Overwrite = False,
    scores: Annotated[Path | None, typer.Option(metavar="PATH", help="Layer scores: a fit output folder or a results file (.zarr, .nc) with 'score' on ('layer', 'neuroid'[, 'time']).")] = None,
    store: Annotated[Path | None, typer.Option(metavar="STORE", help="With a fit output folder as PATH: map onto this store instead of the one its recipe read.")] = None,
    rois: Annotated[str | None, typer.Option(help="Comma-separated ROIs (default: the simulated ROIs, else all).")] = None,
    fmt: Annotated[FigFormat | None, typer.Option("--format", "-f", help="Figure format (default png).")] = None,
    units: Annotated[bool | None, typer.Option("--units/--no-units", help="Also map single units to ROIs (needs features: a simulation or a recipe with [features]).")] = None,
    n_permutations: Annotated[int | None, typer.Option(help="Permutations for the unit p-values (default 200).")] = None,
) -> None:
    """Map layers (and units) onto cortex and write the figures and tables.

    Writes layer_preference.csv, roi_summary.csv and figures: ROI bars with noise
    ceilings, layer-preference profiles, and maps of the preferred depth and best score
    (fMRI volumes: slices on the store's own grid over its mean image, plus an fsaverage
    projection when the store is in an MNI space; surface stores: fsaverage; MEG/EEG:
    sensor topographies over time), and run.json (default output folder: the recipe's rule
    for a map recipe, else map-results in the current directory). An existing output folder is an error
    unless it is an earlier map output and --overwrite is given; a folder of your own files
    is never replaced.
    """
    from neuroalign.recipes._map import map_recipe

    try:
        recipe = map_recipe(path, scores=scores, store=store, sets=tuple(sets or ()), options={
            "rois": [r.strip() for r in rois.split(",") if r.strip()] if rois else None,
            "format": fmt.value if fmt is not None else None, "units": units,
            "n_permutations": n_permutations})
    except (OSError, ValueError, NeuroalignError) as err:
        fail(str(err))
    run_recipe_command(recipe, kind="map", out=out, sets=(), overwrite=overwrite)
