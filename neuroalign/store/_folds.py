"""Leakage-safe cross-validation folds: all repetitions of a stimulus stay in one fold."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import xarray as xr

from neuroalign._validation import check_positive_int
from neuroalign.store._schema import sample_dim

__all__ = ["cv_folds", "StimulusKFold"]


def _stimulus_ids(data) -> np.ndarray:
    if isinstance(data, xr.Dataset | xr.DataArray):
        if "stimulus_id" not in data.coords:
            raise ValueError(
                "cv_folds() needs a 'stimulus_id' coordinate to group repetitions; "
                f"coordinates present: {sorted(map(str, data.coords))}."
            )
        return np.asarray(data.coords["stimulus_id"].values)
    return np.asarray(data)


def cv_folds(
    data,
    n_splits: int = 5,
    *,
    shuffle: bool = True,
    seed: int | None = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds over presentations that keep every stimulus in one fold.

    Unique stimuli are (optionally) shuffled and dealt round-robin into ``n_splits``
    folds, so folds hold equal numbers of stimuli (±1) and all repetitions of a stimulus
    fall into the same fold: a test image is never also a training image.

    Parameters
    ----------
    data : xr.Dataset, xr.DataArray or array-like of str
        A store (trial-level or averaged), anything with a ``stimulus_id`` coordinate, or
        the stimulus ids themselves, one per row.
    n_splits : int
        Number of folds (>= 2).
    shuffle : bool
        Shuffle stimuli before dealing them (seeded by ``seed``); otherwise the order of
        first appearance is used.
    seed : int or None
        Seed of the shuffle.

    Returns
    -------
    list of (train_index, test_index)
        Integer positions along the store's sample dim (``presentation`` or ``stimulus``).

    Raises
    ------
    ValueError
        Fewer unique stimuli than ``n_splits``.
    """
    n_splits = check_positive_int(n_splits, name="n_splits", func="cv_folds", minimum=2)
    ids = _stimulus_ids(data)
    uniq, first, codes = np.unique(ids, return_index=True, return_inverse=True)
    n_stim = len(uniq)
    if n_stim < n_splits:
        dim = sample_dim(data) if isinstance(data, xr.Dataset) else "rows"
        raise ValueError(
            f"Too few stimuli for cv_folds(n_splits={n_splits}): {n_stim} unique stimulus_id "
            f"over {len(ids)} {dim}; need at least {n_splits}."
        )
    order = np.argsort(first)  # order of first appearance
    if shuffle:
        order = np.random.default_rng(seed).permutation(order)
    fold_of_stim = np.empty(n_stim, dtype=int)
    fold_of_stim[order] = np.arange(n_stim) % n_splits
    fold = fold_of_stim[codes.ravel()]
    positions = np.arange(len(ids))
    return [(positions[fold != f], positions[fold == f]) for f in range(n_splits)]


class StimulusKFold:
    """scikit-learn splitter wrapping :func:`cv_folds`; ``groups`` are the stimulus ids.

    Use it wherever a scikit-learn ``cv=`` is accepted::

        GridSearchCV(est, grid, cv=StimulusKFold(5)).fit(X, y, groups=stimulus_ids)
    """

    def __init__(self, n_splits: int = 5, *, shuffle: bool = True, seed: int | None = 0) -> None:
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.seed = seed

    def split(self, X=None, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if groups is None:
            if isinstance(X, xr.Dataset | xr.DataArray):
                groups = X
            else:
                raise ValueError(
                    "StimulusKFold.split() needs groups= (the stimulus_id of each row)."
                )
        yield from cv_folds(groups, self.n_splits, shuffle=self.shuffle, seed=self.seed)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return self.n_splits

    def __repr__(self) -> str:
        return f"StimulusKFold(n_splits={self.n_splits}, shuffle={self.shuffle}, seed={self.seed})"
