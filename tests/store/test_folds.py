"""Stimulus-grouped folds: no stimulus on both sides of a split (property-tested)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score

from neuroalign.store import StimulusKFold, cv_folds
from neuroalign.testing import make_store


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.integers(0, 30), min_size=2, max_size=120),
    n_splits=st.integers(2, 7),
    seed=st.integers(0, 10),
    shuffle=st.booleans(),
)
def test_no_stimulus_straddles_folds(ids, n_splits, seed, shuffle):
    ids = np.array([f"s{i}" for i in ids])
    n_unique = len(np.unique(ids))
    if n_unique < n_splits:
        with pytest.raises(ValueError, match=f"Too few stimuli for cv_folds\\(n_splits={n_splits}\\)"):
            cv_folds(ids, n_splits, seed=seed, shuffle=shuffle)
        return
    folds = cv_folds(ids, n_splits, seed=seed, shuffle=shuffle)
    assert len(folds) == n_splits
    tests = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tests), np.arange(len(ids)))  # every row tested once
    per_fold = []
    for train, test in folds:
        assert not set(ids[train]) & set(ids[test])
        assert len(train) + len(test) == len(ids)
        per_fold.append(len(np.unique(ids[test])))
    assert max(per_fold) - min(per_fold) <= 1  # balanced in stimuli


def test_folds_on_store_and_accessor():
    ds = make_store(20, 3, n_repetitions=3)
    folds = ds.na.cv_folds(4)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, cv_folds(ds, 4), strict=True))
    ids = ds.stimulus_id.values
    for train, test in folds:
        assert not set(ids[train]) & set(ids[test])
    # deterministic for a seed, different for another
    again = cv_folds(ds, 4, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = cv_folds(ds, 4, seed=1)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other, strict=True))


def test_too_few_stimuli_message():
    ds = make_store(3, 2, n_repetitions=2, n_test=1)
    with pytest.raises(ValueError, match=r"Too few stimuli for cv_folds\(n_splits=5\): 3 unique stimulus_id over 6 presentation; need at least 5"):
        cv_folds(ds, 5)
    with pytest.raises(ValueError, match=r"Invalid value for 'n_splits' in cv_folds\(\): 1. Expected an integer >= 2"):
        cv_folds(ds, 1)


def test_sklearn_splitter():
    ds = make_store(30, 1, n_repetitions=2)
    X = np.random.default_rng(0).standard_normal((ds.sizes["presentation"], 4))
    y = ds.responses.values[:, 0]
    cv = StimulusKFold(3)
    assert cv.get_n_splits() == 3
    scores = cross_val_score(Ridge(), X, y, cv=cv, groups=ds.stimulus_id.values)
    assert scores.shape == (3,)
    with pytest.raises(ValueError, match="needs groups="):
        list(cv.split(X))
