"""An NSD-size simulated subject, written in NSD's published formats by streaming.

:func:`simulate_nsd_scale` writes subject 1 of an NSD-shaped experiment (10,000 images,
30,000 trials in 40 sessions of 750, the shared 1,000 as test images) on the real
func1pt8mm grid (81 x 104 x 83, ~300,000 brain voxels, 15,724 nsdgeneral voxels) and/or
fsaverage (2 x 163,842 vertices, 37,984 nsdgeneral vertices), one session file at a time.
Nothing is ever whole in memory: a session is generated in pieces of ~32 MiB.

The signal is low-rank and stimulus-driven in the nsdgeneral neuroids, with a known
ncsnr per neuroid (see :mod:`._scale_betas`); every other brain voxel / vertex is noise
with its own mean, sd and session offsets, and non-brain voxels are 0 (as NSD's). The
images are placeholders: a ``image_size``-pixel picture of each image's latent vector,
written for the subject's 10,000 images only. ``truth.json`` records the design, the
model, and per nsdgeneral neuroid its ``neuroid_id`` (as :func:`load_nsd` names it), true
``ncsnr`` and ``noise_sd``. NSD's ``ncsnr`` files are not written (NSD's are estimates
from the betas; the truth is in ``truth.json``).

A volume session is 1.05 GB, a fsaverage session 0.98 GB (NSD's sizes): pass ``sessions``
to write the first N of the 40, and ``nsdgeneral_only`` to write only the nsdgeneral
values (sparse files with NSD's sizes that take ~1/20 of the disk; other neuroids read 0).
"""

from __future__ import annotations

import errno
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign._files import atomic_dir
from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_positive_int, format_list
from neuroalign.datasets.simulate._common import write_json_atomic
from neuroalign.datasets.simulate._nsd import BETAS, VOXEL_MM
from neuroalign.datasets.simulate._scale_betas import (
    NOISE_SD_RANGE,
    SESSION_OFFSET_SD,
    neuroid_params,
    write_surface_session,
    write_volume_session,
)
from neuroalign.datasets.simulate._scale_files import (
    write_design,
    write_stimuli,
    write_surface_rois,
    write_volume_rois,
)

__all__ = ["simulate_nsd_scale", "ScaleSimulation", "NSD_VOLUME_SHAPE", "NSD_FSAVERAGE_VERTICES"]

log = get_logger(__name__)

NSD_VOLUME_SHAPE = (81, 104, 83)  # func1pt8mm (X, Y, Z) of subj01
NSD_FSAVERAGE_VERTICES = (163842, 163842)
NSD_GENERAL_VOXELS = 15724  # subj01 func1pt8mm
NSD_GENERAL_VERTICES = 37984  # fsaverage
SPACES = ("func1pt8mm", "fsaverage")
TRUTH_FILE = "truth.json"
_BTREE_BYTES_PER_CHUNK = 70  # HDF5 v1 B-tree overhead of one-voxel chunks (measured: ~65)


@dataclass
class ScaleSimulation:
    """An NSD-size simulated subject on disk (see :func:`simulate_nsd_scale`)."""

    root: Path
    truth: dict[str, Any]

    @property
    def truth_path(self) -> Path:
        return self.root / TRUTH_FILE

    @classmethod
    def load(cls, root: str | Path) -> ScaleSimulation:
        root = Path(root)
        path = root / TRUTH_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no truth.json; {root} is not a finished simulation.")
        return cls(root, json.loads(path.read_text()))

    def true_ncsnr(self, space: str):
        """True ncsnr of the nsdgeneral neuroids of ``space`` (an xarray DataArray)."""
        import xarray as xr

        if space not in self.truth["spaces"]:
            raise ValueError(
                f"Invalid value for 'space' in ScaleSimulation.true_ncsnr(): {space!r}. "
                f"Expected one of {format_list(self.truth['spaces'])}."
            )
        t = self.truth[space]
        return xr.DataArray(np.asarray(t["ncsnr"]), dims="neuroid",
                            coords={"neuroid_id": ("neuroid", list(t["neuroid_id"]))},
                            name="true_ncsnr")

    def summary(self) -> str:
        t = self.truth
        d = t["design"]
        lines = [f"simulated NSD-size subject at {self.root}",
                 f"design: {d['n_images']} images, {d['n_trials']} trials in {d['n_sessions']} "
                 f"sessions of {d['trials_per_session']}; sessions written: "
                 f"{format_list(d['sessions_written'])}"]
        for space in t["spaces"]:
            s = t[space]
            nc = np.asarray(s["ncsnr"])
            lines.append(f"{space}: {s['n_neuroids']} neuroids, {len(nc)} nsdgeneral "
                         f"(true ncsnr {nc.min():.2f} .. {nc.max():.2f})"
                         + (" - nsdgeneral only" if t["nsdgeneral_only"] else ""))
        lines.append(f"beta data written: {t['bytes_written'] / 2**30:.2f} GiB in {t['seconds']:.0f} s")
        return "\n".join(lines)


def _latent(seed: int, n_images: int, rank: int) -> np.ndarray:
    """(n_images, rank) with exactly zero mean and identity covariance (``/ n``)."""
    z = np.random.default_rng([seed, 3]).standard_normal((n_images, rank))
    z -= z.mean(axis=0)
    q, r = np.linalg.qr(z)
    q *= np.sign(np.diag(r))  # a deterministic sign
    return (q * np.sqrt(n_images)).astype(np.float32)


def _volume_geometry(shape: tuple[int, int, int], n_general: int):
    """Brain (an ellipsoid) and nsdgeneral (its posterior-inferior shell), (X, Y, Z) bool."""
    X, Y, Z = shape
    ii, jj, kk = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    r2 = sum(((a - (n - 1) / 2) / (0.47 * n)) ** 2 for a, n in ((ii, X), (jj, Y), (kk, Z)))
    brain = r2 <= 1
    cand = np.argwhere(brain & (r2 >= 0.5))  # C order of (X, Y, Z)
    score = cand[:, 1] / Y + 0.5 * cand[:, 2] / Z  # posterior (low j) and inferior (low k)
    if n_general > len(cand):
        raise ValueError(
            f"Invalid value for 'n_general' in simulate_nsd_scale(): {n_general!r}. The volume "
            f"{shape!r} has {len(cand)} cortical voxels; expected at most that many."
        )
    pick = cand[np.argsort(score, kind="stable")[:n_general]]
    general = np.zeros(shape, dtype=bool)
    general[pick[:, 0], pick[:, 1], pick[:, 2]] = True
    return brain, general


def _surface_general(n_vertices: tuple[int, int], n_general: int) -> np.ndarray:
    """nsdgeneral over lh then rh vertices: one contiguous run per hemisphere."""
    half = (n_general // 2, n_general - n_general // 2)
    mask = np.zeros(sum(n_vertices), dtype=bool)
    base = 0
    for V, n in zip(n_vertices, half, strict=True):
        if n > V:
            raise ValueError(
                f"Invalid value for 'n_general' in simulate_nsd_scale(): {n_general!r}. "
                f"Expected at most {sum(n_vertices)} (the vertices of both hemispheres)."
            )
        start = (V - n) // 3
        mask[base + start : base + start + n] = True
        base += V
    return mask


def _needed_bytes(spaces, sessions, shape, n_vertices, n_general_vol, n_general_surf, T,
                  nsdgeneral_only) -> int:
    need = 0
    if "func1pt8mm" in spaces:
        n_chunks = int(np.prod(shape))
        per = (n_general_vol if nsdgeneral_only else n_chunks) * 2 * T
        need += sessions * (per + n_chunks * _BTREE_BYTES_PER_CHUNK)
    if "fsaverage" in spaces:
        need += sessions * (n_general_surf if nsdgeneral_only else sum(n_vertices)) * 4 * T
    return need


def simulate_nsd_scale(
    out: str | Path,
    *,
    sessions: int = 40,
    spaces: tuple[str, ...] = SPACES,
    nsdgeneral_only: bool = False,
    seed: int = 0,
    rank: int = 8,
    ncsnr_range: tuple[float, float] = (0.1, 0.8),
    image_size: int = 32,
    volume_shape: tuple[int, int, int] = NSD_VOLUME_SHAPE,
    n_vertices: tuple[int, int] = NSD_FSAVERAGE_VERTICES,
    n_general: tuple[int | None, int | None] = (None, None),
    n_images: int = 10000,
    n_shared: int = 1000,
    n_sessions: int = 40,
    trials_per_session: int = 750,
    overwrite: bool = False,
) -> ScaleSimulation:
    """Write an NSD-size simulated subject (subject 1) in NSD's published formats.

    Parameters
    ----------
    out : path-like
        Output folder (the NSD bucket layout; written atomically).
    sessions : int
        Write the beta files of the first ``sessions`` of the ``n_sessions`` sessions (the
        design always has all of them, as NSD copies with withheld sessions do).
    spaces : tuple of {"func1pt8mm", "fsaverage"}
        Beta spaces to write: HDF5 int16 x300 (trials, Z, Y, X) one voxel per chunk, and
        ``lh/rh.betas_sessionNN.mgh`` float32 PSC (V, 1, 1, trials).
    nsdgeneral_only : bool
        Write only the nsdgeneral values; the other neuroids are holes in sparse files
        (they read 0). The nsdgeneral values are the same as without this option.
    seed : int
        Seed of the design, latent, parameters and noise.
    rank : int
        Rank of the stimulus-driven signal.
    ncsnr_range : (float, float)
        True ncsnr of the nsdgeneral neuroids, drawn uniformly (NSD's median nsdgeneral
        noise ceiling of ~36 % is an ncsnr of ~0.43).
    image_size : int
        Side of the placeholder images in ``nsd_stimuli.hdf5``.
    volume_shape, n_vertices : tuple of int
        The func1pt8mm grid (X, Y, Z) and the fsaverage vertices per hemisphere
        (defaults: NSD's); smaller values make small test subjects.
    n_general : (int or None, int or None)
        nsdgeneral voxels and vertices (default: NSD's counts on NSD's grid, the same
        fraction of other grids).
    n_images, n_shared, n_sessions, trials_per_session : int
        The design (defaults: NSD's 10,000 images with the shared 1,000, 40 x 750 trials,
        each image shown 3 times). ``3 * n_images`` must equal
        ``n_sessions * trials_per_session``.
    overwrite : bool
        Replace an existing simulation at ``out``.

    Returns
    -------
    ScaleSimulation

    Raises
    ------
    ValueError
        Invalid parameters.
    OSError
        Not enough free disk space for the files (checked before writing).
    """
    func = "simulate_nsd_scale"
    t_start = time.perf_counter()
    n_sessions = check_positive_int(n_sessions, name="n_sessions", func=func)
    sessions = check_positive_int(sessions, name="sessions", func=func)
    if sessions > n_sessions:
        raise ValueError(f"Invalid value for 'sessions' in {func}(): {sessions!r}. Expected "
                         f"1..{n_sessions} (the sessions of the design).")
    spaces = tuple(dict.fromkeys(spaces))
    bad = [s for s in spaces if s not in SPACES]
    if bad or not spaces:
        raise ValueError(f"Invalid value for 'spaces' in {func}(): {spaces!r}. Expected one "
                         f"or both of {format_list(SPACES)}.")
    rank = check_positive_int(rank, name="rank", func=func)
    n_images = check_positive_int(n_images, name="n_images", func=func, minimum=2)
    n_shared = check_positive_int(n_shared, name="n_shared", func=func)
    T = check_positive_int(trials_per_session, name="trials_per_session", func=func)
    if 3 * n_images != n_sessions * T or n_shared >= n_images:
        raise ValueError(
            f"Invalid design in {func}(): n_images={n_images}, n_shared={n_shared}, "
            f"n_sessions={n_sessions}, trials_per_session={T}. Expected 3 * n_images == "
            "n_sessions * trials_per_session (each image shown 3 times) and n_shared < n_images."
        )
    if not 0 < ncsnr_range[0] <= ncsnr_range[1]:
        raise ValueError(f"Invalid value for 'ncsnr_range' in {func}(): {ncsnr_range!r}. "
                         "Expected (low, high) with 0 < low <= high.")
    shape = tuple(int(s) for s in volume_shape)
    n_vertices = tuple(int(v) for v in n_vertices)
    n_gen_vol = n_general[0] if n_general[0] is not None else (
        NSD_GENERAL_VOXELS if shape == NSD_VOLUME_SHAPE
        else max(1, round(NSD_GENERAL_VOXELS / np.prod(NSD_VOLUME_SHAPE) * np.prod(shape))))
    n_gen_surf = n_general[1] if n_general[1] is not None else (
        NSD_GENERAL_VERTICES if n_vertices == NSD_FSAVERAGE_VERTICES
        else max(2, round(NSD_GENERAL_VERTICES / sum(NSD_FSAVERAGE_VERTICES) * sum(n_vertices))))

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    need = _needed_bytes(spaces, sessions, shape, n_vertices, n_gen_vol, n_gen_surf, T,
                         nsdgeneral_only)
    free = shutil.disk_usage(out.parent).free
    if need > free:
        raise OSError(
            errno.ENOSPC,
            f"{out.parent}: {free / 2**30:.1f} GiB free, but {sessions} session(s) of "
            f"{' and '.join(spaces)} betas need about {need / 2**30:.1f} GiB. Write fewer "
            "sessions, one space, or nsdgeneral_only=True.",
        )
    latent = _latent(seed, n_images, rank)
    truth: dict[str, Any] = {"format": "nsd", "kind": "nsd-scale", "seed": seed,
                             "subject": "subj01", "betas": BETAS, "spaces": list(spaces),
                             "nsdgeneral_only": bool(nsdgeneral_only)}
    with atomic_dir(out, overwrite=overwrite, kind="simulated dataset") as tmp:
        tmp.mkdir(parents=True)
        design = write_design(tmp, seed=seed, n_images=n_images, n_shared=n_shared,
                              n_sessions=n_sessions, trials_per_session=T, sessions=sessions)
        write_stimuli(tmp, design, latent, image_size, seed)
        image_of_trial = design["image_of_trial"]  # 0-based index into the subject's images
        written = 0
        if "func1pt8mm" in spaces:
            brain, general = _volume_geometry(shape, n_gen_vol)
            affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
            affine[:3, 3] = -VOXEL_MM * (np.asarray(shape) - 1) / 2.0
            write_volume_rois(tmp, brain, general, affine)
            brain_f = brain.transpose(2, 1, 0)  # (Z, Y, X): the betas' file order
            gen_f = general.transpose(2, 1, 0)[brain_f]
            p = neuroid_params(seed, "func1pt8mm", gen_f, rank, ncsnr_range)
            folder = tmp / f"nsddata_betas/ppdata/subj01/func1pt8mm/{BETAS}"
            folder.mkdir(parents=True)
            for s in progress(range(1, sessions + 1), desc="simulate func1pt8mm", unit="session"):
                lat = latent[image_of_trial[(s - 1) * T : s * T]]
                written += write_volume_session(
                    folder / f"betas_session{s:02d}.hdf5", seed=seed, session=s, shape=shape,
                    brain=brain_f, p=p, latent=lat, nsdgeneral_only=nsdgeneral_only)
            # truth in load_nsd's order: C order of the (X, Y, Z) mask
            zyx = np.argwhere(brain_f)[gen_f]  # file order of the nsdgeneral voxels
            order = np.lexsort((zyx[:, 0], zyx[:, 1], zyx[:, 2]))  # by x, then y, then z
            xyz = zyx[order][:, ::-1]
            truth["func1pt8mm"] = {
                "volume_shape": list(shape), "n_neuroids": int(brain.sum()),
                "n_nsdgeneral": int(general.sum()), "affine": affine.tolist(),
                "neuroid_id": [f"subj01_{i}_{j}_{k}" for i, j, k in xyz],
                "ncsnr": np.round(p.ncsnr[order], 6).tolist(),
                "noise_sd": np.round(p.noise_sd[gen_f][order].astype(float), 6).tolist(),
            }
        if "fsaverage" in spaces:
            gen_s = _surface_general(n_vertices, n_gen_surf)
            write_surface_rois(tmp, n_vertices, gen_s)
            p = neuroid_params(seed, "fsaverage", gen_s, rank, ncsnr_range)
            folder = tmp / f"nsddata_betas/ppdata/subj01/fsaverage/{BETAS}"
            folder.mkdir(parents=True)
            for s in progress(range(1, sessions + 1), desc="simulate fsaverage", unit="session"):
                lat = latent[image_of_trial[(s - 1) * T : s * T]]
                paths = {h: folder / f"{h}.betas_session{s:02d}.mgh" for h in ("lh", "rh")}
                written += write_surface_session(paths, seed=seed, session=s, n_vertices=n_vertices,
                                                 p=p, latent=lat, nsdgeneral_only=nsdgeneral_only)
            idx = np.flatnonzero(gen_s)
            hemi = np.where(idx < n_vertices[0], "lh", "rh")
            vert = np.where(idx < n_vertices[0], idx, idx - n_vertices[0])
            truth["fsaverage"] = {
                "n_vertices": list(n_vertices), "n_neuroids": int(sum(n_vertices)),
                "n_nsdgeneral": int(gen_s.sum()),
                "neuroid_id": [f"subj01_{h}_{v}" for h, v in zip(hemi, vert, strict=True)],
                "ncsnr": np.round(p.ncsnr, 6).tolist(),
                "noise_sd": np.round(p.noise_sd[gen_s].astype(float), 6).tolist(),
            }
        truth["design"] = {k: v for k, v in design.items() if k != "image_of_trial"}
        truth["signal"] = {
            "rank": rank, "ncsnr_range": list(ncsnr_range), "noise_sd_range": list(NOISE_SD_RANGE),
            "session_offset_sd": SESSION_OFFSET_SD, "units": "percent signal change",
            "model": "beta = mean + session offset + latent[image] . w + noise_sd * N(0, 1); "
                     "|w| = ncsnr * noise_sd; latent: zero mean, identity covariance over the "
                     "subject's images",
        }
        truth["bytes_written"] = int(written)
        truth["seconds"] = round(time.perf_counter() - t_start, 1)
        write_json_atomic(truth, tmp / TRUTH_FILE)
    log.info("simulated NSD-size subject written to %s", out)
    return ScaleSimulation(out, truth)
