"""Reliability from repetitions: ncsnr, noise ceilings, split-half (Spearman-Brown)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from neuroalign._validation import check_positive_int, format_list
from neuroalign.exceptions import DimensionError
from neuroalign.store._ops import _group_matrix, apply_along, select_split, stimulus_codes
from neuroalign.store._schema import (
    RESPONSE_VAR,
    STIMULUS_DIM,
    TIME_DIM,
    TRIAL_DIM,
    check_store,
    sample_dim,
)

__all__ = ["ncsnr", "noise_ceiling", "split_half", "repetition_counts"]


def _require_trials(ds: xr.Dataset, func: str) -> None:
    check_store(ds)
    if sample_dim(ds) != TRIAL_DIM:
        raise DimensionError(
            f"{func}() needs a trial-level store (dim 'presentation') with repetitions; "
            "this store is averaged (dim 'stimulus')."
        )


def ncsnr(ds: xr.Dataset, *, by: str | None = "session") -> xr.DataArray:
    """Noise-ceiling signal-to-noise ratio per neuroid, NSD's definition.

    Responses are z-scored per neuroid within each ``by`` group (NSD: per session). The
    noise variance is the variance across repetitions of each stimulus, pooled over all
    stimuli with at least two repetitions (for a balanced design this is NSD's mean over
    images); ``signal_var = max(0, 1 - noise_var)`` and
    ``ncsnr = sqrt(signal_var) / sqrt(noise_var)``.

    Parameters
    ----------
    ds : xr.Dataset
        Trial-level store. ``by`` falls back to ``None`` when the store has no such
        coordinate.
    by : str or None
        Grouping coordinate for z-scoring.

    Returns
    -------
    xr.DataArray
        dims ``('neuroid',)`` (``('neuroid', 'time')`` for time-resolved stores), named
        ``"ncsnr"``.
    """
    _require_trials(ds, "ncsnr")
    if by is not None and by not in ds.coords:
        by = None
    _, codes = stimulus_codes(ds.coords["stimulus_id"].values)
    n_stim = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=n_stim)
    if (counts >= 2).sum() == 0:
        raise ValueError(
            "ncsnr() needs stimuli shown at least twice; every stimulus_id in this store "
            "has a single presentation."
        )
    if by is None:
        groups = np.zeros(len(codes), dtype=int)
    else:
        _, groups = stimulus_codes(ds.coords[by].values)
    group_rows = [np.flatnonzero(groups == g) for g in range(int(groups.max()) + 1)]
    mean_m = _group_matrix(codes, n_stim, mean=True)
    dof = float((counts[counts >= 2] - 1).sum())
    weight = (counts >= 2)[codes].astype(np.float64)

    def noise_var(x: np.ndarray) -> np.ndarray:
        # z-score per group, then pooled across-repetition variance, fused and blocked
        # over neuroids so memory stays at a few blocks of (block, n_presentations).
        flat = x.reshape(-1, x.shape[-1])
        out = np.empty(flat.shape[0])
        block = max(1, 2**21 // max(flat.shape[1], 1))
        for start in range(0, flat.shape[0], block):
            xb = flat[start : start + block].astype(np.float64)
            for rows in group_rows:
                part = xb[:, rows]
                sd = part.std(axis=1, keepdims=True)
                xb[:, rows] = (part - part.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
            means = (mean_m @ xb.T).T
            xb -= means[:, codes]
            xb *= xb
            out[start : start + block] = xb @ weight / dof
        return out.reshape(*x.shape[:-1], 1)

    nv = apply_along(ds[RESPONSE_VAR], noise_var, TRIAL_DIM, "_one", 1).isel(_one=0, drop=True)
    nv = nv.drop_vars([c for c in nv.coords if TRIAL_DIM in nv[c].dims], errors="ignore")
    sv = np.maximum(0.0, 1.0 - nv)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.sqrt(sv) / np.sqrt(nv)
    out = out.where(nv > 0, np.inf).astype(np.float32)
    out.name = "ncsnr"
    out.attrs = {"long_name": "noise-ceiling SNR (NSD definition)", "zscored_by": str(by)}
    return out


def repetition_counts(ds: xr.Dataset, split: str | None = "test") -> np.ndarray:
    """Number of repetitions of each stimulus of ``split`` (all stimuli if ``None`` or absent)."""
    if split is not None and split in set(np.asarray(ds.coords["split"].values).tolist()):
        ds = select_split(ds, split)
    if sample_dim(ds) == STIMULUS_DIM:
        if "n_repetitions" not in ds.coords:
            raise DimensionError(
                "This averaged store has no 'n_repetitions' coordinate; pass n= explicitly."
            )
        return np.asarray(ds.coords["n_repetitions"].values, dtype=int)
    _, codes = stimulus_codes(ds.coords["stimulus_id"].values)
    return np.bincount(codes)


def _inverse_n(n) -> float:
    """Mean of 1/n_i over the averaged images: NSD's (A/3 + B/2 + C/1)/(A + B + C)."""
    if isinstance(n, Mapping):
        reps = np.array(list(n.keys()), dtype=float)
        num = np.array(list(n.values()), dtype=float)
        if (reps <= 0).any() or (num < 0).any() or num.sum() == 0:
            raise ValueError(
                f"Invalid value for 'n' in noise_ceiling(): {dict(n)!r}. Expected a mapping "
                "{repetitions: number of images} with positive repetitions."
            )
        return float((num / reps).sum() / num.sum())
    arr = np.atleast_1d(np.asarray(n, dtype=float))
    if arr.size == 0 or (arr <= 0).any() or not np.isfinite(arr).all():
        raise ValueError(
            f"Invalid value for 'n' in noise_ceiling(): {n!r}. Expected a positive number of "
            "repetitions, or one count per averaged image."
        )
    return float(np.mean(1.0 / arr))


def noise_ceiling(
    ncsnr_or_store,
    n=None,
    *,
    split: str | None = "test",
    by: str | None = "session",
) -> xr.DataArray | np.ndarray:
    """Noise ceiling in percent of explainable variance (a ceiling on R², not r).

    ``NC = 100 · ncsnr² / (ncsnr² + 1/n)``. When the averaged images have different
    repetition counts, ``1/n`` becomes the mean of ``1/n_i``, which is NSD's
    ``(A/3 + B/2 + C/1) / (A + B + C)`` for A, B, C images with 3, 2, 1 repetitions.

    Parameters
    ----------
    ncsnr_or_store : array-like, xr.DataArray or xr.Dataset
        ncsnr values, or a store. For an fMRI store the ncsnr is its ``ncsnr`` variable
        when present, else :func:`ncsnr` of its trials; ``n`` defaults to the repetition
        counts of the ``split`` images. For a time-resolved store (dim ``time``) the
        ceiling is the split-half reliability with Spearman-Brown correction
        (:func:`split_half`), clipped at 0, in percent.
    n : int, sequence of int, or mapping {repetitions: count}, optional
        Trials averaged per image. Required for ncsnr input.
    split : str or None
        Which images are averaged in the evaluation (default ``"test"``; all if absent).
    by : str or None
        z-scoring group passed to :func:`ncsnr`.

    Returns
    -------
    Same container as the ncsnr (DataArray named ``noise_ceiling`` for stores), in percent.
    """
    if isinstance(ncsnr_or_store, xr.Dataset):
        ds = ncsnr_or_store
        check_store(ds)
        if TIME_DIM in ds[RESPONSE_VAR].dims and n is None:
            sub = ds
            if split is not None and split in set(np.asarray(ds.coords["split"].values).tolist()):
                sub = select_split(ds, split)
            rel = split_half(sub)
            out = 100.0 * rel.clip(min=0.0)
            out.name = "noise_ceiling"
            out.attrs = {"units": "percent", "method": "split-half, Spearman-Brown"}
            return out
        if "ncsnr" in ds.data_vars:
            snr = ds["ncsnr"]
        else:
            snr = ncsnr(ds, by=by)
        if n is None:
            n = repetition_counts(ds, split)
        out = noise_ceiling(snr, n)
        out.name = "noise_ceiling"
        out.attrs = {"units": "percent", "n_inverse": _inverse_n(n)}
        return out
    inv = _inverse_n(n) if n is not None else None
    if inv is None:
        raise ValueError(
            "noise_ceiling() needs n= (the number of trials averaged per image) when given "
            "ncsnr values rather than a store."
        )
    snr = ncsnr_or_store if isinstance(ncsnr_or_store, xr.DataArray) else np.asarray(
        ncsnr_or_store, dtype=float
    )
    sq = snr**2
    with np.errstate(invalid="ignore"):
        nc = 100.0 * sq / (sq + inv)
    if isinstance(nc, xr.DataArray):
        nc = nc.where(~np.isinf(snr), 100.0)
    else:
        nc = np.where(np.isinf(snr), 100.0, nc)
    return nc


def split_half(
    ds: xr.Dataset,
    *,
    n_splits: int = 10,
    seed: int | None = 0,
) -> xr.DataArray:
    """Split-half reliability per neuroid (and time), Spearman-Brown corrected.

    For each of ``n_splits`` random splits, the repetitions of every stimulus with at
    least two presentations are divided into two halves, each half is averaged, and the
    two half-averages are correlated across stimuli (Pearson). The mean correlation over
    splits is corrected to the full number of repetitions with ``2r / (1 + r)``. This
    estimates the reliability of the repetition-averaged data (= NC/100).

    Returns
    -------
    xr.DataArray
        dims ``('neuroid',)`` or ``('neuroid', 'time')``, named ``"reliability"``.
    """
    _require_trials(ds, "split_half")
    n_splits = check_positive_int(n_splits, name="n_splits", func="split_half")
    ids, codes = stimulus_codes(ds.coords["stimulus_id"].values)
    counts = np.bincount(codes, minlength=len(ids))
    usable = np.flatnonzero(counts >= 2)
    if len(usable) < 3:
        raise ValueError(
            f"split_half() needs at least 3 stimuli with 2 or more repetitions; found "
            f"{len(usable)} ({format_list(ids[usable], limit=5) or 'none'})."
        )
    rng = np.random.default_rng(seed)
    halves = []
    for _ in range(n_splits):
        a_rows, a_cols, b_rows, b_cols = [], [], [], []
        for new, s in enumerate(usable):
            idx = rng.permutation(np.flatnonzero(codes == s))
            h = len(idx) // 2
            a_rows += [new] * h
            a_cols += list(idx[:h])
            b_rows += [new] * (len(idx) - h)
            b_cols += list(idx[h:])
        halves.append((np.array(a_rows), np.array(a_cols), np.array(b_rows), np.array(b_cols)))

    import scipy.sparse as sp

    n_pres = ds.sizes[TRIAL_DIM]
    n_use = len(usable)

    def mean_matrix(rows, cols):
        m = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_use, n_pres))
        c = np.asarray(m.sum(axis=1)).ravel()
        return sp.diags(1.0 / c) @ m

    mats = [(mean_matrix(a, b), mean_matrix(c, d)) for a, b, c, d in halves]

    def reliability(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
        rs = np.zeros(flat.shape[0])
        for ma, mb in mats:
            xa = (ma @ flat.T).T
            xb = (mb @ flat.T).T
            xa = xa - xa.mean(axis=1, keepdims=True)
            xb = xb - xb.mean(axis=1, keepdims=True)
            den = np.sqrt((xa**2).sum(1) * (xb**2).sum(1))
            with np.errstate(invalid="ignore", divide="ignore"):
                rs += np.where(den > 0, (xa * xb).sum(1) / den, 0.0)
        r = rs / len(mats)
        return (2 * r / (1 + r)).reshape(*x.shape[:-1], 1)

    out = apply_along(ds[RESPONSE_VAR], reliability, TRIAL_DIM, "_one", 1).isel(_one=0, drop=True)
    out = out.drop_vars([c for c in out.coords if TRIAL_DIM in out[c].dims], errors="ignore")
    out.name = "reliability"
    out.attrs = {"method": "split-half, Spearman-Brown", "n_splits": n_splits}
    return out
