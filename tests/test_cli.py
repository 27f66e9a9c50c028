"""The neuroalign command line: --help everywhere, --version, python -m, simulate/info/demo."""

import subprocess
import sys

import click
import pytest
import typer
from typer.testing import CliRunner

from neuroalign import __version__
from neuroalign.cli import app

runner = CliRunner()


def _all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,)
        if hasattr(cmd, "commands"):  # typer groups are not click.Group subclasses
            yield from _all_commands(cmd, prefix + (name,))


def test_every_command_has_help():
    group = typer.main.get_command(app)
    names = list(_all_commands(group))
    assert {("simulate",), ("info",), ("demo",), ("features", "extract"), ("ingest", "nsd")} <= set(names)
    for path in names:
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "Usage" in res.output and len(res.output) > 100


def test_help_renders_in_a_real_process():
    """Outside CliRunner typer formats help with rich; '[data]'-style text must not be read as
    markup (it once crashed `neuroalign features extract --help`)."""
    script = (
        "import typer\n"
        "from neuroalign.cli import app\n"
        "group = typer.main.get_command(app)\n"
        "def walk(g, prefix=()):\n"
        "    for name, cmd in g.commands.items():\n"
        "        yield prefix + (name,)\n"
        "        if hasattr(cmd, 'commands'):\n"
        "            yield from walk(cmd, prefix + (name,))\n"
        "for path in walk(group):\n"
        "    try:\n"
        "        group.main([*path, '--help'], prog_name='neuroalign', standalone_mode=False)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, path\n"
        "print('ALL-HELP-OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**__import__("os").environ, "COLUMNS": "100", "FORCE_COLOR": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ALL-HELP-OK" in out.stdout and "Usage" in out.stdout


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"neuroalign {__version__}"


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "neuroalign", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"neuroalign {__version__}"
    out = subprocess.run([sys.executable, "-m", "neuroalign", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "simulate" in out.stdout


def test_simulate_and_info(tmp_path):
    res = runner.invoke(app, ["simulate", str(tmp_path / "sim"), "--n-images", "30", "--n-test", "6",
                              "--n-sessions", "3"])
    assert res.exit_code == 0, res.output
    assert "V1v" in res.output and "layer1" in res.output
    res = runner.invoke(app, ["info", str(tmp_path / "sim" / "store.zarr")])
    assert res.exit_code == 0, res.output
    assert "presentations: 90 (30 unique stimuli; train: 72, test: 18)" in res.output
    res = runner.invoke(app, ["simulate", str(tmp_path / "eeg"), "--format", "things-eeg2",
                              "--n-images", "20", "--n-test", "4"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["info", str(tmp_path / "eeg" / "store.zarr")])
    assert "time: 100 samples" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "nope.zarr"], "nope.zarr: no such store"),
        (["simulate", "{tmp}/x", "--n-images", "20", "--n-test", "20"], "Expected fewer than n_images=20"),
        (["simulate", "{tmp}/x", "--format", "bids"], "Invalid value for '--format'"),
    ],
)
def test_user_errors_are_clean(tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


STAGE_CHECKS = (
    "NSD adapter", "ncsnr", "noise ceiling", "layer sweep recovers the layer of hV4",
    "voxel-wise layer preference", "RSA ranks the true model first for FFA-1",
    "RSA noise ceiling of PPA brackets", "shape metric", "attention routing beats ridge",
    "routing maps peak on the true target cell", "held-out retrieval", "reconstructions: 2-way",
    "guided images drive the TRUE FFA-1 response", "guided images drive the TRUE PPA response",
)


@pytest.mark.slow
def test_demo_quick(quick_demo):
    """The README's main job, in quick mode: every stage's truth check passes."""
    out, res = quick_demo
    assert res.exit_code == 0, res.output
    assert "FAIL" not in res.output
    for stage in STAGE_CHECKS:
        assert f"[PASS] {stage}" in res.output, stage
    for k in range(1, 11):
        assert f"\n== {k}. " in res.output, f"stage {k} did not run"
    _check_report(out / "report.html")


@pytest.mark.slow
def test_demo_rerun_reuses_caches(quick_demo):
    """A rerun reuses the simulation, store, features and trained pipeline in --out."""
    from neuroalign.recipes._demo import STAGES, DemoConfig
    from neuroalign.recipes._demo_brain import _pipeline
    from neuroalign.recipes._html import Report

    out, res = quick_demo
    assert res.exit_code == 0, res.output
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "report" not in p.name}
    lines: list[str] = []
    cfg = DemoConfig(out=out, quick=True, echo=lines.append)
    report = Report("rerun")
    for stage in STAGES[:4]:  # simulate, ingest, reliability, features
        stage(cfg, report)
    _pipeline(cfg)
    assert any(line.startswith("reusing") for line in lines), lines
    assert report.all_passed
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "report" not in p.name}
    assert after == before, "a rerun rewrote cached files"


def _check_report(path):
    import base64
    import io
    from html.parser import HTMLParser

    from PIL import Image

    class P(HTMLParser):
        imgs, ids, cells = [], [], []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "img":
                self.imgs.append(a["src"])
            if "id" in a:
                self.ids.append(a["id"])

        def handle_data(self, data):
            self.cells.append(data)

    p = P()
    p.feed(path.read_text())
    assert "truth-vs-recovered" in p.ids
    assert p.imgs, "the report embeds figures"
    for src in p.imgs:
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "PASS" in p.cells and "FAIL" not in p.cells
