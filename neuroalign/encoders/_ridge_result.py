"""What a cross-validated ridge fit returns (:class:`RidgeCVResult`), and the linear
prediction with float64 offsets that every ridge-family encoder predicts with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neuroalign.encoders._backend import like_input, to_numpy
from neuroalign.encoders._dual import DualWeights

__all__ = ["RidgeCVResult", "predict_linear", "predict_columns"]


class _LazyCoef:
    """``RidgeCVResult.coef``: the weights as set, or, for a fit in the dual form (``dual``
    set, ``coef`` not), formed from the dual coefficients on first access (a block of
    features at a time, in the working dtype) and kept."""

    def __get__(self, obj, objtype=None):
        if obj is None:
            return None  # the dataclass default
        coef = obj.__dict__.get("_coef")
        if coef is None and obj.__dict__.get("dual") is not None:
            coef = obj.__dict__["_coef"] = like_input(obj.dual.coef(), *obj._inputs)
        return coef

    def __set__(self, obj, value) -> None:
        obj.__dict__["_coef"] = value


@dataclass
class RidgeCVResult:
    """What a cross-validated ridge fit returns (all numpy, on CPU, except the weights,
    which are of the input's kind: numpy arrays, or torch tensors on the input's device).

    Attributes
    ----------
    best_alpha_index : ndarray of int, shape (n_targets,)
    best_alphas : ndarray, shape (n_targets,)
        Chosen alphas, in the units of the ``alphas`` grid (relative to the feature scale
        unless ``relative_alphas=False``); the penalty applied is
        ``best_alphas * alpha_scale``.
    cv_scores : ndarray, shape (n_targets,)
        Mean over folds of the validation R² at the best alpha (each fold's R² uses the
        validation fold's own mean); for ``"loo"``, ``1 - PRESS / SST``.
    cv_mse : ndarray, shape (n_alphas, n_targets)
        Mean over folds of the validation mean squared error, in the targets' units.
    cv_r2 : ndarray, shape (n_alphas, n_targets)
        Mean over folds of the validation R².
    form : str
        ``"primal"`` or ``"dual"`` (``"loo"`` for leave-one-out).
    coef, intercept : ndarray, torch.Tensor or None
        With ``refit=True``: weights (n_features, n_targets) and intercepts in the data's
        units, ``Y ≈ X @ coef + intercept``.
    alpha_scale : float
        Factor from the alphas grid to the penalty applied on the data as given.
    x_offset : ndarray (n_features,) or None, y_offset : ndarray (n_targets,) or None
        With ``refit=True`` (float64): ``Y ≈ (X - x_offset) @ coef + y_offset``, the form to
        predict with in low precision when the features carry a large mean.
    dual : DualWeights or None
        With ``refit=True`` in the dual form: the fitted model as dual coefficients
        (n_samples, n_targets), ``coef = (X - x_offset)^T dual.dual``; ``coef`` is then
        formed from them on first access (and kept), and :meth:`predict` goes through the
        kernel without it.
    """

    _inputs = ()  # the fit's (X, Y), for the kind (numpy/torch) of the lazy weights

    best_alpha_index: np.ndarray
    best_alphas: np.ndarray
    cv_scores: np.ndarray
    cv_mse: np.ndarray
    cv_r2: np.ndarray
    form: str
    coef: Any = _LazyCoef()
    intercept: Any = None
    alpha_scale: float = 1.0
    x_offset: np.ndarray | None = None
    y_offset: np.ndarray | None = None
    dual: DualWeights | None = None

    def predict(self, X) -> np.ndarray:
        """Predictions of the refitted model (``refit=True``) for numpy features ``X``."""
        if self.dual is not None and self.__dict__.get("_coef") is None:
            return to_numpy(self.dual.predict(X, self.y_offset))
        if self.coef is None:
            raise ValueError("RidgeCVResult.predict(): fitted without refit=True; no weights.")
        return predict_linear(X, np.asarray(self.coef), np.asarray(self.intercept),
                              self.x_offset, self.y_offset)


def predict_linear(Xm, coef, intercept, x_offset=None, y_offset=None) -> np.ndarray:
    """``(X - x_offset) @ coef + y_offset`` with the offsets in float64 (exact in float32
    when the features carry a large mean), else ``X @ coef + intercept``. float64 features
    give float64 predictions; others are computed in the precision of ``coef``."""
    return predict_columns(Xm, coef, intercept, x_offset, y_offset)(0, coef.shape[1])


def predict_columns(Xm, coef, intercept, x_offset=None, y_offset=None, fitted=None):
    """:func:`predict_linear` a block of neuroids at a time: a function ``(start, stop)``
    that gives the predictions of neuroids ``start:stop``, as
    :func:`~neuroalign.encoders._neuroid_scores.held_out_scores` takes them.

    With ``fitted`` (bool over all neuroids; ``coef`` holds the fitted neuroids' columns),
    the others are NaN.
    """
    dtype = np.result_type(np.asarray(Xm).dtype, coef.dtype)
    if not np.issubdtype(dtype, np.floating):
        dtype = coef.dtype
    if x_offset is None:
        Xc, offset = np.asarray(Xm, dtype=dtype), np.asarray(intercept)
    else:
        Xc = (np.asarray(Xm, dtype=np.float64) - x_offset).astype(dtype, copy=False)
        offset = np.asarray(y_offset)
    if offset.ndim == 0:  # one value for every neuroid
        offset = np.broadcast_to(offset, coef.shape[1:])
    pos = None if fitted is None else np.cumsum(fitted) - 1

    def predict(start: int, stop: int) -> np.ndarray:
        if pos is None:
            return Xc @ coef[:, start:stop].astype(dtype, copy=False) + offset[start:stop].astype(dtype)
        keep = np.asarray(fitted[start:stop], dtype=bool)
        cols = pos[start:stop][keep]
        out = np.full((Xc.shape[0], stop - start), np.nan, dtype=dtype)
        out[:, keep] = Xc @ coef[:, cols].astype(dtype, copy=False) + offset[cols].astype(dtype)
        return out

    return predict
