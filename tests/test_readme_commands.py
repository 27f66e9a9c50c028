"""Every shell command in README.md and docs/*.md runs as written.

The commands are read from the ```bash / ```sh / ```shell blocks (continuation lines joined,
comments dropped, ``a && b`` split). Commands that install things or run the test suite are
listed in ``NOT_RUN`` with the reason; the two whose run needs minutes or real weights are
run by another test, named in ``ELSEWHERE``. Every other ``neuroalign`` command runs, in the
order written, in a sandbox folder, with only these substitutions (``SUBSTITUTIONS``): a
small simulated NSD tree in the published format stands in for ``/data/nsd``, and the
randomly initialised ResNet-18 of the simulation stands in for the pretrained CLIP model
(no weights on this machine). ``examples/recipes/`` is copied into the sandbox, with the
simulated brain its recipes make on first use made small beforehand.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from neuroalign.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: commands not run here: (start of the command, reason)
NOT_RUN = {
    "python3 -m venv": "creates the virtual environment (the tests run inside one)",
    ".venv/bin/pip install": "installs the package",
    "sh scripts/install-chromium.sh": "installs Chromium (tests/test_report_browser.py uses it)",
    ".venv/bin/python -m pytest": "runs this test suite",
    "pip install mutmut": "installs the mutation-testing tool (docs/testing.md)",
    "mutmut run": "mutation testing: hours on 2 cores, run by hand (docs/testing.md)",
    "mutmut results": "lists the results of a mutation-testing run",
}
#: neuroalign commands run by another test (parsed here): (start of the command, test)
ELSEWHERE = {
    "neuroalign demo": "tests/test_cli.py (the quick demo, session fixture quick_demo)",
    "neuroalign decode examples/recipes/decode-nsd-unclip.toml":
        "tests/recipes/test_examples_run.py (the same recipe on a simulated store with a "
        "random-weight Stable unCLIP pipeline and metric networks standing in for the weights)",
}
#: (written, run as): what stands in for data and weights that are not on this machine
SUBSTITUTIONS = [
    ("/data/nsd", "{nsd}"),
    ("open_clip:ViT-B-32/openai", "torchvision:resnet18 --random-weights --transform simulation"),
    ("visual.transformer.resblocks.11", "layer4"),
]


def shell_commands(path: Path) -> list[str]:
    """The commands of the shell code blocks of a Markdown file."""
    blocks = re.findall(r"```(?:bash|sh|shell)\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    out = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out += [part.strip() for part in line.split("&&")]
    return out


def _neuroalign(cmd: str) -> list[str] | None:
    words = shlex.split(cmd)
    if words and Path(words[0]).name == "neuroalign":
        return words[1:]
    return None


def _elsewhere(cmd: str) -> bool:
    args = _neuroalign(cmd)
    return args is not None and any(" ".join(["neuroalign", *args]).startswith(k) for k in ELSEWHERE)


def _all() -> list[tuple[str, str]]:
    return [(p.relative_to(ROOT).as_posix(), c) for p in DOCS for c in shell_commands(p)]


def test_commands_are_found_and_classified():
    found = _all()
    assert any("ingest nsd" in c for _, c in found) and any(c.startswith("neuroalign map") for _, c in found)
    for where, cmd in found:
        if _neuroalign(cmd) is None:
            assert any(cmd.startswith(k) for k in NOT_RUN), f"{where}: not classified: {cmd!r}"
    # the tables do not outlive the commands they describe
    for key in NOT_RUN:
        assert any(c.startswith(key) for _, c in found), f"stale entry {key!r}"
    for key in ELSEWHERE:
        assert any(_elsewhere(c) and key in " ".join(["neuroalign", *_neuroalign(c)])
                   for _, c in found), f"stale entry {key!r}"


def _parse(args: list[str]) -> None:
    """Parse ``args`` as the command line does, without running anything."""
    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("neuroalign", list(args))
    while hasattr(cmd, "resolve_command"):  # a group: parse down to the command
        protected = getattr(ctx, "_protected_args", None)
        rest = [*(protected if protected is not None else ctx.protected_args), *ctx.args]
        if not rest:
            break
        name, cmd, rest = cmd.resolve_command(ctx, rest)
        ctx = cmd.make_context(name, rest, parent=ctx)


def test_the_parser_catches_a_wrong_command():
    """Controls: the README's former NSD line and an unknown option do not parse."""
    for args in (["ingest", "nsd", "/data/nsd", "1", "--out", "x.zarr"], ["map", "results/", "--bogus"],
                 ["fit"], ["generate", "--encoder", "sim", "--roi", "FFA-1"]):
        with pytest.raises(Exception, match="extra argument|No such option|Missing"):
            _parse(args)


@pytest.mark.parametrize("where, cmd", [(w, c) for w, c in _all() if _neuroalign(c) is not None],
                         ids=lambda v: v if len(v) < 60 else v[:57] + "...")
def test_every_neuroalign_command_parses(where, cmd):
    _parse(_neuroalign(cmd))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    from neuroalign.datasets import simulate

    box = tmp_path_factory.mktemp("readme")
    small = {"n_images": 60, "n_test": 12, "n_sessions": 2, "image_size": 32, "seed": 0}
    nsd = simulate(box / "nsd-tree", **small)
    examples = box / "examples"
    shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns("sim*", "*-results*"))
    simulate(examples / "recipes" / "sim", **small)  # what the recipes make on first use
    return box, nsd.root


@pytest.mark.slow
def test_every_command_runs_as_written(sandbox, monkeypatch):
    box, nsd = sandbox
    ran = 0
    for where, cmd in _all():
        if _neuroalign(cmd) is None or _elsewhere(cmd):
            continue
        here = box / where.replace("/", "-")  # one folder per document, as a reader starts afresh
        if not here.exists():
            here.mkdir()
            shutil.copytree(box / "examples", here / "examples", symlinks=True)
        monkeypatch.chdir(here)
        run = cmd
        for written, stand_in in SUBSTITUTIONS:
            run = run.replace(written, stand_in.format(nsd=nsd))
        res = CliRunner().invoke(app, _neuroalign(run))
        assert res.exit_code == 0, f"{where}: {cmd}\n(run as: {run})\n{res.output}"
        ran += 1
    assert ran >= 10
