"""zarr round trips, dask-backed opens, and atomic saves."""

import os
import signal
import subprocess
import sys
import time

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from neuroalign.exceptions import DataFormatError
from neuroalign.store import COMPLETE_MARKER, open_store, save_store
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


def test_corrupt_metadata(tmp_path):
    save_store(make_store(6, 3), tmp_path / "s.zarr")
    (tmp_path / "s.zarr" / ".zmetadata").write_text("{not json")
    with pytest.raises(DataFormatError, match="s.zarr: cannot be read as a zarr store"):
        open_store(tmp_path / "s.zarr")


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
