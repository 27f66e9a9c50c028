"""Compiled discordant-pair count for Kendall tau-a (numba; imported only when needed).

:func:`discordant` counts the pairs ``i < j`` with ``y[i] > y[j]`` (strictly; equal values
count 0), the count scipy's private ``_kendall_dis`` makes with ``x = 1..N``, compiled with
``nogil=True`` so that the models of :func:`neuroalign.compare.compare_rdms` are counted in
parallel threads (scipy's holds the GIL). ``cache=True``: compiled once per installation,
then loaded from numba's cache.

The values are split into the high and low halves of their bits, so that the counters stay
in the L1 cache (a few thousand each) instead of one tree of N counters whose random
accesses miss the caches: a pair ``i < j`` is discordant if the high part of ``y[i]`` is
larger, or the high parts are equal and the low part of ``y[i]`` is larger. The first kind
is counted over the values in their order, the second part by part after a stable counting
sort by high part (which keeps the order within each part). Each count walks a complete
binary tree of counters from the root down the bits of the value, adding the count of the
right sibling wherever the value goes left: a fixed number of steps without data-dependent
branches. On 2 million values (the loaded 2-core development machine) this takes 0.05 to
0.08 s, against 0.26 to 0.35 s for a Fenwick tree over all N values, like scipy's.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["discordant", "discordant_sorted"]


@njit(nogil=True, cache=True)
def _count_greater(cnt, v, bits):  # pragma: no cover - compiled
    """Add ``v`` (``bits`` bits) to the tree of counters ``cnt`` (heap order, root 1);
    return how many values added before are larger.

    Only right children hold counts (a left child's is never read): at each level the
    right child's count is read, added to the result where ``v`` goes left, and incremented
    where ``v`` goes right, one load and one store.
    """
    greater = 0
    node = 1
    for level in range(bits - 1, -1, -1):
        bit = (v >> level) & 1
        right = 2 * node + 1
        c = cnt[right]
        greater += c & (bit - 1)  # bit 0: all ones, the right subtree's values are larger
        cnt[right] = c + bit
        node = right - 1 + bit
    return greater


@njit(nogil=True, cache=True)
def _discordant_split(y, low_bits, dtype):  # pragma: no cover - compiled; see discordant()
    """Pairs ``i < j`` with ``y[i] > y[j]``; values ``>= 0``, split at ``low_bits``;
    counters of ``dtype``."""
    n = len(y)
    top = 0
    for i in range(n):
        top = max(top, y[i])
    high_bits = 0
    while (top >> (low_bits + high_bits)) > 0:
        high_bits += 1
    n_high = (top >> low_bits) + 1
    mask = (1 << low_bits) - 1
    start = np.zeros(n_high + 1, dtype=np.int64)  # start of each high part when placed
    for i in range(n):
        start[(y[i] >> low_bits) + 1] += 1
    for h in range(n_high):
        start[h + 1] += start[h]
    fill = start[:-1].copy()
    low = np.empty(n, dtype=np.uint32)
    cnt = np.zeros(2 << high_bits, dtype=dtype)
    dis = 0
    for i in range(n):  # pairs whose high parts differ
        v = y[i]
        h = v >> low_bits
        dis += _count_greater(cnt, h, high_bits)
        low[fill[h]] = v & mask
        fill[h] += 1
    cnt = np.zeros(2 << low_bits, dtype=dtype)
    for h in range(n_high):  # pairs within one high part, in their original order
        for k in range(start[h], start[h + 1]):
            dis += _count_greater(cnt, np.int64(low[k]), low_bits)
        cnt[:] = 0
    return dis


@njit(nogil=True, cache=True)
def _tied_pairs_if_ascending(order, ties):  # pragma: no cover - compiled
    """Tied pairs, or -1 if the positions in ``order`` do not ascend within a tie group.

    A tie group is a run of consecutive sorted positions ``t, t + 1, ...`` in ``ties``
    (``ties`` holds ``k`` where the ``k``-th sorted value equals the next).
    """
    pairs = 0
    k = 0
    m = len(ties)
    while k < m:
        s = ties[k]
        while k + 1 < m and ties[k + 1] == ties[k] + 1:
            k += 1
        e = ties[k] + 1  # the group is order[s..e]
        k += 1
        c = e - s + 1
        pairs += c * (c - 1) // 2
        for t in range(s, e):
            if order[t] > order[t + 1]:
                return -1
    return pairs


def _low_bits_dtype(n: int, top: int):
    """Split of ``top``'s bits (low half, at most 31: fits the uint32 buffer) and the
    counters' dtype: int32 (4x faster than int64 here), int64 only where a count could
    overflow."""
    return max(1, (top.bit_length() + 1) // 2), np.int32 if n < 2**31 else np.int64


def discordant(y: np.ndarray) -> int:
    """Pairs ``i < j`` with ``y[i] > y[j]`` of non-negative integers (e.g. dense ranks)."""
    y = np.ascontiguousarray(y, dtype=np.int64)
    if len(y) < 2:
        return 0
    lo, top = int(y.min()), int(y.max())
    if lo < 0 or top >= 2**62:
        raise ValueError(
            f"discordant() needs integer values from 0 to 2**62; got {lo!r} to {top!r}.")
    return int(_discordant_split(y, *_low_bits_dtype(len(y), top)))


def discordant_sorted(order: np.ndarray, ties: np.ndarray) -> tuple[int, int] | None:
    """Discordant and tied pairs of a vector ``g`` given its stable sorting order and ties.

    ``order`` is a permutation with ``g[order]`` non-decreasing and ``ties`` the positions
    ``k`` where ``g[order[k]] == g[order[k + 1]]`` (as :func:`neuroalign.compare._ranks.
    _sort_ties` returns them). The pairs ``i < j`` with ``g[i] > g[j]`` are the inversions of
    ``order`` when the positions ascend within each tie group (tied pairs are then never
    inverted), so no ranks are needed. Returns ``(discordant, tied)``, or ``None`` where the
    positions do not ascend within a tie group (the order was not stable; count ranks then).
    """
    order = np.asarray(order)
    if order.dtype != np.int64 or not order.flags.c_contiguous:
        raise TypeError("discordant_sorted() needs a contiguous int64 'order'; got "
                        f"{order.dtype!r}.")
    n = len(order)
    tied = int(_tied_pairs_if_ascending(order, np.ascontiguousarray(ties, np.int64)))
    if tied < 0:
        return None
    if n < 2:
        return 0, tied
    return int(_discordant_split(order, *_low_bits_dtype(n, n - 1))), tied
