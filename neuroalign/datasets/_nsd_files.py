"""NSD file readers: the expdesign, the session files of a beta folder, and the betas.

Every reader checks what it reads against the published format (the card datasets/nsd.toml) and
raises :class:`~neuroalign.exceptions.DataFormatError` naming the file: non-integer,
0-based or out-of-range indices in the expdesign, two files for one session, stray copies,
sessions that disagree (named against the majority), scaled NIfTI, corrupt chunks.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from neuroalign._logging import get_logger
from neuroalign._validation import format_list
from neuroalign.datasets._formats import (
    check_integers,
    h5_dataset,
    h5_read,
    image_shape,
    load_mat,
    load_mgh,
    load_nifti,
    nifti_array,
    open_hdf5,
)
from neuroalign.datasets._ingest import Scaled
from neuroalign.datasets._scan import read_h5_voxels, read_mgh_frames
from neuroalign.exceptions import DataFormatError

log = get_logger(__name__)

SCALE = np.float32(300.0)
_SESSION_RE = re.compile(r"^(?:(lh|rh)\.)?betas_session(\d+)\.(hdf5|nii\.gz|nii|mgh|mgz)$")
_SESSION_LIKE = re.compile(r"^(?:(lh|rh)\.)?betas_session.*\.(hdf5|nii\.gz|nii|mgh|mgz)$")
_AXES_HINT = ("HDF5 betas are (trials, Z, Y, X) in h5py, NIfTI betas (X, Y, Z, trials)")
_SLAB_BYTES = 64 * 2**20



def _design(root: Path, subject: int):
    path = root / "nsddata/experiments/nsd/nsd_expdesign.mat"
    mat = load_mat(path, ["masterordering", "subjectim", "sharedix"])
    mo_raw = np.asarray(mat["masterordering"])
    if mo_raw.ndim > 2 or (mo_raw.ndim == 2 and min(mo_raw.shape) != 1):
        raise DataFormatError(
            f"{path}: 'masterordering' has shape {mo_raw.shape!r}, expected a vector (1, n_trials)."
        )
    mo = check_integers(mo_raw.ravel(), path, "masterordering", what="1-based indices")
    subjectim = np.asarray(mat["subjectim"])
    if subjectim.ndim != 2 or subjectim.shape[0] < subject:
        raise DataFormatError(
            f"{path}: 'subjectim' has shape {subjectim.shape!r}, expected (8, n_images) "
            f"with a row for subject {subject}."
        )
    subjectim = check_integers(subjectim, path, "subjectim", what="73k ids")
    if mo.size == 0 or mo.min() < 1 or mo.max() > subjectim.shape[1]:
        raise DataFormatError(
            f"{path}: 'masterordering' values span {int(mo.min()) if mo.size else None!r}.."
            f"{int(mo.max()) if mo.size else None!r}, expected 1-based indices 1..{subjectim.shape[1]} "
            "into the columns of 'subjectim'."
        )
    shared = check_integers(np.asarray(mat["sharedix"]).ravel(), path, "sharedix", what="73k ids")
    for key, ids in (("subjectim", subjectim), ("sharedix", shared)):
        if ids.size and ids.min() < 1:
            raise DataFormatError(
                f"{path}: {key!r} holds 73k ids down to {int(ids.min())}, expected 1-based ids "
                "(>= 1; nsdId = id - 1)."
            )
    row = subjectim[subject - 1]
    ids, counts = np.unique(row, return_counts=True)
    if (counts > 1).any():
        raise DataFormatError(
            f"{path}: 'subjectim' row {subject} repeats 73k id(s) "
            f"{format_list(ids[counts > 1], limit=5)}; expected distinct images per subject."
        )
    nsd_of_trial = row[mo - 1] - 1
    sp = mat.get("stimpattern")
    runs = int(np.asarray(sp).shape[1]) if sp is not None and np.ndim(sp) == 3 else 12
    return path, nsd_of_trial, shared - 1, runs


def _session_files(folder: Path, space: str) -> dict[int, dict[str, Path]]:
    """``{session: {"hdf5"|"nifti"|"lh"|"rh": path}}`` of the beta files in ``folder``."""
    found: dict[int, dict[str, Path]] = {}
    for p in sorted(folder.iterdir()):
        m = _SESSION_RE.match(p.name)
        if not m:
            if _SESSION_LIKE.match(p.name):
                raise DataFormatError(
                    f"{p}: unexpected file name among the beta files; expected "
                    "betas_sessionNN.hdf5/.nii.gz or lh./rh.betas_sessionNN.mgh/.hdf5. Move it "
                    f"out of {folder} (a copy, or a partial download?)."
                )
            continue
        hemi, sess, ext = m.group(1), int(m.group(2)), m.group(3)
        if sess == 0:
            raise DataFormatError(
                f"{p}: session 0; NSD sessions are numbered from 1 (betas_session01 ...)."
            )
        kind = hemi if hemi else ("hdf5" if ext == "hdf5" else "nifti")
        prev = found.setdefault(sess, {}).get(kind)
        if prev is not None:
            raise DataFormatError(
                f"{p}: a second file for session {sess} (besides {prev.name}); expected one "
                f"{kind} file per session. Move one of them away."
            )
        found[sess][kind] = p
    surface = space in ("fsaverage", "nativesurface")
    for sess, kinds in found.items():
        if surface and set(kinds) != {"lh", "rh"}:
            have = ", ".join(str(p.name) for p in kinds.values())
            raise FileNotFoundError(
                f"{folder}: session {sess} has {have} but not both lh and rh files; expected "
                f"lh.betas_session{sess:02d} and rh.betas_session{sess:02d}."
            )
    return found


def _trial_count(kinds: dict[str, Path], space: str, fmt: str) -> tuple[int, tuple, Path]:
    """Trials, per-trial shape (volume (X,Y,Z) or per-hemisphere vertices), and the file."""
    if space in ("func1pt8mm", "func1mm"):
        path = kinds.get("hdf5") if fmt != "nifti" else None
        wanted = {"hdf5": "hdf5", "nifti": "nifti"}.get(fmt)
        if wanted and wanted not in kinds:
            have = ", ".join(p.name for p in kinds.values())
            raise FileNotFoundError(
                f"{next(iter(kinds.values())).parent}: no {'HDF5' if wanted == 'hdf5' else 'NIfTI'} "
                f"beta file for this session (found {have}); format={fmt!r} asks for one."
            )
        if path is not None:
            with open_hdf5(path) as f:
                d = h5_dataset(f, path, "betas", ndim=4, dtype="int16", axes="trials, Z, Y, X")
                return int(d.shape[0]), tuple(int(x) for x in d.shape[:0:-1]), path
        path = kinds["nifti"]
        img = load_nifti(path, "NSD betas (X, Y, Z, trials) int16")
        shape = image_shape(img)
        if len(shape) != 4:
            raise DataFormatError(f"{path}: image has shape {shape!r}, expected 4 dims (X, Y, Z, trials).")
        if img.get_data_dtype() != np.int16:
            raise DataFormatError(f"{path}: image dtype is {np.dtype(img.get_data_dtype()).name}, expected int16 (PSC x 300).")
        # nibabel moves the header's scaling onto the data proxy (1, 0 when unscaled)
        slope, inter = (float(getattr(img.dataobj, k, d)) for k, d in (("slope", 1.0), ("inter", 0.0)))
        if slope != 1.0 or inter != 0.0:
            raise DataFormatError(
                f"{path}: has a scale factor (scl_slope={slope}, scl_inter={inter}); NSD betas are "
                "stored unscaled (int16 = PSC x 300). Expected the published file."
            )
        return shape[3], shape[:3], path
    counts = []
    for hemi in ("lh", "rh"):
        path = kinds[hemi]
        if space == "fsaverage":
            img = load_nifti(path, "fsaverage betas (.mgh, vertices x 1 x 1 x trials)")
            shp = image_shape(img)
            if len(shp) != 4 or shp[1:3] != (1, 1):
                raise DataFormatError(f"{path}: shape {shp!r}, expected (n_vertices, 1, 1, n_trials).")
            if np.dtype(img.get_data_dtype()).kind != "f":
                raise DataFormatError(
                    f"{path}: dtype {np.dtype(img.get_data_dtype()).name}, expected float32 (fsaverage betas are PSC)."
                )
            counts.append((shp[3], shp[0]))
        else:
            with open_hdf5(path) as f:
                d = h5_dataset(f, path, "betas", ndim=2, dtype="int16", axes="trials, vertices")
                counts.append(tuple(int(x) for x in d.shape))
    if counts[0][0] != counts[1][0]:
        raise DataFormatError(
            f"{kinds['rh']}: {counts[1][0]} trials, but {kinds['lh'].name} has {counts[0][0]}; "
            "expected the same trials in both hemispheres."
        )
    return counts[0][0], (counts[0][1], counts[1][1]), kinds["lh"]


def _agree(values: dict[int, object], paths: dict[int, Path], fmt: str, note: str):
    """The value most sessions share; the first session that differs raises, named."""
    from collections import Counter

    ref, n = Counter(values.values()).most_common(1)[0]
    for sess, v in values.items():
        if v != ref:
            raise DataFormatError(
                f"{paths[sess]}: {fmt.format(v)}, expected {ref!r} like {n} of {len(values)} "
                f"sessions{note}."
            )
    return ref


def _read_volume_hdf5(path: Path, ijk: np.ndarray) -> np.ndarray | Scaled:
    """(trials, n_voxels) PSC of voxels ``ijk`` (X, Y, Z indices) from an HDF5 session file.

    The published layout (one voxel per unfiltered chunk) is read directly as raw chunks
    (:func:`~neuroalign.datasets._scan.read_h5_voxels`), kept as int16 with their divisor
    (:class:`~neuroalign.datasets._ingest.Scaled`: half the memory, and the ingest divides
    while it lays the values out in the store's chunks); other layouts through h5py.
    """
    i, j, k = ijk.T
    with open_hdf5(path) as f:
        d = h5_dataset(f, path, "betas", ndim=4, dtype="int16", axes="trials, Z, Y, X")
        raw = read_h5_voxels(d, path, np.c_[k, j, i], dtype=np.int16)
        if raw is not None:
            return Scaled(raw, SCALE)
        T, Z, Y, X = d.shape
        out = np.empty((T, len(i)), dtype=np.float32)
        chunks = d.chunks
        if chunks is not None and chunks[0] < T:
            # trial-chunked: read batches of whole trials
            step = max(chunks[0], _SLAB_BYTES // max(2 * Z * Y * X, 1) // chunks[0] * chunks[0])
            for t0 in range(0, T, step):
                slab = h5_read(d, path, np.s_[t0 : t0 + step])
                out[t0 : t0 + step] = slab[:, k, j, i]
        else:
            # voxel-chunked with filters, or contiguous: read slabs of Z planes
            cz = chunks[1] if chunks is not None else 1
            step = max(cz, _SLAB_BYTES // max(2 * T * Y * X, 1) // cz * cz)
            for z0 in range(0, Z, step):
                sel = (k >= z0) & (k < z0 + step)
                if not sel.any():
                    continue
                slab = h5_read(d, path, np.s_[:, z0 : z0 + step])
                out[:, sel] = slab[:, k[sel] - z0, j[sel], i[sel]]
    out /= SCALE
    return out


def _read_volume_nifti(path: Path, ijk: np.ndarray) -> np.ndarray:
    img = load_nifti(path, "NSD betas (X, Y, Z, trials) int16")
    arr = nifti_array(img, path, dtype=np.int16)
    out = arr[ijk[:, 0], ijk[:, 1], ijk[:, 2], :].T.astype(np.float32)
    del arr
    out /= SCALE
    return out


def _read_surface(kinds: dict[str, Path], space: str, verts: dict[str, np.ndarray]) -> np.ndarray | Scaled:
    """(trials, lh vertices + rh vertices) PSC, filled hemisphere by hemisphere in place
    (in the files' big-endian float32 for ``.mgh``: a :class:`~neuroalign.datasets._ingest.Scaled`
    without divisor, cast where the ingest lays the values out)."""
    total = len(verts["lh"]) + len(verts["rh"])
    out = None
    col = 0
    for hemi in ("lh", "rh"):
        path = kinds[hemi]
        n = len(verts[hemi])
        part = dest = None
        if space == "fsaverage":
            img = load_nifti(path, "fsaverage betas (.mgh, vertices x 1 x 1 x trials)")
            shape = image_shape(img)
            if out is None and len(shape) == 4:
                # the file's own float32 (big-endian in .mgh): read without a cast, the
                # ingest casts it (exactly) while it lays the values out in the store
                own = np.dtype(img.get_data_dtype())
                out = np.empty((shape[3], total), dtype=own if own in (np.dtype(">f4"), np.dtype("<f4"))
                               else np.float32)
            if out is not None and len(shape) == 4 and out.shape[0] == shape[3]:
                dest = out[:, col : col + n]
            part = read_mgh_frames(path, img, verts[hemi], out=dest)  # PSC
            if part is None:  # .mgz (gzip) and other variants: through nibabel
                arr = load_mgh(path)  # (V, T)
                part = arr[verts[hemi]].T.astype(np.float32)
                del arr
        else:
            with open_hdf5(path) as f:
                d = h5_dataset(f, path, "betas", ndim=2, dtype="int16", axes="trials, vertices")
                arr = h5_read(d, path)
            part = arr[:, verts[hemi]].astype(np.float32) / SCALE
            del arr
        if out is None:
            out = np.empty((part.shape[0], total), dtype=np.float32)
        if part.shape[0] != out.shape[0]:
            raise DataFormatError(
                f"{path}: {part.shape[0]} trials, but {kinds['lh'].name} has {out.shape[0]}; "
                "expected the same trials in both hemispheres."
            )
        if part is not dest:
            out[:, col : col + n] = part
        del part
        col += n
    # vertices NaN in every trial (NSD subjects 6 and 8): candidates from the first trial
    cand = np.flatnonzero(np.isnan(out[0])) if len(out) else np.array([], dtype=int)
    bad = cand[np.isnan(out[:, cand]).all(axis=0)] if len(cand) else cand
    if len(bad):
        log.warning("%s: %d vertices are NaN in every trial", kinds["lh"].name, len(bad))
    return out if out.dtype == np.float32 else Scaled(out, None)
