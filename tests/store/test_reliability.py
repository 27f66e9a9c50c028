"""ncsnr, noise ceilings and split-half reliability against known answers."""

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from neuroalign.exceptions import DimensionError
from neuroalign.store import ncsnr, noise_ceiling, split_half
from neuroalign.testing import make_store, ncsnr_sampling_sd


def test_ncsnr_recovers_true_value_within_sampling_error():
    true = np.linspace(0.3, 2.0, 40)
    ds = make_store(400, 40, ncsnr=true, n_repetitions=3, seed=1)
    est = ncsnr(ds)
    assert est.dims == ("neuroid",)
    z = (est.values - true) / ncsnr_sampling_sd(true, 400, 3)
    assert np.abs(z).max() < 4  # every neuroid within 4 sampling sd
    assert abs(z.mean()) < 4 / np.sqrt(len(true))  # no bias beyond sampling error
    assert np.corrcoef(est.values, true)[0, 1] > 0.98


def test_ncsnr_matches_hand_computation_of_nsd_definition():
    ds = make_store(30, 5, n_repetitions=3, n_sessions=2, seed=2)
    z = ds.responses.values.astype(float).copy()
    for s in np.unique(ds.session.values):
        m = ds.session.values == s
        z[m] = stats.zscore(z[m], axis=0)
    ids = ds.stimulus_id.values
    var = np.array([z[ids == i].var(axis=0, ddof=1) for i in np.unique(ids)])
    noise = var.mean(axis=0)  # balanced design: pooled == NSD's mean over images
    expected = np.sqrt(np.maximum(0, 1 - noise)) / np.sqrt(noise)
    np.testing.assert_allclose(ncsnr(ds).values, expected, rtol=1e-5)


def test_ncsnr_needs_repeats_and_trials():
    ds = make_store(10, 2, n_repetitions=1)
    with pytest.raises(ValueError, match="needs stimuli shown at least twice"):
        ncsnr(ds)
    with pytest.raises(DimensionError, match=r"ncsnr\(\) needs a trial-level store"):
        ncsnr(make_store(10, 2).na.average_repetitions())


def test_noise_ceiling_formula_and_mixed_repetitions():
    snr = np.array([0.0, 0.5, 1.0, 2.0, np.inf])
    nc = noise_ceiling(snr, 3)
    expected = np.append(100 * snr[:4] ** 2 / (snr[:4] ** 2 + 1 / 3), 100.0)
    np.testing.assert_allclose(nc, expected)
    # NSD's mixed form: A images with 3 reps, B with 2, C with 1
    A, B, C = 100, 30, 10
    mixed = noise_ceiling(snr[:4], {3: A, 2: B, 1: C})
    inv = (A / 3 + B / 2 + C / 1) / (A + B + C)
    np.testing.assert_allclose(mixed, 100 * snr[:4] ** 2 / (snr[:4] ** 2 + inv))
    per_image = [3] * A + [2] * B + [1] * C
    np.testing.assert_allclose(noise_ceiling(snr[:4], per_image), mixed)
    da = xr.DataArray(snr[:4], dims="neuroid")
    assert isinstance(noise_ceiling(da, 3), xr.DataArray)


def test_noise_ceiling_bad_n():
    with pytest.raises(ValueError, match=r"needs n= \(the number of trials averaged per image\)"):
        noise_ceiling([1.0])
    with pytest.raises(ValueError, match=r"Invalid value for 'n' in noise_ceiling\(\): 0. Expected a positive"):
        noise_ceiling([1.0], 0)
    with pytest.raises(ValueError, match=r"Expected a mapping \{repetitions: number of images\}"):
        noise_ceiling([1.0], {0: 3})


def test_noise_ceiling_of_store_uses_test_repetitions():
    true = np.linspace(0.3, 1.5, 20)
    ds = make_store(300, 20, ncsnr=true, n_test=60, seed=4)
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


def test_split_half_spearman_brown_recovers_reliability():
    true = np.array([0.3, 0.6, 1.0, 1.5])
    ds = make_store(300, 4, ncsnr=true, n_repetitions=4, n_times=3, seed=5)
    rel = split_half(ds, n_splits=20)
    assert rel.dims == ("neuroid", "time")
    expected = true**2 / (true**2 + 1 / 4)  # reliability of the 4-repetition mean
    np.testing.assert_allclose(rel.values, np.repeat(expected[:, None], 3, 1), atol=0.06)
    nc = noise_ceiling(ds, split=None)
    np.testing.assert_allclose(nc.values, 100 * np.clip(rel.values, 0, None), atol=8)
    with pytest.raises(ValueError, match="needs at least 3 stimuli with 2 or more repetitions"):
        split_half(make_store(5, 2, n_repetitions=1))
