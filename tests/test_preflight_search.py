"""Memory preflight of banded ridge and the searchlight: estimates, the batch/chunk chosen
under a small budget, named errors, and results that do not depend on that choice."""

import sys

import numpy as np
import pytest

from neuroalign import _preflight as pf
from neuroalign import _preflight_search as ps
from neuroalign.exceptions import MemoryPreflightError

BKW = dict(n_alphas=10, n_iter=5, n_folds=5)
SKW = dict(method="spearman", rdm_metric="correlation")


def test_banded_estimate_grows_with_what_drives_it():
    base = ps.banded_memory(3000, [400, 400], 20000, batch=4096, **BKW)
    assert ps.banded_memory(3000, [400, 400], 20000, batch=1024, **BKW) < base
    assert ps.banded_memory(6000, [400, 400], 20000, batch=4096, **BKW) > base
    assert ps.banded_memory(3000, [800, 400], 20000, batch=4096, **BKW) > base
    assert ps.banded_memory(3000, [400, 400], 40000, batch=4096, **BKW) > base
    assert ps.banded_memory(3000, [400, 400], 20000, batch=4096, **{**BKW, "n_alphas": 20}) > base
    assert ps.banded_memory(3000, [400, 400], 20000, batch=4096, **{**BKW, "n_iter": 50}) > base
    assert ps.banded_memory(3000, [400, 400], 20000, batch=4096, fit_intercept=False,
                            **BKW) < base
    # the batch never counts beyond the number of targets
    assert ps.banded_memory(500, [50, 50], 30, batch=4096, **BKW) == ps.banded_memory(
        500, [50, 50], 30, batch=30, **BKW)


def test_banded_resolution_matrices_are_one_per_alpha():
    """One alpha more adds (at least) a features x training-samples matrix and a batch of
    predictions: the terms that make the search heavy."""
    n, p, t, b = 2000, 600, 8000, 4096
    one = ps.banded_memory(n, [300, 300], t, batch=b, **BKW)
    more = ps.banded_memory(n, [300, 300], t, batch=b, **{**BKW, "n_alphas": 11})
    n_tr, n_va = n * 4 // 5, n // 5
    assert more - one >= (p * n_tr + n_va * n_tr + 2 * n_va * b) * 4


def test_banded_batch_is_the_largest_that_fits_a_small_budget(monkeypatch):
    monkeypatch.delenv(pf.ENV_VAR, raising=False)
    args = (3000, [400, 400], 20000)
    need = ps.banded_memory(*args, batch=4096, **BKW)
    fixed = ps.banded_memory(*args, batch=1, **BKW)
    avail = int((fixed + (need - fixed) / 3) / (1 - pf.SAFETY_MARGIN))
    monkeypatch.setattr(pf, "available_memory", lambda: avail)
    budget = pf.memory_budget()
    b = ps.banded_batch(*args, batch=4096, **BKW)
    assert 1 < b < 4096
    assert ps.banded_memory(*args, batch=b, **BKW) <= budget
    assert ps.banded_memory(*args, batch=b + 1, **BKW) > budget
    monkeypatch.setattr(pf, "available_memory", lambda: 100 * need)
    assert ps.banded_batch(*args, batch=4096, **BKW) == 4096


def test_banded_error_says_needed_available_and_what_lowers_it(monkeypatch):
    monkeypatch.delenv(pf.ENV_VAR, raising=False)
    monkeypatch.setattr(pf, "available_memory", lambda: 2**30)
    with pytest.raises(MemoryPreflightError, match=(
            r"BandedRidgeEncoder.fit: the banded ridge of 100000 neuroids \(20000 samples x "
            r"3000 features in 2 spaces, 20 alphas, 5 candidate space weights, 5 folds, "
            r"float32\) even one neuroid at a time needs about [0-9.]+ GiB of memory at its "
            r"peak, but only 819.20 MiB may be used \(available now: 1.00 GiB, less a 20% "
            r"safety margin.*To lower it: fewer alphas \(alphas=.*fewer features")):
        ps.banded_batch(20000, [2000, 1000], 100000, **{**BKW, "n_alphas": 20})


def _banded_data(seed=0, n=60, t=45):
    rng = np.random.default_rng(seed)
    X = {"a": rng.standard_normal((n, 12)), "b": rng.standard_normal((n, 8))}
    W = rng.standard_normal((20, t)) * np.logspace(-2, 0.5, t)
    Y = np.concatenate(list(X.values()), 1) @ W + rng.standard_normal((n, t))
    return X, Y


def test_banded_fit_in_small_batches_gives_the_same_result(monkeypatch):
    """Under a budget that forces small batches of targets the fit is the unconstrained
    fit (each target's search is its own), and a budget too small stops at once."""
    from neuroalign.encoders import BandedRidgeEncoder

    X, Y = _banded_data()
    kw = dict(alphas=np.logspace(-1, 3, 5), n_iter=3, cv=3, device="cpu")
    monkeypatch.setenv(pf.ENV_VAR, "off")
    ref = BandedRidgeEncoder(**kw).fit(X, Y)
    chosen = []
    original = ps.banded_batch

    def spy(*args, **kwargs):
        chosen.append(original(*args, **kwargs))
        return chosen[-1]

    monkeypatch.setattr(ps, "banded_batch", spy)
    mkw = dict(n_alphas=5, n_iter=3, n_folds=3)
    budget = ps.banded_memory(60, [12, 8], 45, batch=10, **mkw)
    assert ps.banded_memory(60, [12, 8], 45, batch=11, **mkw) > budget
    monkeypatch.setenv(pf.ENV_VAR, str(budget))
    enc = BandedRidgeEncoder(**kw).fit(X, Y)
    # five batches instead of one (and some candidate is the choice of 15 > 10 targets:
    # the cv R² at the choices is computed in batches too)
    assert chosen == [10]
    np.testing.assert_array_equal(enc.best_alphas_, ref.best_alphas_)
    np.testing.assert_array_equal(enc.space_weights_.values, ref.space_weights_.values)
    np.testing.assert_allclose(enc.cv_scores_, ref.cv_scores_, rtol=0, atol=1e-12)
    # float32 weights: the matrix products of other shapes round differently (a few ulp)
    np.testing.assert_allclose(enc.coef_, ref.coef_, rtol=2e-5, atol=1e-6)
    monkeypatch.setenv(pf.ENV_VAR, "1MB")
    with pytest.raises(MemoryPreflightError, match=r"BandedRidgeEncoder.fit: the banded ridge "
                                                   r"of 45 neuroids \(60 samples x 20 features"):
        BandedRidgeEncoder(**kw).fit(X, Y)


def test_searchlight_estimate_grows_with_what_drives_it():
    kw = dict(n_neuroids=50000, **SKW)
    one = ps.searchlight_chunk_memory(100, 123, 500, **kw)
    assert ps.searchlight_chunk_memory(100, 123, 250, **kw) < one
    assert ps.searchlight_chunk_memory(200, 123, 500, **kw) > one
    assert ps.searchlight_chunk_memory(20, 515, 500, **kw) > ps.searchlight_chunk_memory(
        20, 123, 500, **kw)  # wide spheres of few stimuli: the patterns dominate
    whole = ps.searchlight_memory(100, 50000, 123, 500, n_models=3, **SKW)
    assert ps.searchlight_memory(100, 50000, 123, 500, n_models=3, workers=2,
                                 **SKW) - whole == one + 8 * 500 * 123
    assert ps.searchlight_memory(100, 50000, 123, 500, n_models=4, **SKW) - whole == (
        50000 * 8 + 4 * 4950 * 8)  # a model's results and its prepared RDM
    assert ps.searchlight_memory(100, 50000, 123, 500, n_models=3, grid_cells=10**6,
                                 **SKW) - whole == 8 * 10**6


def test_searchlight_chunk_fits_max_memory_and_a_small_budget(monkeypatch):
    monkeypatch.delenv(pf.ENV_VAR, raising=False)
    monkeypatch.setattr(pf, "available_memory", lambda: 2**40)
    args = (100, 50000, 123)
    kw = dict(n_models=3, workers=2, **SKW)
    c = ps.searchlight_chunk(*args, max_memory=64, **kw)
    assert ps.searchlight_chunk_memory(100, 123, c, n_neuroids=50000, **SKW) <= 64 * 2**20
    assert ps.searchlight_chunk_memory(100, 123, c + 1, n_neuroids=50000, **SKW) > 64 * 2**20
    budget = ps.searchlight_memory(*args, c // 3, **kw)
    small = ps.searchlight_chunk(*args, max_memory=64, budget=budget, **kw)
    assert small == c // 3
    assert ps.searchlight_memory(*args, small + 1, **kw) > budget
    # a chunk set by the caller (cached cells) is checked, never changed
    assert ps.searchlight_chunk(*args, max_memory=64, fixed_chunk=7, budget=budget, **kw) == 7
    with pytest.raises(MemoryPreflightError, match=r"with 5000 centres per cell.*"
                                                   r"To lower it: a smaller batch_size"):
        ps.searchlight_chunk(*args, max_memory=64, fixed_chunk=5000, budget=budget, **kw)


def test_searchlight_error_says_needed_available_and_what_lowers_it(monkeypatch, tmp_path):
    from neuroalign.compare import searchlight

    monkeypatch.delenv(pf.ENV_VAR, raising=False)
    monkeypatch.setattr(pf, "available_memory", lambda: 2**30)
    with pytest.raises(MemoryPreflightError, match=(
            r"searchlight: 200000 centres over 5000 stimuli \(neighbourhoods of up to 123 "
            r"neuroids, 2 model RDMs, 4 threads\) even one centre per chunk needs about "
            r"[0-9.]+ GiB of memory at its peak, but only 819.20 MiB may be used \(available "
            r"now: 1.00 GiB.*To lower it: fewer stimuli .*n_jobs=1")):
        ps.searchlight_chunk(5000, 200000, 123, n_models=2, workers=4, max_memory=256, **SKW)
    rng = np.random.default_rng(0)
    ijk = np.argwhere(np.ones((5, 5, 5), dtype=bool))
    monkeypatch.setenv(pf.ENV_VAR, "1MB")
    with pytest.raises(MemoryPreflightError, match=r"searchlight: 125 centres over 12 stimuli "
                                                   r"\(neighbourhoods of up to 19 neuroids, 2 "
                                                   r"model RDMs"):
        searchlight(rng.standard_normal((12, 125)), rng.random((2, 66)), ijk=ijk, radius=1.5)
    # cached cells run here: their chunk is checked (cells are keyed by it, never shrunk)
    with pytest.raises(MemoryPreflightError, match=r"with 100 centres per cell.*a smaller "
                                                   r"batch_size"):
        searchlight(rng.standard_normal((12, 125)), rng.random((2, 66)), ijk=ijk, radius=1.5,
                    result_path=tmp_path, batch_size=100)


def test_searchlight_in_the_chunks_the_budget_allows_gives_the_same_result(monkeypatch):
    from neuroalign._preflight_search import searchlight_memory
    from neuroalign.compare import searchlight

    rng = np.random.default_rng(3)
    ijk = np.argwhere(np.ones((6, 6, 6), dtype=bool))
    data = rng.standard_normal((15, len(ijk)))
    models = rng.random((2, 105))
    models[1, 4] = np.nan  # a pair left out
    monkeypatch.setenv(pf.ENV_VAR, "off")
    ref = searchlight(data, models, ijk=ijk, volume_shape=(6, 6, 6), radius=2, n_jobs=1)
    sizes = []
    from neuroalign.compare import _searchlight_chunks

    original = _searchlight_chunks._chunk_rdms

    def spy(X, table, metric, device):
        sizes.append(len(table))
        return original(X, table, metric, device)

    monkeypatch.setattr(_searchlight_chunks, "_chunk_rdms", spy)
    kw = dict(n_models=2, workers=1, n_pairs_kept=104, grid_cells=(6 + 4) ** 3, **SKW)
    budget = searchlight_memory(15, 216, 27, 40, **kw)
    assert searchlight_memory(15, 216, 27, 41, **kw) > budget
    monkeypatch.setenv(pf.ENV_VAR, str(budget))
    sl = searchlight(data, models, ijk=ijk, volume_shape=(6, 6, 6), radius=2, n_jobs=1)
    assert max(sizes) <= 40 and len(sizes) == 6  # 216 centres in chunks of 40
    np.testing.assert_allclose(sl.values, ref.values, rtol=1e-12, atol=0, equal_nan=True)
    assert np.isfinite(sl.values).sum() > 0


_CHILD = r"""
import ctypes, json, sys, numpy as np
from neuroalign import _preflight_search as ps
job, args = json.loads(sys.argv[1])
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
rng = np.random.default_rng(0)
if job == 'banded':
    from neuroalign.encoders import BandedRidgeEncoder
    n, sizes, t, a, it = args
    X = {f's{i}': rng.standard_normal((n, q)).astype('float32') for i, q in enumerate(sizes)}
    gain = np.logspace(-2, 1, t).astype('float32')
    Y = sum(X[k] @ rng.standard_normal((q, t)).astype('float32') / np.sqrt(q)
            for k, q in zip(X, sizes)) * gain + rng.standard_normal((n, t)).astype('float32')
    est = n * t * 4 + ps.banded_memory(n, sizes, t, n_alphas=a, n_iter=it, n_folds=5,
                                       batch=4096)
    enc = BandedRidgeEncoder(alphas=np.logspace(-2, 5, a), n_iter=it, cv=5, device='cpu')
    run = lambda: enc.fit(X, Y)
else:
    from neuroalign.compare import searchlight
    from neuroalign.compare._searchlight_geometry import VolumeSpheres
    n, side, k, radius, mib = args
    ijk = np.argwhere(np.ones((side,) * 3, dtype=bool))
    X = rng.standard_normal((n, len(ijk)))
    models = rng.random((k, n * (n - 1) // 2))
    geom = VolumeSpheres(ijk, radius, (side,) * 3)
    kw = dict(n_models=k, workers=1, method='spearman', rdm_metric='correlation')
    chunk = ps.searchlight_chunk(n, len(ijk), geom.max_size, max_memory=mib,
                                 apply_budget=False, **kw)
    est = ps.searchlight_memory(n, len(ijk), geom.max_size, chunk, grid_cells=geom._lut.size,
                                **kw)
    del geom
    run = lambda: searchlight(X, models, ijk=ijk, volume_shape=(side,) * 3, radius=radius,
                              n_jobs=1, max_memory=mib, show_progress=False)
import gc; gc.collect()
ctypes.CDLL('libc.so.6').malloc_trim(0)
base = status('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')
run()
print(json.dumps([status('VmHWM') - base, est]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
# Peaks of 150 MiB and more (below, the fixed part of the process dominates: see
# tests/test_preflight.py).
@pytest.mark.parametrize("cell", [("banded", (1500, [200, 200], 4000, 8, 2)),
                                  ("searchlight", (100, 24, 3, 3, 192)),
                                  ("searchlight", (150, 20, 2, 2.5, 256))])
def test_estimate_within_25_percent_of_the_measured_peak(cell):
    from test_preflight import assert_estimate_within_25_percent

    assert_estimate_within_25_percent(_CHILD, cell)


def test_surface_width_bounds_every_disc():
    """On a surface the preflight's neighbourhood size is the largest Euclidean ball around
    the centres, which contains every geodesic disc (and equals the widest on a flat grid)."""
    from neuroalign.compare._searchlight import _width
    from neuroalign.compare._searchlight_geometry import SurfaceDiscs

    x, y = np.meshgrid(np.arange(12.0), np.arange(10.0), indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), 0.1 * np.sin(x.ravel())], 1)
    idx = np.arange(120).reshape(12, 10)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    geom = SurfaceDiscs({"lh": (v, f)}, np.full(120, "lh"), np.arange(120), radius=2.5,
                        threshold=0.0)
    widest = max(t.shape[1] for _, t in geom.chunks(512))
    assert widest <= _width(geom) <= 3 * widest
    assert _width(geom, sample=1) >= 1
