"""The command-line chain simulate -> ingest -> features -> fit -> map -> report, each
command's output the next one's input, as a user runs it."""

from __future__ import annotations

import csv
import json
import warnings

import pytest
from typer.testing import CliRunner

from neuroalign.cli import app

LAYERS = "layer1,layer4"


def _ok(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, f"neuroalign {' '.join(args)}\n{res.output}"
    return res.output


@pytest.mark.parametrize("n_images", [pytest.param(40, id="small"),
                                      pytest.param(120, id="larger", marks=pytest.mark.slow)])
def test_cli_chain(tmp_path, monkeypatch, n_images):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _ok(["simulate", "sim", "--n-images", str(n_images), "--n-test", str(n_images // 5),
             "--n-sessions", "2", "--image-size", "32"])
        _ok(["ingest", "nsd", "sim", "--subject", "1", "--out", "subj01.zarr"])
        _ok(["features", "extract", "torchvision:resnet18", "--stimuli", "subj01.zarr", "--layers",
             LAYERS, "--random-weights", "--transform", "simulation", "--out", "feats.zarr"])
        (tmp_path / "fit.toml").write_text(
            'kind = "fit"\n[store]\npath = "subj01.zarr"\n[features]\npath = "feats.zarr"\n'
            '[encoder]\nkind = "layer-sweep"\ncv = 3\nalphas = { logspace = [-1, 5, 7] }\n'
            '[outputs]\nn_boot = 20\n')
        out = _ok(["fit", "fit.toml"])
        assert f"fit results: {tmp_path / 'fit-results'}" in out
        out = _ok(["map", "fit-results", "-o", "maps"])
        assert "preferred layer per ROI:" in out
        _ok(["report", "fit-results", "maps", "-o", "report.html"])
    # each step read what the one before wrote
    run = json.loads((tmp_path / "fit-results" / "run.json").read_text())
    assert run["config"]["store"]["path"] == str(tmp_path / "subj01.zarr")
    assert run["config"]["features"]["path"] == str(tmp_path / "feats.zarr")
    mrun = json.loads((tmp_path / "maps" / "run.json").read_text())
    assert mrun["config"]["results"]["path"] == str(tmp_path / "fit-results")
    assert mrun["config"]["store"]["path"] == str(tmp_path / "subj01.zarr")
    with open(tmp_path / "maps" / "roi_summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["best_layer"] for r in rows} <= set(LAYERS.split(","))
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Summary</h2>" in html and "<h2>fit: fit-results</h2>" in html
    assert "<h2>map: maps</h2>" in html and html.count("<img") >= 3
    # neuroalign's own choices raise no library warnings (one zarr format for everything)
    noisy = [str(w.message)[:120] for w in caught
             if "zarr" in type(w.message).__module__ or "Zarr" in type(w.message).__name__
             or "UnstableSpecification" in type(w.message).__name__]
    assert noisy == []
