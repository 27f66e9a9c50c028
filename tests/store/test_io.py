"""zarr round trips, dask-backed opens, atomic saves, manifests and concurrent writers."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from neuroalign.cli import app
from neuroalign.exceptions import (
    DataFormatError,
    OutputExistsError,
    StoreCorruptError,
    TargetLockedError,
)
from neuroalign.store import (
    COMPLETE_MARKER,
    MANIFEST,
    open_store,
    read_zarr,
    save_results,
    save_store,
    verify_store,
)
from neuroalign.testing import make_store


@pytest.mark.parametrize(
    "ds",
    [
        make_store(12, 7, rois={"V1v": np.arange(7) < 3, "FFA-1": np.arange(7) >= 5}),
        make_store(6, 3, n_times=5, dtype=np.float64),
        make_store(9, 4).na.average_repetitions(),
    ],
    ids=["fmri", "time-resolved", "averaged"],
)
def test_round_trip_is_identical(tmp_path, ds):
    ds = ds.assign_attrs(affine=np.eye(4).tolist(), source={"betas_session01.hdf5": "sha256:0"})
    save_store(ds, tmp_path / "s.zarr")
    back = open_store(tmp_path / "s.zarr").load()
    xr.testing.assert_identical(ds, back)


def test_chunked_along_neuroid_and_dask_backed(tmp_path):
    ds = make_store(20, 50)
    save_store(ds, tmp_path / "s.zarr", neuroid_chunk=16)
    lazy = open_store(tmp_path / "s.zarr", chunks=16)
    assert isinstance(lazy.responses.data, da.Array)
    assert lazy.responses.data.chunks[1] == (16, 16, 16, 2)
    assert lazy.responses.data.chunks[0] == (ds.sizes["presentation"],)
    np.testing.assert_array_equal(lazy.responses.values, ds.responses.values)
    # chunks=None: lazily indexed, not dask
    assert not isinstance(open_store(tmp_path / "s.zarr").responses.data, da.Array)


def test_saving_a_dask_store(tmp_path):
    ds = make_store(10, 30).chunk({"neuroid": 7})
    save_store(ds, tmp_path / "s.zarr", neuroid_chunk=10)
    np.testing.assert_array_equal(open_store(tmp_path / "s.zarr").responses.values, ds.responses.values)


def test_existing_target_needs_overwrite(tmp_path):
    ds = make_store(6, 3)
    save_store(ds, tmp_path / "s.zarr")
    with pytest.raises(FileExistsError, match=r"s.zarr: already exists \(a store written by neuroalign\). Pass overwrite=True"):
        save_store(ds, tmp_path / "s.zarr")
    ds2 = make_store(6, 3, seed=5)
    save_store(ds2, tmp_path / "s.zarr", overwrite=True)
    xr.testing.assert_identical(open_store(tmp_path / "s.zarr").load(), ds2)
    # no leftovers but the (empty, hidden) lock file
    assert sorted(p.name for p in tmp_path.iterdir()) == [".s.zarr.lock", "s.zarr"]
    assert (tmp_path / ".s.zarr.lock").stat().st_size == 0


@pytest.mark.parametrize("where", ["responses/notes.txt", "stimulus_id/mine/notes.txt", "notes.txt"])
def test_a_file_the_user_put_anywhere_in_a_store_keeps_it(tmp_path, where):
    """overwrite=True compared only the store's top-level names with its marker: a file the
    user put in a subfolder (``t.zarr/responses/notes.txt``) was deleted by the replace. The
    whole tree is now checked against the store's manifest, and the unknown file is named."""
    ds = make_store(6, 3)
    path = save_store(ds, tmp_path / "t.zarr")
    (path / where).parent.mkdir(parents=True, exist_ok=True)
    (path / where).write_text("mine")
    with pytest.raises(OutputExistsError, match=rf"t.zarr: a store written by neuroalign, but it also holds "
                       rf"'{where}', which neuroalign did not write there; it is left untouched"):
        save_store(make_store(6, 3, seed=5), path, overwrite=True)
    assert (path / where).read_text() == "mine"
    xr.testing.assert_identical(open_store(path).load(), ds)
    (path / where).unlink()
    save_store(make_store(6, 3, seed=5), path, overwrite=True)  # the store's own files only: replaced
    # results: a zarr folder inside an output folder is checked against its own manifest
    res = save_results(xr.Dataset({"r": ("x", np.arange(4.0))}), tmp_path / "res.zarr")
    (res / "r" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"also holds 'r/notes.txt'"):
        save_results(xr.Dataset({"r": ("x", np.arange(3.0))}), res, overwrite=True)
    assert (res / "r" / "notes.txt").read_text() == "mine"


def test_invalid_store_is_not_written(tmp_path):
    ds = make_store(6, 3).drop_vars("split")
    with pytest.raises(Exception, match="split"):
        save_store(ds, tmp_path / "s.zarr")
    assert not (tmp_path / "s.zarr").exists()


def test_open_missing_and_incomplete(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.zarr: no such store"):
        open_store(tmp_path / "nope.zarr")
    save_store(make_store(6, 3), tmp_path / "s.zarr")
    os.remove(tmp_path / "s.zarr" / COMPLETE_MARKER)
    with pytest.raises(FileNotFoundError, match="not a complete neuroalign store .* interrupted save"):
        open_store(tmp_path / "s.zarr")


def _make_legacy(path):
    """``path`` as an earlier version wrote it: no manifest, plain completion marker."""
    os.remove(path / MANIFEST)
    (path / COMPLETE_MARKER).write_text("complete\n")


def test_corrupt_metadata(tmp_path):
    save_store(make_store(6, 3), tmp_path / "s.zarr")
    (tmp_path / "s.zarr" / ".zmetadata").write_text("{not json")
    with pytest.raises(StoreCorruptError, match=r"s.zarr: damaged store: metadata file '.zmetadata' has 9 bytes"):
        open_store(tmp_path / "s.zarr")
    _make_legacy(tmp_path / "s.zarr")  # without a manifest, zarr's own error, named
    with pytest.raises(DataFormatError, match="s.zarr: cannot be read as a zarr store"):
        open_store(tmp_path / "s.zarr")


# -- manifests: every chunk's presence, size and checksum -------------------------------------
def _chunk(path, array):
    """One data chunk file of ``array`` (not its metadata)."""
    return sorted(p for p in (path / array).iterdir() if not p.name.startswith("."))[0]


def _damage(f, how):
    data = f.read_bytes()
    if how == "delete":
        f.unlink()
    elif how == "truncate":
        f.write_bytes(data[: len(data) // 2])
    else:  # one flipped bit in the middle: same size
        b = bytearray(data)
        b[len(b) // 2] ^= 0x10
        f.write_bytes(bytes(b))


@pytest.mark.parametrize("array", ["responses", "stimulus_id", "roi_V1v"])
@pytest.mark.parametrize("how", ["delete", "truncate", "bitflip"])
def test_damaged_chunk_is_a_named_error(tmp_path, array, how):
    ds = make_store(12, 8, rois={"V1v": np.arange(8) < 3})
    path = save_store(ds, tmp_path / "s.zarr", neuroid_chunk=4)
    chunk = _chunk(path, array)
    _damage(chunk, how)
    what = {"delete": "is missing", "truncate": r"has \d+ bytes, expected \d+", "bitflip": "fails its checksum"}[how]
    pattern = rf"s.zarr: damaged store: array '{array}', chunk '{chunk.name}' {what}"
    with pytest.raises(StoreCorruptError, match=pattern):
        open_store(path)  # small store: sizes and checksums checked at open
    with pytest.raises(StoreCorruptError, match=pattern):
        verify_store(path)
    res = CliRunner().invoke(app, ["store", "verify", str(path)])
    assert res.exit_code == 1 and f"array '{array}', chunk '{chunk.name}'" in res.output
    assert "Traceback" not in res.output
    if how == "bitflip":  # sizes only (what a large store gets at open): verify finds it
        open_store(path, verify=False)
    else:
        with pytest.raises(StoreCorruptError, match=pattern):
            open_store(path, verify=False)


def test_intact_store_verifies_and_large_ones_check_sizes_only(tmp_path, monkeypatch):
    import neuroalign.store._io as io

    ds = make_store(12, 8)
    path = save_store(ds, tmp_path / "s.zarr", neuroid_chunk=3)
    manifest = json.loads((path / MANIFEST).read_text())["files"]
    assert {"responses/0.0", "responses/0.2", "stimulus_id/0", ".zmetadata"} <= set(manifest)
    res = verify_store(path)
    assert res["files"] == len(manifest) and res["folders"] == [str(path)]
    out = CliRunner().invoke(app, ["store", "verify", str(path)])
    assert out.exit_code == 0 and f"verified {len(manifest)} files" in out.output
    out = CliRunner().invoke(app, ["info", "--verify", str(path)])
    assert out.exit_code == 0 and "all checksums match" in out.output and "presentations" in out.output
    # above the size limit, open reads no chunk to check it (stat only)
    monkeypatch.setattr(io, "VERIFY_AT_OPEN_BYTES", 10)
    reads = []
    monkeypatch.setattr(io, "_sha256", lambda p: reads.append(p) or "0")
    open_store(path)
    assert reads == []


def test_deleted_or_garbled_manifest(tmp_path):
    path = save_store(make_store(6, 3), tmp_path / "s.zarr")
    (path / MANIFEST).write_text("[1, 2")
    with pytest.raises(StoreCorruptError, match="its manifest '.neuroalign-manifest.json' is unreadable"):
        open_store(path)
    os.remove(path / MANIFEST)  # the completion marker says there was one
    with pytest.raises(StoreCorruptError, match="its manifest '.neuroalign-manifest.json' is missing"):
        open_store(path)


def test_store_of_an_earlier_version_opens_with_a_log(tmp_path, caplog):
    ds = make_store(6, 3)
    path = save_store(ds, tmp_path / "s.zarr")
    _make_legacy(path)
    with caplog.at_level(logging.INFO, logger="neuroalign"):
        xr.testing.assert_identical(open_store(path).load(), ds)
    assert "no manifest (written by an earlier neuroalign version)" in caplog.text
    with pytest.raises(DataFormatError, match="has no neuroalign manifest .* cannot be verified"):
        verify_store(path)
    res = CliRunner().invoke(app, ["store", "verify", str(path)])
    assert res.exit_code == 1 and "cannot be verified" in res.output


def test_verify_errors(tmp_path):
    res = CliRunner().invoke(app, ["store", "verify", str(tmp_path / "nope.zarr")])
    assert res.exit_code == 1 and "nope.zarr: no such store or folder" in res.output
    (tmp_path / "half.zarr").mkdir()
    (tmp_path / "half.zarr" / ".zgroup").write_text("{}")
    with pytest.raises(StoreCorruptError, match="half.zarr: not a complete neuroalign store"):
        verify_store(tmp_path / "half.zarr")


# -- results zarrs: one writer --------------------------------------------------------------
def _results():
    return xr.Dataset(
        {"score": (("layer", "neuroid"), np.arange(6.0).reshape(2, 3)),
         "best_layer": ("neuroid", np.array(["layer1", "layer22", "layer1"], dtype=object))},
        coords={"layer": ["layer1", "layer22"], "model": ("layer", np.array(["m", "m"], dtype=object)),
                "neuroid_id": ("neuroid", ["a", "b", "c"])},
        attrs={"metric": "pearson", "layers": ["layer1", "layer22"], "alpha": np.float64(2.0),
               "n": np.int64(3), "nested": {"k": np.arange(2)}},
    )


def test_results_are_format_2_consolidated_with_manifest_and_no_warning(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zarr warning reaches users
        path = save_results(_results(), tmp_path / "r.zarr")
        back = read_zarr(path).load()
    assert (path / ".zgroup").is_file() and (path / ".zmetadata").is_file()
    assert not (path / "zarr.json").exists()
    assert (path / MANIFEST).is_file() and verify_store(path)["files"] > 0
    assert back["best_layer"].dtype.kind == "U" and back["model"].dtype.kind == "U"
    assert list(back["best_layer"].values) == ["layer1", "layer22", "layer1"]
    assert back.attrs["layers"] == ["layer1", "layer22"] and back.attrs["nested"] == {"k": [0, 1]}
    assert back.attrs["alpha"] == 2.0 and back.attrs["n"] == 3
    np.testing.assert_array_equal(back["score"].values, _results()["score"].values)
    _damage(_chunk(path, "score"), "truncate")
    with pytest.raises(StoreCorruptError, match="array 'score', chunk '0.0' has"):
        read_zarr(path)
    with pytest.raises(OutputExistsError, match="already exists"):
        save_results(_results(), path)


# -- concurrent writers, killed writers -----------------------------------------------------
_HOLDER = """
import pathlib, sys, time
import neuroalign.store._io as io
from neuroalign.store import save_store
from neuroalign.testing import make_store

real = io.write_manifest
def slow(path):  # hold the target's lock mid-save until the test says go
    pathlib.Path(sys.argv[2]).touch()
    while not pathlib.Path(sys.argv[3]).exists():
        time.sleep(0.02)
    return real(path)
io.write_manifest = slow
save_store(make_store(6, 3, seed=1), sys.argv[1])
print("saved", flush=True)
"""


def test_second_writer_of_a_store_gets_named_error(tmp_path):
    target, ready, go = tmp_path / "s.zarr", tmp_path / "ready", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(target), str(ready), str(go)],
                            stdout=subprocess.PIPE, text=True, cwd=os.getcwd(),
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        deadline = time.time() + 60
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.02)
        assert ready.exists(), "the first writer never started"
        with pytest.raises(TargetLockedError,
                           match=rf"s.zarr: another neuroalign process {proc.pid} on .* is writing this store"):
            save_store(make_store(6, 3, seed=2), target)
    finally:
        go.touch()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "saved" in out
    xr.testing.assert_identical(open_store(target).load(), make_store(6, 3, seed=1))


_WRITER = """
import sys, numpy as np
from neuroalign.testing import make_store
from neuroalign.store import save_store
ds = make_store(400, 4000, n_repetitions=3, dtype=np.float64)
print("ready", flush=True)
save_store(ds, sys.argv[1], neuroid_chunk=20)
"""


def test_killed_save_leaves_no_valid_store(tmp_path):
    target = tmp_path / "big.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(target)],
        stdout=subprocess.PIPE, cwd=os.getcwd(),
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.stdout.readline().strip() == b"ready"
    # wait until the writer has started producing chunks, then kill it mid-write
    deadline = time.time() + 60
    while time.time() < deadline:
        tmps = [p for p in tmp_path.iterdir() if p.name.startswith(".big.zarr.tmp")]
        if tmps and any(tmps[0].rglob("responses/*")):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    with pytest.raises(FileNotFoundError):
        open_store(target)
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".big.zarr.tmp")]
    assert leftovers, "the writer was killed before it started writing; test is not meaningful"
    with pytest.raises(FileNotFoundError, match="not a complete neuroalign store"):
        open_store(leftovers[0])
    # the next successful save to the same target removes what the killed one left (only
    # neuroalign's temporaries of this target: a user's look-alike and other targets' stay)
    lookalike = tmp_path / ".big.zarr.tmp-mycopy"
    lookalike.mkdir()
    other = tmp_path / ".other.zarr.tmp-0123abcd"
    other.mkdir()
    save_store(make_store(6, 3), target)
    assert not any(p.exists() for p in leftovers)
    assert lookalike.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".big.zarr.lock", ".big.zarr.tmp-mycopy", ".other.zarr.tmp-0123abcd", "big.zarr"]
