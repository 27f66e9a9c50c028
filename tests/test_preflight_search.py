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
                                 **SKW) - whole == one + 8 * 500 * 123 + (
        ps.search_overhead(2) - ps.search_overhead(1))  # each thread's arena: fixed cost
    assert ps.searchlight_memory(100, 50000, 123, 500, n_models=4, **SKW) - whole == (
        50000 * 8 + 4 * 4950 * 8)  # a model's results and its prepared RDM
    assert ps.searchlight_memory(100, 50000, 123, 500, n_models=3, grid_cells=10**6,
                                 **SKW) - whole == 8 * 10**6
    # cached cells in this process: a round of 64 chunks' tables and results held
    assert ps.searchlight_memory(100, 50000, 123, 500, n_models=3, cells=True,
                                 **SKW) - whole == 64 * (8 * 500 * 123 + 500 * (8 * 3 + 9))
    from neuroalign.compare._searchlight import _CHUNKS_PER_ROUND

    assert ps._CELLS_PER_ROUND == _CHUNKS_PER_ROUND


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
    from neuroalign.compare._searchlight import _geometry_sizes
    from neuroalign.compare._searchlight_geometry import SurfaceDiscs, VolumeSpheres
    n, side, k, radius, mib, method = args
    if job == 'searchlight':
        ijk = np.argwhere(np.ones((side,) * 3, dtype=bool))
        N = len(ijk)
        geom = VolumeSpheres(ijk, radius, (side,) * 3)
        where = dict(ijk=ijk, volume_shape=(side,) * 3)
        X = rng.standard_normal((n, N))
    elif job == 'fsaverage5':  # a real folded cortex: nilearn's, every vertex of both hemis
        import xarray as xr
        from nilearn.datasets import load_fsaverage
        surf = load_fsaverage('fsaverage5')[side]
        meshes = {h: (np.asarray(surf.parts[p].coordinates, dtype=np.float64),
                      np.asarray(surf.parts[p].faces)) for h, p in (('lh', 'left'), ('rh', 'right'))}
        V = len(meshes['lh'][0])
        vertex, hemi = np.r_[np.arange(V), np.arange(V)], np.repeat(['lh', 'rh'], V)
        N = len(vertex)
        geom = SurfaceDiscs(meshes, hemi, vertex, radius, 1.0)
        where = dict(surface=meshes)
        X = xr.DataArray(rng.standard_normal((n, N)), dims=('stimulus', 'neuroid'),
                         coords={'vertex': ('neuroid', vertex), 'hemisphere': ('neuroid', hemi)})
    else:  # a side x side grid mesh, the neuroids on its central third
        import xarray as xr
        x, y = np.meshgrid(np.arange(side, dtype=float), np.arange(side, dtype=float),
                           indexing='ij')
        v = np.stack([x.ravel(), y.ravel(), 0.3 * np.sin(x.ravel() / 3)], 1)
        q = np.arange(side * side).reshape(side, side)
        a, b, c, d = q[:-1, :-1].ravel(), q[1:, :-1].ravel(), q[:-1, 1:].ravel(), q[1:, 1:].ravel()
        f = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
        mid = (v[:, :2] >= side // 3).all(1) & (v[:, :2] < 2 * side // 3).all(1)
        vertex = np.flatnonzero(mid)
        N = len(vertex)
        geom = SurfaceDiscs({'mesh': (v, f)}, np.full(N, 'mesh'), vertex, radius, 0.0)
        where = dict(surface=(v, f), threshold=0.0)
        X = xr.DataArray(rng.standard_normal((n, N)), dims=('stimulus', 'neuroid'),
                         coords={'vertex': ('neuroid', vertex)})
    models = rng.random((k, n * (n - 1) // 2))
    sizes = _geometry_sizes(geom)
    width = sizes.pop('width')
    kw = dict(n_models=k, workers=1, method=method, rdm_metric='correlation')
    chunk = ps.searchlight_chunk(n, N, width, max_memory=mib, apply_budget=False, **kw,
                                 **sizes)
    sizes.pop('max_chunk', None)
    est = ps.searchlight_memory(n, N, width, chunk, **kw, **sizes)
    del geom
    run = lambda: searchlight(X, models, radius=radius, method=method, n_jobs=1,
                              max_memory=mib, show_progress=False, **where)
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
                                  ("searchlight", (100, 24, 3, 3, 192, "spearman")),
                                  ("searchlight", (150, 20, 2, 2.5, 256, "spearman")),
                                  ("searchlight", (100, 20, 3, 3, 192, "tau_a")),
                                  ("searchlight", (80, 16, 2, 3, 256, "bures")),
                                  ("surface", (140, 300, 3, 6.0, 256, "spearman")),
                                  ("fsaverage5", (100, "pial", 3, 6.0, 256, "spearman")),
                                  ("fsaverage5", (80, "white_matter", 3, 6.0, 256, "bures"))])
def test_estimate_within_25_percent_of_the_measured_peak(cell):
    from test_preflight import assert_estimate_within_25_percent

    assert_estimate_within_25_percent(_CHILD, cell)


def test_surface_width_is_the_widest_disc():
    """On a surface the preflight's neighbourhood size is the widest geodesic disc (in
    neuroids): exact, or an upper bound when the search's budget runs out."""
    from neuroalign.compare._searchlight import _width
    from neuroalign.compare._searchlight_geometry import SurfaceDiscs

    x, y = np.meshgrid(np.arange(12.0), np.arange(10.0), indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), 0.1 * np.sin(x.ravel())], 1)
    idx = np.arange(120).reshape(12, 10)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    keep = np.flatnonzero(np.random.default_rng(0).random(120) < 0.7)  # a masked surface
    geom = SurfaceDiscs({"lh": (v, f)}, np.full(len(keep), "lh"), keep, radius=2.5,
                        threshold=0.0)
    widest = max(t.shape[1] for _, t in geom.chunks(512))
    assert _width(geom) == widest and geom.widest_exact
    assert widest <= _width(geom, budget=3) and not geom.widest_exact


def _traced_chunk(method, n=60, c=150, w=40, k=2, drop=0, seed=0):
    """(traced peak of one chunk's work, its estimate): numpy's allocations, as
    tracemalloc sees them (BLAS and LAPACK buffers are not among them)."""
    import tracemalloc

    from neuroalign.compare._searchlight_chunks import _centre_chunk, _Models

    rng = np.random.default_rng(seed)
    N, m_all = 5000, n * (n - 1) // 2
    X = rng.standard_normal((n, N))
    keep = np.ones(m_all, dtype=bool)
    keep[rng.choice(m_all, drop, replace=False)] = False
    models = _Models(rng.random((k, m_all))[:, keep], method, None, keep)
    if method == "tau_a":  # numba's runtime loaded first (counted once, see test_tau_a_terms)
        models.compare(rng.random((2, int(keep.sum()))))
    table = rng.integers(0, N, (c, w))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        _centre_chunk(X, models, np.zeros(N, dtype=bool), keep, "correlation", None,
                      np.arange(c), table)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    est = ps.searchlight_chunk_memory(n, w, c, n_neuroids=N, method=method, n_models=k,
                                      n_pairs_kept=int(keep.sum()))
    return peak, est


@pytest.mark.parametrize("method", ["tau_a", "bures", "cosine_cov", "pearson_cov"])
@pytest.mark.parametrize("drop", [0, 50])
def test_chunk_estimate_follows_the_traced_working_set(method, drop):
    """The chunk's estimate is its traced peak to within 10 %: the second-moment methods'
    comparison (3 G building the data's G, the zero-filled vectors when pairs are left out,
    pearson_cov's centred copies) is the peak here, tau-a's RDM step."""
    peak, est = _traced_chunk(method, drop=drop)
    assert 0.9 * peak <= est <= 1.1 * peak, (peak / 2**20, est / 2**20)


def test_bures_one_centre_at_a_time_and_the_models_g():
    """Few centres, many models: the models' G (3 G_k while built) and Bures' loop over
    centres ((3 + 2 k) n^2 8 beside both G; LAPACK's copy, n^2 8 of it, is not traced) are
    the peak."""
    peak, est = _traced_chunk("bures", n=120, c=3, w=20, k=8)
    assert 0.9 * peak <= est <= 1.1 * peak, (peak / 2**20, est / 2**20)
    peak, est = _traced_chunk("cosine_cov", n=120, c=3, w=20, k=8)
    assert 0.9 * peak <= est <= 1.1 * peak, (peak / 2**20, est / 2**20)


def test_tau_a_terms(monkeypatch):
    """tau-a adds the model's order and ranks 16 m and 40 m per row, rows of at least
    100,000 pairs max_threads() at a time; numba's runtime (121 MiB) once, before the first
    tau-a of the process."""
    from neuroalign import _config

    assert ps._compare_memory(100, 4950, 4950, 30, 3, "tau_a") == 56 * 4950
    monkeypatch.setattr(_config, "max_threads", lambda: 3)
    assert ps._compare_memory(500, 124750, 124750, 30, 3, "tau_a") == (16 + 3 * 40) * 124750
    assert ps._compare_memory(100, 4950, 4950, 30, 3, "tau_a") == 56 * 4950
    kw = dict(n_models=2, n_pairs_kept=None)
    base = ps.searchlight_memory(40, 1000, 20, 50, method="pearson", **kw)
    monkeypatch.setitem(sys.modules, "neuroalign.compare._tau_kernel", object())
    assert ps.searchlight_memory(40, 1000, 20, 50, method="tau_a", **kw) == base
    monkeypatch.delitem(sys.modules, "neuroalign.compare._tau_kernel")
    import importlib.util

    numba = importlib.util.find_spec("numba") is not None
    assert ps.searchlight_memory(40, 1000, 20, 50, method="tau_a", **kw) == base + (
        121 * 2**20 if numba else 0)


def _grid_mesh(nx, ny):
    x, y = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float), indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), 0.3 * np.sin(x.ravel() / 3)], 1)
    idx = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    return v, np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])


@pytest.mark.parametrize("shape, patch, radius, phase", [
    # half the vertices at random, balls of 113 vertices: 4,000+ candidates a chunk
    ((150, 120), None, 6.0, "dijkstra"),
    # a patch of 22 x 23 centres whose balls of 450 vertices overlap: 2,000 candidates
    ((48, 48), (13, 35, 13, 36), 12.0, "balls"),
])
def test_surface_mesh_terms_follow_the_code(shape, patch, radius, phase):
    """The meshes kept (graph, vertices, lookup) are exactly their arrays' bytes; building a
    graph peaks at max(72 F, 56 E + 4 V) (traced, within 5 %); a chunk's disc
    construction at disc_build_memory (traced, within 15 %), in either of its phases (the
    neuroids are some of the vertices: the balls and the distances hold all of them)."""
    import tracemalloc

    from scipy.spatial import cKDTree

    from neuroalign.compare._searchlight import _geometry_sizes
    from neuroalign.compare._searchlight_geometry import SurfaceDiscs, _mesh_graph

    v, f = _grid_mesh(*shape)
    if patch is None:
        vert = np.random.default_rng(0).permutation(len(v))[:len(v) // 2]
    else:
        x0, x1, y0, y1 = patch
        one = np.flatnonzero((v[:, 0] >= x0) & (v[:, 0] < x1) & (v[:, 1] >= y0)
                             & (v[:, 1] < y1))
        vert = np.r_[one, one]
    geom = SurfaceDiscs({"lh": (v, f), "rh": (v, f)}, np.repeat(["lh", "rh"], len(vert) // 2),
                        vert, radius=radius, threshold=0.0)
    sizes = _geometry_sizes(geom)
    surf = sizes["surface"]
    kept, build, tree = ps.surface_memory(surf["meshes"])
    assert kept == sum(geom.graphs[h].data.nbytes + geom.graphs[h].indices.nbytes
                       + geom.graphs[h].indptr.nbytes + geom.coords[h].nbytes
                       + geom.luts[h].nbytes for h in ("lh", "rh"))
    (V, E, F), _ = surf["meshes"]
    assert build == kept // 2 + 36 * V + max(72 * F, 56 * E + 4 * V)  # the second mesh's
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        _mesh_graph(geom.coords["lh"], f)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    if V > 10000:  # (a small mesh's fixed allocations are a larger share)
        assert 0.95 * peak <= max(72 * F, 56 * E + 4 * V) <= 1.05 * peak
    assert sizes["width"] < surf["disc"] < surf["ball"]
    worst = 0
    t = cKDTree(geom.coords["lh"])
    order = geom._order("lh")
    for start in range(0, len(order), 512):
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            geom._discs("lh", t, order[start:start + 512])
            worst = max(worst, tracemalloc.get_traced_memory()[1] - base)
        finally:
            tracemalloc.stop()
    est = ps.disc_build_memory(512, surf["ball"], surf["disc"], surf["candidates"])
    assert 0.85 * worst <= est <= 1.15 * worst, (worst / 2**20, est / 2**20)
    assert (est == 57 * 512 * surf["ball"] + 8 * surf["candidates"]) == (phase == "balls")


SURF = dict(meshes=[(163842, 491520, 327680)] * 2, ball=400, disc=330, candidates=5000)


def test_surface_search_counts_the_meshes_and_the_disc_builds():
    kw = dict(n_models=2, **SKW)
    vol = ps.searchlight_memory(100, 20000, 300, 512, **kw)
    one = ps.searchlight_memory(100, 20000, 300, 512, surface=SURF, **kw)
    kept, build, tree = ps.surface_memory(SURF["meshes"])
    # one thread: the discs are built between the chunks' comparisons
    assert one - vol == 16 * 20000 + kept + tree - 60 * 512 * 300
    many = dict(SURF, candidates=10**6)  # distances larger than a chunk's comparison
    discs = ps.disc_build_memory(512, 400, 330, 10**6)
    per = ps.searchlight_chunk_memory(100, 300, 512, n_neuroids=20000, n_models=2,
                                      **SKW) + 8 * 512 * 300
    assert discs > per
    assert ps.searchlight_memory(100, 20000, 300, 512, surface=many, **kw) - one == discs - per
    # two threads: two chunks and two queued tables beside one chunk's discs
    two = ps.searchlight_memory(100, 20000, 300, 512, workers=2, surface=SURF, **kw)
    # (and the fixed cost of more than one thread: 48 MiB instead of 30)
    assert two - one == 2 * (per + 8 * 512 * 300) + ps.disc_build_memory(
        512, 400, 330, 5000) - per + ps.search_overhead(2) - ps.search_overhead(1)
    assert (ps.search_overhead(1), ps.search_overhead(2), ps.search_overhead(8)) == (
        30 * 2**20, 48 * 2**20, 48 * 2**20)
    # the distances: rows x candidates x 9 bytes, at most 64 MiB of float64 at a time
    assert ps.disc_build_memory(100, 10, 8, 50000) == 9 * 100 * 50000 + 16 * 800 + 208 * 50000
    assert ps.disc_build_memory(512, 10, 8, 50000) == 9 * 167 * 50000 + 16 * 4096 + 208 * 50000
    # the balls: 57 bytes per vertex in a ball of a chunk's centres
    assert ps.disc_build_memory(512, 300, 200, 600) == 57 * 512 * 300 + 8 * 600


def test_surface_chunk_is_capped_and_fits_a_small_budget(monkeypatch):
    monkeypatch.setattr(pf, "available_memory", lambda: 2**40)
    monkeypatch.delenv(pf.ENV_VAR, raising=False)
    kw = dict(n_models=2, workers=1, max_memory=4096, surface=SURF, max_chunk=512, **SKW)
    assert ps.searchlight_chunk(100, 20000, 300, **kw) == 512  # a surface's chunk cap
    budget = ps.searchlight_memory(100, 20000, 300, 200, n_models=2, surface=SURF, **SKW)
    c = ps.searchlight_chunk(100, 20000, 300, budget=budget, **kw)
    assert c == 200
    assert ps.searchlight_memory(100, 20000, 300, 201, n_models=2, surface=SURF,
                                 **SKW) > budget
    # a cell's chunk on a surface holds at most 512 centres: that is what is checked
    assert ps.searchlight_chunk(100, 20000, 300, fixed_chunk=5000, budget=10**12, **kw) == 512


def test_surface_searchlight_refuses_what_only_the_meshes_make_too_large(monkeypatch):
    """A budget that the volume-style estimate fits but the meshes and the disc builds do
    not: the named error, before any disc is built."""
    from neuroalign.compare import searchlight
    from neuroalign.compare._searchlight import _geometry_sizes
    from neuroalign.compare._searchlight_geometry import SurfaceDiscs

    v, f = _grid_mesh(60, 50)
    rng = np.random.default_rng(1)
    data = rng.standard_normal((12, len(v)))
    models = rng.random((2, 66))
    sizes = _geometry_sizes(SurfaceDiscs({"mesh": (v, f)}, np.full(len(v), "mesh"),
                                         np.arange(len(v)), 3.0, 1.0))
    kw = dict(n_models=2, n_pairs_kept=66, **SKW)
    need = ps.searchlight_memory(12, len(v), sizes["width"], 1, surface=sizes["surface"],
                                 **kw)
    assert ps.searchlight_memory(12, len(v), sizes["width"], 1, **kw) < need
    monkeypatch.setenv(pf.ENV_VAR, str(need - 1))
    with pytest.raises(MemoryPreflightError, match=(
            r"searchlight: 3000 centres over 12 stimuli on a surface of 3000 vertices in 1 "
            r"mesh \(neighbourhoods of up to \d+ neuroids, 2 model RDMs, 1 thread\) even one "
            r"centre per chunk needs about .*one hemisphere per call")):
        searchlight(data, models, surface=(v, f), radius=3.0, n_jobs=1)
    monkeypatch.setenv(pf.ENV_VAR, str(need))
    assert searchlight(data, models, surface=(v, f), radius=3.0, n_jobs=1).shape == (2, 3000)


def test_rank_methods_rank_long_rows_one_at_a_time(monkeypatch):
    """Rows of 1,024 pairs and more are ranked one at a time (17 bytes per entry), one per
    thread from 100,000 on: a chunk of few centres over many stimuli peaks at its RDM step
    (traced, within 10 %), not at a block of 32 rows (which made 2 centres over 1,000
    stimuli need 274 MiB instead of 53)."""
    from neuroalign import _config

    peak, est = _traced_chunk("spearman", n=400, c=3, w=30)
    assert 0.9 * peak <= est <= 1.1 * peak, (peak / 2**20, est / 2**20)
    assert ps._compare_memory(400, 79800, 79800, 3, 2, "rho_a") == 3 * 79800 * 8 + 17 * 79800
    monkeypatch.setattr(_config, "max_threads", lambda: 3)
    assert ps._compare_memory(500, 124750, 124750, 3, 2, "spearman") == (
        3 * 124750 * 8 + 17 * 3 * 124750)
    # short rows: a block of 2^22 entries (or all the chunk's)
    assert ps._compare_memory(40, 780, 780, 100, 2, "spearman") == 100 * 780 * (8 + 17)


def test_cells_in_this_process_count_the_round_of_tables(monkeypatch, tmp_path):
    """Cached cells run here hold a round of 64 chunks' tables and results: a budget that
    fits everything but them stops at once."""
    from neuroalign.compare import searchlight
    from neuroalign.compare._searchlight import _geometry_sizes
    from neuroalign.compare._searchlight_geometry import VolumeSpheres

    rng = np.random.default_rng(0)
    ijk = np.argwhere(np.ones((5, 5, 5), dtype=bool))
    sizes = _geometry_sizes(VolumeSpheres(ijk, 1.5))
    kw = dict(n_models=2, n_pairs_kept=66, grid_cells=sizes["grid_cells"], **SKW)
    need = ps.searchlight_memory(12, 125, sizes["width"], 100, cells=True, **kw)
    assert ps.searchlight_memory(12, 125, sizes["width"], 100, **kw) < need
    monkeypatch.setenv(pf.ENV_VAR, str(need - 1))
    args = (rng.standard_normal((12, 125)), rng.random((2, 66)))
    with pytest.raises(MemoryPreflightError, match=r"with 100 centres per cell"):
        searchlight(*args, ijk=ijk, radius=1.5, result_path=tmp_path, batch_size=100)
    monkeypatch.setenv(pf.ENV_VAR, str(need))
    assert searchlight(*args, ijk=ijk, radius=1.5, result_path=tmp_path,
                       batch_size=100).attrs["n_cells"] == 1  # one chunk has centres
