"""Comparison of RDMs (rsatoolbox ``rdm.compare`` conventions, vectorised over stacks).

All methods work on the upper triangles (``k=1``, scipy ``squareform`` order). Entries
that are NaN in any of the compared RDMs are left out of every comparison (as rsatoolbox
does; the bootstrap uses this for duplicated stimuli); an RDM with no finite entry left
raises.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._validation import check_option
from neuroalign.compare._inputs import align_stimuli, is_torch, to_numpy
from neuroalign.compare._rdm import RDM_DIMS, squareform_vector, vector_squareform
from neuroalign.exceptions import DimensionError

__all__ = ["compare_rdms", "COMPARE_METHODS", "rank_average", "as_rdm_vectors"]

COMPARE_METHODS = (
    "cosine", "pearson", "spearman", "rho_a", "tau_a", "cosine_cov", "pearson_cov", "bures",
)

_PARALLEL_MIN = 100_000  # rows at least this long are ranked in threads
_RANK_CHUNK = 8  # RDMs ranked at a time (memory: 8 x n_pairs x 8 bytes)
_DIRECT_MAX = 4  # against at most this many RDMs, rows are ranked and dotted one by one

try:  # scipy's O(n log n) discordant-pair count (private; public fallback below)
    from scipy.stats._stats import _kendall_dis
except ImportError:  # pragma: no cover - depends on the scipy version
    _kendall_dis = None


def as_rdm_vectors(x: Any, *, name: str, func: str):
    """RDM(s) as a 2-D array of upper-triangle vectors ``(k, n_pairs)``.

    Accepts a square RDM ``(n, n)``, a stack ``(k, n, n)``, vectors ``(n_pairs,)`` or
    ``(k, n_pairs)``, and DataArrays with dims ``('stimulus_i', 'stimulus_j')`` plus any
    batch dims. Returns ``(vectors, batch_shape, batch_dims, batch_coords, stimulus_ids)``.
    """
    if isinstance(x, xr.DataArray):
        if not set(RDM_DIMS) <= set(x.dims):
            raise DimensionError(
                f"Invalid value for {name!r} in {func}(): a DataArray with dims {x.dims!r}. "
                f"Expected an RDM with dims {RDM_DIMS!r} (from neuroalign.compare.rdm)."
            )
        batch_dims = tuple(d for d in x.dims if d not in RDM_DIMS)
        x = x.transpose(*batch_dims, *RDM_DIMS)
        ids = x.coords["stimulus_id_i"].values.astype(str) if "stimulus_id_i" in x.coords else None
        coords = {d: x.coords[d] for d in batch_dims if d in x.coords}
        arr = np.asarray(x.values, dtype=np.float64)
        batch_shape = arr.shape[:-2]
        n = arr.shape[-1]
        vec = squareform_vector(arr.reshape((-1, n, n)))
        return vec, batch_shape, batch_dims, coords, ids
    arr = np.asarray(to_numpy(x) if is_torch(x) else x, dtype=np.float64)
    if arr.ndim == 3:
        if arr.shape[1] != arr.shape[2]:
            raise DimensionError(
                f"Invalid value for {name!r} in {func}(): shape {arr.shape!r}. "
                "Expected square RDMs (k, n, n)."
            )
        return squareform_vector(arr), arr.shape[:1], None, {}, None
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1] and np.allclose(arr, arr.T, equal_nan=True):
        return squareform_vector(arr)[None], (), None, {}, None
    if arr.ndim == 2:
        return arr, arr.shape[:1], None, {}, None
    if arr.ndim == 1:
        return arr[None], (), None, {}, None
    raise DimensionError(
        f"Invalid value for {name!r} in {func}(): shape {arr.shape!r}. Expected an RDM (n, n), "
        "a stack (k, n, n), or upper-triangle vectors (n_pairs,) / (k, n_pairs)."
    )


def _rows_parallel(func, n_rows: int, size: int) -> None:
    """Run ``func(r)`` for every row, in threads when rows are long (numpy sorts release
    the GIL)."""
    workers = min(os.cpu_count() or 1, n_rows)
    if workers > 1 and size >= _PARALLEL_MIN:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(func, range(n_rows)))
    else:
        for r in range(n_rows):
            func(r)


_KEY_MARGIN = 2.0**12  # keeps the scaled key below its bit budget after rounding


def _argsort_ties(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference path: ``argsort`` and the sorted positions equal to their successor."""
    order = np.argsort(x)
    s = x[order]
    return order, np.flatnonzero(s[1:] == s[:-1])


_TORCH_SORT_MIN = 1 << 15  # rows at least this long are sorted by torch's radix sort
_TORCH_KEY_BITS = 31  # int32 keys: four 8-bit radix passes
_RESORT_MAX = 1 / 16  # share of elements in out-of-order shared keys above which the
# 31-bit keys give way to 64-bit keys, and those to a plain argsort
_torch_state = {"lock": threading.Lock(), "active": 0, "outer": 1}
_torch_mod = None  # torch once imported, False when it is unavailable


def _get_torch():
    global _torch_mod
    if _torch_mod is None:
        try:
            import torch

            _torch_mod = torch
        except Exception:  # pragma: no cover - torch is a core dependency
            _torch_mod = False
    return _torch_mod


def _torch_argsort_int32(key: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(sorted keys, stable order)`` of int32 keys by ``torch.sort`` with one thread.

    On CPU torch sorts 1-D integer tensors of at least 32768 entries with a stable
    key-value radix sort (fbgemm), which on this hardware is several times faster than
    ``np.sort``; with int32 keys it needs four passes and returns the permutation itself,
    so no index has to be packed into the keys. Its OpenMP threads spin against the
    caller's threads (``_rows_parallel``) and are much slower on a loaded machine, so the
    calling thread sorts with one thread; the thread count is restored afterwards, to the
    value seen outside all concurrent calls (a thread started meanwhile would otherwise
    inherit the temporary 1). ``None`` when torch is unavailable.
    """
    torch = _get_torch()
    if not torch:
        return None
    st = _torch_state
    with st["lock"]:
        if st["active"] == 0:
            st["outer"] = torch.get_num_threads()
        restore = st["outer"]
        st["active"] += 1
        torch.set_num_threads(1)
    try:
        srt, idx = torch.sort(torch.from_numpy(key), stable=True)
    finally:
        with st["lock"]:
            st["active"] -= 1
            torch.set_num_threads(restore)
    return srt.numpy(), idx.numpy()


def _sort_ties(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorting permutation of a float64 vector and the tied positions of the sorted order.

    Returns ``order`` (``x[order]`` is non-decreasing; tied values in any order) and the
    positions ``k`` with ``x[order[k]] == x[order[k + 1]]``, both exact.

    Each value is mapped to an integer key by the monotone map ``floor((x - min) * scale)``
    (float subtraction, product and floor are all non-decreasing, so ``x_i <= x_j`` implies
    ``key_i <= key_j``) and the keys are sorted, which is much faster than ``np.argsort``
    of the floats. Long rows use 31-bit int32 keys and torch's radix sort, which returns the
    permutation (:func:`_torch_argsort_int32`); otherwise (or without torch) the key is
    shifted left to make room for the element index, which fills the low bits, and one
    ``np.sort`` of the packed 64-bit keys carries the permutation along (43-bit keys for 2
    million entries). Values closer than the key resolution (``(max - min) / 2**31`` or
    ``/ 2**43``) can share a key: such runs are found afterwards and, where their values are
    out of order, re-sorted by the values themselves (rare, small). Where more than a
    sixteenth of the values would need re-sorting (heavy tails or an outlier squeezing the
    rest into few keys), the 31-bit keys give way to the 64-bit packed keys, and those to a
    plain ``np.argsort``.
    """
    m = len(x)
    lo, hi = x.min(), x.max()
    span = hi - lo
    if not np.isfinite(span):  # NaN or overflowing range: the plain path
        return _argsort_ties(x)
    if span == 0:
        return np.arange(m), np.arange(m - 1)
    if m >= _TORCH_SORT_MIN and _get_torch():
        with np.errstate(over="ignore"):
            scale = (2.0**_TORCH_KEY_BITS - _KEY_MARGIN) / span
        if np.isfinite(scale):
            t = x - lo
            t *= scale
            res = _torch_argsort_int32(t.astype(np.int32))
            del t
            if res is not None:
                skey, order = res
                cand = np.flatnonzero(skey[1:] == skey[:-1])
                del skey, res
                out = _resolve_shared(x, order, cand, max_members=int(m * _RESORT_MAX))
                if out is not None:
                    return out
    return _sort_ties_packed(x, lo, span)


def _sort_ties_packed(x: np.ndarray, lo, span) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_sort_ties` by ``np.sort`` of 64-bit keys with the index in the low bits."""
    m = len(x)
    bits = max(1, (m - 1).bit_length())  # index bits
    with np.errstate(over="ignore"):
        scale = (2.0 ** min(64 - bits, 52) - _KEY_MARGIN) / span
    if not np.isfinite(scale):
        return _argsort_ties(x)
    t = x - lo
    t *= scale
    key = t.astype(np.uint64)
    del t
    key <<= np.uint64(bits)
    key |= np.arange(m, dtype=np.uint64)
    key.sort()
    order = (key & np.uint64((1 << bits) - 1)).view(np.int64)
    key >>= np.uint64(bits)
    cand = np.flatnonzero(key[1:] == key[:-1])  # shared keys: equal or very close values
    del key
    out = _resolve_shared(x, order, cand, max_members=int(m * _RESORT_MAX))
    return _argsort_ties(x) if out is None else out


def _resolve_shared(x, order, cand, max_members: int | None = None):
    """Exact order and ties given the positions ``cand`` whose sorted key equals the next.

    Runs of shared keys whose values are out of order are re-sorted by value in place
    (runs merged when adjacent). ``None`` (nothing done) if more than ``max_members``
    elements would need it.
    """
    if len(cand) == 0:
        return order, cand
    a, b = x[order[cand]], x[order[cand + 1]]
    if (a > b).any():
        if max_members is not None and len(cand) > max_members:
            return None
        mask = np.zeros(len(order), dtype=bool)
        mask[cand] = True
        mask[cand + 1] = True
        members = np.flatnonzero(mask)
        del mask
        if max_members is not None and len(members) > max_members:
            return None
        run = np.cumsum(np.r_[True, np.diff(members) != 1])
        idx = order[members]
        order[members] = idx[np.lexsort((x[idx], run))]
        a, b = x[order[cand]], x[order[cand + 1]]
    return order, cand[a == b]


def _sort_row(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_sort_ties`` for any real row (float64 conversion only where it is exact)."""
    if x.dtype.kind == "f" and x.dtype.itemsize <= 8 or x.dtype.kind in "iub" and (
            x.dtype.itemsize <= 4):
        return _sort_ties(np.ascontiguousarray(x, dtype=np.float64))
    return _argsort_ties(x)


def _average_from_ties(order: np.ndarray, ties: np.ndarray, out: np.ndarray) -> None:
    """Average ranks (1-based, ``scipy.stats.rankdata``) written into ``out``."""
    m = len(order)
    if len(ties) == 0:
        out[order] = np.arange(1, m + 1, dtype=np.float64)
        return
    new = np.ones(m, dtype=bool)
    new[ties + 1] = False
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, m))
    out[order] = np.repeat(starts + (counts + 1) / 2.0, counts)


def rank_average(v: np.ndarray) -> np.ndarray:
    """Ranks along the last axis with ties averaged (= ``scipy.stats.rankdata``), 1-based."""
    v = np.asarray(v)
    flat = v.reshape(-1, v.shape[-1])
    out = np.empty(flat.shape, dtype=np.float64)
    m = flat.shape[1]

    def one(r: int) -> None:
        order, ties = _sort_row(flat[r])
        _average_from_ties(order, ties, out[r])

    _rows_parallel(one, len(flat), m)
    return out.reshape(v.shape)


def _cosine(a: np.ndarray, b: np.ndarray, func: str) -> np.ndarray:
    na = np.sqrt(np.einsum("ij,ij->i", a, a))
    nb = np.sqrt(np.einsum("ij,ij->i", b, b))
    for nn, nm in ((na, "a"), (nb, "b")):
        if np.any(nn == 0):
            raise _zero_norm_error(nm, func)
    return (a @ b.T) / na[:, None] / nb[None, :]


def _centre(v):
    return v - v.mean(axis=1, keepdims=True)


def _gram_from_vectors(v: np.ndarray) -> np.ndarray:
    """Double-centred second-moment matrices G = -1/2 H D H from RDM vectors."""
    D = vector_squareform(v)
    G = -0.5 * D
    rm = G.mean(axis=1, keepdims=True)
    return G - rm - np.swapaxes(rm, 1, 2) + rm.mean(axis=2, keepdims=True)


def _bures(Ga: np.ndarray, Gb: np.ndarray) -> np.ndarray:
    va, ua = np.linalg.eigh(Ga)
    sqa = (ua * np.sqrt(np.maximum(va, 0))[:, None, :]) @ np.swapaxes(ua, 1, 2)
    ta = np.trace(Ga, axis1=1, axis2=2)
    tb = np.trace(Gb, axis1=1, axis2=2)
    out = np.empty((len(Ga), len(Gb)))
    for i in range(len(Ga)):
        M = sqa[i][None] @ Gb @ sqa[i][None]
        ev = np.linalg.eigvalsh(M)
        out[i] = np.sqrt(np.maximum(ev, 0)).sum(axis=1) / np.sqrt(ta[i] * tb)
    return out


def _dense_sorted(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense ranks (1-based, intp), the sorting order and the number of tied pairs."""
    order, ties = _sort_row(x)
    new = np.ones(len(x), dtype=bool)
    new[ties + 1] = False
    dense = np.empty(len(x), dtype=np.intp)
    dense[order] = np.cumsum(new, dtype=np.intp)
    return dense, order, _tie_pairs(new)


def _tie_pairs(new: np.ndarray) -> int:
    """Tied pairs from the group starts of a sorted vector."""
    if new.all():
        return 0
    cnt = np.diff(np.append(np.flatnonzero(new), len(new))).astype(np.int64)
    return int((cnt * (cnt - 1) // 2).sum())


def _tau_a(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall tau-a, (concordant - discordant) / (N (N-1) / 2), for all row pairs.

    Each row of ``b`` is ranked once; each row of ``a`` is taken in the sorted order of
    ``b`` and needs one sort (:func:`_sort_ties`) and one O(N log N) discordant count
    (scipy's Fenwick tree). Rows run in threads: the sorts release the GIL, the counts not.
    """
    n = a.shape[1]
    tot = n * (n - 1) // 2
    out = np.empty((len(a), len(b)))
    for j, bv in enumerate(b):
        xb, order_b, xtie = _dense_sorted(bv)

        def one(i: int, j=j, xb=xb, order_b=order_b, xtie=xtie) -> None:
            if _kendall_dis is None:  # pragma: no cover - public fallback through tau-b
                import scipy.stats

                ytie = _dense_sorted(a[i])[2]
                tau_b = scipy.stats.kendalltau(a[i], b[j]).statistic
                out[i, j] = tau_b * np.sqrt((tot - xtie) * (tot - ytie)) / tot
                return
            if xtie:  # order by (x, y): no pair tied in x is then out of order in y
                ya, _, ytie = _dense_sorted(a[i])
                order, _ = _sort_ties((xb.astype(np.int64) * (n + 1) + ya).astype(np.float64))
                xs, ys = xb[order], ya[order]
                joint = np.r_[True, (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1]), True]
                cnt = np.diff(np.flatnonzero(joint)).astype(np.int64)
                ntie = int((cnt * (cnt - 1) // 2).sum())
            else:  # rank the row of a taken in the order of b: y in the order of x
                ys, _, ytie = _dense_sorted(a[i][order_b])
                ntie = 0
            dis = int(_kendall_dis(np.arange(1, n + 1, dtype=np.intp), ys))
            out[i, j] = (tot - xtie - ytie + ntie - 2 * dis) / tot

        _rows_parallel(one, len(a), n)
    return out


def _rank_torch(v, device: str) -> np.ndarray:
    """Average ranks (1-based) of the rows of ``v`` with ``torch.sort`` on ``device``."""
    import torch

    t = torch.as_tensor(np.ascontiguousarray(v), dtype=torch.float64, device=device)
    k, m = t.shape
    srt, order = torch.sort(t, dim=1)
    new = torch.ones_like(srt, dtype=torch.bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    group = torch.cumsum(new.flatten().long(), 0) - 1  # global tie-group id (rows never merge)
    counts = torch.bincount(group)
    starts = torch.nonzero(new.flatten()).squeeze(1) - torch.repeat_interleave(
        torch.arange(k, device=device) * m, new.sum(dim=1))
    avg = starts.double() + (counts.double() + 1) / 2
    ranks = torch.empty_like(t)
    ranks.scatter_(1, order, avg[group].view(k, m))
    return ranks.cpu().numpy()


def _zero_norm_error(name: str, func: str) -> ValueError:
    return ValueError(
        f"Invalid value for {name!r} in {func}(): an RDM with zero norm after centring "
        "(all dissimilarities equal), so the comparison is undefined. Expected RDMs "
        "with varying dissimilarities."
    )


def _rank_compare_direct(a, rb, method: str, func: str, swapped: bool) -> np.ndarray:
    """Spearman / rho-a of each row of ``a`` against a few centred rank rows ``rb``.

    Each row of ``a`` is sorted once and its centred ranks, in sorted order, are dotted with
    ``rb`` gathered in that order: no rank matrix is built.
    """
    m = a.shape[1]
    out = np.empty((len(a), len(rb)))
    nb = np.sqrt(np.einsum("ij,ij->i", rb, rb))
    if method == "spearman" and np.any(nb == 0):
        raise _zero_norm_error("a" if swapped else "b", func)
    plain = np.arange(1, m + 1, dtype=np.float64) - (m + 1) / 2.0

    def one(i: int) -> None:
        order, ties = _sort_row(a[i])
        if len(ties) == 0:
            r = plain
        else:
            new = np.ones(m, dtype=bool)
            new[ties + 1] = False
            starts = np.flatnonzero(new)
            counts = np.diff(np.append(starts, m))
            r = np.repeat(starts + (counts + 1) / 2.0 - (m + 1) / 2.0, counts)
        num = np.take(rb, order, axis=1) @ r
        if method == "spearman":
            na = np.sqrt(r @ r)
            if na == 0:
                raise _zero_norm_error("b" if swapped else "a", func)
            out[i] = num / (na * nb)
        else:
            out[i] = 12.0 * num / (m**3 - m)

    _rows_parallel(one, len(a), m)
    return out


def _rank_compare(a, b, method: str, func: str, device: str | None,
                  swapped: bool = False) -> np.ndarray:
    """Spearman / rho-a, ranking the larger stack in chunks (bounded memory)."""
    if len(b) > len(a):
        return _rank_compare(b, a, method, func, device, not swapped).T
    ranker = rank_average if device is None else (lambda v: _rank_torch(v, device))
    rb = _centre(ranker(b))
    if device is None and len(b) <= _DIRECT_MAX:
        return _rank_compare_direct(a, rb, method, func, swapped)
    n = a.shape[1]
    out = np.empty((len(a), len(b)))
    for start in range(0, len(a), _RANK_CHUNK):
        ra = _centre(ranker(a[start:start + _RANK_CHUNK]))
        if method == "spearman":
            out[start:start + _RANK_CHUNK] = (
                _cosine(rb, ra, func).T if swapped else _cosine(ra, rb, func))
        else:
            out[start:start + _RANK_CHUNK] = 12.0 * (ra @ rb.T) / (n**3 - n)
    return out


def _compare_vectors(a: np.ndarray, b: np.ndarray, method: str, func: str,
                     device: str | None = None) -> np.ndarray:
    if method == "cosine":
        return _cosine(a, b, func)
    if method == "pearson":
        return _cosine(_centre(a), _centre(b), func)
    if method in ("spearman", "rho_a"):
        return _rank_compare(a, b, method, func, device)
    if method == "tau_a":
        return _tau_a(a, b)
    if method in ("cosine_cov", "pearson_cov"):
        if method == "pearson_cov":
            a, b = _centre(a), _centre(b)
        Ga = _gram_from_vectors(a).reshape(len(a), -1)
        Gb = _gram_from_vectors(b).reshape(len(b), -1)
        return _cosine(Ga, Gb, func)
    return _bures(_gram_from_vectors(a), _gram_from_vectors(b))


def compare_rdms(
    a: Any,
    b: Any,
    method: Literal[
        "cosine", "pearson", "spearman", "rho_a", "tau_a", "cosine_cov", "pearson_cov", "bures"
    ] = "spearman",
    *,
    device: str | None = None,
) -> float | np.ndarray | xr.DataArray:
    """Similarity of RDMs (higher is more similar), one value per pair of RDMs.

    Parameters
    ----------
    a, b : array-like or xr.DataArray
        One RDM or a stack of RDMs each: square ``(n, n)`` or ``(k, n, n)``, upper-triangle
        vectors ``(n_pairs,)`` or ``(k, n_pairs)``, or DataArrays from :func:`rdm` (with any
        extra batch dims, e.g. ``model``). DataArrays with stimulus ids are joined on them.
    method : str
        - ``"cosine"``: cosine of the upper-triangle vectors.
        - ``"pearson"``: Pearson r of the vectors (rsatoolbox ``"corr"``).
        - ``"spearman"``: Pearson r of the ranks (ties averaged).
        - ``"rho_a"``: ``12 <ra - mean, rb - mean> / (N^3 - N)`` with ``N`` pairs (no tie
          correction; rsatoolbox ``"rho-a"``).
        - ``"tau_a"``: Kendall tau-a, ``(concordant - discordant) / (N (N-1) / 2)``.
        - ``"cosine_cov"``, ``"pearson_cov"``: cosine (after centring the vectors, for
          ``pearson_cov``) of the double-centred second-moment matrices
          ``G = -1/2 H D H``, i.e. the whitened comparison of Diedrichsen et al. (2020)
          under the RDM covariance of i.i.d. patterns (rsatoolbox ``"cosine_cov"`` and
          ``"corr_cov"`` with ``sigma_k=None``).
        - ``"bures"``: Bures similarity ``tr((Ga^1/2 Gb Ga^1/2)^1/2) / sqrt(tr Ga tr Gb)``
          (negative eigenvalues clipped to 0).

    device : str, optional
        Rank with ``torch.sort`` on this device (``"auto"``, ``"cpu"``, ``"cuda"``) for
        ``"spearman"`` and ``"rho_a"``; other methods run in numpy.

    Returns
    -------
    float, ndarray or xr.DataArray
        A float for one RDM against one; otherwise an array of shape
        ``batch(a) + batch(b)``, a DataArray when an input carries named batch dims.
    """
    check_option(method, COMPARE_METHODS, name="method", func="compare_rdms")
    va, sha, dima, coa, ida = as_rdm_vectors(a, name="a", func="compare_rdms")
    vb, shb, dimb, cob, idb = as_rdm_vectors(b, name="b", func="compare_rdms")
    if va.shape[1] != vb.shape[1]:
        raise DimensionError(
            f"compare_rdms(): 'a' has RDMs of {va.shape[1]} pairs and 'b' of {vb.shape[1]}. "
            "Expected RDMs over the same stimuli."
        )
    idx = align_stimuli(ida, idb, names=("a", "b"), func="compare_rdms",
                        n_a=va.shape[1], n_b=vb.shape[1])
    if idx is not None:
        sq = vector_squareform(vb)[:, idx][:, :, idx]
        vb = squareform_vector(sq)
    if np.isinf(va).any() or np.isinf(vb).any():
        raise ValueError(
            "Invalid value in compare_rdms(): infinite dissimilarities. Expected finite values "
            "(NaN marks entries to leave out)."
        )
    keep = ~(np.isnan(va).any(axis=0) | np.isnan(vb).any(axis=0))
    if not keep.all():
        if method in ("cosine_cov", "pearson_cov", "bures"):
            raise ValueError(
                f"Invalid value in compare_rdms(method={method!r}): NaN dissimilarities. "
                "Expected complete RDMs for the second-moment methods."
            )
        if keep.sum() < 2:
            raise ValueError(
                "Invalid value in compare_rdms(): fewer than 2 dissimilarities are finite in "
                "every RDM. Expected RDMs with finite entries."
            )
        va, vb = va[:, keep], vb[:, keep]
    if device is not None:
        from neuroalign._config import resolve_device

        device = resolve_device(device)
    sim = _compare_vectors(va, vb, method, "compare_rdms", device)
    out = sim.reshape(tuple(sha) + tuple(shb))
    if out.ndim == 0:
        return float(out)
    if dima or dimb:
        dims = tuple(dima or (f"a_{i}" for i in range(len(sha)))) + tuple(
            dimb or (f"b_{i}" for i in range(len(shb)))
        )
        if len(set(dims)) != len(dims):
            dims = tuple(f"{d}_a" for d in (dima or ())) + tuple(f"{d}_b" for d in (dimb or ()))
            coa = {f"{k}_a": (f"{k}_a", v.values) for k, v in coa.items()}
            cob = {f"{k}_b": (f"{k}_b", v.values) for k, v in cob.items()}
        return xr.DataArray(out, dims=dims, coords={**coa, **cob}, name=method)
    return out
