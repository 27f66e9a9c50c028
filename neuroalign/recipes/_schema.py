"""The recipe schema machinery: declarative tables and keys, strict validation with "did you
mean", the one path rule, ``--set`` overrides, and the Markdown reference (docs/recipes.md).

A schema is a tree of :class:`Table` objects whose :class:`Key` objects say each key's type,
default, allowed values and whether it is a path. One schema per recipe kind lives in
:mod:`neuroalign.recipes._kinds`; it is the single source for validating recipe files, for
validating ``--set`` keys, and for the reference page.

Paths: a relative path in a recipe file is relative to the folder of the recipe file; a
relative path given with ``--set`` is relative to the current directory (it is made absolute
when the override is applied).
"""

from __future__ import annotations

import copy
import difflib
import importlib
import inspect
import numbers
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroalign._validation import format_list
from neuroalign.exceptions import DataFormatError

__all__ = ["Key", "Table", "Entries", "NO_DEFAULT", "validate", "apply_overrides",
           "resolve_paths", "path_values", "schema_markdown", "did_you_mean"]


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()

#: value types -> (description for messages and docs, check)
_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "strings": ("an array of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "string or strings": ("a string or an array of strings",
                          lambda v: isinstance(v, str) or (isinstance(v, list)
                                                           and all(isinstance(x, str) for x in v))),
    "alphas": ("an array of numbers or { logspace = [low, high, n] }",
               lambda v: (isinstance(v, list) and all(isinstance(x, numbers.Real) and not isinstance(x, bool)
                                                     for x in v) and len(v) > 0)
               or (isinstance(v, dict) and set(v) == {"logspace"} and isinstance(v["logspace"], list)
                   and len(v["logspace"]) == 3
                   and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in v["logspace"]))),
    "integer or boolean": ("an integer or true or false",
                           lambda v: isinstance(v, int)),
    "table": ("a table", lambda v: isinstance(v, dict)),
    "tables": ("a table of named tables", lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values())),
    "any": ("any value", lambda v: True),
}

#: how a string value is a path: "path" (always), "path-or-name" (a path when it starts with
#: ./ ../ / ~ or names an existing file beside the recipe, else a name such as "tiny" or a
#: Hugging Face id), "path[:variable]" (a file with an optional ":variable" suffix)
PATH_KINDS = ("path", "path-or-name", "path[:variable]")


@dataclass(frozen=True)
class Key:
    """One key of a table: its type, meaning, default, allowed values and path kind."""

    name: str
    type: str
    doc: str
    default: Any = NO_DEFAULT
    required: bool = False
    choices: tuple = ()
    path: str | None = None
    table: Table | None = None  # the schema of a "table" value, or of each "tables" value
    minimum: int | float | None = None  # the smallest value allowed (numbers)

    def __post_init__(self) -> None:
        if self.type not in _TYPES:
            raise ValueError(f"Key {self.name!r}: unknown type {self.type!r}")
        if self.path is not None and self.path not in PATH_KINDS:
            raise ValueError(f"Key {self.name!r}: unknown path kind {self.path!r}")


@dataclass(frozen=True)
class Entries:
    """Free-form entries ``NAME = value`` of a table (e.g. ``[models] layer1 = "f.npy"``)."""

    type: str
    doc: str
    path: str | None = None


@dataclass(frozen=True)
class Table:
    """A table of a recipe: its keys, free-form entries, or the keyword arguments of a
    function (``kwargs`` returns that function for the table and its parent's values)."""

    name: str
    doc: str
    keys: tuple[Key, ...] = ()
    required: bool = False
    always: bool = False  # filled with its defaults when absent
    entries: Entries | None = None
    kwargs: Callable[[dict, dict], tuple[Callable | None, tuple[str, ...]]] | None = None
    kwargs_doc: str = ""
    notes: tuple[str, ...] = field(default=())

    def key(self, name: str) -> Key | None:
        return next((k for k in self.keys if k.name == name), None)

    def tables(self) -> dict[str, Key]:
        return {k.name: k for k in self.keys if k.type in ("table", "tables") and k.table is not None}


def did_you_mean(word: str, options) -> str:
    """``"; did you mean 'alphas'?"`` for the closest option, or ``""``."""
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _label(path: tuple[str, ...]) -> str:
    return f"[{'.'.join(path)}]" if path else "the top level"


def _kwarg_names(table: Table, values: dict, parent: dict) -> tuple[list[str] | None, str]:
    """Allowed keyword names of a ``kwargs`` table (None: any), and what they belong to."""
    if table.kwargs is None:
        return [], ""
    func, exclude = table.kwargs(values, parent)
    if func is None:
        return [], ""
    sig = inspect.signature(func)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None, _qualname(func)
    names = [n for n, p in sig.parameters.items()
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in exclude and n != "self"]
    return names, _qualname(func)


def _qualname(func) -> str:
    mod = getattr(func, "__module__", "")
    public = mod.split("._")[0] if "._" in mod else mod
    return f"{public}.{getattr(func, '__qualname__', repr(func))}"


def _check_type(value: Any, type_: str, where: str, choices: tuple = (),
                minimum: int | float | None = None) -> None:
    desc, ok = _TYPES[type_]
    if not ok(value):
        raise DataFormatError(f"{where} = {value!r}; expected {desc}.")
    if minimum is not None and value < minimum:
        raise DataFormatError(f"{where} = {value!r}; expected {desc} of at least {minimum!r}.")
    if choices and value not in choices:
        raise DataFormatError(f"{where} = {value!r}; expected one of {format_list(choices)}"
                              f"{did_you_mean(value, choices) if isinstance(value, str) else ''}.")


def _validate_table(table: Table, values: Any, path: tuple[str, ...], source: str,
                    parent: dict, foreign: Mapping[str, list[str]] | None = None) -> dict:
    where = f"{source}: {_label(path)}"
    if not isinstance(values, dict):
        raise DataFormatError(f"{source}: {_label(path)} = {values!r}; expected a table.")
    out: dict[str, Any] = {}
    kw_names, kw_owner = None, ""
    if table.kwargs is not None:
        kw_names, kw_owner = _kwarg_names(table, values, parent)
    known = [k.name for k in table.keys] + (kw_names or [])
    for name, value in values.items():
        key = table.key(name)
        loc = f"{source}: {_label(path + (name,))}" if key is not None and key.type in ("table", "tables") \
            else f"{where} {name}" if path else f"{source}: {name}"
        if key is not None:
            _check_type(value, key.type, loc, key.choices, key.minimum)
            if key.type == "table" and key.table is not None:
                value = _validate_table(key.table, value, path + (name,), source, values)
            elif key.type == "tables" and key.table is not None:
                value = {sub: _validate_table(key.table, v, path + (name, sub), source, values)
                         for sub, v in value.items()}
            out[name] = value
        elif table.entries is not None:
            _check_type(value, table.entries.type, loc)
            out[name] = value
        elif table.kwargs is not None and (kw_names is None or name in kw_names):
            out[name] = value
        else:
            raise DataFormatError(_unknown(name, path, known, source, kw_owner, foreign))
    for key in table.keys:
        if key.name in out:
            continue
        if key.required:
            what = "table" if key.type in ("table", "tables") else "key"
            label = _label(path + (key.name,)) if what == "table" else f"{key.name!r} in {_label(path)}"
            raise DataFormatError(f"{source}: missing {what} {label}: {key.doc}")
        if key.type == "table" and key.table is not None and key.table.always:
            out[key.name] = _validate_table(key.table, {}, path + (key.name,), source, out)
        elif key.default is not NO_DEFAULT:
            out[key.name] = copy.deepcopy(key.default)
    return out


def _unknown(name: str, path: tuple[str, ...], known: list[str], source: str, owner: str,
             foreign: Mapping[str, list[str]] | None) -> str:
    if not path and foreign and name in foreign:
        return (f"{source}: table [{name}] does not belong in this recipe kind (it is a table of "
                f"{format_list(foreign[name])} recipes). Keys and tables of this kind: "
                f"{format_list(known)}{did_you_mean(name, known) or '.'}")
    extra = f" (or a keyword argument of {owner})" if owner else ""
    shown = format_list(known, limit=30) if known else "none"
    return f"{source}: unknown key {name!r} in {_label(path)}{_hint(name, known)}Expected one of {shown}{extra}."


def _hint(word: str, options) -> str:
    """``"; did you mean 'alphas'? "`` or ``". "``: the join before "Expected ..."."""
    close = did_you_mean(word, options)
    return close + " " if close else ". "


def validate(root: Table, recipe: dict, *, source: str = "recipe",
             foreign: Mapping[str, list[str]] | None = None) -> dict:
    """Check ``recipe`` against ``root``; return a copy with every default filled in.

    Raises :class:`DataFormatError` naming ``source``, the table and the key for an unknown
    key or table (with the closest known name), a missing required key or table, or a value
    of the wrong type. ``foreign`` maps table names of other kinds to those kinds.
    """
    return _validate_table(root, recipe, (), str(source), {}, foreign)


def _walk_paths(table: Table, values: dict, func: Callable[[str, str, tuple], Any],
                path: tuple[str, ...] = ()) -> dict:
    """A copy of ``values`` with ``func(value, path_kind, where)`` applied to every path."""
    out = dict(values)
    for name, value in values.items():
        key = table.key(name)
        if key is not None:
            if key.type == "table" and key.table is not None and isinstance(value, dict):
                out[name] = _walk_paths(key.table, value, func, path + (name,))
            elif key.type == "tables" and key.table is not None and isinstance(value, dict):
                out[name] = {s: _walk_paths(key.table, v, func, path + (name, s)) for s, v in value.items()}
            elif key.path and isinstance(value, str):
                out[name] = func(value, key.path, path + (name,))
        elif table.entries is not None and table.entries.path and isinstance(value, str):
            out[name] = func(value, table.entries.path, path + (name,))
    return out


def _split_variable(value: str) -> tuple[str, str]:
    """``"f.zarr:layer1"`` -> ``("f.zarr", ":layer1")``; a path that exists as a whole, or
    whose suffix holds a separator, is not split."""
    head, sep, var = value.rpartition(":")
    if not sep or not head or "/" in var or "\\" in var or Path(value).exists() or len(head) == 1:
        return value, ""
    return head, sep + var


def _resolve(value: str, kind: str, base: Path) -> str:
    text, suffix = _split_variable(value) if kind == "path[:variable]" else (value, "")
    p = Path(os.path.expanduser(text))
    if p.is_absolute():
        return str(p) + suffix
    if kind == "path-or-name" and not (text.startswith((".", "~")) or (base / p).exists()):
        return value  # a name ("tiny", "owner/model"), not a path
    return str(Path(os.path.normpath(base / p))) + suffix


def resolve_paths(root: Table, recipe: dict, base: str | os.PathLike) -> dict:
    """A copy of the validated ``recipe`` with every relative path made absolute against
    ``base`` (the folder of the recipe file)."""
    base = Path(base).absolute()
    return _walk_paths(root, recipe, lambda v, kind, _w: _resolve(v, kind, base))


def path_values(root: Table, recipe: dict) -> list[tuple[str, str]]:
    """``(dotted key, path)`` of every path in a validated, resolved recipe."""
    found: list[tuple[str, str]] = []

    def grab(value: str, kind: str, where: tuple) -> str:
        text = _split_variable(value)[0] if kind == "path[:variable]" else value
        if kind != "path-or-name" or Path(text).is_absolute():
            found.append((".".join(where), text))
        return value

    _walk_paths(root, recipe, grab)
    return found


# -- --set overrides -------------------------------------------------------------------------
def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" or word == "rsa" else "a"


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string: --set store.path=/data/nsd.zarr


def _lookup(root: Table, parts: list[str], item: str, kind: str, values: dict) -> Key | Entries | str:
    """The schema of the dotted key ``parts`` (a Key, the Entries of a free-form table, or
    ``"kwarg"``); a DataFormatError with "did you mean" when it names nothing."""
    table, here, path, parent = root, values, (), {}
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        key = table.key(part)
        if key is not None:
            if last:
                return key
            if key.type == "table" and key.table is not None:
                parent = here
                table, here, path = key.table, here.get(part) if isinstance(here.get(part), dict) else {}, path + (part,)
                continue
            if key.type == "tables" and key.table is not None and depth + 1 < len(parts):
                if depth + 2 == len(parts):
                    raise DataFormatError(
                        f"--set {item!r}: [{'.'.join(path + (part, parts[depth + 1]))}] is a table; "
                        "set one of its keys.")
                sub = here.get(part, {}) if isinstance(here.get(part), dict) else {}
                table = key.table
                here = sub.get(parts[depth + 1], {}) if isinstance(sub.get(parts[depth + 1]), dict) else {}
                path = path + (part, parts[depth + 1])
                rest = parts[depth + 2:]
                return _lookup(table, rest, item, kind, here) if rest else key
            raise DataFormatError(f"--set {item!r}: {'.'.join(parts[:depth + 1])} is not a table.")
        if last and table.entries is not None:
            return table.entries
        if last and table.kwargs is not None:
            names, owner = _kwarg_names(table, here, parent)
            if names is None or part in names:
                return "kwarg"
        known = [k.name for k in table.keys]
        if table.kwargs is not None:
            names, _ = _kwarg_names(table, here, parent)
            known += names or []
        raise DataFormatError(
            f"--set {item!r}: {_article(kind)} {kind} recipe has no key {part!r} in {_label(path)}"
            f"{_hint(part, known)}Expected one of {format_list(known, limit=30) or 'none'}.")
    raise DataFormatError(f"--set {item!r}: expected a key.")


def apply_overrides(root: Table, recipe: dict, sets, *, kind: str = "",
                    cwd: str | os.PathLike | None = None) -> dict:
    """A copy of the raw ``recipe`` with each ``"table.key=value"`` of ``sets`` applied.

    Every key is checked against the schema (unknown keys name the closest known one); the
    value is read as TOML, or as a plain string when it is not valid TOML. A relative path
    value is made absolute against ``cwd`` (default: the current directory).
    """
    out = copy.deepcopy(recipe)
    base = Path(cwd if cwd is not None else os.getcwd()).absolute()
    for item in sets:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p for p in parts):
            raise DataFormatError(
                f"Invalid --set {item!r}: expected TABLE.KEY=VALUE, e.g. --set store.path=/data/nsd.zarr."
            )
        if parts == ["kind"]:
            raise DataFormatError(f"--set {item!r}: the kind of a recipe cannot be overridden.")
        spec = _lookup(root, parts, item, kind, out)
        value = _parse_value(text.strip())
        if isinstance(spec, Key) and spec.type in ("table", "tables"):
            raise DataFormatError(f"--set {item!r}: [{key}] is a table; set one of its keys.")
        path_kind = spec.path if isinstance(spec, Key | Entries) else None
        if path_kind and isinstance(value, str):
            value = _resolve(value, path_kind, base)
        table = out
        for part in parts[:-1]:
            nxt = table.get(part)
            if not isinstance(nxt, dict):
                nxt = table[part] = {}
            table = nxt
        table[parts[-1]] = value
    return out


# -- the reference page ------------------------------------------------------------------------
def _default_text(key: Key) -> str:
    if key.required:
        return "required"
    if key.default is NO_DEFAULT:
        return "optional"
    return "`" + _toml(key.default) + "`"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return repr(value)


def _md_table(table: Table, path: tuple[str, ...], lines: list[str]) -> None:
    title = "top level" if not path else "[" + ".".join(path) + "]"
    need = " (required)" if table.required else ""
    lines += [f"#### `{title}`{need}", "", table.doc, ""]
    rows = [k for k in table.keys if not (k.type in ("table", "tables") and k.table is not None)]
    if rows or table.entries is not None:
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for k in rows:
            typ = _TYPES[k.type][0] + (f" ({k.path})" if k.path else "")
            if k.choices:
                typ += ": " + ", ".join(f"`{_toml(c)}`" for c in k.choices)
            if k.minimum is not None:
                typ += f" of at least {k.minimum!r}"
            lines.append(f"| `{k.name}` | {typ} | {_default_text(k)} | {k.doc} |")
        if table.entries is not None:
            typ = _TYPES[table.entries.type][0] + (f" ({table.entries.path})" if table.entries.path else "")
            lines.append(f"| *NAME* | {typ} | | {table.entries.doc} |")
        lines.append("")
    if table.kwargs_doc:
        lines += [table.kwargs_doc, ""]
    for note in table.notes:
        lines += [note, ""]
    for k in table.keys:
        if k.type == "table" and k.table is not None:
            _md_table(k.table, path + (k.name,), lines)
        elif k.type == "tables" and k.table is not None:
            _md_table(k.table, path + (k.name, "NAME"), lines)


def schema_markdown(kinds: Mapping[str, tuple[str, Table]]) -> str:
    """The reference section of docs/recipes.md: one part per kind, every table and key."""
    lines: list[str] = []
    for kind, (doc, root) in kinds.items():
        lines += [f"### kind = \"{kind}\"", "", doc, ""]
        _md_table(root, (), lines)
    return "\n".join(lines).rstrip() + "\n"


def function(spec: str) -> Callable:
    """The object named ``"module:attribute"`` (imported on use)."""
    mod, _, attr = spec.partition(":")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
