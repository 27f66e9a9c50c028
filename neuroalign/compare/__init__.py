"""Representational comparison: RDMs and RSA inference, CKA, shape metrics.

Conventions are named explicitly because the reference libraries disagree (see
:func:`rdm` for the RDM metrics, :func:`compare_rdms` for RDM comparisons, :func:`cka`
for the kernel choices, :class:`ShapeMetric` for the generalised shape metrics).
"""

from neuroalign.compare._cka import CKA, cka
from neuroalign.compare._compare_rdms import COMPARE_METHODS, compare_rdms
from neuroalign.compare._plots import plot_mds, plot_model_scores, plot_rdms, plot_timecourse
from neuroalign.compare._rdm import RDM_DIMS, RDM_METRICS, rdm
from neuroalign.compare._rsa import (
    data_rdms,
    pool_rdms,
    pseudo_subjects,
    rsa,
    rsa_noise_ceiling,
)
from neuroalign.compare._shape import (
    ShapeMetric,
    distance_matrix,
    mds,
    partial_whiten,
    shape_distance,
)
from neuroalign.compare._stochastic import (
    EnergyStochasticMetric,
    GaussianStochasticMetric,
    sq_bures,
)
from neuroalign.compare._timecourse import rsa_timecourse

__all__ = [
    "rdm",
    "compare_rdms",
    "rsa",
    "rsa_noise_ceiling",
    "rsa_timecourse",
    "data_rdms",
    "pseudo_subjects",
    "pool_rdms",
    "cka",
    "CKA",
    "ShapeMetric",
    "shape_distance",
    "partial_whiten",
    "distance_matrix",
    "GaussianStochasticMetric",
    "EnergyStochasticMetric",
    "sq_bures",
    "mds",
    "plot_rdms",
    "plot_model_scores",
    "plot_mds",
    "plot_timecourse",
    "RDM_METRICS",
    "RDM_DIMS",
    "COMPARE_METHODS",
]
