"""The correlation RDM is accumulated over channel blocks: rsatoolbox's values, no
full-size temporary of the data."""

import tracemalloc

import numpy as np
import pytest
import rsatoolbox

from neuroalign.compare import _rdm, rdm


def _rsa_corr(X):
    ds = rsatoolbox.data.Dataset(np.asarray(X, dtype=np.float64))
    return rsatoolbox.rdm.calc_rdm(ds, method="correlation").get_matrices()[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("block_bytes", [8 * 40 * 7, 8 * 40 * 64, _rdm._BLOCK_BYTES])
def test_blocked_correlation_equals_rsatoolbox(dtype, block_bytes, monkeypatch):
    # blocks of 7 and 64 channels (a last, partial block) and one block; a large offset
    # and mixed scales, so centring per block must use the row means of all channels
    monkeypatch.setattr(_rdm, "_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(5)
    X = (rng.standard_normal((40, 150)) * rng.uniform(0.1, 10, (40, 1)) + 1e3).astype(dtype)
    d = rdm(X, "correlation").values
    np.testing.assert_allclose(d, _rsa_corr(X), rtol=1e-9, atol=1e-10)
    assert np.array_equal(d, d.T) and np.all(np.diag(d) == 0)
    assert d.dtype == np.float64


def test_shuffled_channels_and_rows_give_the_same_rdm():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((30, 500))
    d = rdm(X).values
    cols, rows = rng.permutation(500), rng.permutation(30)
    np.testing.assert_allclose(rdm(X[:, cols]).values, d, atol=1e-13)
    np.testing.assert_allclose(rdm(X[rows]).values, d[np.ix_(rows, rows)], atol=1e-13)


def test_no_full_size_temporary(monkeypatch):
    from neuroalign.compare import _inputs

    monkeypatch.setattr(_rdm, "_BLOCK_BYTES", 2**16)
    monkeypatch.setattr(_inputs, "_FINITE_BLOCK", 2**15)
    X = np.random.default_rng(7).standard_normal((40, 8000))  # 2.4 MiB
    rdm(X[:, :10])  # warm-up
    tracemalloc.start()
    try:
        rdm(X, "correlation")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # one 64 KiB block and 40 x 40 matrices; a centred copy of the data would be 2.4 MiB,
    # a boolean finiteness mask of it 0.3 MiB
    assert peak < 0.08 * X.nbytes, peak


def test_nan_is_still_counted_by_blocks(monkeypatch):
    from neuroalign.compare import _inputs

    monkeypatch.setattr(_inputs, "_FINITE_BLOCK", 7)
    X = np.random.default_rng(9).standard_normal((20, 5))
    X[[3, 17], [1, 4]] = np.nan
    X[11, 0] = np.inf
    with pytest.raises(ValueError, match=r"'data' in rdm\(\): 3 NaN or infinite"):
        rdm(X)


def test_constant_row_still_named():
    X = np.random.default_rng(8).standard_normal((5, 300))
    X[3] = 7.0
    with pytest.raises(ValueError, match=r"1 pattern\(s\) are constant .*rows \[3\]"):
        rdm(X)
