"""BOLD5000 (the card datasets/bold5000.toml): release-2.0 GLMsingle betas and release-1 ROI ``.mat`` files."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.datasets._cards import published
from neuroalign.datasets._formats import (
    check_choice,
    load_mat,
    load_nifti,
    nifti_array,
    repetition_index,
    warn_count,
)
from neuroalign.datasets._ingest import Block, IngestPlan, file_fingerprint
from neuroalign.datasets._text import read_lines
from neuroalign.exceptions import DataFormatError
from neuroalign.store._schema import SCHEMA_VERSION

__all__ = ["load_bold5000", "bold5000_plan", "BOLD5000_VARIANTS", "BOLD5000_ROIS"]

BOLD5000_VARIANTS = ("TYPEA-ASSUMEHRF", "TYBEB-FITHRF", "TYPEC-FITHRF-GLMDENOISE", "TYPED-FITHRF-GLMDENOISE-RR")
BOLD5000_ROIS = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")
_TRS = ("1", "2", "3", "4", "5", "34")


def _subject(subject: int | str) -> int:
    s = subject
    if isinstance(s, str):
        m = re.fullmatch(r"(?:sub-)?(?:CSI)?0*(\d+)", s)
        s = int(m.group(1)) if m else s
    check_choice(s, (1, 2, 3, 4), name="subject", func="load_bold5000")
    return int(s)


def _find(root: Path, pattern: str, what: str) -> list[Path]:
    found = sorted(root.rglob(pattern))
    if not found:
        raise FileNotFoundError(f"{root}: no file matching {pattern!r} (expected {what}).")
    return found


def _find_one(root: Path, name: str, what: str, *, required: bool = True) -> Path | None:
    """The single file called ``name`` under ``root``; two copies are an error, not a guess."""
    found = sorted(p for p in root.rglob(name) if p.is_file())
    if not found:
        if required:
            raise FileNotFoundError(f"{root}: no file matching {name!r} (expected {what}).")
        return None
    if len(found) > 1:
        raise DataFormatError(
            f"{root}: found {len(found)} files named {name!r} "
            f"({format_list([str(p.relative_to(root)) for p in found])}); expected one ({what}). "
            "Move the extra copies away."
        )
    return found[0]


def _session_files(root: Path, n: int, variant: str) -> dict[int, Path]:
    """``{session: file}`` of the GLMsingle betas; stray names and duplicates raise."""
    prefix = f"CSI{n}_GLMbetas-{variant}_ses-"
    strict = re.compile(rf"^{re.escape(prefix)}(\d+)\.nii\.gz$")
    out: dict[int, Path] = {}
    for p in _find(root, f"{prefix}*.nii.gz", f"release-2.0 GLMsingle betas of CSI{n}"):
        m = strict.match(p.name)
        if not m:
            raise DataFormatError(
                f"{p}: unexpected file name; expected {prefix}NN.nii.gz. Move it away (a copy?)."
            )
        ses = int(m.group(1))
        if ses in out:
            raise DataFormatError(
                f"{p}: a second file for session {ses} (besides {out[ses]}); expected one file per "
                "session. Move one of them away."
            )
        out[ses] = p
    return dict(sorted(out.items()))


def _stimulus_ids(names: list[str]) -> np.ndarray:
    return np.array([f"bold5000-{Path(n.strip()).stem}" for n in names])


def _test_split(root: Path, ids: np.ndarray) -> np.ndarray:
    path = _find_one(root, "repeated_stimuli_113_list.txt", "the list of repeated images",
                     required=False)
    if path is not None:
        rep = {f"bold5000-{Path(x).stem}" for x in read_lines(path, "the repeated image names")}
    else:
        u, c = np.unique(ids, return_counts=True)
        rep = set(u[c > 1])
        warnings.warn(
            f"{root}: no repeated_stimuli_113_list.txt; the test split is the {len(rep)} images "
            "shown more than once.", UserWarning, stacklevel=4,
        )
    return np.where(np.isin(ids, sorted(rep)), "test", "train")


def bold5000_plan(
    root: str | os.PathLike,
    subject: int | str,
    *,
    source: Literal["glmsingle", "roi"] = "glmsingle",
    variant: str = "TYPED-FITHRF-GLMDENOISE-RR",
    mask: str | os.PathLike | None = None,
    tr: str = "34",
) -> IngestPlan:
    """The ingest plan behind :func:`load_bold5000` (same parameters).

    Parameters
    ----------
    root, subject, source, variant, mask, tr
        As :func:`load_bold5000`.

    Returns
    -------
    IngestPlan
        The store's coordinates and attrs, and its responses as blocks read on demand
        (``plan.load()`` is ``load_bold5000(...)``; ``neuroalign ingest`` streams the blocks).
    """
    root = Path(root)
    n = _subject(subject)
    check_choice(source, ("glmsingle", "roi"), name="source", func="load_bold5000")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected a BOLD5000 download).")
    if source == "roi":
        return _roi_plan(root, n, str(tr))
    check_choice(variant, BOLD5000_VARIANTS, name="variant", func="load_bold5000")
    by_session = _session_files(root, n, variant)
    files = list(by_session.values())
    ses_of = {p: s for s, p in by_session.items()}
    names_path = _find_one(root, f"sub-CSI{n}_imgnames.txt", f"the image-name order of CSI{n}")
    names = read_lines(names_path, f"the image-name order of CSI{n}")
    counts, shape, affine = [], None, None
    for p in files:
        img = load_nifti(p, "GLMsingle betas (X, Y, Z, trials)")
        if len(img.shape) != 4:
            raise DataFormatError(f"{p}: image has shape {img.shape!r}, expected 4 dims (X, Y, Z, trials).")
        if np.dtype(img.get_data_dtype()).kind != "f":
            raise DataFormatError(
                f"{p}: image dtype is {np.dtype(img.get_data_dtype())!s}, expected float (GLMsingle "
                "betas are PSC)."
            )
        if shape is None:
            shape, affine = img.shape[:3], img.affine
        elif img.shape[:3] != shape:
            raise DataFormatError(f"{p}: volume {img.shape[:3]!r}, expected {shape!r} like {files[0].name}.")
        counts.append(img.shape[3])
    total = int(sum(counts))
    if total != len(names):
        raise DataFormatError(
            f"{names_path}: {len(names)} image names, but the {len(files)} session files hold "
            f"{total} trials ({format_list(counts)}). Expected one name per trial."
        )
    warn_count(files[0], "the volume shape (X, Y, Z)", list(shape), published("bold5000", "volume", n), f"CSI{n}")
    if len(files) == published("bold5000", "sessions", n):
        warn_count(names_path, "the number of trials", total, published("bold5000", "trials", n), f"CSI{n}")
    if mask is not None:
        mimg = load_nifti(Path(mask), "a brain mask (X, Y, Z)")
        mvol = nifti_array(mimg, Path(mask))
        if mvol.shape[:3] != shape:
            raise DataFormatError(
                f"{mask}: volume of shape {mvol.shape!r}, but the betas have (X, Y, Z) = {shape!r}. "
                "Expected a mask aligned to the betas."
            )
        keep = mvol.reshape(shape) > 0
    else:
        first = nifti_array(load_nifti(files[0]), files[0])
        keep = (np.isfinite(first) & (first != 0)).any(axis=3)
        del first
    ijk = np.argwhere(keep)
    ids = _stimulus_ids(names)
    session = np.repeat([ses_of[p] for p in files], counts)
    xyz = np.c_[ijk, np.ones(len(ijk))] @ np.asarray(affine).T
    coords = {
        "stimulus_id": ("presentation", ids),
        "image_name": ("presentation", np.array([x.strip() for x in names])),
        "repetition": ("presentation", repetition_index(ids)),
        "session": ("presentation", session.astype(np.int64)),
        "trial": ("presentation", np.arange(total, dtype=np.int64)),
        "split": ("presentation", _test_split(root, ids)),
        "neuroid_id": ("neuroid", np.array([f"CSI{n}_{a}_{b}_{c}" for a, b, c in ijk])),
        "subject": ("neuroid", np.array([f"CSI{n}"] * len(ijk))),
        "hemisphere": ("neuroid", np.where(xyz[:, 0] < 0, "lh", "rh")),
        "i": ("neuroid", ijk[:, 0].astype(np.int64)),
        "j": ("neuroid", ijk[:, 1].astype(np.int64)),
        "k": ("neuroid", ijk[:, 2].astype(np.int64)),
    }
    blocks, start = [], 0
    for p, c in zip(files, counts, strict=True):
        def read(p=p):
            arr = nifti_array(load_nifti(p), p)
            return arr[ijk[:, 0], ijk[:, 1], ijk[:, 2], :].T.astype(np.float32)

        blocks.append(Block(str(p), start, start + c, read, files=(p,)))
        start += c
    attrs = {
        "dataset": "bold5000", "space": "func (release 2.0)", "units": "percent signal change",
        "schema_version": SCHEMA_VERSION, "subject": f"CSI{n}", "variant": variant,
        "affine": np.asarray(affine).tolist(), "volume_shape": [int(x) for x in shape],
        "source": {"root": str(root.resolve()), "files": [str(p.relative_to(root)) for p in [*files, names_path]]},
    }
    fp = {"adapter": "bold5000", "files": file_fingerprint([*files, names_path]), "mask": str(mask)}
    return IngestPlan(xr.Dataset(coords=coords, attrs=attrs), ("presentation", "neuroid"), blocks, fp,
                      desc=f"BOLD5000 CSI{n} sessions")


def _roi_plan(root: Path, n: int, tr: str) -> IngestPlan:
    check_choice(tr, _TRS, name="tr", func="load_bold5000")
    mat_path = _find_one(root, f"CSI{n}_ROIs_TR{tr}.mat", f"release-1 ROI betas of CSI{n}")
    # note the padding: CSI01 in the stim list, CSI1 in the ROI folders
    list_path = _find_one(root, f"CSI0{n}_stim_lists.txt", f"the stimulus list of CSI{n} (CSI0{n})")
    keys = [f"{h}{r}" for r in BOLD5000_ROIS for h in ("LH", "RH")]
    mat = load_mat(mat_path, keys)
    names = read_lines(list_path, f"the stimulus list of CSI{n}")
    parts, hemi, roi_of = [], [], []
    for key in keys:
        arr = np.asarray(mat[key])
        if arr.ndim != 2 or arr.dtype.kind != "f":
            raise DataFormatError(
                f"{mat_path}: {key!r} has shape {arr.shape!r} dtype {arr.dtype!s}, expected float (n_trials, n_voxels)."
            )
        if arr.shape[0] != len(names):
            raise DataFormatError(
                f"{mat_path}: {key!r} has {arr.shape[0]} trials, but {list_path.name} lists {len(names)} "
                "stimuli. Expected one row per listed stimulus."
            )
        parts.append(arr.astype(np.float32))
        hemi += [key[:2].lower()] * arr.shape[1]
        roi_of += [key[2:]] * arr.shape[1]
    values = np.concatenate(parts, axis=1)
    roi_of = np.array(roi_of)
    hemis = np.array(hemi)
    nid = []
    counter: dict[str, int] = {}
    for h, r in zip(hemis, roi_of, strict=True):
        k = f"{h.upper()}{r}"
        nid.append(f"CSI{n}_{k}_{counter.get(k, 0):04d}")
        counter[k] = counter.get(k, 0) + 1
    ids = _stimulus_ids(names)
    coords = {
        "stimulus_id": ("presentation", ids),
        "image_name": ("presentation", np.array([x.strip() for x in names])),
        "repetition": ("presentation", repetition_index(ids)),
        "trial": ("presentation", np.arange(len(names), dtype=np.int64)),
        "split": ("presentation", _test_split(root, ids)),
        "neuroid_id": ("neuroid", np.array(nid)),
        "subject": ("neuroid", np.array([f"CSI{n}"] * len(nid))),
        "hemisphere": ("neuroid", hemis),
    }
    for r in BOLD5000_ROIS:
        coords[f"roi_{r}"] = ("neuroid", roi_of == r)
    attrs = {
        "dataset": "bold5000", "space": f"roi (release 1, TR{tr})", "units": "percent signal change",
        "schema_version": SCHEMA_VERSION, "subject": f"CSI{n}",
        "source": {"files": [str(mat_path), str(list_path)]},
    }
    blocks = [Block(str(mat_path), 0, len(names), lambda: values, files=(mat_path,))]
    return IngestPlan(xr.Dataset(coords=coords, attrs=attrs), ("presentation", "neuroid"), blocks,
                      {"adapter": "bold5000-roi", "files": file_fingerprint([mat_path, list_path])})


def load_bold5000(
    root: str | os.PathLike,
    subject: int | str,
    *,
    source: Literal["glmsingle", "roi"] = "glmsingle",
    variant: str = "TYPED-FITHRF-GLMDENOISE-RR",
    mask: str | os.PathLike | None = None,
    tr: str = "34",
) -> xr.Dataset:
    """Load one BOLD5000 subject (CSI1..CSI4) as a store.

    Parameters
    ----------
    root : path-like
        Folder holding the downloads (searched recursively for the file names below).
    subject : int or str
        1..4, ``"CSI1"`` or ``"sub-CSI1"``.
    source : {"glmsingle", "roi"}
        ``"glmsingle"``: release-2.0 per-session NIfTIs
        ``CSI{N}_GLMbetas-<variant>_ses-XX.nii.gz`` (X, Y, Z, trials; PSC) with the trial
        order of ``sub-CSI{N}_imgnames.txt``. ``"roi"``: release-1
        ``CSI{N}_ROIs_TR<tr>.mat`` (keys ``LHEarlyVis`` ... ``RHRSC``) with the trial
        order of ``CSI0{N}_stim_lists.txt`` (note the zero padding).
    variant : str
        GLMsingle variant (``"TYPED-FITHRF-GLMDENOISE-RR"``, ...; ``"TYBEB-FITHRF"`` is
        spelled as published).
    mask : path-like, optional
        NIfTI mask (X, Y, Z) of the voxels to keep; default: voxels with a finite, non-zero
        beta in the first session.
    tr : str
        Release-1 TR window (``"1"``..``"5"``, ``"34"``).

    Returns
    -------
    xr.Dataset
        Store with ``responses`` of dims ('presentation', 'neuroid'). ``stimulus_id`` is
        ``bold5000-<file stem>``; the 113 repeated images (``repeated_stimuli_113_list.txt``)
        are the test split.
    """
    return bold5000_plan(root, subject, source=source, variant=variant, mask=mask, tr=tr).load()

