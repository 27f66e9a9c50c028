"""Writers of tiny synthetic files in the published dataset formats (the cards in datasets/*.toml).

Each writer returns what it wrote (raw arrays, ids) so tests can check loaded values
element by element. Nothing here is real dataset content.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PRF = ["V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"]
FACES = ["OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"]


def _ctab(path: Path, labels: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("0 Unknown\n" + "".join(f"{i + 1} {n}\n" for i, n in enumerate(labels)))


def write_nsd(
    root: Path,
    *,
    subject: int = 1,
    shape: tuple[int, int, int] = (5, 6, 4),
    n_images: int = 12,
    n_shared: int = 3,
    per_session: int = 8,
    n_sessions: int = 3,
    write_sessions: list[int] | None = None,
    fmt: str = "hdf5",
    n_vertices: tuple[int, int] = (10, 12),
    surface: bool = True,
    space: str = "func1pt8mm",
    seed: int = 0,
) -> dict:
    """A tiny NSD tree: expdesign, stimuli, volume betas (hdf5 or nifti), ROIs, ctabs,
    ncsnr, and fsaverage + nativesurface betas with labels."""
    import h5py
    import nibabel as nib
    import scipy.io

    rng = np.random.default_rng(seed)
    subj = f"subj{subject:02d}"
    X, Y, Z = shape
    n_trials = per_session * n_sessions
    # 1-based 73k ids, distinct, not starting at 1 (to expose 0/1-based confusion)
    ids73k = rng.choice(np.arange(5, 200), size=n_images, replace=False)
    subjectim = np.zeros((8, n_images))
    for s in range(8):
        subjectim[s] = np.concatenate([ids73k[:n_shared], rng.permutation(ids73k[n_shared:])])
    mo = rng.integers(1, n_images + 1, size=n_trials).astype(float)
    design = root / "nsddata/experiments/nsd"
    design.mkdir(parents=True)
    scipy.io.savemat(design / "nsd_expdesign.mat", {
        "masterordering": mo[None, :], "subjectim": subjectim,
        "sharedix": ids73k[None, :n_shared].astype(float),
        "stimpattern": np.ones((n_sessions, 4, 3)), "basiccnt": np.zeros((3, n_sessions)),
    })
    stim = root / "nsddata_stimuli/stimuli/nsd"
    stim.mkdir(parents=True)
    brick = rng.integers(0, 256, size=(210, 4, 4, 3), dtype=np.uint8)
    with h5py.File(stim / "nsd_stimuli.hdf5", "w") as f:
        f.create_dataset("imgBrick", data=brick)
    nsd_of_trial = subjectim[subject - 1, mo.astype(int) - 1].astype(int) - 1

    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    affine[:3, 3] = [-4.0, -5.0, -3.0]
    pp = root / f"nsddata/ppdata/{subj}/{space}"
    (pp / "roi").mkdir(parents=True)
    brain = np.ones(shape, bool)
    brain[0, 0, 0] = False
    general = brain & (rng.random(shape) < 0.6)
    nsdgeneral = np.where(brain, 0.0, -1.0).astype(np.float32)
    nsdgeneral[general] = 1
    prf = np.where(brain, rng.integers(0, len(PRF) + 1, shape), -1).astype(np.float32)
    faces = np.where(brain, rng.integers(0, 3, shape), -1).astype(np.float32)  # only OFA, FFA-1
    lh = np.arange(X)[:, None, None] < 2
    lh = np.broadcast_to(lh, shape)

    def save(arr, path, dtype=np.float32):
        nib.save(nib.Nifti1Image(np.asarray(arr, dtype=dtype), affine), str(path))

    save(brain.astype(np.int16), pp / "brainmask.nii.gz", np.int16)
    for name, vol in (("nsdgeneral", nsdgeneral), ("prf-visualrois", prf), ("floc-faces", faces)):
        save(vol, pp / "roi" / f"{name}.nii.gz")
        save(np.where(lh | (vol <= 0), vol, 0), pp / "roi" / f"lh.{name}.nii.gz")
        save(np.where(~lh | (vol <= 0), vol, 0), pp / "roi" / f"rh.{name}.nii.gz")
    labels = root / f"nsddata/freesurfer/{subj}/label"
    _ctab(labels / "nsdgeneral.mgz.ctab", ["nsdgeneral"])
    _ctab(labels / "prf-visualrois.mgz.ctab", PRF)
    _ctab(labels / "floc-faces.mgz.ctab", FACES)
    for name in ("floc-bodies", "floc-places", "floc-words", "streams"):  # present, unlabelled
        save(np.where(brain, 0.0, -1.0), pp / "roi" / f"{name}.nii.gz")
        _ctab(labels / f"{name}.mgz.ctab", ["a", "b"])

    bdir = root / f"nsddata_betas/ppdata/{subj}/{space}/betas_fithrf_GLMdenoise_RR"
    bdir.mkdir(parents=True)
    ncsnr = rng.random(shape).astype(np.float32)
    save(ncsnr, bdir / "ncsnr.nii.gz")
    sessions = list(range(1, n_sessions + 1)) if write_sessions is None else write_sessions
    vol_betas: dict[int, np.ndarray] = {}
    for sess in sessions:
        q = rng.integers(-32768, 32768, size=(per_session, X, Y, Z), dtype=np.int16)
        vol_betas[sess] = q
        if fmt in ("hdf5", "both"):
            with h5py.File(bdir / f"betas_session{sess:02d}.hdf5", "w") as f:
                f.create_dataset("betas", data=q.transpose(0, 3, 2, 1), chunks=(per_session, 1, 1, 1))
        if fmt in ("nifti", "both"):
            save(q.transpose(1, 2, 3, 0), bdir / f"betas_session{sess:02d}.nii.gz", np.int16)

    out = {
        "root": root, "subject": subject, "shape": shape, "affine": affine,
        "masterordering": mo.astype(int), "subjectim": subjectim.astype(int),
        "shared73k": ids73k[:n_shared], "nsd_of_trial": nsd_of_trial, "per_session": per_session,
        "sessions": sessions, "vol_betas": vol_betas, "general": general, "prf": prf,
        "faces": faces, "ncsnr": ncsnr, "lh": lh, "brain": brain, "brick": brick,
    }
    if surface:
        out.update(_write_surfaces(root, subj, rng, n_vertices, per_session, sessions))
    return out


def _write_surfaces(root, subj, rng, n_vertices, per_session, sessions) -> dict:
    import h5py
    import nibabel as nib

    def mgh(arr, path):
        arr = np.asarray(arr, dtype=np.float32)
        shaped = arr.reshape(arr.shape[0], 1, 1, *arr.shape[1:])
        nib.save(nib.MGHImage(shaped, np.eye(4)), str(path))

    fsl = root / "nsddata/freesurfer/fsaverage/label"
    nat = root / f"nsddata/freesurfer/{subj}/label"
    fsl.mkdir(parents=True)
    nat.mkdir(parents=True, exist_ok=True)
    _ctab(fsl / "nsdgeneral.mgz.ctab", ["nsdgeneral"])
    _ctab(fsl / "prf-visualrois.mgz.ctab", PRF)
    general, prf = {}, {}
    for h, hemi in enumerate(("lh", "rh")):
        n = n_vertices[h]
        general[hemi] = (rng.random(n) < 0.6).astype(np.float32)
        general[hemi][0] = 1
        prf[hemi] = rng.integers(0, len(PRF) + 1, n).astype(np.float32)
        for folder in (fsl, nat):
            mgh(general[hemi], folder / f"{hemi}.nsdgeneral.mgz")
            mgh(prf[hemi], folder / f"{hemi}.prf-visualrois.mgz")
    fs_dir = root / f"nsddata_betas/ppdata/{subj}/fsaverage/betas_fithrf_GLMdenoise_RR"
    nat_dir = root / f"nsddata_betas/ppdata/{subj}/nativesurface/betas_fithrf_GLMdenoise_RR"
    fs_dir.mkdir(parents=True)
    nat_dir.mkdir(parents=True)
    fs_betas: dict = {}
    nat_betas: dict = {}
    ncsnr = {}
    for hemi, n in zip(("lh", "rh"), n_vertices, strict=True):
        ncsnr[hemi] = rng.random(n).astype(np.float32)
        mgh(ncsnr[hemi], fs_dir / f"{hemi}.ncsnr.mgh")
    for sess in sessions:
        for hemi, n in zip(("lh", "rh"), n_vertices, strict=True):
            fb = (rng.standard_normal((n, per_session)) * 5).astype(np.float32)
            fb[0] = np.nan  # a NaN vertex, as in subjects 6 and 8
            fs_betas[(sess, hemi)] = fb
            mgh(fb, fs_dir / f"{hemi}.betas_session{sess:02d}.mgh")
            nb = rng.integers(-32768, 32768, size=(per_session, n), dtype=np.int16)
            nat_betas[(sess, hemi)] = nb
            with h5py.File(nat_dir / f"{hemi}.betas_session{sess:02d}.hdf5", "w") as f:
                f.create_dataset("betas", data=nb)
    return {"surf_general": general, "surf_prf": prf, "fs_betas": fs_betas,
            "nat_betas": nat_betas, "surf_ncsnr": ncsnr, "n_vertices": n_vertices}


EEG_CHANNELS = ["Pz", "P3", "P7", "O1", "Oz", "O2", "P4", "P8", "P1", "P5", "PO7", "PO3", "POz",
                "PO4", "PO8", "P6", "P2"]


def write_things_eeg2(root: Path, *, subject: int = 1, n_train: int = 6, n_test: int = 3,
                      reps: tuple[int, int] = (4, 5), n_times: int = 7, pickled: bool = False,
                      seed: int = 0) -> dict:
    """Preprocessed THINGS-EEG2 dicts (np.save or pickle.dump) plus image_metadata.npy."""
    import pickle

    rng = np.random.default_rng(seed)
    image_set = root / "image_set"
    image_set.mkdir(parents=True)
    meta = {}
    for split, n in (("train", n_train), ("test", n_test)):
        concepts = [f"{i // 2 + 1:05d}_thing{i // 2}" for i in range(n)]
        files = [f"thing{i // 2}_{i % 2 + 1:02d}{'b' if split == 'train' else 's'}.jpg" for i in range(n)]
        meta[f"{split}_img_files"] = files
        meta[f"{split}_img_concepts"] = concepts
        meta[f"{split}_img_concepts_THINGS"] = concepts
    np.save(image_set / "image_metadata.npy", meta, allow_pickle=True)
    d = root / "preprocessed_data" / f"sub-{subject:02d}"
    d.mkdir(parents=True)
    times = np.linspace(-0.2, -0.2 + 0.01 * (n_times - 1), n_times) + 1e-13  # float noise
    data = {}
    for split, n, r in (("training", n_train, reps[0]), ("test", n_test, reps[1])):
        arr = rng.standard_normal((n, r, len(EEG_CHANNELS), n_times))
        data[split] = arr
        obj = {"preprocessed_eeg_data": arr, "ch_names": list(EEG_CHANNELS), "times": times}
        path = d / f"preprocessed_eeg_{split}.npy"
        if pickled:
            with open(path, "wb") as f:
                pickle.dump(obj, f)
        else:
            np.save(path, obj, allow_pickle=True)
    return {"root": root, "meta": meta, "data": data, "times": times, "dir": d}


def write_epochs(path: Path, *, n_epochs: int = 60, n_ch: int = 6, n_times: int = 11,
                 ch_type: str = "mag", metadata: bool = True, split_size: str | None = None,
                 seed: int = 0) -> dict:
    """An MNE epochs file with THINGS-MEG-like metadata (sample_attributes columns)."""
    import mne
    import pandas as pd

    rng = np.random.default_rng(seed)
    names = [f"MEG{i:04d}" if ch_type == "mag" else EEG_CHANNELS[i] for i in range(n_ch)]
    info = mne.create_info(names + ["UPPT001"], 200.0, [ch_type] * n_ch + ["stim"])
    locs = rng.standard_normal((n_ch, 3)) * 0.05
    for i in range(n_ch):
        info["chs"][i]["loc"][:3] = locs[i]
    trial_type = rng.choice(["exp", "test", "catch"], size=n_epochs, p=[0.6, 0.3, 0.1])
    img = np.array([
        f"images_catch_meg/catch{i:03d}.jpg" if t == "catch" else
        f"images_test_meg/test{i % 4}.jpg" if t == "test" else f"images_meg/dog/dog_{i % 7:02d}s.jpg"
        for i, t in enumerate(trial_type)
    ])
    md = pd.DataFrame({
        "trial_type": trial_type, "image_path": img, "image_nr": np.arange(n_epochs),
        "things_image_nr": np.arange(n_epochs) + 10, "session_nr": np.arange(n_epochs) // 20 + 1,
        "run_nr": np.arange(n_epochs) // 10 % 2 + 1,
    })
    data = rng.standard_normal((n_epochs, n_ch + 1, n_times)) * (1e-12 if ch_type == "mag" else 1e-5)
    data[:, -1] = 0
    events = np.c_[np.arange(n_epochs) * 300, np.zeros(n_epochs, int), np.full(n_epochs, 64)]
    ep = mne.EpochsArray(data, info, events=events, tmin=-0.1, metadata=md if metadata else None,
                         verbose="error")
    path.parent.mkdir(parents=True, exist_ok=True)
    kw = {"split_size": split_size} if split_size else {}
    ep.save(path, overwrite=True, verbose="error", **kw)
    return {"path": path, "data": data[:, :n_ch], "metadata": md, "locs": locs, "names": names,
            "times": ep.times}


def write_algonauts(root: Path, *, subject: int = 1, n_fs: int = 30, n_train: int = 5, n_test: int = 3,
                    test_fmri: bool = True, seed: int = 0) -> dict:
    """The Algonauts-2023 challenge layout for one subject (tiny fsaverage of n_fs vertices)."""
    rng = np.random.default_rng(seed)
    s = root / f"subj{subject:02d}"
    rm = s / "roi_masks"
    rm.mkdir(parents=True)
    out: dict = {"root": root, "verts": {}, "fmri": {}, "prf": {}, "nc": {}}
    for hemi in ("lh", "rh"):
        mask = (rng.random(n_fs) < 0.5).astype(np.int64)
        mask[:2] = 1
        np.save(rm / f"{hemi}.all-vertices_fsaverage_space.npy", mask)
        out["verts"][hemi] = np.flatnonzero(mask)
        prf = rng.integers(0, 4, n_fs)
        np.save(rm / f"{hemi}.prf-visualrois_fsaverage_space.npy", prf)
        np.save(rm / f"{hemi}.prf-visualrois_challenge_space.npy", prf[mask > 0])
        out["prf"][hemi] = prf
    np.save(rm / "mapping_prf-visualrois.npy", {0: "Unknown", 1: "V1v", 2: "V1d", 3: "V2v"}, allow_pickle=True)
    nsd = rng.choice(np.arange(100, 999), size=n_train + n_test, replace=False)
    out["nsd"] = nsd
    for split, folder, word, ids in (("train", "training_split", "training", nsd[:n_train]),
                                     ("test", "test_split", "test", nsd[n_train:])):
        img = s / folder / f"{word}_images"
        img.mkdir(parents=True)
        for r, i in enumerate(ids, start=1):
            (img / f"{split}-{r:04d}_nsd-{i:05d}.png").write_bytes(b"\x89PNG")
        if split == "test" and not test_fmri:
            continue
        (s / folder / f"{word}_fmri").mkdir()
        for hemi in ("lh", "rh"):
            arr = rng.standard_normal((len(ids), len(out["verts"][hemi]))).astype(np.float32)
            np.save(s / folder / f"{word}_fmri" / f"{hemi}_{word}_fmri.npy", arr)
            out["fmri"][(split, hemi)] = arr
    (s / "test_split/noise_ceiling").mkdir(parents=True)
    for hemi in ("lh", "rh"):
        nc = rng.uniform(0, 100, len(out["verts"][hemi])).astype(np.float32)
        np.save(s / "test_split/noise_ceiling" / f"{hemi}_noise_ceiling.npy", nc)
        out["nc"][hemi] = nc
    return out


B5K_ROIS = ("EarlyVis", "LOC", "OPA", "PPA", "RSC")


def write_bold5000(root: Path, *, subject: int = 1, shape=(4, 5, 3), sessions=(1, 2), per_session=(6, 5),
                   seed: int = 0) -> dict:
    """Release-2.0 GLMsingle NIfTIs + imgnames, the 113-list, and release-1 ROI .mat + stim list."""
    import nibabel as nib
    import scipy.io

    rng = np.random.default_rng(seed)
    names_pool = ["COCO_train2014_000000420713.jpg", "n01930112_19568.JPEG", "church6.jpg",
                  "airplane1.jpg", "n02000000_1.JPEG", "COCO_train2014_000000000042.jpg"]
    total = int(sum(per_session))
    names = [names_pool[i] for i in rng.integers(0, len(names_pool), total)]
    names[0] = names[1] = "church6.jpg"
    g = root / "GLMsingle"
    g.mkdir(parents=True)
    (root / f"sub-CSI{subject}_imgnames.txt").write_text("\n".join(names) + "\n")
    (root / "BOLD5000_Stimuli/Scene_Stimuli").mkdir(parents=True)
    (root / "BOLD5000_Stimuli/Scene_Stimuli/repeated_stimuli_113_list.txt").write_text("church6.jpg\nairplane1.jpg\n")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-3.0, -4.0, -2.0]
    vols = []
    for ses, n in zip(sessions, per_session, strict=True):
        v = (rng.standard_normal((*shape, n)) * 3).astype(np.float32)
        v[0, 0, 0] = 0  # outside the brain
        vols.append(v)
        nib.save(nib.Nifti1Image(v, affine), str(g / f"CSI{subject}_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{ses:02d}.nii.gz"))
    mat_dir = root / f"BOLD5000_ROIs/ROIs/CSI{subject}/mat"
    mat_dir.mkdir(parents=True)
    lists = root / "BOLD5000_ROIs/ROIs/stim_lists"
    lists.mkdir(parents=True)
    (lists / f"CSI0{subject}_stim_lists.txt").write_text("\n".join(names) + "\n")
    roi = {}
    for r in B5K_ROIS:
        for h in ("LH", "RH"):
            roi[f"{h}{r}"] = rng.standard_normal((total, int(rng.integers(1, 4))))
    scipy.io.savemat(mat_dir / f"CSI{subject}_ROIs_TR34.mat", roi)
    return {"root": root, "names": names, "vols": vols, "affine": affine, "roi": roi, "mat": mat_dir / f"CSI{subject}_ROIs_TR34.mat"}


def write_things_fmri(root: Path, *, subject: int = 1, n_vox: int = 7, n_trials: int = 9, seed: int = 0) -> dict:
    """THINGS-fMRI table format: ResponseData HDFStore, StimulusMetadata and VoxelMetadata CSVs."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    d = root / "betas_csv"
    d.mkdir(parents=True)
    sub = f"sub-{subject:02d}"
    values = rng.standard_normal((n_vox, n_trials))
    voxel_id = np.arange(n_vox) * 3 + 100
    table = pd.DataFrame(values, columns=list(range(n_trials)))
    table.insert(0, "voxel_id", voxel_id)
    import warnings

    with warnings.catch_warnings():  # mixed column labels are pickled, as in the published files
        warnings.simplefilter("ignore")
        table.to_hdf(d / f"{sub}_ResponseData.h5", key="ResponseData", format="fixed")
    trial_type = np.array(["train"] * n_trials, dtype=object)
    trial_type[[1, 4, 7]] = "test"
    stim = [f"dog_{i:02d}s.jpg" if t == "train" else "cat_01s.jpg" for i, t in enumerate(trial_type)]
    order = rng.permutation(n_trials)  # rows not in trial_id order
    sm = pd.DataFrame({"trial_type": trial_type, "session": np.arange(n_trials) // 3 + 1,
                       "run": np.arange(n_trials) % 3 + 1, "subject_id": subject,
                       "trial_id": np.arange(n_trials), "stimulus": stim,
                       "concept": [s.split("_")[0] for s in stim]}).iloc[order]
    sm.to_csv(d / f"{sub}_StimulusMetadata.csv", index=False)
    vm = pd.DataFrame({"voxel_id": voxel_id, "subject_id": subject, "voxel_x": rng.integers(0, 50, n_vox),
                       "voxel_y": rng.integers(0, 50, n_vox), "voxel_z": rng.integers(0, 50, n_vox),
                       "nc_singletrial": rng.uniform(0, 30, n_vox), "nc_testset": rng.uniform(0, 80, n_vox),
                       "splithalf_uncorrected": rng.uniform(0, 1, n_vox), "prf-eccentricity": rng.uniform(0, 5, n_vox),
                       "V1": rng.integers(0, 2, n_vox), "lFFA": rng.integers(0, 2, n_vox),
                       "glasser-V1": rng.integers(0, 2, n_vox)})
    vm.to_csv(d / f"{sub}_VoxelMetadata.csv", index=False)
    return {"root": root, "values": values, "voxels": vm, "stim": sm.sort_values("trial_id"), "dir": d}
