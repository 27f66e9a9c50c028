"""BandedRidgeEncoder: several feature spaces, each with its own regularisation.

Built on himalaya's banded ridge (``GroupRidgeCV``, random search over the simplex of
per-space scalings, with a cross-validated alpha per neuroid). It reports each space's
share of the prediction (split R², the product measure of Nunez-Elizalde et al.), and
variance partitioning (unique and shared variance) from joint and single-space fits.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger
from neuroalign._sklearn import (
    as_container,
    check_fitted,
    check_x,
    check_xy,
    is_table,
    is_xarray,
    n_features_error,
    regressor_tags,
)
from neuroalign._validation import check_option, check_positive_int
from neuroalign.encoders._banded_solve import (  # noqa: F401 (banded_solve: imported from here)
    CONCENTRATION,
    _candidate_gammas,
    _himalaya_backend,
    _to_numpy,
    banded_solve,
)
from neuroalign.encoders._data import align, as_matrix, check_alphas, valid_neuroids
from neuroalign.encoders._results import CV_KIND, cv_scheme
from neuroalign.encoders._ridge import DEFAULT_ALPHAS, resolve_folds
from neuroalign.encoders._scoring import SCORERS, held_out_scores
from neuroalign.exceptions import DimensionError
from neuroalign.store._join import match_stimuli

__all__ = ["BandedRidgeEncoder", "variance_partitioning"]

log = get_logger(__name__)


#: The name of the one feature space of a banded encoder fitted on a plain array.
ARRAY_SPACE = "X"


def _spaces(features, *, func: str) -> dict[str, object]:
    if isinstance(features, xr.Dataset):
        return {str(k): features[k] for k in features.data_vars}
    if isinstance(features, dict) and features and not hasattr(features, "tocsr"):
        return dict(features)
    raise TypeError(
        f"Invalid value for 'X' in {func}(): {type(features).__name__}. Expected a dict "
        "{space name: features}, a features Dataset (one variable per space), or one array "
        "(a single space) with array responses."
    )


class BandedRidgeEncoder(RegressorMixin, BaseEstimator):
    """Banded ridge over several feature spaces (one regularisation per space).

    Parameters
    ----------
    alphas : array-like of float
        Global alphas tried for each sampled set of space weights.
    n_iter : int
        Random-search iterations over the simplex of space weights.
    cv : int or scikit-learn splitter
        Stimulus-grouped folds (integer) or a splitter, as in :class:`RidgeEncoder`.
    fit_intercept : bool
    device : str
    random_state : int
    metric : {"pearson", "r2"}
        What :meth:`score` returns.

    Attributes
    ----------
    spaces_ : list of str
    coef_ : ndarray, shape (n_features_total, n_neuroids)
    space_weights_ : DataArray, dims ('space', 'neuroid')
        Fitted per-space scaling ``exp(delta)``: each space's effective inverse regularisation.
    best_alphas_ : ndarray (n_neuroids,)
        ``1 / sum(space_weights_)``, as himalaya's ``best_alphas_``.
    cv_scores_ : ndarray (n_neuroids,)
        Cross-validated R²: mean over folds of the validation R² at each neuroid's chosen
        space weights and alpha (which himalaya chooses by the mean validation squared
        error, as :class:`RidgeEncoder` chooses its alpha). NaN for excluded neuroids.
    valid_neuroids_ : ndarray of bool
    n_features_in_ : int
        Features of all spaces together.

    Notes
    -----
    A plain 2-d array ``X`` (with array responses) is one feature space named ``"X"``: the
    fit is then a ridge whose alpha is chosen by the same search, which makes the class a
    scikit-learn regressor on arrays (``clone``, pipelines, ``parametrize_with_checks``).
    A 1-d ``y`` is one target; predictions and scores then come back 1-d / as a float.

    Before the search a memory preflight estimates its peak from the shapes, the number of
    alphas and of candidate space weights, and sets how many neuroids himalaya works on at
    once (at most 4,096) to the largest that fits the memory available; when not even one
    fits it raises :class:`~neuroalign.exceptions.MemoryPreflightError` at once, saying how
    much is needed and what lowers it. The result does not depend on that batch.
    """

    def __init__(
        self,
        alphas=DEFAULT_ALPHAS,
        n_iter: int = 20,
        cv=5,
        fit_intercept: bool = True,
        device: str = "auto",
        *,
        random_state: int = 0,
        metric: str = "r2",
    ) -> None:
        self.alphas = alphas
        self.n_iter = n_iter
        self.cv = cv
        self.fit_intercept = fit_intercept
        self.device = device
        self.random_state = random_state
        self.metric = metric

    def _matrices(self, X, Y, *, fit: bool):
        """-> (space names, matrices with rows in one order, Aligned of the last space or None).

        With xarray features every space is joined on ``stimulus_id`` (to ``Y`` when given,
        else to the first space's stimuli), never matched by position."""
        func = f"{type(self).__name__}.{'fit' if fit else 'predict'}"
        if not (is_table(X) or is_xarray(X) or is_xarray(Y)):
            X = {ARRAY_SPACE: check_x(X, func=func, min_samples=2 if fit else 1)}
        spaces = _spaces(X, func=func)
        if not fit and list(spaces) != self.spaces_:
            raise DimensionError(
                f"Feature spaces {list(spaces)!r} differ from the fitted spaces {self.spaces_!r}."
            )
        if Y is not None:
            aligned = [align(spaces[n], Y, func=f"{type(self).__name__}.{'fit' if fit else 'score'}") for n in spaces]
            return list(spaces), [a.X for a in aligned], aligned[-1]
        values = list(spaces.values())
        if all(isinstance(v, xr.DataArray) for v in values):
            from neuroalign.encoders._data import features_matrix

            ids = features_matrix(values[0])["stimulus_id"].values
            mats = []
            for v in values:
                fm = features_matrix(v)
                mats.append(np.asarray(fm.values)[match_stimuli(
                    fm["stimulus_id"].values, ids, have_name="a feature space",
                    want_name="the first feature space", func=f"{type(self).__name__}.predict")])
            return list(spaces), mats, None
        if any(isinstance(v, xr.DataArray | xr.Dataset) for v in values):
            raise TypeError(
                f"{type(self).__name__}: feature spaces must all be xarray features (joined on "
                "stimulus_id) or all arrays; got a mix."
            )
        return list(spaces), [as_matrix(_to_numpy(v), name="X") for v in values], None

    def fit(self, X, y, *, client=None, result_path=None, batch_size=None, cluster=None,
            cluster_options=None):
        """Fit the banded model.

        Parameters
        ----------
        X : dict {space: features}, features Dataset (one variable per space) or array
            Each value as accepted by :meth:`RidgeEncoder.fit` (arrays or xarray features
            joined on ``stimulus_id``); one array is one space named ``"X"``.
        y : ndarray, DataArray or store Dataset
            Responses (n_samples, n_neuroids), or (n_samples,) for one target.
        client, result_path, batch_size, cluster, cluster_options
            Scale-out as in :meth:`RidgeEncoder.fit`: cells of ``batch_size`` neuroids
            (default 4096), each the same random search on the same candidate space weights,
            cached under ``result_path``; a rerun fits only the missing cells.

        Returns
        -------
        self
        """
        Y = y
        func = type(self).__name__
        alphas = check_alphas(self.alphas, func=func)
        n_iter = check_positive_int(self.n_iter, name="n_iter", func=func)
        check_option(self.metric, tuple(SCORERS), name="metric", func=func)
        device = resolve_device(self.device)
        self._y_1d = False
        if not (is_table(X) or is_xarray(X) or is_xarray(Y)):
            X, Y, self._y_1d = check_xy(X, Y, func=f"{func}.fit")
        names, mats, data = self._matrices(X, Y, fit=True)
        if len(names) < 2 and names != [ARRAY_SPACE]:
            raise ValueError(
                f"{func}.fit() needs at least 2 feature spaces; got {names!r}. Use RidgeEncoder "
                "for one."
            )
        folds = resolve_folds(self.cv, data.X.shape[0], data.stimulus_id, func=func)
        if isinstance(folds, str):
            raise ValueError(
                f"Invalid value for 'cv' in {func}: {self.cv!r}. Expected an integer >= 2 or a "
                "scikit-learn splitter (banded ridge has no closed-form leave-one-out)."
            )
        ok = valid_neuroids(data.Y, func=f"{func}.fit")
        mats = [np.ascontiguousarray(m, dtype=np.float32) for m in mats]
        Yok = np.ascontiguousarray(data.Y[:, ok], dtype=np.float32)
        gammas = _candidate_gammas(n_iter, len(names), self.random_state)
        from neuroalign._scaleout import ScaleOut

        if ScaleOut(cluster=cluster, client=client, result_path=result_path).active:
            from neuroalign.encoders._scaleout import banded_cells

            res = banded_cells(self, mats, Yok, folds, alphas, gammas, device, client=client,
                               cluster=cluster, cluster_options=cluster_options,
                               result_path=result_path, batch_size=batch_size)
        else:
            res = banded_solve(mats, Yok, folds, alphas, gammas, self.fit_intercept,
                               self.random_state, device)
        coef, deltas, intercept, ai, cv_r2 = (res[k] for k in ("coef", "deltas", "intercept",
                                                                "ai", "cv_r2"))
        n = data.Y.shape[1]
        self.spaces_ = names
        self.n_features_ = [m.shape[1] for m in mats]
        self.n_features_in_ = int(sum(self.n_features_))
        self.coef_ = np.zeros((sum(self.n_features_), n), dtype=np.float32)
        self.coef_[:, ok] = coef
        self.intercept_ = np.zeros(n, dtype=np.float32)
        self.intercept_[ok] = intercept
        weights = np.full((len(names), n), np.nan)
        weights[:, ok] = np.exp(deltas)
        tmpl = data.neuroid_coords
        coords = {} if tmpl is None else {k: v for k, v in tmpl.coords.items() if v.dims == ("neuroid",)}
        self.space_weights_ = xr.DataArray(weights, dims=("space", "neuroid"),
                                           coords={"space": names, **coords}, name="space_weight")
        self.best_alphas_ = np.full(n, np.nan)
        self.best_alphas_[ok] = alphas[ai]
        self.cv_scores_ = np.full(n, np.nan)
        self.cv_scores_[ok] = cv_r2
        self.valid_neuroids_ = ok
        self._template = tmpl
        self._fitted_split = data.split
        return self

    def to_dataset(self, ceiling=None) -> xr.Dataset:
        """The fit's results in the schema of :func:`neuroalign.store.check_results`: one
        layer, the joint model of every space (named ``"space1+space2+..."``), ``score`` its
        cross-validated R², ``alpha`` the chosen penalty; ``space_weight`` on
        ``(space, neuroid)``; excluded neuroids left out. With a noise ceiling (percent, per
        neuroid), ``noise_ceiling`` and ``ceiling_normalised``.

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
        from neuroalign.encoders._results import build_results, params_json

        self._check_fitted()
        return build_results(
            self.cv_scores_[None], layers=["+".join(self.spaces_)], template=self._template,
            valid=self.valid_neuroids_, alpha=self.best_alphas_[None], metric="r2",
            score_kind=CV_KIND, split=getattr(self, "_fitted_split", "all"), cv=cv_scheme(self.cv),
            encoder=type(self).__name__, params=params_json(self), ceiling=ceiling,
            extra={"space_weight": (("space", "neuroid"), self.space_weights_.values)},
            extra_coords={"space": list(self.spaces_)},
        )

    def _check_fitted(self) -> None:
        check_fitted(self, "coef_")

    def __sklearn_tags__(self):
        return regressor_tags(super().__sklearn_tags__())

    def predict(self, X, *, split: bool = False) -> np.ndarray:
        """Predicted responses, jointly or per feature space.

        Parameters
        ----------
        X : dict, xr.Dataset or sequence of array-like
            One feature matrix per space (as given to :meth:`fit`); one array is one space.
        split : bool
            Return one prediction per space, summing to the joint prediction (the
            intercept is added to the first space).

        Returns
        -------
        ndarray, torch.Tensor or xr.DataArray
            Shape (n_samples, n_neuroids) (``(n_samples,)`` after a fit on a 1-d ``y``; a
            tensor for a tensor ``X``; a DataArray for xarray features), or with
            ``split=True`` (n_spaces, n_samples, n_neuroids).
        """
        self._check_fitted()
        _, mats, _ = self._matrices(X, None, fit=False)
        pred = self._predict_parts(mats, split)
        if getattr(self, "_y_1d", False):
            pred = pred[..., 0]
        spaces = _spaces(X, func=f"{type(self).__name__}.predict") if (
            is_table(X) or is_xarray(X)) else None
        if spaces is not None and all(isinstance(v, xr.DataArray) for v in spaces.values()):
            return self._labelled(pred, next(iter(spaces.values())), split)
        return pred if spaces is not None else as_container(pred, X)

    def _labelled(self, pred: np.ndarray, first: xr.DataArray, split: bool) -> xr.DataArray:
        """Predictions of xarray features as a DataArray ('stimulus', 'neuroid') (with a
        leading 'space' for ``split=True``), rows in the first space's stimulus order."""
        from neuroalign.encoders._data import features_matrix

        fm = features_matrix(first)
        coords = {k: v for k, v in fm.coords.items() if v.dims == (fm.dims[0],)}
        dims = ("stimulus", "neuroid")
        out = xr.DataArray(pred, dims=(("space",) + dims) if split else dims,
                           coords={k: ("stimulus", np.asarray(v.values)) for k, v in coords.items()},
                           name="prediction")
        if split:
            out = out.assign_coords(space=self.spaces_)
        if self._template is not None:
            out = out.assign_coords({k: v for k, v in self._template.coords.items()
                                     if v.dims == ("neuroid",)})
        return out

    def _predict_parts(self, mats, split: bool) -> np.ndarray:
        if sum(m.shape[1] for m in mats) != self.n_features_in_ or any(
                m.shape[1] != n for m, n in zip(mats, self.n_features_, strict=True)):
            raise n_features_error(self, sum(m.shape[1] for m in mats), self.n_features_in_)
        if not all(np.isfinite(m).all() for m in mats):
            raise ValueError(f"{type(self).__name__}.predict: Input X contains NaN or infinity; "
                             "expected finite features.")
        bounds = np.concatenate([[0], np.cumsum(self.n_features_)])
        # float64 features give float64 predictions (as scikit-learn's regressors)
        dtype = np.float64 if any(m.dtype == np.float64 for m in mats) else np.float32
        parts = np.stack([m.astype(dtype, copy=False) @ self.coef_[a:b].astype(dtype)
                          for m, a, b in zip(mats, bounds[:-1], bounds[1:], strict=True)])
        parts[0] += self.intercept_
        return parts if split else parts.sum(0)

    def _xy(self, X, Y):
        """-> (dict {space: matrix}, responses, neuroid template or None), joined on
        ``stimulus_id`` for xarray inputs (the features may cover more stimuli)."""
        names, mats, data = self._matrices(X, Y, fit=False)
        if data is not None:
            return dict(zip(names, mats, strict=True)), data.Y, data.neuroid_coords
        return dict(zip(names, mats, strict=True)), as_matrix(Y, name="Y"), None

    def _masked(self, values: np.ndarray) -> np.ndarray:
        return np.where(self.valid_neuroids_, values, np.nan)

    def score(self, X, y, sample_weight=None):
        """Joint held-out score per neuroid (``metric``); NaN for excluded neuroids.

        Parameters
        ----------
        X : dict, xr.Dataset or sequence of array-like
            One feature matrix per space (as given to :meth:`fit`).
        y : array-like or store
            Held-out responses (joined on ``stimulus_id`` for xarray inputs).
        sample_weight : None
            Not supported (scikit-learn's signature); must be None.

        Returns
        -------
        xr.DataArray or ndarray
            A DataArray on ``neuroid`` for xarray inputs, else an ndarray.
        """
        Y = y
        self._check_fitted()
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__}.score(): sample_weight is not supported; expected None.")
        y_1d = False
        if not (is_table(X) or is_xarray(X) or is_xarray(Y)):
            X, Y, y_1d = check_xy(X, Y, func=f"{type(self).__name__}.score", min_samples=1,
                                  y_finite_1d=False)
        Xs, Ym, tmpl = self._xy(X, Y)
        s = held_out_scores(Ym, self._predict_parts(list(Xs.values()), False), self.valid_neuroids_,
                            self.metric, tmpl, func=f"{type(self).__name__}.score",
                            fit_coords=self._template)
        if tmpl is None:
            return float(s[0]) if y_1d else s
        out = tmpl.copy(data=s).rename("score")
        out.attrs.update(metric=self.metric, kind="held-out")
        return out

    def score_split(self, X, y) -> xr.DataArray:
        """Split R² per space and neuroid (product measure; sums to the joint R² of the
        mean-centred prediction).

        Parameters
        ----------
        X : dict, xr.Dataset or sequence of array-like
            One feature matrix per space (as given to :meth:`fit`).
        y : array-like or store
            Held-out responses.

        Returns
        -------
        xr.DataArray
            Dims ('space', 'neuroid').
        """
        Y = y
        self._check_fitted()
        Xs, Ym, _ = self._xy(X, Y)
        Ym = np.asarray(Ym, dtype=np.float64)
        parts = self._predict_parts(list(Xs.values()), True).astype(np.float64)
        parts[0] -= self.intercept_
        yc = Ym - Ym.mean(0)
        pc = parts - parts.mean(1, keepdims=True)
        sst = (yc ** 2).sum(0)
        # R²_i = <p_i, 2y - p> / ||y||²  (product measure, Nunez-Elizalde 2019): himalaya's
        # r2_score_split on the centred responses and predictions; sum_i R²_i = joint R²
        with _himalaya_backend("cpu"), np.errstate(invalid="ignore", divide="ignore"):
            from himalaya.scoring import r2_score_split

            split = np.asarray(r2_score_split(yc, pc, include_correlation=True), dtype=np.float64)
        split = np.where(self.valid_neuroids_ & (sst > 0), split, np.nan)
        coords = self.space_weights_.coords
        out = xr.DataArray(split, dims=("space", "neuroid"), coords=coords, name="split_r2")
        out.attrs.update(metric="r2", kind="held-out")
        return out


from neuroalign.encoders._varpart import variance_partitioning  # noqa: E402 (public name kept here)
