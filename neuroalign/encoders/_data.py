"""Turning features and responses into aligned matrices, joined on ``stimulus_id``."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.exceptions import DimensionError, StimulusMismatchError

__all__ = ["Aligned", "align", "as_matrix", "features_matrix", "valid_neuroids", "check_alphas"]


@dataclass
class Aligned:
    """Features and responses as matrices with one row per sample, and their labels."""

    X: np.ndarray
    Y: np.ndarray
    stimulus_id: np.ndarray | None
    neuroid_coords: xr.DataArray | None  # template DataArray on 'neuroid' (coords only)
    sample_dim: str


def _is_xr(obj) -> bool:
    return isinstance(obj, xr.Dataset | xr.DataArray)


def as_matrix(obj, *, name: str) -> np.ndarray:
    """numpy/torch/xarray -> 2-D float array."""
    if hasattr(obj, "detach") and hasattr(obj, "cpu"):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, xr.DataArray):
        obj = obj.values
    arr = np.asarray(obj)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DimensionError(
            f"Invalid shape for {name!r}: {arr.shape!r}. Expected 2 dims (samples, "
            f"{'features' if name == 'X' else 'neuroids'})."
        )
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    return arr


def features_matrix(X) -> xr.DataArray:
    """A features Dataset/DataArray -> DataArray with dims ('stimulus', 'unit').

    A Dataset with several layer variables is concatenated along units in variable order.
    """
    if isinstance(X, xr.Dataset):
        names = list(X.data_vars)
        if not names:
            raise DimensionError("Invalid features Dataset: it holds no variables.")
        parts = [features_matrix(X[name]) for name in names]
        if len(parts) == 1:
            return parts[0]
        return xr.concat([p.drop_vars([c for c in p.coords if c not in ("stimulus_id",)]) for p in parts],
                         dim="unit")
    if X.ndim != 2:
        raise DimensionError(
            f"Invalid dims for features {X.name!r}: {X.dims!r}. Expected ('stimulus', "
            "'<layer>_unit'); token-level features need AttentionRoutingEncoder."
        )
    if "stimulus_id" not in X.coords:
        raise DimensionError(
            f"Features {X.name!r} have no 'stimulus_id' coordinate; coordinates present: "
            f"{sorted(map(str, X.coords))}."
        )
    unit_dim = X.dims[1]
    return X.rename({X.dims[0]: "stimulus", unit_dim: "unit"}) if unit_dim != "unit" or X.dims[0] != "stimulus" else X


def _responses(Y) -> xr.DataArray:
    if isinstance(Y, xr.Dataset):
        if "responses" not in Y:
            raise DimensionError(
                f"Store has no 'responses' variable; variables present: {sorted(map(str, Y.data_vars))}."
            )
        Y = Y["responses"]
    if "neuroid" not in Y.dims:
        raise DimensionError(f"Responses have dims {Y.dims!r}; expected a 'neuroid' dim.")
    return Y


def join_on_stimulus(feat_ids: np.ndarray, resp_ids: np.ndarray, *, allow_extra: bool = False) -> np.ndarray:
    """Row of the features for each response row; exact semantics (raises on any mismatch)."""
    feat_ids = np.asarray(feat_ids).astype(str)
    resp_ids = np.asarray(resp_ids).astype(str)
    uniq, counts = np.unique(feat_ids, return_counts=True)
    dup = uniq[counts > 1]
    if dup.size:
        raise StimulusMismatchError(
            f"Features hold duplicate stimulus_id values: {format_list(dup)}. "
            "Expected one row per stimulus."
        )
    fset, rset = set(feat_ids.tolist()), set(resp_ids.tolist())
    missing = sorted(rset - fset)
    extra = [] if allow_extra else sorted(fset - rset)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing from the features: {format_list(missing)}")
        if extra:
            parts.append(f"in the features but not in the responses: {format_list(extra)}")
        raise StimulusMismatchError(
            "Features and responses do not hold the same stimuli (joined on stimulus_id); "
            + "; ".join(parts) + "."
        )
    index = {s: i for i, s in enumerate(feat_ids.tolist())}
    return np.fromiter((index[s] for s in resp_ids.tolist()), dtype=np.int64, count=len(resp_ids))


def align(X, Y, *, allow_extra: bool = False) -> Aligned:
    """Align features ``X`` with responses ``Y``.

    Arrays are taken row by row. xarray inputs are joined on ``stimulus_id``: the
    features get one row per response sample (a trial-level store repeats a stimulus's
    features for each of its presentations). ``allow_extra`` lets the features hold
    stimuli the responses lack (used internally after a full join was checked, to take
    one split of a store).
    """
    if _is_xr(Y) or _is_xr(X):
        if not (_is_xr(Y) and _is_xr(X)):
            raise TypeError(
                "X and Y must both be xarray objects (joined on stimulus_id) or both arrays; "
                f"got X={type(X).__name__}, Y={type(Y).__name__}."
            )
        resp = _responses(Y)
        if resp.ndim != 2:
            raise DimensionError(
                f"Responses have dims {resp.dims!r}; expected 2 dims (sample, 'neuroid'). "
                "Use TimeResolvedEncoder for responses with a 'time' dim."
            )
        sdim = next(d for d in resp.dims if d != "neuroid")
        resp = resp.transpose(sdim, "neuroid")
        if "stimulus_id" not in resp.coords:
            raise DimensionError(
                f"Responses have no 'stimulus_id' coordinate; coordinates present: "
                f"{sorted(map(str, resp.coords))}."
            )
        feats = features_matrix(X)
        rows = join_on_stimulus(feats["stimulus_id"].values, resp["stimulus_id"].values,
                                allow_extra=allow_extra)
        Xm = np.asarray(feats.values)[rows]
        template = resp.isel({sdim: 0}, drop=True).drop_vars(
            [c for c in resp.coords if sdim in resp[c].dims], errors="ignore")
        return Aligned(Xm, np.asarray(resp.values), np.asarray(resp["stimulus_id"].values),
                       template, sdim)
    Xm = as_matrix(X, name="X")
    Ym = as_matrix(Y, name="Y")
    if Xm.shape[0] != Ym.shape[0]:
        raise DimensionError(
            f"X has {Xm.shape[0]} samples and Y has {Ym.shape[0]}; expected the same number of rows."
        )
    return Aligned(Xm, Ym, None, None, "sample")


def valid_neuroids(Y: np.ndarray, *, func: str, stacklevel: int = 3) -> np.ndarray:
    """Mask of neuroids that are finite and not constant; warns with the count of the others."""
    finite = np.isfinite(Y).all(axis=0)
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(Y, axis=0) - np.nanmin(Y, axis=0) if Y.shape[0] else np.zeros(Y.shape[1])
    constant = finite & ~(spread > 0)
    ok = finite & ~constant
    n_nan, n_const = int((~finite).sum()), int(constant.sum())
    if n_nan or n_const:
        warnings.warn(
            f"{func}: excluding {n_nan + n_const} of {Y.shape[1]} neuroids "
            f"({n_nan} with NaN or inf, {n_const} constant); they get zero weights and are "
            "left out of the results.",
            UserWarning,
            stacklevel=stacklevel,
        )
    return ok


def check_alphas(alphas, *, func: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(
            f"Invalid value for 'alphas' in {func}(): {alphas!r}. Expected a non-empty "
            "sequence of positive, finite numbers."
        )
    return np.sort(arr)
