"""The demo's schematic surface: named ROIs drawn as patches at typical fsaverage5 locations.

Only the demo uses this. The simulated brain is a volume with no registration to
fsaverage, so its voxels cannot be projected onto the surface honestly. For the demo's
overview picture, each named ROI is drawn as a patch (a disc on the sphere) around the
fsaverage5 vertex nearest to a typical location of that ROI in MNI305 space (fsaverage's
space), painted with one value per ROI. It is a schematic, not a projection, and the
figure says so. Real maps of volumetric stores are
:func:`neuroalign.mapping.plot_volume_map` (slices on the store's grid) and
:func:`neuroalign.mapping.project_to_fsaverage` (stores in an MNI space).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from neuroalign._validation import format_list

__all__ = ["ROI_LOCATIONS", "schematic_surface"]

#: Typical left-hemisphere centres (x, y, z in mm, MNI305) of NSD's named ROIs; x is mirrored
#: for the right hemisphere. Approximate, from the localiser literature; for display only.
ROI_LOCATIONS: dict[str, tuple[float, float, float]] = {
    "V1v": (-8, -88, -4), "V1d": (-8, -92, 8), "V2v": (-12, -84, -10), "V2d": (-12, -92, 14),
    "V3v": (-20, -82, -14), "V3d": (-20, -90, 18), "hV4": (-30, -78, -14),
    "OFA": (-40, -80, -8), "FFA-1": (-38, -58, -18), "FFA-2": (-40, -46, -20),
    "EBA": (-48, -72, 2), "FBA-1": (-40, -50, -16), "OPA": (-30, -84, 20), "PPA": (-26, -44, -10),
    "RSC": (-14, -54, 12), "OWFA": (-42, -70, -12), "VWFA-1": (-44, -56, -14), "VWFA-2": (-46, -44, -16),
    "nsdgeneral": (-30, -75, 0), "early": (-10, -88, 2), "ventral": (-36, -55, -16),
    "lateral": (-48, -70, 4), "parietal": (-28, -70, 40),
}


def schematic_surface(values: Mapping[str, float], *, radius: float = 12.0
                      ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Per-vertex fsaverage5 values and ROI masks for a schematic ROI map.

    Parameters
    ----------
    values : mapping {roi: value}
        One value per named ROI (keys of :data:`ROI_LOCATIONS`); shown in both hemispheres.
    radius : float
        Patch radius in mm on the fsaverage sphere (fsaverage5 vertices are ~3-4 mm apart).

    Returns
    -------
    (data, masks)
        ``data = {"left": (10242,), "right": (10242,)}`` (NaN outside the patches, later
        ROIs drawn over earlier ones) and ``masks = {roi: {"left": bool, "right": bool}}``,
        ready for :func:`neuroalign.mapping.plot_surface_map`.
    """
    from nilearn import datasets

    unknown = [r for r in values if r not in ROI_LOCATIONS]
    if unknown:
        raise KeyError(
            f"schematic_surface(): no schematic location for ROI(s) {format_list(unknown)}. "
            f"Known: {format_list(sorted(ROI_LOCATIONS))}."
        )
    fs = datasets.load_fsaverage("fsaverage5")
    data, masks = {}, {r: {} for r in values}
    for hemi, sign in (("left", 1.0), ("right", -1.0)):
        pial = np.asarray(fs["pial"].parts[hemi].coordinates, float)
        sphere = np.asarray(fs["sphere"].parts[hemi].coordinates, float)
        arr = np.full(len(pial), np.nan)
        for roi, v in values.items():
            x, y, z = ROI_LOCATIONS[roi]
            centre = int(np.linalg.norm(pial - np.array([sign * x, y, z]), axis=1).argmin())
            m = np.linalg.norm(sphere - sphere[centre], axis=1) < radius
            arr[m] = float(v)
            masks[roi][hemi] = m
        data[hemi] = arr
    return data, masks
