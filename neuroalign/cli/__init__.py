"""The ``neuroalign`` command line (typer).

Each pipeline stage adds its commands in its own module here, registered on :data:`app`.
``python -m neuroalign`` runs the same app.
"""

from __future__ import annotations

# Command modules register themselves on ``app`` when imported.
from neuroalign.cli import (
    _fit_cmds,  # noqa: E402,F401
    _simulate_cmds,  # noqa: E402,F401
    _store_cmds,  # noqa: E402,F401
)
from neuroalign.cli._app import app, main

__all__ = ["app", "main"]
