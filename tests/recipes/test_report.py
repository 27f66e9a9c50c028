"""`neuroalign report RESULTS...` and `neuroalign.recipes.write_report` on real outputs."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from neuroalign.cli import app
from neuroalign.exceptions import DataFormatError, OutputExistsError
from neuroalign.recipes import run_recipe, write_report


def _fit(tmp_path, own_data, extra: str = "", name: str = "fit.toml"):
    root, store, feats = own_data
    recipe = tmp_path / name
    recipe.write_text(f'kind = "fit"\n{extra}[store]\npath = "{store}"\n[features]\npath = "{feats}"\n'
                      'layers = "good"\n[encoder]\nkind = "ridge"\nalphas = [0.1, 10, 1000]\ncv = 3\n'
                      '[outputs]\nn_boot = 50\n')
    return recipe, run_recipe(recipe)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, own_data):
    """A fit and an RSA output folder of the user's own data."""
    tmp = tmp_path_factory.mktemp("outputs")
    recipe, fit = _fit(tmp, own_data, extra='[study]\nname = "own fit"\n')
    _, store, feats = own_data
    rsa = tmp / "rsa.toml"
    rsa.write_text(f'kind = "rsa"\n[store]\npath = "{store}"\n[rdm]\npseudo_subjects = 2\n[models]\n'
                   f'good = "{feats}:good"\nnoise = "{feats}:noise"\n[rsa]\nn_bootstrap = 20\n')
    return recipe, fit, run_recipe(rsa)


def test_fit_of_own_data_reads_features_from_a_file(outputs):
    recipe, fit, _ = outputs
    rois = fit["result"]["rois"]
    assert set(rois) == {"A", "B"}
    # the responses are a read-out of the 'good' features: held-out predictions work
    assert all(r["score"]["value"] > 0.3 for r in rois.values()), rois


def test_report_of_fit_and_rsa(outputs, tmp_path):
    recipe, fit, rsa = outputs
    page = write_report([fit["out"], rsa["out"]], tmp_path / "study.html")
    html = page.read_text()
    # the summary table comes first, one row per folder, then one section per analysis
    first_h2 = re.findall(r"<h2>(.*?)</h2>", html)
    assert first_h2[0] == "Summary" and first_h2[1:] == ["fit: own fit", "rsa: rsa-results"]
    summary = html.split("<h2>fit: own fit</h2>")[0]
    assert "own fit" in summary and "rsa-results" in summary and "best model" in summary
    # the exact recipe and the versions that produced each output
    assert recipe.read_text().replace('"', "&#34;") in html
    assert "<td>neuroalign</td>" in html and "<td>numpy</td>" in html
    # per-ROI scores of the fit, a figure per analysis (fit: the ROI bars; rsa: its PNGs)
    assert html.count("<img") == 3
    assert "<figcaption>rsa_all.png</figcaption>" in html and "<figcaption>rdms_all.png</figcaption>" in html
    assert "per-ROI" in html and "noise ceiling" in html


def _table(html: str, header: str) -> list[dict[str, str]]:
    """The rows of the page's table that has the column ``header``, as dicts."""
    for table in re.findall(r"<table>(.*?)</table>", html, flags=re.S):
        cols = re.findall(r"<th>(.*?)</th>", table)
        if header in cols:
            rows = re.findall(r"<tr>((?:<td>.*?</td>)+)</tr>", table)
            return [dict(zip(cols, re.findall(r"<td>(.*?)</td>", r), strict=True)) for r in rows]
    raise AssertionError(f"no table with column {header!r}")


def test_report_shows_the_ceiling_normalised_score_in_percent(outputs, tmp_path):
    """summary.json holds the ceiling-normalised score as a fraction; the column that says
    "%" shows it (and its interval) times 100."""
    from pathlib import Path

    _, fit, _ = outputs
    rois = json.loads((Path(fit["out"]) / "summary.json").read_text())["rois"]
    html = write_report(fit["out"], tmp_path / "r.html").read_text()
    rows = {r["ROI"]: r for r in _table(html, "% of noise ceiling")}
    assert set(rows) == set(rois)
    for roi, entry in rois.items():
        frac = entry["ceiling_normalised"]["value"]
        lo, hi = entry["ceiling_normalised"]["ci95"]
        assert 0 < frac < 1.5, frac  # a fraction of the ceiling
        assert rows[roi]["% of noise ceiling"] == f"{100 * frac:.4g}"
        assert rows[roi]["95% CI of % of noise ceiling"] == f"[{100 * lo:.3g}, {100 * hi:.3g}]"
        assert rows[roi]["mean pearson"] == f"{entry['score']['value']:.4g}"  # the raw score as is


def test_report_command_and_errors(outputs, tmp_path):
    _, fit, _ = outputs
    res = CliRunner().invoke(app, ["report", fit["out"], "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    assert f"report: {tmp_path / 'r.html'}" in res.output
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="notes.txt: exists and is not a report neuroalign wrote"):
        write_report(fit["out"], tmp_path / "notes.txt")
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataFormatError, match="plain': not a results folder neuroalign wrote"):
        write_report([fit["out"], tmp_path / "plain"], tmp_path / "x.html")
    res = CliRunner().invoke(app, ["report", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no such results folder" in res.output


def test_report_never_replaces_a_file_neuroalign_did_not_write(outputs, tmp_path):
    _, fit, _ = outputs
    mine = tmp_path / "index.html"
    mine.write_text("<html>my own lab notes</html>")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="index.html: exists and is not a report "
                                                    "neuroalign wrote .* even with overwrite"):
            write_report(fit["out"], mine, overwrite=overwrite)
    assert mine.read_text() == "<html>my own lab notes</html>"
    res = CliRunner().invoke(app, ["report", fit["out"], "-o", str(mine), "--overwrite"])
    assert res.exit_code == 2 and "is not a report neuroalign wrote" in res.output
    assert mine.read_text() == "<html>my own lab notes</html>"
    # a report of neuroalign's: replaced with --overwrite only
    page = tmp_path / "page.html"
    write_report(fit["out"], page)
    with pytest.raises(OutputExistsError, match=r"page.html: already exists .*--overwrite"):
        write_report(fit["out"], page)
    write_report(fit["out"], page, overwrite=True, title="second")
    assert "<title>second</title>" in page.read_text()
    # ... unless it was changed since: then it is the user's
    page.write_text(page.read_text().replace("second", "annotated by me"))
    with pytest.raises(OutputExistsError, match="page.html: exists and is not a report"):
        write_report(fit["out"], page, overwrite=True)
    assert "annotated by me" in page.read_text()
    # a link at the name is never written through
    target = tmp_path / "target.html"
    target.write_text("the link's target")
    (tmp_path / "link.html").symlink_to(target)
    with pytest.raises(OutputExistsError, match="link.html: exists and is not a file neuroalign wrote"):
        write_report(fit["out"], tmp_path / "link.html", overwrite=True)
    assert target.read_text() == "the link's target"


def test_report_in_an_output_folder_is_one_of_its_files(tmp_path, own_data):
    """`neuroalign report FOLDER` writes FOLDER/report.html; the recipe's --overwrite then
    accepts the folder (and replaces the page with it)."""
    from pathlib import Path

    recipe, fit = _fit(tmp_path, own_data)
    out = Path(fit["out"])
    cli = CliRunner()
    assert cli.invoke(app, ["report", str(out)]).exit_code == 0
    assert (out / "report.html").is_file()
    again = cli.invoke(app, ["report", str(out)])
    assert again.exit_code == 2 and "report.html: already exists" in again.output
    assert cli.invoke(app, ["report", str(out), "--overwrite"]).exit_code == 0
    refit = cli.invoke(app, ["fit", str(recipe), "--overwrite"])
    assert refit.exit_code == 0, refit.output
    assert not (out / "report.html").exists() and (out / "results.zarr").is_dir()
    # a file of the user's in the folder still keeps it
    (out / "notes.html").write_text("mine")
    with pytest.raises(OutputExistsError, match="notes.html: exists and neuroalign did not write it"):
        write_report(out, out / "notes.html", overwrite=True)
    refit = cli.invoke(app, ["fit", str(recipe), "--overwrite"])
    assert refit.exit_code == 2 and "notes.html" in refit.output
    assert (out / "notes.html").read_text() == "mine"


def test_run_json_records_recipe_sets_and_versions(outputs):
    recipe, fit, _ = outputs
    from pathlib import Path

    run = json.loads((Path(fit["out"]) / "run.json").read_text())
    assert run["recipe_file"] == str(recipe) and run["recipe_text"] == recipe.read_text()
    assert run["config"]["encoder"]["alphas"] == [0.1, 10, 1000]
    assert run["versions"]["neuroalign"] and run["versions"]["python"]


@pytest.mark.slow
def test_report_of_the_demo_folder(quick_demo, tmp_path):
    out, res = quick_demo
    assert res.exit_code == 0, res.output
    checks = json.loads((out / "checks.json").read_text())
    assert checks and all(c["result"] in ("PASS", "NOT SHOWN") for c in checks)
    html = write_report(out, tmp_path / "demo.html").read_text()
    n_pass = sum(c["result"] == "PASS" for c in checks)
    assert f"{n_pass} of {len(checks)} checks pass, 0 fail" in html
    assert html.count("<img") >= 10  # the stages' figures (grids, maps, bars)
