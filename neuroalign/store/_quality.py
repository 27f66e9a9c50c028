"""Reporting neuroids whose values are NaN, infinite or constant (store-level estimates).

Reliability estimates mark such neuroids NaN (never 0, ``inf`` or 100 %) and say so with
one :class:`~neuroalign.exceptions.DataQualityWarning` that counts and names them, or, with
``strict=True``, raise a :class:`~neuroalign.exceptions.DataFormatError` with the same text.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError, DataQualityWarning, DimensionError
from neuroalign.store._schema import NEUROID_DIM, TRIAL_DIM, check_store, sample_dim

__all__ = [
    "report_neuroids",
    "neuroid_labels",
    "require_trials",
    "blocks",
    "finish_estimate",
]

# status codes returned beside each estimate (one per neuroid / time point)
OK, INF, CONST, TOO_FEW, NO_NOISE = range(5)
ZERO_NOISE = 1e-12  # noise variance of z-scored data below this is "no noise at all"
BLOCK = 2**20  # values per block of neuroids held in float64 at a time


def require_trials(ds: xr.Dataset, func: str) -> None:
    check_store(ds)
    if sample_dim(ds) != TRIAL_DIM:
        raise DimensionError(
            f"{func}() needs a trial-level store (dim 'presentation') with repetitions; "
            "this store is averaged (dim 'stimulus')."
        )


def blocks(x: np.ndarray):
    flat = x.reshape(-1, x.shape[-1])
    step = max(1, BLOCK // max(flat.shape[1], 1))
    for start in range(0, flat.shape[0], step):
        # rows contiguous whatever the layout of x (a transposed store gave column-major
        # blocks, whose row sums numpy takes in another order than a row's own)
        yield slice(start, start + step), flat[start : start + step].astype(np.float64, order="C")


def finish_estimate(
    da: xr.DataArray, values: xr.DataArray, func: str, reasons: dict[str, int], *, strict: bool
) -> xr.DataArray:
    """Split ``values`` (last dim: value, status, missing) and report flagged neuroids."""
    values = values.drop_vars(
        [c for c in values.coords if TRIAL_DIM in values[c].dims], errors="ignore"
    ).compute()
    out = values.isel(_out=0, drop=True)
    status = np.asarray(values.isel(_out=1).values).astype(int)
    missing = np.asarray(values.isel(_out=2).values) > 0
    labels = neuroid_labels(da, da.sizes[NEUROID_DIM])
    report_neuroids(
        f"{func}()",
        labels,
        {text: status == code for text, code in reasons.items()},
        outcome=f"Their {func} is NaN",
        strict=strict,
        stacklevel=4,
    )
    report_neuroids(
        f"{func}()",
        labels,
        {"in some presentations": missing & (status == OK)},
        header="have missing (NaN) values",
        outcome="Those presentations were left out for them (a NaN is a missing trial)",
        strict=strict,
        stacklevel=4,
    )
    return out


def neuroid_labels(obj, n: int) -> np.ndarray:
    """``neuroid_id`` values of ``obj`` when it has them, else positions ``0 .. n-1``."""
    coords = getattr(obj, "coords", {})
    if "neuroid_id" in coords and coords["neuroid_id"].size == n:
        return np.asarray(coords["neuroid_id"].values)
    return np.arange(n)


def _any_but_first(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    return mask.reshape(mask.shape[0], -1).any(axis=1) if mask.ndim > 1 else mask


def report_neuroids(
    func: str,
    labels: np.ndarray,
    reasons: dict[str, np.ndarray],
    *,
    outcome: str,
    strict: bool,
    header: str = "have unusable data",
    stacklevel: int = 3,
) -> None:
    """Warn (or raise with ``strict``) about the neuroids flagged in ``reasons``.

    Parameters
    ----------
    func : str
        The public function, e.g. ``"ncsnr()"``.
    labels : ndarray
        One label per neuroid (``neuroid_id``), used to name them.
    reasons : dict {description: bool mask}
        Masks on ``neuroid`` (or ``(neuroid, time)``: a neuroid is flagged when any of its
        time points is). Empty masks are skipped.
    outcome : str
        What happened to them, e.g. ``"their ncsnr is NaN"``.
    strict : bool
        Raise :class:`DataFormatError` instead of warning.
    header : str
        What the flagged neuroids have in common, for the message.
    """
    parts, total = [], np.zeros(len(labels), dtype=bool)
    for text, mask in reasons.items():
        flat = _any_but_first(mask)
        if flat.any():
            total |= flat
            parts.append(f"{int(flat.sum())} {text} ({format_list(labels[flat], limit=5)})")
    if not parts:
        return
    msg = (
        f"{func}: {int(total.sum())} of {len(labels)} neuroids {header}: "
        + "; ".join(parts)
        + f". {outcome}."
    )
    if strict:
        raise DataFormatError(msg + " (strict=True)")
    warnings.warn(msg, DataQualityWarning, stacklevel=stacklevel)
