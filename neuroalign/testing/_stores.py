"""Small synthetic stores with a known answer."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign.store._schema import SCHEMA_VERSION, check_store

__all__ = ["make_store", "assert_store_equal", "ncsnr_sampling_sd"]


def make_store(
    n_stimuli: int = 40,
    n_neuroids: int = 30,
    *,
    n_repetitions: int = 3,
    n_test: int = 8,
    ncsnr: float | np.ndarray = 1.0,
    n_sessions: int = 3,
    n_times: int | None = None,
    rois: dict[str, np.ndarray] | None = None,
    seed: int = 0,
    dtype=np.float32,
    return_signal: bool = False,
) -> xr.Dataset | tuple[xr.Dataset, xr.DataArray]:
    """A trial-level store with known signal and noise.

    Each neuroid's signal has unit variance across stimuli; trial noise has standard
    deviation ``1 / ncsnr``, so the true ncsnr is ``ncsnr`` (scalar or one value per
    neuroid). Presentations are shuffled and spread over ``n_sessions`` sessions. With
    ``n_times``, responses get a ``time`` dim (signal identical at every time point).
    The store carries ``true_ncsnr`` on ``neuroid``; with ``return_signal=True`` the true
    signal is also returned, as a DataArray with dims ``('stimulus', 'neuroid')``.

    Parameters
    ----------
    n_stimuli, n_neuroids : int
        Sizes.
    n_repetitions : int
        Presentations of every stimulus.
    n_test : int
        Stimuli in the test split (the first ``n_test`` ids).
    ncsnr : float or ndarray
        True ncsnr, scalar or per neuroid (0: pure noise).
    n_sessions : int
        Sessions the presentations are spread over.
    n_times : int, optional
        Time points (MEG/EEG-like store).
    rois : dict of str to bool array, optional
        ROI masks over neuroids.
    seed : int
        Seed of signal, noise and order.
    dtype : numpy dtype
        Dtype of ``responses``.
    return_signal : bool
        Also return the true signal.

    Returns
    -------
    xr.Dataset or (xr.Dataset, xr.DataArray)
        The store, and with ``return_signal`` the true signal.
    """
    rng = np.random.default_rng(seed)
    snr = np.broadcast_to(np.asarray(ncsnr, dtype=float), (n_neuroids,)).copy()
    stim = np.array([f"stim-{i:04d}" for i in range(n_stimuli)])
    signal = rng.standard_normal((n_stimuli, n_neuroids))
    signal = (signal - signal.mean(0)) / signal.std(0)
    order = rng.permutation(np.repeat(np.arange(n_stimuli), n_repetitions))
    rep = np.zeros(len(order), dtype=np.int64)
    seen: dict[int, int] = {}
    for t, s in enumerate(order):
        rep[t] = seen.get(s, 0)
        seen[s] = rep[t] + 1
    noise_sd = np.where(snr > 0, 1.0 / np.where(snr > 0, snr, 1.0), 1e6)
    shape = (len(order), n_neuroids) + ((n_times,) if n_times else ())
    noise = rng.standard_normal(shape)
    if n_times:
        data = signal[order][:, :, None] + noise * noise_sd[None, :, None]
    else:
        data = signal[order] + noise * noise_sd[None, :]
    split = np.where(np.isin(order, np.arange(n_test)), "test", "train")
    session = (np.arange(len(order)) * n_sessions // len(order)).astype(np.int64)
    dims = ("presentation", "neuroid") + (("time",) if n_times else ())
    coords: dict = {
        "stimulus_id": ("presentation", stim[order]),
        "repetition": ("presentation", rep),
        "session": ("presentation", session),
        "trial": ("presentation", np.arange(len(order), dtype=np.int64)),
        "split": ("presentation", split),
        "neuroid_id": ("neuroid", np.array([f"n{i:05d}" for i in range(n_neuroids)])),
        "subject": ("neuroid", np.array(["sub-01"] * n_neuroids)),
    }
    if n_times:
        coords["time"] = ("time", np.linspace(-0.1, 0.1 * (n_times - 2), n_times))
    for name, mask in (rois or {}).items():
        coords[f"roi_{name}"] = ("neuroid", np.asarray(mask, dtype=bool))
    ds = xr.Dataset(
        {
            "responses": (dims, data.astype(dtype)),
            "true_ncsnr": ("neuroid", snr),
        },
        coords=coords,
        attrs={
            "dataset": "synthetic",
            "space": "none",
            "units": "a.u.",
            "schema_version": SCHEMA_VERSION,
        },
    )
    check_store(ds)
    if return_signal:
        sig = xr.DataArray(
            signal.astype(dtype),
            dims=("stimulus", "neuroid"),
            coords={"stimulus_id": ("stimulus", stim), "neuroid_id": coords["neuroid_id"]},
            name="signal",
        )
        return ds, sig
    return ds


def assert_store_equal(a: xr.Dataset, b: xr.Dataset, *, rtol: float = 0, atol: float = 0) -> None:
    """Assert two stores are identical (exactly, or values within tolerances).

    Parameters
    ----------
    a, b : xr.Dataset
        The stores.
    rtol, atol : float
        Tolerances on values (0 and 0: identical, attrs included).

    Raises
    ------
    AssertionError
        They differ.
    """
    if rtol == 0 and atol == 0:
        xr.testing.assert_identical(a, b)
    else:
        xr.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
        assert a.attrs == b.attrs, f"attrs differ: {a.attrs} != {b.attrs}"


def ncsnr_sampling_sd(ncsnr, n_images: int, n_repetitions: int) -> np.ndarray:
    """Approximate sampling sd of the NSD ncsnr estimate (delta method).

    With z-scored responses the noise fraction is ``f = 1 / (1 + ncsnr²)``; its pooled
    estimate over ``n_images * (n_repetitions - 1)`` degrees of freedom has sd
    ``f * sqrt(2 / dof)``, and ``ncsnr = sqrt((1 - f) / f)`` moves by
    ``sd_f / (2 f² ncsnr)``.

    Parameters
    ----------
    ncsnr : float or array-like
        True ncsnr.
    n_images : int
        Stimuli with repetitions.
    n_repetitions : int
        Repetitions of each.

    Returns
    -------
    ndarray
        The approximate standard deviation of the estimate.
    """
    s = np.asarray(ncsnr, dtype=float)
    f = 1.0 / (1.0 + s**2)
    dof = n_images * (n_repetitions - 1)
    return f * np.sqrt(2.0 / dof) / (2 * f**2 * np.maximum(s, 1e-6))
