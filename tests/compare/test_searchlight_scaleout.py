"""searchlight(cluster=, result_path=): chunks of centres as cached cells give the
single-process map whatever the workers and the chunk size; a rerun computes only the
missing or damaged cells; a temporary left by a killed writer is never read."""

import os
import time

import numpy as np
import pytest
import xarray as xr

from neuroalign.compare import searchlight

SHAPE = (7, 7, 6)


def _volume(seed=0, n=9):
    rng = np.random.default_rng(seed)
    mask = rng.random(SHAPE) < 0.85
    ijk = np.argwhere(mask)
    data = rng.standard_normal((n, len(ijk)))
    data[:, 5] = data[0, 5]  # a constant neuroid: centres around it undefined (NaN) ...
    data[3, 17] = np.nan  # ... and a NaN one
    models = rng.random((3, n * (n - 1) // 2))
    return data, ijk, models


KW = dict(radius=2.0, threshold=0.5, volume_shape=SHAPE, show_progress=False)


def _run(data, ijk, models, **kw):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return searchlight(data, models, ijk=ijk, **(KW | kw))


@pytest.mark.parametrize("method", ["spearman", "pearson", "tau_a"])
@pytest.mark.parametrize(("use_client", "batch"), [(False, 13), (True, 40), (True, 500)])
def test_cells_match_the_single_process_map(client, tmp_path, method, use_client, batch):
    data, ijk, models = _volume()
    single = _run(data, ijk, models, method=method)
    cells = _run(data, ijk, models, method=method, result_path=tmp_path / "sl",
                 client=client if use_client else None, batch_size=batch)
    assert cells.attrs["n_cells"] == -(-len(ijk) // batch)
    assert cells.attrs["n_cells_computed"] == cells.attrs["n_cells"]
    assert np.isnan(single.values).any() and np.isfinite(single.values).any()
    np.testing.assert_array_equal(np.isnan(cells.values), np.isnan(single.values))
    np.testing.assert_allclose(cells.values, single.values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(cells["n_neighbours"].values, single["n_neighbours"].values)
    assert cells.attrs["n_centres"] == single.attrs["n_centres"]


def test_rerun_computes_only_missing_or_damaged_cells(tmp_path):
    data, ijk, models = _volume(1)
    single = _run(data, ijk, models)
    path = tmp_path / "sl"
    first = _run(data, ijk, models, result_path=path, batch_size=30)
    n = first.attrs["n_cells"]
    assert n > 5
    again = _run(data, ijk, models, result_path=path, batch_size=30)
    assert again.attrs["n_cells_computed"] == 0
    cells = sorted((path / "cells").glob("*.npz"))
    assert len(cells) == n
    cells[0].unlink()
    cells[3].write_bytes(cells[3].read_bytes()[:200])  # truncated under its own name
    # partial writes left by a killed writer: temporaries beside, never read as cells; one
    # two hours old is removed, a recent one (maybe a live writer's) is left alone
    (path / "cells" / ".tmp-dead.npz").write_bytes(cells[4].read_bytes()[:150])
    (path / "cells" / ".tmp-old.npz").write_bytes(cells[4].read_bytes()[:150])
    old = time.time() - 7200
    os.utime(path / "cells" / ".tmp-old.npz", (old, old))
    before = {f.name: f.stat().st_mtime_ns for f in cells[5:]}
    redo = _run(data, ijk, models, result_path=path, batch_size=30)
    assert redo.attrs["n_cells_computed"] == 2
    assert (path / "cells" / ".tmp-dead.npz").is_file()
    assert not (path / "cells" / ".tmp-old.npz").exists()
    assert {f.name: f.stat().st_mtime_ns for f in cells[5:]} == before
    np.testing.assert_allclose(redo.values, single.values, rtol=0, atol=1e-12)
    # other models, other radius: other keys, nothing reused
    other = _run(data, ijk, models[::-1].copy(), result_path=path, batch_size=30)
    assert other.attrs["n_cells_computed"] == n
    wider = _run(data, ijk, models, result_path=path, batch_size=30, radius=2.5)
    assert wider.attrs["n_cells_computed"] == wider.attrs["n_cells"]


def test_a_failed_cell_is_named_and_the_rerun_completes_it(tmp_path):
    data, ijk, models = _volume(2)
    path = tmp_path / "sl"
    with pytest.raises(RuntimeError, match=r"searchlight: 1 cell\(s\) failed .*batches \[2\]"):
        _run(data, ijk, models, result_path=path, batch_size=50, _fail={2: "raise"})
    redo = _run(data, ijk, models, result_path=path, batch_size=50)
    assert redo.attrs["n_cells_computed"] == 1
    np.testing.assert_allclose(redo.values, _run(data, ijk, models).values, rtol=0, atol=1e-12)


def test_bad_batch_size_and_cluster_are_named(tmp_path):
    data, ijk, models = _volume()
    with pytest.raises(ValueError, match=r"Invalid value for 'batch_size' in searchlight\(\): 0"):
        _run(data, ijk, models, result_path=tmp_path, batch_size=0)
    with pytest.raises(ValueError, match=r"Invalid value for 'cluster' in searchlight\(\): 'lcoal'"):
        _run(data, ijk, models, cluster="lcoal")


def test_surface_cells_match_the_single_process_map(client, tmp_path):
    """Discs on a mesh (Dijkstra chunks): cells give the single-process map."""
    nx, ny = 9, 8
    x, y = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float), indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), 0.1 * np.sin(x.ravel())], 1)
    idx = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    rng = np.random.default_rng(7)
    keep = np.sort(rng.choice(len(v), 60, replace=False))
    da = xr.DataArray(rng.standard_normal((9, len(keep))), dims=("stimulus", "neuroid"),
                      coords={"vertex": ("neuroid", keep)})
    models = rng.random((2, 36))
    kw = dict(surface=(v, f), radius=2.2, threshold=0.0, method="pearson", show_progress=False)
    single = searchlight(da, models, **kw)
    for batch, c in ((7, None), (16, client)):
        cells = searchlight(da, models, result_path=tmp_path / str(batch), batch_size=batch,
                            client=c, **kw)
        assert cells.attrs["n_cells"] > 1
        np.testing.assert_allclose(cells.values, single.values, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(cells["n_neighbours"].values, single["n_neighbours"].values)


def test_with_a_client_and_no_result_path_the_temporary_cells_go(client, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    data, ijk, models = _volume(3)
    sl = _run(data, ijk, models, client=client, batch_size=100)
    assert sl.attrs["n_cells_computed"] == sl.attrs["n_cells"] > 1
    assert "result_path" not in sl.attrs and list(tmp_path.iterdir()) == []
    np.testing.assert_allclose(sl.values, _run(data, ijk, models).values, rtol=0, atol=1e-12)
