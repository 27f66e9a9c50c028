"""Encoders: predict each neuroid's responses from model features.

Ridge with a cross-validated alpha per neuroid (:class:`RidgeEncoder`), banded ridge for
several feature spaces (:class:`BandedRidgeEncoder`), layer sweeps (:class:`LayerSweep`),
FIR delays and time-resolved fits, the attention-routing encoder, and scoring
(Pearson r, R², ceiling normalisation, permutation tests with FDR, bootstrap CIs).
"""

from neuroalign.encoders._banded import BandedRidgeEncoder, variance_partitioning
from neuroalign.encoders._ridge import RidgeEncoder
from neuroalign.encoders._routing import AttentionRoutingEncoder
from neuroalign.encoders._scoring import (
    bootstrap_roi,
    ceiling_normalise,
    fdr_bh,
    pearson_r,
    permutation_test,
    r2_score,
    roi_summary,
)
from neuroalign.encoders._solvers import ridge_cv, ridge_refit
from neuroalign.encoders._sweep import LayerSweep, layer_table
from neuroalign.encoders._temporal import (
    Delayer,
    FIREncoder,
    TimeResolvedEncoder,
    block_folds,
    make_delays,
)
from neuroalign.encoders._truth_features import simulated_truth_features, simulated_truth_tokens

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
    "simulated_truth_features",
    "simulated_truth_tokens",
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
]
