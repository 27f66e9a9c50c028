"""All pairwise shape distances among many systems (:func:`distance_matrix`: each system
whitened once, the pairs in threads or in cached cells on a cluster) and classical MDS of
a distance matrix (:func:`mds`). The metric's conventions are those of
:mod:`neuroalign.compare._shape`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._config import map_threads, resolve_device, thread_limits
from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option, check_positive_int
from neuroalign.compare._inputs import (
    align_stimuli,
    as_matrix,
    check_finite,
    to_numpy,
    to_torch,
)
from neuroalign.compare._shape import (
    ShapeMetric,
    _fast_nuclear,
    _pair_distance,
    _Whitened,
)
from neuroalign.exceptions import DimensionError

__all__ = ["distance_matrix", "mds"]

log = get_logger(__name__)


def _systems_dict(systems: Any) -> dict[str, Any]:
    if isinstance(systems, xr.Dataset):
        return {str(k): systems[k] for k in systems.data_vars}
    if isinstance(systems, Mapping):
        return {str(k): v for k, v in systems.items()}
    if isinstance(systems, Sequence) and not isinstance(systems, str):
        return {f"system_{i}": v for i, v in enumerate(systems)}
    raise TypeError(
        f"Invalid value for 'systems' in distance_matrix(): {type(systems).__name__}. Expected "
        "a dict name -> (n_stimuli, n_channels) data, a list of them, or a features Dataset."
    )


_CROSS_BYTES = 32 * 2**20  # systems concatenated for one cross-product (per thread)


def _parallel_rows(func, items: list, *, threads: bool) -> None:
    """``func(item)`` for every item, in :func:`neuroalign._config.max_threads` threads
    with BLAS, OpenMP and torch limited so that threads times their BLAS threads never
    exceed the limit (restored afterwards). Each item's work is many small ``r x r``
    eigendecompositions, which scale poorly with BLAS threads and oversubscribe the cores
    when BLAS threads spin against each other; one BLAS thread per worker avoids both.
    Items are interleaved from both ends (rows of the upper triangle shrink)."""
    if not threads:
        for it in items:
            func(it)
        return
    map_threads(func, [items[k // 2] if k % 2 == 0 else items[-1 - k // 2]
                       for k in range(len(items))])


def _pair_block(prepared: list, pairs, score_method: str) -> dict:
    """Distances of a block of pairs ``(b, 2)`` of whitened systems (the task of a cached
    cell, see ``distance_matrix(cluster=)``). One BLAS thread: each pair is a few small
    ``r x r`` products and eigendecompositions, which BLAS threads slow down (they spin
    against each other and against the other workers)."""
    d = np.empty(len(pairs))
    with thread_limits(1):
        for t, (i, j) in enumerate(np.asarray(pairs)):
            a, b = prepared[i], prepared[j]
            d[t] = _pair_distance(a, b, _fast_nuclear(a.B.T @ b.B, a, b), score_method)
    return {"distance": d}


def _pairs_in_cells(so, prepared: list, fps: list[str], metric: ShapeMetric, D: np.ndarray,
                    batch: int) -> None:
    """Fill ``D`` from cached cells of ``batch`` pairs (keyed by the two systems' data and
    the metric): a rerun, or a matrix with systems added, computes only the missing pairs."""
    from neuroalign._scaleout import fingerprint, run_cells

    m = len(prepared)
    pairs = np.array([(i, j) for i in range(m - 1) for j in range(i + 1, m)], dtype=np.int64)
    blocks = [pairs[s:s + batch] for s in range(0, len(pairs), batch)]
    base = fingerprint("shape-distance", float(metric.alpha), metric.score_method,
                       bool(metric.zero_pad))
    keys = [fingerprint(base, [(fps[i], fps[j]) for i, j in b.tolist()]) for b in blocks]
    with so:
        cells, so.info = run_cells(_pair_block, keys, lambda k: (blocks[k], metric.score_method),
                                   names=("distance",), folder=so.folder, shared=(prepared,),
                                   client=so.lazy, what="distance_matrix", fail=so.fail)
    for b, cell in zip(blocks, cells, strict=True):
        D[b[:, 0], b[:, 1]] = D[b[:, 1], b[:, 0]] = cell["distance"]


def distance_matrix(
    systems: Any,
    metric: ShapeMetric | Literal["procrustes", "cca"] = "procrustes",
    *,
    device: str | None = None,
    show_progress: bool | None = None,
    cluster: Any = None,
    cluster_options: dict | None = None,
    result_path: Any = None,
    batch_size: int | None = None,
    client: Any = None,
    _fail: dict | None = None,
) -> xr.DataArray:
    """All pairwise shape distances among many systems (models, layers, subjects, ROIs).

    Parameters
    ----------
    systems : dict, list or xr.Dataset
        ``name -> data`` with data ``(n_stimuli, n_channels)`` (arrays, DataArrays, stores
        averaged over repetitions; widths may differ), a list (named ``system_0``, ...),
        or a features Dataset (one system per layer). Labelled systems are joined on
        ``stimulus_id`` to the first one's order.
    metric : ShapeMetric or {"procrustes", "cca"}
        The metric (``"procrustes"`` = ``ShapeMetric(1.0)``, ``"cca"`` =
        ``ShapeMetric(0.0)``, angular). Each system is centred and whitened ONCE; each
        pair then needs the singular values of one ``r x r`` cross-product.
    device : str, optional
        Compute with torch on this device (``"auto"``, ``"cpu"``, ``"cuda"``).
    show_progress : bool, optional
        Progress bar over systems (default: when on a terminal).
    cluster : None, "none", "local", "slurm", "pbs", scheduler address, Client or dict
        Compute blocks of pairs as cached cells on this cluster
        (:func:`neuroalign._scaleout.get_client`, as :meth:`RidgeEncoder.fit
        <neuroalign.encoders.RidgeEncoder.fit>`); each system is whitened once here and
        sent to every worker. Same distances as the single-process run (to ~1e-12).
    cluster_options : dict, optional
        Options of the cluster (Slurm/PBS: dask-jobqueue's ``cores``, ``memory``, ...).
    result_path : path-like, optional
        Folder of the cached cells (``result_path/cells/``), one per block of pairs, keyed
        by the two systems' data and the metric: a rerun (or a matrix with systems added
        at the end) computes only the missing blocks. Also with ``cluster=None``.
    batch_size : int, optional
        Pairs per cell (default 256).
    client : dask.distributed.Client, optional
        Run the cells on this client's workers.

    Returns
    -------
    xr.DataArray
        Symmetric distances, dims ``('system_i', 'system_j')`` with the names as
        coordinates, zero diagonal; attrs ``alpha`` and ``score_method`` (with cells also
        ``n_cells``, ``n_cells_computed`` and ``result_path``).
    """
    from neuroalign._scaleout import ScaleOut, fingerprint

    so = ScaleOut(cluster=cluster, cluster_options=cluster_options, client=client,
                  result_path=result_path, batch_size=batch_size, func="distance_matrix",
                  prefix="neuroalign-shape-")
    so.fail = _fail
    batch = 256 if so.batch_size is None else check_positive_int(
        so.batch_size, name="batch_size", func="distance_matrix")
    if so.active and device is not None:
        raise ValueError(
            f"Invalid value for 'device' in distance_matrix() with cells (cluster= or "
            f"result_path=): {device!r}. Expected None (cells are computed with numpy)."
        )
    if isinstance(metric, str):
        check_option(metric, ("procrustes", "cca"), name="metric", func="distance_matrix")
        metric = ShapeMetric(1.0 if metric == "procrustes" else 0.0)
    if not isinstance(metric, ShapeMetric):
        raise TypeError(
            f"Invalid value for 'metric' in distance_matrix(): {type(metric).__name__}. "
            "Expected a ShapeMetric or one of 'procrustes', 'cca'."
        )
    metric._validate()
    named = _systems_dict(systems)
    if len(named) < 2:
        raise ValueError(
            f"Invalid value for 'systems' in distance_matrix(): {len(named)} system(s). "
            "Expected at least 2."
        )
    dev = resolve_device(device) if device is not None else None
    names = list(named)
    ref_ids, n_ref = None, None
    mats: list = []
    for name in progress(names, desc="checking systems", disable=None if show_progress is None
                         else not show_progress):
        X, ids, _ = as_matrix(named[name], name=f"systems[{name!r}]", func="distance_matrix",
                              keep_torch=True)
        if ref_ids is None and n_ref is None:
            ref_ids, n_ref = ids, X.shape[0]
        idx = align_stimuli(ref_ids, ids, names=(names[0], name), func="distance_matrix",
                            n_a=n_ref, n_b=X.shape[0])
        if idx is not None:
            X = X[idx]
        check_finite(X, name=f"systems[{name!r}]", func="distance_matrix")
        if not metric.zero_pad and mats and X.shape[1] != mats[0].shape[1]:
            raise DimensionError(
                f"distance_matrix() with zero_pad=False: system {name!r} has {X.shape[1]} "
                f"channels, {names[0]!r} has {mats[0].shape[1]}. Expected equal widths."
            )
        X = to_torch(X, dev) if dev is not None else np.asarray(to_numpy(X), dtype=np.float64)
        mats.append(X)
    fps = [fingerprint(np.asarray(X)) for X in mats] if so.active else []
    prepared: list = [None] * len(mats)

    def whiten(k: int) -> None:  # each system centred and whitened once, in threads
        prepared[k] = _Whitened(mats[k], float(metric.alpha), f"systems[{names[k]!r}]")
        mats[k] = None  # its converted copy (if any) goes as soon as it is whitened

    _parallel_rows(whiten, list(range(len(mats))), threads=dev is None)
    m = len(prepared)
    D = np.zeros((m, m))

    def row(i: int) -> None:
        Bi = prepared[i].B
        j = i + 1
        while j < m:  # the cross-products with the next systems, a block of them at a time
            stop, size = j, 0
            while stop < m and (stop == j or size + prepared[stop].B.nbytes <= _CROSS_BYTES):
                size += prepared[stop].B.nbytes
                stop += 1
            rest = prepared[j:stop]
            if dev is not None:
                import torch

                cross = Bi.T @ torch.cat([p.B for p in rest], dim=1)
            else:
                cross = Bi.T @ np.concatenate([p.B for p in rest], axis=1)
            start = 0
            for k, p in enumerate(rest):
                r = p.B.shape[1]
                nuc = _fast_nuclear(cross[:, start:start + r], prepared[i], p)
                start += r
                D[i, j + k] = D[j + k, i] = _pair_distance(prepared[i], p, nuc,
                                                           metric.score_method)
            j = stop

    if so.active:
        _pairs_in_cells(so, prepared, fps, metric, D, batch)
    else:
        _parallel_rows(row, list(range(m - 1)), threads=dev is None)
    cells = {"n_cells": so.info["n_batches"], "n_cells_computed": len(so.info["computed"]),
             **({"result_path": str(so.result_path)} if so.result_path else {})} if so.active else {}
    return xr.DataArray(
        D,
        dims=("system_i", "system_j"),
        coords={"system_i": names, "system_j": names},
        name="distance",
        attrs={"alpha": float(metric.alpha), "score_method": metric.score_method, **cells},
    )


def mds(distances: Any, n_components: int = 2) -> xr.DataArray:
    """Classical (Torgerson) multidimensional scaling of a distance matrix.

    Parameters
    ----------
    distances : ndarray or xr.DataArray
        Symmetric ``(m, m)`` distances, e.g. from :func:`distance_matrix`.
    n_components : int
        Embedding dimensions.

    Returns
    -------
    xr.DataArray
        Coordinates, dims ``('system', 'component')``; components ordered by eigenvalue
        (negative eigenvalues of a non-Euclidean distance are set to 0).
    """
    names = None
    if isinstance(distances, xr.DataArray):
        names = distances.coords[distances.dims[0]].values if distances.dims[0] in distances.coords else None
        distances = distances.values
    D = np.asarray(distances, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise DimensionError(
            f"Invalid value for 'distances' in mds(): shape {D.shape!r}. Expected a square matrix."
        )
    m = D.shape[0]
    H = np.eye(m) - 1.0 / m
    B = -0.5 * H @ (D**2) @ H
    w, V = np.linalg.eigh((B + B.T) / 2)
    order = np.argsort(w)[::-1][:n_components]
    coords = V[:, order] * np.sqrt(np.maximum(w[order], 0))[None, :]
    c = {"system": names} if names is not None else {}
    return xr.DataArray(coords, dims=("system", "component"), coords=c, name="mds")
