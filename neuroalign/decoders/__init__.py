"""Decoding and generation: brain -> embedding decoders, diffusion reconstruction,
encoder-guided generation and the decoding metrics of the field.

- :class:`EmbeddingDecoder`: brain (fMRI, or MEG/EEG in a time window) -> target embedding
  (ridge, or MLP with InfoNCE + MSE), with retrieval built in.
- :class:`Reconstructor`: embedding -> image with diffusers pipelines (unCLIP image
  embeddings, token injection, IP-Adapter image embeddings, img2img from a low-level
  prediction) and best-of-N selection.
- :class:`BrainGuidedGenerator`: BrainDiVE-style guidance of the noise prediction by the
  gradient of a differentiable encoder's predicted target activation.
- :func:`tiny_pipeline`: the project's small pipeline, trained on first use and cached.
- :mod:`neuroalign.decoders.metrics`: PixCorr, SSIM, 2-way identification, correlation
  distance, top-1 retrieval (REFERENCES.md §B); :func:`check_reconstructions` judges them
  against chance and against the input a refinement started from.
"""

from neuroalign.decoders import metrics
from neuroalign.decoders._embedding import EmbeddingDecoder, brain_matrix, retrieve, target_matrix
from neuroalign.decoders._encoder import (
    DifferentiableRidgeEncoder,
    PooledFeatureExtractor,
    ridge_fit,
)
from neuroalign.decoders._guided import BrainGuidedGenerator, GuidedResult, resolve_target
from neuroalign.decoders._recipes import run_decode_recipe, run_generate, save_grid
from neuroalign.decoders._reconstruct import (
    MODES,
    ReconstructionResult,
    Reconstructor,
    load_pipeline,
)
from neuroalign.decoders._stimuli import store_images
from neuroalign.decoders._tiny import (
    EmbeddingDiffusionPipeline,
    ImageEmbedder,
    tiny_pipeline,
    train_tiny_pipeline,
)
from neuroalign.decoders._verdict import ReconstructionCheck, check_reconstructions

__all__ = [
    "metrics",
    "EmbeddingDecoder",
    "brain_matrix",
    "target_matrix",
    "retrieve",
    "DifferentiableRidgeEncoder",
    "PooledFeatureExtractor",
    "ridge_fit",
    "Reconstructor",
    "ReconstructionResult",
    "load_pipeline",
    "MODES",
    "BrainGuidedGenerator",
    "GuidedResult",
    "resolve_target",
    "store_images",
    "run_decode_recipe",
    "run_generate",
    "save_grid",
    "EmbeddingDiffusionPipeline",
    "ImageEmbedder",
    "tiny_pipeline",
    "train_tiny_pipeline",
    "check_reconstructions",
    "ReconstructionCheck",
]
