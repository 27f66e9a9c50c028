"""Ingest safety: one writer per target (partial folder included), content-keyed resume,
and never overwriting or deleting a folder that neuroalign did not write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from adapter_fixtures import write_nsd
from typer.testing import CliRunner

from neuroalign.cli import app
from neuroalign.datasets import load_nsd, nsd_plan
from neuroalign.exceptions import DataFormatError, OutputExistsError, TargetLockedError
from neuroalign.store import open_store

pytestmark = pytest.mark.filterwarnings("ignore::neuroalign.datasets.PublishedCountWarning")
runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def _hold_lock(target: Path) -> subprocess.Popen:
    """Another process that holds ``target``'s write lock until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from neuroalign._files import target_lock
        with target_lock({str(target)!r}, what="store"):
            print("ready", flush=True)
            time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _interrupt_after(plan, n_blocks: int) -> None:
    """Make the plan's write stop (KeyboardInterrupt) when it reaches block ``n_blocks``."""
    def boom():
        raise KeyboardInterrupt
    plan.blocks[n_blocks].read = boom


def _h5(root, sess):
    return root / f"nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session{sess:02d}.hdf5"


def test_second_writer_gets_a_named_error_and_a_killed_holder_is_taken_over(tmp_path):
    w = write_nsd(tmp_path / "nsd", surface=False)
    out = tmp_path / "s.zarr"
    # an interrupted ingest leaves its resume folder
    plan = nsd_plan(w["root"], 1)
    _interrupt_after(plan, 1)
    with pytest.raises(KeyboardInterrupt):
        plan.write(out)
    partial = tmp_path / ".s.zarr.partial"
    state = (partial / ".neuroalign-ingest.json").read_text()
    holder = _hold_lock(out)
    try:
        with pytest.raises(TargetLockedError, match=rf"s.zarr: another neuroalign process {holder.pid} on "
                           r"\S+ \(since .*\) is writing this store"):
            nsd_plan(w["root"], 1).write(out)
        res = runner.invoke(app, ["ingest", "nsd", str(w["root"]), "--out", str(out)])
        assert res.exit_code == 2 and f"process {holder.pid}" in res.output, res.output
        # the resume folder is covered by the same lock: untouched while another holds it
        assert (partial / ".neuroalign-ingest.json").read_text() == state
        assert not out.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the killed holder's lock is released by the kernel: the next writer takes over and resumes
    plan = nsd_plan(w["root"], 1)
    plan.blocks[0].read = lambda: pytest.fail("session 1 was written before the interruption")
    plan.write(out)
    xr.testing.assert_identical(open_store(out).load(), load_nsd(w["root"], 1))
    assert not partial.exists()


def _replace_same_size_same_mtime(path: Path, data: np.ndarray) -> None:
    st = path.stat()
    with h5py.File(path, "r") as f:
        chunks = f["betas"].chunks
    path.unlink()
    with h5py.File(path, "w") as f:
        f.create_dataset("betas", data=data, chunks=chunks)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    new = path.stat()
    assert (new.st_size, new.st_mtime_ns) == (st.st_size, st.st_mtime_ns)  # what cp -p / rsync -t keep


def test_resume_is_keyed_on_content_not_size_and_mtime(tmp_path):
    w = write_nsd(tmp_path / "nsd", surface=False)
    out = tmp_path / "r.zarr"
    plan = nsd_plan(w["root"], 1)
    _interrupt_after(plan, 2)  # sessions 1 and 2 are written
    with pytest.raises(KeyboardInterrupt):
        plan.write(out)
    before = load_nsd(w["root"], 1)
    # session 1 is replaced by other data of the same size, with its old mtime kept
    p1 = _h5(w["root"], 1)
    with h5py.File(p1, "r") as f:
        old = f["betas"][()]
    _replace_same_size_same_mtime(p1, (-old.astype(np.int32)).clip(-32768, 32767).astype(np.int16))
    reads = []
    plan = nsd_plan(w["root"], 1)
    for b in plan.blocks:
        b.read = (lambda b=b, r=b.read: (reads.append(Path(b.key).name), r())[1])
    plan.write(out)
    # the changed session is read again, the unchanged one is kept, the rest is read
    assert reads == ["betas_session01.hdf5", "betas_session03.hdf5"]
    fresh = load_nsd(w["root"], 1)
    xr.testing.assert_identical(open_store(out).load(), fresh)
    assert not np.array_equal(fresh.responses.values[:8], before.responses.values[:8])
    np.testing.assert_array_equal(fresh.responses.values[8:], before.responses.values[8:])


def test_resume_state_records_a_digest_per_block(tmp_path):
    from neuroalign.datasets._ingest import content_digest

    w = write_nsd(tmp_path / "nsd", surface=False)
    plan = nsd_plan(w["root"], 1)
    _interrupt_after(plan, 1)
    with pytest.raises(KeyboardInterrupt):
        plan.write(tmp_path / "r.zarr")
    state = json.loads((tmp_path / ".r.zarr.partial/.neuroalign-ingest.json").read_text())
    p1 = str(_h5(w["root"], 1))
    assert state["done"] == {p1: {p1: content_digest(p1)}}
    import hashlib

    assert content_digest(p1) == hashlib.sha256(Path(p1).read_bytes()).hexdigest()


def test_a_file_replaced_while_read_is_an_error(tmp_path):
    w = write_nsd(tmp_path / "nsd", surface=False)
    plan = nsd_plan(w["root"], 1)
    read = plan.blocks[1].read

    def replaced_during_read():
        arr = read()
        p = _h5(w["root"], 2)
        p.write_bytes(p.read_bytes())  # a new inode and ctime: another writer replaced it
        return arr

    plan.blocks[1].read = replaced_during_read
    with pytest.raises(DataFormatError, match=r"betas_session02.hdf5: changed while it was being read"):
        plan.write(tmp_path / "r.zarr")
    assert not (tmp_path / "r.zarr").exists()


def test_out_holding_user_files_is_never_replaced(tmp_path):
    w = write_nsd(tmp_path / "nsd", surface=False)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    for extra in ([], ["--overwrite"]):
        res = runner.invoke(app, ["ingest", "nsd", str(w["root"]), "--out", str(user), *extra])
        assert res.exit_code == 2 and "holds files that neuroalign did not write" in res.output, res.output
    assert (user / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in user.iterdir()) == ["thesis.tex"]
    with pytest.raises(OutputExistsError, match=r"mine: exists and holds files that neuroalign did not write"):
        nsd_plan(w["root"], 1).write(user, overwrite=True)
    # a file (not a folder) at --out is left alone too
    f = tmp_path / "notes.zarr"
    f.write_text("x")
    with pytest.raises(OutputExistsError, match=r"notes.zarr: exists and is not a folder neuroalign wrote"):
        nsd_plan(w["root"], 1).write(f, overwrite=True)
    assert f.read_text() == "x"
    # --overwrite replaces a store neuroalign wrote
    out = tmp_path / "s.zarr"
    assert runner.invoke(app, ["ingest", "nsd", str(w["root"]), "--out", str(out)]).exit_code == 0
    res = runner.invoke(app, ["ingest", "nsd", str(w["root"]), "--out", str(out), "--session", "1", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert open_store(out).sizes["presentation"] == 8


def test_simulate_never_replaces_user_files(tmp_path):
    from neuroalign.datasets import simulate

    user = tmp_path / "mine"
    user.mkdir()
    (user / "data.csv").write_text("1,2")
    with pytest.raises(OutputExistsError, match=r"mine: exists and holds files that neuroalign did not write"):
        simulate(user, n_images=8, n_test=2, n_sessions=1, overwrite=True)
    assert sorted(p.name for p in user.iterdir()) == ["data.csv"]
