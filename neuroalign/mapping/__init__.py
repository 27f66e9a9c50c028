"""Mapping networks onto cortex: layer preference, unit -> ROI assignment, concept labels, maps.

- :func:`layer_preference`, :func:`roi_layer_profile`, :func:`summarize_by_roi`,
  :func:`best_layer_over_time`: which layer (and how deep) each neuroid, ROI or sensor prefers.
- :func:`unit_to_roi`, :func:`select_units`, :func:`aligned_units`: which single units match
  which ROI, with permutation p-values, and the units of several models that match the same ROI.
- :func:`concept_labels`, :func:`roi_concept_labels`, :func:`rank_images`: concepts and images
  that drive a voxel, for encoders in a joint image-text space.
- Pictures (:mod:`neuroalign.mapping.plots`): surface, volume and sensor maps, ROI bars and
  layer profiles; every function returns a matplotlib figure.
"""

from neuroalign.mapping._concepts import concept_labels, rank_images, roi_concept_labels
from neuroalign.mapping._layers import (
    best_layer_over_time,
    layer_depths,
    layer_preference,
    roi_layer_profile,
    summarize_by_roi,
)
from neuroalign.mapping._units import aligned_units, feature_matrix, select_units, unit_to_roi

__all__ = [
    "layer_preference",
    "layer_depths",
    "roi_layer_profile",
    "summarize_by_roi",
    "best_layer_over_time",
    "unit_to_roi",
    "select_units",
    "aligned_units",
    "feature_matrix",
    "concept_labels",
    "roi_concept_labels",
    "rank_images",
]
