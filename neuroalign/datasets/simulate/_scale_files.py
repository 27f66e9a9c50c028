"""The small files of the NSD-size simulation: design, stimulus table, images, ROIs.

All vectorised (73,000-row tables, 30,000-trial designs) and in NSD's published formats
(the NSD dataset card, datasets/nsd.toml): 1-based ids in ``nsd_expdesign.mat``, 0-based ``nsdId`` in
``nsd_stim_info_merged.csv``, ROI volumes -1/0/label, ``.ctab`` label tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuroalign.datasets.simulate._nsd import ATLAS_LABELS

__all__ = ["write_design", "write_stimuli", "write_volume_rois", "write_surface_rois", "N_73K"]

N_73K = 73000
RUNS = 12


def write_design(root: Path, *, seed: int, n_images: int, n_shared: int, n_sessions: int,
                 trials_per_session: int, sessions: int) -> dict[str, Any]:
    """``nsd_expdesign.mat``, ``nsd_stim_info_merged.csv`` and ``responses.tsv``.

    Every subject gets the shared images (columns 1..n_shared of ``subjectim``) and its
    own others, disjoint between subjects as far as the 73k set allows; each image is
    shown 3 times in a random order over all sessions (``masterordering``, as NSD's, is
    the same for every subject). Returns the design summary and ``image_of_trial``
    (0-based index into subject 1's images, per trial).
    """
    import pandas as pd
    import scipy.io

    rng = np.random.default_rng([seed, 1])
    n_73k = max(N_73K, n_shared + 8 * (n_images - n_shared))
    perm = rng.permutation(n_73k)
    shared = np.sort(perm[:n_shared])  # 0-based nsdIds
    own = n_images - n_shared
    subjectim = np.empty((8, n_images), dtype=np.int64)
    for s in range(8):
        subjectim[s] = np.concatenate([shared, rng.permutation(perm[n_shared + s * own : n_shared + (s + 1) * own])])
    subjectim += 1  # 1-based 73k ids
    n_trials = n_sessions * trials_per_session
    mo = rng.permutation(np.repeat(np.arange(1, n_images + 1), 3))  # 1-based
    run_sizes = np.diff(np.arange(RUNS + 1) * trials_per_session // RUNS)
    stimpattern = np.zeros((n_sessions, RUNS, int(run_sizes.max()) + 1))
    for r, n in enumerate(run_sizes):
        stimpattern[:, r, :n] = 1
    rep = _repetition(mo)
    basiccnt = np.zeros((3, n_sessions))
    np.add.at(basiccnt, (rep, np.arange(n_trials) // trials_per_session), 1)
    paths = {
        "expdesign": root / "nsddata/experiments/nsd/nsd_expdesign.mat",
        "stim_info": root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv",
        "behav": root / "nsddata/ppdata/subj01/behav/responses.tsv",
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(paths["expdesign"], {
        "basiccnt": basiccnt, "masterordering": mo[None, :].astype(np.float64),
        "sharedix": (shared + 1)[None, :].astype(np.float64), "stimpattern": stimpattern,
        "subjectim": subjectim.astype(np.float64),
    })

    info: dict[str, Any] = {
        "cocoId": rng.choice(np.arange(1, 600000), size=n_73k, replace=False),
        "cocoSplit": np.where(rng.random(n_73k) < 0.93, "train2017", "val2017"),
        "cropBox": [f"(0, 0, {c:.7g}, {c:.7g})" for c in np.round(rng.uniform(0, 0.2, n_73k), 7)],
        "loss": np.round(rng.uniform(0, 0.1, n_73k), 4),
        "nsdId": np.arange(n_73k),
        "flagged": "False", "BOLD5000": "False",
        "shared1000": np.where(np.isin(np.arange(n_73k), shared), "True", "False"),
    }
    for s in range(8):
        info[f"subject{s + 1}"] = np.isin(np.arange(n_73k), subjectim[s] - 1).astype(int)
    for s in range(8):
        ids = subjectim[s, mo - 1] - 1  # 0-based nsdId of each trial
        order = np.argsort(ids, kind="stable").reshape(-1, 3)  # the 3 trials of each image
        image = ids[order[:, 0]]
        for r in range(3):
            col = np.zeros(n_73k, dtype=np.int64)
            col[image] = order[:, r] + 1  # 1-based global trial number
            info[f"subject{s + 1}_rep{r}"] = col
    pd.DataFrame(info).to_csv(paths["stim_info"])

    seen = np.arange(sessions * trials_per_session)
    within = seen % trials_per_session
    run = np.searchsorted(np.cumsum(run_sizes), within, side="right") + 1
    first_of_run = np.concatenate([[0], np.cumsum(run_sizes)[:-1]])
    beh = pd.DataFrame({
        "SUBJECT": 1, "SESSION": seen // trials_per_session + 1, "RUN": run,
        "TRIAL": within - first_of_run[run - 1] + 1,
        "73KID": subjectim[0, mo[seen] - 1], "10KID": mo[seen],
        "TIME": np.round(737000 + seen * 4.0 / 86400, 6), "ISOLD": (rep[seen] > 0).astype(int),
        "ISCORRECT": (rng.random(len(seen)) < 0.8).astype(int),
        "RT": np.round(rng.uniform(500, 1500, len(seen)), 1), "CHANGEMIND": 0,
        "MEMORYRECENT": np.nan, "MEMORYFIRST": np.nan, "ISOLDCURRENT": (rep[seen] > 0).astype(int),
        "ISCORRECTCURRENT": (rng.random(len(seen)) < 0.8).astype(int), "TOTAL1": 1, "TOTAL2": 0,
        "BUTTON": rng.integers(1, 3, len(seen)), "MISSINGDATA": 0,
    })
    beh.to_csv(paths["behav"], sep="\t", index=False)
    return {
        "n_images": n_images, "n_shared": n_shared, "n_sessions": n_sessions,
        "trials_per_session": trials_per_session, "n_trials": n_trials,
        "sessions_written": list(range(1, sessions + 1)),
        "test_nsd_ids": shared.tolist(),
        "image_of_trial": (mo - 1).astype(np.int64),
        "subject_nsd_ids": (subjectim[0] - 1).tolist(),
    }


def _repetition(ids: np.ndarray) -> np.ndarray:
    """0-based count of earlier presentations of the same id, per trial."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    start = np.r_[0, np.flatnonzero(np.diff(sorted_ids)) + 1]
    rank = np.arange(len(ids)) - np.repeat(start, np.diff(np.r_[start, len(ids)]))
    out = np.empty(len(ids), dtype=np.int64)
    out[order] = rank
    return out


def write_stimuli(root: Path, design: dict, latent: np.ndarray, size: int, seed: int) -> None:
    """``nsd_stimuli.hdf5``: ``imgBrick`` (73000, size, size, 3) uint8, one image per chunk.

    Only subject 1's images are written (the other chunks are never allocated and read
    as 0); each is a smooth picture of its latent vector, so pixels carry the signal.
    """
    import h5py

    rank = latent.shape[1]
    rng = np.random.default_rng([seed, 5])
    coarse = rng.standard_normal((rank, 4, 4, 3))
    rep = -(-size // 4)
    basis = np.repeat(np.repeat(coarse, rep, axis=1), rep, axis=2)[:, :size, :size].reshape(rank, -1)
    basis /= np.sqrt(rank)
    ids = np.asarray(design["subject_nsd_ids"])
    order = np.argsort(ids)
    path = root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
    path.parent.mkdir(parents=True, exist_ok=True)
    n_73k = max(N_73K, int(ids.max()) + 1)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("imgBrick", shape=(n_73k, size, size, 3), dtype="uint8",
                             chunks=(1, size, size, 3))
        for a in range(0, len(order), 1000):
            sel = order[a : a + 1000]
            pix = np.clip(128 + 48 * (latent[sel] @ basis), 0, 255).astype(np.uint8)
            pix = pix.reshape(len(sel), size, size, 3)
            for n, k in enumerate(sel):
                d.id.write_direct_chunk((int(ids[k]), 0, 0, 0), pix[n].tobytes())


def _ctab(folder: Path, atlas: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    labels = ATLAS_LABELS[atlas]
    (folder / f"{atlas}.mgz.ctab").write_text(
        "0 Unknown\n" + "".join(f"{i + 1} {name}\n" for i, name in enumerate(labels)))


def _early(n: int) -> np.ndarray:
    """Labels 1..7 (prf-visualrois) for the first 30 % of ``n`` ordered neuroids, else 0."""
    lab = np.zeros(n, dtype=np.float32)
    k = int(0.3 * n)
    lab[:k] = 1 + np.arange(k) * 7 // max(k, 1)
    return lab


def write_volume_rois(root: Path, brain: np.ndarray, general: np.ndarray, affine: np.ndarray) -> None:
    """func1pt8mm ``brainmask``, ``nsdgeneral``, ``prf-visualrois`` and ``streams``
    (each also ``lh.``/``rh.``), float32 -1 (outside the brain) / 0 / label, and ctabs."""
    import nibabel as nib

    pp = root / "nsddata/ppdata/subj01/func1pt8mm"
    (pp / "roi").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(brain.astype(np.int16), affine), str(pp / "brainmask.nii.gz"))
    X = brain.shape[0]
    lh = np.broadcast_to(np.arange(X)[:, None, None] < (X - 1) / 2, brain.shape)
    gen = np.argwhere(general)  # C order of (X, Y, Z)
    by_y = gen[np.lexsort((gen[:, 0], gen[:, 2], gen[:, 1]))]  # posterior first
    early = _early(len(by_y))
    vols = {}
    for atlas in ("nsdgeneral", "prf-visualrois", "streams"):
        vol = np.where(brain, 0.0, -1.0).astype(np.float32)
        if atlas == "nsdgeneral":
            vol[general] = 1
        elif atlas == "prf-visualrois":
            vol[by_y[:, 0], by_y[:, 1], by_y[:, 2]] = early
        else:
            vol[by_y[:, 0], by_y[:, 1], by_y[:, 2]] = np.where(early > 0, 1, 5)  # early / ventral
        vols[atlas] = vol
        nib.save(nib.Nifti1Image(vol, affine), str(pp / "roi" / f"{atlas}.nii.gz"))
        for hemi, hm in (("lh", lh), ("rh", ~lh)):
            hv = vol.copy()
            hv[~hm & (hv > 0)] = 0
            nib.save(nib.Nifti1Image(hv, affine), str(pp / "roi" / f"{hemi}.{atlas}.nii.gz"))
        _ctab(root / "nsddata/freesurfer/subj01/label", atlas)


def write_surface_rois(root: Path, n_vertices: tuple[int, int], general: np.ndarray) -> None:
    """fsaverage ``lh/rh.nsdgeneral.mgz`` and ``lh/rh.streams.mgz`` (V, 1, 1) and ctabs."""
    import nibabel as nib

    folder = root / "nsddata/freesurfer/fsaverage/label"
    folder.mkdir(parents=True, exist_ok=True)
    base = 0
    for hemi, V in zip(("lh", "rh"), n_vertices, strict=True):
        gen = general[base : base + V]
        streams = np.zeros(V, dtype=np.float32)
        idx = np.flatnonzero(gen)
        streams[idx] = np.where(_early(len(idx)) > 0, 1, 5)
        for atlas, vals in (("nsdgeneral", gen.astype(np.float32)), ("streams", streams)):
            nib.save(nib.MGHImage(vals.reshape(V, 1, 1), np.eye(4)), str(folder / f"{hemi}.{atlas}.mgz"))
        base += V
    for atlas in ("nsdgeneral", "streams"):
        _ctab(folder, atlas)
