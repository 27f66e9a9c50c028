"""The user notebooks: stripped in git, and executed top to bottom on the simulated brain."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: notebook -> minimum number of PASS lines its truth checks print
MIN_PASS = {
    "01_voxelwise_encoders": 14,
    "02_rsa_and_shape_metrics": 9,
    "03_brain_guided_images": 9,
    "04_meg_eeg_time_resolved": 9,
}


def test_the_four_notebooks_are_there():
    assert [p.stem for p in NOTEBOOKS] == sorted(MIN_PASS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_and_shows_real_data(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a code cell has outputs"
            assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"
    md = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"real (NSD|THINGS-EEG2|dataset)", md) and re.search(r'"/data/[\w-]+"', md), (
        f"{path.name}: no markdown cell shows how to point it at a real dataset path"
    )
    code = " ".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "REAL_DATA_PATH = None" in code and "if REAL_DATA_PATH:" in code


def _text_outputs(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                out.append(o.text)
            elif o.output_type in ("execute_result", "display_data"):
                out.append(o.get("data", {}).get("text/plain", ""))
            elif o.output_type == "error":
                out.append("\n".join(o.traceback))
    return "\n".join(out)


@pytest.fixture(scope="module")
def nb_data(tmp_path_factory):
    """One data folder for all notebooks (the simulated NSD brain is written once and reused)."""
    return tmp_path_factory.mktemp("notebook-data")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_recovers_the_truth(path, nb_data, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("NEUROALIGN_NB_OUT", str(nb_data))
    monkeypatch.setenv("NEUROALIGN_PROGRESS", "0")
    # the kernel inherits the environment: make it import this checkout of neuroalign
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = _text_outputs(nb)
    fails = [line for line in text.splitlines() if line.startswith("FAIL")]
    assert not fails, "\n".join(fails)
    n_pass = sum(line.startswith("PASS") for line in text.splitlines())
    assert n_pass >= MIN_PASS[path.stem], text[-3000:]
    assert str(nb_data) in text  # the notebook wrote under the folder it was given
