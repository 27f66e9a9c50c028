"""Mapping networks onto cortex: layer preference, unit -> ROI assignment, concept labels, maps.

- :func:`layer_preference`, :func:`roi_layer_profile`, :func:`summarize_by_roi`,
  :func:`best_layer_over_time`: which layer (and how deep) each neuroid, ROI or sensor prefers.
- :func:`unit_to_roi`, :func:`select_units`, :func:`aligned_units`: which single units match
  which ROI, with permutation p-values, and the units of several models that match the same ROI.
- :func:`concept_labels`, :func:`roi_concept_labels`, :func:`rank_images`: concepts and images
  that drive a voxel, for encoders in a joint image-text space.
- Pictures: :func:`plot_surface_map` (fsaverage5 through nilearn), :func:`plot_volume_map`
  (slices on a volumetric store's own grid over its :func:`mean_image`),
  :func:`plot_topomaps` (MNE), :func:`plot_roi_scores` (with noise ceilings) and
  :func:`plot_layer_profile`; each returns a pyplot-managed matplotlib figure (shown in
  Jupyter and by ``plt.show()``; close it with ``plt.close(fig)`` in batch use) and can save
  PNG/SVG/PDF.
- :func:`project_to_fsaverage`: volume values onto fsaverage when the store is in an MNI
  space or a transform to MNI is given (never silently from a subject's own volume).
"""

from neuroalign.mapping._concepts import (
    concept_labels,
    rank_images,
    roi_concept_labels,
    voxel_weights,
)
from neuroalign.mapping._figures import plot_layer_profile, plot_roi_scores, save_figure
from neuroalign.mapping._layers import (
    best_layer_over_time,
    layer_depths,
    layer_preference,
    roi_layer_profile,
    summarize_by_roi,
)
from neuroalign.mapping._maps import (
    FSAVERAGE5_VERTICES,
    FSAVERAGE_VERTICES,
    SURFACE_VIEWS,
    plot_surface_map,
    plot_topomaps,
    surface_rois,
    to_fsaverage5,
)
from neuroalign.mapping._units import aligned_units, select_units, unit_to_roi
from neuroalign.mapping._volume import (
    load_fsaverage_mesh,
    mean_image,
    plot_volume_map,
    project_to_fsaverage,
    volume_image,
)

__all__ = [
    "layer_preference",
    "layer_depths",
    "roi_layer_profile",
    "summarize_by_roi",
    "best_layer_over_time",
    "unit_to_roi",
    "select_units",
    "aligned_units",
    "voxel_weights",
    "concept_labels",
    "roi_concept_labels",
    "rank_images",
    "plot_roi_scores",
    "plot_layer_profile",
    "plot_surface_map",
    "plot_volume_map",
    "plot_topomaps",
    "save_figure",
    "to_fsaverage5",
    "surface_rois",
    "volume_image",
    "FSAVERAGE_VERTICES",
    "FSAVERAGE5_VERTICES",
    "SURFACE_VIEWS",
    "mean_image",
    "project_to_fsaverage",
    "load_fsaverage_mesh",
]
