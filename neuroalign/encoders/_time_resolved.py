"""TimeResolvedEncoder: one ridge encoder per time point (or sliding window) of MEG/EEG
responses, every (neuroid, window) fitted in one cross-validated ridge."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign._sklearn import as_container, check_fitted, check_x, check_xy
from neuroalign._validation import check_positive_int
from neuroalign.encoders._data import (
    as_matrix,
    check_finite,
    feature_space,
    features_matrix,
    fitted_split,
    valid_neuroids,
)
from neuroalign.encoders._results import CV_KIND, cv_scheme
from neuroalign.encoders._ridge import DEFAULT_ALPHAS, RidgeEncoder, resolve_folds
from neuroalign.encoders._scoring import held_out_scores
from neuroalign.exceptions import DimensionError
from neuroalign.store._join import join_features

__all__ = ["TimeResolvedEncoder"]


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
    alphas, cv, fit_intercept, device, form, n_targets_batch, metric, dtype, relative_alphas
        See :class:`RidgeEncoder`.

    Attributes
    ----------
    cv_scores_ : DataArray, dims ('neuroid', 'time')
        Cross-validated R² per neuroid and window (``time`` = window centre).
    best_alphas_ : DataArray, dims ('neuroid', 'time')

    Notes
    -----
    Array responses are ``(n_samples, n_neuroids, n_times)``; a 2-d ``y`` is one time point
    of each neuroid and a 1-d ``y`` one neuroid at one time point (predictions and scores
    come back in the same shape).
    """

    def __init__(self, window: int = 1, step: int = 1, alphas=DEFAULT_ALPHAS, cv=5,
                 fit_intercept=True, device="auto", *, form: str = "auto",
                 n_targets_batch: int = 4096, metric="pearson", dtype="float32",
                 relative_alphas: bool = True) -> None:
        super().__init__(alphas=alphas, cv=cv, fit_intercept=fit_intercept, device=device,
                         form=form, n_targets_batch=n_targets_batch, metric=metric, dtype=dtype,
                         relative_alphas=relative_alphas)
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
        y ndim, split labels); xarray inputs through the one join on ``stimulus_id``."""
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
            check_finite(Xm, name="X", func=f"TimeResolvedEncoder.{func}",
                         row_labels=j.stimulus_id)
            return Xm, j.responses, j.stimulus_id, j.neuroids, times, 3, j.split
        if isinstance(X, xr.Dataset | xr.DataArray):  # features with array responses
            X = as_matrix(X, name="X")
        Xm, Ym, y_1d = check_xy(
            X, Y, func=f"TimeResolvedEncoder.{func}", min_samples=2 if func == "fit" else 1,
            y_finite_1d=func == "fit", y_ndims=(1, 2, 3),
            y_expected="3 dims (samples, neuroids, times), or 2 dims (samples, neuroids) for one "
                       "time point")
        cube = Ym.reshape(Ym.shape[0], -1, 1) if Ym.ndim < 3 else Ym
        Xm = as_matrix(Xm, name="X")
        check_finite(Xm, name="X", func=f"TimeResolvedEncoder.{func}")
        return Xm, cube, None, None, np.arange(cube.shape[2]), 1 if y_1d else Ym.ndim, None

    def _stack(self, cube: np.ndarray, wins) -> np.ndarray:
        n, v, _ = cube.shape
        return np.stack([cube[:, :, a:b].mean(2) for a, b in wins], axis=2).reshape(n, v * len(wins))

    def fit(self, X, y, *, client=None, result_path=None, batch_size=None, cluster=None,
            cluster_options=None):
        """Fit every (neuroid, window) in one cross-validated ridge.

        Parameters
        ----------
        X : xr.Dataset, xr.DataArray or array-like
            Features, one row per stimulus (joined on ``stimulus_id`` for xarray inputs).
        y : xr.Dataset or array-like (n_samples, n_neuroids, n_times)
            An MEG/EEG store or a response cube.
        client, result_path, batch_size, cluster, cluster_options
            Scale-out as in :meth:`RidgeEncoder.fit`: cells of (neuroid, window) targets cached under
            ``result_path``; a rerun fits only the missing cells. Same results as the
            single-process fit.

        Returns
        -------
        TimeResolvedEncoder
            ``self``, fitted.
        """
        alphas, device, dtype = self._validate()
        Xm, cube, ids, tmpl, times, self._y_ndim, labels = self._responses(X, y)
        wins = self._windows(cube.shape[2])
        Ys = self._stack(cube, wins)
        folds = resolve_folds(self.cv, Xm.shape[0], ids, func="TimeResolvedEncoder")
        from neuroalign.encoders._data import Aligned

        data = Aligned(Xm, Ys, ids, None, "sample", *feature_space(X), fitted_split(labels))
        self._fit_meta(data)
        ok = valid_neuroids(Ys, func="TimeResolvedEncoder.fit")
        res = self._fit_arrays(Xm, Ys[:, ok], folds, alphas, device, dtype, scale={
            "client": client, "result_path": result_path, "batch_size": batch_size,
            "cluster": cluster, "cluster_options": cluster_options})
        self._set_results(res, data, ok, alphas)
        centres = np.array([np.mean(times[a:b]) for a, b in wins])
        self.times_ = centres
        self._wins = wins
        self._cube_tmpl = tmpl
        self._fit_times = np.asarray(times)
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

    def _check_fitted(self) -> None:
        check_fitted(self, "times_")

    def to_dataset(self, ceiling=None) -> xr.Dataset:
        """The fit's results in the schema of :func:`neuroalign.store.check_results`.

        Parameters
        ----------
        ceiling : array-like, optional
            Noise ceiling in percent per neuroid: adds ``noise_ceiling`` and
            ``ceiling_normalised``.

        Returns
        -------
        xr.Dataset
            With a ``time`` dim: ``score`` (cross-validated R² per window, ``time`` = window
            centre; NaN for excluded neuroid-windows) and ``alpha`` on ``(layer, neuroid,
            time)`` (one layer: the feature space), the best-layer summaries on ``(neuroid,
            time)``. Every neuroid is kept. Several layers: one encoder per layer, joined
            with :func:`neuroalign.encoders.concat_results`.
        """
        from neuroalign.encoders._results import build_results, params_json

        self._check_fitted()
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

    def _shaped(self, flat: np.ndarray) -> np.ndarray:
        """(..., n_neuroids * n_windows) -> the shape of the fitted ``y``."""
        out = flat.reshape(*flat.shape[:-1], -1, len(self._wins))
        if self._y_ndim == 3:
            return out
        out = out[..., 0]
        return out[..., 0] if self._y_ndim == 1 else out

    def predict(self, X):
        """Predicted responses of every window.

        Parameters
        ----------
        X : xr.Dataset, xr.DataArray or array-like
            Features.

        Returns
        -------
        ndarray, torch.Tensor or xr.DataArray
            Shape (n_samples, n_neuroids, n_windows) (the shape of a 1-d or 2-d ``y`` when
            fitted on one), in the container of ``X``: for xarray features a DataArray
            ('stimulus', 'neuroid', 'time') with the features' stimulus coordinates, the
            neuroid coordinates and the window centres.
        """
        self._check_fitted()
        fm = features_matrix(X) if isinstance(X, xr.DataArray | xr.Dataset) else None
        Xm = np.asarray(fm.values) if fm is not None \
            else as_matrix(check_x(X, func="TimeResolvedEncoder.predict"), name="X")
        self._check_n_features(Xm)
        check_finite(Xm, name="X", func="TimeResolvedEncoder.predict")
        if fm is None:
            return as_container(self._shaped(self._predict_matrix(Xm)), X)
        pred = self._predict_matrix(Xm).reshape(len(Xm), -1, len(self._wins))
        coords = {k: ("stimulus", np.asarray(v.values)) for k, v in fm.coords.items()
                  if v.dims == (fm.dims[0],)}
        out = xr.DataArray(pred, dims=("stimulus", "neuroid", "time"), coords=coords,
                           name="prediction")
        tmpl = self.cv_scores_.coords
        return out.assign_coords({k: v for k, v in tmpl.items()
                                  if v.dims in (("neuroid",), ("time",))})

    def _in_fit_order(self, cube: np.ndarray, tmpl, times) -> np.ndarray:
        """The response cube with the fit's neuroids and time points, in the fit's order:
        matched on ``neuroid_id`` and on the time coordinate when the responses carry them
        (any order), else taken as they come (the fit's count needed)."""
        from neuroalign.encoders._neuroid_scores import _label_positions, fitted_positions

        func = "TimeResolvedEncoder.score"
        n_fit = self.cv_scores_.sizes["neuroid"]
        fit_times = getattr(self, "_fit_times", np.arange(cube.shape[2]))
        for axis, pos, n, what in (
            (2, fitted_positions(fit_times, times, what="time points", func=func),
             len(fit_times), "time points"),
            (1, _label_positions(self._cube_tmpl, tmpl, cube.shape[1], n_fit, func),
             n_fit, "neuroids"),
        ):
            if pos is None:
                continue
            if len(pos) != n:
                raise DimensionError(
                    f"{func}(): the responses have {len(pos)} of the fit's {n} {what}; "
                    f"expected all of them (any order): windows and scores follow the fit's."
                )
            cube = np.take(cube, np.argsort(pos), axis=axis)
        return cube

    def score(self, X, y, sample_weight=None):
        """Held-out score (``metric``) per neuroid and window.

        Parameters
        ----------
        X : xr.Dataset, xr.DataArray or array-like
            Features of held-out stimuli.
        y : xr.Dataset or array-like
            Their responses (the features may cover more stimuli), with the fit's neuroids
            and time points: matched on ``neuroid_id`` and time when labelled (any order),
            else in the fit's order.
        sample_weight : None
            Not supported (scikit-learn's signature); must be None.

        Returns
        -------
        xr.DataArray, ndarray or float
            A DataArray ('neuroid', 'time') for xarray inputs, else an ndarray in the shape
            of ``y``'s trailing dims (a float for a 1-d ``y``). NaN for excluded neuroids
            and for undefined scores.
        """
        self._check_fitted()
        if sample_weight is not None:
            raise ValueError("TimeResolvedEncoder.score(): sample_weight is not supported; "
                             "expected None.")
        Xm, cube, _, tmpl, times, ndim, _ = self._responses(X, y, func="score")
        self._check_n_features(Xm)
        cube = self._in_fit_order(cube, tmpl, times)
        Ys = self._stack(cube, self._wins)
        s = held_out_scores(Ys, self._predict_matrix(Xm), self.valid_neuroids_, self.metric,
                            func="TimeResolvedEncoder.score")
        if tmpl is None and not isinstance(y, xr.Dataset | xr.DataArray):
            if ndim == 1:
                return float(s[0])
            return s.reshape(-1, len(self._wins)) if ndim == 3 else s
        return self.cv_scores_.copy(data=s.reshape(self.cv_scores_.shape)).rename("score")
