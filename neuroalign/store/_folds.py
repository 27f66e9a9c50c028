"""Leakage-safe cross-validation folds: all repetitions of a stimulus stay in one fold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._validation import UNSET, check_positive_int, format_list, renamed
from neuroalign.exceptions import SplitLeakageError
from neuroalign.store._schema import sample_dim

__all__ = ["cv_folds", "StimulusKFold", "stimulus_folds", "check_folds"]


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
    random_state: int | None = 0,
    seed: Any = UNSET,
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
        Shuffle stimuli before dealing them (seeded by ``random_state``). The shuffle starts
        from the sorted stimulus ids, so which stimulus lands in which fold depends only on
        the set of stimuli and the seed, never on the order of the rows. ``shuffle=False``
        deals the stimuli in their order of first appearance (the order you gave).
    random_state : int or None
        Seed of the shuffle (``numpy.random.default_rng``).
    seed : int or None
        Deprecated alias of ``random_state`` (``FutureWarning``).

    Returns
    -------
    list of (train_index, test_index)
        Integer positions along the store's sample dim (``presentation`` or ``stimulus``).

    Raises
    ------
    ValueError
        Fewer unique stimuli than ``n_splits``.
    """
    if seed is not UNSET:
        random_state = renamed(seed, random_state, old="seed", new="random_state",
                               func="cv_folds", default=0)
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
    if shuffle:  # from the sorted ids: the folds depend on the set of stimuli, not the row order
        order = np.random.default_rng(random_state).permutation(n_stim)
    else:
        order = np.argsort(first)  # order of first appearance, as the user gave the rows
    fold_of_stim = np.empty(n_stim, dtype=int)
    fold_of_stim[order] = np.arange(n_stim) % n_splits
    fold = fold_of_stim[codes.ravel()]
    positions = np.arange(len(ids))
    return [(positions[fold != f], positions[fold == f]) for f in range(n_splits)]


class StimulusKFold:
    """scikit-learn splitter wrapping :func:`cv_folds`; ``groups`` are the stimulus ids.

    Use it wherever a scikit-learn ``cv=`` is accepted::

        GridSearchCV(est, grid, cv=StimulusKFold(5)).fit(X, y, groups=stimulus_ids)

    Parameters
    ----------
    n_splits : int
        Number of folds.
    shuffle : bool
        Shuffle the stimuli before assigning folds (from the sorted ids, so the folds depend
        on the set of stimuli and the seed, never on the row order).
    random_state : int, optional
        Seed of the shuffle.
    seed : int, deprecated
        Old name of ``random_state`` (``FutureWarning``).
    """

    def __init__(self, n_splits: int = 5, *, shuffle: bool = True,
                 random_state: int | None = 0, seed: Any = UNSET) -> None:
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = renamed(seed, random_state, old="seed", new="random_state",
                                    func="StimulusKFold", default=0)

    def split(self, X=None, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Folds over the rows of ``X``, grouped by stimulus.

        Parameters
        ----------
        X : array-like or xarray object, optional
            The rows; an xarray object with a ``stimulus_id`` coordinate gives the groups.
        y : array-like, optional
            Ignored (scikit-learn's signature).
        groups : array-like, optional
            The stimulus id of each row (needed unless ``X`` carries them).

        Yields
        ------
        train, test : ndarray of int
            Row indices of each fold; all rows of a stimulus are on one side.
        """
        if groups is None:
            if isinstance(X, xr.Dataset | xr.DataArray):
                groups = X
            else:
                raise ValueError(
                    "StimulusKFold.split() needs groups= (the stimulus_id of each row)."
                )
        yield from cv_folds(groups, self.n_splits, shuffle=self.shuffle,
                            random_state=self.random_state)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Number of folds.

        Parameters
        ----------
        X, y, groups : optional
            Ignored (scikit-learn's signature).

        Returns
        -------
        int
            ``n_splits``.
        """
        return self.n_splits

    def __repr__(self) -> str:
        return (f"StimulusKFold(n_splits={self.n_splits}, shuffle={self.shuffle}, "
                f"random_state={self.random_state})")


def _sklearn_kinds():
    from sklearn import model_selection as ms

    grouped = (ms.GroupKFold, ms.GroupShuffleSplit, ms.LeaveOneGroupOut, ms.LeavePGroupsOut,
               ms.StratifiedGroupKFold, StimulusKFold)
    stratified = (ms.StratifiedKFold, ms.StratifiedShuffleSplit, ms.RepeatedStratifiedKFold)
    plain = (ms.KFold, ms.ShuffleSplit, ms.RepeatedKFold, ms.LeaveOneOut, ms.LeavePOut,
             ms.TimeSeriesSplit)
    return grouped, stratified, plain, ms.PredefinedSplit


def stimulus_folds(cv, stimulus_id, *, func: str, name: str = "cv") -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds over rows from any scikit-learn splitter, with no stimulus on both sides.

    - group-aware splitters (``GroupKFold``, ``GroupShuffleSplit``, ``LeaveOneGroupOut``,
      ``LeavePGroupsOut``, ``StratifiedGroupKFold``, :class:`StimulusKFold`) get the
      stimulus ids as ``groups``;
    - plain splitters (``KFold``, ``ShuffleSplit``, ``RepeatedKFold``, ``LeaveOneOut``,
      ``LeavePOut``, ``TimeSeriesSplit``) are applied to the unique stimuli, in order of
      first appearance (so on one row per stimulus they give their usual row folds), and
      each fold is expanded to all rows of its stimuli;
    - ``PredefinedSplit`` is taken row by row (``test_fold`` has one entry per row);
    - any other object with ``split`` gets the stimulus ids as ``groups``; an iterable of
      ``(train, test)`` index pairs is taken as given.

    Whatever comes out is checked by :func:`check_folds`.

    Raises
    ------
    SplitLeakageError
        A fold puts rows of one stimulus on both sides.
    ValueError
        Stratified splitters (no class labels to stratify on), empty or out-of-range folds.
    """
    ids = np.asarray(stimulus_id).astype(str)
    n = len(ids)
    grouped, stratified, plain, predefined = _sklearn_kinds()
    label = f"{type(cv).__name__}"
    if isinstance(cv, stratified):
        raise ValueError(
            f"Invalid value for {name!r} in {func}(): {cv!r}. Stratified splitters need class "
            "labels, which regression targets do not have; use an integer, KFold, GroupKFold "
            "or StimulusKFold."
        )
    if isinstance(cv, grouped):
        folds = list(cv.split(np.zeros((n, 1)), None, ids))
    elif isinstance(cv, plain):
        uniq, first, codes = np.unique(ids, return_index=True, return_inverse=True)
        order = np.argsort(first)  # stimulus k (in order of first appearance) = uniq[order[k]]
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        stim_of_row = rank[codes.ravel()]
        folds = []
        for tr, te in cv.split(np.zeros((len(uniq), 1))):
            in_tr = np.zeros(len(uniq), bool)
            in_tr[np.asarray(tr)] = True
            in_te = np.zeros(len(uniq), bool)
            in_te[np.asarray(te)] = True
            folds.append((np.flatnonzero(in_tr[stim_of_row]), np.flatnonzero(in_te[stim_of_row])))
    elif isinstance(cv, predefined):
        if len(cv.test_fold) != n:
            raise ValueError(
                f"Invalid value for {name!r} in {func}(): PredefinedSplit with "
                f"{len(cv.test_fold)} entries in test_fold; expected one per row ({n})."
            )
        folds = list(cv.split())
    elif hasattr(cv, "split"):
        folds = list(cv.split(np.zeros((n, 1)), None, ids))
    else:
        try:
            folds = [(np.asarray(tr), np.asarray(te)) for tr, te in cv]
        except (TypeError, ValueError):
            raise ValueError(
                f"Invalid value for {name!r} in {func}(): {cv!r}. Expected an integer >= 2, "
                "'loo', a scikit-learn splitter or a list of (train, test) index pairs."
            ) from None
        label = "the given folds"
    folds = [(np.asarray(tr, dtype=np.int64), np.asarray(te, dtype=np.int64)) for tr, te in folds]
    check_folds(folds, ids, func=func, name=name, source=label)
    return folds


def check_folds(folds, stimulus_id, *, func: str, name: str = "cv", source: str = "the folds") -> None:
    """Check (train, test) folds over rows: non-empty, in range, no stimulus on both sides.

    Raises
    ------
    SplitLeakageError
        Rows of one stimulus fall on both sides of a fold (the stimuli are named).
    ValueError
        No folds, an empty side, or indices outside the rows.
    """
    ids = np.asarray(stimulus_id).astype(str)
    n = len(ids)
    if len(folds) == 0:
        raise ValueError(f"Invalid value for {name!r} in {func}(): {source} gave no folds.")
    for k, (tr, te) in enumerate(folds):
        for side, idx in (("training", tr), ("validation", te)):
            if len(idx) == 0:
                raise ValueError(
                    f"Invalid value for {name!r} in {func}(): fold {k} of {source} has an empty "
                    f"{side} set; expected at least one row on each side."
                )
            if idx.min() < 0 or idx.max() >= n:
                raise ValueError(
                    f"Invalid value for {name!r} in {func}(): fold {k} of {source} has {side} "
                    f"indices outside 0..{n - 1}."
                )
        both = np.intersect1d(ids[tr], ids[te])
        if both.size:
            raise SplitLeakageError(
                f"Invalid value for {name!r} in {func}(): fold {k} of {source} puts {both.size} "
                f"stimuli on both sides (training and validation): {format_list(both, limit=5)}. "
                "Expected all rows of a stimulus in one fold: use an integer cv, StimulusKFold, "
                "a group-aware splitter (given the stimulus ids as groups) or a plain splitter "
                "such as KFold (applied to the unique stimuli)."
            )
