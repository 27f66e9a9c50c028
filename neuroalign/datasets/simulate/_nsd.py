"""Write a simulated subject as an NSD-format tree (the card datasets/nsd.toml)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign._logging import get_logger, progress
from neuroalign.datasets.simulate._common import (
    ground_truth,
    readouts,
    transform_record,
)
from neuroalign.datasets.simulate._images import make_images
from neuroalign.datasets.simulate._truth import ROISpec

__all__ = ["ATLAS_LABELS", "DEFAULT_ROIS", "simulate_nsd", "nsd_paths"]

log = get_logger(__name__)

#: Label lists of NSD's ROI files (index = position + 1), as in their ``.ctab`` files.
ATLAS_LABELS: dict[str, list[str]] = {
    "nsdgeneral": ["nsdgeneral"],
    "prf-visualrois": ["V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"],
    "floc-faces": ["OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"],
    "floc-bodies": ["EBA", "FBA-1", "FBA-2", "mTL-bodies"],
    "floc-places": ["OPA", "PPA", "RSC"],
    "floc-words": ["OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"],
    "streams": ["early", "midventral", "midlateral", "midparietal", "ventral", "lateral", "parietal"],
}
_STREAM_OF = {
    "prf-visualrois": "early",
    "floc-faces": "ventral",
    "floc-places": "ventral",
    "floc-words": "ventral",
    "floc-bodies": "lateral",
}

#: Early, middle and late layers of the ground-truth ResNet-18 drive V1v, hV4, PPA, FFA-1.
DEFAULT_ROIS: tuple[ROISpec, ...] = (
    ROISpec("V1v", "prf-visualrois", "layer1"),
    ROISpec("hV4", "prf-visualrois", "layer2"),
    ROISpec("PPA", "floc-places", "layer3"),
    ROISpec("FFA-1", "floc-faces", "layer4"),
)

BETAS = "betas_fithrf_GLMdenoise_RR"
SPACE = "func1pt8mm"
VOXEL_MM = 1.8


def nsd_paths(root: Path, subject: int = 1) -> dict[str, Path]:
    """The published NSD paths (relative layout of the S3 bucket) under ``root``."""
    subj = f"subj{subject:02d}"
    return {
        "expdesign": root / "nsddata/experiments/nsd/nsd_expdesign.mat",
        "stim_info": root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv",
        "stimuli": root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5",
        "ppdata": root / f"nsddata/ppdata/{subj}/{SPACE}",
        "roi": root / f"nsddata/ppdata/{subj}/{SPACE}/roi",
        "behav": root / f"nsddata/ppdata/{subj}/behav/responses.tsv",
        "labels": root / f"nsddata/freesurfer/{subj}/label",
        "betas": root / f"nsddata_betas/ppdata/{subj}/{SPACE}/{BETAS}",
    }


def _affine(shape: tuple[int, int, int]) -> np.ndarray:
    aff = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    aff[:3, 3] = -VOXEL_MM * (np.asarray(shape) - 1) / 2.0
    return aff


def _geometry(shape, rois: tuple[ROISpec, ...], rng: np.random.Generator):
    """Brain mask, nsdgeneral mask, and the voxels of each ROI (per hemisphere)."""
    X, Y, Z = shape
    ii, jj, kk = np.meshgrid(np.arange(X), np.arange(Y), np.arange(Z), indexing="ij")
    cx, cy, cz = (X - 1) / 2, (Y - 1) / 2, (Z - 1) / 2
    brain = ((ii - cx) / (0.46 * X)) ** 2 + ((jj - cy) / (0.46 * Y)) ** 2 + ((kk - cz) / (0.46 * Z)) ** 2 <= 1
    # visual cortex: the posterior (low j) and inferior (low k) part of the brain
    general = brain & (jj < 0.42 * Y) & (kk < 0.6 * Z)
    lh = ii < X / 2
    assign: dict[tuple[str, str], np.ndarray] = {}
    for hemi, hmask in (("lh", lh), ("rh", ~lh)):
        vox = np.argwhere(general & hmask)  # C order of (X, Y, Z)
        order = np.lexsort((vox[:, 0], vox[:, 2], vox[:, 1]))  # posterior first
        vox = vox[order]
        need = sum(r.n_voxels for r in rois)
        if need > len(vox):
            raise ValueError(
                f"Volume {shape!r} has {len(vox)} nsdgeneral voxels in {hemi}, fewer than the "
                f"{need} the ROIs ask for. Use a larger volume_shape or fewer n_voxels."
            )
        # spread the ROIs along the posterior-anterior axis, leaving unassigned voxels between
        spare = len(vox) - need
        gap = spare // (len(rois) + 1)
        start = gap
        for r in rois:
            assign[(r.name, hemi)] = vox[start : start + r.n_voxels]
            start += r.n_voxels + gap
    return brain, general, assign


def simulate_nsd(
    out: Path,
    *,
    n_images: int,
    n_test: int,
    n_repetitions: int,
    n_sessions: int,
    image_size: int,
    seed: int,
    arch: str,
    model_seed: int,
    rois: tuple[ROISpec, ...],
    ncsnr_range: tuple[float, float],
    volume_shape: tuple[int, int, int],
    withhold_sessions: int,
    n_active: int,
    subject: int = 1,
    routing_grid: int | None = None,
):
    """Write the NSD tree into ``out``; return the truth dict and the store it encodes."""
    import h5py
    import nibabel as nib
    import pandas as pd
    import scipy.io

    rng = np.random.default_rng(seed)
    paths = nsd_paths(out, subject)
    for key in ("expdesign", "stimuli", "behav"):
        paths[key].parent.mkdir(parents=True, exist_ok=True)
    for key in ("roi", "labels", "betas"):
        paths[key].mkdir(parents=True, exist_ok=True)

    n_trials = n_images * n_repetitions
    if n_trials % n_sessions:
        raise ValueError(
            f"n_images * n_repetitions = {n_trials} trials do not divide into n_sessions="
            f"{n_sessions} equal sessions. Choose values so that they do."
        )
    per_session = n_trials // n_sessions

    # -- stimuli ------------------------------------------------------------------------
    images, family = make_images(n_images, image_size, seed=seed)
    target_cell = None
    if routing_grid is not None:  # routing ROI: targets at random cells (own rng stream)
        from neuroalign.datasets.simulate._routing import place_targets

        images, target_cell = place_targets(images, np.random.default_rng([seed, 7919]),
                                            grid=routing_grid)
    with h5py.File(paths["stimuli"], "w") as f:
        f.create_dataset("imgBrick", data=images, dtype="uint8", chunks=(1, image_size, image_size, 3))

    # -- design: 1-based ids as published ---------------------------------------------------
    shared0 = np.sort(rng.choice(n_images, size=n_test, replace=False))  # 0-based nsdIds
    others = np.setdiff1d(np.arange(n_images), shared0)
    subjectim = np.empty((8, n_images), dtype=np.float64)
    for s in range(8):
        subjectim[s] = np.concatenate([shared0, rng.permutation(others)]) + 1
    masterordering = rng.permutation(np.repeat(np.arange(1, n_images + 1), n_repetitions)).astype(np.float64)
    sharedix = (shared0 + 1).astype(np.float64)
    runs = 12
    run_in_session = np.arange(per_session) * runs // per_session  # 0-based run of each trial
    slots = int(np.bincount(run_in_session, minlength=runs).max()) + 1
    stimpattern = np.zeros((n_sessions, runs, slots), dtype=np.float64)
    for r in range(runs):
        stimpattern[:, r, : int((run_in_session == r).sum())] = 1
    basiccnt = np.zeros((3, n_sessions))
    seen_count: dict[int, int] = {}
    for t, k in enumerate(masterordering.astype(int)):
        c = seen_count.get(k, 0)
        if c < 3:
            basiccnt[c, t // per_session] += 1
        seen_count[k] = c + 1
    scipy.io.savemat(
        paths["expdesign"],
        {
            "basiccnt": basiccnt,
            "masterordering": masterordering[None, :],
            "sharedix": sharedix[None, :],
            "stimpattern": stimpattern,
            "subjectim": subjectim,
        },
    )

    # trial -> image for this subject (the card datasets/nsd.toml)
    nsd_of_trial = (subjectim[subject - 1, masterordering.astype(int) - 1].astype(int) - 1)
    session_of_trial = np.arange(n_trials) // per_session + 1
    run_of_trial = (np.arange(n_trials) % per_session) * runs // per_session + 1
    rep_of_trial = np.zeros(n_trials, dtype=int)
    counter: dict[int, int] = {}
    for t, i in enumerate(nsd_of_trial):
        rep_of_trial[t] = counter.get(i, 0)
        counter[i] = rep_of_trial[t] + 1

    # -- stim info csv ------------------------------------------------------------------
    info: dict[str, Any] = {
        "cocoId": rng.choice(np.arange(100000, 600000), size=n_images, replace=False),
        "cocoSplit": np.where(rng.random(n_images) < 0.9, "train2017", "val2017"),
        "cropBox": [f"({0}, {0}, {c:.7g}, {c:.7g})" for c in rng.uniform(0, 0.2, n_images)],
        "loss": np.round(rng.uniform(0, 0.1, n_images), 4),
        "nsdId": np.arange(n_images),
        "flagged": ["False"] * n_images,
        "BOLD5000": ["False"] * n_images,
        "shared1000": np.where(np.isin(np.arange(n_images), shared0), "True", "False"),
    }
    mo = masterordering.astype(int)
    for s in range(1, 9):
        info[f"subject{s}"] = np.ones(n_images, dtype=int)
    for s in range(1, 9):
        trial_nsd = subjectim[s - 1, mo - 1].astype(int) - 1
        for r in range(3):
            col = np.zeros(n_images, dtype=int)
            for i in range(n_images):
                hits = np.flatnonzero(trial_nsd == i)
                if r < len(hits):
                    col[i] = hits[r] + 1  # 1-based global trial number
            info[f"subject{s}_rep{r}"] = col
    pd.DataFrame(info).to_csv(paths["stim_info"])

    # -- behaviour ---------------------------------------------------------------------
    cols = ["SUBJECT", "SESSION", "RUN", "TRIAL", "73KID", "10KID", "TIME", "ISOLD", "ISCORRECT",
            "RT", "CHANGEMIND", "MEMORYRECENT", "MEMORYFIRST", "ISOLDCURRENT",
            "ISCORRECTCURRENT", "TOTAL1", "TOTAL2", "BUTTON", "MISSINGDATA"]
    trial_in_run = np.zeros(n_trials, dtype=int)
    for t in range(n_trials):
        trial_in_run[t] = 1 if t == 0 or run_of_trial[t] != run_of_trial[t - 1] else trial_in_run[t - 1] + 1
    isold = (rep_of_trial > 0).astype(int)
    beh = pd.DataFrame(
        {
            "SUBJECT": subject,
            "SESSION": session_of_trial,
            "RUN": run_of_trial,
            "TRIAL": trial_in_run,
            "73KID": nsd_of_trial + 1,
            "10KID": mo,
            "TIME": 737000 + np.arange(n_trials) * 4.0 / 86400,
            "ISOLD": isold,
            "ISCORRECT": (rng.random(n_trials) < 0.8).astype(int),
            "RT": np.round(rng.uniform(500, 1500, n_trials), 1),
            "CHANGEMIND": 0,
            "MEMORYRECENT": np.nan,
            "MEMORYFIRST": np.nan,
            "ISOLDCURRENT": isold,
            "ISCORRECTCURRENT": (rng.random(n_trials) < 0.8).astype(int),
            "TOTAL1": 1,
            "TOTAL2": 0,
            "BUTTON": rng.integers(1, 3, n_trials),
            "MISSINGDATA": 0,
        },
        columns=cols,
    )
    beh.to_csv(paths["behav"], sep="\t", index=False)

    # -- ground truth ---------------------------------------------------------------------
    log.info("computing ground-truth activations of %s (seed %d)", arch, model_seed)
    _, acts, lmean, lsd = ground_truth(
        images, arch, model_seed, [r.layer for r in rois if not r.layer.endswith("@target")])
    if target_cell is not None:
        from neuroalign.datasets.simulate._routing import add_routed_layers

        add_routed_layers(acts, lmean, lsd, images, arch, model_seed, rois, target_cell, routing_grid)
    brain, general, assign = _geometry(volume_shape, rois, rng)
    vox_brain = np.argwhere(brain)  # C order
    n_vox = len(vox_brain)
    index_of = {tuple(v): n for n, v in enumerate(vox_brain)}
    signal = np.zeros((n_images, n_vox))
    noise_sd = rng.uniform(1.0, 3.0, n_vox)
    true_snr = np.zeros(n_vox)
    offset = rng.normal(0.5, 0.5, n_vox)
    meta: dict[int, dict[str, Any]] = {}
    for spec in rois:
        for hemi in ("lh", "rh"):
            vox = assign[(spec.name, hemi)]
            params = readouts(rng, spec, len(vox), acts, lmean, lsd, n_active=n_active)
            for v, p in zip(vox, params, strict=True):
                n = index_of[tuple(v)]
                amp = float(rng.uniform(1.0, 3.0))
                snr = float(rng.uniform(*ncsnr_range))
                signal[:, n] = amp * p.pop("_projection")
                noise_sd[n] = amp / snr
                true_snr[n] = snr
                meta[n] = {"roi": spec.name, "atlas": spec.atlas, "layer": spec.layer,
                           "amplitude": amp, **p}
    session_offset = rng.normal(0.0, 0.5, (n_sessions, n_vox))

    # -- betas, session by session ----------------------------------------------------------
    affine = _affine(volume_shape)
    written = list(range(1, n_sessions - withhold_sessions + 1))
    X, Y, Z = volume_shape
    quantized = []
    for sess in progress(written, desc="simulate sessions", unit="session"):
        rows = np.flatnonzero(session_of_trial == sess)
        beta = signal[nsd_of_trial[rows]] + offset + session_offset[sess - 1]
        beta = beta + rng.standard_normal(beta.shape) * noise_sd
        q = np.clip(np.round(beta * 300.0), -32768, 32767).astype(np.int16)
        quantized.append(q)
        vol = np.zeros((len(rows), X, Y, Z), dtype=np.int16)
        vol[:, vox_brain[:, 0], vox_brain[:, 1], vox_brain[:, 2]] = q
        with h5py.File(paths["betas"] / f"betas_session{sess:02d}.hdf5", "w") as f:
            f.create_dataset("betas", data=vol.transpose(0, 3, 2, 1), chunks=(len(rows), 1, 1, 1) if len(rows) * 2 < 2**20 else True)

    # -- masks, ROIs, labels ---------------------------------------------------------------------
    def save_nii(arr, path, dtype):
        nib.save(nib.Nifti1Image(np.asarray(arr, dtype=dtype), affine), str(path))

    save_nii(brain.astype(np.int16), paths["ppdata"] / "brainmask.nii.gz", np.int16)
    lh_mask = np.broadcast_to(np.arange(X)[:, None, None] < X / 2, volume_shape)
    roi_vols: dict[str, np.ndarray] = {}
    for atlas, labels in ATLAS_LABELS.items():
        vol = np.where(brain, 0.0, -1.0).astype(np.float32)
        if atlas == "nsdgeneral":
            vol[general] = 1
        elif atlas == "streams":
            for spec in rois:
                idx = labels.index(_STREAM_OF.get(spec.atlas, "ventral")) + 1
                for hemi in ("lh", "rh"):
                    v = assign[(spec.name, hemi)]
                    vol[v[:, 0], v[:, 1], v[:, 2]] = idx
        else:
            for spec in rois:
                if spec.atlas != atlas:
                    continue
                idx = labels.index(spec.name) + 1
                for hemi in ("lh", "rh"):
                    v = assign[(spec.name, hemi)]
                    vol[v[:, 0], v[:, 1], v[:, 2]] = idx
        roi_vols[atlas] = vol
        save_nii(vol, paths["roi"] / f"{atlas}.nii.gz", np.float32)
        for hemi, hm in (("lh", lh_mask), ("rh", ~lh_mask)):
            hv = vol.copy()
            hv[(~hm) & (hv > 0)] = 0
            save_nii(hv, paths["roi"] / f"{hemi}.{atlas}.nii.gz", np.float32)
        ctab = "0 Unknown\n" + "".join(f"{i + 1} {name}\n" for i, name in enumerate(labels))
        (paths["labels"] / f"{atlas}.mgz.ctab").write_text(ctab)

    # -- ncsnr as NSD publishes it: estimated from the (written) betas -----------------------
    from neuroalign.datasets.simulate._store import volume_store

    seen = session_of_trial <= len(written)
    trials = {
        "nsd_id": nsd_of_trial[seen],
        "repetition": rep_of_trial[seen],
        "session": session_of_trial[seen],
        "run": run_of_trial[seen],
        "trial": np.flatnonzero(seen),
        "test": np.isin(nsd_of_trial[seen], shared0),
    }
    betas = np.concatenate(quantized).astype(np.float32) / np.float32(300.0)
    whole = volume_store(betas, vox_brain, trials, subject=subject, affine=affine,
                         volume_shape=volume_shape, roi_vols=roi_vols)
    from neuroalign.store import ncsnr as _ncsnr

    est_vals = _ncsnr(whole).values
    est = np.zeros(volume_shape, dtype=np.float32)
    est[vox_brain[:, 0], vox_brain[:, 1], vox_brain[:, 2]] = np.nan_to_num(est_vals, posinf=0.0)
    save_nii(est, paths["betas"] / "ncsnr.nii.gz", np.float32)
    in_general = general[vox_brain[:, 0], vox_brain[:, 1], vox_brain[:, 2]]
    sim_store = whole.isel(neuroid=np.flatnonzero(in_general))
    sim_store = sim_store.assign(
        ncsnr=("neuroid", est_vals[in_general].astype(np.float32))
    )

    # -- truth -------------------------------------------------------------------------------
    test_counts = np.bincount(nsd_of_trial[seen], minlength=n_images)[shared0]
    test_counts = test_counts[test_counts > 0]
    inv_n = float(np.mean(1.0 / test_counts)) if test_counts.size else 1.0 / n_repetitions
    neuroids = []
    gen_idx = {tuple(v) for v in np.argwhere(general)}
    for n, v in enumerate(vox_brain):
        if tuple(v) not in gen_idx:
            continue
        i, j, k = (int(x) for x in v)
        snr = float(true_snr[n])
        entry: dict[str, Any] = {
            "neuroid_id": f"subj{subject:02d}_{i}_{j}_{k}",
            "i": i, "j": j, "k": k,
            "hemisphere": "lh" if i < X / 2 else "rh",
            "roi": None, "layer": None,
            "ncsnr": snr,
            "noise_ceiling": 100.0 * snr**2 / (snr**2 + inv_n),
            "noise_sd": float(noise_sd[n]),
        }
        entry.update(meta.get(n, {}))
        neuroids.append(entry)
    truth = {
        "format": "nsd",
        "seed": seed,
        "subject": f"subj{subject:02d}",
        "space": SPACE,
        "betas": BETAS,
        "model": {
            "arch": arch,
            "seed": model_seed,
            "source": f"torchvision.models.get_model({arch!r}, weights=None) after torch.manual_seed({model_seed})",
            "transform": transform_record(),
            "pooling": "spatial mean",
            "layer_mean": {k: v.tolist() for k, v in lmean.items()},
            "layer_sd": {k: v.tolist() for k, v in lsd.items()},
        },
        "rois": {r.name: {**asdict(r), "units": list(r.units) if r.units else None} for r in rois},
        "layer_of_roi": {r.name: r.layer for r in rois},
        "design": {
            "n_images": n_images,
            "n_test": n_test,
            "n_repetitions": n_repetitions,
            "n_sessions": n_sessions,
            "trials_per_session": per_session,
            "sessions_written": written,
            "sessions_withheld": list(range(len(written) + 1, n_sessions + 1)),
            "test_nsd_ids": shared0.tolist(),
            "test_inverse_n": inv_n,
            "volume_shape": list(volume_shape),
            "image_size": image_size,
            "families": sorted(set(family.tolist())),
        },
        "image_family": family.tolist(),
        "noise": {"ncsnr_range": list(ncsnr_range), "session_offset_sd": 0.5},
        "neuroids": neuroids,
    }
    if target_cell is not None:
        truth["routing"] = {
            "rois": [r.name for r in rois if r.layer.endswith("@target")],
            "grid": routing_grid,
            "target_cell_by_nsd_id": [int(c) for c in target_cell],
            "target": "two-colour checkerboard filling one grid cell",
        }
    return truth, sim_store
