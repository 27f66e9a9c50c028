"""A store's stimulus pixels, one image per row, read by :class:`neuroalign.stimuli.StimulusSet`
(the one image reader: the ``stimulus_set`` attr written by the adapters says where they live)."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["store_images"]


def store_images(store: xr.Dataset) -> np.ndarray:
    """uint8 images ``(n_samples, H, W, 3)``, one per row of ``store`` (presentation or stimulus).

    The pixels are read by :meth:`neuroalign.stimuli.StimulusSet.from_store` (its
    ``stimulus_set`` attribute: ``{"kind": "hdf5-brick", ...}`` for NSD, ``{"kind":
    "image-files", ...}`` for THINGS-EEG2), each stimulus once.

    Parameters
    ----------
    store : xr.Dataset
        A store whose ``stimulus_set`` attribute says where its images are.

    Returns
    -------
    ndarray of uint8, shape (n_samples, H, W, 3)
        The image of each row.
    """
    from neuroalign.stimuli import StimulusSet

    stimuli = StimulusSet.from_store(store)
    pos = stimuli.positions(np.asarray(store["stimulus_id"].values).astype(str).tolist())
    uniq, inverse = np.unique(pos, return_inverse=True)
    return np.stack([np.asarray(a, dtype=np.uint8) for a in stimuli.load(uniq.tolist())])[inverse]
