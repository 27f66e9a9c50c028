"""Model features: layer activations of vision and language networks, cached and resumable.

:func:`extract` runs a network (open_clip, Hugging Face CLIP/DINOv2/ViT/GPT-2/OPT/Llama,
torchvision, the packaged MiniLM, or any ``torch.nn.Module``) over a
:class:`~neuroalign.stimuli.StimulusSet`, collects the requested layers with forward hooks
in one pass, pools them, and returns the features Dataset (one variable per layer, dims
``("stimulus", "<layer>_unit")``). :func:`reduce` applies PCA (fitted on training stimuli),
random projection or spatial pooling.
"""

from neuroalign.features._extract import block_layers, extract, list_layers
from neuroalign.features._reduce import reduce
from neuroalign.features._sources import SOURCES, FeatureModel, load_model, minilm_path
from neuroalign.features._transforms import TRANSFORM_PRESETS, ImageTransform

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
