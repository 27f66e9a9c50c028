"""Reliability from repetitions: ncsnr, noise ceilings, split-half (Spearman-Brown).

Data quality, the same rule in every function here: a NaN response is a missing trial and
is left out for that neuroid (exactly as if that presentation had been dropped for it); a
neuroid with an infinite value, a constant one, or too little data left is NaN in the
result, never 0, ``inf`` or 100 %. Both are reported by a
:class:`~neuroalign.exceptions.DataQualityWarning` that counts and names the neuroids, or,
with ``strict=True``, raised as a :class:`~neuroalign.exceptions.DataFormatError`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import DimensionError
from neuroalign.store._ops import (
    _group_matrix,
    apply_along,
    check_by,
    select_split,
    stimulus_codes,
)
from neuroalign.store._quality import (
    CONST,
    INF,
    NO_NOISE,
    OK,
    TOO_FEW,
    ZERO_NOISE,
    blocks,
    finish_estimate,
    neuroid_labels,
    report_neuroids,
    require_trials,
)
from neuroalign.store._schema import (
    NEUROID_DIM,
    RESPONSE_VAR,
    SPLITS,
    STIMULUS_DIM,
    TIME_DIM,
    TRIAL_DIM,
    check_store,
    sample_dim,
)
from neuroalign.store._split_half import split_half_r

__all__ = ["ncsnr", "noise_ceiling", "repetition_counts"]


def ncsnr(
    ds: xr.Dataset, *, by: str | None = "session", ddof: int = 1, strict: bool = False
) -> xr.DataArray:
    """Noise-ceiling signal-to-noise ratio per neuroid, NSD's definition.

    NSD's recipe (Allen et al. 2022; ``calczscore``): responses are z-scored per neuroid
    within each ``by`` group (NSD: per session) with the sample standard deviation
    (``N - 1``); the noise variance is the mean, over the stimuli with at least two
    repetitions, of each stimulus's variance across its repetitions (``N - 1``);
    ``signal_var = max(0, 1 - noise_var)`` and ``ncsnr = sqrt(signal_var) / sqrt(noise_var)``.

    Parameters
    ----------
    ds : xr.Dataset
        Trial-level store.
    by : str or None
        Grouping coordinate for z-scoring. The default ``"session"`` falls back to ``None``
        (z-scoring over all presentations) when the store has no ``session`` coordinate;
        any other name must be a coordinate on ``presentation`` alone (one on ``neuroid``
        raises a ``KeyError``). Every group must hold at least 2 presentations.
    ddof : {1, 0}
        Delta degrees of freedom of the z-scoring sd. ``1`` is NSD's; ``0`` (the population
        sd, :func:`scipy.stats.zscore`'s) gives a smaller ncsnr on short sessions (up to
        9 points of noise ceiling lower at 30 trials per session).
    strict : bool
        Raise :class:`~neuroalign.exceptions.DataFormatError` for unusable neuroids
        instead of warning.

    Returns
    -------
    xr.DataArray
        float64, dims ``('neuroid',)`` (``('neuroid', 'time')`` for time-resolved stores),
        named ``"ncsnr"``.

    Notes
    -----
    A NaN response is a missing trial: it is left out of its group's z-scoring and of its
    stimulus's variance for that neuroid (a stimulus left with fewer than 2 repetitions is
    then skipped for it), as if that presentation had been dropped. A neuroid with an
    infinite value, constant within a group, left without any stimulus with 2 repetitions,
    or with no variance across repetitions at all gets NaN (never ``inf``).
    """
    require_trials(ds, "ncsnr")
    ddof = check_option(ddof, (1, 0), name="ddof", func="ncsnr")
    by = check_by(ds, by, func="ncsnr", dim=TRIAL_DIM, optional="session")
    ids, codes = stimulus_codes(ds.coords["stimulus_id"].values)
    n_stim = len(ids)
    counts = np.bincount(codes, minlength=n_stim)
    if (counts >= 2).sum() == 0:
        raise ValueError(
            "ncsnr() needs stimuli shown at least twice; every stimulus_id in this store "
            "has a single presentation."
        )
    if by is None:
        group_names, groups = np.array(["all"]), np.zeros(len(codes), dtype=int)
    else:
        group_names, groups = stimulus_codes(ds.coords[by].values)
    sizes = np.bincount(groups)
    if (sizes < 2).any():
        raise ValueError(
            f"ncsnr(by={by!r}): z-scoring needs at least 2 presentations per group; "
            f"{by} {format_list(group_names[sizes < 2], limit=5)} hold 1. Merge them into "
            "a neighbouring group, or pass by=None."
        )
    complete = _complete_rows(codes, counts, groups, ddof)
    incomplete = _incomplete_rows(codes, counts, groups, ddof)

    def estimate(x: np.ndarray) -> np.ndarray:
        flat_shape = x.shape[:-1]
        out = np.empty((int(np.prod(flat_shape)), 3))
        for rows_out, xb in blocks(x):
            # each row by its own values only, so a row's result never depends on the other
            # rows of its block; a row whose sum is finite holds finite values only (one
            # whose sum overflows goes to the masked path, which gives it the same result)
            whole = np.isfinite(xb.sum(axis=1))
            if whole.all():
                out[rows_out] = complete(xb)
                continue
            part = out[rows_out]  # a view
            part[whole] = complete(xb[whole])
            part[~whole] = incomplete(xb[~whole])
        return out.reshape(*flat_shape, 3)

    resp = ds[RESPONSE_VAR]
    raw = apply_along(resp, estimate, TRIAL_DIM, "_out", 3, dtype=np.float64)
    where = f"a {by}" if by is not None else "the store"
    out = finish_estimate(
        resp,
        raw,
        "ncsnr",
        {
            "with infinite values": INF,
            f"constant within {where}": CONST,
            "without any stimulus left with 2 finite repetitions": TOO_FEW,
            "identical across repetitions (zero noise variance)": NO_NOISE,
        },
        strict=strict,
    )
    out.name = "ncsnr"
    out.attrs = {
        "long_name": "noise-ceiling SNR (NSD definition)",
        "zscored_by": str(by),
        "zscore_ddof": ddof,
    }
    return out


def _complete_rows(codes: np.ndarray, counts: np.ndarray, groups: np.ndarray, ddof: int):
    """ncsnr of rows without a missing or infinite value: ``f(x) -> (value, status,
    missing)`` per row of ``x`` (rows, presentations), float64, which ``f`` overwrites.

    The presentations are gathered once by z-scoring group (unless they come in groups
    already, as NSD's sessions do), so that each group is a contiguous slice z-scored in
    place; then once by stimulus, grouped by repetition count
    (``(count, stimuli)`` blocks: the first repetitions of the stimuli shown ``count``
    times, then their second ...), so that each stimulus's mean and squared deviations are
    sums of ``count`` contiguous rows. Every value is visited about a dozen times, in
    place where it can be, where the masked path below makes some 25 passes and copies.
    """
    by_group = np.argsort(groups, kind="stable")
    in_order = bool((by_group == np.arange(len(groups))).all())  # NSD: sessions in turn
    tiny = 4 * np.finfo(np.float64).eps
    bounds = np.flatnonzero(np.diff(groups[by_group])) + 1
    slices = [slice(a, b) for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(groups)],
                                          strict=True)]
    where = np.empty_like(by_group)
    where[by_group] = np.arange(len(by_group))  # each presentation's column after the gather
    by_stimulus = np.argsort(codes, kind="stable")  # each stimulus's presentations in order
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    classes, order = [], []  # (count, stimuli) per repetition count; their columns
    for c in np.unique(counts[counts >= 2]):
        stim = np.flatnonzero(counts == c)
        cols = by_stimulus[starts[stim] + np.arange(c)[:, None]]  # (c, stimuli) presentations
        classes.append((int(c), len(stim)))
        order.append(where[cols].ravel())
    order = np.concatenate(order)
    n_use = sum(n for _, n in classes)

    def f(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), 3))
        if not len(x):
            return out
        z = x if in_order else x.take(by_group, axis=1)  # C-ordered, see _incomplete_rows
        const = np.zeros(len(x), dtype=bool)
        for sl in slices:
            part = z[:, sl]
            mean = part.mean(axis=1, keepdims=True)
            part -= mean
            sd = np.sqrt(np.einsum("ij,ij->i", part, part) / (part.shape[1] - ddof))
            # a constant group's sd is rounding, below `tiny` of its mean; only such rows
            # are compared exactly (their deviations are exact differences: Sterbenz)
            maybe = np.flatnonzero(sd <= tiny * part.shape[1] * np.abs(mean[:, 0]))
            if maybe.size:
                const[maybe] |= part[maybe].max(axis=1) == part[maybe].min(axis=1)
            part /= np.where(sd > 0, sd, 1.0)[:, None]
        reps = z.take(order, axis=1)
        noise = np.zeros(len(x))
        at = 0
        for c, n in classes:
            v = reps[:, at : at + n * c].reshape(len(x), c, n)  # v[:, k]: k-th repetitions
            at += n * c
            mean = v[:, 0].copy()
            for k in range(1, c):
                mean += v[:, k]
            mean /= c
            ss = np.zeros_like(mean)
            for k in range(c):
                d = v[:, k] - mean
                d *= d
                ss += d
            noise += ss.sum(axis=1) / (c - 1)
        noise /= n_use
        out[:, :2] = _from_noise(noise, np.where(const, CONST, OK))
        return out

    return f


def _incomplete_rows(codes: np.ndarray, counts: np.ndarray, groups: np.ndarray, ddof: int):
    """ncsnr of rows with missing (NaN) or infinite values, as :func:`_complete_rows`: each
    NaN is left out of its group's z-scoring and of its stimulus's variance for that row."""
    n_stim = len(counts)
    group_rows = [np.flatnonzero(groups == g) for g in range(groups.max() + 1)]
    sum_m = _group_matrix(codes, n_stim, mean=False)  # stimulus x presentation indicator

    def by_stimulus(a: np.ndarray) -> np.ndarray:
        """Sums of each row's values per stimulus, (rows, stimuli) in C order (so that the
        sums over stimuli below run in one order whatever the number of rows)."""
        return np.ascontiguousarray((sum_m @ np.ascontiguousarray(a.T, dtype=np.float64)).T)

    def f(xb: np.ndarray) -> np.ndarray:
        out = np.zeros((len(xb), 3))
        if not len(xb):
            return out
        status = np.where(np.isinf(xb).any(axis=1), INF, OK)
        fin = np.isfinite(xb)
        missing = (~fin).any(axis=1)
        xb[~fin] = 0.0
        for rows in group_rows:  # z-score within each group, finite values only
            # take(), not xb[:, rows]: fancy indexing gives a column-major block of two rows
            # or more, whose row sums numpy takes in another order than a lone row's (the
            # last bits of a row's result then depended on its block)
            part, fp = xb.take(rows, axis=1), fin.take(rows, axis=1)
            n = fp.sum(axis=1)
            hi = np.where(fp, part, -np.inf).max(axis=1)
            lo = np.where(fp, part, np.inf).min(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                dev = np.where(fp, part - (part.sum(axis=1) / n)[:, None], 0.0)
            status = np.where((status == OK) & (n >= 2) & (hi == lo), CONST, status)
            usable = n >= max(2, ddof + 1)  # fewer values: left out for that neuroid
            with np.errstate(invalid="ignore", divide="ignore"):
                sd = np.sqrt((dev**2).sum(axis=1) / (n - ddof))
                z = dev / np.where(usable & (sd > 0), sd, 1.0)[:, None]
            fp &= usable[:, None]
            xb[:, rows] = np.where(fp, z, 0.0)
            fin[:, rows] = fp
        # per-stimulus variance across the finite repetitions (N - 1), mean over stimuli
        # with >= 2 of them
        n_rep = by_stimulus(fin)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = by_stimulus(xb) / n_rep
            dev = np.where(fin, xb - np.nan_to_num(means)[:, codes], 0.0)
            ss = by_stimulus(dev**2)
            use = n_rep >= 2
            n_use = use.sum(axis=1)
            nv = np.where(use, ss / np.where(use, n_rep - 1, 1.0), 0.0).sum(axis=1) / n_use
        out[:, :2] = _from_noise(nv, np.where((status == OK) & (n_use == 0), TOO_FEW, status))
        out[:, 2] = missing
        return out

    return f


def _from_noise(noise: np.ndarray, status: np.ndarray) -> np.ndarray:
    """``(value, status)`` columns from the noise variance of z-scored data: ncsnr
    ``sqrt(max(0, 1 - noise)) / sqrt(noise)``, NaN unless the status stays OK (a noise
    variance under ZERO_NOISE is NO_NOISE)."""
    status = np.where((status == OK) & (noise < ZERO_NOISE), NO_NOISE, status)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.sqrt(np.maximum(0.0, 1.0 - noise)) / np.sqrt(noise)
    return np.stack([np.where(status == OK, value, np.nan), status], axis=1)


def repetition_counts(ds: xr.Dataset, split: str | None = "test") -> np.ndarray:
    """Number of repetitions of each stimulus of ``split``, in order of first appearance.

    ``split=None``, or a split the store does not have, counts all stimuli. A trial-level
    store counts its presentations per ``stimulus_id``; an averaged store reports its
    ``n_repetitions`` coordinate.

    Parameters
    ----------
    ds : xr.Dataset
        A store.
    split : {"train", "test"} or None
        The split whose stimuli are counted.

    Returns
    -------
    ndarray of int
        One count per stimulus.
    """
    check_store(ds)
    if split is not None:
        check_option(split, SPLITS, name="split", func="repetition_counts")
        if split in set(np.asarray(ds.coords["split"].values).tolist()):
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


def _ceiling_from_ncsnr(snr, inv: float, *, strict: bool):
    if isinstance(snr, xr.DataArray) and NEUROID_DIM in snr.dims:
        snr = snr.transpose(NEUROID_DIM, ...)
    values = np.asarray(snr, dtype=np.float64)
    flat = np.atleast_1d(values)
    report_neuroids(
        "noise_ceiling()",
        neuroid_labels(snr, flat.shape[0]),
        {"with NaN ncsnr": np.isnan(flat), "with infinite ncsnr": np.isinf(flat),
         "with negative ncsnr": flat < 0},
        outcome="Their noise ceiling is NaN",
        strict=strict,
        header="have an unusable ncsnr",
        stacklevel=4,
    )
    ok = np.isfinite(values) & (values >= 0)
    snr_ok = np.where(ok, values, 1.0)
    # 100 s² / (s² + inv) without forming s², which overflows above ~1.3e154: inv / s / s
    # is inf at s = 0 (a ceiling of 0) and 0 for a huge s (100), never NaN
    with np.errstate(divide="ignore", over="ignore", under="ignore"):
        nc = np.where(ok, 100.0 / (1.0 + inv / snr_ok / snr_ok), np.nan)
    if isinstance(snr, xr.DataArray):
        out = snr.copy(data=nc)
        out.name = "noise_ceiling"
        out.attrs = {"units": "percent", "n_inverse": inv}
        return out
    return nc if nc.ndim else float(nc)


def noise_ceiling(
    ncsnr_or_store,
    n=None,
    *,
    split: str | None = "test",
    by: str | None = "session",
    ddof: int = 1,
    strict: bool = False,
) -> xr.DataArray | np.ndarray:
    """Noise ceiling in percent of explainable variance (a ceiling on R², not r).

    ``NC = 100 · ncsnr² / (ncsnr² + 1/n)``. When the averaged images have different
    repetition counts, ``1/n`` becomes the mean of ``1/n_i``, which is NSD's
    ``(A/3 + B/2 + C/1) / (A + B + C)`` for A, B, C images with 3, 2, 1 repetitions.
    It is computed as ``100 / (1 + (1/n) / ncsnr²)``, which cannot overflow: any finite
    ncsnr gives a value in [0, 100] (0 for 0, 100 for a huge one).

    Parameters
    ----------
    ncsnr_or_store : array-like, xr.DataArray or xr.Dataset
        ncsnr values, or a store. For an fMRI store the ncsnr is its ``ncsnr`` variable
        when present, else :func:`ncsnr` of its trials; ``n`` defaults to the repetition
        counts of the ``split`` images. For a time-resolved store (dim ``time``) the
        ceiling is the split-half reliability with Spearman-Brown correction, see Notes.
    n : int, sequence of int, or mapping {repetitions: count}, optional
        Trials averaged per image. Required for ncsnr input.
    split : {"test", "train"} or None
        Which images are averaged in the evaluation (default ``"test"``; all if None or
        absent from the store).
    by, ddof : see :func:`ncsnr`
        z-scoring of the trials when the ncsnr is estimated here.
    strict : bool
        Raise :class:`~neuroalign.exceptions.DataFormatError` for unusable neuroids (NaN,
        infinite or negative ncsnr; dead channels) instead of warning.

    Returns
    -------
    Same container as the ncsnr (DataArray named ``noise_ceiling`` for stores), in percent,
    within [0, 100]; NaN for unusable neuroids (with a
    :class:`~neuroalign.exceptions.DataQualityWarning` naming them).

    Notes
    -----
    Time-resolved ceiling: ``100 · SB(max(r, 0))`` where ``r`` is the split-half
    correlation averaged over random splits (:func:`split_half`) and
    ``SB(r) = 2r / (1 + r)``. The mean ``r`` is clipped, not each split's ``r`` (clipping
    each would bias the ceiling of noise channels upwards). Clipping before or after
    Spearman-Brown gives the same value for ``r > -1`` (``SB`` is increasing with
    ``SB(0) = 0``), but only clipping before avoids its pole at ``r = -1``.
    """
    if isinstance(ncsnr_or_store, xr.Dataset):
        ds = ncsnr_or_store
        check_store(ds)
        if split is not None:
            check_option(split, SPLITS, name="split", func="noise_ceiling")
        if TIME_DIM in ds[RESPONSE_VAR].dims and n is None:
            sub = ds
            if split is not None and split in set(np.asarray(ds.coords["split"].values).tolist()):
                sub = select_split(ds, split)
            r = split_half_r(sub, n_splits=10, seed=0, func="noise_ceiling", strict=strict)
            rc = r.clip(min=0.0)
            out = 100.0 * (2 * rc / (1 + rc))
            out.name = "noise_ceiling"
            out.attrs = {"units": "percent", "method": "split-half, Spearman-Brown"}
            return out
        if "ncsnr" in ds.data_vars:
            snr = ds["ncsnr"]
        else:
            if sample_dim(ds) == TRIAL_DIM:  # else ncsnr() says it needs trials
                by = check_by(ds, by, func="noise_ceiling", dim=TRIAL_DIM, optional="session")
            snr = ncsnr(ds, by=by, ddof=ddof, strict=strict)
        if n is None:
            n = repetition_counts(ds, split)
        return _ceiling_from_ncsnr(snr, _inverse_n(n), strict=strict)
    if n is None:
        raise ValueError(
            "noise_ceiling() needs n= (the number of trials averaged per image) when given "
            "ncsnr values rather than a store."
        )
    snr = ncsnr_or_store if isinstance(ncsnr_or_store, xr.DataArray) else np.asarray(
        ncsnr_or_store, dtype=float
    )
    return _ceiling_from_ncsnr(snr, _inverse_n(n), strict=strict)
