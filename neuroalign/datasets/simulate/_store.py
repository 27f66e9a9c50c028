"""Build the store that a simulated tree encodes (the reference for adapter round trips)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from neuroalign.store._schema import SCHEMA_VERSION

__all__ = ["volume_store", "nsd_stimulus_id", "volume_neuroid_id"]


def nsd_stimulus_id(nsd_id: int) -> str:
    """NSD's stimulus id convention: ``nsd-{nsdId:05d}`` with the 0-based nsdId."""
    return f"nsd-{int(nsd_id):05d}"


def volume_neuroid_id(subject: int, i: int, j: int, k: int) -> str:
    """Neuroid id of voxel (i, j, k) (NIfTI X, Y, Z order) of NSD subject ``subject``."""
    return f"subj{int(subject):02d}_{int(i)}_{int(j)}_{int(k)}"


def volume_store(
    betas: np.ndarray,
    voxels: np.ndarray,
    trials: dict[str, np.ndarray],
    *,
    subject: int,
    affine: np.ndarray,
    volume_shape: tuple[int, int, int],
    roi_vols: dict[str, np.ndarray],
    labels: dict[str, list[str]] | None = None,
) -> xr.Dataset:
    """A trial-level store of NSD-style volume betas.

    ``betas`` (n_trials, n_voxels) in PSC; ``voxels`` (n_voxels, 3) indices in C order;
    ``trials`` holds ``nsd_id``, ``repetition``, ``session``, ``run``, ``trial``, ``test``.
    Each label of each ROI volume with at least one voxel becomes a ``roi_<label>`` coord.
    """
    from neuroalign.datasets.simulate._nsd import ATLAS_LABELS

    labels = labels or ATLAS_LABELS
    X = volume_shape[0]
    i, j, k = voxels[:, 0], voxels[:, 1], voxels[:, 2]
    coords: dict[str, Any] = {
        "stimulus_id": ("presentation", np.array([nsd_stimulus_id(n) for n in trials["nsd_id"]])),
        "nsd_id": ("presentation", trials["nsd_id"].astype(np.int64)),
        "repetition": ("presentation", trials["repetition"].astype(np.int64)),
        "session": ("presentation", trials["session"].astype(np.int64)),
        "run": ("presentation", trials["run"].astype(np.int64)),
        "trial": ("presentation", trials["trial"].astype(np.int64)),
        "split": ("presentation", np.where(trials["test"], "test", "train")),
        "neuroid_id": ("neuroid", np.array([volume_neuroid_id(subject, *v) for v in voxels])),
        "subject": ("neuroid", np.array([f"subj{subject:02d}"] * len(voxels))),
        "hemisphere": ("neuroid", np.where(i < X / 2, "lh", "rh")),
        "i": ("neuroid", i.astype(np.int64)),
        "j": ("neuroid", j.astype(np.int64)),
        "k": ("neuroid", k.astype(np.int64)),
    }
    for atlas, vol in roi_vols.items():
        if atlas == "nsdgeneral":
            continue
        vals = vol[i, j, k]
        for idx, name in enumerate(labels[atlas], start=1):
            mask = vals == idx
            if mask.any():
                coords[f"roi_{name}"] = ("neuroid", mask)
    return xr.Dataset(
        {"responses": (("presentation", "neuroid"), betas.astype(np.float32))},
        coords=coords,
        attrs={
            "dataset": "nsd",
            "space": "func1pt8mm",
            "units": "percent signal change",
            "schema_version": SCHEMA_VERSION,
            "affine": np.asarray(affine).tolist(),
            "volume_shape": list(volume_shape),
            "subject": f"subj{subject:02d}",
        },
    )
