"""The ``neuroalign`` command line (typer).

Each pipeline stage adds its commands in its own module here, named ``_<stage>_cmds.py``
and registered on :data:`app` when imported; this package imports every such module.
``python -m neuroalign`` runs the same app.
"""

from __future__ import annotations

import importlib
import pkgutil

from neuroalign.cli._app import app, main

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.endswith("_cmds")):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["app", "main"]
