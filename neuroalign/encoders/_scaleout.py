"""Scale-out of ridge fits: neuroid batches as cached cells, on one machine or a cluster.

A fit is split into cells: one batch of neuroids (for a layer sweep, one batch of one
layer). Each cell is fitted by the same solver as the single-process fit, on the same
folds, and its results are written under the results folder as one file named by its key,
a hash of (the batch's responses, the features, the estimator's parameters, the folds and
their seed). Results therefore do not depend on the number of workers or the batch size
(each neuroid's fit is independent of the others).

A rerun with the same results folder loads the cells already there and fits only the
missing ones: a killed worker or driver costs only the unfinished cells. A cell is written
beside its final name and renamed (never half-written under its name), and carries a
checksum of its arrays; a cell that does not load or whose checksum does not match is
fitted again. Cells of other fits (other data, features, parameters) have other keys and
are never reused.

Where the cells run (``cluster=``, see :func:`get_client`): in this process (None), on a
:class:`dask.distributed.LocalCluster` (``"local"``), on a running scheduler (its address,
or a ``Client``), or on Slurm / PBS through dask-jobqueue (``"slurm"``, ``"pbs"``; options
such as cores, memory, walltime, queue, account, job_extra in ``cluster_options``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign._logging import get_logger
from neuroalign._validation import check_positive_int

__all__ = ["CLUSTER_KINDS", "SweepCells", "cached_ridge", "distributed_ridge", "fingerprint", "get_client",
           "make_cluster"]

log = get_logger(__name__)

_VARS = ("coef", "intercept", "best_alphas", "cv_scores", "y_offset")
#: Values of ``cluster=`` besides a scheduler address or a ``Client``.
CLUSTER_KINDS = ("local", "slurm", "pbs")
#: Options of dask-jobqueue clusters under the names recipes use -> dask-jobqueue's names.
_JOBQUEUE_ALIASES = {"job_extra": "job_extra_directives", "queue": "queue", "account": "account",
                     "env_extra": "job_script_prologue"}


# -- keys ----------------------------------------------------------------------------------
def fingerprint(*parts: Any) -> str:
    """Hash of arrays (values, dtype, shape), strings and JSON-able objects, in order."""
    h = hashlib.blake2b(digest_size=20)
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.view(np.uint8).reshape(-1).data if arr.size else b"")
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _folds_fingerprint(folds) -> str:
    if isinstance(folds, str):
        return fingerprint(folds)
    return fingerprint(*[np.asarray(i, dtype=np.int64) for tr, va in folds for i in (tr, va)])


# -- cells ---------------------------------------------------------------------------------
def _cell_path(folder: Path, key: str) -> Path:
    return folder / "cells" / f"{key}.npz"


def _checksum(arrays: dict) -> str:
    return fingerprint(*[arrays[k] for k in _VARS])


def _write_cell(path: Path, arrays: dict) -> None:
    """Write beside, then rename: a cell exists under its name only when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, checksum=np.array(_checksum(arrays)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cell(path: Path) -> dict | None:
    """The cell's arrays, or None when it is missing, unreadable or fails its checksum."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in _VARS}
            stored = str(z["checksum"])
    except Exception as err:  # a damaged file: fitted again
        log.warning("cached cell %s is unreadable (%s); fitting it again", path.name, err)
        return None
    if stored != _checksum(arrays):
        log.warning("cached cell %s fails its checksum; fitting it again", path.name)
        return None
    return arrays


def _fit_cell(path: str, X, Y_batch, folds, alphas, params: dict, fail: bool = False) -> str:
    """Task: fit one batch of neuroids (numpy, as the single-process fit) and write its cell."""
    from neuroalign.encoders._solvers import ridge_cv

    if fail:  # used by the tests to simulate a worker dying mid-fit
        raise RuntimeError(f"simulated failure of cell {Path(path).stem}")
    work = np.dtype(params["dtype"])
    X = np.asarray(X)
    X = X if X.dtype == np.float64 else X.astype(work)
    Y_batch = np.asarray(Y_batch)
    Y_batch = Y_batch if Y_batch.dtype == np.float64 else Y_batch.astype(work)
    res = ridge_cv(X, Y_batch, alphas, folds, fit_intercept=params["fit_intercept"],
                   form=params["form"], n_targets_batch=params["n_targets_batch"], refit=True,
                   relative_alphas=params["relative_alphas"], dtype=work)
    _write_cell(Path(path), {"coef": np.asarray(res.coef), "intercept": np.asarray(res.intercept),
                             "best_alphas": res.best_alphas, "cv_scores": res.cv_scores,
                             "y_offset": res.y_offset})
    return path


def cached_ridge(X, Y, folds, alphas, params: dict, *, result_path=None, batch_size: int,
                 client=None, func: str = "fit", _fail_cells=()) -> dict:
    """Fit ``ridge_cv`` on ``(X, Y)`` in cached cells of ``batch_size`` neuroids.

    ``params``: ``fit_intercept``, ``dtype``, ``form`` (None for auto), ``n_targets_batch``,
    ``relative_alphas`` (and anything else that determines the result, e.g. ``seed``).
    ``Y`` may be any array-like sliced by columns (a zarr array: each cell reads only its
    own batch, so responses larger than memory stream from disk). Cells run on ``client``
    (a dask Client) or, without one, in this process. Returns the
    single-process fit's dict (``coef``, ``intercept``, ``best_alphas``, ``cv_scores``,
    ``y_offset``, ``alpha_scale``, ``x_offset``, ``form``) and, under ``"info"``, the cells
    computed and loaded.
    """
    from neuroalign.encoders._solvers import _Prep

    X = np.ascontiguousarray(X)
    if isinstance(Y, np.ndarray):  # else an array-like read a batch of columns at a time
        Y = np.ascontiguousarray(Y)  # (e.g. a zarr array: responses streamed from disk)

    def cols(i):
        return np.ascontiguousarray(np.asarray(Y[:, bounds[i][0]:bounds[i][1]]))

    batch = check_positive_int(batch_size, name="batch_size", func=func)
    folder = Path(result_path) if result_path is not None else Path(
        tempfile.mkdtemp(prefix="neuroalign-ridge-"))
    n_valid = Y.shape[1]
    bounds = [(s, min(s + batch, n_valid)) for s in range(0, n_valid, batch)]
    base = fingerprint(fingerprint(X), _folds_fingerprint(folds),
                       np.asarray(alphas, dtype=np.float64), params)
    paths = [_cell_path(folder, fingerprint(base, fingerprint(cols(i))))
             for i in range(len(bounds))]
    loaded = {i: c for i, p in enumerate(paths) if (c := _read_cell(p)) is not None}
    todo = [i for i in range(len(bounds)) if i not in loaded]
    log.info("ridge in %d cells: %d cached, %d to fit", len(bounds), len(loaded), len(todo))
    errors = []
    if client is not None and todo:
        # hash=False: a key of its own per fit; with the content hash, two fits of the same X
        # share one key and releasing the first one's future can cancel the second one's
        X_future = client.scatter(X, broadcast=True, hash=False)
        futures = [client.submit(_fit_cell, str(paths[i]), X_future, cols(i), folds, alphas,
                                 params,
                                 i in set(_fail_cells), pure=False) for i in todo]
        for fut in futures:
            try:
                fut.result()
            except Exception as err:  # collected, then re-raised with the missing cells named
                errors.append(err)
    else:
        for i in todo:
            try:
                _fit_cell(str(paths[i]), X, cols(i), folds, alphas, params,
                          i in set(_fail_cells))
            except Exception as err:
                errors.append(err)
    cells = {i: loaded.get(i) or _read_cell(paths[i]) for i in range(len(bounds))}
    missing = [i for i, c in cells.items() if c is None]
    if errors or missing:
        first = errors[0] if errors else None
        raise RuntimeError(
            f"{len(missing)} neuroid batch(es) failed ({first!r}); batches {missing!r} of "
            f"{folder} are missing. Call fit() again with the same result_path to complete them."
        ) from first
    out = {k: np.concatenate([cells[i][k] for i in range(len(bounds))], axis=-1)
           if bounds else np.zeros((X.shape[1], 0) if k == "coef" else 0) for k in _VARS}
    np_dtype = np.float32 if params["dtype"] == "float32" else np.float64
    out["coef"] = out["coef"].astype(np_dtype, copy=False)
    out["intercept"] = out["intercept"].astype(np_dtype, copy=False)
    out["form"] = params["form"] or "auto"
    prep = _Prep(X, params["fit_intercept"])  # the same float64 sums as each cell
    out["alpha_scale"] = prep.feature_var if params["relative_alphas"] else 1.0
    out["x_offset"] = np.asarray(prep.x_mean)
    out["info"] = {"n_batches": len(bounds), "computed": todo,
                   "skipped": sorted(loaded), "result_path": str(folder)}
    return out


def distributed_ridge(encoder, data, ok, folds, alphas, *, client=None, cluster=None,
                      cluster_options=None, result_path=None, batch_size=None,
                      _fail_batches=()) -> dict:
    """Fit ``encoder``'s ridge in cached cells of neuroids (see :func:`cached_ridge`), on
    ``client`` or the cluster that ``cluster`` names (:func:`get_client`).

    Returns the same dict as the single-process fit. Sets ``encoder.scaleout_info_`` with
    the batches computed and skipped.
    """
    name = f"{type(encoder).__name__}.fit"
    batch = encoder.n_targets_batch if batch_size is None else batch_size
    params = {"fit_intercept": encoder.fit_intercept, "dtype": encoder.dtype,
              "form": None if encoder.form == "auto" else encoder.form,
              "n_targets_batch": encoder.n_targets_batch,
              "relative_alphas": bool(encoder.relative_alphas),
              "seed": getattr(encoder, "random_state", None)}
    own = None
    if client is None and cluster is not None:
        client, own = get_client(cluster, cluster_options, func=name)
    try:
        out = cached_ridge(data.X, data.Y[:, ok], folds, alphas, params, result_path=result_path,
                           batch_size=batch, client=client, func=name,
                           _fail_cells=_fail_batches)
    finally:
        if own is not None:
            own()
    encoder.scaleout_info_ = out.pop("info")
    return out


# -- clusters ------------------------------------------------------------------------------
def make_cluster(kind: str, options: dict | None = None):
    """A dask cluster object (not yet scaled): ``"local"`` (LocalCluster; options
    ``n_workers``, ``threads_per_worker``, ``processes``, ``memory_limit``), ``"slurm"`` or
    ``"pbs"`` (dask-jobqueue ``SLURMCluster`` / ``PBSCluster``; options as dask-jobqueue
    takes them: ``cores``, ``memory``, ``walltime``, ``queue``, ``account``, ``processes``,
    ``job_extra`` (or ``job_extra_directives``), ``local_directory``, ``python`` ...; the
    option ``jobs`` is for :func:`get_client`). The job script it would submit is
    ``cluster.job_script()``."""
    from neuroalign._validation import check_option

    check_option(kind, CLUSTER_KINDS, name="cluster", func="make_cluster")
    opts = dict(options or {})
    opts.pop("jobs", None)
    if kind == "local":
        from dask.distributed import LocalCluster

        opts.setdefault("threads_per_worker", 1)
        opts.setdefault("dashboard_address", ":0")
        return LocalCluster(**opts)
    try:
        import dask_jobqueue
    except ImportError as err:
        raise ImportError(
            f"cluster={kind!r} needs dask-jobqueue: pip install 'neuroalign[cluster]'."
        ) from err
    for alias, real in _JOBQUEUE_ALIASES.items():
        if alias in opts and alias != real:
            opts[real] = opts.pop(alias)
    opts.setdefault("scheduler_options", {"dashboard_address": ":0"})
    cls = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
    try:
        return cls(**opts)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Invalid value for 'cluster_options' with cluster={kind!r}: {options!r} ({err}). "
            f"Expected options of dask_jobqueue.{cls.__name__} (cores, memory, walltime, queue, "
            "account, job_extra, ...)."
        ) from err


def get_client(cluster, options: dict | None = None, *, func: str = "fit"):
    """``cluster=`` -> ``(client, close)``: ``close()`` shuts down what was started here
    (a Client passed in is used as is and not closed).

    ``cluster``: a ``dask.distributed.Client``; ``"local"``; a scheduler address
    (``"tcp://host:8786"``); ``"slurm"`` or ``"pbs"`` (with ``options["jobs"]`` jobs,
    default 1); or a dict ``{"kind": ..., **options}`` as a recipe's ``cluster`` table
    gives it.
    """
    from dask.distributed import Client

    if isinstance(cluster, Client):
        return cluster, None
    if isinstance(cluster, dict):
        options = {k: v for k, v in cluster.items() if k != "kind"} | dict(options or {})
        cluster = cluster.get("kind")
    if isinstance(cluster, str) and cluster not in CLUSTER_KINDS and (
            "://" in cluster or ":" in cluster):
        client = Client(cluster)
        return client, client.close
    if not isinstance(cluster, str) or cluster not in CLUSTER_KINDS:
        raise ValueError(
            f"Invalid value for 'cluster' in {func}(): {cluster!r}. Expected None, 'local', "
            "'slurm', 'pbs', a scheduler address such as 'tcp://host:8786', a dask Client, "
            "or a table {kind = ..., options...}."
        )
    obj = make_cluster(cluster, options)
    if cluster != "local":
        obj.scale(jobs=int((options or {}).get("jobs", 1)))
    client = Client(obj)

    def close():
        client.close()
        obj.close()

    return client, close


class SweepCells:
    """Cached cells for a layer sweep: each layer's fit goes through :func:`cached_ridge`
    (cells keyed by the layer's features, so a rerun of a grid of layers fits only the
    missing cells, and a layer added later only its own), on ``cluster``'s workers or in
    this process. ``close()`` shuts down a cluster started here."""

    def __init__(self, est, *, client=None, cluster=None, cluster_options=None,
                 result_path=None, batch_size=None) -> None:
        import weakref

        name = f"{type(est).__name__}.fit"
        self.client, own = client, None
        if client is None and cluster is not None:
            self.client, own = get_client(cluster, cluster_options, func=name)
        self.close = weakref.finalize(self, own) if own is not None else (lambda: None)
        self.result_path = Path(result_path) if result_path is not None else Path(
            tempfile.mkdtemp(prefix="neuroalign-sweep-"))
        self.batch = est.n_targets_batch if batch_size is None else batch_size
        self.func = name
        self.params = {"fit_intercept": est.fit_intercept, "dtype": est.dtype,
                       "form": None if est.form == "auto" else est.form,
                       "n_targets_batch": est.n_targets_batch,
                       "relative_alphas": bool(est.relative_alphas),
                       "seed": getattr(est, "random_state", None)}
        self.info: dict[str, dict] = {}

    @classmethod
    def maybe(cls, est, **kw):
        """A :class:`SweepCells` when any of ``client``, ``cluster``, ``result_path`` is
        given, else None (the single-process sweep)."""
        if all(kw.get(k) is None for k in ("client", "cluster", "result_path")):
            return None
        return cls(est, **kw)

    def fit(self, X, Y, folds, alphas, *, like=None, layer: str = ""):
        """One layer's fit -> a :class:`~neuroalign.encoders._solvers.RidgeCVResult` whose
        weights are of the kind of ``like`` (torch tensors for a tensor)."""
        from neuroalign.encoders._backend import like_input, to_numpy
        from neuroalign.encoders._solvers import RidgeCVResult

        Y = Y if hasattr(Y, "blocks") else to_numpy(Y)  # responses left on disk stay there
        out = cached_ridge(to_numpy(X), Y, folds, alphas, self.params,
                           result_path=self.result_path, batch_size=self.batch,
                           client=self.client, func=self.func)
        self.info[layer] = out.pop("info")
        alphas = np.asarray(alphas, dtype=np.float64)
        idx = np.searchsorted(alphas, out["best_alphas"]) if np.all(np.diff(alphas) > 0) else \
            np.array([int(np.flatnonzero(alphas == a)[0]) for a in out["best_alphas"]])
        ins = () if like is None else (like,)
        return RidgeCVResult(idx, out["best_alphas"], out["cv_scores"], None, None, out["form"],
                             coef=like_input(out["coef"], *ins),
                             intercept=like_input(out["intercept"], *ins),
                             alpha_scale=out["alpha_scale"], x_offset=out["x_offset"],
                             y_offset=out["y_offset"])
