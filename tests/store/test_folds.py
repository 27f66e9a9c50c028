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
            cv_folds(ids, n_splits, random_state=seed, shuffle=shuffle)
        return
    folds = cv_folds(ids, n_splits, random_state=seed, shuffle=shuffle)
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
    again = cv_folds(ds, 4, random_state=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    other = cv_folds(ds, 4, random_state=1)
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


def test_unshuffled_folds_follow_order_of_first_appearance():
    # ids neither sorted nor in np.unique order: c, a, d, b, e (then repeats)
    ids = np.array(["c", "a", "c", "d", "b", "a", "e", "d", "b", "e", "f"])
    folds = cv_folds(ids, 2, shuffle=False)
    # dealt round-robin in order of first appearance: c->0, a->1, d->0, b->1, e->0, f->1
    assert sorted(set(ids[folds[0][1]])) == ["c", "d", "e"]
    assert sorted(set(ids[folds[1][1]])) == ["a", "b", "f"]
    np.testing.assert_array_equal(folds[0][1], [0, 2, 3, 6, 7, 9])


def test_stimulus_kfold_uses_the_groups_in_sklearn():
    # responses carry a strong per-stimulus signal; features are random per stimulus, so
    # folds that split a stimulus's repetitions would score high on unrelated features
    rng = np.random.default_rng(0)
    n_stim, reps = 40, 4
    stim = rng.permutation(np.repeat(np.arange(n_stim), reps))
    ids = np.array([f"s{i:02d}" for i in stim])
    X = rng.standard_normal((n_stim, 60))[stim]
    y = 2.0 * rng.standard_normal(n_stim)[stim] + rng.standard_normal(len(stim))
    cv = StimulusKFold(5)
    for train, test in cv.split(X, y, groups=ids):
        assert not set(ids[train]) & set(ids[test])
    assert np.median(cross_val_score(Ridge(alpha=1.0), X, y, groups=ids, cv=cv)) <= 0.1
    from sklearn.model_selection import KFold

    # the same features do score on folds that ignore the groups (the check is not vacuous)
    assert np.median(cross_val_score(Ridge(alpha=1.0), X, y, cv=KFold(5, shuffle=True, random_state=0))) > 0.4


@settings(max_examples=40, deadline=None)
@given(
    ids=st.lists(st.integers(0, 12), min_size=4, max_size=60),
    kind=st.sampled_from(["KFold", "ShuffleSplit", "LeaveOneOut", "GroupKFold"]),
    seed=st.integers(0, 5),
)
def test_stimulus_folds_never_leak(ids, kind, seed):
    from sklearn import model_selection as ms

    from neuroalign.store._folds import stimulus_folds

    ids = np.array([f"s{i}" for i in ids])
    n_unique = len(np.unique(ids))
    if n_unique < 2:
        return
    k = min(3, n_unique)
    cv = {"KFold": ms.KFold(k, shuffle=True, random_state=seed), "LeaveOneOut": ms.LeaveOneOut(),
          "ShuffleSplit": ms.ShuffleSplit(3, test_size=0.34, random_state=seed),
          "GroupKFold": ms.GroupKFold(k)}[kind]
    folds = stimulus_folds(cv, ids, func="t")
    for train, test in folds:
        assert not set(ids[train]) & set(ids[test])
        assert len(train) and len(test)
        # every row of a stimulus goes where the stimulus goes
        assert set(np.flatnonzero(np.isin(ids, ids[test]))) == set(test.tolist())


def test_shuffled_folds_depend_on_the_set_of_stimuli_not_the_row_order():
    """Which stimulus lands in which fold is a function of the set of ids and the seed."""
    rng = np.random.default_rng(5)
    ids = np.repeat([f"s{i:03d}" for i in range(40)], 3)
    perm = rng.permutation(len(ids))

    def fold_of(ids_, folds):
        out = {}
        for f, (_, te) in enumerate(folds):
            for sid in ids_[te]:
                out[str(sid)] = f
        return out

    a = fold_of(ids, cv_folds(ids, 5, random_state=3))
    b = fold_of(ids[perm], cv_folds(ids[perm], 5, random_state=3))
    assert a == b
    assert fold_of(ids, cv_folds(ids, 5, random_state=4)) != a  # the seed still matters


def test_seed_is_a_deprecated_alias_of_random_state():
    from neuroalign.store import StimulusKFold

    ids = np.repeat(np.arange(12).astype(str), 2)
    with pytest.warns(FutureWarning, match="'seed' is deprecated.*random_state=3"):
        old = cv_folds(ids, 4, seed=3)
    new = cv_folds(ids, 4, random_state=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(old, new, strict=True))
    with pytest.raises(TypeError, match="got both 'seed' \\(deprecated\\) and 'random_state'"):
        cv_folds(ids, 4, seed=3, random_state=4)
    with pytest.warns(FutureWarning, match="StimulusKFold\\(\\): 'seed' is deprecated"):
        assert StimulusKFold(4, seed=5).random_state == 5
