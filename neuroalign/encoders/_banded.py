"""BandedRidgeEncoder: several feature spaces, each with its own regularisation.

Built on himalaya's banded ridge (``GroupRidgeCV``, random search over the simplex of
per-space scalings, with a cross-validated alpha per neuroid). It reports each space's
share of the prediction (split R², the product measure of Nunez-Elizalde et al.), and
variance partitioning (unique and shared variance) from joint and single-space fits.
"""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger
from neuroalign._validation import check_option, check_positive_int
from neuroalign.encoders._data import align, check_alphas, valid_neuroids
from neuroalign.encoders._ridge import DEFAULT_ALPHAS, RidgeEncoder, resolve_folds
from neuroalign.encoders._scoring import SCORERS, r2_score
from neuroalign.exceptions import DimensionError, NotFittedError

__all__ = ["BandedRidgeEncoder", "variance_partitioning"]

log = get_logger(__name__)


@contextlib.contextmanager
def _himalaya_backend(device: str):
    """Temporarily set himalaya's backend (numpy on CPU, torch_cuda on GPU)."""
    from himalaya.backend import get_backend, set_backend

    previous = get_backend().name
    set_backend("torch_cuda" if device.startswith("cuda") else "numpy", on_error="raise")
    try:
        yield
    finally:
        set_backend(previous, on_error="warn")


def _spaces(features, *, func: str) -> dict[str, object]:
    if isinstance(features, xr.Dataset):
        return {str(k): features[k] for k in features.data_vars}
    if isinstance(features, dict) and features:
        return dict(features)
    raise TypeError(
        f"Invalid value for 'X' in {func}(): {type(features).__name__}. Expected a dict "
        "{space name: features} or a features Dataset (one variable per space)."
    )


def _to_numpy(x):
    if hasattr(x, "cpu"):
        x = x.cpu()
    return np.asarray(x)


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
    cv_scores_ : ndarray (n_neuroids,)
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
        spaces = _spaces(X, func=f"{type(self).__name__}.{'fit' if fit else 'predict'}")
        if not fit and list(spaces) != self.spaces_:
            raise DimensionError(
                f"Feature spaces {list(spaces)!r} differ from the fitted spaces {self.spaces_!r}."
            )
        mats, data = [], None
        for name in spaces:
            data = align(spaces[name], Y) if Y is not None else None
            mats.append(data.X if data is not None else _to_numpy(getattr(spaces[name], "values", spaces[name])))
        return list(spaces), mats, data

    def fit(self, X, Y):
        """Fit the banded model.

        Parameters
        ----------
        X : dict {space: features} or features Dataset (one variable per space)
            Each value as accepted by :meth:`RidgeEncoder.fit` (arrays or xarray features
            joined on ``stimulus_id``).
        Y : ndarray, DataArray or store Dataset

        Returns
        -------
        self
        """
        from himalaya.ridge import GroupRidgeCV

        func = type(self).__name__
        alphas = check_alphas(self.alphas, func=func)
        n_iter = check_positive_int(self.n_iter, name="n_iter", func=func)
        check_option(self.metric, tuple(SCORERS), name="metric", func=func)
        device = resolve_device(self.device)
        names, mats, data = self._matrices(X, Y, fit=True)
        if len(names) < 2:
            raise ValueError(
                f"{func}.fit() needs at least 2 feature spaces; got {names!r}. Use RidgeEncoder "
                "for one."
            )
        folds = resolve_folds(self.cv, data.X.shape[0], data.stimulus_id, func=func)
        ok = valid_neuroids(data.Y, func=f"{func}.fit")
        mats = [np.ascontiguousarray(m, dtype=np.float32) for m in mats]
        with _himalaya_backend(device):
            model = GroupRidgeCV(
                groups="input", fit_intercept=self.fit_intercept, cv=folds,
                random_state=self.random_state,
                solver_params={"alphas": alphas, "n_iter": n_iter, "progress_bar": False,
                               "n_targets_batch": 4096},
            )
            model.fit(mats, np.ascontiguousarray(data.Y[:, ok], dtype=np.float32))
            coef = _to_numpy(model.coef_)
            deltas = _to_numpy(model.deltas_)
            intercept = _to_numpy(model.intercept_) if self.fit_intercept else np.zeros(ok.sum())
            cv_scores = _to_numpy(model.cv_scores_).max(0)
        n = data.Y.shape[1]
        self.spaces_ = names
        self.n_features_ = [m.shape[1] for m in mats]
        self.coef_ = np.zeros((sum(self.n_features_), n), dtype=np.float32)
        self.coef_[:, ok] = coef
        self.intercept_ = np.zeros(n, dtype=np.float32)
        self.intercept_[ok] = intercept
        weights = np.zeros((len(names), n))
        weights[:, ok] = np.exp(deltas)
        tmpl = data.neuroid_coords
        coords = {} if tmpl is None else {k: v for k, v in tmpl.coords.items() if v.dims == ("neuroid",)}
        self.space_weights_ = xr.DataArray(weights, dims=("space", "neuroid"),
                                           coords={"space": names, **coords}, name="space_weight")
        self.cv_scores_ = np.zeros(n)
        self.cv_scores_[ok] = cv_scores
        self.valid_neuroids_ = ok
        self._template = tmpl
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet; call fit(X, Y) first.")

    def predict(self, X, *, split: bool = False) -> np.ndarray:
        """Predictions, shape (n_samples, n_neuroids); with ``split=True`` one per space,
        shape (n_spaces, n_samples, n_neuroids), summing to the joint prediction (the
        intercept is added to the first space)."""
        self._check_fitted()
        _, mats, _ = self._matrices(X, None, fit=False)
        bounds = np.concatenate([[0], np.cumsum(self.n_features_)])
        parts = np.stack([m.astype(np.float32) @ self.coef_[a:b]
                          for m, a, b in zip(mats, bounds[:-1], bounds[1:], strict=True)])
        parts[0] += self.intercept_
        return parts if split else parts.sum(0)

    def _xy(self, X, Y):
        names = self.spaces_
        spaces = _spaces(X, func=f"{type(self).__name__}.score")
        if Y is not None and isinstance(Y, xr.Dataset | xr.DataArray):
            aligned = {n: align(spaces[n], Y) for n in names}
            return {n: a.X for n, a in aligned.items()}, aligned[names[0]].Y
        return {n: _to_numpy(spaces[n]) for n in names}, np.asarray(Y)

    def score(self, X, Y, sample_weight=None) -> np.ndarray:
        """Joint score per neuroid (``metric``)."""
        self._check_fitted()
        Xs, Ym = self._xy(X, Y)
        return SCORERS[self.metric](Ym, self.predict(Xs))

    def score_split(self, X, Y) -> xr.DataArray:
        """Split R² per space and neuroid (product measure; sums to the joint R² of the
        mean-centred prediction).

        Returns a DataArray with dims ('space', 'neuroid').
        """
        self._check_fitted()
        Xs, Ym = self._xy(X, Y)
        parts = self.predict(Xs, split=True).astype(np.float64)
        parts[0] -= self.intercept_
        yc = Ym - Ym.mean(0)
        pc = parts - parts.mean(1, keepdims=True)
        full = pc.sum(0)
        sst = (yc ** 2).sum(0)
        # R²_i = <p_i, 2y - p> / ||y||²  (Nunez-Elizalde 2019); sum_i R²_i = joint R²
        split = np.stack([((2 * yc - full) * p).sum(0) / np.where(sst > 0, sst, 1.0) for p in pc])
        coords = self.space_weights_.coords
        return xr.DataArray(split, dims=("space", "neuroid"), coords=coords, name="split_r2")


def variance_partitioning(
    X_train: dict,
    Y_train,
    X_test: dict,
    Y_test,
    *,
    encoder: RidgeEncoder | None = None,
) -> xr.Dataset:
    """Variance partitioning of held-out R² between feature spaces.

    Fits a ridge encoder on every non-empty subset of the spaces (concatenated
    features), scores R² on the test data, and derives by inclusion-exclusion the variance
    unique to each space and, for two spaces, the variance they share. For a vision model
    V and a language model L, ``unique`` of L is "how much L adds beyond V".

    Returns
    -------
    xr.Dataset on ``neuroid`` with ``joint_r2``, ``r2`` (subset, neuroid), ``unique``
    (space, neuroid) and, for two spaces, ``shared``.
    """
    names = list(_spaces(X_train, func="variance_partitioning"))
    if len(names) < 2:
        raise ValueError(f"variance_partitioning() needs at least 2 feature spaces; got {names!r}.")
    base = encoder if encoder is not None else RidgeEncoder()

    def cat(Xd, subset):
        return np.concatenate([_to_numpy(getattr(Xd[n], "values", Xd[n])) for n in subset], axis=1)

    Ytr = np.asarray(getattr(Y_train, "values", Y_train))
    Yte = np.asarray(getattr(Y_test, "values", Y_test))
    r2 = {}
    for k in range(1, len(names) + 1):
        for subset in itertools.combinations(names, k):
            enc = RidgeEncoder(**base.get_params()).fit(cat(X_train, subset), Ytr)
            r2[subset] = r2_score(Yte, enc.predict(cat(X_test, subset)))
    joint = r2[tuple(names)]
    unique = np.stack([joint - r2[tuple(n for n in names if n != s)] for s in names])
    ds = xr.Dataset(
        {"joint_r2": ("neuroid", joint),
         "r2": (("subset", "neuroid"), np.stack(list(r2.values()))),
         "unique": (("space", "neuroid"), unique)},
        coords={"space": names, "subset": ["+".join(s) for s in r2]},
    )
    if len(names) == 2:
        a, b = names
        ds["shared"] = ("neuroid", r2[(a,)] + r2[(b,)] - joint)
    return ds
