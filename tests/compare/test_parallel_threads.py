"""distance_matrix and searchlight run in threads with BLAS limited (workers x BLAS threads
never above the limit), restore every setting afterwards, and give the sequential values."""

import threading

import numpy as np
from threadpoolctl import threadpool_info

import neuroalign.compare._searchlight_chunks as sl_chunks
import neuroalign.compare._shape_matrix as shape_matrix
from neuroalign._config import max_threads, thread_limits
from neuroalign.compare import distance_matrix, searchlight


def _blas_threads():
    return {(lib["filepath"], lib["user_api"]): lib["num_threads"] for lib in threadpool_info()}


def _spy(monkeypatch, module, name):
    seen, lock, active = [], threading.Lock(), [0]
    orig = getattr(module, name)

    def wrapped(*a, **k):
        with lock:
            active[0] += 1
            seen.append((active[0], max(_blas_threads().values())))
        try:
            return orig(*a, **k)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(module, name, wrapped)
    return seen


def test_distance_matrix_threads_bounded_restored_and_equal(monkeypatch):
    rng = np.random.default_rng(0)
    systems = [rng.standard_normal((60, 8)) @ rng.standard_normal((8, 8)) for _ in range(6)]
    with thread_limits(1):
        ref = distance_matrix(systems, "cca").values  # sequential
    np.ones((2, 2)) @ np.ones((2, 2))
    before = _blas_threads()
    seen = _spy(monkeypatch, shape_matrix, "_fast_nuclear")
    with thread_limits(2):
        out = distance_matrix(systems, "cca").values
    assert len(seen) == 15 and all(a * blas <= 2 for a, blas in seen)
    assert _blas_threads() == before
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
    assert max_threads() >= 1


def test_searchlight_threads_bounded_restored_and_equal(monkeypatch):
    rng = np.random.default_rng(1)
    ijk = np.argwhere(np.ones((5, 5, 5), dtype=bool))
    data = rng.standard_normal((8, len(ijk)))
    models = rng.random((2, 28))
    ref = searchlight(data, models, ijk=ijk, radius=1.5, n_jobs=1)
    before = _blas_threads()
    seen = _spy(monkeypatch, sl_chunks, "_chunk_rdms")
    with thread_limits(2):
        out = searchlight(data, models, ijk=ijk, radius=1.5, max_memory=0.005)  # many chunks
    assert len(seen) > 4 and all(a * blas <= 2 for a, blas in seen)
    assert _blas_threads() == before
    np.testing.assert_allclose(out.values, ref.values, rtol=1e-12, equal_nan=True)


def test_distance_matrix_cross_products_in_blocks(monkeypatch):
    rng = np.random.default_rng(2)
    systems = [rng.standard_normal((40, w)) for w in (6, 9, 7, 6, 8)]
    ref = distance_matrix(systems, "procrustes").values
    monkeypatch.setattr(shape_matrix, "_CROSS_BYTES", 40 * 8 * 10)  # one or two systems per block
    np.testing.assert_allclose(distance_matrix(systems, "procrustes").values, ref, rtol=1e-12)
    monkeypatch.setattr(shape_matrix, "_CROSS_BYTES", 1)  # one system per block
    np.testing.assert_allclose(distance_matrix(systems, "procrustes").values, ref, rtol=1e-12)
