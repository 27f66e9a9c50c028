"""LayerSweep: fit every layer of one or more models against the same responses."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger, progress
from neuroalign._preflight import check_sweep
from neuroalign._validation import format_list
from neuroalign.encoders._data import (
    align,
    as_matrix,
    features_matrix,
    join_on_stimulus,
    valid_neuroids,
)
from neuroalign.encoders._results import CV_KIND, results_dataset
from neuroalign.encoders._ridge import DEFAULT_ALPHAS, RidgeEncoder, resolve_folds
from neuroalign.encoders._scaleout import SweepCells
from neuroalign.encoders._scoring import SCORERS, nan_argmax
from neuroalign.encoders._solvers import ridge_cv
from neuroalign.exceptions import DataQualityWarning, DimensionError, NotFittedError

__all__ = ["LayerSweep", "layer_table"]

log = get_logger(__name__)

SELECTION = "argmax over layers of the cross-validated R² within the fitting (training) data"


def layer_table(features) -> dict[str, object]:
    """``{layer name: features}`` from a features Dataset (one variable per layer), a dict
    of layers, or a dict ``{model: features Dataset}`` (names become ``"model/layer"``)."""
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
        f"Invalid value for 'features' in LayerSweep.fit(): {type(features).__name__}. Expected a "
        "features Dataset, a dict {layer: features} or a dict {model: features Dataset}."
    )


class LayerSweep(RidgeEncoder):
    """Ridge encoders for every layer of one or more models, against the same responses.

    The folds are computed once for all layers and the responses are moved to the device
    once; per layer and fold, one eigendecomposition serves all neuroids and all alphas.

    Each neuroid's best layer (and each layer's alpha) is chosen by cross-validation
    within the fitting data: the layer with the highest cross-validated R²
    (``cv_scores_``). With ``test_split`` the held-out split plays no part in any choice;
    it only scores the chosen models, so the best layer's test score is an unbiased
    estimate. Without it, the best layer's score is the maximum over layers of noisy
    estimates, and is named so (``max_layer_score``).

    NaN rule: a layer whose score is NaN never wins; a neuroid whose every layer is NaN
    (an excluded NaN/constant neuroid) gets the empty best layer ``""`` and NaN scores.

    Parameters
    ----------
    alphas, cv, fit_intercept, device, form, n_targets_batch, metric, dtype
        As :class:`RidgeEncoder`. ``metric`` is what held-out scores (``test_split``,
        :meth:`score`) are; the cross-validated scores are always R².
    test_split : str or None
        With a store as ``Y``: fit on the other presentations and score (``metric``) on the
        repetition-averaged presentations of this split (e.g. ``"test"``).

    Attributes
    ----------
    layers_ : list of str
    cv_scores_ : DataArray, dims ('layer', 'neuroid')
        Cross-validated R² of each layer within the fitting data (NaN for excluded
        neuroids): what layers are compared on.
    scores_ : DataArray, dims ('layer', 'neuroid')
        The same array as ``cv_scores_`` (the scores layer preference is computed from).
    test_scores_ : DataArray, dims ('layer', 'neuroid'), or None
        With ``test_split``: each layer's held-out score (``metric``).
    best_alphas_ : DataArray, dims ('layer', 'neuroid')
    best_layer_ : DataArray of str, dim 'neuroid'
        Chosen by ``cv_scores_`` ("" where no layer has a score).
    encoders_ : dict {layer: dict of coef, intercept}
        Weights of the valid neuroids (``valid_neuroids_``).
    """

    def __init__(
        self,
        alphas=DEFAULT_ALPHAS,
        cv=5,
        fit_intercept: bool = True,
        device: str = "auto",
        *,
        form: str = "auto",
        n_targets_batch: int = 4096,
        metric: str = "pearson",
        dtype: str = "float32",
        test_split: str | None = None,
    ) -> None:
        super().__init__(alphas=alphas, cv=cv, fit_intercept=fit_intercept, device=device,
                         form=form, n_targets_batch=n_targets_batch, metric=metric, dtype=dtype)
        self.test_split = test_split

    # -- fitting -------------------------------------------------------------------------
    def _split(self, Y):
        """-> (training responses, repetition-averaged test responses or None)."""
        if self.test_split is None:
            return Y, None
        if not isinstance(Y, xr.Dataset) or "split" not in Y.coords:
            raise ValueError(
                f"Invalid value for 'test_split' in LayerSweep: {self.test_split!r} needs a "
                "store with a 'split' coordinate as Y."
            )
        is_test = Y["split"].values == self.test_split
        if not is_test.any():
            raise ValueError(
                f"Invalid value for 'test_split' in LayerSweep: {self.test_split!r}; the "
                f"store's splits are {sorted(set(Y['split'].values.tolist()))!r}."
            )
        if is_test.all():
            raise ValueError(
                f"Invalid value for 'test_split' in LayerSweep: {self.test_split!r} holds every "
                "presentation; expected other presentations to fit on."
            )
        dim = Y["split"].dims[0]
        test = Y.isel({dim: np.flatnonzero(is_test)})
        if "repetition" in test.coords:
            test = test.na.average_repetitions()
        return Y.isel({dim: np.flatnonzero(~is_test)}), test

    def fit(self, features, Y, *, cluster=None, cluster_options=None, result_path=None,
            batch_size=None, client=None, **_):
        """Fit every layer of ``features`` against ``Y``; see the class docstring.

        ``cluster``, ``cluster_options``, ``result_path``, ``batch_size``, ``client``: as in
        :meth:`RidgeEncoder.fit` (cells of neuroids per layer, cached under ``result_path``;
        a rerun fits only the missing cells). Same results as the single-process sweep.
        """
        alphas, device, dtype = self._validate()
        layers = layer_table(features)
        if not layers:
            raise ValueError("LayerSweep.fit(): 'features' holds no layers; expected at least one.")
        train_Y, test = self._split(Y)
        names = list(layers)
        sub = test is not None
        if sub:  # the exact join is checked on the whole store, then split
            for name in names:
                align(layers[name], Y)
        first = align(layers[names[0]], train_Y, allow_extra=sub)
        self._fit_meta(first)
        folds = resolve_folds(self.cv, first.X.shape[0], first.stimulus_id, func="LayerSweep")
        ok = valid_neuroids(first.Y, func="LayerSweep.fit")
        check_sweep(layers, first.X.shape[0], int(ok.sum()), n_alphas=len(alphas),  # preflight
                    n_folds=1 if isinstance(folds, str) else len(folds), dtype=dtype)
        Yt = self._tensor(first.Y[:, ok], device, dtype)
        n_neuroids = first.Y.shape[1]
        cv = np.full((len(names), n_neuroids), np.nan)
        held = np.full((len(names), n_neuroids), np.nan) if sub else None
        best_alphas = np.full((len(names), n_neuroids), np.nan)
        self.encoders_ = {}
        form = None if self.form == "auto" else self.form
        cells = SweepCells.maybe(self, client=client, cluster=cluster, result_path=result_path,
                                 cluster_options=cluster_options, batch_size=batch_size)
        for li, name in enumerate(progress(names, desc="layers", unit="layer")):
            data = first if li == 0 else align(layers[name], train_Y, allow_extra=sub)
            Xt = self._tensor(data.X, device, dtype)
            cvres = cells.fit(Xt, Yt, folds, alphas, like=Xt, layer=name) if cells else ridge_cv(
                Xt, Yt, alphas, folds, fit_intercept=self.fit_intercept, form=form,
                n_targets_batch=self.n_targets_batch, refit=True)
            best_alphas[li, ok] = cvres.best_alphas
            cv[li, ok] = cvres.cv_scores
            coef, intercept = cvres.coef.cpu().numpy(), cvres.intercept.cpu().numpy()
            self.encoders_[name] = {"coef": coef, "intercept": intercept}
            if sub:
                tdata = align(layers[name], test, allow_extra=True)
                pred = tdata.X.astype(coef.dtype) @ coef + intercept
                held[li, ok] = SCORERS[self.metric](tdata.Y[:, ok], pred)
            del Xt
            log.info("layer %s: median cv R² %.3f", name, float(np.median(cv[li, ok])) if ok.any() else np.nan)
        if cells:
            cells.close()
            self.scaleout_info_ = cells.info
        self.layers_ = names
        self.valid_neuroids_ = ok
        tmpl = first.neuroid_coords
        coords = {} if tmpl is None else {k: v for k, v in tmpl.coords.items() if v.dims == ("neuroid",)}
        lcoords = {"layer": names, **coords}
        if all("/" in n for n in names):
            lcoords["model"] = ("layer", [n.split("/", 1)[0] for n in names])
        self.cv_scores_ = xr.DataArray(cv, dims=("layer", "neuroid"), coords=lcoords, name="cv_r2")
        self.cv_scores_.attrs.update(metric="r2", kind=CV_KIND)
        self.scores_ = self.cv_scores_
        self.test_scores_ = None
        if sub:
            self.test_scores_ = self.cv_scores_.copy(data=held).rename(f"{self.test_split}_{self.metric}")
            self.test_scores_.attrs.update(metric=self.metric, kind=self.test_split)
        self.best_alphas_ = self.cv_scores_.copy(data=best_alphas).rename("best_alpha")
        best, none = nan_argmax(cv, axis=0)
        lost = none & ok
        if lost.any():
            ids = np.arange(n_neuroids) if tmpl is None or "neuroid_id" not in tmpl.coords \
                else tmpl["neuroid_id"].values
            warnings.warn(
                f"LayerSweep.fit: {int(lost.sum())} neuroid(s) have a NaN score on every layer "
                f"({format_list(ids[lost], limit=5)}); their best layer is '' and their scores NaN.",
                DataQualityWarning, stacklevel=2,
            )
        labels = np.where(none, "", np.asarray(names, dtype=object)[best]).astype(str)
        self.best_layer_ = xr.DataArray(labels, dims="neuroid", coords=coords, name="best_layer")
        self._best_index = best
        self._no_layer = none
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "cv_scores_"):
            raise NotFittedError("This LayerSweep is not fitted yet; call fit(features, Y) first.")

    # -- prediction and scoring ------------------------------------------------------------
    def _check_layer(self, layer, func: str) -> None:
        if layer not in self.encoders_:
            raise KeyError(
                f"Invalid value for 'layer' in LayerSweep.{func}(): {layer!r}. Expected one of "
                f"{self.layers_!r}."
            )

    def _layer_rows(self, X, needed: list[str], func: str, Y=None):
        """Feature matrices of the ``needed`` layers, rows in one order (joined on
        ``stimulus_id`` for xarray features, with ``Y`` when given).

        -> (dict {layer: matrix}, stimulus ids or None, responses matrix or None, template).
        """
        if isinstance(X, xr.Dataset) or (isinstance(X, dict) and any(
                isinstance(v, xr.Dataset | xr.DataArray | dict) for v in X.values())):
            table = layer_table(X)
        elif isinstance(X, dict):
            table = dict(X)
        elif len(needed) == 1:
            table = {needed[0]: X}
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
                aligned = {n: align(table[n], Y, allow_extra=True) for n in needed}
                a0 = aligned[needed[0]]
                return {n: a.X for n, a in aligned.items()}, a0.stimulus_id, a0.Y, a0.neuroid_coords
            ids = np.asarray(features_matrix(table[needed[0]])["stimulus_id"].values)
            mats = {}
            for n in needed:
                fm = features_matrix(table[n])
                mats[n] = np.asarray(fm.values)[join_on_stimulus(fm["stimulus_id"].values, ids)]
            return mats, ids, None, None
        mats = {n: as_matrix(table[n], name="X") for n in needed}
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

    def _predict_matrix(self, mats: dict, layer: str | None) -> np.ndarray:
        n = next(iter(mats.values())).shape[0]
        ok = self.valid_neuroids_
        pred = np.full((n, len(ok)), np.nan)
        cols_ok = np.flatnonzero(ok)
        for name, Xm in mats.items():
            enc = self.encoders_[name]
            if Xm.shape[1] != enc["coef"].shape[0]:
                raise DimensionError(
                    f"Layer {name!r} has {Xm.shape[1]} features; this LayerSweep was fitted with "
                    f"{enc['coef'].shape[0]}."
                )
            if layer is None:
                use = (self.best_layer_.values == name)[cols_ok]
            else:
                use = np.ones(len(cols_ok), bool)
            if use.any():
                pred[:, cols_ok[use]] = Xm.astype(enc["coef"].dtype) @ enc["coef"][:, use] + enc["intercept"][use]
        return pred

    def predict(self, X, layer: str | None = None):
        """Predicted responses.

        Parameters
        ----------
        X : features Dataset, dict {layer: features}, DataArray or ndarray
            With ``layer=None``, the features of every layer (each neuroid is predicted by
            its own best layer); with ``layer``, that layer's features.
        layer : str, optional

        Returns
        -------
        ndarray (n_stimuli, n_neuroids), or a DataArray ('stimulus', 'neuroid') for xarray
        features; NaN for neuroids that were excluded or have no best layer.
        """
        self._check_fitted()
        if layer is not None:
            self._check_layer(layer, "predict")
        needed = [layer] if layer is not None else sorted(set(self.best_layer_.values) - {""})
        mats, ids, _, _ = self._layer_rows(X, needed or self.layers_[:1], "predict")
        pred = self._predict_matrix({n: mats[n] for n in needed}, layer) if needed else \
            np.full((next(iter(mats.values())).shape[0], len(self.valid_neuroids_)), np.nan)
        if ids is None:
            return pred
        coords = {"stimulus_id": ("stimulus", ids)}
        if self._neuroid_template is not None:
            coords.update({k: v for k, v in self._neuroid_template.coords.items() if v.dims == ("neuroid",)})
        return xr.DataArray(pred, dims=("stimulus", "neuroid"), coords=coords, name="prediction")

    def score(self, X, Y, sample_weight=None, *, layer: str | None = None):
        """Held-out score (``metric``) of each neuroid's best layer (or of ``layer``).

        ``X`` holds the features of every layer (a features Dataset or a dict), or with
        ``layer`` that layer's features; xarray inputs are joined on ``stimulus_id`` (the
        features may cover more stimuli than ``Y``). Returns a DataArray on ``neuroid`` for
        xarray inputs, else an ndarray; NaN for excluded neuroids.
        """
        self._check_fitted()
        if sample_weight is not None:
            raise ValueError("LayerSweep.score(): sample_weight is not supported; expected None.")
        if layer is not None:
            self._check_layer(layer, "score")
        needed = [layer] if layer is not None else sorted(set(self.best_layer_.values) - {""})
        mats, _, Ym, tmpl = self._layer_rows(X, needed or self.layers_[:1], "score", Y=Y)
        if Ym.shape[1] != len(self.valid_neuroids_):
            raise DimensionError(
                f"Y has {Ym.shape[1]} neuroids; this LayerSweep was fitted with {len(self.valid_neuroids_)}."
            )
        pred = self._predict_matrix({n: mats[n] for n in needed}, layer)
        s = np.full(Ym.shape[1], np.nan)
        has = ~np.isnan(pred).any(0)
        s[has] = SCORERS[self.metric](Ym[:, has], pred[:, has])
        if tmpl is None:
            return s
        out = tmpl.copy(data=s).rename("score")
        out.attrs.update(metric=self.metric, kind="held-out")
        return out

    # -- summaries -----------------------------------------------------------------------
    def roi_best_layer(self) -> xr.DataArray:
        """Best layer of each ROI: the argmax over layers of the ROI-mean cross-validated R²
        (``cv_scores_``, within the fitting data; NaN neuroids left out).

        Returns a DataArray of str with dim ``roi`` (from the ``roi_*`` coordinates); an ROI
        without any scored neuroid gets ``""`` and a :class:`DataQualityWarning`.
        """
        self._check_fitted()
        sc = self.cv_scores_
        rois = sorted(str(c)[4:] for c in sc.coords if str(c).startswith("roi_"))
        best, empty = [], []
        for roi in rois:
            mask = np.asarray(sc[f"roi_{roi}"].values, dtype=bool)
            vals = sc.values[:, mask]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
                means = np.nanmean(vals, axis=1) if mask.any() else np.full(len(self.layers_), np.nan)
            idx, none = nan_argmax(means)
            best.append("" if none else self.layers_[int(idx)])
            if none:
                empty.append(roi)
        if empty:
            warnings.warn(
                f"LayerSweep.roi_best_layer: {len(empty)} ROI(s) have no neuroid with a score: "
                f"{format_list(empty, limit=5)}; their best layer is ''.",
                DataQualityWarning, stacklevel=2,
            )
        out = xr.DataArray(np.asarray(best, dtype=str), dims="roi", coords={"roi": rois}, name="best_layer")
        out.attrs["selection"] = ("argmax over layers of the ROI-mean cross-validated R² within the "
                                  "fitting (training) data")
        return out

    def to_dataset(self, ceiling=None) -> xr.Dataset:
        """The sweep's results (valid neuroids only).

        Per layer, dims ``('layer', 'neuroid')``: ``score`` (held-out ``metric`` with
        ``test_split``, else the cross-validated R²; what
        :func:`neuroalign.mapping.layer_preference` reads), ``cv_score`` (cross-validated
        R² within the fitting data, the selection criterion) and ``best_alpha``.

        Per neuroid: ``best_layer`` (chosen by ``cv_score``), ``best_layer_alpha`` and
        either ``best_layer_score`` (with ``test_split``: the held-out score of the chosen
        layer, an unbiased estimate) or ``max_layer_score`` (without: the maximum over
        layers of the cross-validated R², biased upwards by the choice). With a noise
        ceiling (percent, per neuroid), ``noise_ceiling`` and ``ceiling_normalised`` (or
        ``max_layer_ceiling_normalised``). Attributes name the metric, the score kind, the
        CV scheme, the test split and the selection rule.
        """
        self._check_fitted()
        cols = np.arange(self.cv_scores_.sizes["neuroid"])
        best = self._best_index
        none = self._no_layer
        cv = self.cv_scores_.values
        alphas = self.best_alphas_.values
        held = self.test_scores_ is not None
        per_layer = self.test_scores_.values if held else cv
        metric = self.metric if held else "r2"
        kind = self.test_split if held else CV_KIND
        score_var = "best_layer_score" if held else "max_layer_score"
        pick = np.where(none, np.nan, per_layer[best, cols])
        lcoords = {k: ("layer", v.values) for k, v in self.cv_scores_.coords.items() if v.dims == ("layer",)}
        ds = results_dataset(
            {"score": (("layer", "neuroid"), per_layer),
             "cv_score": (("layer", "neuroid"), cv),
             "best_alpha": (("layer", "neuroid"), alphas),
             "best_layer": self.best_layer_.values,
             score_var: pick,
             "best_layer_alpha": np.where(none, np.nan, alphas[best, cols])},
            self._neuroid_template, self.valid_neuroids_, metric=metric, kind=kind, cv=self.cv,
            test_split=self.test_split, score_var=score_var, ceiling=ceiling,
            normalised_var="ceiling_normalised" if held else "max_layer_ceiling_normalised",
            coords=lcoords, attrs={"selection": "best_layer: " + SELECTION},
        )
        ds["score"].attrs.update(metric=metric, kind=kind)
        ds["cv_score"].attrs.update(metric="r2", kind=CV_KIND)
        ds[score_var].attrs["description"] = (
            f"held-out {self.test_split} {metric} of best_layer" if held
            else "maximum over layers of the cross-validated R² (biased upwards by the choice)")
        return ds
