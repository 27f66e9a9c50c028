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
