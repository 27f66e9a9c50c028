"""Reporting neuroids whose values are NaN, infinite or constant (store-level estimates).

Reliability estimates mark such neuroids NaN (never 0, ``inf`` or 100 %) and say so with
one :class:`~neuroalign.exceptions.DataQualityWarning` that counts and names them, or, with
``strict=True``, raise a :class:`~neuroalign.exceptions.DataFormatError` with the same text.
"""

from __future__ import annotations

import warnings

import numpy as np

from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError, DataQualityWarning

__all__ = ["report_neuroids", "neuroid_labels"]


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
