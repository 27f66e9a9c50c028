"""The compiled discordant-pair count of tau-a (numba) against a brute-force count, scipy's
count (the fallback without numba) and rsatoolbox / scipy's Kendall tau, ties of every kind."""

import sys

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

import neuroalign.compare._ranks as cr  # noqa: E402
from neuroalign.compare import compare_rdms  # noqa: E402
from neuroalign.compare._tau_kernel import (  # noqa: E402
    _discordant_split,
    discordant,
    discordant_sorted,
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)
seeds = st.integers(0, 2**31 - 1)


def brute_discordant(y) -> int:
    y = np.asarray(y)
    i, j = np.triu_indices(len(y), 1)
    return int((y[i] > y[j]).sum())


def brute_tau_a(a, b) -> float:
    i, j = np.triu_indices(len(a), 1)
    return float((np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])).sum() / len(i))


@pytest.mark.parametrize("y, expected", [
    ([], 0), ([5], 0), ([1, 2], 0), ([2, 1], 1), ([1, 1], 0), ([3, 2, 1], 3), ([1, 3, 2], 1),
    ([2, 2, 1], 2), ([2, 1, 1], 2), ([1, 1, 1], 0), ([2, 1, 2], 1),
    (list(range(50, 0, -1)), 50 * 49 // 2), (list(range(1, 51)), 0), ([7] * 40, 0),
])
def test_discordant_small_known_counts(y, expected):
    assert discordant(np.array(y, dtype=np.intp)) == expected
    assert cr._scipy_kendall_dis()(np.array(y, dtype=np.intp)) == expected


@SETTINGS
@given(seed=seeds, n=st.integers(0, 300), top=st.sampled_from([1, 2, 3, 4, 5, 16, 17, 255,
                                                               256, 257, 1000, 10**6, 2**30]))
def test_discordant_equals_brute_force_with_ties(seed, n, top):
    """Values 1..top with many ties (small top) or sparse over many high parts (large top)."""
    y = np.random.default_rng(seed).integers(1, top + 1, n)
    expected = brute_discordant(y)
    assert discordant(y) == expected
    assert cr._scipy_kendall_dis()(y) == expected


@SETTINGS
@given(seed=seeds, n=st.integers(2, 200), low_bits=st.integers(1, 9))
def test_every_split_of_the_bits_gives_the_same_count(seed, n, low_bits):
    """Values on both sides of the split between high and low parts, any split."""
    y = np.random.default_rng(seed).integers(1, 600, n).astype(np.int64)
    assert _discordant_split(y, low_bits, np.int32) == brute_discordant(y)


def test_int64_counters_give_the_same_count():
    """The counters of more than 2**31 values (int64), checked on a small input."""
    y = np.random.default_rng(5).integers(1, 3000, 2000).astype(np.int64)
    assert _discordant_split(y, 6, np.int64) == _discordant_split(y, 6, np.int32) == (
        brute_discordant(y))


def test_discordant_of_permutations_equals_scipy_for_other_seeds():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(5_000, 20_000))
        y = rng.permutation(n) + 1
        y_tied = rng.integers(1, 50, n)  # heavy ties
        for v in (y, y_tied, y[::-1].copy(), np.sort(y_tied)):
            assert discordant(v) == cr._scipy_kendall_dis()(v)


@SETTINGS
@given(seed=seeds, n=st.integers(0, 200), top=st.sampled_from([1, 2, 3, 10, 1000]),
       shuffle=st.booleans())
def test_discordant_from_the_sorting_order_equals_brute_force(seed, n, top, shuffle):
    """Discordant and tied pairs from a stable sorting order; ``None`` where the tie groups
    come in another order (shuffled within ties)."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, top, n).astype(float)
    order = np.argsort(g, kind="stable")
    s = g[order]
    ties = np.flatnonzero(s[1:] == s[:-1])
    if shuffle:  # any order within each tie group
        order = order[np.lexsort((rng.random(n), s))]
    i, j = np.triu_indices(n, 1)
    res = discordant_sorted(order.astype(np.int64), ties)
    if shuffle and any(np.any(np.diff(order[s == v]) < 0) for v in np.unique(s)):
        assert res is None  # not stable: the caller counts ranks instead
        return
    assert res == (int((g[i] > g[j]).sum()), int((g[i] == g[j]).sum()))


def test_tau_a_with_an_unstable_sorting_order_counts_ranks(monkeypatch):
    """A sort that returns tied values in any order (the ``argsort`` path): tau-a falls back
    from the sorting order to dense ranks, same values."""
    rng = np.random.default_rng(8)
    a, b = rng.integers(0, 3, (3, 400)).astype(float), rng.random(400)
    expected = [brute_tau_a(r, b) for r in a]

    def unstable(x):
        order = np.lexsort((rng.random(len(x)), x))  # ties in random order
        s = x[order]
        return order, np.flatnonzero(s[1:] == s[:-1])

    monkeypatch.setattr(cr, "_sort_row", unstable)
    calls = []
    real = cr._dense_sorted
    monkeypatch.setattr(cr, "_dense_sorted", lambda x: calls.append(1) or real(x))
    np.testing.assert_allclose(cr._tau_a(a, b[None])[:, 0], expected, atol=1e-14)
    assert len(calls) == 1 + 3  # b, then every row of a (their tie groups come unsorted)


def test_discordant_sorted_refuses_other_integer_types():
    with pytest.raises(TypeError, match=r"needs a contiguous int64 'order'; got dtype\('int32'\)"):
        discordant_sorted(np.arange(3, dtype=np.int32), np.array([], dtype=np.int64))


def test_discordant_refuses_negative_values():
    with pytest.raises(ValueError, match=r"needs integer values from 0 to 2\*\*62; got -1 to 3"):
        discordant(np.array([3, -1, 1]))


def test_discordant_releases_the_gil_and_is_cached():
    assert _discordant_split.targetoptions["nogil"] is True
    assert _discordant_split._cache.__class__.__name__ == "FunctionCache"


def _tied(rng, kind, n):
    if kind == "ties":
        return rng.integers(0, 4, n).astype(float)
    if kind == "equal_runs":  # long runs of one value beside distinct values
        v = rng.random(n)
        v[rng.random(n) < 0.5] = 0.5
        return v
    return rng.standard_normal(n)


tie_kinds = st.sampled_from(["ties", "equal_runs", "distinct"])


@SETTINGS
@given(seed=seeds, ka=tie_kinds, kb=tie_kinds, n=st.integers(2, 120))
def test_tau_a_ties_in_x_only_y_only_or_both(seed, ka, kb, n):
    """tau-a with ties in the model only, the data only, both or neither: the pair count,
    scipy's tau-b rescaled to tau-a, and the scipy-count fallback, on the same inputs."""
    rng = np.random.default_rng(seed)
    a, b = _tied(rng, ka, n), _tied(rng, kb, n)
    ours = cr._tau_a(a[None], b[None])[0, 0]
    assert ours == pytest.approx(brute_tau_a(a, b), abs=1e-14)
    i, j = np.triu_indices(n, 1)
    tot, ta, tb = len(i), int((a[i] == a[j]).sum()), int((b[i] == b[j]).sum())
    if ta < tot and tb < tot:
        tau_b = scipy.stats.kendalltau(a, b).statistic
        assert ours == pytest.approx(tau_b * np.sqrt((tot - ta) * (tot - tb)) / tot, abs=1e-12)
    kernel = cr._kendall_dis
    try:
        cr._kendall_dis = cr._scipy_kendall_dis
        assert cr._tau_a(a[None], b[None])[0, 0] == ours  # bit-identical counts
    finally:
        cr._kendall_dis = kernel


def test_tau_a_all_equal_reversed_and_n_two():
    a = np.arange(10.0)
    assert cr._tau_a(a[None], a[None])[0, 0] == 1.0
    assert cr._tau_a(a[None], a[None, ::-1])[0, 0] == -1.0
    assert cr._tau_a(np.ones((1, 10)), a[None])[0, 0] == 0.0
    assert cr._tau_a(np.array([[1.0, 2.0]]), np.array([[3.0, 4.0]]))[0, 0] == 1.0
    assert cr._tau_a(np.array([[1.0, 2.0]]), np.array([[4.0, 3.0]]))[0, 0] == -1.0
    assert cr._tau_a(np.array([[1.0, 1.0]]), np.array([[4.0, 3.0]]))[0, 0] == 0.0


def test_tau_a_long_rows_in_threads_equal_the_scipy_count(monkeypatch):
    """Rows counted in parallel threads (numba, no GIL) give scipy's counts exactly, rows
    with ties in the data, in the models and neither."""
    rng = np.random.default_rng(3)
    n = 20_000
    data = rng.random(n)
    models = data[None] + rng.random((5, n)) * np.array([0.1, 1, 10, 0, 0])[:, None]
    models[3] = np.round(models[3], 2)  # ties in y
    models[4] = rng.integers(0, 3, n)
    monkeypatch.setattr(cr, "_PARALLEL_MIN", 1)
    for b in (data, np.round(data, 2)):  # ties in x
        ours = compare_rdms(models, b, "tau_a")
        monkeypatch.setattr(cr, "_kendall_dis", cr._scipy_kendall_dis)
        ref = compare_rdms(models, b, "tau_a")
        monkeypatch.undo()
        monkeypatch.setattr(cr, "_PARALLEL_MIN", 1)
        np.testing.assert_array_equal(ours, ref)
        i = rng.choice(n, 300, replace=False)
        assert ours[4] != 0
        np.testing.assert_allclose(compare_rdms(models[:, i], b[i], "tau_a"),
                                   [brute_tau_a(m[i], b[i]) for m in models], atol=1e-14)


@pytest.mark.parametrize("error", [ImportError, RuntimeError])
def test_without_a_usable_numba_tau_a_uses_scipys_count(monkeypatch, error):
    """numba's import fails, or it finds no writable cache folder (RuntimeError at import of
    the kernel): scipy's count, the same values."""
    rng = np.random.default_rng(6)
    a, b = rng.random((2, 300)), rng.random(300)
    expected = compare_rdms(a, b, "tau_a")

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name == "neuroalign.compare._tau_kernel":
                raise error("no cache locator")
            return None

    monkeypatch.delitem(sys.modules, "neuroalign.compare._tau_kernel")
    monkeypatch.delattr(sys.modules["neuroalign.compare"], "_tau_kernel", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Refuse(), *sys.meta_path])
    assert cr._tau_kernel() is None
    count = cr._kendall_dis()
    assert count.__qualname__.startswith("_scipy_kendall_dis")
    assert cr._kendall_sorted(count) is None
    np.testing.assert_array_equal(compare_rdms(a, b, "tau_a"), expected)


@pytest.mark.parametrize("torch_sort", [False, True])
def test_tau_a_counts_from_the_sorting_order_of_the_key_sorts(monkeypatch, torch_sort):
    """The integer-key sorts (packed 64-bit keys; torch's radix sort) are stable, so tau-a
    counts straight from their order (no ranks), ties and near-ties included."""
    if torch_sort:
        pytest.importorskip("torch")
        monkeypatch.setattr(cr, "_TORCH_SORT_MIN", 1)
    else:
        monkeypatch.setattr(cr, "_get_torch", lambda: False)
    rng = np.random.default_rng(9)
    b = rng.random(300)
    a = np.stack([np.round(b + rng.random(300), 1), b + rng.integers(0, 2, 300) * 1e-16,
                  rng.integers(0, 2, 300).astype(float), np.r_[b[:-1], 1e9]])
    calls = []
    real = cr._dense_sorted
    monkeypatch.setattr(cr, "_dense_sorted", lambda x: calls.append(1) or real(x))
    np.testing.assert_allclose(cr._tau_a(a, b[None])[:, 0], [brute_tau_a(r, b) for r in a],
                               atol=1e-14)
    assert len(calls) == 1  # b only
