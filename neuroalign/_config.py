"""Configuration shared by the subpackages: device resolution, cache locations."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["resolve_device", "cache_dir"]

_DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | None = "auto") -> str:
    """Resolve ``"auto"`` to ``"cuda"`` when a CUDA device is present, else ``"cpu"``.

    Any explicit torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``) is returned
    unchanged after a check that CUDA is present when asked for.
    """
    if device is None:
        device = "auto"
    if not isinstance(device, str) or not (
        device in _DEVICES or device.startswith("cuda:") or device == "mps"
    ):
        raise ValueError(
            f"Invalid value for 'device': {device!r}. Expected 'auto', 'cpu', 'cuda' or 'cuda:N'."
        )
    if device == "cpu":
        return "cpu"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        if device == "auto":
            return "cpu"
        raise
    has_cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if device.startswith("cuda") and not has_cuda:
        raise RuntimeError(
            f"device={device!r} was requested but torch sees no CUDA device. "
            "Use device='cpu' or device='auto'."
        )
    return device


def cache_dir() -> Path:
    """The neuroalign cache folder (``$NEUROALIGN_CACHE`` or ``~/.cache/neuroalign``)."""
    root = os.environ.get("NEUROALIGN_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "neuroalign"
    return path
