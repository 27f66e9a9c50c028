"""No cross-validation scheme lets the repetitions of a stimulus straddle a fold.

Responses carry a strong per-stimulus signal; the features are random per stimulus, so they
identify stimuli but say nothing about the responses. A fold that put repetitions of one
stimulus on both sides would let the ridge memorise stimuli and report a median CV R² of
about +0.6; grouped folds give about -0.1.
"""

import numpy as np
import pytest
import xarray as xr
from sklearn import model_selection as ms

from neuroalign.encoders import BandedRidgeEncoder, LayerSweep, RidgeEncoder, TimeResolvedEncoder
from neuroalign.exceptions import DataQualityWarning, SplitLeakageError
from neuroalign.store import StimulusKFold

ALPHAS = np.logspace(-2, 4, 7)
N_STIM, REPS, P, T = 40, 4, 60, 12


def trial_data(seed=0, n_times=None):
    rng = np.random.default_rng(seed)
    ids = np.array([f"s{i:03d}" for i in range(N_STIM)])
    rows = rng.permutation(np.repeat(np.arange(N_STIM), REPS))
    shape = (N_STIM, T) + ((n_times,) if n_times else ())
    signal = 2.0 * rng.standard_normal(shape)
    Y = signal[rows] + rng.standard_normal((len(rows),) + shape[1:])
    dims = ("presentation", "neuroid") + (("time",) if n_times else ())
    resp = xr.DataArray(Y, dims=dims, coords={"stimulus_id": ("presentation", ids[rows])})
    feats = xr.DataArray(rng.standard_normal((N_STIM, P)), dims=("stimulus", "layer_unit"),
                         coords={"stimulus_id": ("stimulus", ids)}, name="layer")
    return feats, xr.Dataset({"responses": resp}), rows


def predefined(rows):
    return ms.PredefinedSplit(rows % 4)  # test fold of each presentation: its stimulus's


CVS = {
    "int": lambda rows: 5,
    "KFold": lambda rows: ms.KFold(5, shuffle=True, random_state=0),
    "KFold-unshuffled": lambda rows: ms.KFold(5),
    "ShuffleSplit": lambda rows: ms.ShuffleSplit(5, test_size=0.2, random_state=0),
    "RepeatedKFold": lambda rows: ms.RepeatedKFold(n_splits=4, n_repeats=2, random_state=0),
    "GroupKFold": lambda rows: ms.GroupKFold(5),
    "GroupShuffleSplit": lambda rows: ms.GroupShuffleSplit(4, test_size=0.25, random_state=0),
    "StimulusKFold": lambda rows: StimulusKFold(5),
    "PredefinedSplit": predefined,
}


@pytest.mark.parametrize("name", list(CVS))
@pytest.mark.parametrize("seed", [0, 1])
def test_unrelated_features_do_not_score_under_any_cv(name, seed):
    feats, store, rows = trial_data(seed)
    enc = RidgeEncoder(alphas=ALPHAS, cv=CVS[name](rows)).fit(feats, store)
    assert np.median(enc.cv_scores_) <= 0.1, name


def averaged(store):
    av = store.responses.groupby("stimulus_id").mean().rename(stimulus_id="stimulus")
    return av.assign_coords(stimulus_id=("stimulus", av["stimulus"].values))


@pytest.mark.parametrize("cv", ["loo", 5, "KFold"])
def test_unrelated_features_do_not_score_on_averaged_data(cv):
    feats, store, _ = trial_data(2)
    cv = ms.KFold(5, shuffle=True, random_state=0) if cv == "KFold" else cv
    enc = RidgeEncoder(alphas=ALPHAS, cv=cv).fit(feats, averaged(store))
    assert np.median(enc.cv_scores_) <= 0.1


def test_related_features_do_score():
    # the same design with features that carry the signal: the tests above are not vacuous
    feats, store, _ = trial_data(3)
    sig = averaged(store).sel(stimulus=feats.stimulus_id.values).values
    good = feats.copy(data=np.concatenate([sig, feats.values[:, : P - T]], axis=1))
    enc = RidgeEncoder(alphas=ALPHAS, cv=ms.KFold(5, shuffle=True, random_state=0)).fit(good, store)
    assert np.median(enc.cv_scores_) > 0.4


@pytest.mark.parametrize("est", ["LayerSweep", "TimeResolvedEncoder", "BandedRidgeEncoder"])
def test_subclasses_and_banded_ridge_group_plain_splitters(est):
    kfold = ms.KFold(5, shuffle=True, random_state=0)
    if est == "TimeResolvedEncoder":
        feats, store, _ = trial_data(4, n_times=2)
        scores = TimeResolvedEncoder(alphas=ALPHAS, cv=kfold).fit(feats, store).cv_scores_.values
    elif est == "LayerSweep":
        feats, store, _ = trial_data(4)
        scores = LayerSweep(alphas=ALPHAS, cv=kfold).fit(feats.to_dataset(), store).scores_.values
    else:
        feats, store, _ = trial_data(4)
        spaces = {"a": feats.isel(layer_unit=slice(0, 30)), "b": feats.isel(layer_unit=slice(30, None))}
        scores = BandedRidgeEncoder(alphas=ALPHAS, n_iter=3, cv=kfold).fit(spaces, store).cv_scores_
    assert np.median(scores) <= 0.1


class RowKFold:
    """A custom splitter that ignores groups (what a user might write)."""

    def split(self, X, y=None, groups=None):
        yield from ms.KFold(4, shuffle=True, random_state=0).split(X)


def test_leaky_custom_splitters_and_folds_are_refused():
    feats, store, rows = trial_data(5)
    with pytest.raises(SplitLeakageError, match=r"Invalid value for 'cv' in RidgeEncoder\(\): fold 0 "
                       r"of RowKFold puts \d+ stimuli on both sides \(training and validation\): 's0"):
        RidgeEncoder(alphas=ALPHAS, cv=RowKFold()).fit(feats, store)
    leaky = list(ms.KFold(4, shuffle=True, random_state=0).split(rows))
    with pytest.raises(SplitLeakageError, match="fold 0 of the given folds puts"):
        RidgeEncoder(alphas=ALPHAS, cv=leaky).fit(feats, store)
    with pytest.raises(SplitLeakageError, match="fold 0 of PredefinedSplit puts"):
        RidgeEncoder(alphas=ALPHAS, cv=ms.PredefinedSplit(np.arange(len(rows)) % 4)).fit(feats, store)
    with pytest.raises(ValueError, match=r"Invalid value for 'cv' in RidgeEncoder\(\): "
                       r"StratifiedKFold.*Stratified splitters need class labels"):
        RidgeEncoder(alphas=ALPHAS, cv=ms.StratifiedKFold(3)).fit(feats, store)
    with pytest.raises(ValueError, match=r"Invalid value for 'cv' in RidgeEncoder\(\): 2.5\. Expected"):
        RidgeEncoder(alphas=ALPHAS, cv=2.5).fit(feats, store)


def test_plain_splitter_on_one_row_per_stimulus_gives_its_usual_folds():
    rng = np.random.default_rng(6)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((30, 2))
    from neuroalign.encoders._ridge_inputs import resolve_folds

    for cv in (ms.KFold(5), ms.KFold(5, shuffle=True, random_state=1), ms.ShuffleSplit(3, random_state=2)):
        ours = resolve_folds(cv, 30, None, func="t")
        for (a, b), (c, d) in zip(ours, cv.split(X), strict=True):
            np.testing.assert_array_equal(a, np.sort(c))
            np.testing.assert_array_equal(b, np.sort(d))
    assert RidgeEncoder(alphas=ALPHAS, cv=ms.KFold(5)).fit(X, Y).coef_.shape == (4, 2)


def test_single_row_validation_folds_give_nan_cv_scores_with_a_warning():
    feats, store, _ = trial_data(7)
    with pytest.warns(DataQualityWarning, match=r"RidgeEncoder.fit: the cross-validated R² is "
                      r"undefined \(NaN\) for 12 neuroids, e.g. 'neuroid 0'.*cv='loo'"):
        enc = RidgeEncoder(alphas=ALPHAS, cv=ms.LeaveOneOut()).fit(feats, averaged(store))
    assert np.isnan(enc.cv_scores_).all() and np.isfinite(enc.coef_).all()
