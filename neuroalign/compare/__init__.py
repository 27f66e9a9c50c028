"""Representational comparison: RDMs and RSA inference, CKA, shape metrics.

Conventions are named explicitly because the reference libraries disagree (see
:func:`rdm` for the RDM metrics, :func:`compare_rdms` for RDM comparisons, :func:`cka`
for the kernel choices, :class:`ShapeMetric` for the generalised shape metrics).

Names are imported from their modules on first use (:mod:`neuroalign._lazy`); torch is
used only for ``device=`` or torch tensor inputs.
"""

from neuroalign._lazy import attach

_NAMES = {
    "_cka": ["CKA", "cka"],
    "_compare_rdms": ["COMPARE_METHODS", "compare_rdms"],
    "_data_rdms": ["data_rdms", "pseudo_subjects"],
    "_plots": ["plot_mds", "plot_model_scores", "plot_rdms", "plot_timecourse"],
    "_rdm": ["RDM_DIMS", "RDM_METRICS", "rdm"],
    "_rsa": ["pool_rdms", "rsa", "rsa_noise_ceiling"],
    "_searchlight": ["searchlight"],
    "_shape": ["ShapeMetric", "partial_whiten", "shape_distance"],
    "_shape_matrix": ["distance_matrix", "mds"],
    "_stochastic": ["EnergyStochasticMetric", "GaussianStochasticMetric", "sq_bures"],
    "_timecourse": ["rsa_timecourse"],
}
__getattr__, __dir__ = attach(__name__, _NAMES)

__all__ = [
    "rdm",
    "compare_rdms",
    "rsa",
    "rsa_noise_ceiling",
    "rsa_timecourse",
    "searchlight",
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
