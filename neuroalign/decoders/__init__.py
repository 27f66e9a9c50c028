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
  distance, top-1 retrieval (as MindEye, Scotti et al. 2023, reports them); :func:`check_reconstructions` judges them
  against chance and against the input a refinement started from.

Decoding needs PyTorch: names are imported from their modules on first use
(:mod:`neuroalign._lazy`), and without torch that first use raises an :class:`ImportError`
that says how to install it.
"""

from neuroalign._lazy import attach

_NAMES = {
    "_embedding": ["EmbeddingDecoder", "brain_matrix", "retrieve", "target_matrix"],
    "_encoder": ["DifferentiableRidgeEncoder", "PooledFeatureExtractor"],
    "_guided": ["BrainGuidedGenerator", "GuidedResult", "resolve_target"],
    "_grid": ["save_grid"],
    "_reconstruct": ["MODES", "ReconstructionResult", "Reconstructor", "load_pipeline"],
    "_stimuli": ["store_images"],
    "_tiny": ["EmbeddingDiffusionPipeline", "ImageEmbedder", "tiny_pipeline",
              "train_tiny_pipeline"],
    "_verdict": ["ReconstructionCheck", "check_reconstructions"],
}
__getattr__, __dir__ = attach(__name__, _NAMES, submodules=["metrics"],
                              torch_names=["metrics", *(n for v in _NAMES.values() for n in v)])

__all__ = [
    "metrics",
    "EmbeddingDecoder",
    "brain_matrix",
    "target_matrix",
    "retrieve",
    "DifferentiableRidgeEncoder",
    "PooledFeatureExtractor",
    "Reconstructor",
    "ReconstructionResult",
    "load_pipeline",
    "MODES",
    "BrainGuidedGenerator",
    "GuidedResult",
    "resolve_target",
    "store_images",
    "save_grid",
    "EmbeddingDiffusionPipeline",
    "ImageEmbedder",
    "tiny_pipeline",
    "train_tiny_pipeline",
    "check_reconstructions",
    "ReconstructionCheck",
]
