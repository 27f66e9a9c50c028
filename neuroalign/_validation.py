"""Small validation helpers that produce the house-style error messages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["check_option", "check_positive_int", "format_list", "renamed", "UNSET"]


def format_list(values: Iterable[Any], *, limit: int = 20) -> str:
    """``'a', 'b', 'c'`` for an error message, truncated after ``limit`` items."""
    values = [v.item() if hasattr(v, "item") and getattr(v, "ndim", 1) == 0 else v for v in values]
    shown = ", ".join(repr(v) for v in values[:limit])
    if len(values) > limit:
        shown += f", ... ({len(values) - limit} more)"
    return shown


def check_option(
    value: Any, options: Sequence[Any], *, name: str, func: str, limit: int = 20
) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``options`` (listing up to ``limit``)."""
    if value not in options:
        raise ValueError(
            f"Invalid value for {name!r} in {func}(): {value!r}. "
            f"Expected one of {format_list(options, limit=limit)}."
        )
    return value


def check_positive_int(value: Any, *, name: str, func: str, minimum: int = 1) -> int:
    """Raise ``ValueError`` unless ``value`` is an integer ``>= minimum``."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"Invalid value for {name!r} in {func}(): {value!r}. "
            f"Expected an integer >= {minimum}."
        )
    return int(value)


class _Unset:
    """The default of a deprecated keyword: tells "not given" from any value (None included)."""

    def __repr__(self) -> str:
        return "<unset>"


#: Default of deprecated keyword aliases (see :func:`renamed`).
UNSET: Any = _Unset()


def renamed(old_value: Any, new_value: Any, *, old: str, new: str, func: str,
            default: Any = None) -> Any:
    """The value of a renamed keyword: ``new_value``, or ``old_value`` (with a
    ``FutureWarning``) when the deprecated ``old`` keyword was given.

    Giving ``old`` together with a ``new`` other than its ``default`` raises ``TypeError``.
    """
    import warnings

    if old_value is UNSET:
        return new_value
    if new_value is not UNSET and new_value is not default:
        raise TypeError(f"{func}() got both {old!r} (deprecated) and {new!r}; pass only {new!r}.")
    warnings.warn(
        f"{func}(): {old!r} is deprecated and will be removed; use {new}={old_value!r} instead.",
        FutureWarning, stacklevel=3,
    )
    return old_value
