"""Split-half reliability with Spearman-Brown correction (MEG/EEG noise ceilings).

Data quality follows :mod:`neuroalign.store._reliability`: NaN responses are missing trials,
left out for that neuroid; infinite, constant or too sparse neuroids give NaN, reported by
a :class:`~neuroalign.exceptions.DataQualityWarning` (or an error with ``strict=True``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign._validation import check_positive_int, format_list
from neuroalign.store._ops import apply_along, stimulus_codes
from neuroalign.store._quality import (
    CONST,
    INF,
    OK,
    TOO_FEW,
    blocks,
    finish_estimate,
    neuroid_labels,
    report_neuroids,
    require_trials,
)
from neuroalign.store._schema import NEUROID_DIM, RESPONSE_VAR, TRIAL_DIM

__all__ = ["split_half", "split_half_r"]


def split_half_r(
    ds: xr.Dataset, *, n_splits: int, seed, func: str, strict: bool
) -> xr.DataArray:
    """Split-half correlation per neuroid (and time), averaged over random splits."""
    import scipy.sparse as sp  # here, not at import: scipy.sparse is slow to import

    require_trials(ds, func)
    n_splits = check_positive_int(n_splits, name="n_splits", func=func)
    ids, codes = stimulus_codes(ds.coords["stimulus_id"].values)
    counts = np.bincount(codes, minlength=len(ids))
    if (counts >= 2).sum() < 3:
        usable = np.flatnonzero(counts >= 2)
        raise ValueError(
            f"{func}() needs at least 3 stimuli with 2 or more repetitions; found "
            f"{len(usable)} ({format_list(ids[usable], limit=5) or 'none'})."
        )
    # A canonical order of the presentations (stimulus_id, then repetition, session, run,
    # trial), so that the random halves, hence the result, do not depend on row order.
    uniq, canon = np.unique(ds.coords["stimulus_id"].values, return_inverse=True)
    canon = canon.ravel()
    keys = [np.asarray(ds.coords[c].values) for c in ("trial", "run", "session", "repetition")
            if c in ds.coords]
    order = np.lexsort((*keys, canon))
    order = order[counts[codes[order]] >= 2]  # stimuli with 2+ presentations, sorted by id
    stim = canon[order]
    _, use_code, n_per = np.unique(stim, return_inverse=True, return_counts=True)
    use_code = use_code.ravel()
    start = np.concatenate([[0], np.cumsum(n_per)[:-1]])
    n_use, n_pres = len(n_per), ds.sizes[TRIAL_DIM]
    rng = np.random.default_rng(seed)
    mats = []
    for _ in range(n_splits):
        shuffled = np.lexsort((rng.random(len(order)), use_code))  # shuffle within stimulus
        rank = np.arange(len(order)) - start[use_code]
        in_a = np.empty(len(order), dtype=bool)
        in_a[shuffled] = rank < (n_per // 2)[use_code]
        pair = []
        for side in (in_a, ~in_a):
            cols = order[side]
            pair.append(sp.csr_matrix((np.ones(len(cols)), (use_code[side], cols)),
                                      shape=(n_use, n_pres)))
        mats.append(pair)
    used = np.zeros(n_pres, dtype=bool)
    used[order] = True
    sizes = [tuple(np.asarray(m.sum(axis=1)).T for m in pair) for pair in mats]

    def by_stimulus(m, xt: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((m @ xt).T)  # (rows, stimuli), C order

    def estimate(x: np.ndarray) -> np.ndarray:
        flat_shape = x.shape[:-1]
        out = np.empty((int(np.prod(flat_shape)), 3))
        for rows_out, xb in blocks(x):
            # C order throughout (compress, and the half-averages made contiguous): a
            # column-major block of two rows or more is summed in another order than a lone
            # row, so a row's last bits depended on its block
            xb = xb.compress(used, axis=1)
            status = np.where(np.isinf(xb).any(axis=1), INF, OK)
            fin = np.isfinite(xb)
            complete = bool(fin.all())
            if complete:
                hi, lo = xb.max(axis=1), xb.min(axis=1)
            else:
                hi = np.where(fin, xb, -np.inf).max(axis=1)
                lo = np.where(fin, xb, np.inf).min(axis=1)
            status = np.where((status == OK) & (fin.sum(axis=1) >= 2) & (hi == lo), CONST,
                              status)
            missing = (~fin).any(axis=1)
            xz = np.zeros((xb.shape[0], n_pres))
            xz[:, used] = xb if complete else np.where(fin, xb, 0.0)
            if not complete:
                fz = np.zeros((xb.shape[0], n_pres))
                fz[:, used] = fin
            xzt = np.ascontiguousarray(xz.T)  # sparse @ dense wants C-ordered operands
            fzt = None if complete else np.ascontiguousarray(fz.T)
            r_sum = np.zeros(xb.shape[0])
            r_n = np.zeros(xb.shape[0])
            for (ma, mb), (na, nb) in zip(mats, sizes, strict=True):
                if complete:  # nothing missing in this block: every stimulus in both halves
                    with np.errstate(invalid="ignore", divide="ignore"):
                        xa = by_stimulus(ma, xzt) / na
                        xb2 = by_stimulus(mb, xzt) / nb
                        xa -= xa.mean(axis=1, keepdims=True)
                        xb2 -= xb2.mean(axis=1, keepdims=True)
                        den = np.sqrt((xa**2).sum(1) * (xb2**2).sum(1))
                        r = (xa * xb2).sum(1) / den
                    k = np.full(xb.shape[0], n_use)
                else:
                    ca, cb = by_stimulus(ma, fzt), by_stimulus(mb, fzt)
                    v = (ca > 0) & (cb > 0)  # stimulus with data in both halves (this neuroid)
                    k = v.sum(axis=1)
                    with np.errstate(invalid="ignore", divide="ignore"):
                        xa = np.where(v, by_stimulus(ma, xzt) / ca, 0.0)
                        xb2 = np.where(v, by_stimulus(mb, xzt) / cb, 0.0)
                        da = np.where(v, xa - (xa.sum(1) / k)[:, None], 0.0)
                        db = np.where(v, xb2 - (xb2.sum(1) / k)[:, None], 0.0)
                        den = np.sqrt((da**2).sum(1) * (db**2).sum(1))
                        r = (da * db).sum(1) / den
                good = (k >= 3) & (den > 0) & np.isfinite(r)
                r_sum += np.where(good, r, 0.0)
                r_n += good
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.clip(r_sum / r_n, -1.0, 1.0)
            status = np.where((status == OK) & (r_n == 0), TOO_FEW, status)
            out[rows_out, 0] = np.where(status == OK, r, np.nan)
            out[rows_out, 1] = status
            out[rows_out, 2] = missing
        return out.reshape(*flat_shape, 3)

    resp = ds[RESPONSE_VAR]
    raw = apply_along(resp, estimate, TRIAL_DIM, "_out", 3, dtype=np.float64)
    return finish_estimate(
        resp,
        raw,
        func,
        {
            "with infinite values": INF,
            "constant": CONST,
            "without 3 stimuli left with data in both halves": TOO_FEW,
        },
        strict=strict,
    )


def split_half(
    ds: xr.Dataset,
    *,
    n_splits: int = 10,
    seed: int | np.random.Generator | None = 0,
    strict: bool = False,
) -> xr.DataArray:
    """Split-half reliability per neuroid (and time), Spearman-Brown corrected.

    For each of ``n_splits`` random splits, the repetitions of every stimulus with at
    least two presentations are divided into two halves, each half is averaged, and the
    two half-averages are correlated across stimuli (Pearson). The mean correlation ``r``
    over splits is corrected to the full number of repetitions with ``2r / (1 + r)``. This
    estimates the reliability of the repetition-averaged data (= NC/100).

    Parameters
    ----------
    ds : xr.Dataset
        Trial-level store.
    n_splits : int
        Random splits averaged.
    seed : int, numpy Generator or None
        Seed of the random halves; the same seed gives the same result whatever the
        order of the presentations (they are put in a canonical order by ``stimulus_id``,
        ``repetition``, ``session``, ``run``, ``trial`` first). ``None`` draws fresh
        entropy.
    strict : bool
        Raise :class:`~neuroalign.exceptions.DataFormatError` for unusable neuroids
        instead of warning.

    Returns
    -------
    xr.DataArray
        float64, dims ``('neuroid',)`` or ``('neuroid', 'time')``, named
        ``"reliability"``. Not clipped: negative when the halves anti-correlate
        (:func:`noise_ceiling` clips ``r`` at 0); NaN at ``r = -1``, the pole of
        Spearman-Brown, and for unusable neuroids (see the module notes: NaN responses
        are missing trials, left out for that neuroid).
    """
    r = split_half_r(ds, n_splits=n_splits, seed=seed, func="split_half", strict=strict)
    pole = np.asarray((r <= -1).transpose(NEUROID_DIM, ...).values)
    report_neuroids(
        "split_half()",
        neuroid_labels(r, r.sizes[NEUROID_DIM]),
        {"with perfectly anti-correlated halves (r = -1)": pole},
        outcome="Their reliability is NaN (the pole of Spearman-Brown)",
        strict=strict,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (2 * r / (1 + r)).where(r > -1)
    out.name = "reliability"
    out.attrs = {"method": "split-half, Spearman-Brown", "n_splits": n_splits}
    return out
