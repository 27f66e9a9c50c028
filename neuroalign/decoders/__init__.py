"""Decoding and generation: brain -> embedding decoders, diffusion reconstruction,
encoder-guided generation and the decoding metrics of the field.
"""

from neuroalign.decoders import metrics

__all__ = ["metrics"]
