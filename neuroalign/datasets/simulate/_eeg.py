"""Write a simulated subject as a THINGS-EEG2-format tree (the card datasets/things-eeg2.toml)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign.datasets.simulate._common import ground_truth, readouts, transform_record
from neuroalign.datasets.simulate._images import make_images
from neuroalign.datasets.simulate._truth import ROISpec
from neuroalign.store._schema import SCHEMA_VERSION

__all__ = ["CHANNELS", "SENSOR_GROUPS", "simulate_things_eeg2"]

log = get_logger(__name__)

#: The 17 occipital/parietal channels of the preprocessed THINGS-EEG2 files, in file order.
CHANNELS = ["Pz", "P3", "P7", "O1", "Oz", "O2", "P4", "P8", "P1", "P5", "PO7", "PO3", "POz",
            "PO4", "PO8", "P6", "P2"]

#: Sensor groups ("ROIs"), the layer that drives them and their response latency (s).
SENSOR_GROUPS: dict[str, dict[str, Any]] = {
    "occipital": {"channels": ["O1", "Oz", "O2"], "layer": "layer1", "latency": 0.10},
    "parieto-occipital": {"channels": ["PO7", "PO3", "POz", "PO4", "PO8"], "layer": "layer2", "latency": 0.17},
    "parietal": {"channels": ["Pz", "P3", "P7", "P4", "P8", "P1", "P5", "P6", "P2"], "layer": "layer4", "latency": 0.28},
}
TIMES = np.linspace(-0.2, 0.79, 100)  # 100 Hz, -0.2..0.79 s (with float noise, as published)
WIDTH = 0.04  # s, sd of the Gaussian response envelope


def _jpeg_roundtrip(img: np.ndarray) -> tuple[bytes, np.ndarray]:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    return data, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def simulate_things_eeg2(
    out: Path,
    *,
    n_images: int,
    n_test: int,
    n_repetitions: int,
    n_test_repetitions: int,
    image_size: int,
    seed: int,
    arch: str,
    model_seed: int,
    ncsnr_range: tuple[float, float],
    n_active: int,
    images_per_concept: int = 2,
    subject: int = 1,
):
    """Write the THINGS-EEG2 tree into ``out``; return the truth dict and its store."""
    rng = np.random.default_rng(seed)
    n_train = n_images - n_test
    if n_train < images_per_concept or n_test < 1:
        raise ValueError(
            f"simulate(format='things-eeg2') needs n_test >= 1 and at least {images_per_concept} "
            f"training images; got n_images={n_images}, n_test={n_test}."
        )
    raw, family = make_images(n_images, image_size, seed=seed)
    image_root = out / "image_set"
    files: dict[str, list[str]] = {"train": [], "test": []}
    concepts: dict[str, list[str]] = {"train": [], "test": []}
    rel: dict[str, list[str]] = {"train": [], "test": []}
    decoded = np.empty_like(raw)
    for n in range(n_images):
        split = "train" if n < n_train else "test"
        if split == "train":
            c = n // images_per_concept
            ex = n % images_per_concept + 1
            name = f"{family[n]}{c + 1}"
            concept = f"{c + 1:05d}_{name}"
            fname = f"{name}_{ex:02d}b.jpg"
            folder = image_root / "training_images" / concept
        else:
            c = n - n_train
            name = f"{family[n]}{c + 1}x"
            concept = f"{c + 1:05d}_{name}"
            fname = f"{name}_{1:02d}s.jpg"
            folder = image_root / "test_images" / concept
        folder.mkdir(parents=True, exist_ok=True)
        data, decoded[n] = _jpeg_roundtrip(raw[n])
        (folder / fname).write_bytes(data)
        files[split].append(fname)
        concepts[split].append(concept)
        rel[split].append(str(folder.relative_to(image_root) / fname))
    metadata = {}
    for split in ("train", "test"):
        metadata[f"{split}_img_files"] = files[split]
        metadata[f"{split}_img_concepts"] = concepts[split]
        metadata[f"{split}_img_concepts_THINGS"] = [
            f"{1000 + i:04d}_{c.split('_', 1)[1]}" for i, c in enumerate(concepts[split])
        ]
    np.save(image_root / "image_metadata.npy", metadata, allow_pickle=True)

    layers = sorted({g["layer"] for g in SENSOR_GROUPS.values()})
    _, acts, lmean, lsd = ground_truth(decoded, arch, model_seed, layers)
    n_ch = len(CHANNELS)
    proj = np.zeros((n_images, n_ch))
    gain = np.zeros(n_ch)
    noise_sd = np.zeros(n_ch)
    snr = np.zeros(n_ch)
    meta: list[dict[str, Any]] = [{} for _ in CHANNELS]
    envelope = np.zeros((n_ch, len(TIMES)))
    for group, g in SENSOR_GROUPS.items():
        spec = ROISpec(group, "sensors", g["layer"], n_voxels=len(g["channels"]))
        params = readouts(rng, spec, len(g["channels"]), acts, lmean, lsd, n_active=n_active)
        for ch, p in zip(g["channels"], params, strict=True):
            c = CHANNELS.index(ch)
            proj[:, c] = p.pop("_projection")
            gain[c] = rng.uniform(1.0, 2.0)
            snr[c] = rng.uniform(*ncsnr_range)
            noise_sd[c] = gain[c] / snr[c]
            envelope[c] = np.exp(-((TIMES - g["latency"]) ** 2) / (2 * WIDTH**2))
            meta[c] = {"roi": group, "layer": g["layer"], "latency": g["latency"],
                       "amplitude": float(gain[c]), **p}

    def make(idx, reps):
        sig = (proj[idx] * gain)[:, None, :, None] * envelope[None, None]
        noise = rng.standard_normal((len(idx), reps, n_ch, len(TIMES))) * noise_sd[None, None, :, None]
        return sig + noise

    data_dir = out / "preprocessed_data" / f"sub-{subject:02d}"
    data_dir.mkdir(parents=True, exist_ok=True)
    arrays = {
        "training": make(np.arange(n_train), n_repetitions),
        "test": make(np.arange(n_train, n_images), n_test_repetitions),
    }
    for split, arr in arrays.items():
        np.save(
            data_dir / f"preprocessed_eeg_{split}.npy",
            {"preprocessed_eeg_data": arr.astype(np.float64), "ch_names": list(CHANNELS), "times": TIMES},
            allow_pickle=True,
        )

    store = _eeg_store(arrays, files, rel, subject)
    neuroids = []
    for c, ch in enumerate(CHANNELS):
        s = float(snr[c])
        neuroids.append({
            "neuroid_id": f"sub-{subject:02d}_{ch}", "sensor": ch, "ncsnr_peak": s,
            "noise_ceiling_peak": 100.0 * s**2 / (s**2 + 1.0 / n_test_repetitions),
            "noise_sd": float(noise_sd[c]), **meta[c],
        })
    truth = {
        "format": "things-eeg2",
        "seed": seed,
        "subject": f"sub-{subject:02d}",
        "model": {
            "arch": arch, "seed": model_seed,
            "source": f"torchvision.models.get_model({arch!r}, weights=None) after torch.manual_seed({model_seed})",
            "transform": transform_record(), "pooling": "spatial mean",
            "layer_mean": {k: v.tolist() for k, v in lmean.items()},
            "layer_sd": {k: v.tolist() for k, v in lsd.items()},
        },
        "rois": {k: {**v, "name": k} for k, v in SENSOR_GROUPS.items()},
        "layer_of_roi": {k: v["layer"] for k, v in SENSOR_GROUPS.items()},
        "latency_of_roi": {k: v["latency"] for k, v in SENSOR_GROUPS.items()},
        "design": {
            "n_train": n_train, "n_test": n_test, "n_repetitions": n_repetitions,
            "n_test_repetitions": n_test_repetitions, "image_size": image_size,
            "envelope_sd_s": WIDTH, "times": TIMES.tolist(),
            "families": sorted(set(family.tolist())),
        },
        "image_family": family.tolist(),
        "neuroids": neuroids,
    }
    return truth, store


def _eeg_store(
    arrays: dict[str, np.ndarray], files: dict[str, list[str]], rel: dict[str, list[str]], subject: int
) -> xr.Dataset:
    """The store the EEG tree encodes: repetitions unrolled into presentations."""
    parts = []
    for split, key in (("train", "training"), ("test", "test")):
        arr = arrays[key]
        n_img, n_rep = arr.shape[:2]
        stems = np.array([f"things-{Path(f).stem}" for f in files[split]])
        parts.append({
            "data": arr.reshape(n_img * n_rep, *arr.shape[2:]),
            "stimulus_id": np.repeat(stems, n_rep),
            "image_file": np.repeat(np.array(rel[split]), n_rep),
            "repetition": np.tile(np.arange(n_rep), n_img),
            "split": np.full(n_img * n_rep, split),
        })
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    coords = {
        "stimulus_id": ("presentation", cat["stimulus_id"]),
        "repetition": ("presentation", cat["repetition"].astype(np.int64)),
        "split": ("presentation", cat["split"]),
        "image_file": ("presentation", cat["image_file"]),
        "neuroid_id": ("neuroid", np.array([f"sub-{subject:02d}_{c}" for c in CHANNELS])),
        "subject": ("neuroid", np.array([f"sub-{subject:02d}"] * len(CHANNELS))),
        "sensor": ("neuroid", np.array(CHANNELS)),
        "time": ("time", TIMES.astype(np.float64)),
    }
    for group, g in SENSOR_GROUPS.items():
        coords[f"roi_{group}"] = ("neuroid", np.isin(CHANNELS, g["channels"]))
    return xr.Dataset(
        {"responses": (("presentation", "neuroid", "time"), cat["data"].astype(np.float32))},
        coords=coords,
        attrs={"dataset": "things-eeg2", "space": "sensor", "units": "a.u. (MVNN-whitened)",
               "schema_version": SCHEMA_VERSION, "subject": f"sub-{subject:02d}"},
    )
