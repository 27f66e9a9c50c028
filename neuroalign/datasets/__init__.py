"""Dataset adapters (published formats -> stores) and simulated ground-truth brains.

Every adapter returns a store that passes :func:`neuroalign.store.check_store`, reading
its files one at a time; the ``ingest_*`` functions stream them into a zarr store.
Formats are described in the dataset cards (``datasets/<name>.toml``).
"""

from neuroalign.datasets._algonauts import ALGONAUTS_ROIS, algonauts2023_plan, load_algonauts2023
from neuroalign.datasets._bold5000 import (
    BOLD5000_ROIS,
    BOLD5000_VARIANTS,
    bold5000_plan,
    load_bold5000,
)
from neuroalign.datasets._brick import HDF5Brick
from neuroalign.datasets._cards import dataset_card
from neuroalign.datasets._formats import MissingSessionsWarning, PublishedCountWarning
from neuroalign.datasets._ingest import IngestPlan
from neuroalign.datasets._meeg import (
    load_mne_epochs,
    load_things_meg,
    mne_epochs_plan,
    read_bids_events,
    things_meg_plan,
)
from neuroalign.datasets._nsd import (
    NSD_BETAS,
    NSD_DEFAULT_ROIS,
    NSD_SPACES,
    ingest_nsd,
    load_nsd,
    nsd_plan,
)
from neuroalign.datasets._text import TextEncodingWarning
from neuroalign.datasets._things_eeg2 import load_things_eeg2, things_eeg2_plan
from neuroalign.datasets._things_fmri import (
    find_things_fmri_files,
    load_things_fmri,
    things_fmri_plan,
)
from neuroalign.datasets.simulate import GroundTruthBrain, ROISpec, SimulationResult, simulate

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
