"""The demo's schematic surface (ROI patches at typical fsaverage5 locations): the demo's
alone, not part of neuroalign.mapping's public API."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from neuroalign.mapping import FSAVERAGE5_VERTICES, plot_surface_map
from neuroalign.recipes._demo_schematic import schematic_surface


def test_schematic_surface_for_volumetric_rois():
    data, masks = schematic_surface({"V1v": 0.0, "FFA-1": 1.0})
    for hemi in ("left", "right"):
        assert data[hemi].shape == (FSAVERAGE5_VERTICES,)
        assert np.all(data[hemi][masks["FFA-1"][hemi]] == 1.0)
        assert np.isnan(data[hemi][~(masks["FFA-1"][hemi] | masks["V1v"][hemi])]).all()
        assert 5 < masks["V1v"][hemi].sum() < 200
    fig = plot_surface_map(data, rois=masks, views=["ventral", "flat"], vmin=0, vmax=1)
    assert len([ax for ax in fig.axes if ax.name == "3d"]) == 4
    with pytest.raises(KeyError, match="no schematic location"):
        schematic_surface({"MT": 1.0})


def test_schematic_is_not_public_mapping_api():
    import neuroalign.mapping as nm

    for name in ("schematic_surface", "ROI_LOCATIONS"):
        assert name not in nm.__all__ and not hasattr(nm, name)
