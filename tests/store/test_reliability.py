"""ncsnr and noise ceilings: NSD's own recipe, known answers, invariances, dirty data."""

import warnings

import numpy as np
import pytest
import xarray as xr

from neuroalign.exceptions import DataFormatError, DataQualityWarning, DimensionError
from neuroalign.store import (
    ncsnr,
    noise_ceiling,
    open_store,
    repetition_counts,
    save_store,
    split_half,
)
from neuroalign.testing import make_store, ncsnr_sampling_sd

SEEDS = [0, 1, 2]  # every known-answer test below was also run once over seeds 0..19


def nsd_reference(resp, stim, session, *, ddof=1):
    """NSD's recipe written out independently: calczscore per session (sample sd), then
    the mean over images with >= 2 trials of the across-trial variance (N - 1)."""
    resp = np.asarray(resp, dtype=np.float64)
    z = np.empty_like(resp)
    for s in np.unique(session):
        rows = session == s
        z[rows] = (resp[rows] - resp[rows].mean(0)) / resp[rows].std(0, ddof=ddof)
    variances = [z[stim == i].var(0, ddof=1) for i in np.unique(stim) if (stim == i).sum() >= 2]
    noise_var = np.mean(variances, axis=0)
    return np.sqrt(np.maximum(0.0, 1.0 - noise_var)) / np.sqrt(noise_var)


def nsd_ceiling(snr, reps):
    """NSD's NC = 100 ncsnr² / (ncsnr² + (A/3 + B/2 + C/1)/(A + B + C)) written as counts."""
    reps = np.asarray(reps)
    a, b, c = (reps == 3).sum(), (reps == 2).sum(), (reps == 1).sum()
    assert a + b + c == len(reps)
    inv = (a / 3 + b / 2 + c / 1) / (a + b + c)
    return 100 * snr**2 / (snr**2 + inv)


def unequal_sessions(ds, sizes):
    session = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
    assert len(session) == ds.sizes["presentation"]
    return ds.assign_coords(session=("presentation", session))


def unbalanced(ds, seed):
    """Keep a random 1..3 repetitions of every stimulus (test images included)."""
    rng = np.random.default_rng(seed)
    keep_n = dict(zip(np.unique(ds.stimulus_id.values), rng.integers(1, 4, 10_000), strict=False))
    keep = [r < keep_n[s] for s, r in zip(ds.stimulus_id.values, ds.repetition.values, strict=True)]
    return ds.isel(presentation=np.flatnonzero(keep))


def designs():
    snr = np.linspace(0.1, 2.0, 12)
    base = make_store(60, 12, n_repetitions=3, n_test=20, ncsnr=snr, seed=3)
    yield "30 trials per session", make_store(40, 12, n_repetitions=3, n_sessions=4, ncsnr=snr, seed=4)
    yield "unequal sessions", unequal_sessions(base, [7, 50, 13, 60, 50])
    yield "unbalanced repetitions", unbalanced(make_store(60, 12, n_repetitions=3, n_test=20,
                                                          ncsnr=snr, seed=5), seed=5)
    yield "3-6 trials per session", unequal_sessions(base, [3, 4, 5, 6] * 10)
    yield "time-resolved", make_store(30, 4, n_repetitions=2, n_times=3, ncsnr=snr[:4], seed=6)


DESIGNS = list(designs())


@pytest.mark.parametrize("name,ds", DESIGNS, ids=[n for n, _ in DESIGNS])
def test_ncsnr_and_ceiling_match_independent_nsd_reference(name, ds):
    resp = ds.responses.transpose("presentation", ...).values
    ref = nsd_reference(resp, ds.stimulus_id.values, ds.session.values)
    np.testing.assert_allclose(ncsnr(ds).values, ref, rtol=1e-10, atol=1e-12)
    assert ncsnr(ds).dtype == np.float64
    test_ids = ds.stimulus_id.values[ds.split.values == "test"]
    reps = np.unique(test_ids, return_counts=True)[1]
    nc = noise_ceiling(ds, reps) if "time" in ds.dims else noise_ceiling(ds)  # time: split-half
    np.testing.assert_allclose(nc.values, nsd_ceiling(ref, reps), rtol=1e-10, atol=1e-12)
    ref0 = nsd_reference(resp, ds.stimulus_id.values, ds.session.values, ddof=0)
    np.testing.assert_allclose(ncsnr(ds, ddof=0).values, ref0, rtol=1e-10, atol=1e-12)


def test_population_sd_is_a_named_option_and_differs_on_short_sessions():
    ds = make_store(100, 50, n_repetitions=3, n_sessions=10, ncsnr=np.linspace(0.05, 3, 50), seed=0)
    nsd, pop = noise_ceiling(ds, 3), noise_ceiling(ds, 3, ddof=0)
    assert ncsnr(ds).attrs["zscore_ddof"] == 1 and ncsnr(ds, ddof=0).attrs["zscore_ddof"] == 0
    # 30 trials per session: the population sd lowers the ceiling by up to ~9 points
    assert 7 < float((nsd - pop).max()) < 11 and float((nsd - pop).min()) >= 0
    with pytest.raises(ValueError, match=r"Invalid value for 'ddof' in ncsnr\(\): 2. Expected one of 1, 0"):
        ncsnr(ds, ddof=2)


@pytest.mark.parametrize("seed", SEEDS)
def test_ncsnr_recovers_true_value_within_sampling_error(seed):
    true = np.linspace(0.3, 2.0, 40)
    ds = make_store(400, 40, ncsnr=true, n_repetitions=3, seed=seed)
    est = ncsnr(ds)
    assert est.dims == ("neuroid",)
    z = (est.values - true) / ncsnr_sampling_sd(true, 400, 3)
    assert np.abs(z).max() < 4  # every neuroid within 4 sampling sd
    assert abs(z.mean()) < 4 / np.sqrt(len(true))  # no bias beyond sampling error
    assert np.corrcoef(est.values, true)[0, 1] > 0.98


@pytest.mark.parametrize("seed", SEEDS)
def test_noise_ceiling_of_store_uses_test_repetitions(seed):
    true = np.linspace(0.3, 1.5, 20)
    ds = make_store(300, 20, ncsnr=true, n_test=60, seed=seed)
    nc = noise_ceiling(ds)
    assert nc.name == "noise_ceiling" and nc.dims == ("neuroid",)
    true_nc = 100 * true**2 / (true**2 + 1 / 3)
    # propagate the ncsnr sampling sd through NC(s) = 100 s²/(s² + 1/3)
    sd = ncsnr_sampling_sd(true, 300, 3) * 100 * 2 * true * (1 / 3) / (true**2 + 1 / 3) ** 2
    assert (np.abs(nc.values - true_nc) < 4 * sd).all()
    # drop one repetition of half the test images: the mixed form must be used
    test_ids = np.unique(ds.stimulus_id.values[ds.split.values == "test"])
    drop = np.isin(ds.stimulus_id.values, test_ids[:30]) & (ds.repetition.values == 2)
    mixed = ds.isel(presentation=np.flatnonzero(~drop))
    assert nc.attrs["n_inverse"] == pytest.approx(1 / 3)
    assert noise_ceiling(mixed).attrs["n_inverse"] == pytest.approx((30 / 2 + 30 / 3) / 60)
    # a published ncsnr variable takes precedence over estimation
    pub = ds.assign(ncsnr=("neuroid", np.full(20, 1.0, dtype=np.float32)))
    np.testing.assert_allclose(noise_ceiling(pub).values, 100 * 1 / (1 + 1 / 3), rtol=1e-6)


def test_noise_ceiling_with_three_two_and_one_repetitions():
    ds = make_store(90, 6, n_repetitions=3, n_test=30, ncsnr=np.linspace(0.3, 1.5, 6), seed=7)
    test_ids = np.unique(ds.stimulus_id.values[ds.split.values == "test"])
    # test images: A = 10 with 3 repetitions, B = 12 with 2, C = 8 with 1
    keep_n = dict(zip(test_ids, [3] * 10 + [2] * 12 + [1] * 8, strict=True))
    keep = [r < keep_n.get(s, 3) for s, r in zip(ds.stimulus_id.values, ds.repetition.values, strict=True)]
    mixed = ds.isel(presentation=np.flatnonzero(keep))
    np.testing.assert_array_equal(np.sort(repetition_counts(mixed)), np.sort([3] * 10 + [2] * 12 + [1] * 8))
    nc = noise_ceiling(mixed)
    inv = (10 / 3 + 12 / 2 + 8 / 1) / 30
    assert nc.attrs["n_inverse"] == pytest.approx(inv, rel=1e-12)
    snr = ncsnr(mixed).values
    np.testing.assert_allclose(nc.values, 100 * snr**2 / (snr**2 + inv), rtol=1e-12)
    np.testing.assert_allclose(nc.values, noise_ceiling(snr, {3: 10, 2: 12, 1: 8}), rtol=1e-12)


def test_row_order_and_units_do_not_change_ncsnr_or_ceiling():
    ds = unequal_sessions(make_store(60, 8, n_repetitions=3, n_test=20, seed=8), [20, 70, 90])
    ds = ds.assign(responses=ds.responses.astype(np.float64))
    perm = np.random.default_rng(0).permutation(ds.sizes["presentation"])
    shuffled = ds.isel(presentation=perm)
    np.testing.assert_allclose(ncsnr(shuffled).values, ncsnr(ds).values, rtol=1e-12)
    np.testing.assert_allclose(noise_ceiling(shuffled).values, noise_ceiling(ds).values, rtol=1e-12)
    tiny = ds.assign(responses=ds.responses * 1e-13)
    np.testing.assert_allclose(ncsnr(tiny).values, ncsnr(ds).values, rtol=1e-10)
    np.testing.assert_allclose(noise_ceiling(tiny).values, noise_ceiling(ds).values, rtol=1e-10)


def test_dask_backed_store_gives_the_same_values(tmp_path):
    ds = make_store(30, 6, n_repetitions=3, n_times=2, seed=9)
    lazy = open_store(save_store(ds, tmp_path / "s.zarr", neuroid_chunk=2), chunks=2)
    np.testing.assert_array_equal(ncsnr(lazy).values, ncsnr(ds).values)
    np.testing.assert_array_equal(split_half(lazy).values, split_half(ds).values)
    np.testing.assert_array_equal(noise_ceiling(lazy).values, noise_ceiling(ds).values)


def test_noise_ceiling_formula_and_mixed_repetitions():
    snr = np.array([0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(noise_ceiling(snr, 3), 100 * snr**2 / (snr**2 + 1 / 3))
    A, B, C = 100, 30, 10  # NSD's mixed form: A images with 3 reps, B with 2, C with 1
    mixed = noise_ceiling(snr, {3: A, 2: B, 1: C})
    np.testing.assert_allclose(mixed, 100 * snr**2 / (snr**2 + (A / 3 + B / 2 + C / 1) / (A + B + C)))
    np.testing.assert_allclose(noise_ceiling(snr, [3] * A + [2] * B + [1] * C), mixed)
    nc = noise_ceiling(xr.DataArray(snr, dims="neuroid"), 3)
    assert isinstance(nc, xr.DataArray) and nc.name == "noise_ceiling"


def test_noise_ceiling_of_any_finite_ncsnr_is_within_0_and_100():
    """NC = 100 s² / (s² + 1/n) without forming s²: s above ~1.3e154 once overflowed it to
    inf (a NaN or inf ceiling, without a warning). A huge ncsnr gives 100, 0 gives 0."""
    tiny = np.finfo(np.float64).smallest_subnormal
    huge = np.finfo(np.float64).max
    snr = np.array([0.0, tiny, 1e-200, 1e-8, 0.3, 1.0, 2.5, 1e6, 1.3e154, 1e200, huge])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow notes and DataQualityWarning alike
        for n in (1, 3, {3: 10, 2: 12, 1: 8}):
            nc = noise_ceiling(snr, n)
            assert ((nc >= 0) & (nc <= 100)).all(), nc
            assert nc[0] == 0.0 and (nc[-3:] == 100.0).all()
            assert (np.diff(nc) >= 0).all()  # increasing in the ncsnr
            ordinary = slice(3, 8)
            np.testing.assert_allclose(nc[ordinary], nsd_ceiling(snr[ordinary], [3]) if n == 3 else
                                       100 * snr[ordinary] ** 2 / (snr[ordinary] ** 2 + _inv(n)),
                                       rtol=1e-15, atol=0)  # to rounding (<= 4 ulp)
        for s in np.geomspace(1e-160, 1e300, 200):
            assert 0.0 <= noise_ceiling([s], 3)[0] <= 100.0
        pub = make_store(12, 3, n_repetitions=3, seed=0).assign(ncsnr=("neuroid", [1e200, 1e154, 0.0]))
        np.testing.assert_array_equal(noise_ceiling(pub).values, [100.0, 100.0, 0.0])
        assert noise_ceiling(1e300, 3) == 100.0


def _inv(n):
    if isinstance(n, dict):
        return sum(c / r for r, c in n.items()) / sum(n.values())
    return 1 / n


def test_noise_ceiling_bad_n_and_split():
    with pytest.raises(ValueError, match=r"needs n= \(the number of trials averaged per image\)"):
        noise_ceiling([1.0])
    with pytest.raises(ValueError, match=r"Invalid value for 'n' in noise_ceiling\(\): 0. Expected a positive"):
        noise_ceiling([1.0], 0)
    with pytest.raises(ValueError, match=r"Expected a mapping \{repetitions: number of images\}"):
        noise_ceiling([1.0], {0: 3})
    with pytest.raises(ValueError, match=r"Invalid value for 'split' in noise_ceiling\(\): 'val'"):
        noise_ceiling(make_store(10, 2), split="val")


def test_repetition_counts():
    ds = make_store(12, 2, n_repetitions=3, n_test=4, seed=1)
    ds = ds.isel(presentation=np.flatnonzero(~((ds.stimulus_id.values == "stim-0000") & (ds.repetition.values == 0))))
    counts = dict(zip(*np.unique(ds.stimulus_id.values[ds.split.values == "test"], return_counts=True), strict=True))
    first = list(dict.fromkeys(ds.stimulus_id.values[ds.split.values == "test"]))
    np.testing.assert_array_equal(repetition_counts(ds), [counts[s] for s in first])
    assert sorted(repetition_counts(ds, "train")) == [3] * 8
    assert sorted(repetition_counts(ds, None)) == [2] + [3] * 11
    av = ds.na.average_repetitions()
    assert sorted(repetition_counts(av)) == [2, 3, 3, 3]
    with pytest.raises(DimensionError, match="no 'n_repetitions' coordinate; pass n= explicitly"):
        repetition_counts(av.drop_vars("n_repetitions"))
    with pytest.raises(ValueError, match=r"Invalid value for 'split' in repetition_counts\(\): 'val'"):
        repetition_counts(ds, "val")


def test_ncsnr_needs_repeats_trials_and_groups():
    with pytest.raises(ValueError, match="needs stimuli shown at least twice"):
        ncsnr(make_store(10, 2, n_repetitions=1))
    with pytest.raises(DimensionError, match=r"ncsnr\(\) needs a trial-level store"):
        ncsnr(make_store(10, 2).na.average_repetitions())
    ds = make_store(10, 2, n_repetitions=3)
    with pytest.raises(KeyError, match=r"ncsnr\(by='run'\): the store has no coordinate 'run'"):
        ncsnr(ds, by="run")
    lone = unequal_sessions(ds, [1, 14, 15])
    with pytest.raises(ValueError, match=r"at least 2 presentations per group; session 0 hold 1"):
        ncsnr(lone)
    # without a session coordinate the default z-scores over all presentations
    no_session = ds.drop_vars("session")
    resp = no_session.responses.values
    np.testing.assert_allclose(ncsnr(no_session).values, nsd_reference(
        resp, ds.stimulus_id.values, np.zeros(len(resp))), rtol=1e-10)
    assert ncsnr(no_session).attrs["zscored_by"] == "None"



@pytest.mark.parametrize("n_neuroids", [60, 7, 61])
def test_by_must_name_a_coordinate_on_presentation(n_neuroids):
    """A coordinate on 'neuroid' (or on both dims) is not a grouping of the presentations:
    every function that z-scores by it names it, whether or not its length happens to be
    the number of presentations (60 here: it was once used as session groups)."""
    from neuroalign.store import zscore

    ds = make_store(20, n_neuroids, n_repetitions=3, seed=0, dtype=np.float64)
    hemi = np.where(np.arange(n_neuroids) < n_neuroids // 2, "L", "R")
    ds = ds.assign_coords(hemi=("neuroid", hemi),
                          both=(("presentation", "neuroid"), np.zeros((60, n_neuroids), dtype=int)))
    calls = {
        "ncsnr": lambda by: ncsnr(ds, by=by),
        "noise_ceiling": lambda by: noise_ceiling(ds, by=by),
        "zscore": lambda by: zscore(ds, by=by),
    }
    for func, call in calls.items():
        for by, dims in (("hemi", r"\('neuroid',\)"), ("both", r"\('presentation', 'neuroid'\)")):
            with pytest.raises(KeyError, match=rf"{func}\(by='{by}'\): the store has no coordinate "
                               rf"'{by}' on dim 'presentation' \(it is on dims {dims}\). Coordinates on "
                               r"'presentation': .*'session'.*Use by=None"):
                call(by)
    for method in ("ncsnr", "noise_ceiling", "zscore"):  # the accessor too
        with pytest.raises(KeyError, match=rf"{method}\(by='hemi'\)"):
            getattr(ds.na, method)(by="hemi")
    # a coordinate on presentation is used, and the default falls back without a session
    np.testing.assert_array_equal(ncsnr(ds, by="session").values, ncsnr(ds).values)
    np.testing.assert_array_equal(noise_ceiling(ds.drop_vars("session")).values,
                                  noise_ceiling(ds, by=None).values)


# -- dirty data -------------------------------------------------------------------------


@pytest.fixture
def clean():
    return make_store(40, 8, n_repetitions=3, n_test=12, ncsnr=np.linspace(0.3, 1.5, 8), seed=9)


def _set(ds, rows, neuroid, value):
    resp = ds.responses.values.copy()
    resp[rows, neuroid] = value
    return ds.assign(responses=(ds.responses.dims, resp))


def test_dead_neuroids_are_nan_and_named(clean):
    n = clean.sizes["presentation"]
    dirty = _set(clean, slice(None), 1, 3.0)  # constant
    dirty = _set(dirty, 5, 3, np.inf)  # one infinite trial
    dirty = _set(dirty, slice(None), 4, np.nan)  # never measured
    dirty = _set(dirty, np.flatnonzero(clean.session.values == 1), 6, 0.0)  # zero in one session
    with pytest.warns(DataQualityWarning) as rec:
        snr = ncsnr(dirty)
    msg = str(rec[0].message)
    assert "ncsnr(): 4 of 8 neuroids have unusable data" in msg
    assert "2 constant within a session ('n00001', 'n00006')" in msg
    assert "1 with infinite values ('n00003')" in msg
    assert "1 without any stimulus left with 2 finite repetitions ('n00004')" in msg
    bad = [1, 3, 4, 6]
    assert np.isnan(snr.values[bad]).all() and np.isfinite(np.delete(snr.values, bad)).all()
    np.testing.assert_allclose(np.delete(snr.values, bad), np.delete(ncsnr(clean).values, bad), rtol=1e-12)
    with pytest.warns(DataQualityWarning, match="ncsnr"):
        nc = noise_ceiling(dirty)
    assert np.isnan(nc.values[bad]).all() and (nc.values[np.isfinite(nc.values)] < 100).all()
    with pytest.raises(DataFormatError, match=r"4 of 8 neuroids have unusable data.*\(strict=True\)"):
        ncsnr(dirty, strict=True)
    assert n == dirty.sizes["presentation"]


def test_identical_repetitions_are_flagged_not_inf(clean):
    resp = clean.responses.values.copy()
    for s in np.unique(clean.stimulus_id.values):  # copy the first trial into every repetition
        rows = np.flatnonzero(clean.stimulus_id.values == s)
        resp[rows, 2] = resp[rows[0], 2]
    dup = clean.assign(session=("presentation", np.zeros(len(resp), dtype=np.int64)),
                       responses=(clean.responses.dims, resp))
    with pytest.warns(DataQualityWarning, match=r"1 identical across repetitions \(zero noise variance\) \('n00002'\)"):
        snr = ncsnr(dup)
    assert np.isnan(snr.values[2]) and np.isfinite(np.delete(snr.values, 2)).all()


def test_a_missing_trial_is_left_out_for_that_neuroid(clean):
    row = int(np.flatnonzero(clean.split.values == "train")[4])
    dirty = _set(clean, row, 2, np.nan)
    with pytest.warns(DataQualityWarning, match=r"1 of 8 neuroids have missing \(NaN\) values: 1 in some presentations \('n00002'\). Those presentations were left out"):
        snr = ncsnr(dirty)
    dropped = clean.isel(presentation=np.flatnonzero(np.arange(clean.sizes["presentation"]) != row))
    np.testing.assert_allclose(snr.values[2], ncsnr(dropped).values[2], rtol=1e-12)
    np.testing.assert_allclose(np.delete(snr.values, 2), np.delete(ncsnr(clean).values, 2), rtol=1e-12)
    # a dropped trial (the whole row NaN) is the same as dropping the presentation
    with pytest.warns(DataQualityWarning, match="8 of 8 neuroids have missing"):
        whole = ncsnr(_set(clean, row, slice(None), np.nan))
    np.testing.assert_allclose(whole.values, ncsnr(dropped).values, rtol=1e-12)
    with pytest.raises(DataFormatError, match=r"have missing \(NaN\) values.*\(strict=True\)"):
        ncsnr(dirty, strict=True)


def test_a_lone_value_in_a_session_is_left_out(clean):
    # neuroid 2 keeps one finite value in session 1: it cannot be z-scored there, so the
    # result is that of the store without session 1 (for that neuroid)
    rows = np.flatnonzero(clean.session.values == 1)
    dirty = _set(clean, rows[1:], 2, np.nan)
    with pytest.warns(DataQualityWarning, match="have missing"):
        snr = ncsnr(dirty)
    without = clean.isel(presentation=np.flatnonzero(clean.session.values != 1))
    np.testing.assert_allclose(snr.values[2], ncsnr(without).values[2], rtol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_each_neuroid_by_its_own_values_whatever_its_block(seed, monkeypatch):
    """A neuroid's ncsnr does not depend on what the other neuroids of its block hold (a
    NaN, an infinite value) nor on how many share the block: rows without missing values
    take the fast path, the others the masked one, row by row, bit for bit."""
    from neuroalign.store import _quality

    ds = make_store(45, 9, n_repetitions=3, n_test=15, ncsnr=np.linspace(0.2, 2, 9), seed=seed)
    rng = np.random.default_rng(seed)
    ds = ds.isel(presentation=rng.permutation(ds.sizes["presentation"]))  # sessions interleaved
    clean = ncsnr(ds).values
    dirty = _set(_set(ds, 7, 3, np.nan), 11, 5, np.inf)
    with pytest.warns(DataQualityWarning):
        snr = ncsnr(dirty).values
    keep = [0, 1, 2, 4, 6, 7, 8]
    np.testing.assert_array_equal(snr[keep], clean[keep])
    assert np.isnan(snr[5]) and np.isfinite(snr[3])
    for rows in (1, 2, 4):  # blocks of 1, 2 and 4 neuroids
        monkeypatch.setattr(_quality, "BLOCK", rows * ds.sizes["presentation"])
        np.testing.assert_array_equal(ncsnr(ds).values, clean)
        with pytest.warns(DataQualityWarning):
            np.testing.assert_array_equal(ncsnr(dirty).values, snr)


def missing_trials(ds, seed):
    """``ds`` with dirty neuroids where ``seed`` puts them: one NaN trial, two, a whole
    session, the first and the last trial, an infinite value."""
    rng = np.random.default_rng(seed)
    resp = ds.responses.values.copy()
    n = len(resp)
    a, b, c, d, e = rng.choice(resp.shape[1], 5, replace=False)
    resp[rng.integers(n), a] = np.nan
    resp[rng.choice(n, 2, replace=False), b] = np.nan
    resp[ds.session.values == rng.integers(3), c] = np.nan
    resp[[0, n - 1], d] = np.nan
    resp[rng.integers(n), e] = np.inf
    return ds.assign(responses=(ds.responses.dims, resp))


@pytest.mark.parametrize("order", ["sessions in turn", "sessions interleaved"])
@pytest.mark.parametrize("seed", SEEDS)
def test_a_neuroid_has_the_same_bits_alone_and_in_blocks_of_any_size(seed, order, monkeypatch):
    """ncsnr of each neuroid, computed alone, equals its value in blocks of 1, 2, 3, 5 or
    all 13 neuroids bit for bit, with NaN trials anywhere (fancy indexing once gave a
    column-major block of two or more rows, whose row sums numpy takes in another order)."""
    from neuroalign.store import _quality

    ds = make_store(31, 13, n_repetitions=3, n_test=10, ncsnr=np.linspace(0.2, 2, 13), seed=seed,
                    dtype=(np.float32, np.float64)[seed % 2])
    ds = unbalanced(ds, seed)  # 1 to 3 repetitions per stimulus: several count classes
    if order == "sessions interleaved":
        ds = ds.isel(presentation=np.random.default_rng(seed).permutation(ds.sizes["presentation"]))
    ds = missing_trials(ds, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        alone = np.concatenate([ncsnr(ds.isel(neuroid=[j])).values for j in range(13)])
        assert np.isfinite(alone).sum() == 12
        for rows in (1, 2, 3, 5, 13):
            monkeypatch.setattr(_quality, "BLOCK", rows * ds.sizes["presentation"])
            np.testing.assert_array_equal(ncsnr(ds).values, alone, err_msg=f"blocks of {rows}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0.0, 1e-13, 123.456, 1e6 + 0.1])
def test_constant_within_a_session_at_any_offset_and_a_single_ulp_is_not(clean, offset, dtype):
    """Constant within one session is found exactly at any level (0, units of 1e-13, a mean
    of 1e6; in float64 the mean of 123.456 repeated 40 times is not 123.456); values one step of the
    dtype apart there are not constant."""
    rows = np.flatnonzero(clean.session.values == 1)
    level = dtype(offset)
    clean = clean.assign(responses=clean.responses.astype(dtype))
    const = _set(clean.assign(responses=clean.responses + level), rows, 2, level)
    with pytest.warns(DataQualityWarning, match=r"1 constant within a session \('n00002'\)"):
        snr = ncsnr(const)
    assert np.isnan(snr.values[2]) and np.isfinite(np.delete(snr.values, 2)).all()
    step = np.full(len(rows), level, dtype=dtype)
    step[::2] = np.nextafter(level, dtype(np.inf))  # one step above the rest
    near = _set(clean.assign(responses=clean.responses + level), rows, 2, step)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        assert np.isfinite(ncsnr(near).values).all()


def test_published_ncsnr_with_nan_or_inf_gives_nan_ceiling(clean):
    pub = clean.assign(ncsnr=("neuroid", np.array([1, np.nan, 1, np.inf, 1, -0.5, 1, 1], dtype=np.float32)))
    with pytest.warns(DataQualityWarning, match=r"noise_ceiling\(\): 3 of 8 neuroids have an unusable ncsnr: "
                      r"1 with NaN ncsnr \('n00001'\); 1 with infinite ncsnr \('n00003'\); 1 with negative "
                      r"ncsnr \('n00005'\). Their noise ceiling is NaN"):
        nc = noise_ceiling(pub)
    assert np.isnan(nc.values[[1, 3, 5]]).all()
    np.testing.assert_allclose(np.delete(nc.values, [1, 3, 5]), 75.0, rtol=1e-6)
    with pytest.warns(DataQualityWarning, match=r"1 with infinite ncsnr \(0\)"):
        assert np.isnan(noise_ceiling([np.inf, 1.0], 3)[0])
    with pytest.raises(DataFormatError, match="NaN ncsnr"):
        noise_ceiling(pub, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        noise_ceiling(clean)  # clean data: no warning
