"""neuroalign: align artificial networks with brains.

The package is organised by pipeline stage (see ``DESIGN.md``):

- :mod:`neuroalign.store` -- the stimulus-response store, its schema gate, zarr I/O,
  cross-validation folds and reliability (ncsnr, noise ceilings);
- :mod:`neuroalign.datasets` -- adapters from published formats, and ``simulate``,
  a ground-truth brain written in those formats;
- :mod:`neuroalign.cli` -- the ``neuroalign`` command.

Importing :mod:`neuroalign` registers the ``ds.na`` accessor on :class:`xarray.Dataset`.
"""

from neuroalign import store
from neuroalign._version import __version__
from neuroalign.exceptions import (
    DataFormatError,
    DimensionError,
    NeuroalignError,
    NotFittedError,
    StimulusMismatchError,
)

__all__ = [
    "__version__",
    "store",
    "NeuroalignError",
    "DimensionError",
    "DataFormatError",
    "NotFittedError",
    "StimulusMismatchError",
]
