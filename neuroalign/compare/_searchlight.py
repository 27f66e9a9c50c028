"""Searchlight RSA: an RDM per sphere (volume) or disc (surface), compared with model RDMs.

Chunked over centres (memory bounded by ``max_memory``, never a table for the whole brain),
chunks run in threads (the matrix products, sorts and Dijkstra searches release the GIL)
with BLAS limited so that workers times their threads never exceed the cores.
"""

from __future__ import annotations

import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._config import limit_this_thread, max_threads, thread_limits
from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option, check_positive_int, format_list
from neuroalign.compare._compare_rdms import COMPARE_METHODS, as_rdm_vectors
from neuroalign.compare._inputs import align_stimuli, as_matrix, is_torch, to_numpy
from neuroalign.compare._rdm import squareform_vector, vector_squareform
from neuroalign.compare._searchlight_chunks import _centre_chunk, _Models
from neuroalign.compare._searchlight_geometry import SurfaceDiscs, VolumeSpheres, load_surface
from neuroalign.exceptions import DataQualityWarning, DimensionError

__all__ = ["searchlight", "SEARCHLIGHT_RDM_METRICS"]

log = get_logger(__name__)

SEARCHLIGHT_RDM_METRICS = ("correlation", "sqeuclidean", "euclidean")


def _neuroid_array(data: Any) -> xr.DataArray | None:
    if isinstance(data, xr.Dataset) and "responses" in data.data_vars:
        return data["responses"]
    return data if isinstance(data, xr.DataArray) else None


def _geometry(data, X, radius, threshold, mask_ijk, volume_shape, surface):
    """The neighbourhoods (VolumeSpheres or SurfaceDiscs) and the neuroid coordinates."""
    arr = _neuroid_array(data)
    n = X.shape[1]
    ndim = None if arr is None else [d for d in arr.dims if d not in ("stimulus", "presentation")][0]
    coords = {} if arr is None else {k: v for k, v in arr.coords.items() if v.dims == (ndim,)}
    attrs = {} if arr is None else dict(arr.attrs)
    if isinstance(data, xr.Dataset):
        attrs = {**dict(data.attrs), **attrs}
    if surface is None:
        if mask_ijk is None:
            if not all(c in coords for c in ("i", "j", "k")):
                raise ValueError(
                    "Invalid value for 'ijk' in searchlight(): None, and the data has no voxel "
                    "coordinates i, j, k. Expected a volume store (from_nifti, NSD func1pt8mm), "
                    "ijk= (n_neuroids, 3) voxel indices, or surface= for surface data."
                )
            mask_ijk = np.stack([np.asarray(coords[c].values) for c in ("i", "j", "k")], 1)
        mask_ijk = np.asarray(mask_ijk)
        if mask_ijk.shape[:1] != (n,):
            raise DimensionError(
                f"Invalid value for 'ijk' in searchlight(): shape {mask_ijk.shape!r}. Expected "
                f"one voxel per neuroid, shape ({n}, 3)."
            )
        if volume_shape is None and "volume_shape" in attrs:
            volume_shape = np.asarray(attrs["volume_shape"]).tolist()
        return VolumeSpheres(mask_ijk, radius, volume_shape, threshold), coords, ndim
    if isinstance(surface, str):
        hemis = np.asarray(coords["hemisphere"].values).astype(str) if "hemisphere" in coords \
            else np.full(n, "lh")
        meshes = {h: load_surface(surface, h) for h in np.unique(hemis)}
    elif isinstance(surface, dict):
        meshes = surface
        hemis = np.asarray(coords["hemisphere"].values).astype(str) if "hemisphere" in coords \
            else None
        if hemis is None:
            if len(meshes) != 1:
                raise ValueError(
                    "Invalid value for 'surface' in searchlight(): meshes for "
                    f"{sorted(meshes)!r} but the data has no 'hemisphere' coordinate. Expected "
                    "one mesh (vertices, faces) for data on one surface."
                )
            hemis = np.full(n, next(iter(meshes)))
    else:
        if not isinstance(surface, tuple | list) or len(surface) != 2:
            raise ValueError(
                f"Invalid value for 'surface' in searchlight(): {type(surface).__name__}. "
                "Expected a mesh (vertices, faces), a dict {'lh': mesh, 'rh': mesh}, "
                "'fsaverage' or 'fsaverage5'."
            )
        meshes = {"mesh": surface}
        hemis = np.full(n, "mesh")
    vertex = np.asarray(coords["vertex"].values) if "vertex" in coords else np.arange(n)
    return SurfaceDiscs(meshes, hemis, vertex, radius, threshold), coords, ndim



_CELL_VARS = ("sim", "bad", "sizes")
_CHUNKS_PER_ROUND = 64  # chunks whose tables are built and submitted at a time (cells;
# the memory preflight counts them: neuroalign._preflight_search._CELLS_PER_ROUND)


def _cells_in_rounds(so, geom, chunk: int, base: str, shared: tuple, what: str):
    """Chunks of centres as cached cells (:func:`neuroalign._scaleout.run_cells`), built and
    submitted ``_CHUNKS_PER_ROUND`` at a time (never a table for the whole brain): yields
    ``(centres, cell)``; sets ``so.info``."""
    from itertools import islice

    from neuroalign._scaleout import fingerprint, run_cells

    so.info = {"n_batches": 0, "computed": [], "skipped": [], "result_path": str(so.folder)}
    items = ((c, t) for c, t in geom.chunks(chunk) if len(c))
    while batch := list(islice(items, _CHUNKS_PER_ROUND)):
        keys = [fingerprint(base, c, t) for c, t in batch]
        cells, info = run_cells(_centre_chunk, keys, lambda i, b=batch: b[i], names=_CELL_VARS,
                                folder=so.folder, shared=shared, client=so.lazy, what=what,
                                fail=so.fail)
        first = so.info["n_batches"]
        so.info["n_batches"] += info["n_batches"]
        so.info["computed"] += [first + i for i in info["computed"]]
        so.info["skipped"] += [first + i for i in info["skipped"]]
        yield from ((c, cell) for (c, _), cell in zip(batch, cells, strict=True))


def _bounded_map(pool, func, items, in_flight: int):
    """``pool.map`` in order with at most ``in_flight`` items submitted at a time (the
    neighbourhood tables of a whole brain are never all built at once)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(func, item))
        if len(pending) >= in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _width(geom, budget: int = 2**25) -> int:
    """The most neuroids in a neighbourhood (for the memory preflight): a volume's sphere;
    on a surface, the widest disc, exact or (when ``budget`` runs out) an upper bound
    (:meth:`SurfaceDiscs.widest`)."""
    if geom.max_size:
        return int(geom.max_size)
    return geom.widest(budget)[0]


def _geometry_sizes(geom) -> dict:
    """What the memory preflight needs of the neighbourhoods
    (:func:`neuroalign._preflight_search.searchlight_chunk`): their width, and a volume's
    lookup grid, or a surface's meshes (vertices, edges, faces per hemisphere), widest
    ball and disc (mesh vertices), the most vertices a chunk's Dijkstra runs on, and the
    chunk's cap."""
    if not isinstance(geom, SurfaceDiscs):
        return {"width": int(geom.max_size), "grid_cells": int(geom._lut.size)}
    width, disc, ball = geom.widest()
    meshes = [(len(geom.coords[h]), geom.graphs[h].nnz // 2, geom.n_faces[h])
              for h in geom.graphs]
    return {"width": width, "max_chunk": geom.max_chunk,
            "surface": {"meshes": meshes, "ball": ball, "disc": disc,
                        "candidates": geom.candidates(geom.max_chunk)}}


def _model_labels(models, k: int, dims, coords) -> tuple[str, np.ndarray]:
    if dims and len(dims) == 1:
        dim = dims[0]
        if dim in coords:
            return dim, np.asarray(coords[dim].values)
        return dim, np.arange(k)
    return "model", np.array([f"model_{i}" for i in range(k)])


def searchlight(
    data: Any,
    models: Any,
    *,
    radius: float = 3.0,
    method: Literal[
        "cosine", "pearson", "spearman", "rho_a", "tau_a", "cosine_cov", "pearson_cov", "bures"
    ] = "spearman",
    rdm_metric: Literal["correlation", "sqeuclidean", "euclidean"] = "correlation",
    threshold: float = 1.0,
    ijk: Any = None,
    volume_shape: Any = None,
    surface: Any = None,
    n_jobs: int | None = None,
    max_memory: float = 256.0,
    device: str | None = None,
    show_progress: bool | None = None,
    cluster: Any = None,
    cluster_options: dict | None = None,
    result_path: Any = None,
    batch_size: int | None = None,
    client: Any = None,
    _fail: dict | None = None,
) -> xr.DataArray:
    """Searchlight RSA: compare the RDM of every sphere or disc with model RDMs.

    For each centre neuroid, the RDM of the patterns of its neighbourhood (all neuroids
    within ``radius``) is compared with each model RDM. On a volume the neighbourhood is a
    sphere of voxels at a Euclidean distance strictly below ``radius`` voxels (as
    rsatoolbox's ``get_volume_searchlight``); on a surface a disc of vertices within
    ``radius`` (mm) along the mesh. Values equal rsatoolbox's ``get_searchlight_RDMs`` plus
    ``evaluate_models_searchlight`` with ``eval_fixed`` (its ``truncate_at_boundary=True``
    form when ``threshold < 1``: spheres contain neuroids only; rsatoolbox then keeps every
    mask voxel as a centre, while here ``threshold`` is always the share of the whole
    sphere).

    Parameters
    ----------
    data : xr.Dataset, xr.DataArray or ndarray
        Patterns ``(n_stimuli, n_neuroids)``: a store averaged over repetitions (volume
        stores carry voxel coordinates ``i, j, k`` and the ``volume_shape`` attr; surface
        stores ``hemisphere`` and ``vertex``), a DataArray, or an array with ``ijk=``.
    models : array-like or xr.DataArray
        Model RDMs: ``(k, n, n)``, ``(k, n_pairs)``, one ``(n, n)``, or DataArrays from
        :func:`neuroalign.compare.rdm` (joined on ``stimulus_id`` when both sides have it).
        NaN dissimilarities are left out of every comparison.
    radius : float
        Sphere radius in voxels (volume) or disc radius in mesh units (surface).
    method : str
        RDM comparison, as :func:`neuroalign.compare.compare_rdms` (``"pearson"`` is
        rsatoolbox's ``"corr"``). ``pearson``, ``cosine``, ``spearman`` and ``rho_a`` are
        vectorised over centres; the others go through ``compare_rdms`` chunk by chunk.
    rdm_metric : {"correlation", "sqeuclidean", "euclidean"}
        Dissimilarity within a neighbourhood, as :func:`neuroalign.compare.rdm`
        (``"sqeuclidean"`` is rsatoolbox's ``"euclidean"``: divided by the channels).
    threshold : float
        A neuroid is a centre when at least this share of the voxels of its sphere (on the
        grid) or of the vertices of its disc are neuroids; others get NaN. 1.0 (default,
        as rsatoolbox) keeps only whole spheres.
    ijk : array-like, optional
        Voxel indices ``(n_neuroids, 3)`` for array data (default: the coordinates
        ``i, j, k``).
    volume_shape : tuple of 3 ints, optional
        The grid (default: the data's ``volume_shape`` attr; else unbounded). Sphere voxels
        off the grid do not count towards ``threshold``.
    surface : str, tuple, or dict, optional
        Surface data: a mesh ``(vertices, faces)``, ``{"lh": mesh, "rh": mesh}`` (neuroids
        matched on the ``hemisphere`` and ``vertex`` coordinates), ``"fsaverage5"``
        (nilearn's) or ``"fsaverage"`` (from a FreeSurfer installation, never downloaded);
        the distance is along the midthickness mesh's edges.
    n_jobs : int, optional
        Threads over chunks of centres (default and maximum: the cores, or the limit of an
        active :func:`neuroalign.thread_limits` block); BLAS gets ``cores // n_jobs``
        threads each, restored afterwards.
    max_memory : float
        MiB of working memory per thread: the chunk of centres is the largest whose
        estimated working set fits (and, with every thread's chunk at once, the memory
        available: :mod:`neuroalign._preflight_search`, which on a surface also counts the
        meshes and each chunk's Dijkstra search; a
        :class:`~neuroalign.exceptions.MemoryPreflightError` before any work when not even
        one centre fits). On a surface a chunk holds at most 512 centres.
    device : str, optional
        Compute the RDMs (and the ranks) with torch on this device (``"cpu"``, ``"cuda"``).
    show_progress : bool, optional
        Progress over chunks (default: when on a terminal).
    cluster : None, "none", "local", "slurm", "pbs", scheduler address, Client or dict
        Run chunks of centres as cached cells on this cluster
        (:func:`neuroalign._scaleout.get_client`, as :meth:`RidgeEncoder.fit
        <neuroalign.encoders.RidgeEncoder.fit>`); same values as the single-process run.
    cluster_options : dict, optional
        Options of the cluster (Slurm/PBS: dask-jobqueue's ``cores``, ``memory``, ...).
    result_path : path-like, optional
        Folder of the cached cells (``result_path/cells/``), one per chunk of centres, keyed
        by the data, the models, the parameters and the chunk's neighbourhoods: a rerun
        computes only the missing ones. Also with ``cluster=None`` (cells in this process).
    batch_size : int, optional
        Centres per cell (default: the chunk size that ``max_memory`` gives).
    client : dask.distributed.Client, optional
        Run the cells on this client's workers.

    Returns
    -------
    xr.DataArray
        Similarities with dims ``('model', 'neuroid')`` (the models' own dim name when
        they carry one) and the data's neuroid coordinates, NaN where a neuroid is not a
        centre; coordinate ``n_neighbours`` (0 for non-centres); attrs ``method``,
        ``rdm_metric``, ``radius``, ``threshold`` and ``n_centres`` (with cells also
        ``n_cells``, ``n_cells_computed`` and ``result_path``). A centre whose
        neighbourhood has a NaN/infinite neuroid, dissimilarities that overflow float64
        or, for ``"correlation"``, a stimulus with a constant pattern is NaN, with a
        :class:`neuroalign.exceptions.DataQualityWarning`; the other centres are
        unaffected.

    Examples
    --------
    >>> import numpy as np
    >>> from neuroalign.compare import searchlight
    >>> rng = np.random.default_rng(0)
    >>> ijk = np.argwhere(np.ones((6, 6, 6), dtype=bool)) + 1  # a 6 x 6 x 6 mask ...
    >>> data = rng.standard_normal((10, len(ijk)))  # 10 stimuli
    >>> models = rng.random((2, 45))  # 2 model RDMs (upper triangles)
    >>> sl = searchlight(data, models, ijk=ijk, volume_shape=(8, 8, 8), radius=2)  # ... in 8^3
    >>> sl.dims, int(sl.attrs["n_centres"])  # whole 3 x 3 x 3 spheres around 4 x 4 x 4 voxels
    (('model', 'neuroid'), 64)
    >>> sl.sel(model="model_0").shape
    (216,)
    """
    check_option(method, COMPARE_METHODS, name="method", func="searchlight")
    check_option(rdm_metric, SEARCHLIGHT_RDM_METRICS, name="rdm_metric", func="searchlight")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or \
            not 0 <= threshold <= 1:
        raise ValueError(
            f"Invalid value for 'threshold' in searchlight(): {threshold!r}. Expected a share "
            "between 0 and 1."
        )
    if not isinstance(max_memory, int | float) or isinstance(max_memory, bool) or \
            not max_memory > 0:
        raise ValueError(
            f"Invalid value for 'max_memory' in searchlight(): {max_memory!r}. Expected a "
            "positive number of MiB."
        )
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int)
                               or n_jobs < 1):
        raise ValueError(
            f"Invalid value for 'n_jobs' in searchlight(): {n_jobs!r}. Expected a positive "
            "integer or None."
        )
    X, ids, _ = as_matrix(data, name="data", func="searchlight")
    if is_torch(X):  # pragma: no cover - as_matrix returns numpy without keep_torch
        X = to_numpy(X)
    n, n_neuroids = X.shape
    if n < 3:
        raise DimensionError(
            f"Invalid value for 'data' in searchlight(): {n} stimuli. Expected at least 3."
        )
    vb, shb, dimb, cob, idb = as_rdm_vectors(models, name="models", func="searchlight")
    if vb.shape[1] != n * (n - 1) // 2:
        raise DimensionError(
            f"searchlight(): the data has {n} stimuli ({n * (n - 1) // 2} pairs) but the "
            f"model RDMs have {vb.shape[1]} pairs. Expected model RDMs over the same stimuli."
        )
    idx = align_stimuli(ids, idb, names=("data", "models"), func="searchlight",
                        n_a=n, n_b=n)
    if idx is not None:
        vb = squareform_vector(vector_squareform(vb)[:, idx][:, :, idx])
    if np.isinf(vb).any():
        raise ValueError(
            "Invalid value for 'models' in searchlight(): infinite dissimilarities. Expected "
            "finite values (NaN marks entries to leave out)."
        )
    keep = ~np.isnan(vb).any(0)
    if keep.sum() < 3:
        raise ValueError(
            "Invalid value for 'models' in searchlight(): fewer than 3 dissimilarities are "
            "finite in every model RDM. Expected model RDMs with finite entries."
        )
    dev = None
    if device is not None:
        from neuroalign._config import resolve_device

        dev = resolve_device(device)
    prepared = _Models(vb[:, keep], method, dev, keep)
    geom, coords, ndim = _geometry(data, X, radius, threshold, ijk, volume_shape, surface)
    bad_vox = np.zeros(n_neuroids, dtype=bool)
    for s in range(0, n_neuroids, 65536):
        bad_vox[s:s + 65536] = ~np.isfinite(X[:, s:s + 65536]).all(0)

    k = len(vb)
    limit = max_threads()
    workers = min(limit, n_jobs or limit)
    each = max(1, limit // workers)
    from neuroalign._scaleout import ScaleOut

    so = ScaleOut(cluster=cluster, cluster_options=cluster_options, client=client,
                  result_path=result_path, batch_size=batch_size, func="searchlight",
                  prefix="neuroalign-searchlight-")
    # memory preflight (numpy path): the chunk whose working set fits max_memory per thread
    # and whose whole peak, every thread's chunk at once, fits the memory available. Cached
    # cells are keyed by their centres: their chunk (batch_size, or max_memory's) never
    # depends on the memory available; it is checked when the cells run in this process
    from neuroalign._preflight_search import searchlight_chunk

    kw = dict(n_models=k, max_memory=max_memory, method=method, rdm_metric=rdm_metric,
              n_pairs_kept=int(keep.sum()), itemsize=X.dtype.itemsize, **_geometry_sizes(geom))
    width = kw.pop("width")
    chunk = searchlight_chunk(n, n_neuroids, width, workers=workers,
                              apply_budget=dev is None and not so.active, **kw)
    if so.active:
        if so.batch_size is not None:
            chunk = check_positive_int(so.batch_size, name="batch_size", func="searchlight")
        if dev is None and not so.distributed:
            searchlight_chunk(n, n_neuroids, width, workers=1, fixed_chunk=chunk, cells=True,
                              **kw)
    out = np.full((k, n_neuroids), np.nan)
    sizes = np.zeros(n_neuroids, dtype=np.int64)
    undefined: list[np.ndarray] = []

    def run(item):
        centres, table = item
        if len(centres) == 0:
            return centres, np.zeros(0, dtype=bool)
        cell = _centre_chunk(X, prepared, bad_vox, keep, rdm_metric, dev, centres, table)
        out[:, centres] = cell["sim"]
        sizes[centres] = cell["sizes"]
        return centres, cell["bad"]

    disable = None if show_progress is None else not show_progress
    if so.active:
        from neuroalign._scaleout import fingerprint

        n_chunks = -(-n_neuroids // chunk)
        base = fingerprint("searchlight", np.asarray(X, dtype=np.float64), vb[:, keep], keep,
                           method, rdm_metric, str(dev))
        so.fail = _fail
        with so:
            for centres, cell in progress(
                    _cells_in_rounds(so, geom, chunk, base, (X, prepared, bad_vox, keep,
                                                              rdm_metric, dev), "searchlight"),
                    desc="searchlight", unit="chunk", disable=disable):
                out[:, centres] = cell["sim"]
                sizes[centres] = cell["sizes"]
                if cell["bad"].any():
                    undefined.append(centres[cell["bad"]])
    else:
        n_chunks = -(-n_neuroids // chunk)
        with thread_limits(each), ThreadPoolExecutor(
                max_workers=workers, initializer=limit_this_thread, initargs=(each,)) as pool:
            results = _bounded_map(pool, run, geom.chunks(chunk), 2 * workers) if workers > 1 \
                else map(run, geom.chunks(chunk))
            for centres, bad in progress(results, desc="searchlight", total=n_chunks,
                                         unit="chunk", disable=disable):
                if bad.any():
                    undefined.append(centres[bad])
    n_centres = int((sizes > 0).sum())
    if undefined:
        bad_idx = np.concatenate(undefined)
        names = coords["neuroid_id"].values[bad_idx] if "neuroid_id" in coords else bad_idx
        warnings.warn(
            f"searchlight(): {len(bad_idx)} of {n_centres} centres are NaN: their "
            "neighbourhood has a NaN or infinite neuroid, dissimilarities beyond the float64 "
            "range, or a stimulus whose pattern is constant across it (correlation "
            f"undefined): {format_list(names, limit=5)}.",
            DataQualityWarning, stacklevel=2,
        )
    if n_centres == 0:
        log.warning("searchlight(): no centre passed threshold=%s at radius %s; every value "
                    "is NaN.", threshold, radius)
    mdim, mlabels = _model_labels(models, k, dimb, cob)
    ndim = ndim or "neuroid"
    cells = {}
    if so.active:
        cells = {"n_cells": so.info["n_batches"], "n_cells_computed": len(so.info["computed"])}
        if so.result_path is not None:  # None: a temporary folder, removed
            cells["result_path"] = str(so.result_path)
    return xr.DataArray(
        out,
        dims=(mdim, ndim),
        coords={mdim: mlabels, **coords, "n_neighbours": (ndim, sizes)},
        name=method,
        attrs={"method": method, "rdm_metric": rdm_metric, "radius": float(radius),
               "threshold": float(threshold), "n_centres": n_centres, **cells},
    )
