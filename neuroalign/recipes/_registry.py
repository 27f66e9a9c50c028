"""``neuroalign run RECIPE.toml``: one entry point for every recipe kind.

A recipe says what it is with a top-level ``kind`` key; without one the kind is read from
its tables:

- ``"fit"``: an ``[encoder]`` table; run by :func:`neuroalign.encoders._recipe.run_recipe`
  (as ``neuroalign fit``).
- ``"decode"``: a ``[data]``, ``[pipeline]`` or ``[reconstruct]`` table; run by
  :func:`neuroalign.recipes._decode.run_decode_recipe` (as ``neuroalign decode``).
- ``"generate"``: top-level ``encoder`` and ``roi`` keys; run by
  :func:`neuroalign.recipes._decode.run_generate_recipe` (as ``neuroalign generate``).

``--set key.sub=value`` overrides a value before the run (the value is read as TOML, and
as a plain string when it is not valid TOML), so a recipe can be pointed at other paths
without editing it. Relative paths in a recipe are relative to the current directory.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

from neuroalign._config import read_recipe
from neuroalign._logging import get_logger
from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError

__all__ = ["RECIPE_KINDS", "detect_kind", "apply_overrides", "load_recipe", "run_recipe"]

log = get_logger(__name__)

RECIPE_KINDS = ("fit", "decode", "generate")
_DECODE_TABLES = ("data", "pipeline", "reconstruct")


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe file (any kind)."""
    return read_recipe(path)


def detect_kind(recipe: dict[str, Any], source: str | Path = "recipe") -> str:
    """The kind of a recipe: its ``kind`` key, else what its tables say.

    Raises :class:`DataFormatError` naming ``source`` when the kind is unknown, when the
    tables fit no kind or more than one, or when ``kind`` contradicts the tables.
    """
    found = []
    if isinstance(recipe.get("encoder"), dict):
        found.append("fit")
    if any(isinstance(recipe.get(t), dict) for t in _DECODE_TABLES):
        found.append("decode")
    if isinstance(recipe.get("encoder"), str) and "roi" in recipe:
        found.append("generate")
    kind = recipe.get("kind")
    if kind is not None:
        if kind not in RECIPE_KINDS:
            raise DataFormatError(
                f"{source}: kind = {kind!r}; expected one of {format_list(RECIPE_KINDS)}."
            )
        if found and kind not in found:
            raise DataFormatError(
                f"{source}: kind = {kind!r} but its tables look like a {format_list(found)} recipe."
            )
        return kind
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataFormatError(
            f"{source}: cannot tell the recipe kind: no [encoder] table (fit), no "
            f"{format_list(['[' + t + ']' for t in _DECODE_TABLES])} table (decode) and no "
            f"top-level 'encoder' + 'roi' (generate). Add kind = one of {format_list(RECIPE_KINDS)}."
        )
    raise DataFormatError(
        f"{source}: ambiguous recipe: its tables fit {format_list(found)}. "
        f"Add a top-level kind = one of {format_list(found)}."
    )


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string: --set data.store=/data/nsd.zarr


def apply_overrides(recipe: dict[str, Any], sets: list[str] | tuple[str, ...],
                    source: str | Path = "recipe") -> dict[str, Any]:
    """A copy of ``recipe`` with each ``"key.sub=value"`` of ``sets`` applied.

    Every table on the way to the key must exist in the recipe (a misspelt table is an
    error, not a new table); the last key may be new.
    """
    out = copy.deepcopy(recipe)
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p for p in parts):
            raise ValueError(
                f"Invalid --set {item!r} for {source}: expected key.sub=value, e.g. "
                "--set data.store=/data/nsd.zarr."
            )
        table = out
        for depth, part in enumerate(parts[:-1]):
            nxt = table.get(part)
            if not isinstance(nxt, dict):
                where = ".".join(parts[:depth + 1])
                tables = sorted(k for k, v in table.items() if isinstance(v, dict))
                raise KeyError(
                    f"--set {item!r}: {source} has no table [{where}]"
                    + (f"; its tables here are {format_list(tables)}." if tables else ".")
                )
            table = nxt
        if isinstance(table.get(parts[-1]), dict):
            raise KeyError(f"--set {item!r}: [{key}] in {source} is a table; set one of its keys.")
        table[parts[-1]] = _parse_value(text.strip())
    return out


def _existing_paths(value: Any) -> list[str]:
    """Every string in a recipe that names an existing file or folder (its inputs)."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in _existing_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _existing_paths(v)]
    if isinstance(value, str) and value and len(value) < 4096:
        try:
            return [value] if Path(value).exists() else []
        except (OSError, ValueError):
            return []
    return []


def run_recipe(path: str | Path, *, out: str | Path | None = None,
               sets: list[str] | tuple[str, ...] = (), overwrite: bool = False) -> dict[str, Any]:
    """Run the recipe at ``path`` (fit, decode or generate) with ``--set`` overrides applied.

    Writes the runner's outputs under ``out`` (default: the recipe's output folder) and
    ``run.json`` there: the recipe file, its kind, the overrides and the recipe as run.
    Returns ``{"kind": ..., "out": ..., "result": <the runner's summary>}``.

    The output folder is written atomically by the runner; an existing one is replaced only
    with ``overwrite=True`` and only when it is an earlier output of the same kind of recipe
    (neuroalign's marker). Anything else (a folder of the user's, the recipe's own folder,
    a folder holding an input: any existing path the recipe names) raises
    :class:`~neuroalign.exceptions.OutputExistsError` before the run starts.
    """
    from neuroalign._files import add_file, check_target

    path = Path(path)
    recipe = apply_overrides(load_recipe(path), sets, source=path)
    kind = detect_kind(recipe, source=path)
    # inputs: the recipe and every existing path it names, but for its own output folder
    named = {k: v for k, v in recipe.items() if k != "out"}
    if isinstance(named.get("outputs"), dict):
        named["outputs"] = {k: v for k, v in named["outputs"].items() if k != "dir"}
    inputs = [path, *_existing_paths(named)]
    log.info("running %s as a %r recipe", path, kind)
    if kind == "fit":
        from neuroalign.recipes._fit import OUTPUT_KIND as out_kind
        from neuroalign.recipes._fit import check_recipe
        from neuroalign.recipes._fit import run_recipe as run_fit

        check_recipe(recipe, path)
        out_dir = Path(out if out is not None else recipe.get("outputs", {}).get("dir", "results"))
        check_target(out_dir, overwrite=overwrite, kind=out_kind, inputs=inputs)
        result = run_fit(recipe, out=str(out_dir), overwrite=overwrite)
    elif kind == "decode":
        from neuroalign.recipes._decode import DECODE_KIND as out_kind
        from neuroalign.recipes._decode import run_decode_recipe

        out_dir = Path(out if out is not None else recipe.get("out", "decode-out"))
        check_target(out_dir, overwrite=overwrite, kind=out_kind, inputs=inputs)
        result = run_decode_recipe(recipe, out_dir, overwrite=overwrite)
    else:
        from neuroalign.recipes._decode import GENERATE_KIND as out_kind
        from neuroalign.recipes._decode import run_generate_recipe

        out_dir = Path(out if out is not None else recipe.get("out", "generate-out"))
        check_target(out_dir, overwrite=overwrite, kind=out_kind, inputs=inputs)
        result = run_generate_recipe(recipe, out_dir, overwrite=overwrite)
    record = {"recipe": str(path), "kind": kind, "set": list(sets), "config": recipe}
    add_file(out_dir, "run.json", json.dumps(record, indent=2, default=str), kind=out_kind)
    return {"kind": kind, "out": str(out_dir), "result": result}
