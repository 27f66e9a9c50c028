"""Every benchmark script runs, at a tiny size, from the repository as it is, and every
command of benchmarks/README.md is accepted by its script's parser, so that the commands in
benchmarks/README.md keep working. Each must exit cleanly; the checks a script
makes of its own answers as it goes (values equal to the single-process or reference run,
the planted truth recovered) fail it otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "compare": ["bench_compare.py", "--quick"],
    "features": ["bench_features.py", "--models", "resnet18", "--n-images", "4", "--batch-size", "2",
                 "--repeats", "1", "--memory-sizes", ""],
    "nsd_ingest": ["bench_nsd_ingest.py", "--trials", "30", "--shape", "8", "9", "8", "--sessions", "2", "4"],
    "nsd_scale": ["bench_nsd_scale.py", "--smoke", "--sessions", "2", "--repeats", "2", "--spaces", "func1pt8mm",
                  "--skip", "reference", "--min-free", "1", "--root", "{tmp}/scale"],
    "primal_dual": ["bench_primal_dual.py", "--samples", "100", "--features", "2000", "--targets", "100",
                    "--primal-features", "400"],
    "rdm": ["bench_rdm.py", "--quick"],
    "ridge": ["bench_ridge.py", "--n", "300", "--p", "32", "--t", "200", "--alphas", "5", "--layers", "2",
              "--sweep-n", "200", "--sweep-p", "16", "--sweep-t", "100"],
    "scaleout": ["bench_scaleout.py", "--small"],
    "searchlight": ["bench_searchlight.py", "--shape", "14", "14", "14", "--n-stim", "10", "--repeat", "1"],
    "searchlight_fsaverage5": ["bench_searchlight.py", "--fsaverage5", "--fsaverage5-mesh", "pial",
                               "--n-stim", "10", "--surface-radius", "6"],
    "shape": ["bench_shape.py", "--n-sys", "4", "--n", "100", "--p", "20", "--sides", "neuroalign"],
    # skips with a message (exit 0) where sbatch is missing or no controller answers, as
    # in CI; on a machine with benchmarks/slurm_local.sh started it runs the searchlight part
    "slurm": ["bench_slurm.py", "--only", "searchlight", "--root", "{tmp}/slurm"],
    "store": ["bench_store.py", "--trials", "300", "--voxels", "500"],
    "wholebrain": ["bench_wholebrain.py", "--root", "{tmp}/wb", "--trials", "600", "--images", "200",
                   "--features", "32", "--vertices", "2000", "--batch", "500", "--sweep-vertices", "200",
                   "--sweep-layers", "3", "--test-images", "20", "--recipe"],
}


def test_every_benchmark_script_is_covered():
    scripts = {p.name for p in (REPO / "benchmarks").glob("bench_*.py")}
    # bench_preflight measures memory peaks in fresh processes (its cells are slow tests
    # of tests/test_preflight*.py)
    assert scripts - {"bench_preflight.py"} == {c[0] for c in CASES.values()}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_runs_at_a_tiny_size(name, tmp_path):
    script, *args = CASES[name]
    args = [a.format(tmp=tmp_path) for a in args]
    # two threads as benchmarks/README.md runs them, or the pytest-xdist worker's own cores
    env = dict(os.environ, PYTHONPATH=str(REPO), NEUROALIGN_PROGRESS="0",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    env.pop("NETREP_PATH", None)  # the shape benchmark's reference side is a local checkout
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, f"{script} {' '.join(args)}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"


#: a command of benchmarks/README.md: ``python benchmarks/bench_x.py ARGS``, the arguments up
#: to a comment, a shell separator or pipe, or the end of the command
_COMMAND = r"python (?:\S*/)?benchmarks/(bench_\w+\.py)([^#;|&]*)"

# Run in a fresh interpreter per script: the script runs as ``__main__`` with each
# documented argument list, up to its argument parser; a parse that succeeds stops the run
# there (nothing is computed), an unknown or malformed argument exits with status 2.
_PARSE_ONLY = """
import argparse, json, runpy, sys
script, commands = sys.argv[1], json.loads(sys.argv[2])
parse = argparse.ArgumentParser.parse_args
class Parsed(Exception):
    pass
def parse_only(self, *args, **kwargs):
    parse(self, *args, **kwargs)
    raise Parsed
argparse.ArgumentParser.parse_args = parse_only
bad = []
for args in commands:
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name="__main__")
        bad.append([args, "ran without parsing its arguments"])
    except Parsed:
        pass
    except SystemExit as exc:
        bad.append([args, f"exit {exc.code}"])
print(json.dumps(bad))
"""


def _readme_commands() -> dict[str, list[list[str]]]:
    import re
    import shlex

    text = (REPO / "benchmarks" / "README.md").read_text()
    # the lines of fenced blocks (backslash continuations joined), and inline code spans
    # of the prose (which may run over a line break)
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    lines = [ln for b in blocks for ln in b.replace("\\\n", " ").splitlines()]
    spans = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    out: dict[str, list[list[str]]] = {}
    for candidate in lines + [sp.replace("\n", " ") for sp in spans]:
        for script, args in re.findall(_COMMAND, candidate):
            if "..." in args or "$" in args:  # elided, or shell variables
                continue
            argv = shlex.split(args.strip())
            if argv not in out.setdefault(script, []):
                out[script].append(argv)
    return out


def test_the_benchmarks_readme_names_existing_scripts():
    commands = _readme_commands()
    scripts = {p.name for p in (REPO / "benchmarks").glob("bench_*.py")}
    assert set(commands) <= scripts, set(commands) - scripts
    assert sum(map(len, commands.values())) >= 20  # the extraction found the commands


def test_every_command_in_the_benchmarks_readme_parses(tmp_path):
    """Each ``python benchmarks/bench_*.py ...`` of the README, with its exact arguments,
    is accepted by the script's parser (a renamed or removed option fails it), stopping
    before any work; commands with elisions (``...``) or shell variables are left out."""
    import json

    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    failures = {}
    for script, commands in sorted(_readme_commands().items()):
        if "argparse" not in (REPO / "benchmarks" / script).read_text():
            assert commands == [[]], f"{script} takes no arguments: {commands}"
            continue
        res = subprocess.run([sys.executable, "-c", _PARSE_ONLY, str(REPO / "benchmarks" / script),
                              json.dumps(commands)], cwd=tmp_path, capture_output=True, text=True,
                             env=env, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        bad = json.loads(res.stdout.strip().splitlines()[-1])
        if bad:
            failures[script] = bad
    assert not failures, failures
