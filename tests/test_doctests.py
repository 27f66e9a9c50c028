"""The Examples of the ten entry points run as doctests (and stay fast)."""

from __future__ import annotations

import doctest
import importlib
import time

import pytest

#: the ten entry points a new user meets first (getting-started pages, README)
ENTRY_POINTS = [
    "neuroalign.store.from_arrays",
    "neuroalign.store.open_store",
    # imports torch: ~2 s on a quiet machine, 15 s on a loaded 2-core one
    pytest.param("neuroalign.features.extract", marks=pytest.mark.slow),
    "neuroalign.encoders.RidgeEncoder",
    "neuroalign.encoders.LayerSweep",
    "neuroalign.compare.rdm",
    "neuroalign.compare.rsa",
    "neuroalign.compare.shape_distance",
    "neuroalign.mapping.layer_preference",
    "neuroalign.decoders.EmbeddingDecoder",
]
NEEDS_TORCH = {"neuroalign.features.extract"}


def _resolve(name: str):
    module, attr = name.rsplit(".", 1)
    return getattr(importlib.import_module(module), attr)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_point_examples_run(name, tmp_path, monkeypatch):
    if name in NEEDS_TORCH:
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    obj = _resolve(name)
    tests = [t for t in doctest.DocTestFinder(recurse=False).find(obj, name) if t.examples]
    assert tests and sum(len(t.examples) for t in tests) >= 3, f"{name} has no runnable Examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    start = time.perf_counter()
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed (output above)"
    # fast enough to read and run: seconds, not minutes (the first import of torch or
    # scikit-learn dominates on a loaded machine)
    assert time.perf_counter() - start < 30


def test_a_wrong_example_output_fails():
    """The runner would catch an Example whose shown output is not what the code gives."""
    def f():
        """
        >>> 1 + 1
        3
        """

    (t,) = doctest.DocTestFinder().find(f, "f")
    runner = doctest.DocTestRunner()
    runner.run(t, out=lambda s: None)
    assert runner.summarize(verbose=False).failed == 1
