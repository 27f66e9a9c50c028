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


def _permute_dims(module) -> tuple[int, ...] | None:
    """The ``dims`` of a torchvision ``Permute`` module, else None."""
    cls = type(module)
    if cls.__name__ == "Permute" and cls.__module__.startswith("torchvision"):
        return tuple(int(d) for d in module.dims)
    return None


class LayerRecorder:
    """Register forward hooks on ``layers``; pool each output as it is produced.

    A layer's features are the module's output at its **last** call of the forward pass
    (what a forward hook that overwrites its result keeps): a module run several times per
    pass, such as the one ReLU of a torchvision ResNet block, gives the block's output. The
    result never depends on ``stop_early`` nor on the other requested layers. Feature maps
    that torchvision lays out as ``(B, H, W, C)`` (between its ``Permute`` modules: Swin's
    stages, ConvNeXt's block internals) are read as such: their units are the channels.

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
        Stop the forward pass after the last call of the last requested layer. The first
        :meth:`run` runs the whole network and counts each layer's calls; later runs stop
        once every layer has run that many times. The counts must be the same for every
        input (a count that changes raises :class:`RuntimeError`; pass ``False`` for
        networks whose control flow depends on the input).
    detach : bool
        Detach the activations from the autograd graph (False: keep them differentiable
        with respect to the input, e.g. for guided image generation).
    calls : dict of str to int, optional
        The calls per forward pass of each layer, when known (``calls`` of an earlier
        recorder on the same module); else counted by the first :meth:`run`.

    Notes
    -----
    The one hook engine of neuroalign: :func:`neuroalign.features.extract`, the simulated
    brain's ground-truth network (``neuroalign.datasets.simulate``) and the decoders'
    :class:`~neuroalign.decoders.PooledFeatureExtractor` all record layers with it.
    """

    def __init__(self, module, layers, *, pooling, modality, n_prefix_tokens=0, causal=False,
                 stop_early=True, detach=True, calls=None):
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
        self._channels_last = False  # inside torchvision's (B, H, W, C) permutes
        #: calls of each layer per forward pass (counted by the first run without a stop)
        self.calls: dict[str, int] | None = None if calls is None else dict(calls)
        self._seen: dict[str, int] = {}
        self._left = 0
        self._handles: list[Any] = []

    def __enter__(self) -> LayerRecorder:
        modules = dict(self.module.named_modules())
        for m in modules.values():  # first: a layer that is a Permute sees its own layout
            dims = _permute_dims(m)
            if dims is not None:
                self._handles.append(m.register_forward_hook(self._layout_hook(dims)))
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
        self._channels_last = False
        self._seen = dict.fromkeys(self.layers, 0)
        self._left = len(self.layers)
        try:
            forward(inputs)
        except _StopForward:
            pass
        missing = [n for n in self.layers if not self._seen[n]]
        if missing:
            raise RuntimeError(
                f"Layer(s) {format_list(missing)} did not run in the forward pass of "
                f"{type(self.module).__name__}; pick layers on the path the input takes "
                "(e.g. the vision tower for images)."
            )
        if self.calls is None:
            self.calls = dict(self._seen)
        elif self.stop_early:
            for name in self.layers:
                if self._seen[name] != self.calls[name]:
                    self._count_changed(name)
        return self.outputs

    def _count_changed(self, name: str):
        n, first = self._seen[name], self.calls[name]
        raise RuntimeError(
            f"Layer {name!r} ran {n} time(s) in this forward pass of "
            f"{type(self.module).__name__}, {first} time(s) in the first. A layer's features "
            "are its output at its last call, which stop_early=True finds from the calls "
            "counted on the first batch; pass stop_early=False for a network whose calls "
            "depend on the input."
        )

    def _layout_hook(self, dims: tuple[int, ...]):
        """Follow torchvision's ``Permute`` modules: feature maps are ``(B, H, W, C)``
        from a ``(0, 2, 3, 1)`` permute to the next ``(0, 3, 1, 2)`` one (Swin's stages,
        ConvNeXt's block internals)."""
        def fn(_module, _inputs, _output):
            if dims == (0, 2, 3, 1):
                self._channels_last = True
            elif dims == (0, 3, 1, 2):
                self._channels_last = False

        return fn

    def _hook(self, name: str):
        def fn(_module, _inputs, output):
            self._seen[name] += 1
            calls = self.calls if self.stop_early else None
            if calls is None:  # counting (or running to the end): keep the latest call
                self.outputs[name] = self._pool(name, _tensor_of(output))
                return
            seen, last = self._seen[name], calls[name]
            if seen > last:
                self._count_changed(name)
            if seen < last:  # not the layer's last call of the pass
                return
            self.outputs[name] = self._pool(name, _tensor_of(output))
            self._left -= 1
            if self._left == 0:
                raise _StopForward

        return fn

    def _pool(self, name: str, x):
        pooling = self.pooling
        if self.detach:
            x = x.detach()
        if self.modality == "text":
            return self._pool_text(name, x)
        if x.ndim == 4:  # (B, C, H, W)
            if self._channels_last:  # (B, H, W, C) between torchvision's permutes
                x = x.permute(0, 3, 1, 2)
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
