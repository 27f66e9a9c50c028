"""RidgeEncoder: voxelwise ridge with one cross-validated alpha per neuroid."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option, check_positive_int
from neuroalign.encoders._data import Aligned, align, check_alphas, features_matrix, valid_neuroids
from neuroalign.encoders._scoring import SCORERS
from neuroalign.encoders._solvers import ridge_cv
from neuroalign.exceptions import DimensionError, NotFittedError
from neuroalign.store import cv_folds

__all__ = ["RidgeEncoder", "resolve_folds"]

log = get_logger(__name__)

FORM_OPTIONS = ("auto", "primal", "dual")
DEFAULT_ALPHAS = tuple(np.logspace(-2, 6, 20).tolist())


def _batch_bar(it):
    return progress(it, desc="ridge neuroid batches", total=len(it), unit="batch")


def resolve_folds(cv, n_samples: int, stimulus_id: np.ndarray | None, *, func: str):
    """``cv`` (int, ``"loo"`` or a scikit-learn splitter) -> list of (train, val) or ``"loo"``.

    Integer ``cv`` uses :func:`neuroalign.store.cv_folds`, grouping the rows of a stimulus.
    Array inputs without stimulus ids treat each row as its own stimulus.
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
    if isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        check_positive_int(cv, name="cv", func=func, minimum=2)
        return cv_folds(groups, int(cv))
    if hasattr(cv, "split"):
        return [(np.asarray(tr), np.asarray(te))
                for tr, te in cv.split(np.zeros((n_samples, 1)), None, groups)]
    raise ValueError(
        f"Invalid value for 'cv' in {func}(): {cv!r}. Expected an integer >= 2, 'loo' or a "
        "scikit-learn splitter."
    )


class RidgeEncoder(RegressorMixin, BaseEstimator):
    """Voxelwise ridge regression with a cross-validated alpha for each neuroid.

    Per fold the feature matrix is eigendecomposed once (``X^T X`` in the primal form or
    ``X X^T`` in the dual form, whichever is smaller) and reused for every alpha and every
    batch of neuroids; the alpha of each neuroid minimises its mean validation error.

    Parameters
    ----------
    alphas : array-like of float
        Positive regularisation strengths to try.
    cv : int, "loo" or scikit-learn splitter
        Integer: that many stimulus-grouped folds (:func:`neuroalign.store.cv_folds`; the
        repetitions of a stimulus never straddle folds). ``"loo"``: closed-form
        leave-one-out (scikit-learn's ``RidgeCV`` form). A splitter gets the stimulus ids as
        ``groups``.
    fit_intercept : bool
        Fit an unpenalised intercept per neuroid.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
    form : {"auto", "primal", "dual"}
        Which Gram matrix to decompose; ``"auto"`` picks the smaller one. Same answer.
    n_targets_batch : int
        Neuroids processed at once (bounds memory).
    metric : {"pearson", "r2"}
        What :meth:`score` returns per neuroid.
    dtype : {"float32", "float64"}
        Working precision.

    Attributes
    ----------
    coef_ : ndarray, shape (n_features, n_neuroids)
    intercept_ : ndarray, shape (n_neuroids,)
    best_alphas_ : ndarray, shape (n_neuroids,)
    cv_scores_ : ndarray, shape (n_neuroids,)
        Mean validation R² over folds at the chosen alpha (0 for excluded neuroids).
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
    ) -> None:
        self.alphas = alphas
        self.cv = cv
        self.fit_intercept = fit_intercept
        self.device = device
        self.form = form
        self.n_targets_batch = n_targets_batch
        self.metric = metric
        self.dtype = dtype

    # -- helpers -----------------------------------------------------------------------
    def _validate(self) -> tuple[np.ndarray, str, torch.dtype]:
        alphas = check_alphas(self.alphas, func=type(self).__name__)
        check_option(self.form, FORM_OPTIONS, name="form", func=type(self).__name__)
        check_option(self.metric, tuple(SCORERS), name="metric", func=type(self).__name__)
        check_option(self.dtype, ("float32", "float64"), name="dtype", func=type(self).__name__)
        check_positive_int(self.n_targets_batch, name="n_targets_batch", func=type(self).__name__)
        return alphas, resolve_device(self.device), getattr(torch, self.dtype)

    def _tensor(self, arr: np.ndarray, device: str, dtype) -> torch.Tensor:
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np_dtype)).to(device)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                f"This {type(self).__name__} is not fitted yet; call fit(X, Y) before using it."
            )

    # -- API -----------------------------------------------------------------------------
    def fit(self, X, Y, *, client=None, result_path=None, batch_size: int | None = None):
        """Fit one ridge per neuroid, choosing each neuroid's alpha by cross-validation.

        Parameters
        ----------
        X : ndarray, torch.Tensor, DataArray or features Dataset
            Features, shape (n_samples, n_features), or a features object with a
            ``stimulus_id`` coordinate (joined exactly to ``Y``).
        Y : ndarray, torch.Tensor, DataArray or store Dataset
            Responses, shape (n_samples, n_neuroids); a store's ``responses``.
        client : dask.distributed.Client, optional
            Split neuroids into batches across the client's workers (see ``result_path``).
        result_path : path-like, optional
            With ``client``: the zarr where each batch writes its region; a rerun completes
            only the missing batches.
        batch_size : int, optional
            With ``client``: neuroids per batch (default: ``n_targets_batch``).

        Returns
        -------
        self
        """
        alphas, device, dtype = self._validate()
        data = align(X, Y)
        self._fit_meta(data)
        folds = resolve_folds(self.cv, data.X.shape[0], data.stimulus_id, func=type(self).__name__)
        ok = valid_neuroids(data.Y, func=f"{type(self).__name__}.fit")
        if client is not None:
            from neuroalign.encoders._scaleout import distributed_ridge

            res = distributed_ridge(self, data, ok, folds, alphas, client=client,
                                    result_path=result_path, batch_size=batch_size)
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
        Xt = self._tensor(X, device, dtype)
        Yt = self._tensor(Y, device, dtype)
        cvres = ridge_cv(Xt, Yt, alphas, folds, fit_intercept=self.fit_intercept, form=form,
                         n_targets_batch=self.n_targets_batch, progress=_batch_bar, refit=True)
        coef, intercept = cvres.coef, cvres.intercept
        log.info("ridge fit: %d samples, %d features, %d neuroids, %s form", X.shape[0],
                 X.shape[1], Y.shape[1], cvres.form)
        return {
            "coef": coef.cpu().numpy(),
            "intercept": intercept.cpu().numpy(),
            "best_alphas": cvres.best_alphas,
            "cv_scores": cvres.cv_scores,
            "form": cvres.form,
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
        self.best_alphas_ = np.full(n_neuroids, alphas.max())
        self.best_alphas_[ok] = res["best_alphas"]
        self.cv_scores_ = np.zeros(n_neuroids)
        self.cv_scores_[ok] = res["cv_scores"]
        self.valid_neuroids_ = ok
        self.form_ = res.get("form")

    def _design(self, X) -> tuple[np.ndarray, xr.DataArray | None]:
        if isinstance(X, xr.Dataset | xr.DataArray):
            feats = features_matrix(X)
            return np.asarray(feats.values), feats
        from neuroalign.encoders._data import as_matrix

        return as_matrix(X, name="X"), None

    def predict(self, X):
        """Predicted responses.

        Returns
        -------
        ndarray (n_samples, n_neuroids), or a DataArray with dims ('stimulus', 'neuroid')
        when ``X`` is an xarray features object (stimulus and neuroid coordinates carried).
        """
        self._check_fitted()
        Xm, feats = self._design(X)
        if Xm.shape[1] != self.n_features_in_:
            raise DimensionError(
                f"X has {Xm.shape[1]} features; this {type(self).__name__} was fitted with "
                f"{self.n_features_in_}."
            )
        pred = Xm.astype(self.coef_.dtype, copy=False) @ self.coef_ + self.intercept_
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
        ``neuroid`` is returned; otherwise an ndarray (n_neuroids,). Excluded neuroids
        score 0.
        """
        self._check_fitted()
        if sample_weight is not None:
            raise ValueError("score(): sample_weight is not supported; expected None.")
        data = align(X, Y)
        pred = self.predict(data.X)
        s = SCORERS[self.metric](data.Y, pred)
        s = np.where(np.isfinite(data.Y).all(0), s, 0.0)
        if data.neuroid_coords is None:
            return s
        return data.neuroid_coords.copy(data=s).rename("score")

    def to_dataset(self, ceiling=None) -> xr.Dataset:
        """Results on ``neuroid``: ``score`` (cv R²), ``best_alpha`` and, with a noise
        ceiling (percent, per neuroid), ``ceiling_normalised``. Excluded neuroids are
        left out."""
        from neuroalign.encoders._results import results_dataset

        self._check_fitted()
        return results_dataset(
            {"score": self.cv_scores_, "best_alpha": self.best_alphas_},
            self._neuroid_template, self.valid_neuroids_, ceiling=ceiling, metric="r2",
        )
