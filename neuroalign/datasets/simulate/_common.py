"""Pieces shared by the NSD and THINGS-EEG2 simulations."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign.datasets.simulate._truth import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_SIZE,
    ROISpec,
    build_network,
    pooled_activations,
)

__all__ = ["ground_truth", "readouts", "write_json_atomic", "transform_record"]


def transform_record() -> dict[str, Any]:
    return {
        "resize": [INPUT_SIZE, INPUT_SIZE],
        "interpolation": "bilinear",
        "antialias": True,
        "crop": None,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def ground_truth(images: np.ndarray, arch: str, model_seed: int, layers: list[str]):
    """Pooled activations of the seeded ground-truth network and their set statistics."""
    model = build_network(arch, model_seed)
    acts = pooled_activations(model, images, sorted(set(layers)))
    mean = {k: v.mean(axis=0) for k, v in acts.items()}
    sd = {k: np.where(v.std(axis=0) > 0, v.std(axis=0), 1.0) for k, v in acts.items()}
    return model, acts, mean, sd


def readouts(
    rng: np.random.Generator,
    spec: ROISpec,
    n: int,
    acts: dict[str, np.ndarray],
    mean: dict[str, np.ndarray],
    sd: dict[str, np.ndarray],
    *,
    n_active: int = 8,
) -> list[dict[str, Any]]:
    """Sparse read-out parameters of ``n`` neuroids driven by ``spec.layer``.

    Returns one dict per neuroid with ``channels``, ``weights``, ``readout_sd`` and the
    standardised projection (key ``"_projection"``, shape (N,), not serialised).
    """
    if spec.layer not in acts:
        raise ValueError(f"ROI {spec.name!r}: layer {spec.layer!r} was not computed.")
    z = (acts[spec.layer] - mean[spec.layer]) / sd[spec.layer]
    n_ch = z.shape[1]
    out = []
    for _ in range(n):
        if spec.units is not None:
            ch = np.asarray(spec.units, dtype=int)
            if ch.min() < 0 or ch.max() >= n_ch:
                raise ValueError(
                    f"ROI {spec.name!r}: units {list(spec.units)!r} out of range for layer "
                    f"{spec.layer!r} with {n_ch} channels."
                )
            w = np.abs(rng.standard_normal(len(ch))) + 0.5
        else:
            ch = np.sort(rng.choice(n_ch, size=min(n_active, n_ch), replace=False))
            w = rng.standard_normal(len(ch))
        proj = z[:, ch] @ w
        psd = float(proj.std()) or 1.0
        out.append(
            {
                "channels": ch.tolist(),
                "weights": w.tolist(),
                "readout_sd": psd,
                "_projection": proj / psd,
            }
        )
    return out


def write_json_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)
