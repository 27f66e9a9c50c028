"""Configuration shared by the subpackages: device resolution, cache locations, recipe files."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

__all__ = ["resolve_device", "cache_dir", "read_recipe"]

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


def read_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML recipe file (any kind), with errors that name the file."""
    from neuroalign.exceptions import DataFormatError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Recipe {str(path)!r} does not exist.")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise DataFormatError(f"{path}: not a valid TOML recipe (not valid TOML: {err}).") from err
