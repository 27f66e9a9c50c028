"""The documentation: getting-started pages run as written, the API reference builds
without a warning (Sphinx + numpydoc), and every page is reachable."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted((DOCS / "getting-started").glob("*.rst"))
#: one page per user job
JOBS = {"encoders", "rsa", "mapping", "decoding", "meeg"}
BLOCK = re.compile(r"^\.\. code-block:: python\n\n((?:(?:    .*)?\n)+)", re.M)


def python_blocks(text: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of a reST page, dedented."""
    return [textwrap.dedent(b).strip() for b in BLOCK.findall(text)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    env["NEUROALIGN_PROGRESS"] = "0"
    return env


def test_a_page_per_user_job_linked_from_the_index_and_the_readme():
    assert {p.stem for p in PAGES} == JOBS
    index = (DOCS / "index.rst").read_text()
    api = (DOCS / "api" / "index.rst").read_text()
    readme = (ROOT / "README.md").read_text()
    for job in JOBS:
        assert f"getting-started/{job}" in index, job
        assert f"/getting-started/{job}" in api, job
        assert f"docs/getting-started/{job}.rst" in readme, job


def test_python_blocks_are_found():
    page = ".. code-block:: python\n\n    a = 1\n\n    b = a\n\ntext\n\n.. code-block:: text\n\n    no\n"
    assert python_blocks(page) == ["a = 1\n\nb = a"]
    for p in PAGES:
        assert len(python_blocks(p.read_text())) >= 2, p.name


@pytest.mark.slow  # 5-45 s a page on a shared 2-core machine, mostly imports (torch for decoding)
@pytest.mark.timeout(600)
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_getting_started_page_runs_as_written(page, tmp_path):
    code = "\n\n".join(python_blocks(page.read_text()))
    script = tmp_path / f"{page.stem}.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


@pytest.mark.slow  # ~15 s: imports every subpackage and renders ~200 pages
@pytest.mark.timeout(600)
def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html", "-j", "auto",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    import importlib

    sys.path.insert(0, str(DOCS))
    try:
        conf = importlib.import_module("conf")
    finally:
        sys.path.remove(str(DOCS))
    for module in conf.SUBPACKAGES:
        page = (out / "api" / f"{module.split('.')[-1]}.html").read_text()
        mod = importlib.import_module(module)
        missing = [n for n in mod.__all__ if n not in page]
        assert not missing, f"{module}: {missing} not on its API page"
    for job in JOBS:
        assert (out / "getting-started" / f"{job}.html").exists()


def test_docstrings_cite_only_documents_in_the_repository():
    """The design notes are docs/design.md, dataset formats the cards in datasets/; notes
    kept outside the repository (DESIGN.md, DATASETS.md, REFERENCES.md, STYLE.md) are
    never cited."""
    assert (DOCS / "design.md").exists() and (ROOT / "datasets" / "nsd.toml").exists()
    outside = re.compile(r"\b(DESIGN|DATASETS|REFERENCES|STYLE)\.md\b")
    stale = [str(p.relative_to(ROOT)) for p in [*(ROOT / "neuroalign").rglob("*.py"), ROOT / "README.md",
                                                *DOCS.rglob("*.rst")]
             if outside.search(p.read_text())]
    assert not stale, f"cite documents in the repository (docs/design.md, datasets/*.toml): {stale}"
