"""Safe writes: locks, atomic folders, ownership markers (neuroalign._files)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest

from neuroalign._files import (
    OUTPUT_MARKER,
    add_file,
    atomic_dir,
    check_target,
    claim_dir,
    is_neuroalign_dir,
    read_marker,
    target_lock,
)
from neuroalign.exceptions import OutputExistsError, TargetLockedError
from neuroalign.store import MANIFEST


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
    assert claim_dir(work, kind="demo folder") == work  # reruns reuse it
    user = tmp_path / "mine"
    user.mkdir()
    (user / "a.csv").write_text("1")
    with pytest.raises(OutputExistsError, match="mine: exists and holds files"):
        claim_dir(user, kind="demo folder")
    assert sorted(p.name for p in user.iterdir()) == ["a.csv"]


# -- what may be replaced: kind, listing, marker validity, links, inputs ---------------------
def test_overwrite_replaces_only_the_same_kind(tmp_path):
    sim = tmp_path / "sim"
    _write(sim, "simulated", kind="simulation")
    for kind in ("fit output", "store", "output folder"):
        with pytest.raises(OutputExistsError, match="holds a simulation written by neuroalign, not an? "):
            _write(sim, "results", overwrite=True, kind=kind)
    assert (sim / "data.txt").read_text() == "simulated"
    _write(sim, "again", overwrite=True, kind="simulation")
    assert (sim / "data.txt").read_text() == "again"
    assert read_marker(sim)["kind"] == "simulation" and read_marker(sim)["entries"] == ["data.txt"]


def test_a_file_the_user_added_to_an_output_keeps_it(tmp_path):
    out = tmp_path / "results"
    _write(out, "one", kind="fit output")
    (out / "my-notes.txt").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=r"also holds 'my-notes.txt', which neuroalign did not write"):
        _write(out, "two", overwrite=True, kind="fit output")
    assert (out / "my-notes.txt").read_bytes() == b"precious" and (out / "data.txt").read_text() == "one"


def _nested(target: Path, text: str, **kw) -> None:
    """An output with a subfolder and a zarr-like folder carrying a manifest."""
    with atomic_dir(target, **kw) as tmp:
        (tmp / "figs" / "deep").mkdir(parents=True)
        (tmp / "figs" / "deep" / "a.png").write_text(text)
        (tmp / "data.txt").write_text(text)
        (tmp / "res.zarr" / "arr").mkdir(parents=True)
        (tmp / "res.zarr" / "arr" / "0").write_text(text)
        (tmp / "res.zarr" / MANIFEST).write_text(json.dumps({"files": {"arr/0": [len(text), "x"]}}))
        (tmp / "res.zarr" / ".neuroalign-complete").write_text("{}")


@pytest.mark.parametrize("where", ["figs/notes.txt", "figs/deep/notes.txt", "res.zarr/arr/notes.txt",
                                   "res.zarr/notes.txt"])
def test_a_file_the_user_added_in_a_subfolder_keeps_the_output(tmp_path, where):
    """Only the top-level names were compared with the marker's list: a file put in a
    subfolder of an output was deleted by overwrite=True. The whole tree is checked now
    (the marker lists every file no manifest lists), and the unknown files are named."""
    out = tmp_path / "results"
    _nested(out, "one", kind="fit output")
    assert read_marker(out)["files"] == ["data.txt", "figs/deep/a.png"]
    _nested(out, "two", overwrite=True, kind="fit output")  # its own files only: replaced
    (out / where).write_text("mine")
    with pytest.raises(OutputExistsError, match=rf"results: a fit output written by neuroalign, but it also "
                       rf"holds '{where}', which neuroalign did not write there; it is left untouched"):
        _nested(out, "three", overwrite=True, kind="fit output")
    assert (out / where).read_text() == "mine" and (out / "data.txt").read_text() == "two"
    (out / where).unlink()
    _nested(out, "four", overwrite=True, kind="fit output")
    assert (out / "data.txt").read_text() == "four"


def test_a_link_or_a_user_folder_in_an_output_keeps_it(tmp_path):
    out = tmp_path / "results"
    _nested(out, "one", kind="fit output")
    (out / "figs" / "link").symlink_to(tmp_path)  # not followed: named as it is
    (out / "mine" / "sub").mkdir(parents=True)
    (out / "mine" / "sub" / "x.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"also holds 'figs/link', 'mine', which neuroalign"):
        _nested(out, "two", overwrite=True, kind="fit output")
    assert (out / "mine" / "sub" / "x.txt").read_text() == "mine"


def test_an_output_of_an_earlier_version_lists_only_top_level_names(tmp_path):
    """Its marker has 'entries' but no 'files': files in subfolders that no manifest lists
    cannot be told from the user's, so they keep the output (named); top-level ones and
    those of manifest folders are checked as before."""
    out = tmp_path / "results"
    _nested(out, "one", kind="fit output")
    info = read_marker(out)
    del info["files"]
    (out / OUTPUT_MARKER).write_text(json.dumps(info))
    with pytest.raises(OutputExistsError, match=r"also holds 'figs/deep/a.png', which neuroalign did not write "
                       r"there \(or did not record: outputs of earlier versions list only their top-level names\)"):
        _nested(out, "two", overwrite=True, kind="fit output")
    assert (out / "figs" / "deep" / "a.png").read_text() == "one"
    (out / "figs" / "deep" / "a.png").unlink()
    _nested(out, "three", overwrite=True, kind="fit output")  # data.txt and res.zarr's own files: ours


def test_forged_marker_is_trusted_unreadable_one_is_not(tmp_path):
    # documented: a valid marker of the right kind is taken as neuroalign's
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "data.txt").write_text("old")
    (forged / OUTPUT_MARKER).write_text('{"tool": "neuroalign", "kind": "output folder"}')
    _write(forged, "new", overwrite=True)
    assert (forged / "data.txt").read_text() == "new"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "data.txt").write_text("keep")
    for text in ("", "not json", '{"kind": "output folder"}', '["neuroalign"]'):
        (bad / OUTPUT_MARKER).write_text(text)
        with pytest.raises(OutputExistsError, match="marker is not neuroalign's"):
            _write(bad, "x", overwrite=True)
        with pytest.raises(OutputExistsError, match="unreadable marker"):
            claim_dir(bad)
    assert (bad / "data.txt").read_text() == "keep"


def test_links_are_never_replaced(tmp_path):
    real = tmp_path / "real"
    _write(real, "ours")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(OutputExistsError, match="link: exists and is not a folder neuroalign wrote"):
        _write(link, "x", overwrite=True)
    assert link.is_symlink() and (real / "data.txt").read_text() == "ours"
    with pytest.raises(OutputExistsError, match="is not a folder"):
        claim_dir(link)


def test_target_holding_an_input_is_refused(tmp_path):
    data = tmp_path / "data"
    _write(data, "x")
    store = data / "store.zarr"
    store.mkdir()
    for target in (data, store, tmp_path):
        with pytest.raises(OutputExistsError, match="is \\(or holds\\) this run's input"):
            check_target(target, overwrite=True, inputs=[store, None])
    check_target(data / "results", inputs=[store])  # beside, inside: fine


def test_relative_and_dot_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write("rel", "r")
    assert (tmp_path / "rel" / "data.txt").read_text() == "r"
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="did not write"):
        _write(".", "x", overwrite=True)  # the current folder, holding the user's file
    sub = tmp_path / "sub"
    sub.mkdir()
    with pytest.raises(OutputExistsError, match="did not write"):
        _write("sub/..", "x", overwrite=True)  # normalised to tmp_path
    assert (tmp_path / "mine.txt").read_text() == "keep"
    with pytest.raises(OutputExistsError, match="file-system root"):
        check_target("/")


def test_failed_rename_puts_the_old_output_back(tmp_path, monkeypatch):
    import neuroalign._files as files

    out = tmp_path / "out"
    _write(out, "one")
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new folder's rename into place
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", flaky)
    with pytest.raises(OSError, match="No space left"):
        _write(out, "two", overwrite=True)
    monkeypatch.setattr(files.os, "replace", real)
    assert (out / "data.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_nothing_written_still_gives_a_marked_folder(tmp_path):
    with atomic_dir(tmp_path / "empty-out"):
        pass
    assert sorted(p.name for p in (tmp_path / "empty-out").iterdir()) == [OUTPUT_MARKER]


def test_second_writer_in_the_same_process_is_refused(tmp_path):
    target = tmp_path / "t"
    with atomic_dir(target) as tmp:
        tmp.mkdir()
        with pytest.raises(TargetLockedError, match=rf"process {os.getpid()} on "):
            _write(target, "inner")
    assert is_neuroalign_dir(target)


def test_add_file_records_it_in_the_marker(tmp_path):
    out = tmp_path / "out"
    _write(out, "one", kind="fit output")
    add_file(out, "run.json", "{}", kind="fit output")
    assert read_marker(out)["entries"] == ["data.txt", "run.json"]
    _write(out, "two", overwrite=True, kind="fit output")  # run.json counts as ours
    with pytest.raises(OutputExistsError, match="not a decode output written by neuroalign"):
        add_file(out, "run.json", "{}", kind="decode output")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="notes.txt: exists and neuroalign did not write it"):
        add_file(out, "notes.txt", "x", kind="fit output")
    assert (out / "notes.txt").read_text() == "mine"


def test_claim_dir_kinds(tmp_path):
    work = claim_dir(tmp_path / "demo", kind="demo folder")
    (work / "x").write_text("1")
    with pytest.raises(OutputExistsError, match="holds a demo folder, not a fit output"):
        claim_dir(work, kind="fit output")
    _write(tmp_path / "res", "r", kind="fit output")
    with pytest.raises(OutputExistsError, match="holds a fit output, not a demo folder"):
        claim_dir(tmp_path / "res", kind="demo folder")
    afile = tmp_path / "f"
    afile.write_text("mine")
    with pytest.raises(OutputExistsError, match="f: exists and is not a folder"):
        claim_dir(afile)


def test_output_left_aside_by_a_killed_replace_is_restored(tmp_path):
    out = tmp_path / "out"
    _write(out, "one")
    aside = tmp_path / ".out.old-0123abcd"
    os.replace(out, aside)  # killed between its two renames: no `out`
    (tmp_path / ".out.tmp-89abcdef").mkdir()  # the new one, unfinished as far as we know
    with pytest.raises(OutputExistsError, match="already exists"):
        _write(out, "two")  # the old output is back, so this is an ordinary refusal
    assert (out / "data.txt").read_text() == "one" and not aside.exists()
    _write(out, "two", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_links_planted_at_the_lock_names_are_never_written_through(tmp_path):
    """``.NAME.lock.owner`` was written with write_text, which follows links: a link planted
    at that name (another user can, in a shared folder such as /tmp) made every save
    overwrite the link's target. The record is now a new file renamed over the link; a link
    at the lock file itself is refused, named; neither target is written."""
    victim = tmp_path / "victim_notes.txt"
    victim.write_text("important notes\n")
    owner = tmp_path / ".out.lock.owner"
    owner.symlink_to(victim)
    _write(tmp_path / "out", "one")
    assert victim.read_text() == "important notes\n"
    assert not owner.exists() and not owner.is_symlink()  # the record is removed on release
    elsewhere = tmp_path / "created_through_the_link"
    owner.symlink_to(elsewhere)  # a dangling link: nothing is created at its target
    with target_lock(tmp_path / "out"):
        assert owner.is_file() and not owner.is_symlink() and '"pid"' in owner.read_text()
    assert not elsewhere.exists() and not owner.exists()
    owner.mkdir()  # not a file: a named error, the folder left as it is
    with pytest.raises(OutputExistsError, match=r"\.out\.lock\.owner: exists and is a folder"):
        _write(tmp_path / "out", "two", overwrite=True)
    assert owner.is_dir() and (tmp_path / "out" / "data.txt").read_text() == "one"
    owner.rmdir()
    lock = tmp_path / ".out.lock"
    lock.unlink()
    lock.symlink_to(victim)
    with pytest.raises(OutputExistsError, match=r"\.out\.lock: is a symbolic link"):
        _write(tmp_path / "out", "three", overwrite=True)
    assert victim.read_text() == "important notes\n" and lock.is_symlink()
    assert (tmp_path / "out" / "data.txt").read_text() == "one"
