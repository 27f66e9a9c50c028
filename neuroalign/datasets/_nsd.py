"""NSD (Allen et al. 2022) single-trial betas -> store (the card datasets/nsd.toml).

Volume spaces (``func1pt8mm``, ``func1mm``; HDF5 (trials, Z, Y, X) or NIfTI (X, Y, Z, trials),
int16 = PSC x 300) and surface spaces (``fsaverage``: float32 PSC ``.mgh`` per hemisphere;
``nativesurface``: int16 x 300 HDF5 (trials, vertices)). Trials map to images through
``nsd_expdesign.mat`` (1-based there, 0-based ``nsdId`` here). Sessions are read one file
at a time; :func:`ingest_nsd` streams them into a zarr store.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign._validation import format_list
from neuroalign.datasets._cards import published
from neuroalign.datasets._formats import (
    MissingSessionsWarning,
    check_choice,
    check_label_names,
    check_labels,
    load_mgh,
    load_nifti,
    nifti_array,
    repetition_index,
    require_file,
    warn_count,
)
from neuroalign.datasets._ingest import Block, IngestPlan, describe_files, file_fingerprint
from neuroalign.datasets._nsd_files import (
    _AXES_HINT,
    _agree,
    _design,
    _read_surface,
    _read_volume_hdf5,
    _read_volume_nifti,
    _session_files,
    _trial_count,
)
from neuroalign.datasets._text import read_ctab
from neuroalign.exceptions import DataFormatError
from neuroalign.store._schema import SCHEMA_VERSION

__all__ = ["load_nsd", "ingest_nsd", "nsd_plan", "NSD_SPACES", "NSD_BETAS", "NSD_DEFAULT_ROIS"]

log = get_logger(__name__)

NSD_SPACES = ("func1pt8mm", "func1mm", "fsaverage", "nativesurface")
NSD_BETAS = ("betas_assumehrf", "betas_fithrf", "betas_fithrf_GLMdenoise_RR")
NSD_DEFAULT_ROIS = ("prf-visualrois", "floc-faces", "floc-bodies", "floc-places", "floc-words", "streams")
NSD_SUBJECTS = tuple(range(1, 9))
def _subject_number(subject: int | str) -> int:
    s = subject
    if isinstance(s, str):
        m = re.fullmatch(r"(?:subj)?0*(\d+)", s)
        s = int(m.group(1)) if m else s
    check_choice(s, NSD_SUBJECTS, name="subject", func="load_nsd")
    return int(s)


def _atlas_names(folder: Path, suffixes: Sequence[str], prefixed: bool) -> list[str]:
    names = set()
    if folder.exists():
        for p in folder.iterdir():
            for suf in suffixes:
                if p.name.endswith(suf):
                    stem = p.name[: -len(suf)]
                    if prefixed:
                        if stem.startswith(("lh.", "rh.")):
                            names.add(stem[3:])
                    elif not stem.startswith(("lh.", "rh.")):
                        names.add(stem)
    return sorted(names)


def _available_defaults(rois: Sequence[str], valid: list[str], folder: Path) -> tuple[str, ...]:
    """The default ROI list keeps only the files present (fsaverage has atlases only);
    an explicit list is kept as given, so a missing file raises."""
    rois = tuple(rois)
    if rois != NSD_DEFAULT_ROIS:
        return rois
    missing = [r for r in rois if r not in valid]
    if missing:
        log.info("default ROIs %s not in %s; left out", ", ".join(missing), folder)
    return tuple(r for r in rois if r in valid)


def _roi_coords(values: np.ndarray, labels: dict[int, str], coords: dict, atlas: str) -> None:
    for idx, name in sorted(labels.items()):
        if idx <= 0:
            continue
        member = values == idx
        if member.any():
            key = f"roi_{name}"
            if key in coords:
                key = f"roi_{atlas}.{name}"
            coords[key] = ("neuroid", member)


def nsd_plan(
    root: str | os.PathLike,
    subject: int | str,
    *,
    space: Literal["func1pt8mm", "func1mm", "fsaverage", "nativesurface"] = "func1pt8mm",
    betas: str = "betas_fithrf_GLMdenoise_RR",
    mask: str | None = "nsdgeneral",
    rois: Sequence[str] = NSD_DEFAULT_ROIS,
    sessions: Sequence[int] | None = None,
    format: Literal["auto", "hdf5", "nifti"] = "auto",
) -> IngestPlan:
    """The ingest plan behind :func:`load_nsd` and :func:`ingest_nsd` (same parameters).

    Parameters
    ----------
    root, subject, space, betas, mask, rois, sessions, format
        As :func:`load_nsd`.

    Returns
    -------
    IngestPlan
        The store's coordinates and attrs, and its responses as blocks read on demand
        (``plan.load()`` is ``load_nsd(...)``; ``neuroalign ingest`` streams the blocks).
    """
    root = Path(root)
    s = _subject_number(subject)
    subj = f"subj{s:02d}"
    check_choice(space, NSD_SPACES, name="space", func="load_nsd")
    check_choice(betas, NSD_BETAS, name="betas", func="load_nsd")
    check_choice(format, ("auto", "hdf5", "nifti"), name="format", func="load_nsd")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected an NSD root with nsddata/, nsddata_betas/).")
    simulated = (root / "truth.json").exists()
    card = "simulated" if simulated else "nsd"

    beta_dir = root / f"nsddata_betas/ppdata/{subj}/{space}/{betas}"
    if not beta_dir.is_dir():
        base = root / "nsddata_betas/ppdata"
        present = sorted(p.name for p in base.iterdir()) if base.is_dir() else []
        raise FileNotFoundError(
            f"{beta_dir}: no such folder. Subjects present under {base}: "
            f"{format_list(present) or 'none'}; check subject, space and betas."
        )
    design_path, nsd_of_trial, shared, runs = _design(root, s)
    files = _session_files(beta_dir, space)
    if not files:
        raise FileNotFoundError(f"{beta_dir}: no betas_sessionNN files found.")
    present = sorted(files)
    if sessions is not None:
        wanted = sorted({int(x) for x in sessions})
        missing = [x for x in wanted if x not in files]
        if missing:
            raise FileNotFoundError(
                f"{beta_dir}: no beta files for session(s) {format_list(missing)}. "
                f"Sessions present: {format_list(present)}."
            )
    else:
        wanted = present

    # -- trials per session, checked against each other and the design ------------------
    counts = {}
    geom = {}
    for sess in wanted:
        n, shape, path = _trial_count(files[sess], space, format)
        counts[sess], geom[sess] = (n, path), shape
    first = wanted[0]
    paths = {sess: counts[sess][1] for sess in wanted}
    per_session = _agree({x: counts[x][0] for x in wanted}, paths, "{} trials",
                         " (every NSD session has the same number of trials)")
    _agree(geom, paths, "data shape {!r}", "")
    first_path = paths[first]
    if not simulated:
        warn_count(first_path, "the number of trials", per_session, published("nsd", "trials_per_session"), subj)
    n_design = len(nsd_of_trial)
    for sess in wanted:
        if sess * per_session > n_design:
            raise DataFormatError(
                f"{counts[sess][1]}: session {sess} of {per_session} trials needs trials up to "
                f"{sess * per_session}, but {design_path.name} 'masterordering' has only "
                f"{n_design} trials. The expdesign disagrees with the betas."
            )
    n_expected = n_design // per_session
    pub_sessions = published(card, "sessions", s) if not simulated else None
    if pub_sessions:
        n_expected = min(n_expected, int(pub_sessions))
    absent = [x for x in range(1, n_expected + 1) if x not in files]
    if absent and sessions is None:
        warnings.warn(
            f"{beta_dir}: session file(s) {format_list(absent)} of {subj} are absent "
            f"(sessions present: {format_list(present)}); the store holds the "
            f"{len(present) * per_session} trials of the sessions present. Public NSD copies "
            "withhold the last sessions.",
            MissingSessionsWarning,
            stacklevel=3,
        )

    # -- presentations --------------------------------------------------------------------
    reps_all = repetition_index(nsd_of_trial)
    trial = np.concatenate([np.arange((x - 1) * per_session, x * per_session) for x in wanted])
    nsd_id = nsd_of_trial[trial]
    within = trial % per_session
    coords: dict = {
        "stimulus_id": ("presentation", np.array([f"nsd-{int(n):05d}" for n in nsd_id])),
        "nsd_id": ("presentation", nsd_id.astype(np.int64)),
        "repetition": ("presentation", reps_all[trial].astype(np.int64)),
        "session": ("presentation", (trial // per_session + 1).astype(np.int64)),
        "run": ("presentation", (within * runs // per_session + 1).astype(np.int64)),
        "trial": ("presentation", trial.astype(np.int64)),
        "split": ("presentation", np.where(np.isin(nsd_id, shared), "test", "train")),
    }

    # -- neuroids ---------------------------------------------------------------------------
    data_vars: dict = {}
    attrs: dict = {}
    sources = [design_path]
    if space in ("func1pt8mm", "func1mm"):
        blocks, sources = _volume_neuroids(
            root, s, subj, space, mask, rois, beta_dir, files, wanted, geom[first], per_session,
            format, coords, data_vars, attrs, sources, simulated,
        )
    else:
        blocks, sources = _surface_neuroids(
            root, s, subj, space, mask, rois, beta_dir, files, wanted, geom[first], per_session,
            coords, data_vars, attrs, sources, simulated,
        )
    stim_path = root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
    attrs.update({
        "dataset": "nsd",
        "space": space,
        "units": "percent signal change",
        "schema_version": SCHEMA_VERSION,
        "subject": subj,
        "betas": betas,
        "sessions": [int(x) for x in wanted],
        "sessions_absent": [int(x) for x in absent],
        "source": {
            "root": str(root.resolve()),
            "files": describe_files(
                [*dict.fromkeys(sources), *sorted({p for k in wanted for p in files[k].values()})], root,
            ),
        },
        "stimulus_set": {
            "kind": "hdf5-brick",
            "path": str(stim_path.resolve()),
            "key": "imgBrick",
            "id_coord": "nsd_id",
        },
    })
    skeleton = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    fp = {
        "adapter": "nsd", "subject": s, "space": space, "betas": betas, "mask": mask,
        "rois": list(rois), "sessions": wanted, "format": format,
        "files": file_fingerprint(sorted({p for k in wanted for p in files[k].values()})),
    }
    return IngestPlan(skeleton, ("presentation", "neuroid"), blocks, fp, desc=f"NSD {subj} sessions")


def _volume_neuroids(root, s, subj, space, mask, rois, beta_dir, files, wanted, shape,
                     per_session, format, coords, data_vars, attrs, sources, simulated):
    pp = root / f"nsddata/ppdata/{subj}/{space}"
    roi_dir = pp / "roi"
    valid = _atlas_names(roi_dir, (".nii.gz", ".nii"), prefixed=False)
    rois = _available_defaults(rois, valid, roi_dir)
    for atlas in ([mask] if mask else []) + list(rois):
        if atlas not in valid:
            raise ValueError(
                f"Unknown ROI {atlas!r} for {subj} {space}: no {atlas}.nii.gz in {roi_dir}. "
                f"Valid ROIs: {format_list(valid) or 'none'}."
            )

    kinds0 = files[wanted[0]]
    betas0 = kinds0["hdf5"] if "hdf5" in kinds0 and format != "nifti" else kinds0["nifti"]

    def read_vol(path: Path, what: str, labels: bool = True) -> tuple[np.ndarray, np.ndarray]:
        img = load_nifti(path, what)
        arr = nifti_array(img, path)
        arr = arr.reshape(arr.shape[:3]) if arr.ndim == 4 and arr.shape[3] == 1 else arr
        if arr.shape != tuple(shape):
            raise DataFormatError(
                f"{path}: volume of shape {arr.shape!r} (X, Y, Z), but the betas ({betas0.name}) "
                f"have (X, Y, Z) = {tuple(shape)!r}. Expected a volume aligned to the betas "
                f"({_AXES_HINT})."
            )
        sources.append(path)
        return (check_labels(arr, path) if labels else arr), img.affine

    mask_path = roi_dir / f"{mask}.nii.gz" if mask else pp / "brainmask.nii.gz"
    mvol, affine = read_vol(mask_path, "an ROI volume (X, Y, Z)")
    ijk = np.argwhere(mvol > 0)  # C order of (X, Y, Z)
    if len(ijk) == 0:
        raise DataFormatError(
            f"{mask_path}: no voxel > 0; expected a mask with at least one voxel."
        )
    if not simulated and mask == "nsdgeneral" and space == "func1pt8mm":
        warn_count(mask_path, "the nsdgeneral voxel count", len(ijk), published("nsd", "nsdgeneral_voxels_func1pt8mm", s), subj)
    if not simulated:
        warn_count(mask_path, "the volume shape (X, Y, Z)", list(shape), published("nsd", f"volume_{space}", s), subj)
    i, j, k = ijk.T
    hemi = None
    if mask:
        lh_path, rh_path = roi_dir / f"lh.{mask}.nii.gz", roi_dir / f"rh.{mask}.nii.gz"
        if lh_path.exists() and rh_path.exists():
            lh = read_vol(lh_path, "a left-hemisphere ROI volume")[0][i, j, k] > 0
            rh = read_vol(rh_path, "a right-hemisphere ROI volume")[0][i, j, k] > 0
            if (lh | rh).all():
                hemi = np.where(lh, "lh", "rh")
    if hemi is None:  # from the affine: RAS x < 0 is left
        xyz = np.c_[ijk, np.ones(len(ijk))] @ np.asarray(affine).T
        hemi = np.where(xyz[:, 0] < 0, "lh", "rh")
    coords.update({
        "neuroid_id": ("neuroid", np.array([f"subj{s:02d}_{a}_{b}_{c}" for a, b, c in ijk])),
        "subject": ("neuroid", np.array([subj] * len(ijk))),
        "hemisphere": ("neuroid", np.asarray(hemi)),
        "i": ("neuroid", i.astype(np.int64)),
        "j": ("neuroid", j.astype(np.int64)),
        "k": ("neuroid", k.astype(np.int64)),
    })
    for atlas in rois:
        vol_path = roi_dir / f"{atlas}.nii.gz"
        vol, _ = read_vol(vol_path, "an ROI volume (X, Y, Z)")
        labels, table = _ctab_for(root, subj, atlas)
        check_label_names(vol, labels, vol_path, table, "voxel(s)")
        _roi_coords(vol[i, j, k], labels, coords, atlas)
    nc_path = beta_dir / "ncsnr.nii.gz"
    if nc_path.exists():
        nc, _ = read_vol(nc_path, "an ncsnr volume (X, Y, Z)", labels=False)
        data_vars["ncsnr"] = ("neuroid", nc[i, j, k].astype(np.float32))
    attrs["affine"] = np.asarray(affine).tolist()
    attrs["volume_shape"] = [int(x) for x in shape]

    blocks = []
    for sess in wanted:
        kinds = files[sess]
        use_h5 = "hdf5" in kinds and format != "nifti"
        path = kinds["hdf5"] if use_h5 else kinds["nifti"]
        reader = _read_volume_hdf5 if use_h5 else _read_volume_nifti
        start = wanted.index(sess) * per_session
        blocks.append(Block(str(path), start, start + per_session,
                            (lambda p=path, r=reader: r(p, ijk)), files=(path,)))
    return blocks, sources


def _ctab_for(root: Path, subj: str, atlas: str) -> tuple[dict[int, str], Path]:
    candidates = [root / f"nsddata/freesurfer/{subj}/label/{atlas}.mgz.ctab",
                  root / f"nsddata/freesurfer/fsaverage/label/{atlas}.mgz.ctab"]
    for c in candidates:
        if c.exists():
            return read_ctab(c), c
    require_file(candidates[0], f"the label table of ROI {atlas!r}")
    raise AssertionError("unreachable")  # pragma: no cover


def _surface_neuroids(root, s, subj, space, mask, rois, beta_dir, files, wanted, nverts,
                      per_session, coords, data_vars, attrs, sources, simulated):
    label_dir = root / (f"nsddata/freesurfer/{'fsaverage' if space == 'fsaverage' else subj}/label")
    valid = _atlas_names(label_dir, (".mgz", ".mgh"), prefixed=True)
    rois = _available_defaults(rois, valid, label_dir)
    for atlas in ([mask] if mask else []) + list(rois):
        if atlas not in valid:
            raise ValueError(
                f"Unknown ROI {atlas!r} for {subj} {space}: no lh/rh.{atlas}.mgz in {label_dir}. "
                f"Valid ROIs: {format_list(valid) or 'none'}."
            )
    if not simulated and space == "nativesurface":
        warn_count(files[wanted[0]]["lh"], "the lh/rh vertex counts", list(nverts),
                   published("nsd", "nativesurface_vertices", s), subj)

    def read_label(hemi: str, atlas: str, n: int) -> tuple[np.ndarray, Path]:
        path = label_dir / f"{hemi}.{atlas}.mgz"
        arr = load_mgh(path, "a surface ROI label file")
        if arr.ndim != 1 or arr.shape[0] != n:
            raise DataFormatError(
                f"{path}: {arr.shape!r} values, but the {hemi} betas have {n} vertices. "
                "Expected a label file of the betas' surface."
            )
        sources.append(path)
        return check_labels(arr, path), path

    verts = {}
    for h, hemi in enumerate(("lh", "rh")):
        n = nverts[h]
        verts[hemi] = np.flatnonzero(read_label(hemi, mask, n)[0] > 0) if mask else np.arange(n)
    if not sum(len(v) for v in verts.values()):
        raise DataFormatError(
            f"{label_dir / f'lh.{mask}.mgz'}: no vertex > 0 in either hemisphere; expected a mask "
            "with at least one vertex."
        )
    hemi_of = np.concatenate([np.full(len(verts["lh"]), "lh"), np.full(len(verts["rh"]), "rh")])
    vertex = np.concatenate([verts["lh"], verts["rh"]])
    coords.update({
        "neuroid_id": ("neuroid", np.array([f"{subj}_{h}_{v}" for h, v in zip(hemi_of, vertex, strict=True)])),
        "subject": ("neuroid", np.array([subj] * len(vertex))),
        "hemisphere": ("neuroid", hemi_of),
        "vertex": ("neuroid", vertex.astype(np.int64)),
    })
    for atlas in rois:
        ctab = label_dir / f"{atlas}.mgz.ctab"
        labels, ctab = (read_ctab(ctab), ctab) if ctab.exists() else _ctab_for(root, subj, atlas)
        vals = []
        for n, h in enumerate(("lh", "rh")):
            arr, path = read_label(h, atlas, nverts[n])
            check_label_names(arr, labels, path, ctab, "vertex(es)")
            vals.append(arr[verts[h]])
        _roi_coords(np.concatenate(vals), labels, coords, atlas)
    nc = [beta_dir / f"{h}.ncsnr.mgh" for h in ("lh", "rh")]
    if all(p.exists() for p in nc):
        vals = []
        for n, (h, p) in enumerate(zip(("lh", "rh"), nc, strict=True)):
            arr = load_mgh(p, "an ncsnr surface file")
            if arr.shape[0] != nverts[n]:
                raise DataFormatError(f"{p}: {arr.shape[0]} vertices, expected {nverts[n]} like the betas.")
            vals.append(arr.reshape(arr.shape[0])[verts[h]])
            sources.append(p)
        data_vars["ncsnr"] = ("neuroid", np.concatenate(vals).astype(np.float32))
    blocks = []
    for sess in wanted:
        start = wanted.index(sess) * per_session
        blocks.append(Block(str(files[sess]["lh"]), start, start + per_session,
                            (lambda k=files[sess]: _read_surface(k, space, verts)),
                            files=(files[sess]["lh"], files[sess]["rh"])))
    return blocks, sources


def load_nsd(
    root: str | os.PathLike,
    subject: int | str,
    *,
    space: Literal["func1pt8mm", "func1mm", "fsaverage", "nativesurface"] = "func1pt8mm",
    betas: str = "betas_fithrf_GLMdenoise_RR",
    mask: str | None = "nsdgeneral",
    rois: Sequence[str] = NSD_DEFAULT_ROIS,
    sessions: Sequence[int] | None = None,
    format: Literal["auto", "hdf5", "nifti"] = "auto",
) -> xr.Dataset:
    """Load one NSD subject's single-trial betas as a store.

    Parameters
    ----------
    root : path-like
        A local mirror of the NSD bucket (``nsddata/``, ``nsddata_betas/``,
        ``nsddata_stimuli/``). NSD is never downloaded by neuroalign (see
        ``datasets/nsd.toml`` for its terms of use).
    subject : int or str
        1..8 (or ``"subj01"``).
    space : {"func1pt8mm", "func1mm", "fsaverage", "nativesurface"}
        Volume spaces read HDF5 (trials, Z, Y, X) or NIfTI (X, Y, Z, trials) int16 betas and
        divide by 300; ``fsaverage`` reads float PSC ``.mgh`` files (no scaling, NaN
        vertices kept and logged); ``nativesurface`` reads int16 HDF5 (trials, vertices).
    betas : str
        Beta version: ``"betas_assumehrf"``, ``"betas_fithrf"`` or
        ``"betas_fithrf_GLMdenoise_RR"``.
    mask : str or None
        ROI file whose positive voxels/vertices are kept (default ``"nsdgeneral"``);
        ``None`` keeps the brain mask (volume) or every vertex (surface).
    rois : sequence of str
        ROI files whose labels (from their ``.ctab``) become boolean coordinates
        ``roi_<label>`` for every label with at least one neuroid.
    sessions : sequence of int, optional
        1-based sessions to read (default: every session file present; absent sessions are
        named in a :class:`MissingSessionsWarning`).
    format : {"auto", "hdf5", "nifti"}
        Volume beta files to read when both are present (``"auto"`` prefers HDF5).

    Returns
    -------
    xr.Dataset
        Store with ``responses`` of dims ('presentation', 'neuroid') in percent signal
        change, in global trial order. Presentation coords ``stimulus_id``
        (``nsd-{nsdId:05d}``, 0-based), ``nsd_id``, ``repetition`` (0-based), ``session``,
        ``run``, ``trial`` (0-based global), ``split`` (``test`` = shared images).
        Neuroid coords ``neuroid_id``, ``subject``, ``hemisphere``, ``i, j, k`` (NIfTI
        X, Y, Z; C order of the mask) or ``vertex``, and ``roi_*``. Variable ``ncsnr`` when
        the dataset has it. ``attrs["stimulus_set"]`` points at ``nsd_stimuli.hdf5``
        (read lazily with :class:`HDF5Brick`).

    Raises
    ------
    ValueError
        Unknown subject, space, beta version or ROI (the message lists the valid ones).
    FileNotFoundError
        A required file or folder is missing.
    DataFormatError
        A file has the wrong shape, dtype or keys, is truncated, or disagrees with the
        others (ROI vs betas shape, expdesign vs betas).
    """
    return nsd_plan(root, subject, space=space, betas=betas, mask=mask, rois=rois,
                    sessions=sessions, format=format).load()


def ingest_nsd(
    root: str | os.PathLike,
    subject: int | str,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    **kwargs,
) -> Path:
    """Stream one NSD subject into a zarr store at ``out``, one session file at a time.

    Peak memory is bounded by two session blocks (one written while the next is read),
    not by the number of sessions. The write is atomic; an interrupted ingest run again
    with the same inputs resumes.

    Parameters
    ----------
    root : path-like
        The NSD tree.
    subject : int or str
        1..8 or ``"subj01"``.
    out : path-like
        The store folder to write.
    overwrite : bool
        Replace an earlier store written by neuroalign at ``out``.
    **kwargs
        The options of :func:`load_nsd` (``space``, ``betas``, ``mask``, ``rois``,
        ``sessions``, ``format``).

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    return nsd_plan(root, subject, **kwargs).write(out, overwrite=overwrite)
