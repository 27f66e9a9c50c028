"""Reading a recipe: its kind, strict validation, ``--set`` overrides, paths and output folder."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroalign._config import read_recipe
from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError
from neuroalign.recipes._kinds import RECIPE_KINDS, SCHEMAS, kind_tables
from neuroalign.recipes._schema import (
    apply_overrides,
    did_you_mean,
    path_values,
    resolve_paths,
    schema_markdown,
    validate,
)

__all__ = ["Recipe", "load_recipe", "recipe_from_dict", "check_kind", "default_out",
           "reference_markdown"]


@dataclass
class Recipe:
    """A validated recipe (made by :func:`load_recipe`).

    Parameters
    ----------
    kind, config, source, base, sets, text
        As the attributes below.

    Attributes
    ----------
    kind : str
        One of :data:`RECIPE_KINDS`.
    config : dict
        The recipe as it runs: every default filled in, ``--set`` overrides applied, every
        path absolute.
    source : Path or None
        The recipe file (None for a recipe given as a dict).
    base : Path
        The folder relative paths were resolved against.
    sets : list of str
        The ``--set`` overrides applied.
    text : str
        The recipe file as written ("" for a dict).
    """

    kind: str
    config: dict[str, Any]
    source: Path | None = None
    base: Path = field(default_factory=Path.cwd)
    sets: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def name(self) -> str:
        """The study name, else the recipe file's stem, else the kind."""
        study = self.config.get("study", {}) or {}
        if study.get("name"):
            return str(study["name"])
        return self.source.stem if self.source is not None else self.kind

    def paths(self) -> list[tuple[str, str]]:
        """Every path the recipe names.

        Returns
        -------
        list of (str, str)
            ``(dotted key, absolute path)`` pairs.
        """
        return path_values(SCHEMAS[self.kind][1], self.config)


def _kind(raw: dict, source: str) -> str:
    kind = raw.get("kind")
    if kind is None:
        guess = _guess(raw)
        hint = f" (its tables look like a {guess!r} recipe)" if guess else ""
        raise DataFormatError(
            f"{source}: no 'kind' key; every recipe says what it runs with a top-level "
            f"kind = one of {format_list(RECIPE_KINDS)}{hint}."
        )
    if kind not in RECIPE_KINDS:
        raise DataFormatError(
            f"{source}: kind = {kind!r}; expected one of {format_list(RECIPE_KINDS)}"
            f"{did_you_mean(kind, RECIPE_KINDS) or '.'}"
        )
    return kind


def _guess(raw: dict) -> str | None:
    """The kind whose tables fit ``raw`` best (for the message about a missing kind)."""
    tables = {k for k, v in raw.items() if isinstance(v, dict)}
    best, score = None, 0
    for kind, (_, root) in SCHEMAS.items():
        mine = set(root.tables())
        hit = len(tables & mine) - len(tables - mine)
        if hit > score:
            best, score = kind, hit
    return best


def check_kind(recipe: Recipe, expected: str | None) -> None:
    """Raise unless ``recipe`` is of the ``expected`` kind (None: any)."""
    if expected is not None and recipe.kind != expected:
        where = recipe.source if recipe.source is not None else "recipe"
        raise DataFormatError(
            f"{where}: kind = {recipe.kind!r}, not a {expected} recipe. Run it with "
            f"`neuroalign {recipe.kind}` or `neuroalign run`."
        )


def recipe_from_dict(raw: dict[str, Any], *, source: str | os.PathLike | None = None,
                     base: str | os.PathLike | None = None, sets=(), text: str = "",
                     kind: str | None = None) -> Recipe:
    """Validate a recipe given as a dict (read from ``source``; paths relative to ``base``,
    default the current directory) and apply ``sets`` overrides."""
    label = str(source) if source is not None else "recipe"
    raw = dict(raw)
    if kind is not None and "kind" not in raw:
        raw["kind"] = kind
    found = _kind(raw, label)
    root = SCHEMAS[found][1]
    raw = apply_overrides(root, raw, list(sets), kind=found)
    foreign = {k: v for k, v in kind_tables().items() if found not in v}
    cfg = validate(root, raw, source=label, foreign=foreign)
    base = Path(base if base is not None else Path.cwd()).absolute()
    cfg = resolve_paths(root, cfg, base)
    _check_combinations(found, cfg, label)
    return Recipe(found, cfg, Path(source) if source is not None else None, base, list(sets), text)


def load_recipe(path: str | os.PathLike, *, sets=(), kind: str | None = None) -> Recipe:
    """Read, check and resolve the recipe file ``path``.

    Parameters
    ----------
    path : path-like
        A TOML recipe with a top-level ``kind``.
    sets : sequence of str
        ``"table.key=value"`` overrides (``--set``), applied before validation; their
        relative paths are relative to the current directory.
    kind : str, optional
        Refuse a recipe of another kind.

    Returns
    -------
    Recipe
        The recipe as it runs (defaults filled in, overrides applied, paths absolute).

    Raises
    ------
    FileNotFoundError
        No such file.
    DataFormatError
        Not valid TOML; no or an unknown ``kind``; an unknown table or key (named with the
        closest known one); a missing required key; a value of the wrong type; a table that
        does not belong to the kind.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.toml"
    >>> _ = p.write_text('kind = "shape"\\n[systems]\\na = "a.npy"\\nb = "b.npy"\\n')
    >>> r = load_recipe(p)
    >>> r.kind, r.config["shape"]["alpha"], r.config["systems"]["a"] == str(p.parent / "a.npy")
    ('shape', 1.0, True)
    """
    path = Path(path)
    raw = read_recipe(path)
    recipe = recipe_from_dict(raw, source=path, base=path.parent, sets=sets,
                              text=path.read_text(encoding="utf-8"))
    check_kind(recipe, kind)
    return recipe


def _check_combinations(kind: str, cfg: dict, source: str) -> None:
    """Rules that span keys (each table alone is checked by the schema)."""
    feats = cfg.get("features")
    if feats is not None:
        spaces = feats.get("spaces")
        if spaces and "model" in feats:
            raise DataFormatError(f"{source}: [features] has both 'model' and [features.spaces]; "
                                  "give one feature set or named spaces.")
        for name, spec in ({"": feats} if not spaces else {f".spaces.{k}": v for k, v in spaces.items()}).items():
            if ("model" in spec) == ("path" in spec):
                raise DataFormatError(f"{source}: [features{name}] needs exactly one of 'model' (a "
                                      "model spec or \"simulated-truth\") and 'path' (a features file).")
            if "path" in spec:
                extra = sorted(set(spec) - {"path", "layers", "tokens", "grid"})
                if extra:
                    raise DataFormatError(f"{source}: [features{name}] path = {spec['path']!r} reads "
                                          f"features from a file; {format_list(extra)} do not apply.")
                continue
            if "layers" not in spec:
                raise DataFormatError(f"{source}: [features{name}] needs 'layers'.")
    if kind == "fit" and cfg["encoder"]["kind"] == "banded-ridge" and not (feats or {}).get("spaces"):
        raise DataFormatError(f"{source}: [encoder] kind = 'banded-ridge' needs named feature "
                              "spaces [features.spaces.NAME].")
    if kind == "rsa" and (cfg.get("cluster") or {}).get("batch_size") is not None:
        raise DataFormatError(f"{source}: [cluster] batch_size = {cfg['cluster']['batch_size']!r} "
                              "does not apply to an rsa recipe: its cells are one data RDM per "
                              "subject and ROI; remove batch_size.")
    if kind == "map" and cfg.get("cluster") and "results" in cfg:
        raise DataFormatError(f"{source}: [cluster] with [results]: the map reads its scores and "
                              "fits nothing; remove the [cluster] table.")
    if kind in ("rsa", "shape"):
        table = "models" if kind == "rsa" else "systems"
        if not cfg.get(table) and feats is None and not (kind == "shape" and "store" in cfg):
            raise DataFormatError(f"{source}: a {kind} recipe needs [{table}] or [features].")
    if kind == "map" and "results" not in cfg and feats is None:
        raise DataFormatError(f"{source}: a map recipe needs [results] (layer scores) or "
                              "[features] (a layer sweep is fitted first).")
    if kind == "map" and cfg["map"]["units"] and feats is None:
        raise DataFormatError(f"{source}: [map] units = true needs [features] (the units to map).")
    if kind == "generate":
        enc = cfg["encoder"]
        if ("path" in enc) == ("model" in enc):
            raise DataFormatError(f"{source}: [encoder] needs exactly one of 'path' (a saved "
                                  "encoder) and 'model' (a network to fit a read-out of).")
        if "model" in enc and "store" not in cfg:
            raise DataFormatError(f"{source}: [encoder] model = {enc['model']!r} is fitted on "
                                  "the responses of [store]; add a [store] table.")


def default_out(recipe: Recipe) -> Path:
    """The output folder of a recipe.

    Parameters
    ----------
    recipe : Recipe
        A loaded recipe.

    Returns
    -------
    Path
        ``[outputs] dir``, else ``<recipe folder>/<recipe stem>-results``
        (``<kind>-results`` in the current directory for a recipe given as a dict).
    """
    given = (recipe.config.get("outputs") or {}).get("dir")
    if given:
        return Path(given)
    if recipe.source is not None:
        return recipe.source.absolute().parent / f"{recipe.source.stem}-results"
    return Path.cwd() / f"{recipe.kind}-results"


def reference_markdown() -> str:
    """The schema reference of every recipe kind.

    Returns
    -------
    str
        Markdown, as in docs/recipes.md.
    """
    return schema_markdown(SCHEMAS)
