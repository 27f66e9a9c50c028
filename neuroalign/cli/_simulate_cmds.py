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


class SimSize(StrEnum):
    small = "small"
    nsd = "nsd"


class SimSpace(StrEnum):
    func1pt8mm = "func1pt8mm"
    fsaverage = "fsaverage"


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
    image_size: Annotated[int | None, typer.Option(help="Image side in pixels (default 96; 32 with --size nsd).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of images, design and noise.")] = 0,
    arch: Annotated[str, typer.Option(help="Ground-truth torchvision architecture.")] = "resnet18",
    model_seed: Annotated[int, typer.Option(help="Seed of the ground-truth network's weights.")] = 0,
    units_per_roi: Annotated[int | None, typer.Option(help="NSD: each ROI reads out only N planted channels of its layer (named units drive specific ROIs).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace PATH if it is a simulation neuroalign wrote (never a folder of your own files).")] = False,
    routing_roi: Annotated[bool, typer.Option("--routing-roi", help="NSD: add ROI EBA whose voxels read out a target object placed at a random location in each image.")] = False,
    size: Annotated[SimSize, typer.Option("--size", help="small: the ground-truth network simulation (options above). nsd: an NSD-size subject (10,000 images x 3 in 40 sessions of 750 trials; func1pt8mm grid 81x104x83 and/or fsaverage 2x163,842 vertices; a low-rank signal with known ncsnr), written session by session. About 1 GB per session and space.")] = SimSize.small,
    sessions: Annotated[int | None, typer.Option("--sessions", help="With --size nsd: write the first N of the 40 session files (default 40).")] = None,
    space: Annotated[list[SimSpace] | None, typer.Option("--space", help="With --size nsd: beta space(s) to write (repeat the option; default both).")] = None,
    nsdgeneral_only: Annotated[bool, typer.Option("--nsdgeneral-only", help="With --size nsd: write only the nsdgeneral values (sparse files, ~1/20 of the disk).")] = False,
) -> None:
    """Simulate a brain with a known answer and write it as an NSD or THINGS-EEG2 tree.

    PATH also gets truth.json (layer per ROI, true ncsnr and noise ceiling per neuroid,
    generating model and seed) and store.zarr (the store the files encode).
    """
    if size is SimSize.nsd:
        not_for_nsd = {
            "--format": (format, SimFormat.nsd), "--n-images": (n_images, 240),
            "--n-test": (n_test, 40), "--n-repetitions": (n_repetitions, None),
            "--n-test-repetitions": (n_test_repetitions, 20), "--n-sessions": (n_sessions, 6),
            "--withhold-sessions": (withhold_sessions, 0), "--arch": (arch, "resnet18"),
            "--model-seed": (model_seed, 0), "--units-per-roi": (units_per_roi, None),
            "--routing-roi": (routing_roi, False),
        }
        _simulate_nsd_size(out, sessions=40 if sessions is None else sessions, spaces=space,
                           nsdgeneral_only=nsdgeneral_only, seed=seed,
                           image_size=32 if image_size is None else image_size,
                           overwrite=overwrite, small_options=not_for_nsd)
        return
    for name, given in (("--sessions", sessions is not None), ("--space", bool(space)),
                        ("--nsdgeneral-only", nsdgeneral_only)):
        if given:
            fail(f"{name} applies to --size nsd only (the small simulation writes "
                 "--n-sessions sessions of one volume).")
    from neuroalign.datasets import simulate

    try:
        result = simulate(
            out, format=format.value, n_images=n_images, n_test=n_test,
            n_repetitions=n_repetitions, n_test_repetitions=n_test_repetitions,
            n_sessions=n_sessions, withhold_sessions=withhold_sessions,
            image_size=96 if image_size is None else image_size,
            seed=seed, arch=arch, model_seed=model_seed, overwrite=overwrite,
            units_per_roi=units_per_roi,
            **({"routing_roi": True} if routing_roi else {}),
        )
    except (OSError, ValueError, NeuroalignError) as err:
        fail(str(err))
    typer.echo(result.summary())
    typer.echo(f"truth: {result.truth_path}")
    typer.echo(f"store: {result.store_path}")


def _simulate_nsd_size(out: Path, *, sessions: int, spaces, nsdgeneral_only: bool, seed: int,
                       image_size: int, overwrite: bool, small_options: dict) -> None:
    from neuroalign.datasets.simulate._scale import SPACES, simulate_nsd_scale

    changed = [name for name, (value, default) in small_options.items() if value != default]
    if changed:
        fail(f"{', '.join(changed)}: not an option of --size nsd, whose design is NSD's "
             "(10,000 images x 3, 40 sessions of 750 trials, the shared 1,000 as test images).")
    try:
        result = simulate_nsd_scale(
            out, sessions=sessions, spaces=tuple(s.value for s in spaces) if spaces else SPACES,
            nsdgeneral_only=nsdgeneral_only, seed=seed, image_size=image_size, overwrite=overwrite)
    except (FileExistsError, ValueError, OSError, NeuroalignError) as err:
        fail(str(err))
    typer.echo(result.summary())
    typer.echo(f"truth: {result.truth_path}")
