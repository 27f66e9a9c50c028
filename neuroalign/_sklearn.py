"""scikit-learn conventions shared by neuroalign's estimators.

Imported only by the modules that define estimators (never by ``import neuroalign``), so
scikit-learn is loaded on first use of an estimator.

- :func:`check_fitted`: ``check_is_fitted`` raising :class:`EstimatorNotFittedError`, which
  is both neuroalign's and scikit-learn's ``NotFittedError``.
- :func:`check_xy` / :func:`check_x`: the input rules of scikit-learn's ``check_X_y`` /
  ``check_array`` for array inputs (sparse, complex, 1-d ``X``, empty, object dtype, ``y``
  missing or of the wrong length), with the messages scikit-learn's checks expect.
  xarray inputs pass through untouched (they are joined on ``stimulus_id`` later).
- :func:`as_container`: a result in the container of the input (ndarray, torch tensor).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.exceptions import NotFittedError as _SklearnNotFitted
from sklearn.utils.validation import check_array, check_is_fitted

from neuroalign.exceptions import DimensionError, NotFittedError

__all__ = ["EstimatorNotFittedError", "check_fitted", "check_x", "check_xy", "is_xarray", "is_table",
           "n_features_error", "as_container", "regressor_tags", "DEPRECATED", "random_state_of"]


class EstimatorNotFittedError(NotFittedError, _SklearnNotFitted):
    """An estimator was used before ``fit``: neuroalign's and scikit-learn's NotFittedError."""


def is_xarray(obj: Any) -> bool:
    import xarray as xr

    return isinstance(obj, xr.Dataset | xr.DataArray)


def is_table(obj: Any) -> bool:
    """A dict of feature spaces or layers (not a scipy ``dok`` matrix, also a dict)."""
    return isinstance(obj, dict) and not hasattr(obj, "tocsr")


def _is_torch(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch")


def check_fitted(estimator, attributes=None, *, call: str = "fit(X, Y)") -> None:
    """Raise :class:`EstimatorNotFittedError` unless ``estimator`` is fitted.

    Fitted means: it has the fitted ``attributes`` (default: any attribute ending in
    ``_``), as :func:`sklearn.utils.validation.check_is_fitted` decides.
    """
    try:
        check_is_fitted(estimator, attributes)
    except _SklearnNotFitted:
        raise EstimatorNotFittedError(
            f"This {type(estimator).__name__} is not fitted yet; call {call} before using it."
        ) from None


def _array(obj: Any, *, name: str, min_samples: int, func: str) -> np.ndarray:
    if _is_torch(obj):
        obj = obj.detach().cpu().numpy()
    try:
        return check_array(obj, accept_sparse=False, dtype="numeric", ensure_all_finite=False,
                           ensure_2d=True, allow_nd=False, ensure_min_samples=min_samples,
                           input_name=name)
    except TypeError as err:  # sparse input: scikit-learn's message says so
        raise TypeError(f"{func}: {err}") from None
    except ValueError as err:
        raise ValueError(f"{func}: invalid {name!r}: {err}") from None


def check_x(X: Any, *, func: str, min_samples: int = 1):
    """``X`` as a 2-d numeric ndarray (array inputs); xarray objects are returned as they are."""
    if is_xarray(X) or is_table(X):
        return X
    return _array(X, name="X", min_samples=min_samples, func=func)


def check_xy(X: Any, Y: Any, *, func: str, min_samples: int = 2, y_finite_1d: bool = True,
             y_ndims: tuple[int, ...] = (1, 2),
             y_expected: str = "(n_samples,) or (n_samples, n_neuroids)"):
    """-> (X, Y, y_1d): array inputs validated as scikit-learn's ``check_X_y`` would.

    ``Y`` may be 1-d (one target; ``y_1d`` is True and ``Y`` is returned as a column) or
    2-d (neuroids); ``y_ndims`` widens that (e.g. 3-d responses with time), ``y_expected``
    says so in the error. Non-finite values of a 2-d ``Y`` are left to the estimator (it excludes
    such neuroids with a warning); a 1-d ``y`` must be finite (``y_finite_1d``), since
    excluding its only target would leave nothing to fit. xarray inputs pass through with
    ``y_1d`` False.
    """
    name = func.split(".")[0]
    if Y is None:
        raise ValueError(
            f"{name} requires y to be passed, but the target y is None. Expected responses "
            "(n_samples, n_neuroids)."
        )
    if is_xarray(X) or is_xarray(Y) or is_table(X):
        return X, Y, False
    Xa = _array(X, name="X", min_samples=min_samples, func=func)
    if _is_torch(Y):
        Y = Y.detach().cpu().numpy()
    Ya = np.asarray(Y)
    if Ya.dtype == object:
        Ya = Ya.astype(np.float64)
    if np.iscomplexobj(Ya):
        raise ValueError(f"{func}: invalid 'y': Complex data not supported.")
    y_1d = Ya.ndim == 1
    if Ya.ndim not in y_ndims:
        raise DimensionError(f"{func}: invalid shape for 'Y': {Ya.shape!r}. Expected {y_expected}.")
    if Ya.shape[0] != Xa.shape[0]:
        raise DimensionError(
            f"{func}: X has {Xa.shape[0]} samples and Y has {Ya.shape[0]}; expected the same "
            "number of rows (inconsistent numbers of samples)."
        )
    if y_1d and y_finite_1d and not np.isfinite(Ya).all():
        what = "NaN" if np.isnan(Ya).any() else "infinity or a value too large for dtype('float64')"
        raise ValueError(
            f"{func}: Input y contains {what}. A single target (1-d y) must be finite."
        )
    return Xa, (Ya[:, None] if y_1d else Ya), y_1d


def n_features_error(estimator, n_given: int, n_fitted: int, what: str = "X") -> DimensionError:
    """The error for features of the wrong width (scikit-learn's wording)."""
    return DimensionError(
        f"{what} has {n_given} features, but {type(estimator).__name__} is expecting "
        f"{n_fitted} features as input (it was fitted with {n_fitted})."
    )


def as_container(values: np.ndarray, like: Any):
    """``values`` (ndarray) as a torch tensor on the device of ``like`` when ``like`` is one;
    else unchanged."""
    if not _is_torch(like):
        return values
    import torch

    return torch.from_numpy(np.ascontiguousarray(values)).to(like.device)


def regressor_tags(tags, *, multi_output: bool = True, allow_nan: bool = False,
                   poor_score: bool = False):
    """Fill the scikit-learn tags of a multi-target regressor on dense, finite input."""
    tags.target_tags.required = True
    tags.target_tags.multi_output = multi_output
    tags.input_tags.sparse = False
    tags.input_tags.allow_nan = allow_nan
    if tags.regressor_tags is not None:
        tags.regressor_tags.poor_score = poor_score
    return tags


#: Default of a deprecated ``seed`` parameter of an estimator (a string, so ``clone`` keeps it).
DEPRECATED = "deprecated"


def random_state_of(estimator, *, func: str):
    """The estimator's ``random_state``, or its deprecated ``seed`` when that was set (with a
    ``FutureWarning``). Setting both raises ``TypeError``."""
    import warnings

    seed = getattr(estimator, "seed", DEPRECATED)
    if isinstance(seed, str) and seed == DEPRECATED:
        return estimator.random_state
    if estimator.random_state not in (None, 0):
        raise TypeError(f"{func}: got both 'seed' (deprecated) and 'random_state'; pass only "
                        "'random_state'.")
    warnings.warn(
        f"{func}: 'seed' is deprecated and will be removed; use random_state={seed!r} instead.",
        FutureWarning, stacklevel=3,
    )
    return seed
