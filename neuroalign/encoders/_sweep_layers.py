"""The layers of a features object (LayerSweep's inputs): the table of layers by name,
their models, and the rows of the layers a prediction needs, in one order."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign._sklearn import check_x
from neuroalign._validation import format_list
from neuroalign.encoders._data import align, as_matrix, features_matrix
from neuroalign.exceptions import DimensionError
from neuroalign.store._join import match_stimuli

__all__ = ["layer_table", "layer_spaces", "layer_rows"]


def layer_table(features) -> dict[str, object]:
    """The layers of a features object, by name.

    Parameters
    ----------
    features : xr.Dataset or dict
        A features Dataset (one variable per layer), a dict of layers, or a dict
        ``{model: features Dataset}``.

    Returns
    -------
    dict
        ``{layer name: features}`` (names ``"model/layer"`` for a dict of models).
    """
    if isinstance(features, xr.Dataset):
        return {str(k): features[k] for k in features.data_vars}
    if isinstance(features, dict):
        out: dict[str, object] = {}
        for key, val in features.items():
            if isinstance(val, xr.Dataset) or isinstance(val, dict):
                for sub, arr in layer_table(val).items():
                    out[f"{key}/{sub}"] = arr
            else:
                out[str(key)] = val
        return out
    raise TypeError(
        f"Invalid value for 'features' (X) in LayerSweep.fit(): {type(features).__name__}. "
        "Expected a features Dataset, a dict {layer: features}, a dict {model: features "
        "Dataset}, or one array (n_samples, n_features) with array responses."
    )


def layer_spaces(features) -> dict[str, tuple[str, str]]:
    """``{key of layer_table: (model, the layer's own name)}``: the model is the key of a
    dict ``{model: features Dataset}``, else the features' ``model`` attribute (``""``)."""
    if isinstance(features, xr.Dataset):
        model = str(features.attrs.get("model", ""))
        return {str(k): (model, str(k)) for k in features.data_vars}
    out: dict[str, tuple[str, str]] = {}
    for key, val in features.items():
        if isinstance(val, xr.Dataset | dict):
            for sub, (_, layer) in layer_spaces(val).items():
                out[f"{key}/{sub}"] = (str(key), layer)
        else:
            out[str(key)] = (str(getattr(val, "attrs", {}).get("model", "")), str(key))
    return out


def layer_rows(X, needed: list[str], func: str, Y=None):
    """Feature matrices of the ``needed`` layers, rows in one order (joined on
    ``stimulus_id`` for xarray features, with ``Y`` when given).

    -> (dict {layer: matrix}, stimulus ids or None, responses matrix or None, template).
    """
    if isinstance(X, xr.Dataset) or (isinstance(X, dict) and any(
            isinstance(v, xr.Dataset | xr.DataArray | dict) for v in X.values())):
        table = layer_table(X)
    elif isinstance(X, dict) and not hasattr(X, "tocsr"):
        table = dict(X)
    elif len(needed) == 1:
        table = {needed[0]: check_x(X, func=f"LayerSweep.{func}")}
    else:
        raise ValueError(
            f"LayerSweep.{func}(): with layer=None every neuroid is predicted by its own best "
            "layer, so 'X' must hold the features of every layer (a features Dataset or a dict "
            "{layer: features}); got one array. Pass layer='<name>' for one layer's predictions."
        )
    missing = [n for n in needed if n not in table]
    if missing:
        raise KeyError(
            f"LayerSweep.{func}(): the features lack the layer(s) {format_list(missing, limit=5)}; "
            f"they hold {format_list(list(table), limit=5)}."
        )
    if all(isinstance(table[n], xr.DataArray) for n in needed):
        if Y is not None:
            aligned = {n: align(table[n], Y, func=f"LayerSweep.{func}") for n in needed}
            a0 = aligned[needed[0]]
            return {n: a.X for n, a in aligned.items()}, a0.stimulus_id, a0.Y, a0.neuroid_coords
        ids = np.asarray(features_matrix(table[needed[0]])["stimulus_id"].values)
        mats = {}
        for n in needed:
            fm = features_matrix(table[n])
            mats[n] = np.asarray(fm.values)[match_stimuli(
                fm["stimulus_id"].values, ids, have_name=f"layer {n!r}",
                want_name=f"layer {needed[0]!r}", func=f"LayerSweep.{func}")]
        return mats, ids, None, None
    mats = {n: as_matrix(check_x(table[n], func=f"LayerSweep.{func}"), name="X")
            for n in needed}
    if Y is None:
        return mats, None, None, None
    Ym = as_matrix(Y, name="Y")
    n_rows = {m.shape[0] for m in mats.values()}
    if n_rows != {Ym.shape[0]}:
        raise DimensionError(
            f"LayerSweep.{func}(): X has {sorted(n_rows)} samples and Y has {Ym.shape[0]}; "
            "expected the same number of rows."
        )
    return mats, None, Ym, None
