"""``neuroalign ingest <dataset>``: read a published dataset into a zarr store."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from neuroalign.cli._app import app, fail
from neuroalign.exceptions import NeuroalignError

ingest_app = typer.Typer(
    help="Read a dataset in its published format into a zarr store (streamed, atomic, resumable).",
    no_args_is_help=True,
)
app.add_typer(ingest_app, name="ingest")

_ERRORS = (FileExistsError, FileNotFoundError, ValueError, ImportError, NeuroalignError)

Root = Annotated[Path, typer.Argument(metavar="PATH", help="Dataset folder (a local copy; nothing is downloaded).")]
Out = Annotated[Path, typer.Option("--out", "-o", metavar="STORE", help="Output store folder (*.zarr).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")]


class NSDSpace(StrEnum):
    func1pt8mm = "func1pt8mm"
    func1mm = "func1mm"
    fsaverage = "fsaverage"
    nativesurface = "nativesurface"


def _run(make_plan, out: Path, overwrite: bool) -> None:
    import warnings

    from neuroalign.store import open_store, summary

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            plan = make_plan()
            written = plan.write(out, overwrite=overwrite)
        except _ERRORS as err:
            fail(str(err))
    for w in caught:
        typer.echo(f"Warning: {w.message}", err=True)
    ds = open_store(written)
    typer.echo(summary(ds))
    typer.echo(f"store: {written}")


@ingest_app.command("nsd")
def nsd_cmd(
    root: Root,
    out: Out,
    subject: Annotated[int, typer.Option("--subject", "-s", help="NSD subject 1..8.")] = 1,
    space: Annotated[NSDSpace, typer.Option(help="Space of the betas.")] = NSDSpace.func1pt8mm,
    betas: Annotated[str, typer.Option(help="Beta version.")] = "betas_fithrf_GLMdenoise_RR",
    mask: Annotated[str, typer.Option(help="ROI file whose voxels/vertices to keep ('none': brain mask / all).")] = "nsdgeneral",
    roi: Annotated[list[str] | None, typer.Option("--roi", help="ROI files to label (repeatable; default: prf/floc/streams).")] = None,
    session: Annotated[list[int] | None, typer.Option("--session", help="Sessions to read (repeatable; default: all present).")] = None,
    overwrite: Overwrite = False,
) -> None:
    """NSD single-trial betas of one subject (streamed session by session)."""
    from neuroalign.datasets import NSD_DEFAULT_ROIS, nsd_plan

    _run(lambda: nsd_plan(root, subject, space=space.value, betas=betas,
                          mask=None if mask.lower() == "none" else mask,
                          rois=tuple(roi) if roi else NSD_DEFAULT_ROIS, sessions=session),
         out, overwrite)


@ingest_app.command("algonauts2023")
def algonauts_cmd(
    root: Root, out: Out,
    subject: Annotated[int, typer.Option("--subject", "-s", help="Subject 1..8.")] = 1,
    overwrite: Overwrite = False,
) -> None:
    """Algonauts-2023 challenge data of one subject (fsaverage vertices)."""
    from neuroalign.datasets import algonauts2023_plan

    _run(lambda: algonauts2023_plan(root, subject), out, overwrite)


@ingest_app.command("bold5000")
def bold5000_cmd(
    root: Root, out: Out,
    subject: Annotated[int, typer.Option("--subject", "-s", help="CSI subject 1..4.")] = 1,
    source: Annotated[str, typer.Option(help="'glmsingle' (release 2.0) or 'roi' (release 1).")] = "glmsingle",
    variant: Annotated[str, typer.Option(help="GLMsingle variant.")] = "TYPED-FITHRF-GLMDENOISE-RR",
    mask: Annotated[Path | None, typer.Option(help="NIfTI mask of the voxels to keep.")] = None,
    tr: Annotated[str, typer.Option(help="Release-1 TR window.")] = "34",
    overwrite: Overwrite = False,
) -> None:
    """BOLD5000 betas of one subject."""
    from neuroalign.datasets import bold5000_plan

    _run(lambda: bold5000_plan(root, subject, source=source, variant=variant, mask=mask, tr=tr), out, overwrite)


@ingest_app.command("things-eeg2")
def eeg2_cmd(
    root: Root, out: Out,
    subject: Annotated[int, typer.Option("--subject", "-s", help="Subject number.")] = 1,
    overwrite: Overwrite = False,
) -> None:
    """THINGS-EEG2 preprocessed data of one subject."""
    from neuroalign.datasets import things_eeg2_plan

    _run(lambda: things_eeg2_plan(root, subject), out, overwrite)


@ingest_app.command("things-meg")
def meg_cmd(
    root: Root, out: Out,
    subject: Annotated[int, typer.Option("--subject", "-s", help="Participant 1..4.")] = 1,
    overwrite: Overwrite = False,
) -> None:
    """THINGS-MEG preprocessed epochs of one participant."""
    from neuroalign.datasets import things_meg_plan

    _run(lambda: things_meg_plan(root, subject), out, overwrite)


@ingest_app.command("mne")
def mne_cmd(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="MNE epochs file (*-epo.fif).")],
    out: Out,
    stimulus_column: Annotated[str, typer.Option(help="Metadata column naming the stimulus.")],
    metadata: Annotated[Path | None, typer.Option(help="CSV or BIDS events.tsv, one row per epoch.")] = None,
    prefix: Annotated[str, typer.Option(help="Prefix of the stimulus ids.")] = "",
    stem: Annotated[bool, typer.Option("--stem", help="Use the file stem of the stimulus values.")] = False,
    split_column: Annotated[str | None, typer.Option(help="Column marking the test split.")] = None,
    test_value: Annotated[list[str] | None, typer.Option(help="Values of split_column meaning test.")] = None,
    subject: Annotated[str, typer.Option(help="Subject label.")] = "sub-01",
    dataset: Annotated[str, typer.Option(help="Dataset name recorded on the store.")] = "mne",
    overwrite: Overwrite = False,
) -> None:
    """Any MNE epochs file."""
    from neuroalign.datasets import mne_epochs_plan

    _run(lambda: mne_epochs_plan(path, stimulus_column=stimulus_column, metadata=metadata,
                                 stimulus_prefix=prefix, stem=stem, split_column=split_column,
                                 test_values=tuple(test_value or ("test",)), subject=subject,
                                 dataset=dataset), out, overwrite)


@ingest_app.command("things-fmri")
def things_fmri_cmd(
    root: Root, out: Out,
    subject: Annotated[int, typer.Option("--subject", "-s", help="Subject 1..3.")] = 1,
    overwrite: Overwrite = False,
) -> None:
    """THINGS-fMRI single-trial table format of one subject (streamed in blocks of trials)."""
    from neuroalign.datasets import things_fmri_plan

    _run(lambda: things_fmri_plan(root, subject), out, overwrite)
