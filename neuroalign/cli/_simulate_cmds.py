"""``neuroalign simulate``: write a simulated ground-truth brain."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import app, fail
from neuroalign.exceptions import NeuroalignError


class SimFormat(StrEnum):
    nsd = "nsd"
    things_eeg2 = "things-eeg2"


@app.command("simulate")
def simulate_cmd(
    out: Annotated[Path, typer.Argument(metavar="PATH", help="Output folder for the simulated dataset.")],
    format: Annotated[SimFormat, typer.Option("--format", "-f", help="Published format to write.")] = SimFormat.nsd,
    n_images: Annotated[int, typer.Option(help="Number of images.")] = 240,
    n_test: Annotated[int, typer.Option(help="Images in the test split (NSD: shared images).")] = 40,
    n_repetitions: Annotated[int | None, typer.Option(help="Presentations per image (NSD 3, EEG2 training 4).")] = None,
    n_test_repetitions: Annotated[int, typer.Option(help="THINGS-EEG2: presentations per test image.")] = 20,
    n_sessions: Annotated[int, typer.Option(help="NSD: number of sessions.")] = 6,
    withhold_sessions: Annotated[int, typer.Option(help="NSD: leave out the last N session files.")] = 0,
    image_size: Annotated[int, typer.Option(help="Image side in pixels.")] = 96,
    seed: Annotated[int, typer.Option(help="Seed of images, design and noise.")] = 0,
    arch: Annotated[str, typer.Option(help="Ground-truth torchvision architecture.")] = "resnet18",
    model_seed: Annotated[int, typer.Option(help="Seed of the ground-truth network's weights.")] = 0,
    units_per_roi: Annotated[int | None, typer.Option(help="NSD: each ROI reads out only N planted channels of its layer (named units drive specific ROIs).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace PATH if it is a simulation neuroalign wrote (never a folder of your own files).")] = False,
    routing_roi: Annotated[bool, typer.Option("--routing-roi", help="NSD: add ROI EBA whose voxels read out a target object placed at a random location in each image.")] = False,
) -> None:
    """Simulate a brain with a known answer and write it as an NSD or THINGS-EEG2 tree.

    PATH also gets truth.json (layer per ROI, true ncsnr and noise ceiling per neuroid,
    generating model and seed) and store.zarr (the store the files encode).
    """
    from neuroalign.datasets import simulate

    try:
        result = simulate(
            out, format=format.value, n_images=n_images, n_test=n_test,
            n_repetitions=n_repetitions, n_test_repetitions=n_test_repetitions,
            n_sessions=n_sessions, withhold_sessions=withhold_sessions, image_size=image_size,
            seed=seed, arch=arch, model_seed=model_seed, overwrite=overwrite,
            units_per_roi=units_per_roi,
            **({"routing_roi": True} if routing_roi else {}),
        )
    except (OSError, ValueError, NeuroalignError) as err:
        fail(str(err))
    typer.echo(result.summary())
    typer.echo(f"truth: {result.truth_path}")
    typer.echo(f"store: {result.store_path}")
