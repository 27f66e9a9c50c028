"""The ``neuroalign`` command line (typer).

Each pipeline stage adds its commands in its own module here, registered on :data:`app`.
``python -m neuroalign`` runs the same app.
"""

from __future__ import annotations

# Command modules register themselves on ``app`` when imported (one line per module).
from neuroalign.cli import _decode_cmds  # noqa: F401
from neuroalign.cli import _demo_cmds  # noqa: F401
from neuroalign.cli import _simulate_cmds  # noqa: F401
from neuroalign.cli import _store_cmds  # noqa: F401
from neuroalign.cli._app import app, main

__all__ = ["app", "main"]
