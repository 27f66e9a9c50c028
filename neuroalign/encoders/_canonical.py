"""Cross-validation folds that do not depend on the order of the rows."""

from __future__ import annotations

import numpy as np

from neuroalign.encoders._ridge import resolve_folds

__all__ = ["order_free_folds"]


def order_free_folds(cv, n_samples: int, stimulus_id: np.ndarray | None, *, func: str):
    """:func:`~neuroalign.encoders._ridge.resolve_folds` on the rows sorted by
    ``stimulus_id``, mapped back to the given rows.

    Which stimulus lands in which fold then depends only on the set of stimuli (and the
    seed), never on the order of the rows, so shuffled presentations give the same fit.
    Without stimulus ids the rows are taken as they come.
    """
    if stimulus_id is None:
        return resolve_folds(cv, n_samples, None, func=func)
    ids = np.asarray(stimulus_id).astype(str)
    order = np.argsort(ids, kind="stable")
    folds = resolve_folds(cv, n_samples, ids[order], func=func)
    if isinstance(folds, str):
        return folds
    return [(np.sort(order[np.asarray(tr)]), np.sort(order[np.asarray(te)])) for tr, te in folds]
