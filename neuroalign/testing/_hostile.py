"""Hostile inputs for tests: a crafted pickle that would run code, and names that try to
break out of HTML."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_crafted_pickle", "HOSTILE_NAMES"]

#: Strings that run script, end the title or the page, or break attributes when inserted into
#: HTML unescaped (each also sets a marker a page check can look for: ``document.title``
#: becoming ``"pwned"``, or an element with id ``pwned``).
HOSTILE_NAMES = (
    "<script>document.title='pwned'</script>",
    "<img src=x onerror=\"document.body.appendChild(document.createElement('div')).id='pwned'\">",
    "</title><script>document.title='pwned'</script>",
    "\"><svg onload=\"document.title='pwned'\">",
    "' onmouseover='document.title=`pwned`' x='",
    "</style></table></figure><script>document.title='pwned'</script>",
    "<iframe srcdoc=\"<script>parent.document.title='pwned'</script>\"></iframe>",
    "javascript:document.title='pwned'",
    "&lt;script&gt;already escaped&lt;/script&gt; & <b>bold</b>",
)


class _Touch:
    """Unpickling this calls ``open(path, 'w')``: the file appears if the pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_crafted_pickle(path: str | os.PathLike, sentinel: str | os.PathLike, *,
                         torch_format: bool = True) -> Path:
    """Write a file whose unpickling creates ``sentinel`` (and so shows that code ran).

    ``torch_format=True`` writes it with ``torch.save`` (a zip archive holding the pickle, as
    a ``.pt``/``.pth``/``.bin`` checkpoint is), else as a bare pickle.

    Parameters
    ----------
    path : path-like
        The file to write.
    sentinel : path-like
        The file that unpickling creates.
    torch_format : bool
        Write with ``torch.save`` instead of a bare pickle.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"weight": _Touch(str(sentinel))}
    if torch_format:
        import torch

        torch.save(payload, path)
    else:
        import pickle

        path.write_bytes(pickle.dumps(payload))
    return path
