"""Encoders: predict each neuroid's responses from model features.

Ridge with a cross-validated alpha per neuroid (:class:`RidgeEncoder`), banded ridge for
several feature spaces (:class:`BandedRidgeEncoder`), layer sweeps (:class:`LayerSweep`),
FIR delays and time-resolved fits, the attention-routing encoder, and scoring
(Pearson r, R², ceiling normalisation, permutation tests with FDR, bootstrap CIs).

Names are imported from their modules on first use (:mod:`neuroalign._lazy`): importing
this package does not import torch, scikit-learn or himalaya.
"""

from neuroalign._lazy import attach

_NAMES = {
    "_banded": ["BandedRidgeEncoder", "variance_partitioning"],
    "_results": ["results_from_scores", "concat_results"],
    "_ridge": ["RidgeEncoder"],
    "_routing": ["AttentionRoutingEncoder"],
    "_neuroid_scores": ["ceiling_normalise", "pearson_r", "r2_score"],
    "_scoring": ["bootstrap_roi", "fdr_bh", "permutation_test", "roi_summary"],
    "_solvers": ["ridge_cv", "ridge_refit"],
    "_sweep": ["LayerSweep"],
    "_sweep_layers": ["layer_table"],
    "_temporal": ["Delayer", "FIREncoder", "block_folds", "make_delays"],
    "_time_resolved": ["TimeResolvedEncoder"],
}
__getattr__, __dir__ = attach(__name__, _NAMES,
                              torch_names=["AttentionRoutingEncoder"])

__all__ = [
    "RidgeEncoder",
    "BandedRidgeEncoder",
    "variance_partitioning",
    "LayerSweep",
    "FIREncoder",
    "TimeResolvedEncoder",
    "Delayer",
    "make_delays",
    "block_folds",
    "layer_table",
    "AttentionRoutingEncoder",
    "ridge_cv",
    "ridge_refit",
    "pearson_r",
    "r2_score",
    "ceiling_normalise",
    "roi_summary",
    "permutation_test",
    "fdr_bh",
    "bootstrap_roi",
    "results_from_scores",
    "concat_results",
]
