"""Exception types of neuroalign.

Every exception derives from a built-in type, so ``except ValueError`` keeps working, and
from :class:`NeuroalignError`, so callers can catch everything neuroalign raises.
Messages name the parameter or file, show the value received and say what was expected.
"""

from __future__ import annotations

__all__ = [
    "NeuroalignError",
    "DimensionError",
    "DataFormatError",
    "NotFittedError",
    "StimulusMismatchError",
    "WeightsNotAvailableError",
    "CacheMismatchError",
    "SplitLeakageError",
    "UnsafeFileError",
    "StoreCorruptError",
    "OutputExistsError",
    "TargetLockedError",
    "DataQualityWarning",
    "SpaceError",
    "TemplateNotAvailableError",
    "BootstrapError",
    "MemoryPreflightError",
]


class NeuroalignError(Exception):
    """Base class of all neuroalign errors."""


class DimensionError(NeuroalignError, ValueError):
    """An array or store has the wrong dimensions or is missing a coordinate."""


class DataFormatError(NeuroalignError, ValueError):
    """A file or object is not what its format says (shape, dtype, key, value)."""


class NotFittedError(NeuroalignError, ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class StimulusMismatchError(NeuroalignError, KeyError):
    """Two objects joined on ``stimulus_id`` do not hold the same stimuli."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class WeightsNotAvailableError(NeuroalignError, FileNotFoundError):
    """Model weights are not available locally and downloading was not allowed."""


class CacheMismatchError(NeuroalignError, ValueError):
    """A cache on disk was written for other settings (model, weights, layers, stimuli)."""


class SplitLeakageError(NeuroalignError, ValueError):
    """Presentations of one stimulus fall on both sides of a split or of a CV fold."""


class UnsafeFileError(DataFormatError):
    """A data file holds something that could run code when read (e.g. a pickle that names
    a callable); neuroalign refuses to load it."""


class StoreCorruptError(DataFormatError):
    """A saved store or result is incomplete or damaged (missing chunk, wrong checksum)."""


class OutputExistsError(NeuroalignError, FileExistsError):
    """An output path exists and holds something neuroalign did not write (or overwriting
    was not asked for)."""


class TargetLockedError(NeuroalignError, RuntimeError):
    """Another live process is writing the same target (store, cache or output folder)."""


class DataQualityWarning(UserWarning):
    """Some neuroids, channels or samples are NaN, infinite or constant; the results for
    them are NaN (or they were left out), and the warning names them."""


class SpaceError(NeuroalignError, ValueError):
    """Data are not in the space an operation needs (e.g. a subject's own volume, which has
    no place on fsaverage without a transform to MNI)."""


class TemplateNotAvailableError(NeuroalignError, FileNotFoundError):
    """A template (e.g. an fsaverage mesh) is not on this machine, and neuroalign does not
    download it; the message says which file to place where."""


class BootstrapError(NeuroalignError, ValueError):
    """Too few bootstrap samples could be scored (e.g. resamples of few stimuli whose
    comparison is undefined) for intervals or p-values to mean anything."""


class MemoryPreflightError(NeuroalignError, MemoryError):
    """A job's estimated peak memory does not fit the memory available (checked before the
    job starts); the message says how much is needed, how much is available and which
    setting lowers it."""
