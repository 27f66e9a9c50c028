"""numpydoc on every public object: each name in a subpackage's ``__all__`` (and each public
method its classes define) has a docstring whose Parameters match the signature and, where
it returns something, a Returns section (numpydoc's own validation)."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

SUBPACKAGES = ["neuroalign", "neuroalign.store", "neuroalign.stimuli", "neuroalign.features",
               "neuroalign.encoders", "neuroalign.compare", "neuroalign.mapping",
               "neuroalign.decoders", "neuroalign.datasets", "neuroalign.testing",
               "neuroalign.exceptions", "neuroalign.recipes"]
#: GL08 no docstring; PR01 a parameter not documented; PR02 a documented parameter that
#: does not exist; RT01 no Returns section where the function returns something
CODES = ("GL08", "PR01", "PR02", "RT01")
#: objects still short of CODES, to be documented (this list only shrinks: a listed object
#: that passes fails the test, so the entry must be deleted)
KNOWN_GAPS: set[str] = set()


def public_objects() -> list[str]:
    names = []
    for sub in SUBPACKAGES:
        mod = importlib.import_module(sub)
        for n in mod.__all__:
            obj = getattr(mod, n)
            if inspect.ismodule(obj) or not (inspect.isclass(obj) or callable(obj)):
                continue  # constants are documented on their module's page
            names.append(f"{sub}.{n}")
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                names.extend(f"{sub}.{n}.{m}" for m, v in vars(obj).items()
                             if not m.startswith("_") and (inspect.isfunction(v) or isinstance(v, (classmethod, staticmethod))))
    return names


def problems(name: str) -> list[str]:
    result = numpydoc_validate.validate(name)
    out = []
    for code, msg in result["errors"]:
        if code not in CODES:
            continue
        if code == "PR01":  # a private keyword (``_func``) is not part of the public API
            missing = [m for m in re.findall(r"'([^']+)'", msg) if not m.startswith("_")]
            if not missing:
                continue
        out.append(f"{code} {msg}")
    return out


# imports every subpackage (torch included): ~20 s alone on a loaded 2-core machine, about
# 2 s inside a full run (where the subpackages are imported already)
def test_every_public_object_has_numpydoc_parameters_and_returns():
    bad = {}
    for name in public_objects():
        found = problems(name)
        if found and name not in KNOWN_GAPS:
            bad[name] = found
    assert not bad, "\n".join(f"{k}: {'; '.join(v)}" for k, v in bad.items())


def test_known_gaps_only_shrink():
    names = set(public_objects())
    fixed = sorted(n for n in KNOWN_GAPS if n not in names or not problems(n))
    assert not fixed, f"documented now (or gone): delete from KNOWN_GAPS: {fixed}"


def test_the_check_catches_a_missing_parameter_and_returns():
    found = problems("tests.test_numpydoc._undocumented")
    assert {p.split()[0] for p in found} == {"PR01", "RT01"}


def _undocumented(x, y):
    """Add.

    Parameters
    ----------
    x : int
        First.
    """
    return x + y
