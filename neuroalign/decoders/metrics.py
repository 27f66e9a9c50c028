"""Reconstruction and retrieval metrics, with the field's definitions (as MindEye, Scotti et al. 2023, reports them).

The definitions follow MindEye1 ``src/Reconstruction_Metrics.py`` / MindEye2
``final_evaluations.ipynb`` (reused verbatim by MindBridge and ATM) and Brain-Diffuser
``scripts/evaluate_reconstruction.py``:

- :func:`pixcorr`: resize reconstruction and ground truth to ``size`` (bilinear), flatten
  RGB, Pearson r per image, mean over images.
- :func:`ssim`: resize to ``size``, ``skimage.color.rgb2gray``, ``structural_similarity``
  with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0``,
  mean over images.
- :func:`two_way_identification`: on flattened features; ``r = corrcoef(F_gt, F_rec)[:N, N:]``;
  for each reconstruction ``j`` the fraction of the ``N - 1`` ground-truth distractors
  ``i != j`` with ``r[i, j] < r[j, j]``; mean over ``j`` (all distractors, deterministic).
- :func:`correlation_distance`: mean over images of ``1 - pearson(gt_i, rec_i)``
  (EffNet-B / SwAV style; lower is better).
- :func:`retrieval_top1`: ``n_draws`` draws of ``n_way`` test samples without replacement;
  embeddings flattened and l2-normalised; cosine matrix; forward ("image retrieval") = top-1
  over images for each brain embedding, backward ("brain retrieval") = top-1 over brains for
  each image; mean over draws (chance ``1 / n_way``). A tie with another candidate counts
  as a miss (the references' ``argmax`` would pick whichever comes first). With fewer than ``n_way`` test
  samples, ``n_way`` is scaled down to the test size (a protocol choice recorded in
  the result).

Protocol choices written down here: images are uint8 ``(N, H, W, 3)`` or float in
``[0, 1]``; resizing uses ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` with ``antialias`` chosen by the preset (MindEye1 ran with the old
torchvision tensor resize, ``antialias=False``; current torchvision defaults to ``True``).
:data:`PRESETS` names the reference protocols (image size, test-set size).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuroalign._validation import UNSET, check_option, check_positive_int, renamed
from neuroalign.exceptions import DimensionError

__all__ = [
    "PRESETS",
    "MetricPreset",
    "to_float_images",
    "resize_images",
    "pixcorr",
    "ssim",
    "two_way_identification",
    "correlation_distance",
    "retrieval_top1",
    "FeatureNetwork",
    "feature_network",
    "evaluate_reconstructions",
]


@dataclass(frozen=True)
class MetricPreset:
    """A reference evaluation protocol.

    Attributes
    ----------
    name : str
    image_size : int
        Side to which reconstructions and ground truth are resized for PixCorr and SSIM.
    n_test : int
        Test-set size of the protocol (the number of distractors + 1 in 2-way identification).
    antialias : bool
        Whether the bilinear resize antialiases.
    retrieval_way, retrieval_draws : int
        Retrieval protocol (300-way, 30 draws).
    """

    name: str
    image_size: int
    n_test: int
    antialias: bool
    retrieval_way: int = 300
    retrieval_draws: int = 30


PRESETS: dict[str, MetricPreset] = {
    # MindEye1 / Brain-Diffuser / MindBridge / Takagi: 982 images shared by subjects 1,2,5,7.
    "mindeye1": MetricPreset("mindeye1", 425, 982, antialias=False),
    "brain-diffuser": MetricPreset("brain-diffuser", 425, 982, antialias=True),
    # MindEye2: shared1000 "new_test", everything resized to 256 first.
    "mindeye2": MetricPreset("mindeye2", 256, 1000, antialias=True),
    # The simulated brain: whatever the test split holds, images compared at 64 px.
    "simulated": MetricPreset("simulated", 64, 0, antialias=True),
}


def _check_images(images, name: str) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise DimensionError(
            f"Invalid shape for {name!r}: {arr.shape!r}. Expected images (N, H, W, 3), "
            "uint8 in [0, 255] or float in [0, 1]."
        )
    return arr


def to_float_images(images, name: str = "images") -> np.ndarray:
    """uint8 ``(N, H, W, 3)`` -> float64 in ``[0, 1]``; float input is returned as float64."""
    arr = _check_images(images, name)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    return arr.astype(np.float64)


def resize_images(images, size: int, *, antialias: bool = True) -> np.ndarray:
    """Bilinear resize of ``(N, H, W, 3)`` images to ``(N, size, size, 3)`` floats in [0, 1]."""
    import torch
    import torch.nn.functional as F

    arr = to_float_images(images)
    if arr.shape[1:3] == (size, size):
        return arr
    x = torch.from_numpy(arr).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    return x.permute(0, 2, 3, 1).numpy()


def _pair(recons, targets) -> tuple[np.ndarray, np.ndarray]:
    rec = _check_images(recons, "recons")
    gt = _check_images(targets, "targets")
    if len(rec) != len(gt):
        raise DimensionError(
            f"'recons' holds {len(rec)} images and 'targets' {len(gt)}; expected one "
            "reconstruction per ground-truth image."
        )
    return rec, gt


def pixcorr(recons, targets, *, size: int | None = 425, antialias: bool = True,
            per_image: bool = False) -> float | np.ndarray:
    """PixCorr: mean over images of the Pearson r of flattened RGB pixels (higher is better).

    Parameters
    ----------
    recons, targets : array-like (N, H, W, 3)
        Reconstructions and ground truth, uint8 or float in [0, 1].
    size : int or None
        Resize both to ``size`` x ``size`` first (references: 425); ``None`` keeps them.
    antialias : bool
        Antialiased bilinear resize.
    per_image : bool
        Return the score of each image (N,) instead of their mean.
    """
    rec, gt = _pair(recons, targets)
    if size is not None:
        rec, gt = resize_images(rec, size, antialias=antialias), resize_images(gt, size, antialias=antialias)
    else:
        rec, gt = to_float_images(rec), to_float_images(gt)
    rec = rec.reshape(len(rec), -1)
    gt = gt.reshape(len(gt), -1)
    scores = np.array([np.corrcoef(gt[i], rec[i])[0, 1] for i in range(len(gt))])
    return scores if per_image else float(np.mean(scores))


def ssim(recons, targets, *, size: int | None = 425, antialias: bool = True,
         per_image: bool = False) -> float | np.ndarray:
    """SSIM on grey images with Gaussian weights (sigma 1.5), mean over images (higher is better).

    ``skimage.metrics.structural_similarity(rec, gt, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1.0)`` on ``skimage.color.rgb2gray`` images,
    exactly as the references. ``per_image=True`` returns the score of each image.
    """
    from skimage.color import rgb2gray
    from skimage.metrics import structural_similarity

    rec, gt = _pair(recons, targets)
    if size is not None:
        rec, gt = resize_images(rec, size, antialias=antialias), resize_images(gt, size, antialias=antialias)
    else:
        rec, gt = to_float_images(rec), to_float_images(gt)
    scores = [
        structural_similarity(
            rgb2gray(r), rgb2gray(g), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0,
        )
        for r, g in zip(rec, gt, strict=True)
    ]
    return np.array(scores) if per_image else float(np.mean(scores))


def _features_pair(feat_gt, feat_rec) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(feat_gt, dtype=np.float64)
    rec = np.asarray(feat_rec, dtype=np.float64)
    gt = gt.reshape(len(gt), -1)
    rec = rec.reshape(len(rec), -1)
    if gt.shape != rec.shape:
        raise DimensionError(
            f"'feat_gt' has shape {gt.shape!r} and 'feat_rec' {rec.shape!r} (flattened); "
            "expected the same (N, n_features)."
        )
    if len(gt) < 2:
        raise DimensionError(
            f"2-way identification needs at least 2 images; got {len(gt)}."
        )
    return gt, rec


def two_way_identification(feat_gt, feat_rec, *, per_image: bool = False) -> float | np.ndarray:
    """2-way identification against all ``N - 1`` distractors (higher is better, chance 0.5).

    ``r = corrcoef(F_gt, F_rec)[:N, N:]`` (rows ground truth, columns reconstructions); for
    reconstruction ``j``, count distractors ``i != j`` with ``r[i, j] < r[j, j]``; score =
    mean over ``j`` of ``count_j / (N - 1)``.

    Parameters
    ----------
    feat_gt, feat_rec : array-like (N, ...)
        Features of the ground-truth images and of the reconstructions (flattened per image).
    per_image : bool
        Return ``count_j / (N - 1)`` of each reconstruction (N,) instead of their mean.
    """
    gt, rec = _features_pair(feat_gt, feat_rec)
    n = len(gt)
    r = np.corrcoef(gt, rec)[:n, n:]
    congruent = np.diag(r)
    success = r < congruent[None, :]
    success[np.arange(n), np.arange(n)] = False
    scores = success.sum(axis=0) / (n - 1)
    return scores if per_image else float(np.mean(scores))


def correlation_distance(feat_gt, feat_rec, *, per_image: bool = False) -> float | np.ndarray:
    """Mean over images of ``scipy.spatial.distance.correlation(gt_i, rec_i)`` (lower is better);
    ``per_image=True`` returns each image's distance."""
    gt, rec = _features_pair(feat_gt, feat_rec)
    gt = gt - gt.mean(axis=1, keepdims=True)
    rec = rec - rec.mean(axis=1, keepdims=True)
    r = (gt * rec).sum(1) / np.sqrt((gt**2).sum(1) * (rec**2).sum(1))
    return (1.0 - r) if per_image else float(np.mean(1.0 - r))


def retrieval_top1(
    brain_embeds,
    image_embeds,
    *,
    n_way: int = 300,
    n_draws: int = 30,
    random_state: int | None = 0,
    seed: Any = UNSET,
) -> dict[str, float]:
    """Top-1 retrieval in ``n_way`` draws (MindEye protocol).

    Parameters
    ----------
    brain_embeds, image_embeds : array-like (N, ...)
        Predicted (brain) and true (image) embeddings of the same N test samples, row for row.
    n_way : int
        Candidates per draw (300 in the references); scaled down to N when N is smaller.
    n_draws : int
        Draws (30 in the references). With ``n_way == N`` every draw holds all samples, so
        one draw suffices and the result is deterministic and independent of row order.
    random_state : int or None
        Seed of the draws.
    seed : deprecated
        Old name of ``random_state`` (``FutureWarning``).

    Returns
    -------
    dict
        ``{"forward": ..., "backward": ..., "n_way": ..., "n_draws": ..., "chance": 1/n_way}``.
        ``forward`` = image retrieval (for each brain embedding, is its own image the most
        similar?); ``backward`` = brain retrieval.
    """
    n_way = check_positive_int(n_way, name="n_way", func="retrieval_top1", minimum=2)
    n_draws = check_positive_int(n_draws, name="n_draws", func="retrieval_top1")
    b, im = _features_pair(brain_embeds, image_embeds)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    im = im / np.maximum(np.linalg.norm(im, axis=1, keepdims=True), 1e-12)
    n = len(b)
    way = min(n_way, n)
    draws = 1 if way == n else n_draws
    seed = renamed(seed, random_state, old="seed", new="random_state", func="retrieval_top1",
                   default=0)
    rng = np.random.default_rng(seed)
    fwd, bwd = [], []
    for _ in range(draws):
        idx = rng.permutation(n)[:way] if way < n else np.arange(n)
        sim = b[idx] @ im[idx].T  # rows brain, columns images
        own = np.diag(sim)
        other = sim.copy()
        np.fill_diagonal(other, -np.inf)
        # a hit needs its own match strictly more similar than every candidate: a tie is a
        # miss (as 2-way identification's strict <), so candidate order never matters
        fwd.append(np.mean(own > other.max(axis=1)))
        bwd.append(np.mean(own > other.max(axis=0)))
    return {
        "forward": float(np.mean(fwd)),
        "backward": float(np.mean(bwd)),
        "n_way": way,
        "n_draws": draws,
        "chance": 1.0 / way,
    }


_NETWORKS = {
    # name: (torchvision arch, node, resize, mean, std)
    "alexnet2": ("alexnet", "features.4", 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "alexnet5": ("alexnet", "features.11", 256, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ("inception_v3", "avgpool", 342, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "effnet": ("efficientnet_b1", "avgpool", 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "resnet18": ("resnet18", "avgpool", 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


class FeatureNetwork:
    """Features of one node of a torch network for images, as used by the metrics.

    Parameters
    ----------
    model : torch.nn.Module
        The network (in eval mode).
    node : str
        Module name whose output is taken (flattened).
    resize : int
        Bilinear resize before the network.
    mean, std : tuple of float
        Normalisation after resizing.
    name : str
        Label for tables.
    """

    def __init__(self, model, node: str, *, resize: int, mean, std, name: str = "network") -> None:
        self.model = model.eval()
        self.node = node
        self.resize = resize
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.name = name

    def __call__(self, images, *, batch_size: int = 16) -> np.ndarray:
        import torch

        modules = dict(self.model.named_modules())
        if self.node not in modules:
            raise KeyError(
                f"Unknown node {self.node!r} of network {self.name!r}. "
                f"Expected a module name such as {list(modules)[1:8]!r}."
            )
        from neuroalign.features._hooks import LayerRecorder

        out: list[np.ndarray] = []
        m = torch.tensor(self.mean).view(1, 3, 1, 1)
        s = torch.tensor(self.std).view(1, 3, 1, 1)
        # the one hook engine, unpooled: the node's whole output, flattened as (C, H, W)
        with torch.no_grad(), LayerRecorder(self.model, [self.node], pooling=None,
                                            modality="image") as rec:
            for start in range(0, len(images), batch_size):
                arr = resize_images(images[start : start + batch_size], self.resize)
                x = torch.from_numpy(arr).permute(0, 3, 1, 2).float()
                act = rec.run(self.model, (x - m) / s)[self.node]
                if self.node in rec.grids:  # a feature map given as (B, H*W, C) tokens
                    act = act.transpose(1, 2)
                out.append(act.reshape(len(x), -1).double().numpy())
        return np.concatenate(out)


def feature_network(name: str, *, weights: str | None = "DEFAULT", seed: int = 0,
                    allow_download: bool = False) -> FeatureNetwork:
    """A metric network by name: ``"alexnet2"``, ``"alexnet5"``, ``"inception"``, ``"effnet"``,
    ``"resnet18"``.

    ``weights="DEFAULT"`` loads torchvision's pretrained weights from the local torch cache
    (``$TORCH_HOME/hub/checkpoints``, read as plain tensors); when the file is not there it
    raises :class:`~neuroalign.exceptions.WeightsNotAvailableError` naming it, unless
    ``allow_download=True``. ``weights=None`` builds the same architecture with random
    weights from ``seed``, a stand-in when no pretrained weights are available (scores are
    then not comparable with the literature, but 2-way identification is still a valid test
    against chance).
    """
    from neuroalign.features._weights import torchvision_model

    check_option(name, tuple(_NETWORKS), name="name", func="feature_network")
    arch, node, resize, mean, std = _NETWORKS[name]
    kwargs = {"aux_logits": True, "init_weights": True} if arch == "inception_v3" and weights is None else {}
    model, _ = torchvision_model(arch, weights, seed=seed, allow_download=allow_download,
                                 func="feature_network", **kwargs)
    return FeatureNetwork(model, node, resize=resize, mean=mean, std=std, name=name)


def evaluate_reconstructions(
    recons,
    targets,
    *,
    networks: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    distance_networks: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    preset: str = "simulated",
) -> dict[str, float]:
    """The metrics table of the references for a set of reconstructions.

    Parameters
    ----------
    recons, targets : array-like (N, H, W, 3)
    networks : dict of name -> callable, optional
        Feature functions (images -> (N, F)) scored by 2-way identification.
    distance_networks : dict of name -> callable, optional
        Feature functions scored by correlation distance (EffNet-B, SwAV style).
    preset : str
        A key of :data:`PRESETS` (image size and resize settings).

    Returns
    -------
    dict
        ``{"PixCorr": ..., "SSIM": ..., "<name> 2-way": ..., "<name> corr-dist": ...}``.
    """
    check_option(preset, tuple(PRESETS), name="preset", func="evaluate_reconstructions")
    p = PRESETS[preset]
    rec, gt = _pair(recons, targets)
    table = {
        "PixCorr": pixcorr(rec, gt, size=p.image_size, antialias=p.antialias),
        "SSIM": ssim(rec, gt, size=p.image_size, antialias=p.antialias),
    }
    for name, fn in (networks or {}).items():
        table[f"{name} 2-way"] = two_way_identification(fn(gt), fn(rec))
    for name, fn in (distance_networks or {}).items():
        table[f"{name} corr-dist"] = correlation_distance(fn(gt), fn(rec))
    return table
