"""The runner registry behind ``neuroalign run``: a recipe's ``kind`` names its runner.

Every runner takes the validated recipe config (defaults filled in, paths absolute), the
output folder and ``overwrite``; it writes its outputs atomically and returns a JSON-able
summary. :func:`run_recipe` checks the output folder before anything runs, calls the runner
and adds ``run.json`` (the recipe file and text, the ``--set`` overrides, the recipe as run
and the versions of neuroalign and its main dependencies) to the output.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from neuroalign._logging import get_logger
from neuroalign.recipes._recipe import Recipe, default_out, load_recipe

__all__ = ["RUNNERS", "OUTPUT_KINDS", "run_recipe", "versions", "RUN_FILE"]

log = get_logger(__name__)

#: kind -> "module:function" of its runner ``(config, out, *, overwrite) -> dict``
RUNNERS: dict[str, str] = {
    "fit": "neuroalign.recipes._fit:run_fit",
    "rsa": "neuroalign.recipes._compare:run_rsa",
    "shape": "neuroalign.recipes._compare:run_shape",
    "map": "neuroalign.recipes._map:run_map",
    "decode": "neuroalign.recipes._decode:run_decode",
    "generate": "neuroalign.recipes._decode:run_generate_recipe",
}

#: kind -> the marker kind of its output folder (replaced only by its own kind, with overwrite)
OUTPUT_KINDS: dict[str, str] = {
    "fit": "fit output", "rsa": "RSA output", "shape": "shape output", "map": "map output",
    "decode": "decode output", "generate": "generate output",
}

#: The record every recipe output carries.
RUN_FILE = "run.json"

_PACKAGES = ("numpy", "scipy", "xarray", "zarr", "scikit-learn", "himalaya", "rsatoolbox",
             "nilearn", "mne", "torch", "torchvision", "diffusers")


def versions() -> dict[str, str]:
    """Versions of Python, neuroalign and its main dependencies.

    Returns
    -------
    dict
        ``{package: version}`` of those installed.
    """
    from neuroalign._version import __version__

    out = {"python": platform.python_version(), "neuroalign": __version__}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _runner(kind: str):
    mod, _, name = RUNNERS[kind].partition(":")
    return getattr(importlib.import_module(mod), name)


def run_recipe(recipe: Recipe | str | os.PathLike, *, out: str | os.PathLike | None = None,
               sets=(), overwrite: bool = False, kind: str | None = None,
               **options: Any) -> dict[str, Any]:
    """Run a recipe of any kind.

    Parameters
    ----------
    recipe : Recipe or path-like
        A recipe file (TOML with a top-level ``kind``) or a :class:`Recipe`.
    out : path-like, optional
        Output folder; default ``[outputs] dir``, else ``<recipe folder>/<recipe stem>-results``.
    sets : sequence of str
        ``"table.key=value"`` overrides (``--set``).
    overwrite : bool
        Replace an earlier output of the same kind (neuroalign's marker); a folder of your
        own files, or one holding an input, is never replaced.
    kind : str, optional
        Refuse a recipe of another kind (``neuroalign fit`` runs only fit recipes).
    **options
        Passed to the runner (``allow_download`` for decode and generate).

    Returns
    -------
    dict
        ``{"kind", "out", "result"}``: the kind, the output folder and the runner's summary.

    Raises
    ------
    DataFormatError
        The recipe does not fit its kind's schema (see :func:`load_recipe`).
    OutputExistsError
        The output folder exists and may not be replaced.
    """
    from neuroalign._files import add_file, check_target

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, sets=sets, kind=kind)
    elif kind is not None:
        from neuroalign.recipes._recipe import check_kind

        check_kind(recipe, kind)
    out_dir = Path(out).absolute() if out is not None else default_out(recipe)
    out_kind = OUTPUT_KINDS[recipe.kind]
    # inputs: the recipe file and every path it names but its own output folder
    inputs = [recipe.source, *(p for key, p in recipe.paths() if key != "outputs.dir")]
    check_target(out_dir, overwrite=overwrite, kind=out_kind, inputs=inputs)
    log.info("running %s as a %r recipe into %s", recipe.source or "recipe", recipe.kind, out_dir)
    result = _runner(recipe.kind)(recipe.config, out_dir, overwrite=overwrite, **options)
    record = {
        "kind": recipe.kind,
        "recipe_file": None if recipe.source is None else str(recipe.source.absolute()),
        "recipe_text": recipe.text,
        "set": list(recipe.sets),
        "config": recipe.config,
        "versions": versions(),
        "result": result,
    }
    add_file(out_dir, RUN_FILE, json.dumps(record, indent=2, default=_jsonable), kind=out_kind)
    return {"kind": recipe.kind, "out": str(out_dir), "result": result}


def _jsonable(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
