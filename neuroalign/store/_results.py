"""The results schema shared by every encoder, the CLI and mapping, and its one gate,
:func:`check_results`.

A results Dataset (schema version ``"1"``, attribute ``results_schema``):

- dims ``layer`` and ``neuroid`` (plus ``time`` for time-resolved results);
- ``score (layer, neuroid[, time])``: the per-layer score (attrs ``metric``, ``kind``);
  ``alpha`` on the same dims: the ridge penalty each fit chose (NaN where none was chosen);
  optionally ``cv_score`` on the same dims: the cross-validated R² within the training data
  that chose ``best_layer`` when ``score`` is a held-out score;
- coordinates on ``layer``: ``layer`` (str, the layer's own name), ``model`` (str) and
  ``depth`` (int, the layer's position within its model); a (model, layer) pair appears once;
- on ``neuroid`` (and ``time``): ``best_layer`` (str, ``""`` where no layer has a score),
  ``best_model`` (str), ``best_score`` (the score of ``best_layer``; its attr ``estimate``
  says whether it is a held-out estimate or a maximum over layers), ``best_alpha``, and
  with a noise ceiling ``noise_ceiling`` (percent) and ``ceiling_normalised``; plus the
  store's neuroid coordinates (``neuroid_id``, ``roi_*``, ``subject``, ...);
- attributes ``metric`` (``"r2"`` or ``"pearson"``), ``score_kind`` (``"cv"`` or
  ``"test"``), ``split`` (the split of the rows scored: ``"test"`` for held-out scores; for
  cross-validated ones the rows fitted, ``"train"``, or ``"all"`` when they carry no split
  label or span both), ``cv`` (the folds in words), ``selection`` (how ``best_layer`` was
  chosen), ``encoder`` (class name), ``params`` (JSON of the estimator's parameters) and
  ``neuroalign_version``.

Extra variables (e.g. a banded model's ``space_weight``) and attributes are allowed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError, DimensionError

__all__ = [
    "RESULTS_SCHEMA",
    "RESULT_METRICS",
    "SCORE_KINDS",
    "RESULT_ATTRS",
    "check_results",
    "open_results",
]

RESULTS_SCHEMA = "1"
RESULT_METRICS = ("r2", "pearson")
SCORE_KINDS = ("cv", "test")
RESULT_ATTRS = ("results_schema", "metric", "score_kind", "split", "cv", "selection", "encoder",
                "params", "neuroalign_version")
_PER_LAYER = ("score", "alpha")
_OPTIONAL_PER_LAYER = ("cv_score",)
_LAYER_COORDS = {"layer": "U", "model": "U", "depth": "iu"}
_BEST = {"best_layer": "U", "best_model": "U", "best_score": "f", "best_alpha": "f"}
_KINDS = {"U": "str", "iu": "int", "f": "float"}


def _kind_ok(values, kinds: str) -> bool:
    arr = np.asarray(values)
    if kinds == "U":
        return arr.dtype.kind == "U" or (arr.dtype.kind in "OT" and all(
            isinstance(v, str) for v in arr.ravel()[:1000]))
    return arr.dtype.kind in kinds


def _present(ds: xr.Dataset, dims: tuple[str, ...], *, coords: bool = False) -> str:
    source = ds.coords if coords else ds.data_vars
    names = sorted(str(n) for n, v in source.items() if tuple(v.dims) == dims)
    return format_list(names) or "none"


def check_results(ds: xr.Dataset) -> xr.Dataset:
    """Validate ``ds`` against the results schema; return it unchanged.

    The one gate of encoder results: every encoder's ``to_dataset()``, every results folder
    the CLI writes and every input of :mod:`neuroalign.mapping` passes through it.

    Parameters
    ----------
    ds : xr.Dataset
        Results (see the module docstring for the schema).

    Returns
    -------
    xr.Dataset
        ``ds`` itself, for chaining.

    Raises
    ------
    TypeError
        ``ds`` is not a Dataset.
    DimensionError
        A variable, dim or coordinate is missing or on the wrong dims; the message names what
        is missing and what is present.
    DataFormatError
        A variable, coordinate or attribute has the wrong dtype or value (e.g. an unknown
        ``metric``, a (model, layer) pair twice, a ``best_layer`` that is not a layer), or a
        required attribute is missing.
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(
            f"check_results() expects an xarray.Dataset of results, got {type(ds).__name__}. "
            "An encoder's results come from its to_dataset()."
        )
    if "score" not in ds.data_vars:
        raise DimensionError(
            "Results have no variable 'score' (per-layer scores on ('layer', 'neuroid'[, "
            f"'time'])). Variables present: {format_list(sorted(map(str, ds.data_vars))) or 'none'}."
        )
    dims = tuple(ds["score"].dims)
    if dims not in (("layer", "neuroid"), ("layer", "neuroid", "time")):
        missing = [d for d in ("layer", "neuroid") if d not in dims]
        raise DimensionError(
            f"Results variable 'score' has dims {dims!r}"
            + (f", missing {format_list(missing)}" if missing else "")
            + ". Expected ('layer', 'neuroid') or ('layer', 'neuroid', 'time')."
        )
    for name in _PER_LAYER + _OPTIONAL_PER_LAYER:
        if name not in ds.data_vars:
            if name in _PER_LAYER:
                raise DimensionError(
                    f"Results are missing the variable {name!r} on {dims!r}. Variables on "
                    f"{dims!r}: {_present(ds, dims)}."
                )
            continue
        var = ds[name]
        if tuple(var.dims) != dims:
            raise DimensionError(
                f"Results variable {name!r} has dims {tuple(var.dims)!r}; expected {dims!r} "
                "(those of 'score')."
            )
        if var.dtype.kind != "f":
            raise DataFormatError(
                f"Results variable {name!r} has dtype {var.dtype!s}, expected a float dtype."
            )
    for name, kinds in _LAYER_COORDS.items():
        if name not in ds.coords:
            raise DimensionError(
                f"Results are missing the coordinate {name!r} on dim 'layer'. Coordinates on "
                f"'layer': {_present(ds, ('layer',), coords=True)}. (Several models are told apart by the "
                "'model' coordinate, never by 'model/layer' names.)"
            )
        coord = ds.coords[name]
        if tuple(coord.dims) != ("layer",):
            raise DimensionError(
                f"Results coordinate {name!r} has dims {tuple(coord.dims)!r}, expected ('layer',)."
            )
        if not _kind_ok(coord.values, kinds):
            raise DataFormatError(
                f"Results coordinate {name!r} has dtype {coord.dtype!s}, expected {_KINDS[kinds]}."
            )
    pairs = list(zip(np.asarray(ds["model"].values).astype(str).tolist(),
                     np.asarray(ds["layer"].values).astype(str).tolist(), strict=True))
    dup = sorted({p for p in pairs if pairs.count(p) > 1})
    if dup:
        raise DataFormatError(
            f"Results name the (model, layer) pair(s) {format_list(dup, limit=5)} more than once; "
            "expected each layer of each model once."
        )
    if pairs and all("/" in name and not model for model, name in pairs):
        raise DataFormatError(
            f"Results layers are named {format_list([n for _, n in pairs], limit=5)} with an empty "
            "'model' coordinate; expected the model in the 'model' coordinate and the layer's own "
            "name in 'layer' (no 'model/layer' strings)."
        )
    best_dims = dims[1:]
    for name, kinds in _BEST.items():
        if name not in ds.data_vars:
            raise DimensionError(
                f"Results are missing the variable {name!r} on {best_dims!r}. Variables on "
                f"{best_dims!r}: {_present(ds, best_dims)}."
            )
        var = ds[name]
        if tuple(var.dims) != best_dims:
            raise DimensionError(
                f"Results variable {name!r} has dims {tuple(var.dims)!r}; expected {best_dims!r}."
            )
        if not _kind_ok(var.values, kinds):
            raise DataFormatError(
                f"Results variable {name!r} has dtype {var.dtype!s}, expected {_KINDS[kinds]}."
            )
    layer_names = set(np.asarray(ds["layer"].values).astype(str).tolist()) | {""}
    unknown = sorted(set(np.asarray(ds["best_layer"].values).astype(str).ravel().tolist()) - layer_names)
    if unknown:
        raise DataFormatError(
            f"Results variable 'best_layer' names {format_list(unknown, limit=5)}, which are not "
            f"layers of the results ({format_list(sorted(layer_names - {''}), limit=10)})."
        )
    if "neuroid_id" not in ds.coords or tuple(ds["neuroid_id"].dims) != ("neuroid",):
        raise DimensionError(
            "Results are missing the coordinate 'neuroid_id' on dim 'neuroid'. Coordinates on "
            f"'neuroid': {_present(ds, ('neuroid',), coords=True)}."
        )
    nid = np.asarray(ds["neuroid_id"].values).astype(str)
    uniq, counts = np.unique(nid, return_counts=True)
    if (counts > 1).any():
        raise DataFormatError(
            f"Results coordinate 'neuroid_id' has duplicates: {format_list(uniq[counts > 1], limit=5)}."
        )
    if "time" in dims and ("time" not in ds.coords or ds["time"].dtype.kind != "f"):
        raise DimensionError(
            "Results have dim 'time' but no float coordinate 'time' (seconds from stimulus onset)."
        )
    has_nc, has_norm = "noise_ceiling" in ds.data_vars, "ceiling_normalised" in ds.data_vars
    if has_nc != has_norm:
        raise DimensionError(
            "Results hold " + ("'noise_ceiling' without 'ceiling_normalised'" if has_nc else
                               "'ceiling_normalised' without 'noise_ceiling'")
            + "; expected both or neither."
        )
    if has_nc and tuple(ds["noise_ceiling"].dims) != ("neuroid",):
        raise DimensionError(
            f"Results variable 'noise_ceiling' has dims {tuple(ds['noise_ceiling'].dims)!r}; "
            "expected ('neuroid',)."
        )
    _check_attrs(ds)
    return ds


def _check_attrs(ds: xr.Dataset) -> None:
    missing = [a for a in RESULT_ATTRS if a not in ds.attrs]
    if missing:
        raise DataFormatError(
            f"Results are missing the attribute(s) {format_list(missing)}. Attributes present: "
            f"{format_list(sorted(ds.attrs)) or 'none'}."
        )
    a = ds.attrs
    if str(a["results_schema"]) != RESULTS_SCHEMA:
        raise DataFormatError(
            f"Results attribute 'results_schema' is {a['results_schema']!r}; this version of "
            f"neuroalign reads schema {RESULTS_SCHEMA!r}."
        )
    for name, options in (("metric", RESULT_METRICS), ("score_kind", SCORE_KINDS)):
        if a[name] not in options:
            raise DataFormatError(
                f"Results attribute {name!r} is {a[name]!r}; expected one of {format_list(options)}."
            )
    for name in ("split", "cv", "selection", "encoder", "neuroalign_version"):
        if not isinstance(a[name], str):
            raise DataFormatError(
                f"Results attribute {name!r} is {a[name]!r}; expected a str."
            )
    if a["score_kind"] == "test" and a["split"] in ("", "train", "all"):
        raise DataFormatError(
            f"Results attribute 'split' is {a['split']!r} for held-out scores (score_kind "
            "'test'); expected the name of the held-out split, e.g. 'test'."
        )
    try:
        ok = isinstance(a["params"], str) and isinstance(json.loads(a["params"]), dict | list)
    except ValueError:
        ok = False
    if not ok:
        raise DataFormatError(
            f"Results attribute 'params' is {a['params']!r}; expected the estimator's "
            "parameters as a JSON string (an object)."
        )


def open_results(path: str | os.PathLike) -> xr.Dataset:
    """Open results written by :func:`~neuroalign.store.save_results` (checked against their
    manifest) and check them with :func:`check_results`.

    Parameters
    ----------
    path : str or path-like
        The results folder (``results.zarr``) written by ``save_results``.

    Returns
    -------
    xr.Dataset
        The results, lazily loaded.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist or is incomplete.
    StoreCorruptError
        A file of it is missing or altered.
    DimensionError, DataFormatError
        It is not a results Dataset of this schema (see :func:`check_results`).
    """
    from neuroalign.store._io import read_zarr

    return check_results(read_zarr(Path(path), what="results zarr"))
