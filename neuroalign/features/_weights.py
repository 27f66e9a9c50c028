"""Weights with no code and no network: where each library keeps its files, and loading them.

Nothing here touches the network unless the caller opted in (``allow_download=True``), and
nothing unpickles a file beyond plain tensors. What the libraries really do (pinned by
``tests/features/test_network_optin.py``):

- ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` once, at import, into
  ``huggingface_hub.constants.HF_HUB_OFFLINE``; setting the variable later changes nothing.
- ``local_files_only=True`` (transformers, diffusers) still sends a request: building the
  request headers fetches an "agent harnesses" registry from the Hub once per process.
  Only the constant above stops every request, so :func:`hub_offline` sets it while a
  model loads.
- torchvision's ``weights=...`` (``load_state_dict_from_url``) downloads a missing file,
  and reads the cached one with ``torch.load(weights_only=False)``: a crafted file in the
  torch cache runs its code. :func:`torchvision_model` checks the file is there first and
  loads it with weights-only unpickling forced (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``).
- open_clip downloads a missing checkpoint (Hub or URL); with a local file it reads it
  with ``weights_only=True``. :func:`open_clip_checkpoint` finds the cached file.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError, UnsafeFileError, WeightsNotAvailableError

__all__ = [
    "env_offline",
    "hub_offline",
    "hf_cache_folder",
    "hf_snapshot",
    "torchvision_checkpoint",
    "torchvision_model",
    "open_clip_checkpoint",
    "open_clip_locations",
    "load_state_file",
    "weights_only_loads",
    "HOW_TO_ALLOW",
]

_TRUE = {"1", "true", "yes", "on", "y"}
#: How a user opts in to downloads, for messages.
HOW_TO_ALLOW = ("allow_download=True (CLI: --allow-download; decode and generate recipes: "
                "allow_download = true; other recipes: [features] allow_download = true)")


def unknown(kind: str, value: str, known: list[str], func: str = "load_model") -> ValueError:
    """``ValueError`` for an unknown name, with close matches."""
    close = difflib.get_close_matches(value, known, n=5, cutoff=0.5)
    hint = f" Close matches: {format_list(close)}." if close else ""
    return ValueError(f"Unknown {kind} {value!r} in {func}().{hint} Known: {format_list(known, limit=15)}.")


def env_offline() -> bool:
    """``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set to a true value (read now)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@contextlib.contextmanager
def hub_offline(active: bool = True) -> Iterator[None]:
    """While active, every request of ``huggingface_hub`` (and so of transformers,
    diffusers and open_clip's Hub downloads) raises ``OfflineModeIsEnabled`` before any
    connection is opened. The previous setting is restored on exit."""
    if not active:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency of transformers/diffusers
        yield
        return
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hf_cache_folder(repo_id: str, repo_type: str = "model") -> Path:
    """The Hugging Face cache folder of a repository (``models--org--name``)."""
    return _hub_cache() / f"{repo_type}s--{repo_id.replace('/', '--')}"


def looks_like_repo_id(src: str) -> bool:
    """``org/name`` (one slash, no path-like start)."""
    return (src.count("/") == 1 and not src.startswith((".", "/", "~"))
            and all(part and part not in {".", ".."} for part in src.split("/")))


def hf_snapshot(repo_id: str, marker: str, *, spec: str, weights_hint: str = "") -> Path:
    """The cached snapshot folder of ``repo_id`` that holds ``marker`` (revision ``main``),
    found on disk only; :class:`WeightsNotAvailableError` naming the exact place otherwise."""
    from huggingface_hub import try_to_load_from_cache

    if not looks_like_repo_id(repo_id):
        raise WeightsNotAvailableError(
            f"{spec} is not available offline: {repo_id!r} is neither a folder nor a Hugging Face "
            f"id ('owner/name'). Pass a local folder with {marker}, or a Hub id."
        )
    try:
        found = try_to_load_from_cache(repo_id, marker)
    except ValueError:  # not a valid Hub id (HFValidationError)
        found = None
    if isinstance(found, str):
        return Path(found).parent
    folder = hf_cache_folder(repo_id)
    raise WeightsNotAvailableError(
        f"{spec} is not available offline: expected {folder}/snapshots/<commit>/{marker}"
        f"{weights_hint}, with {folder}/refs/main holding <commit>. Copy it there (e.g. `hf "
        f"download {repo_id}` on a machine with network, then copy {folder.name} into "
        f"{_hub_cache()}), pass a local folder (hf:/path/to/model with {marker}), pass "
        f"{HOW_TO_ALLOW}, or weights=None for random weights."
    )


# -- files with tensors only ------------------------------------------------------
@contextlib.contextmanager
def weights_only_loads(path: str | os.PathLike) -> Iterator[None]:
    """Every ``torch.load`` inside unpickles plain tensors only (torch's
    ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``, even where a library passes ``weights_only=False``);
    a refusal becomes :class:`UnsafeFileError` naming ``path``."""
    saved = {k: os.environ.get(k) for k in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD",
                                             "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    except (pickle.UnpicklingError, RuntimeError) as err:
        if isinstance(err, pickle.UnpicklingError) or "weights_only" in str(err):
            raise _unsafe(path, err) from err
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _unsafe(path, err) -> UnsafeFileError:
    first = str(err).strip().splitlines()
    detail = next((ln.strip() for ln in first if "Unsupported" in ln or "GLOBAL" in ln),
                  first[0] if first else type(err).__name__)
    return UnsafeFileError(
        f"{path}: refused to load: it is not plain tensors ({detail}). Unpickling it could run "
        "code, so neuroalign reads only safetensors files or torch files of tensors "
        "(torch.load(weights_only=True)). Save a state_dict (safetensors.torch.save_file) instead."
    )


def load_state_file(path: str | os.PathLike) -> dict[str, Any]:
    """A state dict from ``.safetensors`` or a torch file of plain tensors; never runs code.

    Raises
    ------
    UnsafeFileError
        The file holds more than tensors (a pickled module, a callable, TorchScript).
    DataFormatError
        The file is not a state dict (damaged, or another kind of file).
    """
    import torch

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as err:
            raise DataFormatError(f"{path}: not a readable safetensors file ({err}).") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err) or "Weights only" in str(err):
            raise _unsafe(path, err) from err
        raise DataFormatError(f"{path}: not a readable torch file ({err}).") from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataFormatError(
            f"{path}: expected a state dict (names -> tensors); got {type(obj).__name__}."
        )
    return obj


# -- torchvision ------------------------------------------------------------------
def torchvision_checkpoint(weights) -> Path:
    """Where torchvision keeps ``weights`` (a ``WeightsEnum`` member): the torch hub
    ``checkpoints`` folder (``$TORCH_HOME/hub/checkpoints``) and the URL's file name."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def torchvision_model(arch: str, weights: Any = None, *, seed: int | None = 0,
                      allow_download: bool = False, func: str = "load_model", **kwargs):
    """A torchvision network, offline: ``(module, weights id)``.

    ``weights=None``: random weights from ``torch.manual_seed(seed)``; a path: a state dict
    file (:func:`load_state_file`); a name (``"DEFAULT"``, ``"IMAGENET1K_V1"``,
    ``"AlexNet_Weights.IMAGENET1K_V1"``): torchvision's file in the torch cache, read as
    plain tensors, downloaded only with ``allow_download=True``.
    """
    import torch
    import torchvision

    known = torchvision.models.list_models()
    if arch not in known:
        raise unknown("torchvision architecture", arch, known, func)
    if weights is None:
        seed = 0 if seed is None else int(seed)
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            module = torchvision.models.get_model(arch, weights=None, **kwargs)
        finally:
            torch.random.set_rng_state(state)
        return module, f"random(seed={seed})"
    if isinstance(weights, os.PathLike) or (isinstance(weights, str) and Path(weights).is_file()):
        module = torchvision.models.get_model(arch, weights=None, **kwargs)
        module.load_state_dict(load_state_file(weights))
        return module, f"file:{Path(weights).resolve()}"
    enum = torchvision.models.get_model_weights(arch)
    name = "DEFAULT" if str(weights).lower() == "default" else str(weights)
    try:
        w = enum[name] if name == "DEFAULT" else enum[name.split(".")[-1]]
    except KeyError:
        raise unknown(f"weights for torchvision:{arch}", name,
                      ["DEFAULT", *[m.name for m in enum]], func) from None
    cached = torchvision_checkpoint(w)
    if not cached.is_file() and (env_offline() or not allow_download):
        raise WeightsNotAvailableError(
            f"Weights {w} of torchvision:{arch} are not in the local torch cache: expected the "
            f"file {cached} (torch hub checkpoints folder, $TORCH_HOME/hub/checkpoints). Put the "
            f"file {cached.name} there ({w.url}), pass weights='path/to/state_dict', pass "
            f"{HOW_TO_ALLOW}, or weights=None for random weights."
        )
    with weights_only_loads(cached):
        module = torchvision.models.get_model(arch, weights=w, **kwargs)
    return module, str(w)


# -- open_clip --------------------------------------------------------------------
def _open_clip_places(arch: str, tag: str) -> list[tuple[str | None, Path]]:
    """``(Hub repo or None, path)`` of each place open_clip would take the checkpoint of
    ``arch``/``tag`` from, in its order (``<commit>`` stands for the cached revision)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    if cfg.get("file"):
        return [(None, Path(cfg["file"]))]
    places: list[tuple[str | None, Path]] = []
    hub = cfg.get("hf_hub", "")
    if hub:  # as open_clip.pretrained.download_pretrained_from_hf: safetensors first
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        snap = hf_cache_folder(repo) / "snapshots" / "<commit>"
        if filename == HF_WEIGHTS_NAME:
            places.append((repo, snap / HF_SAFE_WEIGHTS_NAME))
        elif filename.endswith((".bin", ".pth")):
            places.append((repo, snap / (filename[:-4] + ".safetensors")))
        places.append((repo, snap / filename))
    if cfg.get("url"):
        places.append((None, Path("~/.cache/clip").expanduser() / Path(cfg["url"]).name))
    return places


def open_clip_locations(arch: str, tag: str) -> list[Path]:
    """Where open_clip would find the checkpoint of ``arch``/``tag`` (in its order)."""
    return [path for _, path in _open_clip_places(arch, tag)]


def open_clip_checkpoint(arch: str, tag: str) -> str | None:
    """The cached checkpoint file of ``arch``/``tag``, looked up on disk only."""
    from huggingface_hub import try_to_load_from_cache

    for repo, place in _open_clip_places(arch, tag):
        if repo is not None:
            found = try_to_load_from_cache(repo, place.name)
            if isinstance(found, str):
                return found
        elif place.is_file():
            return str(place)
    return None
