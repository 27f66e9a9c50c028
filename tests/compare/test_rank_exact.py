"""The fast rank sort of compare_rdms is exact: ranks equal scipy's, tau-a equals rsatoolbox's.

The sort maps values to truncated integer keys, so values closer than the key resolution
share a key; these tests pin exact ties (integer-valued RDMs), near-ties a few ulps apart,
and ranges whose outliers make most values share keys (the re-sorting path).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rsatoolbox.rdm.compare import _tau_a as rsa_tau_a
from scipy.stats import rankdata

from neuroalign.compare import compare_rdms
from neuroalign.compare._ranks import _sort_ties, _tau_a, rank_average

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
seeds = st.integers(0, 2**31 - 1)


def _vector(rng, kind, n):
    """Generated values with many exact ties or near-ties."""
    if kind == "integers":
        return rng.integers(0, 7, n).astype(float)
    if kind == "ulps":  # values 0..3 ulps apart, around 1
        return 1.0 + rng.integers(0, 4, n) * np.finfo(float).eps
    if kind == "outlier":  # one huge value: every other value shares a key with its neighbours
        v = rng.random(n)
        v[rng.integers(n)] = 1e300
        return v
    if kind == "signed_zero":
        return rng.choice([-0.0, 0.0, 1.0, -1.0, 5e-324], n)
    if kind == "rounded":
        return np.round(rng.standard_normal(n), 1)
    if kind == "tiny_span":  # range near the smallest normal (scale overflows)
        return rng.integers(0, 5, n) * 5e-324
    return rng.standard_normal(n) ** 3


kinds = st.sampled_from(
    ["integers", "ulps", "outlier", "signed_zero", "rounded", "tiny_span", "continuous"])


@SETTINGS
@given(seed=seeds, kind=kinds, n=st.integers(1, 400))
def test_rank_average_equals_rankdata_exactly(seed, kind, n):
    v = _vector(np.random.default_rng(seed), kind, n)
    np.testing.assert_array_equal(rank_average(v), rankdata(v))


@SETTINGS
@given(seed=seeds, kind=kinds, n=st.integers(2, 300))
def test_sorted_order_and_ties_are_exact(seed, kind, n):
    v = _vector(np.random.default_rng(seed), kind, n)
    order, ties = _sort_ties(v)
    s = v[order]
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.all(s[1:] >= s[:-1])
    np.testing.assert_array_equal(ties, np.flatnonzero(s[1:] == s[:-1]))


@SETTINGS
@given(seed=seeds, kind_a=kinds, kind_b=kinds, n=st.integers(2, 200))
def test_tau_a_equals_rsatoolbox_with_ties(seed, kind_a, kind_b, n):
    rng = np.random.default_rng(seed)
    a, b = _vector(rng, kind_a, n), _vector(rng, kind_b, n)
    if np.all(a == a[0]) or np.all(b == b[0]):
        return
    assert _tau_a(a[None], b[None])[0, 0] == pytest.approx(rsa_tau_a(a, b), abs=1e-12)


@SETTINGS
@given(seed=seeds, kind_a=kinds, kind_b=kinds, n=st.integers(2, 60))
def test_tau_a_equals_pair_count(seed, kind_a, kind_b, n):
    """tau-a from its definition: (concordant - discordant) over all N (N-1) / 2 pairs."""
    rng = np.random.default_rng(seed)
    a, b = _vector(rng, kind_a, n), _vector(rng, kind_b, n)
    i, j = np.triu_indices(n, 1)
    s = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
    assert _tau_a(a[None], b[None])[0, 0] == pytest.approx(s.sum() / len(s), abs=1e-12)


def test_long_rows_with_near_ties_and_ties_match_scipy():
    """Rows long enough to use the threads and 43-bit keys, with collisions of every kind."""
    rng = np.random.default_rng(0)
    n = 300_000
    base = rng.random(n)
    rows = np.stack([
        base,
        base + rng.integers(0, 3, n) * 1e-15,  # near-ties below the key resolution
        np.round(base, 4),  # exact ties
        np.r_[base[:-1], 1e9],  # an outlier: coarse keys, many runs re-sorted
    ])
    np.testing.assert_array_equal(rank_average(rows), rankdata(rows, axis=1))


def test_spearman_and_tau_a_of_tied_model_rdms_match_rsatoolbox():
    rsatoolbox = pytest.importorskip("rsatoolbox")
    rng = np.random.default_rng(1)
    n_pairs = 20 * 19 // 2
    data = rng.random(n_pairs)
    models = np.stack([rng.integers(0, 2, n_pairs).astype(float),  # a categorical model
                       np.round(data + rng.random(n_pairs), 1),
                       data + rng.integers(0, 2, n_pairs) * np.finfo(float).eps])
    for ours, theirs in (("spearman", "spearman"), ("tau_a", "tau-a")):
        ref = rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(models),
                                     rsatoolbox.rdm.RDMs(data[None]), method=theirs)[:, 0]
        np.testing.assert_allclose(compare_rdms(models, data, ours), ref, rtol=1e-12)


@SETTINGS
@given(seed=seeds, kind=kinds, n=st.integers(2, 300))
def test_torch_key_sort_order_and_ties_are_exact(seed, kind, n):
    """The 31-bit int32 keys sorted by torch (long rows), forced on short rows."""
    from unittest import mock

    import neuroalign.compare._ranks as cr

    v = _vector(np.random.default_rng(seed), kind, n)
    with mock.patch.object(cr, "_TORCH_SORT_MIN", 1):
        order, ties = _sort_ties(v)
        ranks = rank_average(v)
    s = v[order]
    assert np.array_equal(np.sort(order), np.arange(n))
    assert np.all(s[1:] >= s[:-1])
    np.testing.assert_array_equal(ties, np.flatnonzero(s[1:] == s[:-1]))
    np.testing.assert_array_equal(ranks, rankdata(v))


def test_torch_key_sort_long_rows_keep_thread_count():
    """Long rows (torch radix sort, ranked in threads): exact ranks for every fallback
    (heavy tails and an outlier overflow the 31-bit keys), torch's thread count unchanged."""
    import threading

    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    n = 200_000
    base = rng.random(n)
    rows = np.stack([
        base + rng.random(n),
        base + rng.integers(0, 3, n) * 1e-15,
        rng.integers(0, 2, n).astype(float),
        rng.standard_normal(n) ** 3,  # heavy tails: many shared 31-bit keys
        np.r_[base[:-1], 1e9],  # most values share keys even with 64-bit keys
    ])
    before = torch.get_num_threads()
    np.testing.assert_array_equal(rank_average(rows), rankdata(rows, axis=1))
    assert torch.get_num_threads() == before
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert seen == [before]


def test_rank_rows_equals_rankdata_per_row():
    import scipy.stats

    from neuroalign.compare._ranks import rank_rows

    rng = np.random.default_rng(11)
    cases = [rng.standard_normal((30, 200)), rng.integers(0, 4, (30, 200)).astype(float),
             np.round(rng.standard_normal((20, 9)), 1), np.ones((3, 6)),
             rng.standard_normal((4, 1)), np.r_[rng.standard_normal((1, 50)),
                                                np.full((1, 50), 2.0)]]
    for v in cases:  # no ties, heavy ties, some ties, all tied, one entry, mixed rows
        assert np.array_equal(rank_rows(v), scipy.stats.rankdata(v, axis=1))


@pytest.mark.parametrize("m", [7, 300, 1500])  # ranked together, and row by row
def test_rank_average_of_many_rows_equals_rankdata(m, monkeypatch):
    from neuroalign.compare import _ranks

    monkeypatch.setattr(_ranks, "_ROWS_BLOCK", 900)  # several blocks of rows
    rng = np.random.default_rng(m)
    v = np.round(rng.standard_normal((40, m)), 1)  # ties
    v[3] = 1.0  # a constant row
    assert np.array_equal(rank_average(v), rankdata(v, axis=1))
    assert np.array_equal(rank_average(v.reshape(4, 10, m)), rankdata(v, axis=1).reshape(4, 10, m))


@pytest.mark.parametrize("n_rows", [2, 5, 41])
def test_many_medium_rows_ranked_in_blocks_of_threads_equal_rankdata(n_rows, monkeypatch, two_cores):
    """Rows too short for a thread each but many (``_BLOCKS_MIN`` entries in all) are
    ranked in threads, contiguous blocks of rows per task: every row once, in its place,
    whatever the number of rows against the blocks; Spearman of such rows as scipy's."""
    import scipy.stats

    from neuroalign import thread_limits
    from neuroalign.compare import _ranks

    monkeypatch.setattr(_ranks, "_BLOCKS_MIN", 1)
    rng = np.random.default_rng(n_rows)
    v = np.round(rng.standard_normal((n_rows, 1500)), 1)  # ties
    v[1] = 1.0  # a constant row
    with thread_limits(2):
        assert _ranks.row_threads(n_rows, 1500) == 2
        assert np.array_equal(rank_average(v), rankdata(v, axis=1))
        data = rng.standard_normal(1500)
        got = compare_rdms(v[2:] if n_rows > 2 else v[:1], data, "spearman")
    want = [scipy.stats.spearmanr(row, data).statistic for row in (v[2:] if n_rows > 2 else v[:1])]
    np.testing.assert_allclose(got.ravel(), want, rtol=1e-12, atol=1e-14)
    monkeypatch.setattr(_ranks, "_BLOCKS_MIN", 1 << 20)
    assert _ranks.row_threads(n_rows, 1500) == 1  # few entries: one thread
