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


#: a code cell that draws: calls one of neuroalign's ``plot_*`` functions or pyplot
PLOTTING = re.compile(r"\bplot_\w+\(|\bplt\.\w+")


def cells_without_image(nb) -> list[int]:
    """Indices of the code cells that draw (``plot_*(`` or ``plt.``) but have no PNG output."""
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not PLOTTING.search(cell.source):
            continue
        if not any(o.output_type in ("display_data", "execute_result") and "image/png" in o.get("data", {})
                   for o in cell.get("outputs", [])):
            missing.append(i)
    return missing


def _execute(nb, cwd: Path, monkeypatch) -> None:
    from nbclient import NotebookClient

    # the kernel inherits the environment: make it import this checkout of neuroalign, and
    # let ipykernel choose its inline backend (an inherited MPLBACKEND=Agg would hide figures)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()


def test_a_plotting_cell_without_an_image_is_caught():
    """The check itself: a cell that draws and shows nothing is reported, by index."""
    v4 = nbformat.v4
    png = v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("plt.show() in markdown does not count"),
        v4.new_code_cell("x = 1", outputs=[]),
        v4.new_code_cell("fig = plot_rdms(d)\nplt.show()", outputs=[png]),
        v4.new_code_cell("fig = plot_rdms(d)\nplt.show()",
                         outputs=[v4.new_output("stream", name="stdout", text="done")]),
        v4.new_code_cell("fig, ax = plt.subplots()", outputs=[]),
    ])
    assert cells_without_image(nb) == [3, 4]


@pytest.mark.slow  # a kernel start, ~4 s; tests/test_plotting.py is the fast guard
@pytest.mark.timeout(120)
def test_library_figures_display_in_a_kernel(tmp_path, monkeypatch):
    """A real kernel: a neuroalign plot function's figure is shown by ``plt.show()``; a
    detached ``matplotlib.figure.Figure`` (what the plot functions used to return) is not,
    and the check reports that cell."""
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_code_cell("import numpy as np\nimport matplotlib.pyplot as plt\n"
                         "from neuroalign.compare import plot_rdms"),
        v4.new_code_cell("fig = plot_rdms(np.eye(3))\nplt.show()"),
        v4.new_code_cell("from matplotlib.figure import Figure\n"
                         "fig = Figure()\nfig.subplots().plot([0, 1])\nplt.show()"),
    ])
    _execute(nb, tmp_path, monkeypatch)
    assert cells_without_image(nb) == [2]


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
    monkeypatch.setenv("NEUROALIGN_NB_OUT", str(nb_data))
    monkeypatch.setenv("NEUROALIGN_PROGRESS", "0")
    nb = nbformat.read(path, as_version=4)
    _execute(nb, tmp_path, monkeypatch)
    text = _text_outputs(nb)
    blank = cells_without_image(nb)
    assert not blank, (f"{path.name}: code cells {blank} draw a figure but show no image:\n"
                       + "\n---\n".join(nb.cells[i].source for i in blank))
    fails = [line for line in text.splitlines() if line.startswith("FAIL")]
    assert not fails, "\n".join(fails)
    n_pass = sum(line.startswith("PASS") for line in text.splitlines())
    assert n_pass >= MIN_PASS[path.stem], text[-3000:]
    assert str(nb_data) in text  # the notebook wrote under the folder it was given
