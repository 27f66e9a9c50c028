"""Streaming writers of NSD-size beta files (func1pt8mm HDF5, fsaverage MGH).

Each session file is written in pieces (a few Z planes, or a few dozen trials) so memory
stays at a few tens of MiB whatever the volume or surface size. Values are deterministic
from the seed and the session alone: each session draws from its own random streams, one
for the nsdgeneral neuroids (signal + noise) and one for the others (noise only), so a
run that writes fewer sessions, or only the nsdgeneral neuroids, writes the same values
where it writes.

Model, per neuroid ``v`` and trial ``t`` showing image ``m``:
``beta = mean_v + offset_{v,session} + z_m . w_v + noise_sd_v * e_{v,t}`` in percent signal
change, where ``z`` (images x rank) has exactly zero mean and identity covariance over the
subject's images and ``|w_v| = ncsnr_v * noise_sd_v`` (``w_v = 0`` outside nsdgeneral), so
``ncsnr_v`` is the neuroid's true NSD ncsnr. Volume betas are stored as int16 = PSC x 300.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuroalign.datasets._scan import _hdf5_chunks

__all__ = ["NeuroidParams", "neuroid_params", "write_volume_session", "write_surface_session"]

_PIECE_BYTES = 32 * 2**20  # int16/float32 values generated per piece (memory bound)
_SPACE_CODE = {"func1pt8mm": 1, "fsaverage": 2}
SESSION_OFFSET_SD = 0.3
NOISE_SD_RANGE = (1.0, 3.0)


@dataclass
class NeuroidParams:
    """Per-neuroid parameters of one space, in file order (volume: (z, y, x) C order).

    ``general`` marks nsdgeneral neuroids; ``weights`` (n_general, rank) are their
    read-outs of the latent in the order of ``np.flatnonzero(general)``.
    """

    general: np.ndarray
    mean: np.ndarray
    noise_sd: np.ndarray
    ncsnr: np.ndarray  # n_general
    weights: np.ndarray  # (n_general, rank)


def neuroid_params(seed: int, space: str, general: np.ndarray, rank: int,
                   ncsnr_range: tuple[float, float]) -> NeuroidParams:
    """Draw the parameters of every neuroid of ``space`` (``general``: nsdgeneral mask)."""
    rng = np.random.default_rng([seed, 2, _SPACE_CODE[space]])
    n = len(general)
    mean = rng.normal(0.5, 0.5, n).astype(np.float32)
    noise_sd = rng.uniform(*NOISE_SD_RANGE, n).astype(np.float32)
    n_gen = int(general.sum())
    ncsnr = rng.uniform(*ncsnr_range, n_gen)
    u = rng.standard_normal((n_gen, rank))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    weights = (u * (ncsnr * noise_sd[general])[:, None]).astype(np.float32)
    return NeuroidParams(general, mean, noise_sd, ncsnr, weights)


def _streams(seed: int, space: str, session: int):
    code = _SPACE_CODE[space]
    return (np.random.default_rng([seed, 4, code, session, 0]),   # nsdgeneral
            np.random.default_rng([seed, 4, code, session, 1]))   # the rest


def _values(rng, rows: np.ndarray, p: NeuroidParams, offsets: np.ndarray, latent: np.ndarray,
            weights: np.ndarray | None) -> np.ndarray:
    """(len(rows), T) float32 betas of neuroids ``rows`` (indices into ``p``) for the
    trials whose latent rows are ``latent`` (T, rank); ``weights`` None: noise only."""
    noise = rng.standard_normal((len(rows), latent.shape[0]), dtype=np.float32)
    noise *= p.noise_sd[rows, None]
    noise += (p.mean[rows] + offsets)[:, None]
    if weights is not None:
        noise += weights @ latent.T
    return noise


def _quantize(x: np.ndarray) -> np.ndarray:
    x *= np.float32(300.0)
    np.rint(x, out=x)
    np.clip(x, -32768, 32767, out=x)
    return x.astype("<i2")


def _pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


# -- func1pt8mm HDF5: (trials, Z, Y, X) int16, one voxel per chunk --------------------------------
def write_volume_session(path: Path, *, seed: int, session: int, shape: tuple[int, int, int],
                         brain: np.ndarray, p: NeuroidParams, latent: np.ndarray,
                         nsdgeneral_only: bool) -> int:
    """Write ``betas_sessionNN.hdf5``; return the bytes of beta data written.

    The dataset is created with every chunk allocated (HDF5 early allocation, no fill
    writes), as the published files have every chunk; chunks are then written in file
    order directly at their offsets. Outside the brain they hold zeros (as NSD's); with
    ``nsdgeneral_only`` only the nsdgeneral chunks are written and the others are holes
    in a sparse file, which read as 0.

    ``brain`` (Z, Y, X) bool; ``p`` is indexed like ``np.flatnonzero(brain.ravel())``.
    """
    import h5py
    from h5py import h5d, h5p

    X, Y, Z = shape
    T = latent.shape[0]
    with h5py.File(path, "w") as f:
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk((T, 1, 1, 1))
        dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
        d = f.create_dataset("betas", shape=(T, Z, Y, X), dtype="<i2", dcpl=dcpl)
        offsets, _, _, corner = _hdf5_chunks(d)
        offset = np.empty(Z * Y * X, dtype=np.int64)
        offset[(corner[:, 1] * Y + corner[:, 2]) * X + corner[:, 3]] = offsets
        del offsets, corner
    size = 2 * T
    brain_flat = brain.ravel()
    index = np.cumsum(brain_flat) - 1  # voxel (file order) -> row of p
    gen_index = np.full(len(p.general), -1, dtype=np.int64)
    gen_index[p.general] = np.arange(int(p.general.sum()))
    g_sig, g_bg = _streams(seed, "func1pt8mm", session)
    planes = max(1, _PIECE_BYTES // (Y * X * T * 2))
    written = 0
    fd = os.open(path, os.O_WRONLY)
    try:
        for z0 in range(0, Z, planes):
            lo, hi = z0 * Y * X, min(Z, z0 + planes) * Y * X
            slab = np.zeros((hi - lo, T), dtype="<i2")
            rows = index[lo:hi][brain_flat[lo:hi]]  # brain voxels of the slab, in p
            at = np.flatnonzero(brain_flat[lo:hi])
            gen = p.general[rows]
            for rng, sel in ((g_sig, gen), (g_bg, ~gen)):
                if rng is g_bg and nsdgeneral_only:
                    continue
                r = rows[sel]
                offs = rng.normal(0.0, SESSION_OFFSET_SD, len(r)).astype(np.float32)
                w = p.weights[gen_index[r]] if rng is g_sig else None
                slab[at[sel]] = _quantize(_values(rng, r, p, offs, latent, w))
            keep = (np.zeros(hi - lo, bool) if nsdgeneral_only else np.ones(hi - lo, bool))
            keep[at[gen]] = True
            todo = np.flatnonzero(keep)
            if not len(todo):
                continue
            off = offset[lo + todo]
            # runs of chunks adjacent both in the slab and in the file
            brk = np.ones(len(todo), bool)
            brk[1:] = (np.diff(todo) != 1) | (np.diff(off) != size)
            starts = np.flatnonzero(brk)
            ends = np.append(starts[1:], len(todo))
            for a, b in zip(starts, ends, strict=True):
                _pwrite_all(fd, slab[todo[a] : todo[a] + (b - a)], int(off[a]))
            written += len(todo) * size
    finally:
        os.close(fd)
    return written


# -- fsaverage MGH: (V, 1, 1, T) float32 PSC per hemisphere ----------------------------------------
def write_surface_session(paths: dict[str, Path], *, seed: int, session: int,
                          n_vertices: tuple[int, int], p: NeuroidParams, latent: np.ndarray,
                          nsdgeneral_only: bool) -> int:
    """Write ``lh/rh.betas_sessionNN.mgh``; return the bytes of beta data written.

    MGH stores (V, 1, 1, T) in Fortran order: trial after trial of V big-endian float32.
    ``p`` is indexed over lh then rh vertices. With ``nsdgeneral_only`` only the
    nsdgeneral vertices are written (the rest are holes that read as 0.0).
    """
    from nibabel.freesurfer.mghformat import MGHHeader

    T = latent.shape[0]
    g_sig, g_bg = _streams(seed, "fsaverage", session)
    gen_all = np.flatnonzero(p.general)
    bg_all = np.flatnonzero(~p.general)
    off_sig = g_sig.normal(0.0, SESSION_OFFSET_SD, len(gen_all)).astype(np.float32)
    off_bg = (None if nsdgeneral_only
              else g_bg.normal(0.0, SESSION_OFFSET_SD, len(bg_all)).astype(np.float32))
    written = 0
    base = 0
    for hemi, V in zip(("lh", "rh"), n_vertices, strict=True):
        hdr = MGHHeader()
        hdr.set_data_dtype(np.float32)
        hdr.set_data_shape((V, 1, 1, T))
        data_at = hdr.get_data_offset()
        vg = (gen_all >= base) & (gen_all < base + V)
        vb = (bg_all >= base) & (bg_all < base + V)
        step = max(1, _PIECE_BYTES // (4 * V))
        with open(paths[hemi], "wb") as f:
            hdr.writehdr_to(f)
            f.flush()
            fd = f.fileno()
            for t0 in range(0, T, step):
                lat = latent[t0 : t0 + step]
                m = lat.shape[0]
                frame = np.zeros((m, V), dtype=">f4")
                g = gen_all[vg]
                frame[:, g - base] = _values(g_sig, g, p, off_sig[vg], lat, p.weights[vg]).T
                if not nsdgeneral_only:
                    b = bg_all[vb]
                    frame[:, b - base] = _values(g_bg, b, p, off_bg[vb], lat, None).T
                    _pwrite_all(fd, frame, data_at + t0 * V * 4)
                    written += frame.nbytes
                else:  # only the nsdgeneral vertices' span of each trial
                    c0, c1 = int(g.min() - base), int(g.max() - base) + 1
                    for r in range(m):
                        _pwrite_all(fd, np.ascontiguousarray(frame[r, c0:c1]),
                                    data_at + ((t0 + r) * V + c0) * 4)
                    written += m * (c1 - c0) * 4
            hdr.writeftr_to(f)
        base += V
    return written
