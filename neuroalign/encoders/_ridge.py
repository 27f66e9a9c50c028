"""RidgeEncoder: voxelwise ridge with one cross-validated alpha per neuroid."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger, progress
from neuroalign._sklearn import (
    as_container,
    check_fitted,
    check_x,
    check_xy,
    n_features_error,
    regressor_tags,
)
from neuroalign._validation import check_option, check_positive_int, format_list
from neuroalign.encoders._backend import dtype_name, is_torch, to_numpy
from neuroalign.encoders._data import (
    Aligned,
    align,
    check_alphas,
    check_finite,
    column_checks,
    features_matrix,
    neuroid_names,
    on_disk,
    valid_neuroids,
)
from neuroalign.encoders._dual import DualWeights
from neuroalign.encoders._ridge_inputs import _neuroid_values, resolve_folds
from neuroalign.encoders._ridge_result import predict_columns
from neuroalign.encoders._scoring import SCORERS, held_out_scores
from neuroalign.encoders._solvers import predict_linear, ridge_cv
from neuroalign.exceptions import DataQualityWarning
from neuroalign.store import LazyResponses

__all__ = ["RidgeEncoder", "resolve_folds", "predict_linear"]

log = get_logger(__name__)

FORM_OPTIONS = ("auto", "primal", "dual")
DEFAULT_ALPHAS = tuple(np.logspace(-2, 6, 20).tolist())


def _batch_bar(it):
    return progress(it, desc="ridge neuroid batches", total=len(it), unit="batch")


class RidgeEncoder(RegressorMixin, BaseEstimator):
    """Voxelwise ridge regression with a cross-validated alpha for each neuroid.

    Per fold the feature matrix is eigendecomposed once (``X^T X`` in the primal form or
    ``X X^T`` in the dual form, whichever is smaller) and reused for every alpha and every
    batch of neuroids; the alpha of each neuroid minimises its mean validation error
    (relative to the neuroid's variance; equal errors go to the largest alpha, as in
    himalaya). Nothing depends on the units of X or Y: means and scales are taken out in
    float64 before the work in ``dtype``.

    Parameters
    ----------
    alphas : array-like of float
        Positive regularisation strengths to try, relative to the feature scale (see
        ``relative_alphas``).
    cv : int, "loo", scikit-learn splitter or list of (train, test) index pairs
        Integer: that many stimulus-grouped folds (:func:`neuroalign.store.cv_folds`).
        ``"loo"``: closed-form leave-one-out as scikit-learn's ``RidgeCV`` (needs one row
        per stimulus). A group-aware splitter (``GroupKFold``, ``StimulusKFold``, ...) gets
        the stimulus ids as ``groups``; a plain splitter (``KFold``, ``ShuffleSplit``,
        ...) is applied to the unique stimuli and expanded to their rows. Folds that put a
        stimulus on both sides raise :class:`~neuroalign.exceptions.SplitLeakageError`.
    fit_intercept : bool
        Fit an unpenalised intercept per neuroid.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``. On the CPU the fit runs on numpy and
        needs no torch; on a GPU it runs with torch. ``"auto"`` picks a GPU when there is
        one (without importing torch when the machine has no GPU driver).
    form : {"auto", "primal", "dual"}
        Which Gram matrix to decompose; ``"auto"`` picks the smaller one. Same answer
        (directions of either Gram matrix below its numerical rank are left out of both).
        The dual form keeps a reference to the training features, not a copy, to form
        ``coef_`` and predictions; features changed in place after the fit (values or the
        order of rows) raise :class:`~neuroalign.exceptions.DataFormatError` at their next
        use: refit, or fit on a copy.
    n_targets_batch : int
        Neuroids processed at once (bounds memory).
    metric : {"pearson", "r2"}
        What :meth:`score` returns per neuroid. It does not change ``cv_scores_`` (always
        the cross-validated R²).
    dtype : {"float32", "float64"}
        Working precision.
    relative_alphas : bool
        True (default): the penalty applied is ``alpha * alpha_scale_``, where
        ``alpha_scale_`` is the mean variance of the centred features of the data given
        to :meth:`fit` (``trace(Xc^T Xc) / (n p)``): alphas, and so the chosen alphas, do
        not depend on the units of X, and for z-scored features (mean 0, variance 1,
        ``ddof=0``) they are exactly the absolute alphas of himalaya or scikit-learn.
        False: absolute penalties on the data as given, to match another library run on
        unstandardised features.

    Attributes
    ----------
    coef_ : ndarray, shape (n_features, n_neuroids)
        After a fit in the dual form (``form_ == "dual"``) the encoder keeps dual
        coefficients (n_samples x n_neuroids) and a reference to the training features,
        as a kernel ridge does; ``coef_`` is formed from them on first access (and kept),
        and :meth:`predict` goes through the kernel without it.
    intercept_ : ndarray, shape (n_neuroids,)
    best_alphas_ : ndarray, shape (n_neuroids,)
        Chosen alpha of each neuroid, a value of ``alphas`` (relative to the feature scale
        unless ``relative_alphas=False``: the penalty applied is
        ``best_alphas_ * alpha_scale_``). NaN for excluded neuroids.
    alpha_scale_ : float
        Factor from ``alphas`` to the penalty applied (1.0 with ``relative_alphas=False``).
    cv_scores_ : ndarray, shape (n_neuroids,)
        Cross-validated R²: mean over folds of the validation R² at the chosen alpha, each
        fold's R² taken about that validation fold's own mean (folds with constant
        responses are left out of the mean); for ``cv="loo"``, ``1 - PRESS / SST``. NaN for
        excluded neuroids.
    valid_neuroids_ : ndarray of bool
        False for constant or non-finite neuroids, which were excluded.
    n_features_in_ : int

    Examples
    --------
    Plain arrays (one row per stimulus) work like scikit-learn's; stores and feature
    Datasets are joined on ``stimulus_id``.

    >>> import numpy as np
    >>> from neuroalign.encoders import RidgeEncoder
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((60, 5))
    >>> Y = X @ rng.standard_normal((5, 4)) + 0.1 * rng.standard_normal((60, 4))
    >>> encoder = RidgeEncoder(cv=5).fit(X, Y)
    >>> encoder.coef_.shape, bool((encoder.cv_scores_ > 0.9).all())
    ((5, 4), True)
    >>> np.asarray(encoder.predict(X[:2])).shape
    (2, 4)
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
    ) -> None:
        self.alphas = alphas
        self.cv = cv
        self.fit_intercept = fit_intercept
        self.device = device
        self.form = form
        self.n_targets_batch = n_targets_batch
        self.metric = metric
        self.dtype = dtype
        self.relative_alphas = relative_alphas

    # -- helpers -----------------------------------------------------------------------
    def _validate(self) -> tuple[np.ndarray, str, np.dtype]:
        name = type(self).__name__
        alphas = check_alphas(self.alphas, func=name)
        check_option(self.form, FORM_OPTIONS, name="form", func=name)
        check_option(self.metric, tuple(SCORERS), name="metric", func=name)
        check_option(self.dtype, ("float32", "float64"), name="dtype", func=name)
        check_positive_int(self.n_targets_batch, name="n_targets_batch", func=name)
        check_option(self.relative_alphas, (True, False), name="relative_alphas", func=name)
        check_option(self.fit_intercept, (True, False), name="fit_intercept", func=name)
        return alphas, resolve_device(self.device), np.dtype(self.dtype)

    def __sklearn_tags__(self):
        return regressor_tags(super().__sklearn_tags__())

    def _array(self, arr: np.ndarray, device: str, dtype):
        """Data for the ridge core in ``dtype`` (numpy dtype, torch dtype or name): a numpy
        array on CPU (solved with numpy, torch is not imported), a torch tensor on a GPU."""
        np_dtype = np.dtype(dtype_name(dtype))
        out = np.ascontiguousarray(arr, dtype=np_dtype)
        if device == "cpu":
            return out
        from neuroalign._config import require_torch

        return require_torch(f"device={device!r}").from_numpy(out).to(device)

    def _input_array(self, arr: np.ndarray, device: str, dtype):
        """Data as given when it is float64 (centred and scaled in float64 by the solver
        before the cast to ``dtype``), else in ``dtype``; responses left on disk stay there
        (the solver reads them a batch at a time)."""
        if isinstance(arr, LazyResponses):
            return arr
        if np.asarray(arr).dtype == np.float64:
            return self._array(arr, device, np.float64)
        return self._array(arr, device, dtype)

    def _check_fitted(self) -> None:
        check_fitted(self, "intercept_")

    @property
    def coef_(self) -> np.ndarray:
        """Weights, shape (n_features, n_neuroids). After a fit in the dual form they are
        formed from the dual coefficients on first access (a block of features at a time,
        in ``dtype``) and kept; predictions never need them."""
        coef = self.__dict__.get("_coef")
        if coef is None:
            dual = self.__dict__.get("_dual")
            if dual is None:
                raise AttributeError(f"'{type(self).__name__}' object has no attribute 'coef_'")
            coef = self.__dict__["_coef"] = dual.coef()
        return coef

    @coef_.setter
    def coef_(self, value) -> None:
        self.__dict__["_coef"] = value
        self.__dict__.pop("_dual", None)

    # -- API -----------------------------------------------------------------------------
    def fit(self, X, y, *, client=None, result_path=None, batch_size: int | None = None,
            cluster=None, cluster_options: dict | None = None):
        """Fit one ridge per neuroid, choosing each neuroid's alpha by cross-validation.

        Parameters
        ----------
        X : ndarray, torch.Tensor, DataArray or features Dataset
            Features, shape (n_samples, n_features), or a features object with a
            ``stimulus_id`` coordinate (joined to ``y`` by id, in any row order; it may
            describe more stimuli than ``y`` holds). Must be finite.
        y : ndarray, torch.Tensor, DataArray or store Dataset
            Responses, shape (n_samples, n_neuroids) (or (n_samples,) for one target); a
            store's ``responses``. Neuroids with NaN, inf or constant values are excluded
            (``DataQualityWarning``); a 1-d ``y`` must be finite.
        client : dask.distributed.Client, optional
            Run the neuroid batches on this client's workers.
        result_path : path-like, optional
            Folder of the cached cells (``result_path/cells/``): each batch of neuroids is a
            cell, written as it completes; a rerun fits only the missing or damaged ones.
            Default with ``cluster``/``client``: a temporary folder, removed once the fit
            succeeds. Slurm/PBS and scheduler addresses need it, on a folder the workers
            share (they write the cells that this process reads).
        batch_size : int, optional
            Neuroids per cell (default: ``n_targets_batch``).
        cluster : None, "none", "local", "slurm", "pbs", scheduler address, Client or dict
            Where the cells run (:func:`neuroalign._scaleout.get_client`; Slurm/PBS options
            in ``cluster_options``; a dict as a recipe's ``[cluster]`` table, which may also
            carry ``result_path`` and ``batch_size``). Same results as the single-process
            fit whatever the workers and the batch size.
        cluster_options : dict, optional
            Options of the cluster: ``n_workers``, ``processes`` (local); dask-jobqueue's
            ``cores``, ``memory``, ``walltime``, ``queue``, ``account``, ``job_extra``,
            ``jobs`` (Slurm/PBS).

        Returns
        -------
        RidgeEncoder
            ``self``, fitted.
        """
        name = type(self).__name__
        alphas, device, dtype = self._validate()
        X, Y, self._y_1d = check_xy(X, y, func=f"{name}.fit")
        cells = client is not None or cluster is not None or result_path is not None
        # a store's responses on disk stay there: each batch of neuroids (or each cell)
        # is read when it is fitted, so stores larger than memory fit
        data = align(X, Y, func=f"{name}.fit", lazy=cells or on_disk(Y))
        self._fit_meta(data)
        folds = resolve_folds(self.cv, data.X.shape[0], data.stimulus_id, func=name)
        ok = valid_neuroids(data.Y, func=f"{name}.fit",
                            names=lambda: neuroid_names(data.neuroid_coords, data.Y.shape[1]))
        res = self._fit_arrays(data.X, data.Y[:, ok], folds, alphas, device, dtype,
                               scale={"client": client, "result_path": result_path,
                                      "batch_size": batch_size, "cluster": cluster,
                                      "cluster_options": cluster_options})
        self._set_results(res, data, ok, alphas)
        return self

    def _fit_meta(self, data: Aligned) -> None:
        self.n_features_in_ = data.X.shape[1]
        self._neuroid_template = data.neuroid_coords
        # for the results: the feature space's name and model, the split of the rows fitted
        self._space = (data.layer, data.model, data.split)

    def _fit_arrays(self, X, Y, folds, alphas, device, dtype,
                    scale: dict | None = None) -> dict[str, np.ndarray]:
        """Fit on arrays (valid neuroids only) -> dict of numpy results; in cached cells of
        neuroids when ``scale`` (the scale-out arguments of ``fit``) asks for them."""
        from neuroalign._scaleout import ScaleOut

        if scale and ScaleOut(**{k: scale.get(k) for k in ("cluster", "client", "result_path")}).active:
            from neuroalign.encoders._scaleout import distributed_ridge

            return distributed_ridge(self, X, Y, folds, alphas, **scale)
        form = None if self.form == "auto" else self.form
        Xt = self._input_array(X, device, dtype)
        Yt = self._input_array(Y, device, dtype)
        cvres = ridge_cv(Xt, Yt, alphas, folds, fit_intercept=self.fit_intercept, form=form,
                         n_targets_batch=self.n_targets_batch, progress=_batch_bar, refit=True,
                         relative_alphas=self.relative_alphas, dtype=dtype)
        log.info("ridge fit: %d samples, %d features, %d neuroids, %s form", X.shape[0],
                 X.shape[1], Y.shape[1], cvres.form)
        # the dual form keeps its dual coefficients (coef_ is formed when asked)
        weights = {"dual": cvres.dual} if cvres.dual is not None and device == "cpu" else {
            "coef": to_numpy(cvres.coef)}
        return {
            **weights,
            "intercept": to_numpy(cvres.intercept),
            "best_alphas": cvres.best_alphas,
            "cv_scores": cvres.cv_scores,
            "form": cvres.form,
            "alpha_scale": cvres.alpha_scale,
            "x_offset": cvres.x_offset,
            "y_offset": cvres.y_offset,
        }

    def _set_results(self, res, data: Aligned, ok: np.ndarray, alphas: np.ndarray) -> None:
        n_neuroids = data.Y.shape[1]
        np_dtype = np.float32 if self.dtype == "float32" else np.float64
        self.__dict__.pop("_coef", None)
        self.__dict__.pop("_dual", None)
        if res.get("dual") is not None:  # coef_ = (X - x_offset)^T dual, formed when asked
            fitted = res["dual"]
            dual = np.zeros((fitted.dual.shape[0], n_neuroids), dtype=np_dtype)
            dual[:, ok] = to_numpy(fitted.dual)
            self._dual = DualWeights(to_numpy(fitted.X), to_numpy(fitted.x_offset), dual,
                                     fitted.col_sums, fitted.feature_var)
            if fitted.col_sums is None or is_torch(fitted.col_sums):  # summed by numpy
                self._dual.col_sums = self._dual.fingerprint()
        else:
            self.coef_ = np.zeros((data.X.shape[1], n_neuroids), dtype=np_dtype)
            self.coef_[:, ok] = res["coef"]
        self.intercept_ = np.zeros(n_neuroids, dtype=np_dtype)
        self.intercept_[ok] = res["intercept"]
        const = ~ok & column_checks(data.Y)[0]
        if const.any():
            self.intercept_[const] = data.Y[0, const]
        self.best_alphas_ = np.full(n_neuroids, np.nan)
        self.best_alphas_[ok] = res["best_alphas"]
        self.cv_scores_ = np.full(n_neuroids, np.nan)
        self.cv_scores_[ok] = res["cv_scores"]
        self.valid_neuroids_ = ok
        self.form_ = res.get("form")
        self.alpha_scale_ = float(res.get("alpha_scale", 1.0))
        # float64 offsets: predictions as (X - x_offset) @ coef + y_offset stay exact in
        # float32 when the features carry a large mean
        x_off = res.get("x_offset")
        self._x_offset = None if x_off is None else np.asarray(x_off, dtype=np.float64)
        self._y_offset = self.intercept_.astype(np.float64)
        if res.get("y_offset") is not None:
            self._y_offset[ok] = res["y_offset"]
        undefined = ok & ~np.isfinite(self.cv_scores_)
        if undefined.any():
            warnings.warn(
                f"{type(self).__name__}.fit: the cross-validated R² is undefined (NaN) for "
                f"{int(undefined.sum())} neuroids, e.g. "
                f"{format_list(neuroid_names(data.neuroid_coords, n_neuroids)[undefined], limit=5)}: "
                "every validation fold holds constant responses (single-row folds such as "
                "LeaveOneOut?). Use cv='loo' for leave-one-out R², or larger folds.",
                DataQualityWarning, stacklevel=3,
            )

    def _design(self, X) -> tuple[np.ndarray, xr.DataArray | None]:
        if isinstance(X, xr.Dataset | xr.DataArray):
            feats = features_matrix(X)
            return np.asarray(feats.values), feats
        from neuroalign.encoders._data import as_matrix

        return as_matrix(check_x(X, func=f"{type(self).__name__}.predict"), name="X"), None

    def _check_n_features(self, Xm: np.ndarray) -> None:
        if Xm.shape[1] != self.n_features_in_:
            raise n_features_error(self, Xm.shape[1], self.n_features_in_)

    def _predict_blocks(self, Xm: np.ndarray):
        """The predictions for ``Xm`` as :func:`held_out_scores` takes them: a block of
        neuroids at a time from the weights, all at once through the kernel."""
        dual = self.__dict__.get("_dual")
        if dual is not None and self.__dict__.get("_coef") is None:
            return dual.predict(Xm, self._y_offset)  # through the kernel
        return predict_columns(Xm, self.coef_, self.intercept_, self._x_offset, self._y_offset)

    def _predict_matrix(self, Xm: np.ndarray) -> np.ndarray:
        pred = self._predict_blocks(Xm)
        return pred(0, self.coef_.shape[1]) if callable(pred) else pred

    def predict(self, X):
        """Predicted responses, in the container of ``X``.

        Parameters
        ----------
        X : array-like (n_samples, n_features) or xarray features
            Features of the stimuli to predict (a features Dataset with one layer, or a
            DataArray on ``stimulus``).

        Returns
        -------
        ndarray (n_samples, n_neuroids) for an ndarray (``(n_samples,)`` when the encoder
        was fitted on a 1-d ``y``); a torch tensor (on the device of ``X``) for a tensor; a
        DataArray with dims ('stimulus', 'neuroid') when ``X`` is an xarray features object
        (stimulus and neuroid coordinates carried).
        """
        self._check_fitted()
        Xm, feats = self._design(X)
        self._check_n_features(Xm)
        check_finite(Xm, name="X", func=f"{type(self).__name__}.predict",
                     row_labels=None if feats is None else feats["stimulus_id"].values)
        pred = self._predict_matrix(Xm)
        if feats is None:
            return as_container(pred[:, 0] if getattr(self, "_y_1d", False) else pred, X)
        coords = {k: v for k, v in feats.coords.items() if v.dims == ("stimulus",)}
        out = xr.DataArray(pred, dims=("stimulus", "neuroid"), coords=coords, name="prediction")
        if self._neuroid_template is not None:
            out = out.assign_coords({k: v for k, v in self._neuroid_template.coords.items()
                                     if v.dims == ("neuroid",)})
        return out

    def score(self, X, y, sample_weight=None):
        """Score of each neuroid on (X, y) (``metric``: Pearson r or R²).

        For xarray inputs X and y are joined on ``stimulus_id`` and a DataArray on
        ``neuroid`` is returned; otherwise an ndarray (n_neuroids,), or a float for a 1-d
        ``y``. Neuroids whose test responses hold NaN or inf or are constant, and neuroids
        excluded at fit, score NaN (with a :class:`~neuroalign.exceptions.DataQualityWarning`
        naming them).

        Parameters
        ----------
        X : array-like or xarray features
            Features of held-out stimuli.
        y : array-like (n_samples, n_neuroids) or store
            Their responses, joined row by row on ``stimulus_id`` (one row per presentation
            for a trial-level store: average its repetitions first to score stimuli).
        sample_weight : None
            Not supported (scikit-learn's signature); must be None.

        Returns
        -------
        xr.DataArray, ndarray or float
            One score per neuroid.
        """
        self._check_fitted()
        name = type(self).__name__
        if sample_weight is not None:
            raise ValueError(f"{name}.score(): sample_weight is not supported; expected None.")
        X, Y, y_1d = check_xy(X, y, func=f"{name}.score", min_samples=1, y_finite_1d=False)
        data = align(X, Y, func=f"{name}.score")
        self._check_n_features(data.X)
        s = held_out_scores(data.Y, self._predict_blocks(data.X), self.valid_neuroids_,
                            self.metric, data.neuroid_coords, func=f"{name}.score",
                            fit_coords=self._neuroid_template)
        if data.neuroid_coords is None:
            return float(s[0]) if y_1d else s
        return data.neuroid_coords.copy(data=s).rename("score")

    def to_dataset(self, ceiling=None, *, test_scores=None, test_split: str = "test") -> xr.Dataset:
        """The fit's results, in the schema of :func:`neuroalign.store.check_results`: one
        layer (the feature space), excluded neuroids left out.

        Parameters
        ----------
        ceiling : array-like, optional
            Noise ceiling in percent per neuroid: adds ``noise_ceiling`` and
            ``ceiling_normalised``.
        test_scores : array-like or DataArray, optional
            Held-out scores of this encoder (:meth:`score` on ``test_split``, ``metric``).
            With them ``score`` is the held-out score (``score_kind="test"``) and
            ``cv_score`` the cross-validated R²; without, ``score`` is the cross-validated R²
            within the fitting data (``cv_scores_``, ``score_kind="cv"``).
        test_split : str
            The split ``test_scores`` were computed on.

        Returns
        -------
        xr.Dataset
            ``score``, ``alpha`` (``best_alphas_``; relative to the feature scale, see
            ``alpha_scale`` in the attributes) on ``(layer, neuroid)``; ``best_layer``,
            ``best_score``, ``best_alpha`` on ``neuroid``; attributes ``metric``,
            ``score_kind``, ``split``, ``cv``, ``encoder``, ``params`` ...
        """
        from neuroalign.encoders._results import build_results, cv_scheme, params_json

        self._check_fitted()
        layer, model, fitted = getattr(self, "_space", ("features", "", "all"))
        cv = self.cv_scores_[None]
        kwargs = dict(metric="r2", score_kind="cv", split=fitted, cv_score=None)
        score = cv
        if test_scores is not None:
            held = _neuroid_values(test_scores, self._neuroid_template, len(self.valid_neuroids_),
                                   func=f"{type(self).__name__}.to_dataset")
            score = np.where(self.valid_neuroids_, held, np.nan)[None]
            kwargs = dict(metric=self.metric, score_kind="test", split=str(test_split), cv_score=cv)
        return build_results(
            score, layers=[layer], models=[model], template=self._neuroid_template,
            valid=self.valid_neuroids_, alpha=self.best_alphas_[None], ceiling=ceiling,
            cv=cv_scheme(self.cv), encoder=type(self).__name__, params=params_json(self),
            attrs={"alpha_scale": self.alpha_scale_, "relative_alphas": int(self.relative_alphas)},
            **kwargs,
        )
