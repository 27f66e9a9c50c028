"""RidgeEncoder: voxelwise ridge with one cross-validated alpha per neuroid."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option, check_positive_int, format_list
from neuroalign.encoders._backend import dtype_name, to_numpy
from neuroalign.encoders._data import (
    Aligned,
    align,
    check_alphas,
    check_finite,
    features_matrix,
    neuroid_names,
    valid_neuroids,
)
from neuroalign.encoders._scoring import SCORERS
from neuroalign.encoders._solvers import ridge_cv
from neuroalign.exceptions import DataQualityWarning, DimensionError, NotFittedError
from neuroalign.store import cv_folds
from neuroalign.store._folds import check_folds, stimulus_folds

__all__ = ["RidgeEncoder", "resolve_folds"]

log = get_logger(__name__)

FORM_OPTIONS = ("auto", "primal", "dual")
DEFAULT_ALPHAS = tuple(np.logspace(-2, 6, 20).tolist())


def _batch_bar(it):
    return progress(it, desc="ridge neuroid batches", total=len(it), unit="batch")


def resolve_folds(cv, n_samples: int, stimulus_id: np.ndarray | None, *, func: str):
    """``cv`` (int, ``"loo"``, a scikit-learn splitter or (train, test) pairs) -> list of
    (train, val) row indices, or ``"loo"``; no stimulus is ever on both sides of a fold.

    Integer ``cv`` uses :func:`neuroalign.store.cv_folds`, grouping the rows of a stimulus;
    splitters go through :func:`neuroalign.store._folds.stimulus_folds` (group-aware ones
    get the stimulus ids as groups, plain ones are applied to the unique stimuli), and the
    result is checked (:class:`~neuroalign.exceptions.SplitLeakageError` otherwise). Array
    inputs without stimulus ids treat each row as its own stimulus.
    """
    groups = stimulus_id if stimulus_id is not None else np.arange(n_samples).astype(str)
    if isinstance(cv, str):
        check_option(cv, ("loo",), name="cv", func=func)
        if len(np.unique(groups)) != n_samples:
            raise ValueError(
                f"Invalid value for 'cv' in {func}(): 'loo' needs one row per stimulus, got "
                f"{n_samples} rows for {len(np.unique(groups))} stimuli. Average repetitions "
                "first, or use an integer cv (stimulus-grouped folds)."
            )
        return "loo"
    if isinstance(cv, bool):
        raise ValueError(
            f"Invalid value for 'cv' in {func}(): {cv!r}. Expected an integer >= 2, 'loo', a "
            "scikit-learn splitter or a list of (train, test) index pairs."
        )
    if isinstance(cv, int | np.integer):
        check_positive_int(cv, name="cv", func=func, minimum=2)
        folds = cv_folds(groups, int(cv))
        check_folds(folds, groups, func=func, source=f"cv={int(cv)}")
        return folds
    return stimulus_folds(cv, groups, func=func)


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
        Which Gram matrix to decompose; ``"auto"`` picks the smaller one. Same answer.
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
        check_option(self._relative(), (True, False), name="relative_alphas", func=name)
        return alphas, resolve_device(self.device), np.dtype(self.dtype)

    def _relative(self) -> bool:
        # subclasses whose __init__ predates the parameter get the default
        return getattr(self, "relative_alphas", True)

    def _array(self, arr: np.ndarray, device: str, dtype):
        """Data for the ridge core in ``dtype`` (numpy dtype, torch dtype or name): a numpy
        array on CPU (solved with numpy, torch is not imported), a torch tensor on a GPU."""
        np_dtype = np.dtype(dtype_name(dtype))
        out = np.ascontiguousarray(arr, dtype=np_dtype)
        if device == "cpu":
            return out
        from neuroalign._config import require_torch

        return require_torch(f"device={device!r}").from_numpy(out).to(device)

    def _tensor(self, arr: np.ndarray, device: str, dtype):
        """The data as a torch tensor on ``device`` in ``dtype`` (for torch-based callers;
        the encoders themselves use :meth:`_array`)."""
        from neuroalign._config import require_torch

        torch = require_torch(f"{type(self).__name__} with torch tensors")
        np_dtype = np.dtype(dtype_name(dtype))
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np_dtype)).to(device)

    def _input_array(self, arr: np.ndarray, device: str, dtype):
        """Data as given when it is float64 (centred and scaled in float64 by the solver
        before the cast to ``dtype``), else in ``dtype``."""
        if np.asarray(arr).dtype == np.float64:
            return self._array(arr, device, np.float64)
        return self._array(arr, device, dtype)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, Y) before using it."
            )

    # -- API -----------------------------------------------------------------------------
    def fit(self, X, Y, *, client=None, result_path=None, batch_size: int | None = None,
            cluster=None, cluster_options: dict | None = None):
        """Fit one ridge per neuroid, choosing each neuroid's alpha by cross-validation.

        Parameters
        ----------
        X : ndarray, torch.Tensor, DataArray or features Dataset
            Features, shape (n_samples, n_features), or a features object with a
            ``stimulus_id`` coordinate (joined to ``Y`` by id, in any row order; it may
            describe more stimuli than ``Y`` holds). Must be finite.
        Y : ndarray, torch.Tensor, DataArray or store Dataset
            Responses, shape (n_samples, n_neuroids); a store's ``responses``. Neuroids
            with NaN, inf or constant values are excluded (``DataQualityWarning``).
        client : dask.distributed.Client, optional
            Split neuroids into batches across the client's workers (see ``result_path``).
        result_path : path-like, optional
            With ``client``: the zarr where each batch writes its region; a rerun completes
            only the missing batches.
        batch_size : int, optional
            With ``client``: neuroids per batch (default: ``n_targets_batch``).
        cluster : None, "local", "slurm", "pbs", scheduler address, Client or dict
            Where the neuroid batches run (:func:`neuroalign.encoders._scaleout.get_client`;
            Slurm/PBS options in ``cluster_options``). With ``cluster`` or ``result_path``
            each batch is a cached cell under ``result_path``: a rerun fits only the
            missing ones. Same results as the single-process fit.

        Returns
        -------
        self
        """
        name = type(self).__name__
        alphas, device, dtype = self._validate()
        data = align(X, Y, func=f"{name}.fit")
        self._fit_meta(data)
        folds = resolve_folds(self.cv, data.X.shape[0], data.stimulus_id, func=name)
        ok = valid_neuroids(data.Y, func=f"{name}.fit",
                            names=lambda: neuroid_names(data.neuroid_coords, data.Y.shape[1]))
        if client is not None or cluster is not None or result_path is not None:
            from neuroalign.encoders._scaleout import distributed_ridge

            res = distributed_ridge(self, data, ok, folds, alphas, client=client,
                                    result_path=result_path, batch_size=batch_size,
                                    cluster=cluster, cluster_options=cluster_options)
            self._set_results(res, data, ok, alphas)
            return self
        res = self._fit_arrays(data.X, data.Y[:, ok], folds, alphas, device, dtype)
        self._set_results(res, data, ok, alphas)
        return self

    def _fit_meta(self, data: Aligned) -> None:
        self.n_features_in_ = data.X.shape[1]
        self._neuroid_template = data.neuroid_coords

    def _fit_arrays(self, X, Y, folds, alphas, device, dtype) -> dict[str, np.ndarray]:
        """Fit on arrays (valid neuroids only) -> dict of numpy results."""
        form = None if self.form == "auto" else self.form
        Xt = self._input_array(X, device, dtype)
        Yt = self._input_array(Y, device, dtype)
        cvres = ridge_cv(Xt, Yt, alphas, folds, fit_intercept=self.fit_intercept, form=form,
                         n_targets_batch=self.n_targets_batch, progress=_batch_bar, refit=True,
                         relative_alphas=self._relative(), dtype=dtype)
        coef, intercept = cvres.coef, cvres.intercept
        log.info("ridge fit: %d samples, %d features, %d neuroids, %s form", X.shape[0],
                 X.shape[1], Y.shape[1], cvres.form)
        return {
            "coef": to_numpy(coef),
            "intercept": to_numpy(intercept),
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
        self.coef_ = np.zeros((data.X.shape[1], n_neuroids), dtype=np_dtype)
        self.coef_[:, ok] = res["coef"]
        self.intercept_ = np.zeros(n_neuroids, dtype=np_dtype)
        self.intercept_[ok] = res["intercept"]
        const = ~ok & np.isfinite(data.Y).all(0)
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

        return as_matrix(X, name="X"), None

    def _check_n_features(self, Xm: np.ndarray) -> None:
        if Xm.shape[1] != self.n_features_in_:
            raise DimensionError(
                f"X has {Xm.shape[1]} features; this {type(self).__name__} was fitted with "
                f"{self.n_features_in_}."
            )

    def _predict_matrix(self, Xm: np.ndarray) -> np.ndarray:
        if getattr(self, "_x_offset", None) is None:
            return Xm.astype(self.coef_.dtype, copy=False) @ self.coef_ + self.intercept_
        Xc = (np.asarray(Xm, dtype=np.float64) - self._x_offset).astype(self.coef_.dtype)
        return Xc @ self.coef_ + self._y_offset.astype(self.coef_.dtype)

    def predict(self, X):
        """Predicted responses.

        Returns
        -------
        ndarray (n_samples, n_neuroids), or a DataArray with dims ('stimulus', 'neuroid')
        when ``X`` is an xarray features object (stimulus and neuroid coordinates carried).
        """
        self._check_fitted()
        Xm, feats = self._design(X)
        self._check_n_features(Xm)
        check_finite(Xm, name="X", func=f"{type(self).__name__}.predict",
                     row_labels=None if feats is None else feats["stimulus_id"].values)
        pred = self._predict_matrix(Xm)
        if feats is None:
            return pred
        coords = {k: v for k, v in feats.coords.items() if v.dims == ("stimulus",)}
        out = xr.DataArray(pred, dims=("stimulus", "neuroid"), coords=coords, name="prediction")
        if self._neuroid_template is not None:
            out = out.assign_coords({k: v for k, v in self._neuroid_template.coords.items()
                                     if v.dims == ("neuroid",)})
        return out

    def score(self, X, Y, sample_weight=None):
        """Score of each neuroid on (X, Y) (``metric``: Pearson r or R²).

        For xarray inputs X and Y are joined on ``stimulus_id`` and a DataArray on
        ``neuroid`` is returned; otherwise an ndarray (n_neuroids,). Neuroids whose test
        responses hold NaN or inf or are constant, and neuroids excluded at fit, score NaN
        (with a :class:`~neuroalign.exceptions.DataQualityWarning` naming them).
        """
        self._check_fitted()
        name = type(self).__name__
        if sample_weight is not None:
            raise ValueError(f"{name}.score(): sample_weight is not supported; expected None.")
        data = align(X, Y, func=f"{name}.score")
        self._check_n_features(data.X)
        pred = self._predict_matrix(data.X)
        Ym = data.Y
        with np.errstate(invalid="ignore", over="ignore"):
            finite = np.isfinite(Ym).all(0)
            spread = np.nanmax(Ym, 0) - np.nanmin(Ym, 0) if len(Ym) else np.zeros(Ym.shape[1])
            s = SCORERS[self.metric](np.where(np.isfinite(Ym), Ym, 0.0), pred)
        constant = finite & ~(spread > 0)
        unfitted = ~self.valid_neuroids_ & finite & ~constant
        bad = ~finite | constant | unfitted
        s = np.where(bad, np.nan, s)
        if bad.any():
            names = neuroid_names(data.neuroid_coords, Ym.shape[1])
            warnings.warn(
                f"{name}.score: {int(bad.sum())} of {Ym.shape[1]} neuroids score NaN "
                f"({int((~finite).sum())} with NaN or inf test responses: "
                f"{format_list(names[~finite], limit=10) or '-'}; {int(constant.sum())} with "
                f"constant test responses: {format_list(names[constant], limit=10) or '-'}; "
                f"{int(unfitted.sum())} excluded at fit: "
                f"{format_list(names[unfitted], limit=10) or '-'}).",
                DataQualityWarning, stacklevel=2,
            )
        if data.neuroid_coords is None:
            return s
        return data.neuroid_coords.copy(data=s).rename("score")

    def to_dataset(self, ceiling=None) -> xr.Dataset:
        """Results on ``neuroid`` (excluded neuroids left out): ``score``, the
        cross-validated R² (``cv_scores_``; its attrs say ``metric="r2"``, ``kind="cv"``,
        as does ``attrs["metric"]``), ``best_alpha`` and, with a noise ceiling (percent,
        per neuroid), ``ceiling_normalised``."""
        from neuroalign.encoders._results import results_dataset

        self._check_fitted()
        ds = results_dataset(
            {"score": self.cv_scores_, "best_alpha": self.best_alphas_},
            self._neuroid_template, self.valid_neuroids_, ceiling=ceiling, metric="r2",
            attrs={"score_kind": "cv", "alpha_scale": self.alpha_scale_,
                   "relative_alphas": int(self._relative())},
        )
        ds["score"].attrs.update(metric="r2", kind="cv",
                                 long_name="cross-validated R² (mean over folds)")
        ds["best_alpha"].attrs.update(alpha_scale=self.alpha_scale_,
                                      relative=int(self._relative()))
        return ds
