"""Stimulus sets keyed by ``stimulus_id``: images (HDF5 bricks, folders) and texts.

A :class:`StimulusSet` is a table (ids, modality, source identifiers such as ``nsd_id`` or
``image_file``) with a lazy loader: nothing is read until :meth:`StimulusSet.load`.
"""

from neuroalign.stimuli._set import IMAGE_EXTENSIONS, MODALITIES, StimulusSet

__all__ = ["StimulusSet", "IMAGE_EXTENSIONS", "MODALITIES"]
