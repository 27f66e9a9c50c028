"""LayerSweep: fit every layer of one or more models against the same responses."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger, progress
from neuroalign._preflight import check_sweep
from neuroalign._sklearn import check_fitted, check_xy, n_features_error
from neuroalign._validation import check_option, format_list
from neuroalign.encoders._backend import to_numpy
from neuroalign.encoders._data import (
    align,
    check_finite,
    on_disk,
    valid_neuroids,
)
from neuroalign.encoders._results import (
    CV_KIND,
    TEST_KIND,
    build_results,
    cv_scheme,
    params_json,
)
from neuroalign.encoders._ridge import DEFAULT_ALPHAS, RidgeEncoder, predict_linear, resolve_folds
from neuroalign.encoders._ridge_result import predict_columns
from neuroalign.encoders._scaleout import SweepCells
from neuroalign.encoders._scoring import held_out_scores, nan_argmax
from neuroalign.encoders._solvers import ridge_cv
from neuroalign.encoders._sweep_layers import layer_rows, layer_spaces, layer_table
from neuroalign.exceptions import DataQualityWarning
from neuroalign.store import SPLITS, LazyResponses, select_split

__all__ = ["LayerSweep", "layer_table"]

log = get_logger(__name__)

#: The name of the one layer of a sweep fitted on a plain array.
ARRAY_LAYER = "X"

SELECTION = "argmax over layers of the cross-validated R² within the fitting (training) data"


class LayerSweep(RidgeEncoder):
    """Ridge encoders for every layer of one or more models, against the same responses.

    The folds are computed once for all layers and the responses are moved to the device
    once; per layer and fold, one eigendecomposition serves all neuroids and all alphas.

    Each neuroid's best layer (and each layer's alpha) is chosen by cross-validation
    within the fitting data: the layer with the highest cross-validated R²
    (``cv_scores_``). With ``test_split`` the held-out split plays no part in any choice;
    it only scores the chosen models, so the best layer's test score is an unbiased
    estimate. Without it, the best layer's score is the maximum over layers of noisy
    estimates, biased upwards, and its results say so (``best_score.attrs["estimate"]``).

    NaN rule: a layer whose score is NaN never wins; a neuroid whose every layer is NaN
    (an excluded NaN/constant neuroid) gets the empty best layer ``""`` and NaN scores.

    Parameters
    ----------
    alphas, cv, fit_intercept, device, form, n_targets_batch, metric, dtype, relative_alphas
        As :class:`RidgeEncoder`. ``metric`` is what held-out scores (``test_split``,
        :meth:`score`) are; the cross-validated scores are always R².
    test_split : str or None
        With a store as ``Y``: fit on the other presentations and score (``metric``) on the
        repetition-averaged presentations of this split (e.g. ``"test"``).
    keep_weights : {"all", "best"}
        ``"all"``: every layer's weights for every neuroid (:meth:`predict` with any
        ``layer``). ``"best"``: only each neuroid's best layer's weights, dropped from the
        others as the layers are fitted, so the weights kept never exceed one layer's (a
        whole-brain sweep of 12 layers keeps 1.25 GiB instead of 15 GiB); :meth:`predict`
        then takes ``layer=None`` only. Scores, alphas and best layers are the same.

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
        Weights of the valid neuroids (``valid_neuroids_``); with ``keep_weights="best"``,
        of those whose best layer it is (their positions among the valid neuroids under
        ``"columns"``).

    Examples
    --------
    Two voxels read layer ``early``, two read layer ``late``:

    >>> import numpy as np
    >>> import xarray as xr
    >>> from neuroalign.encoders import LayerSweep
    >>> from neuroalign.store import from_arrays
    >>> rng = np.random.default_rng(0)
    >>> ids = [f"s{i:02d}" for i in range(60)]
    >>> early, late = rng.standard_normal((60, 5)), rng.standard_normal((60, 5))
    >>> features = xr.Dataset({"early": (("stimulus", "u1"), early), "late": (("stimulus", "u2"), late)},
    ...                       coords={"stimulus_id": ("stimulus", ids)})
    >>> Y = np.hstack([early @ rng.standard_normal((5, 2)), late @ rng.standard_normal((5, 2))])
    >>> store = from_arrays(Y + 0.1 * rng.standard_normal(Y.shape), ids)
    >>> sweep = LayerSweep(cv=5).fit(features, store)
    >>> sweep.layers_, sweep.best_layer_.values.tolist()
    (['early', 'late'], ['early', 'early', 'late', 'late'])
    >>> sweep.cv_scores_.dims
    ('layer', 'neuroid')
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
        relative_alphas: bool = True,
        test_split: str | None = None,
        keep_weights: str = "all",
    ) -> None:
        super().__init__(alphas=alphas, cv=cv, fit_intercept=fit_intercept, device=device,
                         form=form, n_targets_batch=n_targets_batch, metric=metric, dtype=dtype,
                         relative_alphas=relative_alphas)
        self.test_split = test_split
        self.keep_weights = keep_weights

    # -- fitting -------------------------------------------------------------------------
    def _split(self, Y):
        """-> (training responses, repetition-averaged test responses or None).

        The splits are taken with :func:`neuroalign.store.select_split`, which checks the
        store first: a stimulus with presentations in both splits raises
        :class:`~neuroalign.exceptions.SplitLeakageError`."""
        if self.test_split is None:
            return Y, None
        if not isinstance(Y, xr.Dataset) or "split" not in Y.coords:
            raise ValueError(
                f"Invalid value for 'test_split' in LayerSweep: {self.test_split!r} needs a "
                "store with a 'split' coordinate as y."
            )
        check_option(self.test_split, SPLITS, name="test_split", func="LayerSweep")
        splits = set(np.asarray(Y["split"].values).tolist())
        if self.test_split not in splits:
            raise ValueError(
                f"Invalid value for 'test_split' in LayerSweep: {self.test_split!r}; the "
                f"store's splits are {sorted(splits)!r}."
            )
        if splits == {self.test_split}:
            raise ValueError(
                f"Invalid value for 'test_split' in LayerSweep: {self.test_split!r} holds every "
                "presentation; expected other presentations to fit on."
            )
        test = select_split(Y, self.test_split)
        train = select_split(Y, next(s for s in SPLITS if s != self.test_split))
        if "repetition" in test.coords:
            test = test.na.average_repetitions()
        return train, test.load()  # scored for every layer: read from disk once

    def fit(self, X, y, *, cluster=None, cluster_options=None, result_path=None,
            batch_size=None, client=None, **_):
        """Fit every layer of ``X`` against ``y``; see the class docstring.

        Parameters
        ----------
        X : xr.Dataset, dict or array-like
            One variable (entry) per layer, on ``stimulus`` with ``stimulus_id`` (may cover
            more stimuli than ``y``); a dict {model: features Dataset}; or one array (a
            single layer, named ``"X"``).
        y : xr.Dataset, xr.DataArray or ndarray
            The store (joined on ``stimulus_id``); with ``test_split``, that split is held
            out of every choice and only scored.
        cluster, cluster_options, result_path, batch_size, client
            As in :meth:`RidgeEncoder.fit`: cells of neuroids per layer, cached under
            ``result_path``; a rerun fits only the missing cells. Same results as the
            single-process sweep.
        **_
            Ignored (scikit-learn's ``fit_params``).

        Returns
        -------
        LayerSweep
            ``self``, fitted.
        """
        alphas, device, dtype = self._validate()
        check_option(self.keep_weights, ("all", "best"), name="keep_weights", func="LayerSweep")
        best_only = self.keep_weights == "best"
        if not isinstance(X, xr.Dataset | dict) and not isinstance(y, xr.Dataset | xr.DataArray):
            X, y, self._y_1d = check_xy(X, y, func="LayerSweep.fit")
            X = {ARRAY_LAYER: X}
        else:
            check_xy(X, y, func="LayerSweep.fit")
            self._y_1d = False
        layers = layer_table(X)
        if not layers:
            raise ValueError("LayerSweep.fit(): 'X' holds no layers; expected at least one.")
        train_Y, test = self._split(y)
        names = list(layers)
        sub = test is not None
        # a store's responses on disk stay there: each batch of neuroids (or each cell) is
        # read when it is fitted
        lazy = (client is not None or cluster is not None or result_path is not None
                or on_disk(train_Y))
        first = align(layers[names[0]], train_Y, func="LayerSweep.fit", lazy=lazy)
        self._fit_meta(first)
        self._spaces = layer_spaces(X)
        folds = resolve_folds(self.cv, first.X.shape[0], first.stimulus_id, func="LayerSweep")
        ok = valid_neuroids(first.Y, func="LayerSweep.fit")
        Yt = self._input_array(first.Y[:, ok], device, dtype)
        check_sweep(layers, first.X.shape[0], int(ok.sum()), n_alphas=len(alphas),  # preflight
                    n_folds=1 if isinstance(folds, str) else len(folds), dtype=dtype,
                    keep=self.keep_weights, responses=not isinstance(Yt, LazyResponses),
                    batch=batch_size if isinstance(batch_size, int) and batch_size > 0
                    else self.n_targets_batch)
        n_neuroids = first.Y.shape[1]
        cv = np.full((len(names), n_neuroids), np.nan)
        held = np.full((len(names), n_neuroids), np.nan) if sub else None
        best_alphas = np.full((len(names), n_neuroids), np.nan)
        self.encoders_ = {}
        self.alpha_scales_ = {}
        form = None if self.form == "auto" else self.form
        # keep_weights="best": the layer owning each valid neuroid so far (nan_argmax's rule:
        # a NaN never wins, ties go to the first layer), its score
        owner = np.full(int(ok.sum()), -1)
        top = np.full(int(ok.sum()), -np.inf)
        cells = SweepCells.maybe(self, client=client, cluster=cluster, result_path=result_path,
                                 cluster_options=cluster_options, batch_size=batch_size)
        for li, name in enumerate(progress(names, desc="layers", unit="layer")):
            data = first if li == 0 else align(layers[name], train_Y, func="LayerSweep.fit",
                                               lazy=lazy)
            Xt = self._input_array(data.X, device, dtype)
            cvres = cells.fit(Xt, Yt, folds, alphas, like=Xt, layer=name) if cells else ridge_cv(
                Xt, Yt, alphas, folds, fit_intercept=self.fit_intercept, form=form,
                n_targets_batch=self.n_targets_batch, refit=True,
                relative_alphas=self.relative_alphas, dtype=dtype)
            best_alphas[li, ok] = cvres.best_alphas
            cv[li, ok] = cvres.cv_scores
            enc = {"coef": to_numpy(cvres.coef), "intercept": to_numpy(cvres.intercept),
                   "x_offset": np.asarray(cvres.x_offset, dtype=np.float64),
                   "y_offset": np.asarray(cvres.y_offset, dtype=np.float64)}
            self.encoders_[name] = enc
            self.alpha_scales_[name] = float(cvres.alpha_scale)
            del cvres  # (with keep_weights="best", the full weights go once cut below)
            if sub:
                tdata = align(layers[name], test, func="LayerSweep.fit")
                pred = predict_columns(tdata.X, enc["coef"], enc["intercept"], enc["x_offset"],
                                       enc["y_offset"], fitted=ok)  # a block of neuroids at a time
                with warnings.catch_warnings():
                    if li:  # the same neuroids for every layer: warn once
                        warnings.simplefilter("ignore", DataQualityWarning)
                    held[li] = held_out_scores(
                        tdata.Y, pred, ok, self.metric, tdata.neuroid_coords,
                        func=f"LayerSweep.fit (held-out {self.test_split!r} split)")
            if best_only:
                score = cv[li, ok]
                self._keep_best(li, names, np.where(np.isnan(score), -np.inf, score), owner, top)
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
        if best_only and not np.array_equal(owner, np.where(none, -1, best)[ok]):
            raise RuntimeError("LayerSweep.fit: the weights kept (keep_weights='best') are not "
                               "those of each neuroid's best layer; please report this.")
        labels = np.where(none, "", np.asarray(names, dtype=object)[best]).astype(str)
        self.best_layer_ = xr.DataArray(labels, dims="neuroid", coords=coords, name="best_layer")
        self._best_index = best
        self._no_layer = none
        return self

    def _keep_best(self, li: int, names: list, score: np.ndarray, owner: np.ndarray,
                   top: np.ndarray) -> None:
        """keep_weights="best": layer ``li`` (its cv ``score`` per valid neuroid, NaN as
        -inf) takes the neuroids it beats; its weights are cut to them and theirs dropped
        from the layers that held them."""
        won = score > top
        for lj in np.unique(owner[won & (owner >= 0)]):
            enc = self.encoders_[names[lj]]
            stay = ~won[enc["columns"]]
            for key in ("coef", "intercept", "y_offset"):
                enc[key] = np.ascontiguousarray(enc[key][..., stay])
            enc["columns"] = enc["columns"][stay]
        owner[won], top[won] = li, score[won]
        enc = self.encoders_[names[li]]
        for key in ("coef", "intercept", "y_offset"):
            enc[key] = np.ascontiguousarray(enc[key][..., won])
        enc["columns"] = np.flatnonzero(won)

    def _check_fitted(self) -> None:
        check_fitted(self, "encoders_", call="fit(X, y)")

    # -- prediction and scoring ------------------------------------------------------------
    def _check_layer(self, layer, func: str) -> None:
        if layer not in self.encoders_:
            raise KeyError(
                f"Invalid value for 'layer' in LayerSweep.{func}(): {layer!r}. Expected one of "
                f"{self.layers_!r}."
            )

    #: The feature matrices of the needed layers, rows in one order (:func:`layer_rows`).
    _layer_rows = staticmethod(layer_rows)


    def _predict_matrix(self, mats: dict, layer: str | None) -> np.ndarray:
        return self._predict_blocks(mats, layer)(0, len(self.valid_neuroids_))

    def _predict_blocks(self, mats: dict, layer: str | None):
        """The predictions of neuroids ``start:stop`` from ``mats`` (each neuroid by its best
        layer, or all by ``layer``), as a function ``(start, stop)`` (as
        :func:`held_out_scores` takes them); the inputs are checked first."""
        cols_ok = np.flatnonzero(self.valid_neuroids_)
        # per layer: the positions among the fitted neuroids it predicts, and its weights' columns
        plan = {}
        for name, Xm in mats.items():
            enc = self.encoders_[name]
            if Xm.shape[1] != enc["coef"].shape[0]:
                raise n_features_error(self, Xm.shape[1], enc["coef"].shape[0],
                                       what=f"X (layer {name!r})" if name != ARRAY_LAYER else "X")
            check_finite(Xm, name="X" if name == ARRAY_LAYER else f"X (layer {name!r})",
                         func="LayerSweep.predict")
            if "columns" in enc:  # keep_weights="best": the neuroids whose best layer it is
                if layer is not None:
                    raise ValueError(
                        f"LayerSweep.predict(layer={layer!r}): this sweep kept the weights of "
                        "each neuroid's best layer only (keep_weights='best'). Expected "
                        "layer=None (each neuroid by its best layer), or refit with "
                        "keep_weights='all' to predict every neuroid from one layer.")
                plan[name] = (np.asarray(enc["columns"], dtype=int), np.arange(len(enc["columns"])))
            else:
                use = ((self.best_layer_.values == name)[cols_ok] if layer is None
                       else np.ones(len(cols_ok), bool))
                plan[name] = (np.flatnonzero(use),) * 2
        n = next(iter(mats.values())).shape[0]

        def predict(start: int, stop: int) -> np.ndarray:
            pred = np.full((n, stop - start), np.nan)
            for name, Xm in mats.items():
                enc = self.encoders_[name]
                where, cols = plan[name]
                inside = (cols_ok[where] >= start) & (cols_ok[where] < stop)
                if inside.any():
                    c = cols[inside]
                    pred[:, cols_ok[where[inside]] - start] = predict_linear(
                        Xm, enc["coef"][:, c], enc["intercept"][c], enc["x_offset"], enc["y_offset"][c])
            return pred

        return predict

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
        ndarray (n_stimuli, n_neuroids) (``(n_stimuli,)`` after a fit on a 1-d ``y``), or a
        DataArray ('stimulus', 'neuroid') for xarray features; NaN for neuroids that were
        excluded or have no best layer.
        """
        self._check_fitted()
        if layer is not None:
            self._check_layer(layer, "predict")
        needed = [layer] if layer is not None else sorted(set(self.best_layer_.values) - {""})
        mats, ids, _, _ = self._layer_rows(X, needed or self.layers_[:1], "predict")
        pred = self._predict_matrix({n: mats[n] for n in needed}, layer) if needed else \
            np.full((next(iter(mats.values())).shape[0], len(self.valid_neuroids_)), np.nan)
        if ids is None:
            return pred[:, 0] if getattr(self, "_y_1d", False) else pred
        coords = {"stimulus_id": ("stimulus", ids)}
        if self._neuroid_template is not None:
            coords.update({k: v for k, v in self._neuroid_template.coords.items() if v.dims == ("neuroid",)})
        return xr.DataArray(pred, dims=("stimulus", "neuroid"), coords=coords, name="prediction")

    def score(self, X, y, sample_weight=None, *, layer: str | None = None):
        """Held-out score (``metric``) of each neuroid's best layer (or of ``layer``).

        ``X`` holds the features of every layer (a features Dataset or a dict), or with
        ``layer`` that layer's features; xarray inputs are joined on ``stimulus_id`` (the
        features may cover more stimuli than ``y``). NaN for neuroids excluded at fit,
        without a best layer, or whose test responses are NaN, inf or constant (with a
        :class:`~neuroalign.exceptions.DataQualityWarning` naming them).

        Parameters
        ----------
        X : xr.Dataset, dict or array-like
            Features of held-out stimuli (every layer, or ``layer``'s).
        y : array-like or store
            Their responses.
        sample_weight : None
            Not supported (scikit-learn's signature); must be None.
        layer : str, optional
            Score this layer for every neuroid instead of each neuroid's best layer.

        Returns
        -------
        xr.DataArray, ndarray or float
            One score per neuroid: a DataArray on ``neuroid`` for xarray inputs (a float
            for a 1-d ``y``).
        """
        self._check_fitted()
        if sample_weight is not None:
            raise ValueError("LayerSweep.score(): sample_weight is not supported; expected None.")
        if layer is not None:
            self._check_layer(layer, "score")
        y_1d = False
        if not isinstance(X, xr.Dataset | xr.DataArray | dict):
            X, y, y_1d = check_xy(X, y, func="LayerSweep.score", min_samples=1, y_finite_1d=False)
        needed = [layer] if layer is not None else sorted(set(self.best_layer_.values) - {""})
        mats, _, Ym, tmpl = self._layer_rows(X, needed or self.layers_[:1], "score", Y=y)
        pred = self._predict_blocks({n: mats[n] for n in needed}, layer) if needed else \
            np.full((Ym.shape[0], len(self.valid_neuroids_)), np.nan)
        s = held_out_scores(Ym, pred, self.valid_neuroids_, self.metric, tmpl,
                            func="LayerSweep.score",  # a block of neuroids at a time
                            fit_coords=self._neuroid_template)
        if tmpl is None:
            return float(s[0]) if y_1d else s
        out = tmpl.copy(data=s).rename("score")
        out.attrs.update(metric=self.metric, kind="held-out")
        return out

    # -- summaries -----------------------------------------------------------------------
    def roi_best_layer(self) -> xr.DataArray:
        """Best layer of each ROI: the argmax over layers of the ROI-mean cross-validated R²
        (``cv_scores_``, within the fitting data; NaN neuroids left out).

        An ROI without any scored neuroid gets ``""`` and a :class:`DataQualityWarning`.

        Returns
        -------
        xr.DataArray
            Layer names (str) on dim ``roi`` (from the ``roi_*`` coordinates).
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
        """The sweep's results in the schema of :func:`neuroalign.store.check_results`
        (valid neuroids only), ready for :func:`neuroalign.mapping.layer_preference`.

        Per layer, dims ``('layer', 'neuroid')`` with coordinates ``layer`` (the layer's own
        name), ``model`` and ``depth``: ``score`` (held-out ``metric`` with ``test_split``,
        ``score_kind="test"``; else the cross-validated R², ``score_kind="cv"``), ``alpha``
        and, with ``test_split``, ``cv_score`` (the cross-validated R² within the training
        data, the selection criterion).

        Per neuroid: ``best_layer`` and ``best_model`` (chosen by the cross-validated R²),
        ``best_score`` (with ``test_split``: the held-out score of the chosen layer, an
        unbiased estimate; without: the maximum over layers of the cross-validated R²,
        biased upwards by the choice, as its ``estimate`` attribute says), ``best_alpha``;
        with a noise ceiling (percent, per neuroid) ``noise_ceiling`` and
        ``ceiling_normalised``.

        Parameters
        ----------
        ceiling : array-like, optional
            Noise ceiling in percent per neuroid: adds ``noise_ceiling`` and
            ``ceiling_normalised``.

        Returns
        -------
        xr.Dataset
            Checked by ``check_results``.
        """
        self._check_fitted()
        spaces = getattr(self, "_spaces", {n: ("", n) for n in self.layers_})
        models = [spaces[n][0] for n in self.layers_]
        own = [spaces[n][1] for n in self.layers_]
        held = self.test_scores_ is not None
        _, _, fitted = getattr(self, "_space", ("", "", "all"))
        if held:
            kwargs = dict(score=self.test_scores_.values, cv_score=self.cv_scores_.values,
                          metric=self.metric, score_kind=TEST_KIND, split=str(self.test_split))
        else:
            kwargs = dict(score=self.cv_scores_.values, metric="r2", score_kind=CV_KIND, split=fitted)
        return build_results(
            layers=own, models=models, template=self._neuroid_template, valid=self.valid_neuroids_,
            alpha=self.best_alphas_.values, cv=cv_scheme(self.cv), encoder=type(self).__name__,
            params=params_json(self), ceiling=ceiling, **kwargs,
        )
