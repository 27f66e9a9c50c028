"""Forward hooks on named layers, with pooling applied as each layer fires."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from neuroalign._validation import format_list

__all__ = ["list_layers", "resolve_layers", "block_layers", "LayerRecorder", "POOLINGS"]

POOLINGS = ("auto", "cls", "mean", "spatial", "last", None)


def _tensor_of(output: Any):
    """The activation tensor of a module output (tensor, tuple, or ModelOutput)."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if isinstance(output, dict):
        for value in output.values():
            if isinstance(value, torch.Tensor):
                return value
    raise TypeError(f"cannot take features from a module output of type {type(output).__name__}")


def list_layers(module) -> list[str]:
    """Names of every hookable submodule of ``module`` (``named_modules()`` order)."""
    return [name for name, _ in module.named_modules() if name]


def block_layers(module, modality: str | None = None) -> list[str]:
    """The network's blocks, for a layer sweep.

    The children of the largest ``ModuleList`` of identical blocks (transformer layers), in
    the tower matching ``modality`` when the model has two; otherwise the top-level children
    that hold parameters (e.g. ResNet stages).
    """
    import torch.nn as nn

    candidates = []
    for name, mod in module.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) >= 2:
            kinds = {type(c) for c in mod}
            if len(kinds) == 1:
                candidates.append((name, mod))
    if modality is not None and candidates:
        vision_words = ("visual", "vision", "image")
        pick = [c for c in candidates if any(w in c[0] for w in vision_words) == (modality == "image")]
        candidates = pick or candidates
    if candidates:
        name, mod = max(candidates, key=lambda c: (len(c[1]), sum(p.numel() for p in c[1].parameters())))
        prefix = f"{name}." if name else ""
        return [f"{prefix}{i}" for i in range(len(mod))]
    return [n for n, c in module.named_children() if any(True for _ in c.parameters())]


def resolve_layers(module, layers: str | Sequence[str], *, modality: str | None = None) -> list[str]:
    """Validate layer names; ``"blocks"`` gives :func:`block_layers`."""
    if isinstance(layers, str):
        layers = block_layers(module, modality) if layers in ("blocks", "all") else [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("Invalid value for 'layers' in extract(): []. Expected at least one layer name.")
    known = set(list_layers(module))
    for layer in layers:
        if layer not in known:
            close = difflib.get_close_matches(layer, list(known), n=5, cutoff=0.6)
            hint = f"Close matches: {format_list(close)}." if close else (
                "Use list_layers(model) (or `neuroalign features layers MODEL`) to see them.")
            raise ValueError(f"Unknown layer {layer!r} in extract(). {hint}")
    if len(set(layers)) != len(layers):
        raise ValueError(f"Invalid value for 'layers' in extract(): {layers!r} repeats a layer.")
    return layers


class _StopForward(Exception):
    """Raised by the last hook to skip the rest of the network."""


class LayerRecorder:
    """Register forward hooks on ``layers``; pool each output as it is produced.

    Parameters
    ----------
    module : torch.nn.Module
    layers : list of str
    pooling : str or None
        ``"auto"``, ``"cls"``, ``"mean"``, ``"spatial"``, ``"last"`` or ``None`` (tokens).
    modality : {"image", "text"}
    n_prefix_tokens : int
        Tokens before the patch tokens (vision transformers).
    causal : bool
        Text: ``"auto"`` takes the last selected token.
    stop_early : bool
        Stop the forward pass once every requested layer has fired.
    detach : bool
        Detach the activations from the autograd graph (False: keep them differentiable
        with respect to the input, e.g. for guided image generation).

    Notes
    -----
    The one hook engine of neuroalign: :func:`neuroalign.features.extract`, the simulated
    brain's ground-truth network (``neuroalign.datasets.simulate``) and the decoders'
    :class:`~neuroalign.decoders.PooledFeatureExtractor` all record layers with it.
    """

    def __init__(self, module, layers, *, pooling, modality, n_prefix_tokens=0, causal=False,
                 stop_early=True, detach=True):
        self.module = module
        self.layers = list(layers)
        self.pooling = pooling
        self.modality = modality
        self.prefix = n_prefix_tokens
        self.causal = causal
        self.stop_early = stop_early
        self.detach = detach
        self.outputs: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}
        self.grids: dict[str, tuple[int, int]] = {}
        self.select = None  # text: (B, T) float weights of the tokens to pool
        self._handles: list[Any] = []

    def __enter__(self) -> LayerRecorder:
        modules = dict(self.module.named_modules())
        for name in self.layers:
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def run(self, forward, inputs, select=None) -> dict[str, Any]:
        """Run ``forward(inputs)`` and return ``{layer: pooled tensor}``."""
        self.outputs = {}
        self.select = select
        try:
            forward(inputs)
        except _StopForward:
            pass
        missing = [n for n in self.layers if n not in self.outputs]
        if missing:
            raise RuntimeError(
                f"Layer(s) {format_list(missing)} did not run in the forward pass of "
                f"{type(self.module).__name__}; pick layers on the path the input takes "
                "(e.g. the vision tower for images)."
            )
        return self.outputs

    def _hook(self, name: str):
        def fn(_module, _inputs, output):
            self.outputs[name] = self._pool(name, _tensor_of(output))
            if self.stop_early and len(self.outputs) == len(self.layers):
                raise _StopForward

        return fn

    def _pool(self, name: str, x):
        pooling = self.pooling
        if self.detach:
            x = x.detach()
        if self.modality == "text":
            return self._pool_text(name, x)
        if x.ndim == 4:  # (B, C, H, W)
            if pooling == "cls":
                raise ValueError(
                    f"Invalid value for 'pooling' in extract(): 'cls' for layer {name!r}, a "
                    "convolutional feature map without a CLS token. Expected 'spatial', 'mean' or None."
                )
            if pooling is None:
                self.kinds[name], self.grids[name] = "tokens", (x.shape[2], x.shape[3])
                return x.flatten(2).transpose(1, 2)
            self.kinds[name] = "vector"
            return x.mean(dim=(2, 3))
        if x.ndim == 3:  # (B, T, D) tokens
            if pooling is None:
                self.kinds[name] = "tokens"
                return x
            self.kinds[name] = "vector"
            if pooling == "cls" or (pooling == "auto" and self.prefix > 0):
                if self.prefix == 0 and pooling == "cls":
                    raise ValueError(
                        f"Invalid value for 'pooling' in extract(): 'cls' for layer {name!r}, but "
                        "the model has no CLS token. Expected 'mean' or None."
                    )
                return x[:, 0]
            if pooling == "last":
                return x[:, -1]
            return x[:, self.prefix:].mean(dim=1)
        self.kinds[name] = "vector"
        return x.reshape(x.shape[0], -1)

    def _pool_text(self, name: str, x):
        if x.ndim == 2:
            self.kinds[name] = "vector"
            return x
        if x.ndim != 3:
            raise ValueError(f"layer {name!r} gives {x.ndim}-d text activations; expected (B, T, D).")
        self.kinds[name] = "vector"
        sel = self.select.to(x.device, x.dtype)
        pooling = self.pooling
        if pooling == "auto":
            pooling = "last" if self.causal else "mean"
        if pooling in ("mean", "spatial"):
            return (x * sel[..., None]).sum(1) / sel.sum(1, keepdim=True).clamp_min(1)
        if pooling == "last":
            pos = (sel > 0).float().cumsum(1).argmax(1)  # last selected token
            return x[range(x.shape[0]), pos]
        if pooling == "cls":
            pos = (sel > 0).float().argmax(1)  # first selected token
            return x[range(x.shape[0]), pos]
        raise ValueError(
            "Invalid value for 'pooling' in extract(): None with text stimuli. Token-level "
            "features are for images; for word-level text features use "
            "StimulusSet.from_story() with extract(..., context=N)."
        )
