"""Image preprocessing as batched tensor operations on uint8 arrays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ImageTransform", "CallableTransform", "TRANSFORM_PRESETS", "get_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageTransform:
    """Resize, optional centre crop, and mean/std normalisation of uint8 ``(H, W, 3)`` images.

    Parameters
    ----------
    size : int
        Output side in pixels.
    resize : {"square", "shortest"}
        ``"square"`` resizes straight to ``size x size``; ``"shortest"`` resizes the
        shortest side to ``resize_to`` (default ``size``) and centre-crops ``size``, exactly
        as torchvision's ``Resize(resize_to, antialias=True)`` then ``CenterCrop(size)`` on
        float tensors in [0, 1]: the long side becomes ``int(resize_to * long / short)``
        (truncated) and the crop offsets ``int(round((side - size) / 2))``. (On PIL images
        or uint8 tensors, as torchvision's weights' transforms and open_clip's preprocess
        may be given, the resize works in uint8: values then differ by at most one uint8
        level, 0.017 after ImageNet normalisation.)
    resize_to : int, optional
        Target of the shortest side for ``"shortest"``.
    interpolation : {"bilinear", "bicubic"}
        Antialiased interpolation.
    mean, std : tuple of float
        Per-channel normalisation after scaling to [0, 1].
    name : str
        Preset name recorded in feature attrs.
    """

    size: int = 224
    resize: str = "square"
    resize_to: int | None = None
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    name: str = "custom"

    def describe(self) -> str:
        """A stable description for attrs and cache keys.

        Returns
        -------
        str
            Name, size, resize rule, interpolation, mean and std.
        """
        return (
            f"{self.name}(size={self.size}, resize={self.resize}, resize_to={self.resize_to}, "
            f"interpolation={self.interpolation}, mean={list(self.mean)}, std={list(self.std)})"
        )

    def _one_size(self, x):
        import torch.nn.functional as F

        h, w = x.shape[-2:]
        if self.resize == "square":
            if (h, w) != (self.size, self.size):
                x = F.interpolate(x, size=(self.size, self.size), mode=self.interpolation,
                                  align_corners=False, antialias=True)
            return x
        # torchvision's Resize(int): the short side to ``target``, the long side truncated
        target = self.resize_to or self.size
        short, long = min(h, w), max(h, w)
        new_long = int(target * long / short)
        nh, nw = (target, new_long) if h <= w else (new_long, target)
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode=self.interpolation, align_corners=False,
                              antialias=True)
        # torchvision's CenterCrop: offsets rounded (half to even), not floored
        top = int(round((nh - self.size) / 2.0))
        left = int(round((nw - self.size) / 2.0))
        return x[..., top:top + self.size, left:left + self.size]

    def __call__(self, images: Sequence[np.ndarray]):
        """uint8 images (each ``(H, W, 3)``) -> float tensor ``(N, 3, size, size)``."""
        import torch

        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(np.shape(img)), []).append(i)
        out = torch.empty((len(images), 3, self.size, self.size))
        for _shape, idx in groups.items():
            arr = np.stack([np.asarray(images[i]) for i in idx])
            x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
            out[idx] = self._one_size(x)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (out - mean) / std


class CallableTransform:
    """Wrap a per-image callable (PIL image -> tensor ``(3, H, W)``), e.g. open_clip's preprocess."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def describe(self) -> str:
        return repr(self.fn).replace("\n", " ")

    def __call__(self, images: Sequence[np.ndarray]):
        import torch
        from PIL import Image

        return torch.stack([self.fn(Image.fromarray(np.asarray(img))) for img in images])


#: Named presets. ``"simulation"`` is exactly the ground-truth preprocessing of
#: ``neuroalign.datasets.simulate`` (antialiased bilinear resize to 224, ImageNet mean/std).
#: ``"imagenet"`` is torchvision's ``Resize(256)``, ``CenterCrop(224)`` (bilinear, antialiased)
#: and ImageNet mean/std; ``"clip"`` the same with bicubic ``Resize(224)`` and CLIP mean/std.
TRANSFORM_PRESETS: dict[str, ImageTransform] = {
    "simulation": ImageTransform(name="simulation"),
    "imagenet": ImageTransform(resize="shortest", resize_to=256, name="imagenet"),
    "clip": ImageTransform(resize="shortest", interpolation="bicubic", mean=CLIP_MEAN,
                           std=CLIP_STD, name="clip"),
}


def get_transform(transform: Any, default: ImageTransform | None):
    """Resolve ``transform`` (None, a preset name, an ImageTransform or a callable)."""
    from neuroalign._validation import check_option

    if transform is None:
        return default
    if isinstance(transform, str):
        check_option(transform, list(TRANSFORM_PRESETS), name="transform", func="extract")
        return TRANSFORM_PRESETS[transform]
    if isinstance(transform, ImageTransform | CallableTransform):
        return transform
    if callable(transform):
        return CallableTransform(transform)
    raise TypeError(
        f"Invalid value for 'transform' in extract(): {transform!r}. Expected a preset name "
        f"({', '.join(map(repr, TRANSFORM_PRESETS))}), an ImageTransform or a callable."
    )
