"""Input handling shared by the comparison functions.

Every comparison accepts numpy arrays, torch tensors, DataArrays and stores. This module
turns them into a plain 2-D array ``(n_stimuli, n_channels)`` with its stimulus ids, joins
two inputs on ``stimulus_id`` (exactly: a mismatch raises and names the stimuli), and
moves arrays to and from torch devices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError, DimensionError

__all__ = [
    "as_matrix",
    "align_stimuli",
    "is_torch",
    "to_numpy",
    "to_torch",
    "check_finite",
    "centre_columns",
]

_SAMPLE_DIMS = ("stimulus", "presentation")


def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (without importing torch when absent)."""
    mod = type(x).__module__
    return mod.startswith("torch")


def to_numpy(x: Any) -> np.ndarray:
    """A numpy copy or view of ``x`` (torch tensors are detached and moved to the CPU)."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def to_torch(x: Any, device: str, dtype=None):
    """``x`` as a torch tensor on ``device`` (float64 unless ``dtype`` is given)."""
    import torch

    if dtype is None:
        dtype = torch.float64
    if is_torch(x):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


_FINITE_BLOCK = 2**23  # elements checked at a time


def check_finite(x: Any, *, name: str, func: str) -> None:
    """Raise ``ValueError`` naming ``name`` when ``x`` holds NaN or infinite values."""
    if is_torch(x):
        import torch

        bad = int((~torch.isfinite(x)).sum())
    else:
        x = np.asarray(x)
        if x.ndim < 2:
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        else:  # by blocks of rows: no boolean copy of the whole data (8 MiB at a time)
            rows = max(1, _FINITE_BLOCK // max(1, np.size(x[0])))
            bad = sum(int(np.size(x[s:s + rows]) - np.count_nonzero(np.isfinite(x[s:s + rows])))
                      for s in range(0, len(x), rows))
    if bad:
        raise ValueError(
            f"Invalid value for {name!r} in {func}(): {bad} NaN or infinite value(s). "
            "Expected finite values (drop or impute missing channels first)."
        )


def _store_array(ds: xr.Dataset, *, name: str, func: str) -> xr.DataArray:
    if "responses" in ds.data_vars:
        return ds["responses"]
    layers = [v for v in ds.data_vars if "stimulus" in ds[v].dims]
    if len(layers) == 1:
        return ds[layers[0]]
    raise DimensionError(
        f"Invalid value for {name!r} in {func}(): a Dataset with variables "
        f"{format_list(ds.data_vars)}. Expected a store (variable 'responses') or features "
        "with one layer; pass one layer, e.g. features['layer1']."
    )


def as_matrix(
    data: Any,
    *,
    name: str,
    func: str,
    allow_trials: bool = False,
    keep_torch: bool = False,
) -> tuple[Any, np.ndarray | None, str | None]:
    """Turn ``data`` into a 2-D array ``(n_samples, n_channels)``.

    Parameters
    ----------
    data : array-like, torch.Tensor, xr.DataArray or xr.Dataset
        Arrays must be 2-D with stimuli on rows. A DataArray needs a ``stimulus`` (or, with
        ``allow_trials``, ``presentation``) dim; its other dim is the channel dim. A Dataset
        is a store (variable ``responses``) or a features Dataset with one variable.
    name, func : str
        For error messages.
    allow_trials : bool
        Accept trial-level data (dim ``presentation``), e.g. for crossnobis.
    keep_torch : bool
        Return torch tensors unchanged (else they become numpy arrays).

    Returns
    -------
    matrix : ndarray or torch.Tensor
    stimulus_ids : ndarray of str or None
        ``None`` for plain arrays.
    sample_dim : str or None
    """
    if isinstance(data, xr.Dataset):
        data = _store_array(data, name=name, func=func)
    if isinstance(data, xr.DataArray):
        sdims = [d for d in data.dims if d in _SAMPLE_DIMS]
        if not sdims:
            raise DimensionError(
                f"Invalid value for {name!r} in {func}(): a DataArray with dims {data.dims!r}. "
                "Expected a 'stimulus' dim (stimuli on rows) and one channel dim."
            )
        sdim = sdims[0]
        if sdim == "presentation" and not allow_trials:
            raise DimensionError(
                f"Invalid value for {name!r} in {func}(): trial-level data (dim 'presentation'). "
                f"{func}() needs one row per stimulus; call store.na.average_repetitions() first."
            )
        if data.ndim != 2:
            raise DimensionError(
                f"Invalid value for {name!r} in {func}(): a DataArray with dims {data.dims!r}. "
                f"Expected 2 dims ('{sdim}', <channel dim>); select one time point or use "
                "rsa_timecourse() for time-resolved data."
            )
        other = [d for d in data.dims if d != sdim][0]
        data = data.transpose(sdim, other)
        ids = data.coords["stimulus_id"].values.astype(str) if "stimulus_id" in data.coords else None
        mat = np.asarray(data.values)
        return mat, ids, sdim
    if is_torch(data):
        mat = data if keep_torch else to_numpy(data)
    else:
        mat = np.asarray(data)
        if mat.dtype == object:
            raise DataFormatError(
                f"Invalid value for {name!r} in {func}(): an object array. "
                "Expected a numeric array of shape (n_stimuli, n_channels)."
            )
    if mat.ndim != 2:
        raise DimensionError(
            f"Invalid value for {name!r} in {func}(): an array of shape {tuple(mat.shape)!r}. "
            "Expected 2 dims (n_stimuli, n_channels)."
        )
    return mat, None, None


def align_stimuli(
    ids_a: np.ndarray | None,
    ids_b: np.ndarray | None,
    *,
    names: tuple[str, str],
    func: str,
    n_a: int,
    n_b: int,
) -> np.ndarray | None:
    """Index into ``b`` that puts its stimuli in ``a``'s order (``None``: already aligned).

    Without ids on both sides, the row counts must agree. With ids on both sides the sets
    must be identical; a missing or extra stimulus raises :class:`StimulusMismatchError`
    naming them.
    """
    if ids_a is None or ids_b is None:
        if n_a != n_b:
            raise DimensionError(
                f"{func}(): {names[0]!r} has {n_a} stimuli but {names[1]!r} has {n_b}. "
                "Expected the same stimuli in the same order."
            )
        return None
    if np.array_equal(ids_a, ids_b) and len(set(ids_a)) == len(ids_a):
        return None
    from neuroalign.store._join import match_stimuli  # the one join on stimulus_id

    return match_stimuli(ids_b, ids_a, have_name=repr(names[1]), want_name=repr(names[0]),
                         func=func, exact=True)


def centre_columns(X: Any, means: Any = None) -> Any:
    """``X`` minus its column means (or ``means``), with the columns that are constant to
    rounding set to 0.

    Centring a constant column ``c`` leaves rounding errors of a few ``eps |c|``, which
    whitening (shape metrics) or normalisation would blow up into a channel of noise; a
    column whose centred values are all below ``64 eps sqrt(n)`` times its own magnitude is
    exactly 0 after centring in exact arithmetic, and is made so. Works on numpy and torch.
    """
    Xc = X - (X.mean(axis=0, keepdims=True) if means is None else means)
    n = X.shape[0]
    if is_torch(X):
        peak, peak_c = X.abs().amax(dim=0), Xc.abs().amax(dim=0)
    else:
        peak = np.maximum(X.max(axis=0), -X.min(axis=0))
        peak_c = np.maximum(Xc.max(axis=0), -Xc.min(axis=0))
    const = peak_c <= 64 * np.finfo(np.float64).eps * np.sqrt(n) * peak
    if bool(const.any()):
        Xc[:, const] = 0
    return Xc
