"""Small validation helpers that produce the house-style error messages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["check_option", "check_positive_int", "format_list"]


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
