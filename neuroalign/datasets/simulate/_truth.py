"""The ground truth of the simulated brain: a seeded network and sparse voxel read-outs.

A :class:`GroundTruthBrain` maps any image to every simulated neuroid's noise-free
response, so analyses (and guided image generation) can be scored against the truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUT_SIZE",
    "ROISpec",
    "build_network",
    "preprocess",
    "pooled_activations",
    "GroundTruthBrain",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224


@dataclass(frozen=True)
class ROISpec:
    """One simulated ROI.

    Parameters
    ----------
    name : str
        ROI label (as in NSD's ``.ctab`` files, e.g. ``"V1v"``, ``"FFA-1"``).
    atlas : str
        The ROI file it belongs to (``"prf-visualrois"``, ``"floc-faces"``, ...).
    layer : str
        Module name of the ground-truth network whose (spatially averaged) activations
        drive the ROI.
    n_voxels : int
        Voxels per hemisphere.
    units : tuple of int, optional
        If given, every voxel reads out only these channels ("named units" of the layer);
        otherwise each voxel draws its own sparse random set.
    """

    name: str
    atlas: str
    layer: str
    n_voxels: int = 30
    units: tuple[int, ...] | None = None


def build_network(arch: str = "resnet18", seed: int = 0):
    """The ground-truth network: torchvision ``arch`` with weights from ``torch.manual_seed(seed)``."""
    import torch
    import torchvision

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = torchvision.models.get_model(arch, weights=None)
    finally:
        torch.random.set_rng_state(state)
    return model.eval()


def preprocess(images: np.ndarray):
    """uint8 images (N, H, W, 3) -> normalised float tensor (N, 3, 224, 224).

    Bilinear resize (antialiased) to 224 x 224, then ImageNet mean/std normalisation: the
    transform recorded in ``truth.json`` (``"transform"``).
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def pooled_activations(
    model, images: np.ndarray, layers: list[str], *, batch_size: int = 32
) -> dict[str, np.ndarray]:
    """Spatially averaged activations ``{layer: (N, C)}`` of ``layers`` for uint8 images."""
    import torch

    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(
            f"Unknown layer(s) {missing!r} of the ground-truth network. "
            f"Expected module names such as {[n for n in modules if n][:12]!r}."
        )
    from neuroalign.features._hooks import LayerRecorder

    store: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    # the one hook engine (as neuroalign.features.extract): spatial mean of feature maps
    with torch.no_grad(), LayerRecorder(model, layers, pooling="mean", modality="image") as rec:
        for start in range(0, len(images), batch_size):
            out = rec.run(model, preprocess(images[start : start + batch_size]))
            for name in layers:
                store[name].append(out[name].double().numpy())
    return {name: np.concatenate(v) for name, v in store.items()}


@dataclass
class GroundTruthBrain:
    """Noise-free responses of the simulated neuroids to any image.

    Each driven neuroid ``v`` reads out its layer's spatially averaged activations ``a``:
    ``signal_v = amplitude_v * (w_v · z) / s_v`` with ``z = (a - mean) / sd`` standardised by
    the simulation's stimulus-set statistics and ``s_v`` the sd of ``w_v · z`` over that
    set, so the signal has sd ``amplitude_v`` (percent signal change) over the stimuli.

    Parameters
    ----------
    arch : str
        The torchvision architecture of the true network (e.g. ``"resnet18"``).
    seed : int
        Seed of its random weights.
    layer_mean, layer_sd : dict of str to ndarray
        Per layer, the mean and sd of the pooled activations over the simulated stimuli.
    neuroids : list of dict
        Per neuroid: id, ROI, layer, read-out weights and amplitude (``truth.json``).
    _model : torch.nn.Module, optional
        The network, built on first use.
    """

    arch: str
    seed: int
    layer_mean: dict[str, np.ndarray]
    layer_sd: dict[str, np.ndarray]
    neuroids: list[dict[str, Any]] = field(default_factory=list)
    _model: Any = field(default=None, repr=False)

    @property
    def model(self):
        if self._model is None:
            self._model = build_network(self.arch, self.seed)
        return self._model

    @property
    def layers(self) -> list[str]:
        return sorted({n["layer"] for n in self.neuroids if n.get("layer") and "@" not in n["layer"]})

    def rois(self) -> list[str]:
        """Names of the simulated ROIs.

        Returns
        -------
        list of str
            Sorted.
        """
        return sorted({n["roi"] for n in self.neuroids if n.get("roi")})

    def signal(self, images: np.ndarray, *, activations: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Noise-free response (PSC) of every neuroid to uint8 ``images``: shape (N, n_neuroids).

        Undriven neuroids respond 0. Neuroids of a routing ROI (layer ``"layer3@target"``)
        read the layer at a target position that only the simulated images define; they
        are NaN here.

        Parameters
        ----------
        images : ndarray of uint8, shape (N, H, W, 3)
            Any images.
        activations : dict of str to ndarray, optional
            Pooled activations of the true network's layers, when already computed.

        Returns
        -------
        ndarray, shape (N, n_neuroids)
            The noise-free responses.
        """
        acts = activations or pooled_activations(self.model, images, self.layers)
        n = len(next(iter(acts.values()))) if acts else len(images)
        out = np.zeros((n, len(self.neuroids)))
        for v, nd in enumerate(self.neuroids):
            layer = nd.get("layer")
            if not layer:
                continue
            if "@" in layer:
                out[:, v] = np.nan
                continue
            z = (acts[layer] - self.layer_mean[layer]) / self.layer_sd[layer]
            ch = np.asarray(nd["channels"], dtype=int)
            proj = z[:, ch] @ np.asarray(nd["weights"], dtype=float)
            out[:, v] = nd["amplitude"] * proj / nd["readout_sd"]
        return out

    def roi_response(self, images: np.ndarray, roi: str) -> np.ndarray:
        """Mean noise-free response of an ROI's neuroids to each image.

        Parameters
        ----------
        images : ndarray of uint8, shape (N, H, W, 3)
            Any images.
        roi : str
            A simulated ROI.

        Returns
        -------
        ndarray, shape (N,)
            The ROI's mean response.
        """
        idx = [v for v, nd in enumerate(self.neuroids) if nd.get("roi") == roi]
        if not idx:
            raise KeyError(f"Unknown ROI {roi!r}. Simulated ROIs: {self.rois()!r}.")
        routed = sorted({self.neuroids[v]["layer"] for v in idx if "@" in (self.neuroids[v].get("layer") or "")})
        if routed:
            raise ValueError(
                f"ROI {roi!r} reads {routed[0]!r}: its response depends on the target position "
                "inside the simulated images, so it is not defined for arbitrary images."
            )
        return self.signal(images)[:, idx].mean(axis=1)

    def to_dict(self) -> dict[str, Any]:
        """The brain as JSON-serialisable data (what ``truth.json`` stores).

        Returns
        -------
        dict
            Architecture, seed, layer statistics and neuroids.
        """
        return {
            "arch": self.arch,
            "seed": self.seed,
            "layer_mean": {k: v.tolist() for k, v in self.layer_mean.items()},
            "layer_sd": {k: v.tolist() for k, v in self.layer_sd.items()},
        }

    @classmethod
    def from_truth(cls, truth: dict[str, Any] | str | Path) -> GroundTruthBrain:
        """Rebuild from a ``truth.json``.

        Parameters
        ----------
        truth : dict or path-like
            The loaded file, or its path.

        Returns
        -------
        GroundTruthBrain
            The brain the simulation was written from.
        """
        if not isinstance(truth, dict):
            truth = json.loads(Path(truth).read_text())
        model = truth["model"]
        return cls(
            arch=model["arch"],
            seed=int(model["seed"]),
            layer_mean={k: np.asarray(v) for k, v in model["layer_mean"].items()},
            layer_sd={k: np.asarray(v) for k, v in model["layer_sd"].items()},
            neuroids=truth["neuroids"],
        )
