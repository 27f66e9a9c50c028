"""Checked readers of the text files the adapters share: lists, label tables, CSV/TSV.

Text is read as UTF-8 (a byte-order mark is dropped). A file that is not valid UTF-8 is
read as latin-1 (ISO-8859-1, which decodes every byte: the usual encoding of older
FreeSurfer tables and spreadsheets saved on Windows) with a :class:`TextEncodingWarning`
naming the file and the first offending byte, never a crash. Empty files, malformed rows,
missing columns and non-integer values in integer columns raise
:class:`~neuroalign.exceptions.DataFormatError` naming the file.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from neuroalign._validation import format_list
from neuroalign.datasets._formats import require_file
from neuroalign.exceptions import DataFormatError

__all__ = ["TextEncodingWarning", "read_text", "read_lines", "read_table", "int_column",
           "read_ctab"]


class TextEncodingWarning(UserWarning):
    """A text file is not UTF-8; it was read as latin-1 (ISO-8859-1)."""


def read_text(path: Path, what: str) -> str:
    """The text of ``path``: UTF-8, else latin-1 with a :class:`TextEncodingWarning`."""
    path = require_file(Path(path), what)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        warnings.warn(
            f"{path}: is not UTF-8 (byte {data[err.start]:#04x} at offset {err.start}); read it "
            "as latin-1 (ISO-8859-1), the usual encoding of older tables. Check the names it "
            "holds, or convert the file to UTF-8.",
            TextEncodingWarning,
            stacklevel=3,
        )
        return data.decode("latin-1")


def read_lines(path: Path, what: str) -> list[str]:
    """The non-blank lines of a list file, stripped; an empty list is an error."""
    lines = [x.strip() for x in read_text(path, what).splitlines()]
    lines = [x for x in lines if x]
    if not lines:
        raise DataFormatError(f"{path}: is empty; expected {what}, one entry per line.")
    return lines


def read_table(path: Path, what: str, *, required: Sequence[str] = (), sep: str = ",",
               text_columns: Sequence[str] | None = None):
    """A CSV/TSV as a DataFrame (``n/a`` -> NaN), with the ``required`` columns present.

    With ``text_columns`` (an events or metadata table), the table is read as
    :func:`~neuroalign.store.from_nifti` reads its events table (one set of options,
    ``store._builders_neuro.events_csv_options``): only ``n/a`` and empty cells are missing,
    and ``text_columns`` stay text. Without, pandas' default missing values apply (``NA``,
    ``null``, ``nan`` ... too).
    """
    import pandas as pd

    from neuroalign.store._builders_neuro import events_csv_options

    text = read_text(path, what)
    if not text.strip():
        raise DataFormatError(
            f"{path}: is empty; expected {what} with a header row"
            f"{f' (columns {format_list(required)})' if required else ''}."
        )
    try:
        options = ({"na_values": ["n/a"], "keep_default_na": True} if text_columns is None
                   else events_csv_options(text_columns))
        df = pd.read_csv(io.StringIO(text), sep=sep, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise DataFormatError(
            f"{path}: cannot be read as a {'tab' if sep == chr(9) else 'comma'}-separated table "
            f"({type(err).__name__}: {str(err).strip()}). Expected {what}."
        ) from err
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataFormatError(
            f"{path}: missing column(s) {format_list(missing)}. Columns present: "
            f"{format_list([str(c) for c in df.columns])}."
        )
    return df


def int_column(df, column: str, path: Path, *, minimum: int | None = None,
               rows: str = "line") -> np.ndarray:
    """Column ``column`` of a table as int64: every value a whole number (no ``n/a``).

    ``df`` may be a subset of the rows of the table read from ``path`` (its index labels
    are the 0-based row numbers); ``rows="line"`` names bad rows by their line in the file
    (header = line 1), ``rows="epoch"`` by their 0-based epoch number.
    """
    import pandas as pd

    raw = df[column]
    num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(num) | (num != np.round(num))
    if minimum is not None:
        bad |= np.isfinite(num) & (num < minimum)

    def where(positions) -> str:
        labels = [int(df.index[i]) for i in positions]
        if rows == "line":
            return f"on line(s) {format_list([x + 2 for x in labels], limit=5)} (header = line 1)"
        return f"at {rows}(s) {format_list(labels, limit=5)}"

    if bad.any():
        pos = np.flatnonzero(bad)
        values = [raw.iloc[i] for i in pos[:3]]
        expected = "whole numbers" + (f" >= {minimum}" if minimum is not None else "")
        raise DataFormatError(
            f"{path}: column {column!r} holds {format_list(values)} {where(pos)}; expected "
            f"{expected} in every row (no 'n/a')."
        )
    return num.astype(np.int64)


def read_ctab(path: Path) -> dict[int, str]:
    """A FreeSurfer-style ``.ctab``: lines ``index name [r g b a]`` -> ``{index: name}``.

    An empty table, a line without an integer index and a name, and an index or a name
    that appears twice raise DataFormatError naming the line.
    """
    text = read_text(path, "a .ctab label table ('index name' per line)")
    out: dict[int, str] = {}
    line_of: dict[int, int] = {}
    name_line: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            idx = int(parts[0])
        except ValueError:
            raise DataFormatError(
                f"{path}: line {n} is {line!r}, expected 'index name' with an integer index."
            ) from None
        if len(parts) < 2:
            raise DataFormatError(f"{path}: line {n} is {line!r}, expected 'index name'.")
        if idx in out:
            raise DataFormatError(
                f"{path}: index {idx} appears twice (lines {line_of[idx]} and {n}); expected one "
                "name per index."
            )
        if parts[1] in name_line:
            raise DataFormatError(
                f"{path}: label {parts[1]!r} appears twice (lines {name_line[parts[1]]} and {n}); "
                "expected one index per name."
            )
        out[idx], line_of[idx], name_line[parts[1]] = parts[1], n, n
    if not out:
        raise DataFormatError(f"{path}: holds no labels; expected lines 'index name'.")
    return out
