"""Sphinx configuration of neuroalign's documentation (API reference + getting started).

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (tests/test_docs.py
does this). The API pages are written from each subpackage's ``__all__`` at build time, so
the reference lists exactly the public names.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("NEUROALIGN_PROGRESS", "0")

import neuroalign  # noqa: E402

project = "neuroalign"
author = "neuroalign developers"
copyright = "neuroalign developers"  # noqa: A001
release = version = neuroalign.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
]
try:
    import pydata_sphinx_theme  # noqa: F401

    html_theme = "pydata_sphinx_theme"
    html_theme_options = {"navigation_with_keys": False}
except ImportError:  # pragma: no cover - the dev extra installs it
    html_theme = "alabaster"

source_suffix = {".rst": "restructuredtext"}
exclude_patterns = ["_build", "design.md", "recipes.md"]
templates_path = ["_templates"]
html_static_path = []

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

#: subpackage -> one-line title of its API page
SUBPACKAGES = {
    "neuroalign.store": "Stores: responses, neuroids, stimuli",
    "neuroalign.stimuli": "Stimulus sets",
    "neuroalign.features": "Model features",
    "neuroalign.encoders": "Encoders",
    "neuroalign.compare": "Representational comparisons",
    "neuroalign.mapping": "Mapping to cortex",
    "neuroalign.decoders": "Decoding and generation",
    "neuroalign.datasets": "Datasets and simulation",
    "neuroalign.recipes": "Recipes and reports",
    "neuroalign.testing": "Testing helpers",
    "neuroalign.exceptions": "Errors and warnings",
}


def api_page(module: str, title: str) -> str:
    """The reST of one subpackage's API page: its docstring and an autosummary of ``__all__``."""
    mod = importlib.import_module(module)
    names = [n for n in mod.__all__ if not isinstance(getattr(mod, n), type(sys))]
    routines = [n for n in names if callable(getattr(mod, n))]
    constants = [n for n in names if n not in routines]
    head = f"{module}\n{'=' * len(module)}\n\n{title}.\n\n"
    lines = [head, f".. automodule:: {module}\n   :no-members:\n\n"]
    lines.append(f".. currentmodule:: {module}\n\n")
    if routines:
        lines.append(".. autosummary::\n   :toctree: generated\n   :nosignatures:\n\n")
        lines.extend(f"   {n}\n" for n in routines)
        lines.append("\n")
    if constants:
        lines.append("Constants\n---------\n\n")
        for n in constants:
            lines.append(f".. autodata:: {n}\n   :no-value:\n\n")
    return "".join(lines)


def write_api_pages() -> None:
    out = HERE / "api"
    out.mkdir(exist_ok=True)
    # autosummary's pages of names no longer public would be orphans (a warning): start clean
    shutil.rmtree(out / "generated", ignore_errors=True)
    for module, title in SUBPACKAGES.items():
        text = api_page(module, title)
        path = out / f"{module.split('.')[-1]}.rst"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


write_api_pages()
