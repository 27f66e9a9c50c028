"""Exact average ranks and Kendall tau-a for long RDM vectors (the rank methods of
:func:`neuroalign.compare.compare_rdms`).

Ranks equal ``scipy.stats.rankdata`` exactly; tau-a equals rsatoolbox's. The sort maps the
values to integer keys (see :func:`_sort_ties`), which is much faster than ``np.argsort``.
"""

from __future__ import annotations

import sys

import numpy as np

from neuroalign._config import map_threads, thread_limits
from neuroalign._logging import get_logger

__all__ = ["rank_average", "rank_rows"]

log = get_logger(__name__)

_PARALLEL_MIN = 100_000  # rows at least this long are ranked in threads, one row per task
_BLOCKS_MIN = 1 << 20  # shorter rows, this many entries in all: in threads, blocks of rows


def _tau_kernel():
    """:mod:`neuroalign.compare._tau_kernel` (numba), imported here on first use (never at
    ``import neuroalign``); ``None`` without numba, or where numba finds no writable cache
    folder for the compiled code (it raises ``RuntimeError`` then)."""
    try:
        from neuroalign.compare import _tau_kernel
    except (ImportError, RuntimeError) as err:
        log.debug("tau-a counts pairs with scipy's count: %s", err)
        return None
    return _tau_kernel


def _kendall_dis():
    """The discordant-pair count ``count(y)``: pairs ``i < j`` with ``y[i] > y[j]`` of dense
    integer ranks.

    numba's compiled count (:func:`neuroalign.compare._tau_kernel.discordant`), which
    releases the GIL so that rows are counted in parallel; without numba, scipy's private
    ``_kendall_dis`` (the same count, holding the GIL); ``None`` if neither is available
    (then tau-a goes through ``scipy.stats.kendalltau``).
    """
    kernel = _tau_kernel()
    return _scipy_kendall_dis() if kernel is None else kernel.discordant


def _kendall_sorted(count):
    """The count from a sorting order and ties that goes with ``count`` (numba's
    :func:`neuroalign.compare._tau_kernel.discordant_sorted`: no ranks needed), or ``None``
    (any other count: tau-a counts dense ranks)."""
    kernel = _tau_kernel()
    if kernel is None or count is not kernel.discordant:
        return None
    return kernel.discordant_sorted


def _scipy_kendall_dis():
    """scipy's O(n log n) discordant-pair count as ``count(y)`` (``None``: not available)."""
    try:
        from scipy.stats._stats import _kendall_dis as dis
    except ImportError:  # pragma: no cover - depends on the scipy version
        return None

    def count(y: np.ndarray) -> int:
        y = np.ascontiguousarray(y, dtype=np.intp)
        if len(y) < 2:
            return 0
        return int(dis(np.arange(1, len(y) + 1, dtype=np.intp), y))

    return count


def row_threads(n_rows: int, size: int) -> int:
    """The threads :func:`_rows_parallel` runs ``n_rows`` rows of ``size`` entries in: the
    limit (:func:`neuroalign._config.max_threads`) for rows of at least ``_PARALLEL_MIN``
    entries, or for many rows of at least ``_BLOCKS_MIN`` entries in all; else 1."""
    from neuroalign._config import max_threads  # looked up at each call (tests patch it)

    if size >= _PARALLEL_MIN or (n_rows > 1 and n_rows * size >= _BLOCKS_MIN):
        return max_threads()
    return 1


def _rows_parallel(func, n_rows: int, size: int) -> None:
    """Run ``func(r)`` for every row, in threads where :func:`row_threads` says (numpy
    sorts release the GIL): long rows one per task, many shorter rows in contiguous blocks
    of rows, two blocks per thread (a task per short row would spend its time waiting for
    the GIL between numpy calls).

    The pool has at most :func:`neuroalign._config.max_threads` workers (the cores, or the
    limit of an active :func:`neuroalign.thread_limits` block), and while it runs, BLAS,
    OpenMP and torch get ``max_threads() // workers`` threads in each worker, so workers
    times their threads never exceed the limit.
    """
    threads = row_threads(n_rows, size)
    if threads > 1 and size >= _PARALLEL_MIN:
        map_threads(func, range(n_rows))
    elif threads > 1:
        edges = np.linspace(0, n_rows, min(n_rows, 2 * threads) + 1).astype(np.int64)

        def block(b: int) -> None:
            for r in range(edges[b], edges[b + 1]):
                func(r)

        map_threads(block, range(len(edges) - 1))
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


def _get_torch():
    """torch when the process has already imported it, else ``False``.

    Never imported here: with numpy 2's vectorised sorts the packed 64-bit keys sort as fast
    as torch's radix sort or faster (5e4 to 5e6 entries, 2 cores), which does not pay for
    the second or so that importing torch takes.
    """
    torch = sys.modules.get("torch")
    return torch if torch is not None else False


def _torch_argsort_int32(key: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(sorted keys, stable order)`` of int32 keys by ``torch.sort`` with one thread.

    On CPU torch sorts 1-D integer tensors of at least 32768 entries with a stable
    key-value radix sort (fbgemm); with int32 keys it needs four passes and returns the permutation itself, so no index has to be
    packed into the keys. Used only when torch is already imported. Its OpenMP threads
    spin against the caller's threads (``_rows_parallel``) and are much slower on a loaded
    machine, so the sort runs with one torch thread (:func:`neuroalign.thread_limits`,
    which restores the setting found outside all concurrent calls). ``None`` when torch is
    not imported.
    """
    torch = _get_torch()
    if not torch:
        return None
    with thread_limits(1, blas=False):
        srt, idx = torch.sort(torch.from_numpy(key), stable=True)
    return srt.numpy(), idx.numpy()


def _sort_ties(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorting permutation of a float64 vector and the tied positions of the sorted order.

    Returns ``order`` (``x[order]`` is non-decreasing; tied values in any order) and the
    positions ``k`` with ``x[order[k]] == x[order[k + 1]]``, both exact.

    Each value is mapped to an integer key by the monotone map ``floor((x - min) * scale)``
    (float subtraction, product and floor are all non-decreasing, so ``x_i <= x_j`` implies
    ``key_i <= key_j``) and the keys are sorted, which is much faster than ``np.argsort``
    of the floats. Long rows use 31-bit int32 keys and torch's radix sort, which returns the
    permutation (:func:`_torch_argsort_int32`), when torch is already imported; otherwise the key is
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


_ROWS_BLOCK = 1 << 22  # entries ranked together by rank_rows (short rows)
_ROWS_MAX = 1024  # rows shorter than this are ranked together by rank_rows; longer rows
# one by one with integer keys, which is faster from about 1000 entries on (measured,
# 2 million entries in all: 45 entries 0.21 s vs 1.43 s, 1225: 0.083 vs 0.088, 4950:
# 0.171 vs 0.050)


def rank_average(v: np.ndarray) -> np.ndarray:
    """Ranks along the last axis with ties averaged (= ``scipy.stats.rankdata``), 1-based.

    Many short rows (under ``_ROWS_MAX`` entries) are ranked together, a block of rows at a
    time, by :func:`rank_rows` (no Python loop over rows); longer rows one by one with
    integer-key sorts (in threads when long).
    """
    v = np.asarray(v)
    flat = v.reshape(-1, v.shape[-1])
    out = np.empty(flat.shape, dtype=np.float64)
    m = flat.shape[1]
    if 0 < m < _ROWS_MAX and len(flat) > 1 and flat.dtype.kind in "fiub" and (
            flat.dtype.itemsize <= 8 if flat.dtype.kind == "f" else flat.dtype.itemsize <= 4):
        step = max(1, _ROWS_BLOCK // m)
        for start in range(0, len(flat), step):
            out[start:start + step] = rank_rows(flat[start:start + step])
        return out.reshape(v.shape)

    def one(r: int) -> None:
        order, ties = _sort_row(flat[r])
        _average_from_ties(order, ties, out[r])

    _rows_parallel(one, len(flat), m)
    return out.reshape(v.shape)


def rank_rows(v: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ``scipy.stats.rankdata`` per row) of many short rows at once.

    One ``argsort`` along the rows and a few whole-array passes: no Python loop over rows
    (for searchlights: hundreds of thousands of RDM vectors of a few thousand entries). Ties
    are found on the sorted values and get the mean of their positions, exactly; NaN sort
    last and are ranked as values (callers mask such rows). Long rows are better served by
    :func:`rank_average` (integer-key radix sorts).
    """
    v = np.asarray(v, dtype=np.float64)
    k, m = v.shape
    out = np.empty((k, m))
    if m == 0 or k == 0:
        return out
    order = np.argsort(v, axis=1)
    srt = np.sort(v, axis=1)  # = v[order] per row (faster than take_along_axis)
    new = np.ones((k, m), dtype=bool)
    np.not_equal(srt[:, 1:], srt[:, :-1], out=new[:, 1:])
    del srt
    order += (np.arange(k) * m)[:, None]
    flat = out.ravel()
    tied = ~new.all(axis=1)
    if not tied.any():  # no ties: ranks are the positions
        flat[order.ravel()] = np.tile(np.arange(1.0, m + 1), k)
        return out
    # tie groups on the flattened rows (each row starts and ends a group, so no group
    # crosses rows): each position gets the mean of its group's first and last positions
    newf = new.ravel()
    pos = np.arange(k * m, dtype=np.float64)
    first = np.maximum.accumulate(np.where(newf, pos, 0.0))
    endf = np.empty(k * m, dtype=bool)
    endf[:-1] = newf[1:]
    endf[-1] = True
    last = np.minimum.accumulate(np.where(endf, pos, np.inf)[::-1])[::-1]
    first += last
    first *= 0.5
    first -= (np.arange(k) * m).repeat(m) - 1.0
    flat[order.ravel()] = first
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
    (:func:`_kendall_dis`, compiled by numba: without ties in ``b``, counted straight from
    the sorting order, :func:`_kendall_sorted`). Rows run in threads: the sorts and the
    compiled count release the GIL (scipy's count, the fallback without numba, does not).
    """
    n = a.shape[1]
    tot = n * (n - 1) // 2
    out = np.empty((len(a), len(b)))
    kendall_dis = _kendall_dis()
    sorted_count = _kendall_sorted(kendall_dis)
    for j, bv in enumerate(b):
        xb, order_b, xtie = _dense_sorted(bv)

        def one(i: int, j=j, xb=xb, order_b=order_b, xtie=xtie) -> None:
            if kendall_dis is None:  # pragma: no cover - public fallback through tau-b
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
                y = a[i][order_b]
                if sorted_count is not None:  # counted from y's sorting order if stable
                    order, ties = _sort_row(y)
                    res = sorted_count(np.ascontiguousarray(order, dtype=np.int64), ties)
                    if res is not None:
                        dis, ytie = res
                        out[i, j] = (tot - xtie - ytie - 2 * dis) / tot
                        return
                ys, _, ytie = _dense_sorted(y)
                ntie = 0
            dis = kendall_dis(ys)
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
