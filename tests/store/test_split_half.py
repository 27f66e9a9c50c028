"""Split-half reliability (Spearman-Brown) and the time-resolved noise ceiling."""

import numpy as np
import pytest

from neuroalign.exceptions import DataFormatError, DataQualityWarning, DimensionError
from neuroalign.store import noise_ceiling, split_half
from neuroalign.testing import make_store

SEEDS = [0, 1, 2]  # also run once over seeds 0..39


@pytest.mark.parametrize("seed", SEEDS)
def test_split_half_recovers_planted_reliability(seed):
    true = np.array([0.3, 0.6, 1.0, 1.5])
    ds = make_store(600, 4, ncsnr=true, n_repetitions=4, n_times=3, n_test=0, seed=seed)
    rel = split_half(ds, n_splits=20)
    assert rel.dims == ("neuroid", "time") and rel.name == "reliability"
    expected = true**2 / (true**2 + 1 / 4)  # reliability of the 4-repetition mean
    sd = np.array([0.046, 0.022, 0.010, 0.004])  # sampling sd, measured over 40 seeds
    assert (np.abs(rel.values - expected[:, None]) < 4 * sd[:, None]).all()


def test_split_half_ignores_presentation_order_and_units():
    ds = make_store(50, 6, ncsnr=np.linspace(0.2, 1.5, 6), n_repetitions=3, n_times=2, seed=3)
    ds = ds.assign(responses=ds.responses.astype(np.float64))
    ref = split_half(ds, seed=7)
    perm = np.random.default_rng(1).permutation(ds.sizes["presentation"])
    np.testing.assert_allclose(split_half(ds.isel(presentation=perm), seed=7).values, ref.values, rtol=1e-12)
    tiny = ds.assign(responses=ds.responses * 1e-13)
    np.testing.assert_allclose(split_half(tiny, seed=7).values, ref.values, rtol=1e-10)


def test_split_half_seed_handling():
    ds = make_store(50, 6, ncsnr=np.linspace(0.2, 1.5, 6), n_repetitions=4, seed=4)
    a, b = split_half(ds, seed=1), split_half(ds, seed=1)
    np.testing.assert_array_equal(a.values, b.values)
    other = split_half(ds, seed=2)
    assert not np.array_equal(a.values, other.values)  # the seed is used
    assert np.abs(a.values - other.values).max() < 0.3  # ... and only moves the estimate a little
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(split_half(ds, seed=g1).values, split_half(ds, seed=g2).values)
    assert np.isfinite(split_half(ds, seed=None).values).all()
    with pytest.raises(ValueError, match=r"Invalid value for 'n_splits' in split_half\(\): 0. Expected an integer >= 1"):
        split_half(ds, n_splits=0)


def test_split_half_needs_repeated_trials():
    with pytest.raises(ValueError, match=r"needs at least 3 stimuli with 2 or more repetitions; found 0 \(none\)"):
        split_half(make_store(5, 2, n_repetitions=1))
    with pytest.raises(DimensionError, match=r"split_half\(\) needs a trial-level store"):
        split_half(make_store(5, 2).na.average_repetitions())


def _set(ds, rows, neuroid, value):
    resp = ds.responses.values.copy()
    resp[rows, neuroid] = value
    return ds.assign(responses=(ds.responses.dims, resp))


def test_dead_channels_are_nan_not_zero():
    ds = make_store(40, 6, ncsnr=1.0, n_repetitions=3, n_times=2, seed=5)
    dirty = _set(ds, slice(None), 1, 2.0)  # constant
    dirty = _set(dirty, slice(None), 2, np.nan)  # never measured
    dirty = _set(dirty, 7, 4, -np.inf)
    with pytest.warns(DataQualityWarning, match=r"split_half\(\): 3 of 6 neuroids have unusable data: "
                      r"1 with infinite values \('n00004'\); 1 constant \('n00001'\); 1 without 3 stimuli "
                      r"left with data in both halves \('n00002'\). Their split_half is NaN"):
        rel = split_half(dirty)
    assert np.isnan(rel.values[[1, 2, 4]]).all()
    np.testing.assert_allclose(rel.values[[0, 3, 5]], split_half(ds).values[[0, 3, 5]], rtol=1e-12)
    with pytest.warns(DataQualityWarning, match="noise_ceiling"):
        nc = noise_ceiling(dirty, split=None)
    assert np.isnan(nc.values[[1, 2, 4]]).all()
    with pytest.raises(DataFormatError, match=r"3 of 6 neuroids have unusable data.*\(strict=True\)"):
        split_half(dirty, strict=True)


def test_a_missing_trial_is_left_out():
    ds = make_store(60, 4, ncsnr=1.0, n_repetitions=3, n_times=2, seed=6)
    dirty = _set(ds, 3, 0, np.nan)
    with pytest.warns(DataQualityWarning, match=r"1 of 4 neuroids have missing \(NaN\) values: 1 in some presentations \('n00000'\)"):
        rel = split_half(dirty)
    clean = split_half(ds)
    assert np.isfinite(rel.values).all()
    assert np.abs(rel.values[0] - clean.values[0]).max() < 0.05  # one trial of 180 left out
    np.testing.assert_allclose(rel.values[1:], clean.values[1:], rtol=1e-12)


@pytest.mark.parametrize("snr", [0.0, 0.15])
def test_time_resolved_ceiling_stays_within_0_and_100(snr):
    # pure noise and low SNR: about half of the split-half correlations are negative
    ds = make_store(60, 20, ncsnr=snr, n_repetitions=2, n_times=5, n_test=30, seed=7)
    nc = noise_ceiling(ds)
    assert ((nc.values >= 0) & (nc.values <= 100)).all()
    assert (nc.values == 0).sum() >= 10  # the clip is active ...
    # ... on the split-averaged r: NC = 100 SB(max(r, 0)) = 100 max(SB(r), 0)
    rel = split_half(ds.na.split("test"), n_splits=10, seed=0)
    assert (rel.values < 0).sum() >= 10
    np.testing.assert_allclose(nc.values, 100 * np.clip(rel.values, 0, None), rtol=1e-12, atol=1e-12)
    assert nc.values.mean() < 20


def test_time_resolved_ceiling_high_snr_matches_known_reliability():
    true = np.array([1.0, 2.0])
    ds = make_store(800, 2, ncsnr=true, n_repetitions=4, n_times=2, n_test=800, seed=8)
    nc = noise_ceiling(ds)
    expected = 100 * true**2 / (true**2 + 1 / 4)
    # sd of one split's r (half-correlation rho) through Spearman-Brown: an upper bound
    rho = true**2 / (true**2 + 1 / 2)
    sd = 100 * (1 - rho**2) / np.sqrt(800) * 2 / (1 + rho) ** 2
    assert (np.abs(nc.values - expected[:, None]) < 4 * sd[:, None]).all()


def test_missing_trials_leave_half_averages_exact():
    # neuroid 0 has no trial noise: every half-average equals the stimulus's value whatever
    # the number of trials left in that half, so r = 1 exactly despite the missing trials
    ds = make_store(30, 2, ncsnr=1.0, n_repetitions=4, seed=10)
    resp = ds.responses.values.astype(np.float64)
    codes = np.unique(ds.stimulus_id.values, return_inverse=True)[1]
    resp[:, 0] = np.random.default_rng(0).standard_normal(30)[codes]
    resp[[0, 5, 9, 17, 40], 0] = np.nan
    dirty = ds.assign(responses=(ds.responses.dims, resp))
    with pytest.warns(DataQualityWarning, match="have missing"):
        rel = split_half(dirty, n_splits=5)
    np.testing.assert_allclose(rel.values[0], 1.0, rtol=1e-12)


def test_a_stimulus_missing_for_one_neuroid_is_left_out_of_its_correlation():
    ds = make_store(30, 3, ncsnr=0.8, n_repetitions=4, seed=11)
    last = np.sort(np.unique(ds.stimulus_id.values))[-1]  # last in the canonical order, so
    rows = ds.stimulus_id.values == last  # the other stimuli keep their random halves
    dirty = _set(ds, np.flatnonzero(rows), 1, np.nan)
    with pytest.warns(DataQualityWarning, match="have missing"):
        rel = split_half(dirty, n_splits=1)
    without = split_half(ds.isel(presentation=np.flatnonzero(~rows)), n_splits=1)
    np.testing.assert_allclose(rel.values[1], without.values[1], rtol=1e-12)
    np.testing.assert_allclose(rel.values[[0, 2]], split_half(ds, n_splits=1).values[[0, 2]], rtol=1e-12)


@pytest.mark.parametrize("n_times", [None, 2])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_neuroid_has_the_same_bits_alone_and_in_blocks_of_any_size(seed, n_times, monkeypatch):
    """Split-half r of each neuroid (and time point), computed alone, equals its value in
    blocks of 1, 2, 3, 5 or 11 rows (neuroids, or neuroid x time points) bit for bit, with
    NaN trials or not (a column-major block of two rows or more was once summed in another
    order)."""
    import warnings

    from neuroalign.store import _quality

    ds = make_store(31, 11, n_repetitions=3, n_test=10, n_times=n_times, seed=seed,
                    ncsnr=np.linspace(0.2, 2, 11), dtype=np.float64)
    rng = np.random.default_rng(seed)
    resp = ds.responses.values.copy()
    n = len(resp)
    for j in rng.choice(11, 4, replace=False):
        resp[rng.choice(n, rng.integers(1, 4), replace=False), j] = np.nan
    ds = ds.assign(responses=(ds.responses.dims, resp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        alone = np.concatenate([split_half(ds.isel(neuroid=[j]), n_splits=3).values
                                for j in range(11)])
        for rows in (1, 2, 3, 5, 11):
            monkeypatch.setattr(_quality, "BLOCK", rows * n)
            np.testing.assert_array_equal(split_half(ds, n_splits=3).values, alone,
                                          err_msg=f"blocks of {rows}")
