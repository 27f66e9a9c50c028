"""Memory preflight of the two search jobs: banded ridge and the searchlight.

The rest of the preflight (the budget, the named error, ridge fits, sweeps, RDMs and
decoders) is :mod:`neuroalign._preflight`; this module adds, with the same budget and the
same :class:`~neuroalign.exceptions.MemoryPreflightError`,

* :func:`banded_memory` / :func:`banded_batch`: the random search over space weights of
  :class:`~neuroalign.encoders.BandedRidgeEncoder` (himalaya's
  ``solve_group_ridge_random_search``, then the cross-validated R² at each neuroid's
  choice): the batch of targets himalaya works on (``n_targets_batch``) is the largest
  that fits;
* :func:`searchlight_memory` / :func:`searchlight_chunk`: the searchlight's chunks of
  centres (an RDM per centre, compared with the model RDMs by any of
  :func:`~neuroalign.compare.compare_rdms`' methods; spheres on a volume, or geodesic
  discs on a surface, whose meshes and per-chunk Dijkstra searches are counted too:
  :func:`surface_memory`, :func:`disc_build_memory`): the number of centres per chunk is
  the largest that fits (at most what ``max_memory`` gives per thread).

Both formulas are checked against peaks measured in fresh processes by
``benchmarks/bench_preflight.py`` (within 25 %, grid in ``benchmarks/README.md``). They
describe the numpy (CPU) path; on a GPU the preflight is not applied.
"""

from __future__ import annotations

import sys

from neuroalign import _preflight as pf

__all__ = [
    "banded_batch",
    "banded_memory",
    "searchlight_chunk",
    "searchlight_chunk_memory",
    "searchlight_memory",
    "surface_memory",
    "disc_build_memory",
    "search_overhead",
]


# -- banded ridge --------------------------------------------------------------------------
def banded_memory(n_samples: int, n_features, n_targets: int, *, n_alphas: int, n_iter: int,
                  n_folds: int, batch: int, fit_intercept: bool = True,
                  itemsize: int = 4) -> int:
    """Peak bytes of a banded ridge fit (:func:`neuroalign.encoders._banded.banded_solve`)
    beyond its inputs (the feature spaces and the targets).

    ``n_features``: one feature count per space (``s`` spaces, ``p`` features in all).
    With ``n`` samples, ``t`` targets, ``a`` alphas, ``I`` candidate space weights, ``F``
    folds (``n_tr = n (F-1)/F`` training rows, ``n_va = n/F``), ``k = min(n_tr, p)``,
    ``k_r = min(n, p)``, ``b`` targets per batch and ``w`` bytes per value (float32: 4),
    the larger of two phases, plus :data:`~neuroalign._preflight.OVERHEAD`:

    * himalaya's random search. Kept throughout: the stacked features ``n p w`` and the
      centred targets ``n t w`` (with an intercept), the scores ``(I + F a + s + 3) t w``
      and, from the first candidate on, the refit weights ``p t w``. Per candidate and
      fold: the fold's rows ``n p w``, their SVD (a copy ``n_tr p w``, ``U`` and ``V^T``,
      ``(n_tr k + k p) w``, workspace ``4 k^2 w``), the resolution matrices of every alpha
      ``a p n_tr w`` (built from ``a k n_tr w``) and their product with the validation rows
      ``a n_va n_tr w``; per batch of targets its rows (``2 n b w``) and the predictions,
      and residuals of every alpha ``2 a n_va b w``. The refit: the SVD of all rows
      (``(2 n p + n k_r + k_r p + 4 k_r^2) w``), the resolution matrices ``a p n w`` and,
      per batch, ``a p b w`` weights and the rows ``(n + p) b w``, beside the new weights
      (``p (t - b) w``) and the refit weights.
    * the cross-validated R² at each neuroid's choice, a batch of ``b`` targets at a time:
      the model's weights and scores (``(p + I + s + 1) t w``) beside the scaled features
      in float64 (``n p 8``; twice while they are stacked), a batch of targets in float64
      ``n b 8`` (and ``n b 4`` while converted) and its
      :func:`~neuroalign._preflight.ridge_memory` (float64, no refit).
    """
    sizes = [int(v) for v in n_features]
    n, t, a = int(n_samples), int(n_targets), int(n_alphas)
    p, s, it, w = sum(sizes), len(sizes), int(n_iter), int(itemsize)
    F = max(int(n_folds), 2)
    b = max(1, min(int(batch), t)) if t else 0
    n_tr, n_va = n * (F - 1) // F, -(-n // F)
    k, k_r = min(n_tr, p), min(n, p)
    kept = n * p * w + (n * t * w if fit_intercept else 0) + (it + F * a + s + 3) * t * w
    refit = p * t * w
    setup = kept + n * p * w
    rows = n * p * w  # the fold's training and validation rows
    usv = (n_tr * k + k * p) * w
    svd = rows + n_tr * p * w + usv + 4 * k * k * w
    resolve = rows + usv + a * p * n_tr * w + max(a * k * n_tr * w,
                                                   a * n_va * n_tr * w + 2 * n * b * w
                                                   + 2 * a * n_va * b * w)
    usv_r = (n * k_r + k_r * p) * w
    refit_svd = 2 * n * p * w + usv_r + 4 * k_r * k_r * w
    refit_batch = usv_r + a * p * n * w + max(a * k_r * n * w,
                                             p * max(t - b, 0) * w + (a * p + n + p) * b * w)
    search = max(setup, kept + refit + max(svd, resolve, refit_svd, refit_batch),
                 kept + 2 * refit)
    from neuroalign._preflight import ridge_memory

    form = "primal" if p <= n_tr else "dual"
    ridge = ridge_memory(n, p, b, n_alphas=a, n_folds=F, batch=b, itemsize=8, form=form,
                         refit=False) - pf.OVERHEAD
    cv_r2 = (p + it + s + 1) * t * w + max(2 * n * p * 8, n * p * 8 + n * b * 12,
                                            n * p * 8 + n * b * 8 + ridge)
    return int(max(search, cv_r2) + pf.OVERHEAD)


def banded_batch(n_samples: int, n_features, n_targets: int, *, n_alphas: int, n_iter: int,
                 n_folds: int, batch: int = 4096, fit_intercept: bool = True,
                 func: str = "BandedRidgeEncoder.fit", budget: int | None = None) -> int:
    """The batch of targets (himalaya's ``n_targets_batch``) to use: ``batch`` when
    :func:`banded_memory` fits the budget, else the largest smaller batch that does.

    Raises
    ------
    MemoryPreflightError
        When the fit does not fit even one target at a time.
    """
    budget = pf.memory_budget() if budget is None else budget
    kw = dict(n_alphas=n_alphas, n_iter=n_iter, n_folds=n_folds, fit_intercept=fit_intercept)
    t = int(n_targets)
    if budget is None or t == 0 or banded_memory(n_samples, n_features, t, batch=batch,
                                                  **kw) <= budget:
        return int(batch)
    fixed = banded_memory(n_samples, n_features, t, batch=1, **kw)
    if fixed > budget:
        sizes = [int(v) for v in n_features]
        pf._raise(fixed, budget,
                  f"{func}: the banded ridge of {t} neuroids ({n_samples} samples x "
                  f"{sum(sizes)} features in {len(sizes)} spaces, {n_alphas} alphas, {n_iter} "
                  f"candidate space weights, {n_folds} folds, float32) even one neuroid at a "
                  "time",
                  "fewer alphas (alphas=: the search keeps one matrix of features x samples "
                  "per alpha), fewer features (e.g. a PCA of each space), fewer samples per "
                  "fit, or fewer neuroids per call (e.g. by ROI, or cluster= with a smaller "
                  "batch_size)")
    # the estimate grows with the batch: the largest that fits
    return pf.largest_fitting(
        lambda b: banded_memory(n_samples, n_features, t, batch=b, **kw) <= budget, batch)


# -- searchlight ---------------------------------------------------------------------------
_RANK_BLOCK = 1 << 22  # entries ranked together (neuroalign.compare._ranks._ROWS_BLOCK)
_RANK_ROWS_MAX = 1024  # shorter rows are ranked a block at a time (_ranks._ROWS_MAX)
_DIST_BYTES = 64 * 2**20  # Dijkstra distances at a time (_searchlight_geometry._DIST_BYTES)
_CELLS_PER_ROUND = 64  # cached cells built and run at a time (_searchlight._CHUNKS_PER_ROUND)
_TAU_RUNTIME = 121 * 2**20  # numba and the compiled tau-a count, loaded on first use
# (measured: the resident memory a process gains from its first tau-a comparison)
_SEARCH_OVERHEAD_ONE = 30 * 2**20  # the fixed cost of a searchlight with one thread


def search_overhead(workers: int) -> int:
    """The fixed cost of a searchlight beyond its arrays (the allocator's slack, BLAS's
    buffers): :data:`_SEARCH_OVERHEAD_ONE` (30 MiB) with one thread over chunks,
    :data:`~neuroalign._preflight.OVERHEAD` (48 MiB) with more (each thread's malloc arena
    keeps its own freed memory). Measured by ``benchmarks/bench_preflight.py``: the
    resident peak of the one-thread cells exceeds what their arrays need (the formula,
    which ``tracemalloc``'s peak matches within 5 %) by 6-44 MiB, glibc's slack, which
    depends on the order of the frees; two threads by 10-74 MiB. The ridge fits' 48 MiB put
    the one-thread searchlights of 100-140 MiB on fsaverage5 up to 33 % high."""
    return _SEARCH_OVERHEAD_ONE if int(workers) <= 1 else pf.OVERHEAD


def _tau_runtime(method: str) -> int:
    """Bytes that loading numba and the compiled tau-a count adds to the process:
    :data:`_TAU_RUNTIME` for ``tau_a`` before its first use (when numba is installed)."""
    if method != "tau_a" or "neuroalign.compare._tau_kernel" in sys.modules:
        return 0
    import importlib.util

    return _TAU_RUNTIME if importlib.util.find_spec("numba") is not None else 0


def _compare_memory(n: int, m_all: int, m: int, c: int, k: int, method: str) -> int:
    """Bytes of the comparison step of a chunk beyond its RDMs (``c m_all 8``, and a copy
    of the pairs kept ``c m 8`` when some are left out): see
    :func:`searchlight_chunk_memory`."""
    if method in ("spearman", "rho_a"):
        if m < _RANK_ROWS_MAX:  # short rows: ranked a block of rows at a time
            block = min(c * m, max(m, _RANK_BLOCK))
        else:  # one row at a time, or one per thread
            from neuroalign.compare._ranks import row_threads

            block = row_threads(c, m) * m
        return c * m * 8 + 17 * block
    if method == "pearson":
        return c * m * 8
    if method == "cosine":
        return 0
    if method == "tau_a":
        from neuroalign.compare._ranks import row_threads

        return 16 * m + row_threads(c, m) * 40 * m
    # second-moment methods: G = -1/2 H D H of every RDM, (c, n, n) and (k, n, n)
    g, gk = c * n * n * 8, k * n * n * 8
    full = m != m_all  # pairs left out: G is built from a zero-filled full vector
    centred = (c + k) * m * 8 if method == "pearson_cov" else 0
    build_a = (c * m_all * 8 if full else 0) + 3 * g + 16 * m_all
    build_b = g + (k * m_all * 8 if full else 0) + 3 * gk + 16 * m_all
    scale = g + gk + c * m * 8
    bures = g + gk + (3 + 2 * k) * n * n * 8 if method == "bures" else 0
    return centred + max(build_a, build_b, scale, bures)


def searchlight_chunk_memory(n_stimuli: int, width: int, chunk: int, *, n_neuroids: int,
                             method: str = "spearman", rdm_metric: str = "correlation",
                             n_pairs_kept: int | None = None, itemsize: int = 8,
                             n_models: int = 1) -> int:
    """Peak bytes of one chunk of a searchlight (one thread's working set).

    With ``c`` centres of at most ``w`` neuroids (``width``), ``n`` stimuli, ``m`` pairs
    (``n_pairs_kept``: those finite in every model RDM; ``M = n (n-1) / 2`` in all), ``k``
    model RDMs, ``u = min(c w, N)`` neuroids read (``x`` bytes per value of the data), the
    largest of

    * gathering the patterns: the neighbourhood table and its indices (``40 c w``), the
      columns read in float64 ``u n 8`` beside, first, the same columns as read
      (``u n x``), then the patterns ``c w n 8``;
    * the Gram matrices ``c n^2 8`` beside the patterns and their sums (``c w 8 + 3 c n 8``);
    * the RDMs: the Gram matrices beside the dissimilarities and the temporaries that form
      them (``4 c M 8`` in all for correlation, ``3 c M 8`` otherwise) and the pair
      indices (``32 M``);
    * the comparison: the RDMs ``c M 8`` (and ``c m 8`` more when some pairs are left out)
      and what the method adds:

      - ``pearson``: the centred vectors ``c m 8``; ``cosine``: nothing;
      - ``spearman``, ``rho_a``: the ranks ``c m 8`` and the sort of a block of rows
        (``17`` bytes per entry): rows of fewer than 1,024 pairs ``2^22`` entries at a
        time, longer rows one at a time (``T`` at once, as tau-a's);
      - ``tau_a`` (one row at a time against each model,
        :func:`neuroalign.compare._ranks._tau_a`): the model's sorting order and dense
        ranks ``16 m``, and per row ``40 m`` (the row in the model's order, its sort's keys
        and order, the compiled count's buffer), ``T`` rows at once (``T``:
        :func:`~neuroalign._config.max_threads` when ``m`` is at least 100,000, else 1);
      - ``cosine_cov``, ``pearson_cov``, ``bures``
        (:func:`neuroalign.compare._second_moment.second_moment_compare`), with
        ``G = c n^2 8`` and ``G_k = k n^2 8``: the largest of building the data's ``G``
        (the square RDMs, halved in place, and the two temporaries of their double
        centring, ``3 G``, the pair indices ``16 M``, and with pairs left out the
        zero-filled vectors ``c M 8``), building the models' (``G`` beside ``3 G_k``,
        ``16 M`` and ``k M 8``), the scale of each vector beside both
        (``G + G_k + c m 8``) and, for ``bures``, one centre at a time beside both
        (``G + G_k + (3 + 2 k) n^2 8``: the ``k`` products with the square root's
        factor and their symmetric parts ``2 k n^2 8``, beside the eigenvectors and that
        factor ``2 n^2 8`` and LAPACK's copy of a matrix; LAPACK's workspace, ``3 n^2 8``
        while the eigenvectors are found, is never larger);
        ``pearson_cov`` adds the centred vectors ``(c + k) m 8``.
    """
    c, wd, n = int(chunk), max(int(width), 1), int(n_stimuli)
    m_all = n * (n - 1) // 2
    m = m_all if n_pairs_kept is None else int(n_pairs_kept)
    u = min(c * wd, int(n_neuroids))
    gather = 40 * c * wd + u * n * 8 + max(u * n * int(itemsize), c * wd * n * 8)
    gram = c * wd * n * 8 + c * n * n * 8 + c * wd * 8 + 3 * c * n * 8
    temps = 4 if rdm_metric == "correlation" else 3
    rdms = c * n * n * 8 + temps * c * m_all * 8 + 32 * m_all
    d = c * m_all * 8 + (c * m * 8 if m != m_all else 0)
    compare = d + _compare_memory(n, m_all, m, c, max(int(n_models), 1), method)
    return int(max(gather, gram, rdms, compare))


def surface_memory(meshes) -> tuple[int, int, int]:
    """``(kept, build, tree)`` bytes of a surface searchlight's meshes
    (:class:`neuroalign.compare._searchlight_geometry.SurfaceDiscs`).

    ``meshes``: ``(V, E, F)`` (vertices, edges, faces) per hemisphere, in the order they
    are built. ``kept``: per hemisphere the edge graph (CSR, ``2 E (8 + 4) + 4 V``), the
    float64 vertices ``24 V`` and the lookup of neuroids ``8 V``. ``build``: the peak while
    they are built: the hemispheres built before beside one hemisphere's vertices
    (``36 V``, its own kept part but the graph) and the larger of the edge keys ``72 F``
    (the faces in int64, their rotation and the keys) and the graph's CSR build
    (``56 E + 4 V``).
    ``tree``: the KD-tree of one hemisphere (``40 V``: its copy of the vertices, their
    order and the nodes), kept while its discs are built.
    """
    kept = build = tree = 0
    for v, e, f in ((int(a), int(b), int(c)) for a, b, c in meshes):
        build = max(build, kept + 36 * v + max(72 * f, 56 * e + 4 * v))
        kept += 24 * e + 36 * v + 4
        tree = max(tree, 40 * v)
    return kept, build, tree


def disc_build_memory(chunk: int, ball: int, disc: int, candidates: int) -> int:
    """Peak bytes of building the discs of one chunk of a surface searchlight
    (``SurfaceDiscs._discs``): ``c`` centres (at most 512), ``b`` mesh vertices in the
    widest Euclidean ball of ``radius`` (``ball``), ``d`` in the widest disc (``disc``),
    ``K`` vertices in the union of a chunk's balls (``candidates``), ``R = min(c, max(1,
    64 MiB / 8 K))`` rows of distances at a time. The larger of

    * the balls: Python lists of ints ``40 c b`` (a pointer and an int object per entry)
      beside their concatenation, then its sorted copy and mask (``8 + 8 + 1`` per entry),
      and the candidates ``8 K``;
    * the Dijkstra search: the distances ``R K 8`` and those within ``radius`` (``R K``),
      the vertices found (``16 c d``), the candidates and their subgraph (``8 K + 200 K``).

    (The table that follows, the vertices found and their neuroids ``40 c d`` beside the
    padded table and its copy of the centres kept ``16 c d``, is always below the balls.)
    """
    c, K = int(chunk), max(int(candidates), 1)
    b, d = max(int(ball), 1), max(int(disc), 1)
    rows = min(c, max(1, _DIST_BYTES // (8 * K)))
    balls = 57 * c * b + 8 * K
    dijkstra = 9 * rows * K + 16 * c * d + 208 * K
    return int(max(balls, dijkstra))


def searchlight_memory(n_stimuli: int, n_neuroids: int, width: int, chunk: int, *,
                       n_models: int, workers: int = 1, method: str = "spearman",
                       rdm_metric: str = "correlation", n_pairs_kept: int | None = None,
                       itemsize: int = 8, grid_cells: int = 0,
                       surface: dict | None = None, cells: bool = False) -> int:
    """Peak bytes of a searchlight beyond its data, plus its fixed cost
    (:func:`search_overhead`: 30 MiB with one thread, 48 MiB with more).

    Kept throughout: the results (``k N 8`` similarities and the neighbourhood sizes
    ``N 8``), the model RDMs prepared for the comparison (``4 k m 8``), for ``tau_a``
    before its first use numba and the compiled count (121 MiB, measured) and the
    neighbourhoods' geometry: a volume's lookup grid (``grid_cells`` int64), or on a
    surface the meshes' part of :func:`surface_memory` and the neuroids' vertices and
    hemispheres (``16 N``).

    Volume: ``workers`` chunks in flight at once (:func:`searchlight_chunk_memory`, each
    with its neighbourhood table ``8 c w``), and the next two tables being built
    (``60 c w``).

    Surface (chunks of at most 512 centres; ``surface``: ``meshes``, ``(V, E, F)`` per
    hemisphere, and ``ball``, ``disc`` and ``candidates`` of :func:`disc_build_memory`): the
    larger of building the meshes (:func:`surface_memory`) and the search. With one thread
    a chunk's discs are built (:func:`disc_build_memory`) and then compared, never both at
    once: the larger of the two, beside one hemisphere's KD-tree; with more, ``workers``
    chunks in flight, ``workers`` tables queued (``8 c w`` each) and one chunk's discs
    being built.

    ``cells``: chunks run as cached cells in this process, 64 at a time: their tables and
    results are held for the round (``64 (8 c w + c (8 k + 9))``).
    """
    n, N, k = int(n_stimuli), int(n_neuroids), int(n_models)
    c, wd = int(chunk), max(int(width), 1)
    m = n * (n - 1) // 2 if n_pairs_kept is None else int(n_pairs_kept)
    fixed = k * N * 8 + N * 9 + 4 * k * m * 8 + 8 * int(grid_cells) + _tau_runtime(method)
    one = searchlight_chunk_memory(n, wd, c, n_neuroids=N, method=method, rdm_metric=rdm_metric,
                                   n_pairs_kept=n_pairs_kept, itemsize=itemsize, n_models=k)
    per = one + 8 * c * wd
    w = int(workers)
    if cells:
        fixed += _CELLS_PER_ROUND * (8 * c * wd + c * (8 * k + 9))
    if not surface:
        return int(fixed + w * per + 60 * c * wd + search_overhead(w))
    kept, build, tree = surface_memory(surface["meshes"])
    discs = disc_build_memory(c, surface["ball"], surface["disc"], surface["candidates"])
    search = max(per, discs) if w == 1 else w * (per + 8 * c * wd) + discs
    return int(fixed + 16 * N + max(build, kept + tree + search) + search_overhead(w))


def searchlight_chunk(n_stimuli: int, n_neuroids: int, width: int, *, n_models: int,
                      workers: int, max_memory: float, method: str, rdm_metric: str,
                      n_pairs_kept: int | None = None, itemsize: int = 8, grid_cells: int = 0,
                      surface: dict | None = None, max_chunk: int = 8192,
                      cells: bool = False, fixed_chunk: int | None = None,
                      budget: int | None = None, apply_budget: bool = True) -> int:
    """Centres per chunk of a searchlight: the largest (at most ``max_chunk``: 8192, 512 on
    a surface) whose working set (:func:`searchlight_chunk_memory`) fits ``max_memory`` MiB
    per thread and whose whole peak (:func:`searchlight_memory`, ``workers`` chunks at
    once, and on a surface the meshes and the discs being built) fits the budget.
    ``fixed_chunk``: a chunk size set by the caller (cached cells, ``batch_size``; at most
    ``max_chunk`` are taken at a time), only checked; ``cells``: run as cached cells in
    this process (see :func:`searchlight_memory`). ``apply_budget=False``: ``max_memory`` only (a GPU, or cells run elsewhere).

    Raises
    ------
    MemoryPreflightError
        When not even one centre per chunk fits (or ``fixed_chunk`` does not).
    """
    kw = dict(n_pairs_kept=n_pairs_kept, method=method, rdm_metric=rdm_metric,
              itemsize=itemsize)
    whole = dict(kw, n_models=n_models, workers=workers, grid_cells=grid_cells,
                 surface=surface, cells=cells)

    per_thread = max_memory * 2**20
    if fixed_chunk is not None:
        chunk = min(int(fixed_chunk), int(max_chunk))
    else:
        chunk = pf.largest_fitting(
            lambda c: searchlight_chunk_memory(n_stimuli, width, c, n_neuroids=n_neuroids,
                                               n_models=n_models, **kw) <= per_thread,
            int(max_chunk))
    if not apply_budget:
        return chunk
    budget = pf.memory_budget() if budget is None else budget
    if budget is None or searchlight_memory(n_stimuli, n_neuroids, width, chunk,
                                            **whole) <= budget:
        return chunk
    first = 1 if fixed_chunk is None else chunk
    need = searchlight_memory(n_stimuli, n_neuroids, width, first, **whole)
    if need > budget:
        where = ""
        if surface:
            meshes = surface["meshes"]
            where = (f" on a surface of {sum(int(v) for v, _, _ in meshes)} vertices in "
                     f"{len(meshes)} mesh{'es' if len(meshes) != 1 else ''}")
        what = (f"searchlight: {n_neuroids} centres over {n_stimuli} stimuli{where} "
                f"(neighbourhoods of up to {width} neuroids, {n_models} model RDMs, {workers} "
                f"thread{'s' if workers != 1 else ''})")
        lower = ("fewer stimuli (each centre's RDM grows with their square), fewer "
                 "threads (n_jobs=1), a smaller radius, or fewer model RDMs")
        if surface:
            lower += (" (on a surface the meshes' graphs are kept, and each chunk's "
                      "distances cover the vertices within radius of its centres: a "
                      "smaller radius, or one hemisphere per call, lowers them)")
        if fixed_chunk is None:
            pf._raise(need, budget, what + " even one centre per chunk", lower)
        pf._raise(need, budget, what + f" with {chunk} centres per cell",
                  "a smaller batch_size (centres per cell; by default max_memory sets it), "
                  "fewer stimuli or a smaller radius")
    return pf.largest_fitting(
        lambda c: searchlight_memory(n_stimuli, n_neuroids, width, c, **whole) <= budget, chunk)
