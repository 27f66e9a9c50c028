"""What the ridge encoders take besides the data: the folds of ``cv``
(:func:`resolve_folds`, no stimulus on both sides of a fold) and per-neuroid values matched
to the fit's neuroids (:func:`_neuroid_values`)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign._validation import check_option, check_positive_int, format_list
from neuroalign.exceptions import DimensionError
from neuroalign.store import cv_folds
from neuroalign.store._folds import check_folds, stimulus_folds

__all__ = ["resolve_folds"]


def resolve_folds(cv, n_samples: int, stimulus_id: np.ndarray | None, *, func: str):
    """``cv`` (int, ``"loo"``, a scikit-learn splitter or (train, test) pairs) -> list of
    (train, val) row indices, or ``"loo"``; no stimulus is ever on both sides of a fold.

    Integer ``cv`` uses :func:`neuroalign.store.cv_folds`, grouping the rows of a stimulus;
    splitters go through :func:`neuroalign.store._folds.stimulus_folds` (group-aware ones
    get the stimulus ids as groups, plain ones are applied to the unique stimuli), and the
    result is checked (:class:`~neuroalign.exceptions.SplitLeakageError` otherwise). Array
    inputs without stimulus ids treat each row as its own stimulus.
    """
    groups = stimulus_id if stimulus_id is not None else np.arange(n_samples).astype(str)
    if isinstance(cv, str):
        check_option(cv, ("loo",), name="cv", func=func)
        if len(np.unique(groups)) != n_samples:
            raise ValueError(
                f"Invalid value for 'cv' in {func}(): 'loo' needs one row per stimulus, got "
                f"{n_samples} rows for {len(np.unique(groups))} stimuli. Average repetitions "
                "first, or use an integer cv (stimulus-grouped folds)."
            )
        return "loo"
    if isinstance(cv, bool):
        raise ValueError(
            f"Invalid value for 'cv' in {func}(): {cv!r}. Expected an integer >= 2, 'loo', a "
            "scikit-learn splitter or a list of (train, test) index pairs."
        )
    if isinstance(cv, int | np.integer):
        check_positive_int(cv, name="cv", func=func, minimum=2)
        folds = cv_folds(groups, int(cv))
        check_folds(folds, groups, func=func, source=f"cv={int(cv)}")
        return folds
    return stimulus_folds(cv, groups, func=func)


def _neuroid_values(values, template, n: int, *, func: str) -> np.ndarray:
    """Per-neuroid values (array, or DataArray on ``neuroid`` matched by ``neuroid_id``)."""
    if isinstance(values, xr.DataArray) and "neuroid_id" in values.coords and template is not None \
            and "neuroid_id" in template.coords:
        want = np.asarray(template["neuroid_id"].values).astype(str)
        have = np.asarray(values["neuroid_id"].values).astype(str)
        if not np.array_equal(have, want):
            import pandas as pd

            pos = pd.Index(have).get_indexer(want)
            if (pos < 0).any():
                raise ValueError(
                    f"{func}(): the scores lack the neuroids "
                    f"{format_list(want[pos < 0], limit=5)} of the fit."
                )
            return np.asarray(values.values, dtype=np.float64)[pos]
    arr = np.asarray(getattr(values, "values", values), dtype=np.float64).ravel()
    if arr.shape != (n,):
        raise DimensionError(
            f"{func}(): the scores have {arr.size} values; expected one per neuroid ({n})."
        )
    return arr
