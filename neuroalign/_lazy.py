"""Lazy subpackages: public names are imported from their module on first access.

Each subpackage ``__init__`` lists its public names by module and calls :func:`attach`
(scientific-python's ``lazy_loader``, SPEC 1), so that ``import neuroalign.encoders`` costs
milliseconds and torch, scikit-learn, scipy.stats and the like are imported only by the
modules that use them, when a name from such a module is first used.
``from neuroalign.encoders import RidgeEncoder`` works as before. Setting the environment
variable ``EAGER_IMPORT=1`` imports everything at once (to find import errors).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping

import lazy_loader

__all__ = ["attach"]


def attach(package: str, names: Mapping[str, Iterable[str]], *, submodules: Iterable[str] = (),
           torch_names: Iterable[str] = ()):
    """``(__getattr__, __dir__)`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping of module name (relative, e.g. ``"_ridge"``) to public names
    submodules : iterable of str
        Public submodules (e.g. ``"metrics"``).
    torch_names : iterable of str
        Names whose module needs PyTorch: accessing one without torch installed raises an
        :class:`ImportError` that says how to install it, before anything is imported.
    """
    getattr_, dir_, _ = lazy_loader.attach(package, submodules=list(submodules),
                                           submod_attrs={k: list(v) for k, v in names.items()})
    needs_torch = frozenset(torch_names)

    def __dir__() -> list[str]:  # what is loaded already, and what can be
        return sorted(set(sys.modules[package].__dict__) | set(dir_()))

    def __getattr__(name: str):
        if name in needs_torch:
            from neuroalign._config import require_torch, torch_installed

            if not torch_installed():
                require_torch(f"{package}.{name}")
        return getattr_(name)

    return __getattr__, __dir__
