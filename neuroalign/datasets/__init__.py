"""Dataset adapters (published formats -> stores) and simulated ground-truth brains.

Every adapter returns a store that passes :func:`neuroalign.store.check_store`, reading
its files one at a time; the ``ingest_*`` functions stream them into a zarr store.
Formats are described in the dataset cards (``datasets/<name>.toml``).

Names are imported from their modules on first use (:mod:`neuroalign._lazy`), except
:func:`simulate`, whose module has its name.
"""

from neuroalign._lazy import attach

# imported now: the function `simulate` lives in the submodule `simulate`, and a later
# import of that submodule must not replace the function on this package
from neuroalign.datasets.simulate import GroundTruthBrain, ROISpec, SimulationResult, simulate

_NAMES = {
    "_algonauts": ["ALGONAUTS_ROIS", "algonauts2023_plan", "load_algonauts2023"],
    "_bold5000": ["BOLD5000_ROIS", "BOLD5000_VARIANTS", "bold5000_plan", "load_bold5000"],
    "_brick": ["HDF5Brick"],
    "_cards": ["dataset_card"],
    "_formats": ["MissingSessionsWarning", "PublishedCountWarning"],
    "_ingest": ["IngestPlan"],
    "_meeg": ["load_mne_epochs", "load_things_meg", "mne_epochs_plan", "read_bids_events",
              "things_meg_plan"],
    "_nsd": ["NSD_BETAS", "NSD_DEFAULT_ROIS", "NSD_SPACES", "ingest_nsd", "load_nsd", "nsd_plan"],
    "_text": ["TextEncodingWarning"],
    "_things_eeg2": ["load_things_eeg2", "things_eeg2_plan"],
    "_things_fmri": ["find_things_fmri_files", "load_things_fmri", "things_fmri_plan"],
}
__getattr__, __dir__ = attach(__name__, _NAMES)

__all__ = [
    "simulate",
    "SimulationResult",
    "GroundTruthBrain",
    "ROISpec",
    "load_nsd",
    "ingest_nsd",
    "nsd_plan",
    "NSD_SPACES",
    "NSD_BETAS",
    "NSD_DEFAULT_ROIS",
    "load_things_eeg2",
    "things_eeg2_plan",
    "load_mne_epochs",
    "mne_epochs_plan",
    "load_things_meg",
    "things_meg_plan",
    "read_bids_events",
    "load_algonauts2023",
    "algonauts2023_plan",
    "ALGONAUTS_ROIS",
    "load_bold5000",
    "bold5000_plan",
    "BOLD5000_VARIANTS",
    "BOLD5000_ROIS",
    "load_things_fmri",
    "find_things_fmri_files",
    "things_fmri_plan",
    "HDF5Brick",
    "IngestPlan",
    "dataset_card",
    "PublishedCountWarning",
    "MissingSessionsWarning",
    "TextEncodingWarning",
]
