"""Features and responses as aligned matrices: xarray inputs through the one join on
``stimulus_id`` (:func:`neuroalign.store.join_features`), arrays row by row."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError, DataQualityWarning, DimensionError
from neuroalign.store._join import LazyResponses, join_features

__all__ = ["Aligned", "align", "as_matrix", "features_matrix", "feature_space", "fitted_split",
           "valid_neuroids", "check_alphas", "check_finite", "neuroid_names"]


@dataclass
class Aligned:
    """Features and responses as matrices with one row per sample, and their labels.

    ``layer`` and ``model`` name the feature space for the results (``"features"`` and
    ``""`` for arrays).
    """

    X: np.ndarray
    Y: np.ndarray
    stimulus_id: np.ndarray | None
    neuroid_coords: xr.DataArray | None  # template DataArray on 'neuroid' (coords only)
    sample_dim: str
    layer: str = "features"
    model: str = ""
    split: str = "all"


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


def feature_space(X) -> tuple[str, str]:
    """(layer name, model name) of a features object, for the results: a DataArray's name,
    a Dataset's variables joined by ``"+"``; the model from the ``model`` attribute."""
    if isinstance(X, xr.Dataset):
        names = [str(v) for v in X.data_vars]
        return "+".join(names) or "features", str(X.attrs.get("model", ""))
    if isinstance(X, xr.DataArray):
        return (str(X.name) if X.name is not None else "features"), str(X.attrs.get("model", ""))
    return "features", ""


def fitted_split(resp_split) -> str:
    """The results' ``split`` of rows with these split labels: their one split, or ``"all"``."""
    if resp_split is None:
        return "all"
    values = set(np.asarray(resp_split).astype(str).tolist())
    return values.pop() if len(values) == 1 else "all"


def align(X, Y, *, func: str = "fit", split: str | None = None, lazy: bool = False) -> Aligned:
    """Align features ``X`` with responses ``Y``.

    Arrays are taken row by row. xarray inputs go through the one join,
    :func:`neuroalign.store.join_features`: on ``stimulus_id``, whatever the order of either
    side; the features get one row per response sample (a trial-level store repeats a
    stimulus's features for each of its presentations) and may describe more stimuli than
    the responses hold; ``split`` takes the store's rows of that split. Non-finite features
    in the rows used raise a :class:`DataFormatError` naming rows, columns and stimuli.
    ``lazy`` leaves a store's 2-D responses on disk (a
    :class:`~neuroalign.store.LazyResponses`, for fits in cells).
    """
    if _is_xr(Y) or _is_xr(X):
        if not (_is_xr(Y) and _is_xr(X)):
            raise TypeError(
                "X and Y must both be xarray objects (joined on stimulus_id) or both arrays; "
                f"got X={type(X).__name__}, Y={type(Y).__name__}."
            )
        if isinstance(X, xr.DataArray) and X.ndim != 2:
            features_matrix(X)  # raises the dims error
        joined = join_features(X, Y, split=split, lazy=lazy, func=func)
        if joined.responses.ndim != 2:
            raise DimensionError(
                f"Responses have {joined.responses.ndim} dims (sample, 'neuroid', 'time'); expected "
                "2 dims (sample, 'neuroid'). Use TimeResolvedEncoder for responses with a 'time' dim."
            )
        for name, arr in joined.features.items():
            if arr.ndim != 2:
                raise DimensionError(
                    f"Invalid dims for features {name!r}: {arr.ndim} dims. Expected ('stimulus', "
                    "'<layer>_unit'); token-level features need AttentionRoutingEncoder."
                )
        Xm = joined.matrix()
        if not np.issubdtype(Xm.dtype, np.floating):
            Xm = Xm.astype(np.float32)
        check_finite(Xm, name="X", func=func, row_labels=joined.stimulus_id)
        layer, model = feature_space(X)
        return Aligned(Xm, joined.responses, joined.stimulus_id, joined.neuroids, joined.sample_dim,
                       layer, model, fitted_split(joined.split))
    Xm = as_matrix(X, name="X")
    Ym = as_matrix(Y, name="Y")
    if Xm.shape[0] != Ym.shape[0]:
        raise DimensionError(
            f"X has {Xm.shape[0]} samples and Y has {Ym.shape[0]}; expected the same number of rows."
        )
    check_finite(Xm, name="X", func=func)
    return Aligned(Xm, Ym, None, None, "sample")


def on_disk(store) -> bool:
    """True when ``store``'s responses (a store or a responses DataArray) are not in memory:
    a store opened with :func:`~neuroalign.store.open_store` (lazily indexed or dask)."""
    if isinstance(store, xr.Dataset):
        if "responses" not in store.data_vars:
            return False
        store = store["responses"]
    return isinstance(store, xr.DataArray) and not store.variable._in_memory


def check_finite(X, *, name: str = "X", func: str = "fit", row_labels=None) -> None:
    """Raise :class:`DataFormatError` naming the rows and columns of ``X`` that hold NaN or inf.

    ``row_labels`` (the stimulus id of each row) are named in the message too.
    """
    if hasattr(X, "detach") and hasattr(X, "cpu"):
        X = X.detach().cpu().numpy()
    arr = np.asarray(X)
    bad = ~np.isfinite(arr)
    if not bad.any():
        return
    bad2 = bad.reshape(arr.shape[0], -1)
    rows, cols = np.flatnonzero(bad2.any(1)), np.flatnonzero(bad2.any(0))
    n_nan, n_inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
    where = f"rows {format_list(rows, limit=10)}"
    if row_labels is not None:
        labels = list(dict.fromkeys(np.asarray(row_labels)[rows].tolist()))
        where += f" (stimulus_id {format_list(labels, limit=10)})"
    raise DataFormatError(
        f"{func}: features {name!r} hold {n_nan} NaN and {n_inf} infinite values, in "
        f"{len(rows)} of {arr.shape[0]} {where} and {len(cols)} of {bad2.shape[1]} columns "
        f"{format_list(cols, limit=10)}. Expected finite features: impute or drop them first."
    )


def neuroid_names(template, n: int) -> np.ndarray:
    """``neuroid_id`` values of a neuroid template, or ``"neuroid <i>"`` labels for arrays."""
    if template is not None and "neuroid_id" in template.coords:
        return np.asarray(template["neuroid_id"].values)
    return np.array([f"neuroid {i}" for i in range(n)])


def column_checks(Y) -> tuple[np.ndarray, np.ndarray]:
    """``(finite, spread)`` per neuroid: all values finite, and max - min of the finite ones.

    Responses left on disk (:class:`~neuroalign.store.LazyResponses`) are read a block of
    neuroids at a time, once (the result is kept on the object). A block is
    a store chunk's bytes (:meth:`LazyResponses.chunk_columns
    <neuroalign.store.LazyResponses.chunk_columns>`), so the scan stays below a fit's own
    working set.
    """
    if isinstance(Y, LazyResponses):
        cached = getattr(Y, "_checks", None)
        if cached is None:
            parts = [column_checks(block) for _, _, block in Y.blocks(Y.chunk_columns())]
            cached = Y._checks = (np.concatenate([p[0] for p in parts]) if parts else np.ones(0, bool),
                                  np.concatenate([p[1] for p in parts]) if parts else np.zeros(0))
        return cached
    finite = np.isfinite(Y).all(axis=0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN neuroids: spread NaN
        spread = np.nanmax(Y, axis=0) - np.nanmin(Y, axis=0) if Y.shape[0] else np.zeros(Y.shape[1])
    return finite, spread


def valid_neuroids(Y: np.ndarray, *, func: str, stacklevel: int = 3, names=None) -> np.ndarray:
    """Mask of neuroids that are finite and not constant.

    Warns (:class:`DataQualityWarning`) with the count of the others and their ``names``
    (default: column indices; a callable is called only when there is something to name).
    """
    finite, spread = column_checks(Y)
    constant = finite & ~(spread > 0)
    ok = finite & ~constant
    n_nan, n_const = int((~finite).sum()), int(constant.sum())
    if n_nan or n_const:
        names = np.arange(Y.shape[1]) if names is None else np.asarray(names() if callable(names) else names)
        warnings.warn(
            f"{func}: excluding {n_nan + n_const} of {Y.shape[1]} neuroids "
            f"({n_nan} with NaN or inf: {format_list(names[~finite], limit=10) or '-'}; "
            f"{n_const} constant: {format_list(names[constant], limit=10) or '-'}); they get "
            "zero weights and NaN scores, and are left out of the results.",
            DataQualityWarning,
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
