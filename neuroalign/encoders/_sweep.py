"""LayerSweep: fit every layer of one or more models against the same responses."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger, progress
from neuroalign.encoders._data import align, features_matrix, valid_neuroids
from neuroalign.encoders._results import results_dataset
from neuroalign.encoders._ridge import DEFAULT_ALPHAS, RidgeEncoder, resolve_folds
from neuroalign.encoders._scoring import SCORERS
from neuroalign.encoders._solvers import ridge_cv
from neuroalign.exceptions import NotFittedError

__all__ = ["LayerSweep", "layer_table"]

log = get_logger(__name__)


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

    Parameters
    ----------
    alphas, cv, fit_intercept, device, form, n_targets_batch, metric, dtype
        As :class:`RidgeEncoder`.
    test_split : str or None
        With a store as ``Y``: fit on the other presentations and score (``metric``) on the
        repetition-averaged presentations of this split (e.g. ``"test"``). Otherwise the
        layer scores are the cross-validated R².

    Attributes
    ----------
    layers_ : list of str
    scores_ : DataArray, dims ('layer', 'neuroid')
    best_alphas_ : DataArray, dims ('layer', 'neuroid')
    best_layer_ : DataArray of str, dim 'neuroid'
    encoders_ : dict {layer: dict of coef, intercept}
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

    def fit(self, features, Y, **_):
        """Fit every layer of ``features`` against ``Y``; see the class docstring."""
        alphas, device, dtype = self._validate()
        layers = layer_table(features)
        if not layers:
            raise ValueError("LayerSweep.fit(): 'features' holds no layers; expected at least one.")
        test = None
        train_Y = Y
        if self.test_split is not None:
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
            train_Y = Y.isel({Y["split"].dims[0]: np.flatnonzero(~is_test)})
            test = Y.isel({Y["split"].dims[0]: np.flatnonzero(is_test)})
            if "repetition" in test.coords:
                test = test.na.average_repetitions()
        names = list(layers)
        sub = test is not None
        if sub:  # the exact join is checked on the whole store, then split
            for name in names:
                align(layers[name], Y)
        first = align(layers[names[0]], train_Y, allow_extra=sub)
        self._fit_meta(first)
        folds = resolve_folds(self.cv, first.X.shape[0], first.stimulus_id, func="LayerSweep")
        ok = valid_neuroids(first.Y, func="LayerSweep.fit")
        Yt = self._tensor(first.Y[:, ok], device, dtype)
        n_neuroids = first.Y.shape[1]
        scores = np.zeros((len(names), n_neuroids))
        best_alphas = np.full((len(names), n_neuroids), alphas.max())
        self.encoders_ = {}
        form = None if self.form == "auto" else self.form
        for li, name in enumerate(progress(names, desc="layers", unit="layer")):
            data = first if li == 0 else align(layers[name], train_Y, allow_extra=sub)
            Xt = self._tensor(data.X, device, dtype)
            cvres = ridge_cv(Xt, Yt, alphas, folds, fit_intercept=self.fit_intercept, form=form,
                             n_targets_batch=self.n_targets_batch, refit=True)
            best_alphas[li, ok] = cvres.best_alphas
            coef, intercept = cvres.coef.cpu().numpy(), cvres.intercept.cpu().numpy()
            self.encoders_[name] = {"coef": coef, "intercept": intercept}
            if test is None:
                scores[li, ok] = cvres.cv_scores
            else:
                tdata = align(layers[name], test, allow_extra=True)
                pred = tdata.X.astype(coef.dtype) @ coef + intercept
                scores[li, ok] = SCORERS[self.metric](tdata.Y[:, ok], pred)
            del Xt
            log.info("layer %s: median score %.3f", name, float(np.median(scores[li, ok])))
        self.layers_ = names
        self.valid_neuroids_ = ok
        tmpl = first.neuroid_coords
        coords = {} if tmpl is None else {k: v for k, v in tmpl.coords.items() if v.dims == ("neuroid",)}
        self.scores_ = xr.DataArray(scores, dims=("layer", "neuroid"),
                                    coords={"layer": names, **coords}, name="layer_score")
        self.best_alphas_ = self.scores_.copy(data=best_alphas).rename("best_alpha")
        best = np.argmax(scores, axis=0)
        self.best_layer_ = xr.DataArray(np.asarray(names, dtype=object)[best].astype(str),
                                        dims="neuroid", coords=coords, name="best_layer")
        self._best_index = best
        self.score_kind_ = "cv_r2" if test is None else f"{self.test_split}_{self.metric}"
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "scores_"):
            raise NotFittedError("This LayerSweep is not fitted yet; call fit(features, Y) first.")

    def predict(self, X, layer: str | None = None):  # noqa: D401
        """Predictions of one layer's encoder (default: each neuroid's best layer is not
        mixed; ``layer`` is required)."""
        self._check_fitted()
        if layer not in self.encoders_:
            raise KeyError(
                f"Invalid value for 'layer' in LayerSweep.predict(): {layer!r}. Expected one of "
                f"{self.layers_!r}."
            )
        enc = self.encoders_[layer]
        Xm = np.asarray(features_matrix(X).values) if isinstance(X, xr.DataArray | xr.Dataset) else np.asarray(X)
        return Xm.astype(enc["coef"].dtype) @ enc["coef"] + enc["intercept"]

    def roi_best_layer(self) -> xr.DataArray:
        """Best layer of each ROI: the argmax over layers of the ROI-mean layer score.

        Returns a DataArray of str with dim ``roi`` (from the ``roi_*`` coordinates).
        """
        self._check_fitted()
        sc = self.scores_.isel(neuroid=np.flatnonzero(self.valid_neuroids_))
        rois = sorted(str(c)[4:] for c in sc.coords if str(c).startswith("roi_"))
        best = []
        for roi in rois:
            mask = np.asarray(sc[f"roi_{roi}"].values, dtype=bool)
            means = sc.values[:, mask].mean(1) if mask.any() else np.zeros(len(self.layers_))
            best.append(self.layers_[int(np.argmax(means))])
        return xr.DataArray(np.asarray(best, dtype=str), dims="roi", coords={"roi": rois},
                            name="best_layer")

    def to_dataset(self, ceiling=None) -> xr.Dataset:
        """Per-neuroid results: ``score`` (of the best layer), ``best_layer``, ``best_alpha``,
        ``layer_score`` (layer, neuroid) and, with a ceiling, ``ceiling_normalised``."""
        self._check_fitted()
        cols = np.arange(self.scores_.sizes["neuroid"])
        metric = "r2" if self.score_kind_ == "cv_r2" else self.metric
        ds = results_dataset(
            {"score": self.scores_.values[self._best_index, cols],
             "best_alpha": self.best_alphas_.values[self._best_index, cols],
             "best_layer": self.best_layer_.values},
            self._neuroid_template, np.ones(len(cols), bool), ceiling=ceiling, metric=metric,
            attrs={"score_kind": self.score_kind_},
        )
        ds["layer_score"] = (("layer", "neuroid"), self.scores_.values)
        ds = ds.assign_coords(layer=self.layers_)
        ds.attrs["n_excluded"] = int((~self.valid_neuroids_).sum())
        return ds.isel(neuroid=np.flatnonzero(self.valid_neuroids_))
