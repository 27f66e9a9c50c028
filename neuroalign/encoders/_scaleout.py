"""Scale-out of the encoders' fits: neuroid batches as cached cells, on one machine or a
cluster (the shared machinery, keys, cell files and ``cluster=``, is
:mod:`neuroalign._scaleout`).

A fit is split into cells: one batch of neuroids (for a layer sweep, one batch of one
layer; for banded ridge, one batch searched over the same candidate space weights). Each
cell is fitted by the same solver as the single-process fit, on the same folds, and written
under ``result_path/cells/`` named by its key, a hash of (the batch's responses, the
features, the estimator's parameters, the folds and their seed). Results therefore do not
depend on the number of workers or the batch size (each neuroid's fit is independent of
the others), and a rerun with the same folder fits only the missing cells. Attention
routing, whose network is shared by every neuroid, is cut in time instead: its cells are
chunks of epochs (:func:`routing_cells`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from neuroalign._logging import get_logger
from neuroalign._scaleout import (
    CLUSTER_KINDS,
    fingerprint,
    get_client,
    make_cluster,
    run_cells,
)
from neuroalign._validation import check_positive_int

__all__ = ["CLUSTER_KINDS", "SweepCells", "cached_ridge", "distributed_ridge", "fingerprint", "get_client",
           "make_cluster", "routing_cells"]

log = get_logger(__name__)

_VARS = ("coef", "intercept", "best_alphas", "cv_scores", "y_offset")
_CELL_VARS = (*_VARS, "form")  # the solver's form ("primal"/"dual") of the cell


def _folds_fingerprint(folds) -> str:
    if isinstance(folds, str):
        return fingerprint(folds)
    return fingerprint(*[np.asarray(i, dtype=np.int64) for tr, va in folds for i in (tr, va)])


def _ridge_cell(X, folds, alphas, params: dict, Y_batch) -> dict:
    """Task: fit one batch of neuroids (numpy, as the single-process fit)."""
    from neuroalign.encoders._solvers import ridge_cv

    work = np.dtype(params["dtype"])
    X = np.asarray(X)
    X = X if X.dtype == np.float64 else X.astype(work, copy=False)
    Y_batch = np.asarray(Y_batch)
    Y_batch = Y_batch if Y_batch.dtype == np.float64 else Y_batch.astype(work, copy=False)
    res = ridge_cv(X, Y_batch, alphas, folds, fit_intercept=params["fit_intercept"],
                   form=params["form"], n_targets_batch=params["n_targets_batch"], refit=True,
                   relative_alphas=params["relative_alphas"], dtype=work)
    return {"coef": np.asarray(res.coef), "intercept": np.asarray(res.intercept),
            "best_alphas": res.best_alphas, "cv_scores": res.cv_scores, "y_offset": res.y_offset,
            "form": np.array(str(res.form))}


def cached_ridge(X, Y, folds, alphas, params: dict, *, result_path=None, batch_size: int,
                 client=None, func: str = "fit", column_keys: dict | None = None,
                 _fail_cells=(), _fail=None) -> dict:
    """Fit ``ridge_cv`` on ``(X, Y)`` in cached cells of ``batch_size`` neuroids
    (:func:`neuroalign._scaleout.run_cells`).

    ``params``: ``fit_intercept``, ``dtype``, ``form`` (None for auto), ``n_targets_batch``,
    ``relative_alphas`` (and anything else that determines the result, e.g. ``seed``).
    ``Y`` may be any array-like sliced by columns (a zarr array: each cell reads only its
    own batch, so responses larger than memory stream from disk). Cells run on ``client``
    (a dask Client) or, without one, in this process. Returns the
    single-process fit's dict (``coef``, ``intercept``, ``best_alphas``, ``cv_scores``,
    ``y_offset``, ``alpha_scale``, ``x_offset``, ``form``) and, under ``"info"``, the cells
    computed and loaded.

    ``column_keys``: fingerprints of ``Y``'s blocks of columns by ``(start, stop)``, filled
    here and reused by later calls on the same ``Y`` (a layer sweep's layers): the keys
    read the responses once, not once per layer (a whole-brain store is 39 GB a pass).
    """
    from neuroalign.encoders._ridge_folds import _Prep

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
    known = {} if column_keys is None else column_keys
    for i, span in enumerate(bounds):
        if span not in known:
            known[span] = fingerprint(cols(i))
    keys = [fingerprint(base, known[span]) for span in bounds]
    fail = {i: "raise" for i in _fail_cells} | dict(_fail or {})
    cells, info = run_cells(_ridge_cell, keys, lambda i: (folds, alphas, params, cols(i)),
                            names=_CELL_VARS, folder=folder, shared=(X,), client=client,
                            what=f"{func} (ridge)", fail=fail, lazy=True,
                            rerun_hint="Call fit() again with the same result_path to complete them.")
    out = _assemble(cells, bounds, _VARS) if bounds else {
        k: np.zeros((X.shape[1], 0) if k == "coef" else 0) for k in _VARS}
    np_dtype = np.float32 if params["dtype"] == "float32" else np.float64
    out["coef"] = out["coef"].astype(np_dtype, copy=False)
    out["intercept"] = out["intercept"].astype(np_dtype, copy=False)
    forms = sorted({str(c["form"]) for c in cells})  # one form, unless "auto" chose per cell
    out["form"] = "+".join(forms) if forms else (params["form"] or "auto")
    prep = _Prep(X, params["fit_intercept"])  # the same float64 sums as each cell
    out["alpha_scale"] = prep.feature_var if params["relative_alphas"] else 1.0
    out["x_offset"] = np.asarray(prep.x_mean)
    out["info"] = info
    return out


def _assemble(cells, bounds, names) -> dict:
    """The cells' arrays ``names`` side by side (neuroids along the last axis), filled one
    cell at a time: the cells stay on disk (:class:`~neuroalign._scaleout.Cell`) and only
    one cell's array is read beside the output (``np.concatenate`` of the cells held
    them all: at whole-brain size a second copy of a layer's weights)."""
    n = bounds[-1][1]
    out = {}
    for k in names:
        for (a, b), cell in zip(bounds, cells, strict=True):
            part = cell[k]
            if k not in out:
                out[k] = np.empty(part.shape[:-1] + (n,), dtype=part.dtype)
            out[k][..., a:b] = part
            del part
    return out


def distributed_ridge(encoder, X, Y, folds, alphas, *, client=None, cluster=None,
                      cluster_options=None, result_path=None, batch_size=None,
                      _fail_batches=(), _fail=None) -> dict:
    """Fit ``encoder``'s ridge of ``X`` on the valid neuroids ``Y`` in cached cells of
    neuroids (see :func:`cached_ridge`), on ``client`` or the cluster that ``cluster`` names
    (:func:`neuroalign._scaleout.get_client`; a dict may carry ``result_path`` and
    ``batch_size``).

    Returns the same dict as the single-process fit. Sets ``encoder.scaleout_info_`` with
    the batches computed and skipped.
    """
    from neuroalign._scaleout import ScaleOut

    name = f"{type(encoder).__name__}.fit"
    with ScaleOut(cluster=cluster, cluster_options=cluster_options, client=client,
                  result_path=result_path, batch_size=batch_size, func=name,
                  prefix="neuroalign-ridge-") as so:
        batch = encoder.n_targets_batch if so.batch_size is None else so.batch_size
        out = cached_ridge(X, Y, folds, alphas, ridge_params(encoder), result_path=so.folder,
                           batch_size=batch, client=so.lazy, func=name,
                           _fail_cells=_fail_batches, _fail=_fail)
    encoder.scaleout_info_ = out.pop("info")
    encoder.scaleout_info_["result_path"] = so.result_path and str(so.result_path)
    return out


_BANDED_VARS = ("coef", "deltas", "intercept", "ai", "cv_r2")


def _banded_cell(mats, folds, alphas, gammas, params: dict, Y_batch) -> dict:
    """Task: the banded random search for one batch of neuroids."""
    from neuroalign.encoders._banded import banded_solve

    return banded_solve(list(mats), np.asarray(Y_batch), folds, alphas, gammas,
                        params["fit_intercept"], params["random_state"], params["device"])


def banded_cells(est, mats, Y, folds, alphas, gammas, device: str, *, client=None,
                 cluster=None, cluster_options=None, result_path=None, batch_size=None) -> dict:
    """:func:`neuroalign.encoders._banded.banded_solve` in cached cells of neuroids (the
    same candidate space weights ``gammas`` and folds in every cell; each neuroid's choice is
    its own). Returns its dict; sets ``est.scaleout_info_``."""
    from neuroalign._scaleout import ScaleOut

    name = f"{type(est).__name__}.fit"
    params = {"fit_intercept": bool(est.fit_intercept), "random_state": est.random_state,
              "device": str(device)}
    with ScaleOut(cluster=cluster, cluster_options=cluster_options, client=client,
                  result_path=result_path, batch_size=batch_size, func=name,
                  prefix="neuroalign-banded-") as so:
        batch = check_positive_int(4096 if so.batch_size is None else so.batch_size,
                                   name="batch_size", func=name)
        n = Y.shape[1]
        bounds = [(s, min(s + batch, n)) for s in range(0, n, batch)]
        base = fingerprint("banded", *[fingerprint(m) for m in mats], _folds_fingerprint(folds),
                           np.asarray(alphas, dtype=np.float64), np.asarray(gammas), params)

        def cols(i):
            return np.ascontiguousarray(Y[:, bounds[i][0]:bounds[i][1]])

        keys = [fingerprint(base, fingerprint(cols(i))) for i in range(len(bounds))]
        cells, info = run_cells(_banded_cell, keys, lambda i: (folds, alphas, gammas, params, cols(i)),
                                names=_BANDED_VARS, folder=so.folder, shared=(tuple(mats),),
                                client=so.lazy, what=f"{name} (banded ridge)", fail=so.fail,
                                lazy=True)
        out = _assemble(cells, bounds, _BANDED_VARS)  # before a temporary folder goes
    est.scaleout_info_ = info | {"result_path": so.result_path and str(so.result_path)}
    out["ai"] = out["ai"].astype(np.int64)
    return out


def ridge_params(est) -> dict:
    """What determines an estimator's ridge cells besides the data, folds and alphas."""
    return {"fit_intercept": est.fit_intercept, "dtype": est.dtype,
            "form": None if est.form == "auto" else est.form,
            "n_targets_batch": est.n_targets_batch,
            "relative_alphas": bool(est.relative_alphas),
            "seed": getattr(est, "random_state", None)}


class SweepCells:
    """Cached cells for a layer sweep: each layer's fit goes through :func:`cached_ridge`
    (cells keyed by the layer's features, so a rerun of a grid of layers fits only the
    missing cells, and a layer added later only its own), on ``cluster``'s workers or in
    this process. ``close()`` shuts down a cluster started here."""

    def __init__(self, est, *, client=None, cluster=None, cluster_options=None,
                 result_path=None, batch_size=None) -> None:
        import weakref

        from neuroalign._scaleout import ScaleOut

        name = f"{type(est).__name__}.fit"
        so = ScaleOut(cluster=cluster, cluster_options=cluster_options, client=client,
                      result_path=result_path, batch_size=batch_size, func=name,
                      prefix="neuroalign-sweep-").__enter__()
        self.client, self._so = so.lazy, so
        self._finalize = weakref.finalize(self, so.__exit__, None, None, None)
        self.result_path = so.folder
        self.batch = est.n_targets_batch if so.batch_size is None else so.batch_size
        self.func = name
        self.params = ridge_params(est)
        self.info: dict[str, dict] = {}
        self._columns: tuple = (None, {})  # (the responses, their column blocks' keys)

    def close(self) -> None:
        """Shut down a cluster started here; remove a temporary cells folder."""
        self._finalize()
        if self._so.result_path is None:
            for info in self.info.values():
                info["result_path"] = None

    @classmethod
    def maybe(cls, est, **kw):
        """A :class:`SweepCells` when any of ``client``, ``cluster``, ``result_path`` is
        given, else None (the single-process sweep)."""
        from neuroalign._scaleout import ScaleOut

        if not ScaleOut(cluster=kw.get("cluster"), client=kw.get("client"),
                        result_path=kw.get("result_path")).active:
            return None
        return cls(est, **kw)

    def fit(self, X, Y, folds, alphas, *, like=None, layer: str = ""):
        """One layer's fit -> a :class:`~neuroalign.encoders._solvers.RidgeCVResult` whose
        weights are of the kind of ``like`` (torch tensors for a tensor)."""
        from neuroalign.encoders._backend import like_input, to_numpy
        from neuroalign.encoders._solvers import RidgeCVResult, _on_disk

        if self._columns[0] is not Y:  # every layer fits the same responses
            self._columns = (Y, {})
        Y = Y if _on_disk(Y) else to_numpy(Y)  # responses left on disk stay there
        out = cached_ridge(to_numpy(X), Y, folds, alphas, self.params,
                           result_path=self.result_path, batch_size=self.batch,
                           client=self.client, func=self.func, column_keys=self._columns[1])
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


_ROUTING_VARS = ("state", "epoch", "stopped")


def routing_cells(est, arrays: tuple, spec: dict, *, client=None, cluster=None,
                  cluster_options=None, result_path=None, batch_size=None) -> tuple:
    """An attention-routing fit in cached cells of epochs: cell ``k`` holds the training
    state after ``k * batch_size`` epochs (or the state where early stopping ended it),
    trained from the previous cell's state by
    :func:`neuroalign.encoders._routing_train.routing_chunk`; its key is a hash of (the
    token features, the responses, the ROI mask, the train/validation rows, the estimator's
    parameters and seed, the epoch it reaches). The cells of one fit are sequential (each
    starts where the previous ended), so a cluster runs them one at a time on a worker;
    what the cells give is resumption: a rerun (after a kill, or of a grid of fits sharing
    ``result_path``) starts from the latest cell present, and a finished fit is loaded
    whole. The state is restored exactly, so the result does not depend on ``batch_size``.

    ``arrays``: ``(tokens, Yz, mask, ok, train, val)`` as :func:`routing_chunk` takes them.
    Returns ``(state, info)``: the final :class:`~neuroalign.encoders._routing_train.TrainState`
    and the cells computed and loaded; sets ``est.scaleout_info_``.
    """
    from neuroalign._scaleout import ScaleOut, cell_path, read_cell
    from neuroalign.encoders._routing_train import from_bytes, routing_chunk

    name = f"{type(est).__name__}.fit"
    max_epochs = int(spec["max_epochs"])
    with ScaleOut(cluster=cluster, cluster_options=cluster_options, client=client,
                  result_path=result_path, batch_size=batch_size, func=name,
                  prefix="neuroalign-routing-") as so:
        step = check_positive_int(50 if so.batch_size is None else so.batch_size,
                                  name="batch_size", func=name)
        ends = [min(e, max_epochs) for e in range(step, max_epochs + step, step)]
        base = fingerprint("routing", *[fingerprint(np.asarray(a)) for a in arrays],
                           {k: v for k, v in spec.items() if k not in ("max_epochs", "threads")})
        keys = [fingerprint(base, end) for end in ends]
        # the latest cell present and sound: where this run starts (earlier ones not needed)
        start, cell = -1, None
        for k in range(len(keys) - 1, -1, -1):
            cell = read_cell(cell_path(so.folder, keys[k]), _ROUTING_VARS)
            if cell is not None:
                start = k
                break
        computed = []
        for k in range(start + 1, len(keys)):
            if cell is not None and bool(cell["stopped"]):
                break
            blob = None if cell is None else cell["state"]
            cells, _ = run_cells(routing_chunk, [keys[k]], lambda i, b=blob, e=ends[k]: (spec, b, e),
                                 names=_ROUTING_VARS, folder=so.folder, shared=tuple(arrays),
                                 client=so.lazy, what=f"{name} (routing epochs to {ends[k]})",
                                 fail={0: (so.fail or {}).get(k)} if so.fail else None)
            cell = cells[0]
            computed.append(k)
        info = {"n_batches": start + 1 + len(computed), "computed": computed,
                "skipped": list(range(start + 1))}
        state = from_bytes(bytes(np.asarray(cell["state"])), spec)
    info["result_path"] = so.result_path and str(so.result_path)
    est.scaleout_info_ = info
    return state, info
