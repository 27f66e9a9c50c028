"""Time series: FIR delays for naturalistic fMRI, and a time-resolved encoder for MEG/EEG
(:class:`TimeResolvedEncoder`, in :mod:`neuroalign.encoders._time_resolved`)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, TransformerMixin

from neuroalign._sklearn import as_container, check_fitted, check_x, check_xy, n_features_error
from neuroalign._validation import check_positive_int
from neuroalign.encoders._data import (
    as_matrix,
    check_finite,
    valid_neuroids,
)
from neuroalign.encoders._results import CV_KIND, cv_scheme
from neuroalign.encoders._ridge import DEFAULT_ALPHAS, RidgeEncoder, resolve_folds
from neuroalign.encoders._scoring import held_out_scores
from neuroalign.encoders._time_resolved import TimeResolvedEncoder
from neuroalign.store import cv_folds

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

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)
        Features of consecutive samples of one run.
    delays : sequence of int
        Delays in samples.

    Returns
    -------
    ndarray, shape (n_samples, n_features * len(delays))
        The delayed copies side by side.
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
    """scikit-learn transformer wrapping :func:`make_delays`.

    Rows are consecutive samples of one run, so the output depends on the row order by
    design (scikit-learn's sample-order and batch-invariance checks do not apply).

    Parameters
    ----------
    delays : sequence of int
        Delays in samples.
    """

    def __init__(self, delays=(1, 2, 3, 4)) -> None:
        self.delays = delays

    def fit(self, X, y=None):
        """Check the delays and record the number of features.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Features.
        y : None
            Ignored.

        Returns
        -------
        Delayer
            ``self``.
        """
        _check_delays(self.delays, "Delayer")
        X = check_x(X, func="Delayer.fit")
        check_finite(X, name="X", func="Delayer.fit")
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        """Delayed copies of ``X`` (see :func:`make_delays`).

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Features of consecutive samples.

        Returns
        -------
        ndarray, shape (n_samples, n_features * len(delays))
            The delayed features.
        """
        check_fitted(self, "n_features_in_", call="fit(X)")
        X = check_x(X, func="Delayer.transform")
        if X.shape[1] != self.n_features_in_:
            raise n_features_error(self, X.shape[1], self.n_features_in_)
        check_finite(X, name="X", func="Delayer.transform")
        return make_delays(X, self.delays)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags


def block_folds(n_samples: int, n_splits: int, *, n_blocks: int | None = None,
                random_state: int | None = 0):
    """Folds of contiguous blocks for autocorrelated time series.

    Samples are cut into ``n_blocks`` contiguous blocks (default ``4 * n_splits``) that are
    dealt into folds by :func:`neuroalign.store.cv_folds`, each block acting as one
    "stimulus", so no fold interleaves neighbouring samples.

    Parameters
    ----------
    n_samples : int
        Length of the time series.
    n_splits : int
        Number of folds.
    n_blocks : int, optional
        Number of contiguous blocks (default ``4 * n_splits``, at most ``n_samples``).
    random_state : int
        Seed of the assignment of blocks to folds.

    Returns
    -------
    list of (ndarray, ndarray)
        ``(train, test)`` sample indices of each fold.
    """
    n_blocks = n_blocks or 4 * n_splits
    if n_samples < n_blocks:
        n_blocks = n_samples
    labels = (np.arange(n_samples) * n_blocks // n_samples).astype(str)
    return cv_folds(labels, n_splits, random_state=random_state)


class FIREncoder(RidgeEncoder):
    """Ridge on FIR-delayed features for continuous time series (naturalistic fMRI).

    Rows of ``X`` and ``y`` are consecutive samples (TRs). Features are delayed by
    ``delays`` samples and concatenated; an integer ``cv`` uses contiguous blocks
    (:func:`block_folds`) so autocorrelation does not leak across folds. Because of the
    delays, predictions depend on the order (and the batching) of the rows, by design.

    Parameters
    ----------
    delays : sequence of int
        Delays in samples (e.g. ``(1, 2, 3, 4)`` at TR 2 s covers 2–8 s).
    alphas, cv, fit_intercept, device, form, n_targets_batch, metric, dtype, relative_alphas
        See :class:`RidgeEncoder`.

    Attributes
    ----------
    coef_ : ndarray, shape (n_delays * n_features, n_neuroids)
        Weights of the delayed features (delay-major, as :func:`make_delays` stacks them).
    delay_weights_ : ndarray, shape (n_delays, n_features, n_neuroids)
        The fitted FIR kernel.
    cv_scores_ : ndarray, shape (n_neuroids,)
        Cross-validated R² (mean over the block folds of the validation R² at the chosen
        alpha); NaN for excluded (NaN or constant) neuroids.
    n_features_in_ : int
        Features of ``X`` before the delays.
    """

    def __init__(self, delays=(1, 2, 3, 4), alphas=DEFAULT_ALPHAS, cv=5, fit_intercept=True,
                 device="auto", *, form: str = "auto", n_targets_batch: int = 4096,
                 metric="pearson", dtype="float32", relative_alphas: bool = True) -> None:
        super().__init__(alphas=alphas, cv=cv, fit_intercept=fit_intercept, device=device,
                         form=form, n_targets_batch=n_targets_batch, metric=metric, dtype=dtype,
                         relative_alphas=relative_alphas)
        self.delays = delays

    def fit(self, X, y, *, client=None, result_path=None, batch_size=None, cluster=None,
            cluster_options=None):
        """Fit a ridge on the delayed features, alphas chosen over contiguous block folds.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Features of consecutive samples (e.g. TRs of one run).
        y : array-like, shape (n_samples, n_neuroids) or (n_samples,)
            Responses of the same samples.
        client, result_path, batch_size, cluster, cluster_options
            Scale-out as in :meth:`RidgeEncoder.fit`: cells of neuroids cached under
            ``result_path``; a rerun fits only the missing cells. Same results as the
            single-process fit.

        Returns
        -------
        FIREncoder
            ``self``, fitted.
        """
        delays = _check_delays(self.delays, "FIREncoder")
        alphas, device, dtype = self._validate()
        X, y, self._y_1d = check_xy(X, y, func="FIREncoder.fit")
        Xm, Ym = as_matrix(X, name="X"), as_matrix(y, name="Y")
        check_finite(Xm, name="X", func="FIREncoder.fit")
        Xd = make_delays(Xm, delays)
        if isinstance(self.cv, int | np.integer) and not isinstance(self.cv, bool):
            folds = block_folds(len(Xd), check_positive_int(self.cv, name="cv", func="FIREncoder", minimum=2))
        else:
            folds = resolve_folds(self.cv, len(Xd), None, func="FIREncoder")
        from neuroalign.encoders._data import Aligned

        data = Aligned(Xd, Ym, None, None, "sample")
        self._fit_meta(data)
        ok = valid_neuroids(Ym, func="FIREncoder.fit")
        res = self._fit_arrays(Xd, Ym[:, ok], folds, alphas, device, dtype, scale={
            "client": client, "result_path": result_path, "batch_size": batch_size,
            "cluster": cluster, "cluster_options": cluster_options})
        self._set_results(res, data, ok, alphas)
        self.cv_scores_ = np.where(ok, self.cv_scores_, np.nan)
        p = Xm.shape[1]
        self.n_features_in_ = p
        self.delay_weights_ = self.coef_.reshape(len(delays), p, -1)
        return self

    def _delayed(self, X, func: str) -> np.ndarray:
        Xm = as_matrix(check_x(X, func=func), name="X")
        if Xm.shape[1] != self.n_features_in_:
            raise n_features_error(self, Xm.shape[1], self.n_features_in_)
        check_finite(Xm, name="X", func=func)
        return make_delays(Xm, self.delays)

    def predict(self, X):
        """Predictions from the delayed features of ``X`` (consecutive samples).

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Features of consecutive samples.

        Returns
        -------
        ndarray or torch.Tensor, shape (n_samples, n_neuroids)
            Predicted responses, in the container of ``X``.
        """
        self._check_fitted()
        pred = self._predict_matrix(self._delayed(X, "FIREncoder.predict"))
        return as_container(pred[:, 0] if self._y_1d else pred, X)

    def score(self, X, y, sample_weight=None):
        """Held-out score per neuroid (``metric``).

        NaN for excluded neuroids and for neuroids whose test responses are NaN, inf or
        constant.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Features of consecutive held-out samples.
        y : array-like, shape (n_samples, n_neuroids) or (n_samples,)
            Their responses.
        sample_weight : None
            Not supported (scikit-learn's signature); must be None.

        Returns
        -------
        ndarray or float
            The scores (a float for a 1-d ``y``).
        """
        self._check_fitted()
        if sample_weight is not None:
            raise ValueError("FIREncoder.score(): sample_weight is not supported; expected None.")
        X, y, y_1d = check_xy(X, y, func="FIREncoder.score", min_samples=1, y_finite_1d=False)
        Ym = as_matrix(y, name="Y")
        s = held_out_scores(Ym, self._predict_matrix(self._delayed(X, "FIREncoder.score")),
                            self.valid_neuroids_, self.metric, func="FIREncoder.score")
        return float(s[0]) if y_1d else s

    def to_dataset(self, ceiling=None) -> xr.Dataset:
        """The fit's results in the schema of :func:`neuroalign.store.check_results`: one
        layer (the features), ``score`` the cross-validated R² over block folds, ``alpha``
        the chosen penalty; excluded neuroids left out.

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
            self.cv_scores_[None], layers=["features"], template=None, valid=self.valid_neuroids_,
            alpha=self.best_alphas_[None], metric="r2", score_kind=CV_KIND, split="all",
            cv=cv_scheme(self.cv, blocks=True), encoder=type(self).__name__,
            params=params_json(self), ceiling=ceiling,
            attrs={"delays": list(_check_delays(self.delays, "FIREncoder"))},
        )
