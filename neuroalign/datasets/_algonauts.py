"""Algonauts-2023 challenge layout (an NSD derivative, DATASETS.md §2) -> store."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.datasets._formats import require_file
from neuroalign.datasets._ingest import Block, IngestPlan, file_fingerprint
from neuroalign.exceptions import DataFormatError
from neuroalign.store._schema import SCHEMA_VERSION

__all__ = ["load_algonauts2023", "algonauts2023_plan", "ALGONAUTS_ROIS"]

ALGONAUTS_ROIS = ("prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words", "streams")
_IMG_RE = re.compile(r"^(train|test)-(\d{4})_nsd-(\d{5})\.png$")
_SPLIT_DIRS = {"train": ("training_split", "training"), "test": ("test_split", "test")}


def _load_npy(path: Path, what: str) -> np.ndarray:
    require_file(path, what)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:
        raise DataFormatError(f"{path}: cannot be read as .npy ({err}). Expected {what}.") from err


def algonauts2023_plan(root: str | os.PathLike, subject: int | str) -> IngestPlan:
    """The ingest plan behind :func:`load_algonauts2023`."""
    root = Path(root)
    n = int(re.sub(r"\D", "", str(subject)) or 0) if not isinstance(subject, int) else subject
    subj = f"subj{n:02d}"
    sdir = root / subj if (root / subj).is_dir() else root
    if not (sdir / "roi_masks").is_dir():
        present = sorted(p.name for p in root.iterdir() if p.name.startswith("subj")) if root.is_dir() else []
        raise FileNotFoundError(
            f"{root / subj}: no Algonauts-2023 subject folder (with roi_masks/). Subjects present: "
            f"{format_list(present) or 'none'}."
        )
    rm = sdir / "roi_masks"
    verts = {}
    for hemi in ("lh", "rh"):
        mask = np.asarray(_load_npy(rm / f"{hemi}.all-vertices_fsaverage_space.npy", "a 0/1 fsaverage vertex mask"))
        if mask.ndim != 1:
            raise DataFormatError(f"{rm / f'{hemi}.all-vertices_fsaverage_space.npy'}: shape {mask.shape!r}, expected (163842,).")
        verts[hemi] = np.flatnonzero(mask)
    parts, blocks, start, files = [], [], 0, []
    for split in ("train", "test"):
        folder, word = _SPLIT_DIRS[split]
        img_dir = sdir / folder / f"{word}_images"
        fmri = [sdir / folder / f"{word}_fmri" / f"{h}_{word}_fmri.npy" for h in ("lh", "rh")]
        if not img_dir.is_dir():
            if split == "train":
                raise FileNotFoundError(f"{img_dir}: no such folder (expected train-NNNN_nsd-MMMMM.png images).")
            continue
        if not all(p.exists() for p in fmri):
            warnings.warn(f"{fmri[0].parent}: no {word} fMRI files (withheld during the challenge); "
                          f"the store holds the {split} images only if their responses exist, so they are left out.",
                          UserWarning, stacklevel=3)
            continue
        names = sorted(p.name for p in img_dir.iterdir() if p.suffix == ".png")
        bad = [x for x in names if not (_IMG_RE.match(x) and _IMG_RE.match(x).group(1) == split)]
        if bad:
            raise DataFormatError(f"{img_dir}: image name {bad[0]!r}, expected '{split}-NNNN_nsd-MMMMM.png'.")
        nsd = np.array([int(_IMG_RE.match(x).group(3)) for x in names])
        for h, p in zip(("lh", "rh"), fmri, strict=True):
            arr = _load_npy(p, f"{h} fMRI (n_images, n_vertices)")
            if arr.ndim != 2 or arr.shape != (len(names), len(verts[h])):
                raise DataFormatError(
                    f"{p}: shape {arr.shape!r}, expected ({len(names)}, {len(verts[h])}) = "
                    f"(images in {img_dir.name}, vertices in {h}.all-vertices_fsaverage_space.npy)."
                )
        files += fmri
        parts.append({"nsd_id": nsd, "split": np.full(len(nsd), split),
                      "image_file": np.array([f"{folder}/{word}_images/{x}" for x in names])})

        def read(fmri=fmri):
            return np.concatenate([np.asarray(_load_npy(p, "fMRI"), dtype=np.float32) for p in fmri], axis=1)

        blocks.append(Block(str(fmri[0]), start, start + len(names), read))
        start += len(names)
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    hemi = np.r_[np.full(len(verts["lh"]), "lh"), np.full(len(verts["rh"]), "rh")]
    vertex = np.r_[verts["lh"], verts["rh"]]
    coords = {
        "stimulus_id": ("stimulus", np.array([f"nsd-{i:05d}" for i in cat["nsd_id"]])),
        "nsd_id": ("stimulus", cat["nsd_id"].astype(np.int64)),
        "split": ("stimulus", cat["split"]),
        "image_file": ("stimulus", cat["image_file"]),
        "neuroid_id": ("neuroid", np.array([f"{subj}_{h}_{v}" for h, v in zip(hemi, vertex, strict=True)])),
        "subject": ("neuroid", np.array([subj] * len(vertex))),
        "hemisphere": ("neuroid", hemi),
        "vertex": ("neuroid", vertex.astype(np.int64)),
    }
    for roi in ALGONAUTS_ROIS:
        mp = rm / f"mapping_{roi}.npy"
        paths = [rm / f"{h}.{roi}_fsaverage_space.npy" for h in ("lh", "rh")]
        if not mp.exists() or not all(p.exists() for p in paths):
            continue
        mapping = np.load(mp, allow_pickle=True)
        if isinstance(mapping, np.ndarray) and mapping.shape == () and mapping.dtype == object:
            mapping = mapping.item()
        if not isinstance(mapping, dict):
            found = f"an array of shape {mapping.shape!r}" if isinstance(mapping, np.ndarray) else type(mapping).__name__
            raise DataFormatError(f"{mp}: holds {found}, expected a pickled dict {{int: name}}.")
        vals = np.concatenate([np.asarray(_load_npy(p, "an fsaverage ROI mask"))[verts[h]]
                               for h, p in zip(("lh", "rh"), paths, strict=True)])
        for idx, name in sorted(mapping.items()):
            if int(idx) > 0 and (vals == int(idx)).any():
                coords[f"roi_{name}"] = ("neuroid", vals == int(idx))
    data_vars = {}
    nc = [sdir / "test_split/noise_ceiling" / f"{h}_noise_ceiling.npy" for h in ("lh", "rh")]
    if all(p.exists() for p in nc):
        vals = [np.asarray(_load_npy(p, "noise ceiling per vertex")) for p in nc]
        for p, v, h in zip(nc, vals, ("lh", "rh"), strict=True):
            if v.shape != (len(verts[h]),):
                raise DataFormatError(f"{p}: shape {v.shape!r}, expected ({len(verts[h])},).")
        data_vars["noise_ceiling"] = ("neuroid", np.concatenate(vals).astype(np.float32))
    attrs = {
        "dataset": "algonauts2023", "space": "fsaverage",
        "units": "z-scored betas, averaged over repetitions", "schema_version": SCHEMA_VERSION,
        "subject": subj, "source": {"root": str(sdir.resolve())},
        "stimulus_set": {"kind": "image-files", "root": str(sdir.resolve()), "file_coord": "image_file"},
    }
    fp = {"adapter": "algonauts2023", "files": file_fingerprint(files)}
    return IngestPlan(xr.Dataset(data_vars, coords=coords, attrs=attrs), ("stimulus", "neuroid"),
                      blocks, fp, desc=f"Algonauts {subj}")


def load_algonauts2023(root: str | os.PathLike, subject: int | str) -> xr.Dataset:
    """Load one subject of the Algonauts-2023 challenge data as a store.

    Parameters
    ----------
    root : path-like
        The challenge folder holding ``subjXX/`` (or the subject folder itself).
    subject : int or str
        1..8 or ``"subj01"``.

    Returns
    -------
    xr.Dataset
        Store with ``responses`` of dims ('stimulus', 'neuroid'): one row per image
        (already averaged over repetitions), train images then test images (test only
        when ``test_fmri`` is present), each in file-name order. ``stimulus_id`` is
        ``nsd-MMMMM`` as in :func:`load_nsd`; neuroids are the challenge vertices
        (fsaverage indices of ``{lh,rh}.all-vertices_fsaverage_space.npy``), lh then rh,
        with ``roi_*`` coordinates from the ``mapping_<ROI>.npy`` dicts and
        ``noise_ceiling`` when present.
    """
    return algonauts2023_plan(root, subject).load()
