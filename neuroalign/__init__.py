"""neuroalign: align artificial networks with brains.

The package is organised by pipeline stage (see ``docs/design.md``, "The pipeline"):

- :mod:`neuroalign.store` -- the stimulus-response store, its schema gate, zarr I/O,
  cross-validation folds and reliability (ncsnr, noise ceilings);
- :mod:`neuroalign.datasets` -- adapters from published formats, and ``simulate``,
  a ground-truth brain written in those formats;
- :mod:`neuroalign.cli` -- the ``neuroalign`` command.

Importing :mod:`neuroalign` registers the ``ds.na`` accessor on :class:`xarray.Dataset`.
It is cheap: each subpackage imports its modules on first use, and torch is imported only
by the code that needs it (features, decoders, the routing encoder, GPU paths); the store,
the dataset adapters, compare and the ridge encoders work without it.
:func:`thread_limits` bounds the threads of BLAS, torch and neuroalign's own pools.
"""

from neuroalign import store
from neuroalign._config import thread_limits
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
    "thread_limits",
    "NeuroalignError",
    "DimensionError",
    "DataFormatError",
    "NotFittedError",
    "StimulusMismatchError",
]
