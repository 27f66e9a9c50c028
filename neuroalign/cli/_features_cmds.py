"""``neuroalign features``: extract layer features, list a model's layers.

``neuroalign features MODEL --stimuli ... --layers ... --out ...`` is short for
``neuroalign features extract MODEL ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from neuroalign.cli._app import app, fail
from neuroalign.exceptions import NeuroalignError


class _DefaultToExtract(TyperGroup):
    """A group whose unknown first argument is taken as MODEL of ``extract``."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["extract", *args]
        return super().resolve_command(ctx, args)


features_app = typer.Typer(
    cls=_DefaultToExtract,
    help="Model features: `features MODEL --stimuli S --layers L --out F.zarr`, `features layers MODEL`.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")


def _stimuli(path: Path, texts: bool):
    from neuroalign.stimuli import StimulusSet

    if texts:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        return StimulusSet.from_texts(lines)
    if path.is_dir() and (path / ".neuroalign-complete").exists():
        from neuroalign.store import open_store

        return StimulusSet.from_store(open_store(path))
    if path.is_file() and path.suffix in (".hdf5", ".h5"):
        return StimulusSet.from_hdf5(path)
    return StimulusSet.from_folder(path)


@features_app.command("extract")
def extract_cmd(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model spec: open_clip:ARCH[/TAG], hf:REPO_OR_DIR, torchvision:ARCH, minilm.")],
    stimuli: Annotated[Path, typer.Option("--stimuli", "-s", help="A store (.zarr), an image folder, an HDF5 brick, or a text file (with --texts).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Features zarr (a cache: resumes, and is reused when complete; never a folder of your own files).")],
    layers: Annotated[list[str] | None, typer.Option("--layers", "-l", help="Layer names (repeat or comma-separate); 'blocks' for all blocks.")] = None,
    pooling: Annotated[str, typer.Option(help="auto, cls, mean, spatial, last, or none (token-level).")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Stimuli per forward pass.")] = 32,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda.")] = "auto",
    random_weights: Annotated[bool, typer.Option("--random-weights", help="Random weights (the architecture only).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of random weights.")] = 0,
    transform: Annotated[str | None, typer.Option(help="Image transform preset: simulation, imagenet, clip.")] = None,
    texts: Annotated[bool, typer.Option("--texts", help="STIMULI is a text file, one stimulus per line.")] = False,
    dtype: Annotated[str, typer.Option(help="float32 or float16 storage.")] = "float32",
    allow_download: Annotated[bool, typer.Option("--allow-download", help="Allow downloading weights.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it is a feature cache neuroalign wrote (e.g. with other settings).")] = False,
) -> None:
    """Extract MODEL's layer features for STIMULI into OUT (zarr), batch by batch.

    An interrupted extraction (killed, or a full disk) exits with an error naming the cache
    and the batch; the same command run again resumes from the batches already written.
    """
    from neuroalign.features import extract

    names = [n for item in (layers or ["blocks"]) for n in item.split(",") if n]
    try:
        stim = _stimuli(stimuli, texts)
        ds = extract(
            model, stim, layers=names[0] if names == ["blocks"] else names,
            pooling=None if pooling.lower() == "none" else pooling, batch_size=batch_size,
            device=device, cache=out, weights=None if random_weights else "default", seed=seed,
            transform=transform, dtype=dtype, allow_download=allow_download, overwrite=overwrite,
        )
    except (OSError, ValueError, TypeError, NeuroalignError) as err:
        fail(str(err), code=1 if type(err) is OSError else 2)
    typer.echo(f"features of {ds.attrs['model']} ({ds.attrs['weights']}) for {ds.sizes['stimulus']} stimuli")
    for name in ds.data_vars:
        typer.echo(f"  {name:<40} {tuple(ds[name].shape)}")
    typer.echo(f"written: {out}")


@features_app.command("layers")
def layers_cmd(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model spec (built with random weights to list names).")],
    blocks: Annotated[bool, typer.Option("--blocks", help="Only the blocks of a layer sweep.")] = False,
) -> None:
    """List the hookable layers of MODEL."""
    from neuroalign.features import block_layers, list_layers

    try:
        names = block_layers(model) if blocks else list_layers(model)
    except (ValueError, TypeError, NeuroalignError) as err:
        fail(str(err))
    for name in names:
        typer.echo(name)
