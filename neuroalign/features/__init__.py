"""Model features: layer activations of vision and language networks, cached and resumable.

:func:`extract` runs a network (open_clip, Hugging Face CLIP/DINOv2/ViT/GPT-2/OPT/Llama,
torchvision, the packaged MiniLM, or any ``torch.nn.Module``) over a
:class:`~neuroalign.stimuli.StimulusSet`, collects the requested layers with forward hooks
in one pass, pools them, and returns the features Dataset (one variable per layer, dims
``("stimulus", "<layer>_unit")``). :func:`reduce` applies PCA (fitted on training stimuli),
random projection or spatial pooling.

Extraction needs PyTorch: names are imported from their modules on first use
(:mod:`neuroalign._lazy`), and without torch that first use raises an :class:`ImportError`
that says how to install it.
"""

from neuroalign._lazy import attach

_NAMES = {
    "_extract": ["block_layers", "extract", "list_layers"],
    "_reduce": ["reduce"],
    "_sources": ["SOURCES", "FeatureModel", "load_model", "minilm_path"],
    "_transforms": ["TRANSFORM_PRESETS", "ImageTransform"],
}
__getattr__, __dir__ = attach(__name__, _NAMES,
                              torch_names=["block_layers", "extract", "list_layers", "FeatureModel",
                                           "load_model", "ImageTransform"])

__all__ = [
    "extract",
    "list_layers",
    "block_layers",
    "load_model",
    "reduce",
    "FeatureModel",
    "ImageTransform",
    "TRANSFORM_PRESETS",
    "SOURCES",
    "minilm_path",
]
