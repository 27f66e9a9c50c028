"""Time series: FIR delays for naturalistic fMRI, and a time-resolved encoder for MEG/EEG."""

from __future__ import annotations

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, TransformerMixin

from neuroalign._validation import check_positive_int
from neuroalign.encoders._data import (
    as_matrix,
    feature_space,
    features_matrix,
    fitted_split,
    valid_neuroids,
)
from neuroalign.encoders._results import CV_KIND, cv_scheme
from neuroalign.encoders._ridge import DEFAULT_ALPHAS, RidgeEncoder, resolve_folds
from neuroalign.encoders._scoring import SCORERS
from neuroalign.exceptions import DimensionError, NotFittedError
from neuroalign.store import cv_folds
from neuroalign.store._join import join_features

__all__ = ["make_delays", "Delayer", "FIREncoder", "TimeResolvedEncoder", "block_folds"]


def _check_delays(delays, func: str) -> tuple[int, ...]:
    try:
        out = tuple(int(d) for d in delays)
    except TypeError:
        out = ()
    if not out or any(int(d) != d for d in delays):
        raise ValueError(
            f"Invalid value for 'delays' in {func}(): {delays!r}. Expected a non-empty sequence "
            "of integer sample delays, e.g. (1, 2, 3, 4)."
        )
    return out


def make_delays(X: np.ndarray, delays=(1, 2, 3, 4)) -> np.ndarray:
    """Stack time-shifted copies of ``X`` (rows are consecutive samples of one run).

    Column block ``i`` holds ``X`` delayed by ``delays[i]`` samples (zeros shifted in), so
    a response at sample ``t`` sees the features at ``t - d``: a finite impulse response.
    Negative delays shift the other way.

    Returns
    -------
    ndarray, shape (n_samples, n_features * len(delays))
    """
    delays = _check_delays(delays, "make_delays")
    X = np.asarray(X)
    n, p = X.shape
    out = np.zeros((n, p * len(delays)), dtype=X.dtype)
    for i, d in enumerate(delays):
        block = out[:, i * p:(i + 1) * p]
        if d > 0:
            block[d:] = X[:n - d]
        elif d < 0:
            block[:d] = X[-d:]
        else:
            block[:] = X
    return out


class Delayer(TransformerMixin, BaseEstimator):
    """scikit-learn transformer wrapping :func:`make_delays`."""

    def __init__(self, delays=(1, 2, 3, 4)) -> None:
        self.delays = delays

    def fit(self, X, y=None):
        _check_delays(self.delays, "Delayer")
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        return make_delays(np.asarray(X), self.delays)


def block_folds(n_samples: int, n_splits: int, *, n_blocks: int | None = None, seed: int = 0):
    """Folds of contiguous blocks for autocorrelated time series.

    Samples are cut into ``n_blocks`` contiguous blocks (default ``4 * n_splits``) that are
    dealt into folds by :func:`neuroalign.store.cv_folds`, each block acting as one
    "stimulus", so no fold interleaves neighbouring samples.
    """
    n_blocks = n_blocks or 4 * n_splits
    if n_samples < n_blocks:
        n_blocks = n_samples
    labels = (np.arange(n_samples) * n_blocks // n_samples).astype(str)
    return cv_folds(labels, n_splits, seed=seed)


class FIREncoder(RidgeEncoder):
    """Ridge on FIR-delayed features for continuous time series (naturalistic fMRI).

    Rows of ``X`` and ``Y`` are consecutive samples (TRs). Features are delayed by
    ``delays`` samples and concatenated; an integer ``cv`` uses contiguous blocks
    (:func:`block_folds`) so autocorrelation does not leak across folds.

    Parameters
    ----------
    delays : sequence of int
        Delays in samples (e.g. ``(1, 2, 3, 4)`` at TR 2 s covers 2–8 s).
    alphas, cv, fit_intercept, device, metric, dtype : see :class:`RidgeEncoder`.

    Attributes
    ----------
    delay_weights_ : ndarray, shape (n_delays, n_features, n_neuroids)
        The fitted FIR kernel.
    cv_scores_ : ndarray, shape (n_neuroids,)
        Cross-validated R² (mean over the block folds of the validation R² at the chosen
        alpha); NaN for excluded (NaN or constant) neuroids.
    """

    def __init__(self, delays=(1, 2, 3, 4), alphas=DEFAULT_ALPHAS, cv=5, fit_intercept=True,
                 device="auto", *, metric="pearson", dtype="float32") -> None:
        super().__init__(alphas=alphas, cv=cv, fit_intercept=fit_intercept, device=device,
                         metric=metric, dtype=dtype)
        self.delays = delays

    def fit(self, X, Y):
        delays = _check_delays(self.delays, "FIREncoder")
        alphas, device, dtype = self._validate()
        Xm, Ym = as_matrix(X, name="X"), as_matrix(Y, name="Y")
        if Xm.shape[0] != Ym.shape[0]:
            raise DimensionError(
                f"X has {Xm.shape[0]} samples and Y has {Ym.shape[0]}; expected the same number of rows."
            )
        Xd = make_delays(Xm, delays)
        if isinstance(self.cv, int | np.integer):
            folds = block_folds(len(Xd), check_positive_int(self.cv, name="cv", func="FIREncoder", minimum=2))
        else:
            folds = resolve_folds(self.cv, len(Xd), None, func="FIREncoder")
        from neuroalign.encoders._data import Aligned

        data = Aligned(Xd, Ym, None, None, "sample")
        self._fit_meta(data)
        ok = valid_neuroids(Ym, func="FIREncoder.fit")
        res = self._fit_arrays(Xd, Ym[:, ok], folds, alphas, device, dtype)
        self._set_results(res, data, ok, alphas)
        self.cv_scores_ = np.where(ok, self.cv_scores_, np.nan)
        p = Xm.shape[1]
        self.delay_weights_ = self.coef_.reshape(len(delays), p, -1)
        return self

    def predict(self, X):
        """Predictions from the delayed features of ``X`` (consecutive samples)."""
        self._check_fitted()
        return super().predict(make_delays(as_matrix(X, name="X"), self.delays))

    def score(self, X, Y, sample_weight=None):
        """Held-out score per neuroid (``metric``); NaN for excluded neuroids."""
        self._check_fitted()
        if sample_weight is not None:
            raise ValueError("FIREncoder.score(): sample_weight is not supported; expected None.")
        Ym = as_matrix(Y, name="Y")
        return np.where(self.valid_neuroids_, SCORERS[self.metric](Ym, self.predict(X)), np.nan)

    def to_dataset(self, ceiling=None) -> xr.Dataset:
        """The fit's results in the schema of :func:`neuroalign.store.check_results`: one
        layer (the features), ``score`` the cross-validated R² over block folds, ``alpha``
        the chosen penalty; excluded neuroids left out."""
        from neuroalign.encoders._results import build_results, params_json

        self._check_fitted()
        return build_results(
            self.cv_scores_[None], layers=["features"], template=None, valid=self.valid_neuroids_,
            alpha=self.best_alphas_[None], metric="r2", score_kind=CV_KIND, split="all",
            cv=cv_scheme(self.cv, blocks=True), encoder=type(self).__name__,
            params=params_json(self), ceiling=ceiling,
            attrs={"delays": list(_check_delays(self.delays, "FIREncoder"))},
        )


class TimeResolvedEncoder(RidgeEncoder):
    """One ridge encoder per time point (or sliding window) of MEG/EEG responses.

    All time points are fitted in one pass: the (neuroid, time) pairs are the targets of a
    single cross-validated ridge, so the feature decomposition is shared across time and
    every (neuroid, time) gets its own alpha.

    Parameters
    ----------
    window : int
        Samples averaged per fit (1: one fit per time point).
    step : int
        Samples between window starts.
    alphas, cv, fit_intercept, device, metric, dtype : see :class:`RidgeEncoder`.

    Attributes
    ----------
    cv_scores_ : DataArray, dims ('neuroid', 'time')
        Cross-validated R² per neuroid and window (``time`` = window centre).
    best_alphas_ : DataArray, dims ('neuroid', 'time')
    """

    def __init__(self, window: int = 1, step: int = 1, alphas=DEFAULT_ALPHAS, cv=5,
                 fit_intercept=True, device="auto", *, metric="pearson", dtype="float32") -> None:
        super().__init__(alphas=alphas, cv=cv, fit_intercept=fit_intercept, device=device,
                         metric=metric, dtype=dtype)
        self.window = window
        self.step = step

    def _windows(self, n_times: int) -> list[tuple[int, int]]:
        w = check_positive_int(self.window, name="window", func="TimeResolvedEncoder")
        s = check_positive_int(self.step, name="step", func="TimeResolvedEncoder")
        if w > n_times:
            raise ValueError(
                f"Invalid value for 'window' in TimeResolvedEncoder: {w!r}. Expected at most the "
                f"{n_times} time points of the responses."
            )
        return [(a, a + w) for a in range(0, n_times - w + 1, s)]

    def _responses(self, X, Y, *, func: str = "fit"):
        """-> (X matrix, Y cube (n, neuroid, time), stimulus ids, neuroid coords, times,
        split labels), xarray inputs through the one join on ``stimulus_id``."""
        if isinstance(Y, xr.Dataset | xr.DataArray):
            resp = Y["responses"] if isinstance(Y, xr.Dataset) and "responses" in Y else Y
            if "time" not in resp.dims or "neuroid" not in resp.dims:
                raise DimensionError(
                    f"TimeResolvedEncoder.{func}(): the responses have dims {resp.dims!r}; "
                    "expected (sample, 'neuroid', 'time')."
                )
            if isinstance(X, xr.Dataset | xr.DataArray):
                features_matrix(X)  # one 2-D feature space, else a named error
            j = join_features(X, Y, func=f"TimeResolvedEncoder.{func}")
            times = j.times if j.times is not None else np.arange(j.responses.shape[2])
            Xm = j.matrix()
            if not np.issubdtype(Xm.dtype, np.floating):
                Xm = Xm.astype(np.float32)
            return Xm, j.responses, j.stimulus_id, j.neuroids, times, j.split
        Ym = np.asarray(Y)
        if Ym.ndim != 3:
            raise DimensionError(
                f"Invalid shape for 'Y': {Ym.shape!r}. Expected 3 dims (samples, neuroids, times)."
            )
        return as_matrix(X, name="X"), Ym, None, None, np.arange(Ym.shape[2]), None

    def _stack(self, cube: np.ndarray, wins) -> np.ndarray:
        n, v, _ = cube.shape
        return np.stack([cube[:, :, a:b].mean(2) for a, b in wins], axis=2).reshape(n, v * len(wins))

    def fit(self, X, Y):
        alphas, device, dtype = self._validate()
        Xm, cube, ids, tmpl, times, labels = self._responses(X, Y)
        wins = self._windows(cube.shape[2])
        Ys = self._stack(cube, wins)
        folds = resolve_folds(self.cv, Xm.shape[0], ids, func="TimeResolvedEncoder")
        from neuroalign.encoders._data import Aligned

        data = Aligned(Xm, Ys, ids, None, "sample", *feature_space(X), fitted_split(labels))
        self._fit_meta(data)
        ok = valid_neuroids(Ys, func="TimeResolvedEncoder.fit")
        res = self._fit_arrays(Xm, Ys[:, ok], folds, alphas, device, dtype)
        self._set_results(res, data, ok, alphas)
        centres = np.array([np.mean(times[a:b]) for a, b in wins])
        self.times_ = centres
        self._wins = wins
        self._cube_tmpl = tmpl
        v = cube.shape[1]
        coords = {"time": centres}
        if tmpl is not None:
            coords.update({k: c for k, c in tmpl.coords.items() if c.dims == ("neuroid",)})
        cv = np.where(ok, self.cv_scores_, np.nan).reshape(v, len(wins))
        self.cv_scores_ = xr.DataArray(cv, dims=("neuroid", "time"), coords=coords, name="cv_r2")
        self.cv_scores_.attrs.update(metric="r2", kind=CV_KIND)
        self.best_alphas_ = self.cv_scores_.copy(
            data=np.where(ok, self.best_alphas_, np.nan).reshape(v, len(wins))).rename("best_alpha")
        return self

    def to_dataset(self, ceiling=None) -> xr.Dataset:
        """The fit's results in the schema of :func:`neuroalign.store.check_results`, with
        a ``time`` dim: ``score`` (cross-validated R² per window, ``time`` = window centre;
        NaN for excluded neuroid-windows) and ``alpha`` on ``(layer, neuroid, time)`` (one
        layer: the feature space), the best-layer summaries on ``(neuroid, time)``. Every
        neuroid is kept. Several layers: one encoder per layer, joined with
        :func:`neuroalign.encoders.concat_results`."""
        from neuroalign.encoders._results import build_results, params_json

        if not hasattr(self, "times_"):
            raise NotFittedError("This TimeResolvedEncoder is not fitted yet; call fit(X, Y) first.")
        if ceiling is not None:
            raise ValueError(
                "TimeResolvedEncoder.to_dataset(): 'ceiling' is not supported (a noise ceiling "
                "per neuroid and time point is not defined here); expected None."
            )
        layer, model, fitted = getattr(self, "_space", ("features", "", "all"))
        return build_results(
            self.cv_scores_.values[None], layers=[layer], models=[model], template=self._cube_tmpl,
            alpha=self.best_alphas_.values[None], metric="r2", score_kind=CV_KIND, split=fitted,
            cv=cv_scheme(self.cv), encoder=type(self).__name__, params=params_json(self),
            times=self.times_, attrs={"window": int(self.window), "step": int(self.step)},
        )

    def predict(self, X):
        """Predictions, shape (n_samples, n_neuroids, n_windows)."""
        if not hasattr(self, "times_"):
            raise NotFittedError("This TimeResolvedEncoder is not fitted yet; call fit(X, Y) first.")
        Xm = np.asarray(features_matrix(X).values) if isinstance(X, xr.DataArray | xr.Dataset) else as_matrix(X, name="X")
        pred = RidgeEncoder.predict(self, Xm)
        return pred.reshape(pred.shape[0], -1, len(self._wins))

    def score(self, X, Y, sample_weight=None) -> xr.DataArray:
        """Held-out score (``metric``) per neuroid and window: DataArray ('neuroid', 'time')."""
        if not hasattr(self, "times_"):
            raise NotFittedError("This TimeResolvedEncoder is not fitted yet; call fit(X, Y) first.")
        Xm, cube, _, _, _, _ = self._responses(X, Y, func="score")
        Ys = self._stack(cube, self._wins)
        s = np.where(self.valid_neuroids_, SCORERS[self.metric](Ys, RidgeEncoder.predict(self, Xm)), np.nan)
        return self.cv_scores_.copy(data=s.reshape(self.cv_scores_.shape)).rename("score")
