"""Scale-out of ridge fits with dask.distributed: neuroid batches across workers.

Each batch of neuroids is one task. A task fits its batch (the same solver as the
single-process fit, on the same folds) and writes its region of a zarr result (chunks
aligned with batches, so no two tasks touch the same chunk), then marks the batch done.
A rerun on the same result path skips finished batches and completes only the missing
ones, so a fit survives killed workers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from neuroalign._logging import get_logger
from neuroalign._validation import check_positive_int

__all__ = ["distributed_ridge", "fit_fingerprint"]

log = get_logger(__name__)

_VARS = ("coef", "intercept", "best_alphas", "cv_scores", "y_offset")


def fit_fingerprint(X: np.ndarray, Y: np.ndarray, alphas, folds, params: dict) -> str:
    """Hash of everything that determines the result (data, alphas, folds, parameters)."""
    h = hashlib.sha1()
    for arr in (X, Y):
        h.update(np.ascontiguousarray(arr).view(np.uint8).data)
        h.update(str(arr.shape).encode())
    h.update(np.asarray(alphas, dtype=np.float64).tobytes())
    if isinstance(folds, str):
        h.update(folds.encode())
    else:
        for tr, te in folds:
            h.update(np.asarray(tr, dtype=np.int64).tobytes())
            h.update(np.asarray(te, dtype=np.int64).tobytes())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _open_result(path: Path, shapes: dict, chunks: dict, n_batches: int, fingerprint: str):
    import zarr

    group = zarr.open_group(str(path), mode="a")
    if group.attrs.get("fingerprint") not in (None, fingerprint):
        raise ValueError(
            f"{path}: this result zarr belongs to a different fit (other data, alphas, folds or "
            "parameters). Use a new result_path or delete the old one."
        )
    if "fingerprint" not in group.attrs:
        for name, shape in shapes.items():
            group.create_array(name, shape=shape, chunks=chunks[name], dtype="float64",
                               fill_value=0.0, overwrite=True)
        group.create_array("done", shape=(n_batches,), chunks=(1,), dtype="bool",
                           fill_value=False, overwrite=True)
        group.attrs["fingerprint"] = fingerprint
    return group


def _fit_batch(path: str, b: int, cols: np.ndarray, X, Y_batch, folds, alphas, params: dict,
               fail: bool = False) -> int:
    """Worker task: fit one neuroid batch and write its region of the zarr result."""
    import torch
    import zarr

    from neuroalign.encoders._solvers import ridge_cv

    if fail:  # used by the tests to simulate a worker dying mid-fit
        raise RuntimeError(f"simulated failure of batch {b}")
    dtype = getattr(torch, params["dtype"])
    # float64 data stay float64 until the solver has centred and scaled them (as in fit)
    Xt = torch.from_numpy(np.ascontiguousarray(X))
    Yt = torch.from_numpy(np.ascontiguousarray(Y_batch))
    Xt = Xt if Xt.dtype == torch.float64 else Xt.to(dtype)
    Yt = Yt if Yt.dtype == torch.float64 else Yt.to(dtype)
    res = ridge_cv(Xt, Yt, alphas, folds, fit_intercept=params["fit_intercept"],
                   form=params["form"], n_targets_batch=params["n_targets_batch"], refit=True,
                   relative_alphas=params["relative_alphas"], dtype=dtype)
    group = zarr.open_group(path, mode="r+")
    sl = slice(int(cols[0]), int(cols[-1]) + 1)
    group["coef"][:, sl] = res.coef.cpu().numpy()
    group["intercept"][sl] = res.intercept.cpu().numpy()
    group["best_alphas"][sl] = res.best_alphas
    group["cv_scores"][sl] = res.cv_scores
    group["y_offset"][sl] = res.y_offset
    group["done"][b] = True  # written last: a batch is done only once its region is complete
    return b


def distributed_ridge(encoder, data, ok, folds, alphas, *, client, result_path=None,
                      batch_size=None, _fail_batches=()) -> dict:
    """Fit ``encoder``'s ridge on ``client``'s workers, one task per neuroid batch.

    Returns the same dict as the single-process fit, read back from the zarr result.
    Sets ``encoder.scaleout_info_`` with the batches computed and skipped.
    """
    import tempfile

    import zarr

    X = np.ascontiguousarray(data.X)
    Y = np.ascontiguousarray(data.Y[:, ok])
    n_valid = Y.shape[1]
    batch = encoder.n_targets_batch if batch_size is None else batch_size
    batch = check_positive_int(batch, name="batch_size", func=f"{type(encoder).__name__}.fit")
    params = {"fit_intercept": encoder.fit_intercept, "dtype": encoder.dtype,
              "form": None if encoder.form == "auto" else encoder.form,
              "n_targets_batch": encoder.n_targets_batch, "batch": batch,
              "relative_alphas": bool(encoder.relative_alphas)}
    if result_path is None:
        result_path = Path(tempfile.mkdtemp(prefix="neuroalign-ridge-")) / "result.zarr"
    path = Path(result_path)
    bounds = [(s, min(s + batch, n_valid)) for s in range(0, n_valid, batch)]
    p = X.shape[1]
    shapes = {"coef": (p, n_valid), "intercept": (n_valid,), "best_alphas": (n_valid,),
              "cv_scores": (n_valid,), "y_offset": (n_valid,)}
    chunks = {"coef": (p, batch), "intercept": (batch,), "best_alphas": (batch,), "cv_scores": (batch,),
              "y_offset": (batch,)}
    fp = fit_fingerprint(X, Y, alphas, folds, params)
    group = _open_result(path, shapes, chunks, len(bounds), fp)
    done = np.asarray(group["done"][:], dtype=bool)
    todo = [b for b in range(len(bounds)) if not done[b]]
    log.info("distributed ridge: %d batches, %d already done, %d to fit", len(bounds),
             len(bounds) - len(todo), len(todo))
    # hash=False: a key of its own per fit; with the content hash, two fits of the same X share
    # one key and releasing the first one's future can cancel the second one's tasks
    X_future = client.scatter(X, broadcast=True, hash=False) if todo else None
    futures = [
        client.submit(_fit_batch, str(path), b, np.arange(*bounds[b]), X_future,
                      Y[:, bounds[b][0]:bounds[b][1]], folds, alphas, params,
                      b in set(_fail_batches), pure=False)
        for b in todo
    ]
    errors = []
    for fut in futures:
        try:
            fut.result()
        except Exception as err:  # collected, then re-raised with the missing batches named
            errors.append(err)
    encoder.scaleout_info_ = {"n_batches": len(bounds), "computed": todo,
                              "skipped": [b for b in range(len(bounds)) if done[b]],
                              "result_path": str(path)}
    if errors:
        missing = [b for b in range(len(bounds)) if not group["done"][b]]
        raise RuntimeError(
            f"{len(errors)} neuroid batch(es) failed ({errors[0]!r}); batches {missing!r} of "
            f"{path} are missing. Call fit() again with the same result_path to complete them."
        ) from errors[0]
    group = zarr.open_group(str(path), mode="r")
    out = {name: np.asarray(group[name][:]) for name in _VARS}
    np_dtype = np.float32 if encoder.dtype == "float32" else np.float64
    out["coef"] = out["coef"].astype(np_dtype)
    out["intercept"] = out["intercept"].astype(np_dtype)
    out["form"] = params["form"] or "auto"
    import torch

    from neuroalign.encoders._solvers import _Prep

    prep = _Prep(torch.from_numpy(X), encoder.fit_intercept)  # the same float64 sums as each task
    out["alpha_scale"] = prep.feature_var if params["relative_alphas"] else 1.0
    out["x_offset"] = prep.x_mean.numpy()
    return out
