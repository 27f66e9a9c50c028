"""``cluster="pbs"`` end to end: dask-jobqueue's ``PBSCluster`` submits its job scripts to a
stand-in for PBS (``qsub``, ``qstat``, ``qdel`` shell scripts that run each job script in a
process group of its own on this machine, a job optionally held in the queue until
released). No PBS server is packaged for this machine; the stand-in runs the very scripts
PBS would, and answers ``qstat`` as PBS does (a row per job it holds, "Unknown Job Id" with
a non-zero status for one that has left).

Checked: a ridge fit on two PBS jobs equals the in-process fit and its jobs are deleted at
the end; a rerun with every cell on disk submits nothing; the running job deleted mid-grid
while the other waits in the queue: the grid waits for it, scatters the lost features again
and completes; and ``_live_jobs``' reading of ``qstat``."""

from __future__ import annotations

import logging
import os
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from neuroalign import _scaleout_workers as sw
from neuroalign._scaleout import kept_environ

pytest.importorskip("dask_jobqueue")

QSUB = r"""#!/bin/sh
# qsub SCRIPT: run SCRIPT in a process group of its own; jobs numbered from $FAKE_PBS_HOLD_FROM
# on wait in the queue (state Q) until $FAKE_PBS_DIR/release exists
d="$FAKE_PBS_DIR"
exec 9> "$d/lock"; flock 9  # job ids unique when jobs are submitted at once
n=$(( $(cat "$d/next" 2>/dev/null || echo 100) + 1 )); echo $n > "$d/next"
flock -u 9
cp "$1" "$d/$n.sh"
hold=0; [ -n "$FAKE_PBS_HOLD_FROM" ] && [ $n -ge "$FAKE_PBS_HOLD_FROM" ] && hold=1
echo Q > "$d/$n.state"
setsid sh -c "while [ $hold = 1 ] && [ ! -e '$d/release' ]; do sleep 0.1; done
  echo R > '$d/$n.state'; bash '$d/$n.sh' > '$d/$n.out' 2>&1; echo F > '$d/$n.state'" \
  < /dev/null > /dev/null 2>&1 &
echo $! > "$d/$n.pid"
echo "$n.fakepbs"
"""
QSTAT = r"""#!/bin/sh
d="$FAKE_PBS_DIR"; rc=0
echo "Job id            Name             User              Time Use S Queue"
echo "----------------  ---------------- ----------------  -------- - -----"
for id in "$@"; do
  n=${id%%.*}
  s=$(cat "$d/$n.state" 2>/dev/null)
  if [ -n "$s" ] && [ "$s" != F ]; then
    echo "$n.fakepbs      dask-worker      me                00:00:01 $s batch"
  else
    echo "qstat: Unknown Job Id $n.fakepbs" >&2; rc=153
  fi
done
exit $rc
"""
QDEL = r"""#!/bin/sh
d="$FAKE_PBS_DIR"
for id in "$@"; do
  n=${id%%.*}
  kill -TERM -"$(cat "$d/$n.pid")" 2>/dev/null
  echo F > "$d/$n.state"; echo "$n" >> "$d/deleted"
done
"""


@pytest.fixture
def pbs(tmp_path, monkeypatch):
    """The stand-in's folder (jobs' scripts, states, output), its commands first on PATH."""
    d = tmp_path / "pbs"
    (d / "bin").mkdir(parents=True)
    for name, body in (("qsub", QSUB), ("qstat", QSTAT), ("qdel", QDEL)):
        (d / "bin" / name).write_text(body)
        (d / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{d / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PBS_DIR", str(d))
    yield d
    for pid in d.glob("*.pid"):  # nothing left running, whatever the test did
        try:
            os.killpg(int(pid.read_text()), 9)
        except (ProcessLookupError, ValueError):
            pass


def _options(pbs, jobs):
    return {"jobs": jobs, "cores": 1, "memory": "2GB", "walltime": "00:10:00", "queue": "batch",
            "python": sys.executable, "log_directory": str(pbs / "logs"),
            "job_script_prologue": ["export OMP_NUM_THREADS=1"]}


def _data(n=120, p=16):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p))
    Y = X @ rng.standard_normal((p, 60)) * 0.3 + rng.standard_normal((n, 60))
    return X, Y


def _ridge():
    from neuroalign.encoders import RidgeEncoder

    return RidgeEncoder(alphas=np.logspace(-2, 4, 7), dtype="float64", device="cpu")


def _scripts(pbs) -> list[str]:
    return [p.read_text() for p in sorted(pbs.glob("[0-9]*.sh"))]


@pytest.mark.slow
def test_a_ridge_fit_on_pbs_jobs_equals_the_in_process_fit_and_its_jobs_are_deleted(pbs, tmp_path):
    X, Y = _data()
    ref = _ridge().fit(X, Y)
    with kept_environ():
        enc = _ridge().fit(X, Y, cluster="pbs", cluster_options=_options(pbs, 2),
                           result_path=tmp_path / "cells", batch_size=8)
    assert enc.scaleout_info_["computed"] == list(range(8))
    np.testing.assert_array_equal(enc.best_alphas_, ref.best_alphas_)
    np.testing.assert_allclose(enc.cv_scores_, ref.cv_scores_, rtol=0, atol=1e-12)
    scripts = _scripts(pbs)
    assert len(scripts) == 2
    for text in scripts:  # the directives asked for, and this python running the worker
        assert "#PBS -q batch" in text and "#PBS -l walltime=00:10:00" in text
        assert f"{sys.executable} -m distributed.cli.dask_worker" in text
    assert sorted((pbs / "deleted").read_text().split()) == ["101", "102"]
    assert _running(pbs) == []  # the jobs' process groups are gone

    # every cell on disk: the rerun submits no job
    again = _ridge().fit(X, Y, cluster="pbs", cluster_options=_options(pbs, 2),
                         result_path=tmp_path / "cells", batch_size=8)
    assert again.scaleout_info_["computed"] == [] and len(_scripts(pbs)) == 2
    np.testing.assert_array_equal(again.coef_, enc.coef_)


def _running(pbs, wait: float = 10.0) -> list[str]:
    """The stand-in's jobs whose process group is still alive (after up to ``wait`` s)."""
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for pid in sorted(pbs.glob("*.pid")):
            try:
                os.killpg(int(pid.read_text()), 0)
                alive.append(pid.stem)
            except ProcessLookupError:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.mark.slow
def test_the_running_pbs_job_deleted_while_the_other_is_queued(pbs, tmp_path, monkeypatch,
                                                               caplog):
    """Job 101 runs, job 102 waits in the queue. 101 is deleted (qdel: as a walltime or a
    preemption would end it) after 2 cells: the features scattered to it are lost with it.
    The grid sees 102 still queued (qstat), waits for it, scatters the features again once
    it runs, and completes with the in-process result."""
    monkeypatch.setenv("FAKE_PBS_HOLD_FROM", "102")
    monkeypatch.setattr(sw, "LOST_WORKERS_TIMEOUT_S", 1.0)
    monkeypatch.setattr(sw, "_POLL_S", 0.1)
    X, Y = _data(2000, 200)  # cells of one neuroid, ~50 ms each: the deletion lands mid-grid
    ref = _ridge().fit(X, Y)
    cells = tmp_path / "cells"

    def delete_then_release():
        deadline = time.monotonic() + 120
        while len(list(cells.glob("cells/*.npz"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.system("qdel 101.fakepbs")  # noqa: S605 - the stand-in's own command
        time.sleep(3.0)  # past LOST_WORKERS_TIMEOUT_S: 102 must be seen queued, not given up
        (pbs / "release").touch()

    t = threading.Thread(target=delete_then_release, daemon=True)
    t.start()
    with kept_environ(), caplog.at_level(logging.INFO, logger="neuroalign._scaleout"):
        enc = _ridge().fit(X, Y, cluster="pbs", cluster_options=_options(pbs, 2),
                           result_path=cells, batch_size=1)
    t.join()
    messages = [r.getMessage() for r in caplog.records]
    assert any("waiting for job(s) 102 still in the queue" in m for m in messages), messages
    assert any("scattering it again" in m for m in messages), messages
    assert enc.scaleout_info_["n_batches"] == 60 == len(list(cells.glob("cells/*.npz")))
    np.testing.assert_array_equal(enc.best_alphas_, ref.best_alphas_)
    np.testing.assert_allclose(enc.cv_scores_, ref.cv_scores_, rtol=0, atol=1e-12)


def test_live_jobs_reads_qstat_as_pbs_answers(tmp_path, monkeypatch):
    """Rows of jobs held (R, Q, H, E) count; C/F (Torque's completed) and jobs qstat no
    longer knows do not; qstat failing for another reason is "no answer" (None)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    qstat = bin_dir / "qstat"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    rows = textwrap.dedent("""\
        Job id            Name             User              Time Use S Queue
        ----------------  ---------------- ----------------  -------- - -----
        11.server         dask-worker      me                00:00:01 R batch
        12.server         dask-worker      me                0        Q batch
        13.server         dask-worker      me                0        H batch
        14.server         dask-worker      me                00:10:00 C batch
        """)
    qstat.write_text(f"#!/bin/sh\ncat <<'EOF'\n{rows}EOF\n"
                     "echo 'qstat: Unknown Job Id 15.server' >&2\nexit 153\n")
    qstat.chmod(0o755)
    assert sw._live_jobs("PBSCluster", ["11", "12", "13", "14", "15"]) == {"11", "12", "13"}
    qstat.write_text("#!/bin/sh\necho 'qstat: Unknown Job Id 15.server' >&2\nexit 153\n")
    assert sw._live_jobs("PBSCluster", ["15"]) == set()
    qstat.write_text("#!/bin/sh\necho 'cannot connect to server pbs01' >&2\nexit 1\n")
    assert sw._live_jobs("PBSCluster", ["15"]) is None
    assert sw._live_jobs("LocalCluster", ["15"]) is None
