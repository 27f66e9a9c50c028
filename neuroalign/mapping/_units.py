"""Units -> cortex: which ROI each unit of a layer matches, and brain-aligned units across models."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign._validation import UNSET, check_option, check_positive_int, format_list, renamed
from neuroalign.encoders._data import column_checks
from neuroalign.exceptions import DataQualityWarning, DimensionError
from neuroalign.mapping._common import averaged_responses, roi_masks
from neuroalign.store._join import join_features
from neuroalign.store._quality import neuroid_labels, report_neuroids

__all__ = ["unit_to_roi", "select_units", "aligned_units", "feature_matrix"]

#: Ridge penalties tried by mapping's ridge fits (absolute, on z-scored features).
DEFAULT_ALPHAS = tuple(10.0 ** np.arange(-2, 6))

log = get_logger(__name__)

METHODS = ("correlation", "encoding")


def feature_matrix(features, layer: str | None = None, *, func: str = "unit_to_roi") -> xr.DataArray:
    """The ``(stimulus, unit)`` DataArray of one layer of a features Dataset (or a DataArray)."""
    if isinstance(features, xr.Dataset):
        names = [str(v) for v in features.data_vars]
        if layer is None:
            if len(names) != 1:
                raise ValueError(
                    f"{func}(): the features hold {len(names)} layers ({format_list(names)}); "
                    "pass layer= to choose one."
                )
            layer = names[0]
        if layer not in names:
            raise KeyError(
                f"Invalid value for 'layer' in {func}(): {layer!r}. Expected one of "
                f"{format_list(names)}."
            )
        da = features[layer].copy(deep=False)  # never touch the caller's attrs
        da.attrs = {**features.attrs, **da.attrs}
    elif isinstance(features, xr.DataArray):
        da = features.copy(deep=False)
        da.attrs = dict(da.attrs)
        layer = layer or str(da.name or da.attrs.get("layer", "features"))
    else:
        raise TypeError(
            f"{func}(): features must be an xr.Dataset (one variable per layer) or an "
            f"xr.DataArray (stimulus, unit); got {type(features).__name__!r}."
        )
    if "stimulus" not in da.dims or da.ndim != 2:
        raise DimensionError(
            f"{func}(): features of layer {layer!r} have dims {da.dims!r}. Expected 2 dims "
            "('stimulus', '<layer>_unit'); reduce token dims first."
        )
    if "stimulus_id" not in da.coords:
        raise DimensionError(f"{func}(): features have no 'stimulus_id' coordinate on 'stimulus'.")
    unit_dim = [d for d in da.dims if d != "stimulus"][0]
    return da.transpose("stimulus", unit_dim).assign_attrs(layer=layer)


def _zscore(a: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    sd = a.std(axis=0)
    return a / np.where(sd > 0, sd, 1.0)


def _scatter(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``values`` at the True positions of ``where``, NaN elsewhere."""
    out = np.full(where.shape, np.nan)
    out[where] = values
    return out


def _usable_units(X: np.ndarray, labels: np.ndarray, layer: str) -> tuple[np.ndarray, np.ndarray]:
    """-> (units whose activations are all finite, finite units that are constant over the
    stimuli); both kinds of unusable unit are named in one warning."""
    ok, spread = column_checks(X)
    constant = ok & ~(spread > 0)
    if not (ok & ~constant).any():
        raise ValueError(
            f"unit_to_roi(): every unit of layer {layer!r} has NaN or inf activations or is "
            f"constant over the {X.shape[0]} stimuli; expected finite, varying features."
        )
    parts = [f"{int(m.sum())} {text} ({format_list(labels[m], limit=10)})"
             for text, m in (("with NaN or inf activations", ~ok), ("constant", constant)) if m.any()]
    if parts:
        warnings.warn(
            f"unit_to_roi(): {int((~ok | constant).sum())} of {len(ok)} units of layer "
            f"{layer!r} have no defined match: {'; '.join(parts)}. Their match, strength and "
            "p-value are NaN and their roi is '': they are never selected.",
            DataQualityWarning, stacklevel=3,
        )
    return ok, constant


def _usable_rois(Y: np.ndarray, masks: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, np.ndarray]:
    """Each ROI's mask without its neuroids that hold NaN or inf or are constant over the
    stimuli (left out of its average, as a fit leaves them out); named in a warning, with
    the ROIs that keep no neuroid (their match is NaN: they never win)."""
    finite, spread = column_checks(Y)
    constant = finite & ~(spread > 0)
    bad = ~finite | constant
    out = {r: m & ~bad for r, m in masks.items()}
    empty = [r for r, m in out.items() if not m.any()]
    if len(empty) == len(out):
        raise ValueError(
            f"unit_to_roi(): no candidate ROI has usable data: {format_list(empty)} hold only "
            "neuroids with NaN or inf values or constant responses over the stimuli."
        )
    in_roi = np.logical_or.reduce(list(masks.values()))
    outcome = "They are left out of their ROIs' averages"
    if empty:
        outcome += (f"; ROI(s) {format_list(empty)} have no usable neuroid left: their match is "
                    "NaN and they never win a unit")
    report_neuroids("unit_to_roi()", labels, {"with NaN or inf values": ~finite & in_roi,
                                              "constant": constant & in_roi},
                    outcome=outcome, strict=False, stacklevel=4)
    return out


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(n, start + size)


def unit_to_roi(
    features,
    store: xr.Dataset,
    *,
    layer: str | None = None,
    method: Literal["correlation", "encoding"] = "correlation",
    rois: str | Sequence[str] | None = None,
    split: str | None = None,
    n_permutations: int = 1000,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    random_state: int | None = 0,
    seed: Any = UNSET,
    model: str | None = None,
    time: float | slice | None = None,
) -> xr.Dataset:
    """Match every unit of a layer to the ROI it tracks best.

    Parameters
    ----------
    features : xr.Dataset or xr.DataArray
        Features Dataset (one variable per layer, dims ``('stimulus', '<layer>_unit')``,
        coord ``stimulus_id``) or one such DataArray. Joined to the store on
        ``stimulus_id`` (:func:`neuroalign.store.join_features`): any order, and the
        features may cover more stimuli than the store.
    store : xr.Dataset
        Trial-level or averaged store with ``roi_*`` coordinates.
    layer : str, optional
        Layer (variable) of ``features``; needed when it holds several.
    method : {"correlation", "encoding"}
        ``"correlation"``: Pearson r between the unit's activation and the ROI-average
        response over stimuli (voxels z-scored, then averaged). ``"encoding"``: a ridge
        encoder from all the layer's (z-scored) units to each ROI-average response; a unit's
        strength is its share of the prediction's variance,
        ``cov(w_u x_u, ŷ) / var(ŷ)`` (the shares of one ROI sum to 1).
    rois : str or list of str, optional
        Candidate ROIs (default: every ``roi_*`` of the store).
    split : str, optional
        Use only the stimuli of this split (default: all).
    n_permutations : int
        Stimulus permutations of the ROI responses for the p-value (0: no p-values). The
        null of each unit is the maximum over ROIs, so the p-value accounts for picking
        the best ROI. For ``"encoding"`` each permutation refits the ridge in closed form
        with the alpha chosen on the real data.
    alphas : sequence of float
        ``"encoding"`` only: ridge penalties, one chosen per ROI by leave-one-out error.
    random_state : int, optional
        Seed of the permutations.
    seed : deprecated
        Old name of ``random_state`` (``FutureWarning``).
    model : str, optional
        Model name recorded in the table (default: the features' ``model`` attr).
    time : float or slice, optional
        Time-resolved stores (MEG/EEG): the time point (nearest sample, s) or the window
        (averaged) whose responses are matched. Required when the store has a ``time`` dim.

    Returns
    -------
    xr.Dataset
        On dim ``unit``: ``roi`` (best ROI), ``strength`` (r or share at that ROI),
        ``p_value`` and ``match`` (dims ``('unit', 'roi_candidate')``, strength for every
        candidate ROI); coords ``unit_index``, ``layer`` and ``model`` on ``unit``.

    Notes
    -----
    NaN rule (a NaN candidate never wins):

    - A unit with a NaN or inf activation for any of the stimuli, or constant over them
      (a dead unit: no correlation is defined), gets NaN ``match``, ``strength`` and
      ``p_value`` and ``roi`` ``""``, so :func:`select_units` never selects it, with a
      :class:`~neuroalign.exceptions.DataQualityWarning` naming the units. The other units get what they get with clean features: bit for bit for
      ``"correlation"`` (units are matched one at a time); ``"encoding"`` fits its ridge on
      the usable units only.
    - A neuroid (voxel) with a NaN or inf response for any of the stimuli, or a constant
      one, is left out of its ROI's average, as encoders leave such neuroids out of a fit
      (the NaN is not read as 0). An ROI left with none has NaN ``match`` (and
      ``encoder_alpha``) and never wins a unit; the other ROIs get what they get without
      it. One warning names those neuroids and ROIs. No usable ROI at all, or no usable
      unit, raises ``ValueError``.
    """
    seed = renamed(seed, random_state, old="seed", new="random_state", func="unit_to_roi",
                   default=0)
    check_option(method, METHODS, name="method", func="unit_to_roi")
    if n_permutations != 0:
        n_permutations = check_positive_int(n_permutations, name="n_permutations", func="unit_to_roi")
    feats = feature_matrix(features, layer)
    layer = feats.attrs["layer"]
    model = model or str(feats.attrs.get("model", feats.attrs.get("model_name", "")))
    resp = averaged_responses(store, func="unit_to_roi")
    if "time" in resp.dims:
        if time is None:
            raise DimensionError(
                "unit_to_roi(): the store is time-resolved (dim 'time'); pass time= (a time "
                "in s, or a slice to average a window)."
            )
        resp = resp.sel(time=time).mean("time") if isinstance(time, slice) else \
            resp.sel(time=time, method="nearest")
    joined = join_features(feats, resp, split=split, func="unit_to_roi")  # on stimulus_id
    X = np.asarray(joined.matrix(), dtype=float)
    masks = roi_masks(resp, None, rois, func="unit_to_roi")
    Y = np.asarray(joined.responses, dtype=float)
    n_stim = X.shape[0]
    if n_stim < 3:
        raise ValueError(f"unit_to_roi(): {n_stim} stimuli; expected at least 3.")
    unit_dim = feats.dims[1]
    unit_index = (np.asarray(feats[unit_dim].values) if unit_dim in feats.coords
                  else np.arange(X.shape[1]))
    ok_unit, const_unit = _usable_units(X, unit_index, layer)
    ok_roi = _usable_rois(Y, masks, neuroid_labels(resp, Y.shape[1]))
    with np.errstate(invalid="ignore"):  # inf - inf in the columns left out
        Yz = _zscore(Y)
    R = np.stack([Yz[:, m].mean(axis=1) for m in ok_roi.values() if m.any()], axis=1)
    # a unit's correlation does not depend on the others: the unusable units stay in as
    # zeros (in X's own memory layout), so that the others' values are those of a run with
    # clean features, bit for bit; the ridge of "encoding" is fit on the usable units only
    cols = np.ones(X.shape[1], bool) if method == "correlation" else ok_unit
    Xu = X
    if method == "encoding" and not ok_unit.all():
        Xu = np.ascontiguousarray(X[:, ok_unit])
    elif not ok_unit.all():
        Xu = X.copy(order="K")
        Xu[:, ~ok_unit] = 0.0
    Xz = _zscore(Xu)
    const = Xu.std(axis=0) == 0
    n_units, n_roi = Xu.shape[1], R.shape[1]

    if method == "correlation":
        Rz = _zscore(R)

        def stat(Rp: np.ndarray) -> np.ndarray:  # Rp (n, B*n_roi) -> (units, B*n_roi)
            return Xz.T @ _zscore(Rp) / n_stim

        match = Xz.T @ Rz / n_stim
    else:
        from neuroalign.encoders._solvers import ridge_loo, ridge_refit

        alpha = ridge_loo(Xz, R, alphas).best_alphas  # per ROI, by leave-one-out
        Xc = Xz - Xz.mean(axis=0)

        def shares(Rp: np.ndarray, a: np.ndarray) -> np.ndarray:
            W, _ = ridge_refit(Xz, Rp, a, relative_alphas=False, dtype=np.float64)
            Yhat = Xc @ W  # the centred prediction
            den = (Yhat**2).sum(axis=0)
            return (Xz.T @ Yhat) * W / np.where(den > 0, den, 1.0)

        def stat(Rp: np.ndarray) -> np.ndarray:
            return shares(Rp, np.tile(alpha, Rp.shape[1] // len(alpha)))

        match = shares(R, alpha)
    match[const] = 0.0
    best = match.argmax(axis=1)  # finite: the unusable units and ROIs are not in it
    strength = match[np.arange(len(best)), best]

    p = np.full(len(best), np.nan)
    if n_permutations:
        rng = np.random.default_rng(seed)
        exceed = np.zeros(len(best))
        batch = max(1, int(2e7 // max(1, n_units * n_roi)))
        for a, b in _batches(n_permutations, batch):
            perms = np.stack([rng.permutation(n_stim) for _ in range(b - a)])
            Rp = R[perms].transpose(1, 0, 2).reshape(n_stim, -1)  # (n, B*n_roi)
            null = stat(Rp).reshape(n_units, b - a, n_roi).max(axis=2)
            exceed += (null >= strength[:, None] - 1e-12).sum(axis=1)
        p = (exceed + 1.0) / (n_permutations + 1.0)
        p[const] = 1.0
    # back to every unit and candidate ROI: NaN (and roi '') where there was no usable data
    has_data = np.array([m.any() for m in ok_roi.values()])
    full = np.full((X.shape[1], len(masks)), np.nan)
    full[np.ix_(cols, has_data)] = match
    match = full
    names = np.array(list(masks), dtype=object)
    roi = np.full(X.shape[1], "", dtype=object)
    roi[cols] = names[np.flatnonzero(has_data)[best]]
    strength, p = _scatter(strength, cols), _scatter(p, cols)
    none = ~ok_unit | const_unit  # no defined match (a constant unit's r is undefined)
    match[none], roi[none], strength[none], p[none] = np.nan, "", np.nan, np.nan
    if method == "encoding":
        alpha = _scatter(alpha, has_data)
    out = xr.Dataset(
        {
            "roi": ("unit", roi.astype(str)),
            "strength": ("unit", strength),
            "p_value": ("unit", p),
            "match": (("unit", "roi_candidate"), match),
        },
        coords={
            "unit_index": ("unit", unit_index),
            "layer": ("unit", np.full(X.shape[1], layer)),
            "model": ("unit", np.full(X.shape[1], model)),
            "roi_candidate": ("roi_candidate", names.astype(str)),
        },
        attrs={"method": method, "n_permutations": int(n_permutations), "n_stimuli": int(n_stim)},
    )
    if method == "encoding":
        out = out.assign(encoder_alpha=("roi_candidate", alpha))
    return out


def select_units(table: xr.Dataset, roi: str, *, alpha: float | None = 0.05,
                 top: int | None = None) -> xr.Dataset:
    """Units whose best ROI is ``roi``, significant at ``alpha``, strongest first.

    Answers "which units map to FFA": ``select_units(unit_to_roi(...), "FFA-1")``.

    Parameters
    ----------
    table : xr.Dataset
        What :func:`unit_to_roi` returns.
    roi : str
        The ROI.
    alpha : float or None
        Keep units whose permutation p-value (``p_value``) is at most ``alpha``; ``None``,
        or a table without p-values (no permutations), keeps all.
    top : int, optional
        Keep at most this many units.

    Returns
    -------
    xr.Dataset
        The rows of ``table`` for those units, strongest first.
    """
    if "roi" not in table:
        raise KeyError("select_units(): the table has no 'roi' variable; expected a unit_to_roi() result.")
    if "roi_candidate" in table.coords and roi not in table["roi_candidate"].values:
        raise KeyError(
            f"Invalid value for 'roi' in select_units(): {roi!r}. Expected one of "
            f"{format_list(table['roi_candidate'].values)}."
        )
    keep = table["roi"].values == roi
    if alpha is not None and np.isfinite(table["p_value"].values).any():
        keep &= table["p_value"].values <= alpha
    sub = table.isel(unit=np.flatnonzero(keep))
    sub = sub.isel(unit=np.argsort(-sub["strength"].values, kind="stable"))
    return sub.isel(unit=slice(0, top)) if top is not None else sub


def aligned_units(
    tables: Mapping[str, xr.Dataset] | Sequence[xr.Dataset],
    *,
    rois: str | Sequence[str] | None = None,
    alpha: float | None = 0.05,
    top: int | None = None,
) -> xr.Dataset:
    """Brain-aligned units across models: the units of every model that match the same ROI.

    Parameters
    ----------
    tables : mapping {model name: unit_to_roi table} or sequence of tables
        Results of :func:`unit_to_roi` for different models (or layers).
    rois : str or list of str, optional
        ROIs to list (default: every ROI some unit matches).
    alpha : float, optional
        Keep units with ``p_value <= alpha``.
    top : int, optional
        At most this many units per model and ROI.

    Returns
    -------
    xr.Dataset
        On dim ``match``, sorted by ROI then strength: ``strength``, ``p_value``; coords
        ``roi``, ``model``, ``layer``, ``unit_index``.
    """
    if isinstance(tables, Mapping):
        items = list(tables.items())
    else:
        items = [(str(t["model"].values[0]) if t.sizes.get("unit") else "", t) for t in tables]
    if not items:
        raise ValueError("aligned_units(): no tables given; expected unit_to_roi() results.")
    if isinstance(rois, str):
        rois = [rois]
    wanted = rois if rois is not None else sorted({str(r) for _, t in items for r in t["roi"].values})
    rows = []
    for name, t in items:
        for roi in wanted:
            if roi not in t["roi_candidate"].values:
                continue
            sel = select_units(t, roi, alpha=alpha, top=top)
            for u in range(sel.sizes["unit"]):
                rows.append((roi, name, str(sel["layer"].values[u]), sel["unit_index"].values[u],
                             float(sel["strength"].values[u]), float(sel["p_value"].values[u])))
    rows.sort(key=lambda r: (wanted.index(r[0]), -r[4]))
    cols = list(zip(*rows, strict=True)) if rows else [[], [], [], [], [], []]
    return xr.Dataset(
        {"strength": ("match", np.asarray(cols[4], float)), "p_value": ("match", np.asarray(cols[5], float))},
        coords={"roi": ("match", np.asarray(cols[0], str)), "model": ("match", np.asarray(cols[1], str)),
                "layer": ("match", np.asarray(cols[2], str)), "unit_index": ("match", np.asarray(cols[3]))},
    )
