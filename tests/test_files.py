"""Safe writes: locks, atomic folders, ownership markers (neuroalign._files)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from neuroalign._files import (
    OUTPUT_MARKER,
    atomic_dir,
    claim_dir,
    is_neuroalign_dir,
    target_lock,
)
from neuroalign.exceptions import OutputExistsError, TargetLockedError


def _write(target: Path, text: str, **kw) -> None:
    with atomic_dir(target, **kw) as tmp:
        tmp.mkdir()
        (tmp / "data.txt").write_text(text)


def test_atomic_dir_writes_marker_and_replaces_only_with_overwrite(tmp_path):
    out = tmp_path / "out"
    _write(out, "one")
    assert is_neuroalign_dir(out) and (out / "data.txt").read_text() == "one"
    with pytest.raises(OutputExistsError, match="Pass overwrite=True"):
        _write(out, "two")
    assert (out / "data.txt").read_text() == "one"
    _write(out, "two", overwrite=True)
    assert (out / "data.txt").read_text() == "two"


def test_user_folder_is_never_replaced(tmp_path):
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "chapter1.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="did not write"):
            _write(user, "results", overwrite=overwrite)
    assert (user / "chapter1.tex").read_text() == "precious"
    assert sorted(p.name for p in user.iterdir()) == ["chapter1.tex"]
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    with pytest.raises(OutputExistsError, match="not a folder"):
        _write(afile, "x", overwrite=True)
    assert afile.read_text() == "mine"


def test_empty_folder_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    _write(out, "ok")
    assert (out / "data.txt").read_text() == "ok"


def test_error_inside_leaves_target_untouched_and_no_tmp(tmp_path):
    out = tmp_path / "out"
    _write(out, "one")
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(out, overwrite=True) as tmp:
        tmp.mkdir()
        raise RuntimeError("boom")
    assert (out / "data.txt").read_text() == "one"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_stale_tmp_of_a_killed_write_is_removed_but_user_lookalikes_are_not(tmp_path):
    out = tmp_path / "store.zarr"
    stale = tmp_path / ".store.zarr.tmp-0123abcd"
    stale.mkdir()
    (stale / "chunk").write_text("half")
    lookalike = tmp_path / ".store.zarr.tmp-backup"  # not neuroalign's name pattern
    lookalike.mkdir()
    other = tmp_path / ".other.zarr.tmp-0123abcd"  # another target's: not ours to judge
    other.mkdir()
    _write(out, "done")
    assert not stale.exists()
    assert lookalike.exists() and other.exists()


def _hold(target: str, ready, release) -> None:
    with target_lock(target, what="store"):
        ready.set()
        release.wait(30)


def test_second_writer_gets_named_error(tmp_path):
    target = tmp_path / "s.zarr"
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(target), ready, release))
    proc.start()
    try:
        assert ready.wait(20)
        with pytest.raises(TargetLockedError, match=rf"process {proc.pid} on .* is writing this output folder"):
            _write(target, "x")
        assert not target.exists()
    finally:
        release.set()
        proc.join(20)
    _write(target, "x")  # free again once the holder is done
    assert (target / "data.txt").read_text() == "x"


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    target = tmp_path / "s.zarr"
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(str(target), ready, release))
    proc.start()
    assert ready.wait(20)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(20)
    t0 = time.monotonic()
    _write(target, "after the kill")
    assert time.monotonic() - t0 < 5
    assert (target / "data.txt").read_text() == "after the kill"


def test_claim_dir(tmp_path):
    work = claim_dir(tmp_path / "demo", kind="demo folder")
    assert (work / OUTPUT_MARKER).is_file()
    (work / "cache.bin").write_text("c")
    assert claim_dir(work) == work  # reruns reuse it
    user = tmp_path / "mine"
    user.mkdir()
    (user / "a.csv").write_text("1")
    with pytest.raises(OutputExistsError, match="mine: exists and holds files"):
        claim_dir(user, kind="demo folder")
    assert sorted(p.name for p in user.iterdir()) == ["a.csv"]
