"""Dataset cards: ``datasets/<name>.toml`` at the repository root.

A card gives a dataset's source, terms of use, expected layout and published counts.
Adapters read the published counts to warn when a file disagrees with its subject; when
the cards are not available (an installed package without the repository), no such
warnings are given.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from neuroalign.exceptions import DataFormatError

__all__ = ["CARDS_DIR", "dataset_card", "published"]

#: The repository's ``datasets/`` folder (not a Python package).
CARDS_DIR = Path(__file__).resolve().parents[2] / "datasets"


@cache
def _load(name: str) -> dict[str, Any]:
    path = CARDS_DIR / f"{name}.toml"
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise DataFormatError(f"{path}: not valid TOML ({err}).") from err


def dataset_card(name: str) -> dict[str, Any]:
    """The parsed card ``datasets/<name>.toml``: source, terms of use, layout, published counts.

    Parameters
    ----------
    name : str
        The dataset (``"nsd"``, ``"things-eeg2"``, ...).

    Returns
    -------
    dict
        The card (``{}`` when it is not available).
    """
    return dict(_load(name))


def published(name: str, key: str, index: int | None = None, default: Any = None) -> Any:
    """A published count from the card's ``[published]`` table.

    With ``index`` (a 1-based subject number), the entry is a per-subject list and its
    ``index``-th element is returned. Missing cards or keys give ``default``.
    """
    value = _load(name).get("published", {}).get(key)
    if value is None:
        return default
    if index is not None:
        if not isinstance(value, list) or not 1 <= index <= len(value):
            return default
        value = value[index - 1]
    return value
