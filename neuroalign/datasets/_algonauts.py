"""Algonauts-2023 challenge layout (an NSD derivative, card datasets/algonauts2023.toml) -> store."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.datasets._formats import (
    check_label_names,
    check_labels,
    load_npy_array,
    load_npy_dict,
)
from neuroalign.datasets._ingest import Block, IngestPlan, file_fingerprint
from neuroalign.exceptions import DataFormatError
from neuroalign.store._schema import SCHEMA_VERSION

__all__ = ["load_algonauts2023", "algonauts2023_plan", "ALGONAUTS_ROIS"]

ALGONAUTS_ROIS = ("prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words", "streams")
_IMG_RE = re.compile(r"^(train|test)-(\d{4})_nsd-(\d{5})\.png$")
_SPLIT_DIRS = {"train": ("training_split", "training"), "test": ("test_split", "test")}


def _load_npy(path: Path, what: str, *, mmap: bool = False) -> np.ndarray:
    return load_npy_array(path, what, mmap=mmap)


def _vertex_mask(path: Path) -> np.ndarray:
    mask = np.asarray(_load_npy(path, "a 0/1 fsaverage vertex mask"))
    if mask.ndim != 1:
        raise DataFormatError(f"{path}: shape {mask.shape!r}, expected a vector (n_vertices,) (163842 on fsaverage).")
    values = check_labels(mask, path, "a 0/1 vertex mask")
    other = sorted(set(np.unique(values).tolist()) - {0, 1})
    if other:
        raise DataFormatError(f"{path}: holds values {format_list(other, limit=5)}, expected a 0/1 vertex mask.")
    return values


def _images(img_dir: Path, split: str) -> tuple[list[str], np.ndarray]:
    """The images of a split, in file-name order, checked: names, numbering 1..N, distinct ids."""
    names = sorted(p.name for p in img_dir.iterdir() if p.suffix == ".png")
    parsed = []
    for x in names:
        m = _IMG_RE.match(x)
        if not (m and m.group(1) == split):
            raise DataFormatError(f"{img_dir}: image name {x!r}, expected '{split}-NNNN_nsd-MMMMM.png'.")
        parsed.append((int(m.group(2)), int(m.group(3))))
    numbers = [n for n, _ in parsed]
    if numbers != list(range(1, len(names) + 1)):
        raise DataFormatError(
            f"{img_dir}: images are numbered {format_list(numbers, limit=12)}, expected "
            f"1..{len(names)} (one image per row of the fMRI files; is one missing?)."
        )
    seen: dict[int, str] = {}
    for x, (_, nsd) in zip(names, parsed, strict=True):
        if nsd in seen:
            raise DataFormatError(
                f"{img_dir}: {seen[nsd]!r} and {x!r} show the same NSD image (nsd-{nsd:05d}); "
                "expected each image once (responses are averaged over repetitions)."
            )
        seen[nsd] = x
    return names, np.array([nsd for _, nsd in parsed], dtype=np.int64)


def _fmri_files(sdir: Path, split: str) -> list[Path] | None:
    folder, word = _SPLIT_DIRS[split]
    fmri = [sdir / folder / f"{word}_fmri" / f"{h}_{word}_fmri.npy" for h in ("lh", "rh")]
    present = [p.exists() for p in fmri]
    if all(present):
        return fmri
    if any(present):
        miss, have = (fmri[0], fmri[1]) if present[1] else (fmri[1], fmri[0])
        raise FileNotFoundError(
            f"{miss}: no such file (expected the {miss.name[:2]} {word} fMRI; {have.name} is present)."
        )
    if split == "train":
        raise FileNotFoundError(f"{fmri[0]}: no such file (expected the lh {word} fMRI).")
    return None


def _mapping(path: Path) -> dict[int, str]:
    """A ``mapping_<ROI>.npy`` dict ``{label value: name}`` (restricted unpickler), checked."""
    obj = load_npy_dict(path, [], "a pickled dict {label value: ROI name}")
    out: dict[int, str] = {}
    label_of: dict[str, int] = {}
    for k, v in obj.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer, float, np.floating)) or int(k) != k:
            raise DataFormatError(f"{path}: key {k!r} ({type(k).__name__}), expected integer label values.")
        if not isinstance(v, str):
            raise DataFormatError(f"{path}: name {v!r} ({type(v).__name__}) for label {k!r}, expected a str.")
        if v in label_of:
            raise DataFormatError(
                f"{path}: name {v!r} for labels {label_of[v]} and {int(k)}; expected one label per name."
            )
        out[int(k)], label_of[v] = v, int(k)
    return out


def _roi_files(rm: Path, roi: str, masks: dict[str, np.ndarray]):
    """``(mapping, {hemi: labels})`` of one ROI, or None when none of its files exist."""
    mp = rm / f"mapping_{roi}.npy"
    paths = {h: rm / f"{h}.{roi}_fsaverage_space.npy" for h in ("lh", "rh")}
    files = [mp, *paths.values()]
    present = [p for p in files if p.exists()]
    if not present:
        return None
    if len(present) < len(files):
        miss = next(p for p in files if not p.exists())
        what = "the label names" if miss == mp else f"the {miss.name[:2]} labels"
        raise FileNotFoundError(
            f"{miss}: no such file (expected {what} of ROI {roi!r}; {present[0].name} is present)."
        )
    mapping = _mapping(mp)
    labels = {}
    for h, p in paths.items():
        arr = np.asarray(_load_npy(p, "fsaverage ROI labels"))
        if arr.shape != masks[h].shape:
            raise DataFormatError(
                f"{p}: shape {arr.shape!r}, expected {masks[h].shape!r} like "
                f"{h}.all-vertices_fsaverage_space.npy."
            )
        arr = check_labels(arr, p, "fsaverage ROI labels")
        check_label_names(arr, mapping, p, mp, "vertex(es)")
        labels[h] = arr
    return mapping, labels


def algonauts2023_plan(root: str | os.PathLike, subject: int | str) -> IngestPlan:
    """The ingest plan behind :func:`load_algonauts2023`.

    Parameters
    ----------
    root, subject
        As :func:`load_algonauts2023`.

    Returns
    -------
    IngestPlan
        The store's coordinates and attrs, and its responses as blocks read on demand
        (``plan.load()`` is ``load_algonauts2023(...)``; ``neuroalign ingest`` streams the blocks).
    """
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
    masks = {h: _vertex_mask(rm / f"{h}.all-vertices_fsaverage_space.npy") for h in ("lh", "rh")}
    verts = {h: np.flatnonzero(m) for h, m in masks.items()}
    parts, blocks, start, files = [], [], 0, []
    for split in ("train", "test"):
        folder, word = _SPLIT_DIRS[split]
        img_dir = sdir / folder / f"{word}_images"
        if not img_dir.is_dir():
            if split == "train":
                raise FileNotFoundError(f"{img_dir}: no such folder (expected train-NNNN_nsd-MMMMM.png images).")
            continue
        fmri = _fmri_files(sdir, split)
        if fmri is None:
            warnings.warn(f"{sdir / folder / f'{word}_fmri'}: no {word} fMRI files (withheld during the "
                          f"challenge); the store holds the {split} images only if their responses "
                          "exist, so they are left out.", UserWarning, stacklevel=3)
            continue
        names, nsd = _images(img_dir, split)
        for h, p in zip(("lh", "rh"), fmri, strict=True):
            arr = _load_npy(p, f"{h} fMRI (n_images, n_vertices)", mmap=True)
            if arr.ndim != 2 or arr.shape != (len(names), len(verts[h])):
                raise DataFormatError(
                    f"{p}: shape {arr.shape!r}, expected ({len(names)}, {len(verts[h])}) = "
                    f"(images in {img_dir.name}, vertices in {h}.all-vertices_fsaverage_space.npy)."
                )
            if arr.dtype.kind != "f":
                raise DataFormatError(f"{p}: dtype {arr.dtype!s}, expected floating-point responses.")
        files += fmri
        parts.append({"nsd_id": nsd, "split": np.full(len(nsd), split),
                      "image_file": np.array([f"{folder}/{word}_images/{x}" for x in names])})

        def read(fmri=fmri):
            return np.concatenate([np.asarray(_load_npy(p, "fMRI", mmap=True), dtype=np.float32)
                                   for p in fmri], axis=1)

        blocks.append(Block(str(fmri[0]), start, start + len(names), read, files=tuple(fmri)))
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
    dup = sorted(set(cat["nsd_id"][cat["split"] == "train"]) & set(cat["nsd_id"][cat["split"] == "test"]))
    if dup:
        raise DataFormatError(
            f"{sdir}: nsd-{dup[0]:05d} is both a train and a test image; expected disjoint splits."
        )
    for roi in ALGONAUTS_ROIS:
        found = _roi_files(rm, roi, masks)
        if found is None:
            continue
        mapping, labels = found
        vals = np.concatenate([labels[h][verts[h]] for h in ("lh", "rh")])
        for idx, name in sorted(mapping.items()):
            if idx > 0 and (vals == idx).any():
                coords[f"roi_{name}"] = ("neuroid", vals == idx)
    data_vars = {}
    nc = [sdir / "test_split/noise_ceiling" / f"{h}_noise_ceiling.npy" for h in ("lh", "rh")]
    if all(p.exists() for p in nc):
        vals = [np.asarray(_load_npy(p, "noise ceiling per vertex")) for p in nc]
        for p, v, h in zip(nc, vals, ("lh", "rh"), strict=True):
            if v.shape != (len(verts[h]),):
                raise DataFormatError(f"{p}: shape {v.shape!r}, expected ({len(verts[h])},) (one value per vertex).")
            if v.dtype.kind not in "fiu":
                raise DataFormatError(f"{p}: dtype {v.dtype!s}, expected numbers (noise ceiling in %).")
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
