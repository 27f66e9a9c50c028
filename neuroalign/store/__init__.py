"""The stimulus-response store: schema, zarr I/O, folds and reliability.

A store is a plain :class:`xarray.Dataset` with variable ``responses`` on dims
``('presentation', 'neuroid'[, 'time'])`` and the coordinates of docs/design.md ("The
store"), checked by :func:`check_store`. Features meet a store through one join,
:func:`join_features` (on ``stimulus_id``, never by row position); encoder results follow
one schema, checked by :func:`check_results`.
Build one from your own data with :func:`from_arrays`, :func:`from_nifti` (NIfTI betas
and a BIDS events table) or :func:`from_epochs` (MNE).
Importing this module registers the ``ds.na`` accessor.
"""

from neuroalign.store._accessor import StoreAccessor
from neuroalign.store._builders import from_arrays
from neuroalign.store._builders_neuro import from_epochs, from_nifti
from neuroalign.store._folds import StimulusKFold, cv_folds

# imported ``as`` themselves: plumbing for neuroalign's own modules, importable from here but
# not in __all__ (not part of the public API)
from neuroalign.store._io import COMPLETE_MARKER as COMPLETE_MARKER
from neuroalign.store._io import MANIFEST as MANIFEST
from neuroalign.store._io import atomic_dir as atomic_dir
from neuroalign.store._io import (
    open_store,
    save_results,
    save_store,
    verify_store,
)
from neuroalign.store._io import read_zarr as read_zarr
from neuroalign.store._io import write_manifest as write_manifest
from neuroalign.store._io import write_zarr as write_zarr
from neuroalign.store._join import Joined as Joined
from neuroalign.store._join import LazyResponses, join_features
from neuroalign.store._join import index_stimuli as index_stimuli
from neuroalign.store._join import match_stimuli as match_stimuli
from neuroalign.store._ops import average_repetitions, roi_names, select_roi, select_split, zscore
from neuroalign.store._reliability import ncsnr, noise_ceiling, repetition_counts
from neuroalign.store._results import (
    RESULTS_SCHEMA,
    check_results,
    open_results,
)
from neuroalign.store._schema import (
    ALLOW_SPLIT_OVERLAP,
    NEUROID_DIM,
    RESPONSE_VAR,
    ROI_PREFIX,
    SCHEMA_VERSION,
    SPLITS,
    STIMULUS_DIM,
    TIME_DIM,
    TRIAL_DIM,
    check_store,
    is_trial_level,
    sample_dim,
    split_overlap,
)
from neuroalign.store._split_half import split_half
from neuroalign.store._summary import summary

__all__ = [
    "StoreAccessor",
    "check_store",
    "check_results",
    "open_results",
    "RESULTS_SCHEMA",
    "join_features",
    "LazyResponses",
    "save_store",
    "open_store",
    "save_results",
    "verify_store",
    "average_repetitions",
    "select_roi",
    "select_split",
    "roi_names",
    "zscore",
    "ncsnr",
    "noise_ceiling",
    "split_half",
    "repetition_counts",
    "cv_folds",
    "StimulusKFold",
    "summary",
    "is_trial_level",
    "sample_dim",
    "split_overlap",
    "ALLOW_SPLIT_OVERLAP",
    "SCHEMA_VERSION",
    "RESPONSE_VAR",
    "ROI_PREFIX",
    "TRIAL_DIM",
    "STIMULUS_DIM",
    "NEUROID_DIM",
    "TIME_DIM",
    "SPLITS",
    "from_arrays",
    "from_nifti",
    "from_epochs",
]
