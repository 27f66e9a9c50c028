"""`neuroalign fit` leaves the store on disk: a ridge or a layer sweep reads a batch of
neuroids at a time, the noise ceiling and the test average a block at a time. The results
are those of the same recipe on the store read into memory."""

from __future__ import annotations

import tracemalloc

import dask
import numpy as np
import pytest
import xarray as xr

import neuroalign.recipes._fit as fit_module
import neuroalign.store._io as store_io
from neuroalign.recipes import load_recipe
from neuroalign.recipes._fit import run_fit
from neuroalign.store import save_store
from neuroalign.testing import make_store

N_NEUROIDS = 12_000


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A store of 450 presentations x 12,000 neuroids (21.6 MB, in chunks of 256 KiB; rows shuffled,
    two ROIs) whose responses carry 12 features, and the features as a zarr file."""
    root = tmp_path_factory.mktemp("fit_on_disk")
    rng = np.random.default_rng(0)
    ds = make_store(150, N_NEUROIDS, n_repetitions=3, n_test=30, seed=1,
                    rois={"A": np.arange(N_NEUROIDS) < 4_500, "B": np.arange(N_NEUROIDS) >= 3_500})
    ds = ds.isel(presentation=rng.permutation(ds.sizes["presentation"]))
    ids = np.unique(ds["stimulus_id"].values)
    feats = rng.standard_normal((ids.size, 12))
    w = rng.standard_normal((12, N_NEUROIDS)) * rng.uniform(0, 1, N_NEUROIDS)
    pos = np.searchsorted(ids, ds["stimulus_id"].values)
    ds["responses"].values = (ds["responses"].values + feats[pos] @ w).astype(np.float32)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_io, "CHUNK_BYTES", 2**18)
        save_store(ds, root / "store.zarr")
    fds = xr.Dataset({"layer_a": (("stimulus", "unit"), feats),
                      "layer_b": (("stimulus", "unit"), feats + rng.standard_normal(feats.shape))},
                     coords={"stimulus_id": ("stimulus", ids)})
    fds.to_zarr(root / "features.zarr")
    return root


def _recipe(root, kind: str) -> dict:
    text = (f'kind = "fit"\n[store]\npath = "{root / "store.zarr"}"\ntest_split = "test"\n'
            f'[features]\npath = "{root / "features.zarr"}"\n'
            + ('layers = "layer_a"\n' if kind == "ridge" else "")
            + f'[encoder]\nkind = "{kind}"\nalphas = [0.1, 10, 1000]\ncv = 3\n[outputs]\nn_boot = 20\n')
    path = root / f"{kind}.toml"
    path.write_text(text)
    return load_recipe(path).config


def _fit(cfg, out, *, in_memory: bool, monkeypatch):
    if in_memory:  # the store read whole first (what `neuroalign fit` did)
        real = fit_module.open_store
        monkeypatch.setattr(fit_module, "open_store", lambda spec: (real(spec)[0].load(), None))
    tracemalloc.start()
    try:  # one block at a time (dask's threads may run a few at once, and vary in how many)
        with dask.config.set(scheduler="synchronous"):
            summary = run_fit(cfg, out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        monkeypatch.undo()
    return summary, xr.open_zarr(out / "results.zarr").load(), peak


@pytest.mark.slow  # two whole recipe runs, ~8 s
@pytest.mark.parametrize("kind", ["ridge", "layer-sweep"])
def test_fit_recipe_leaves_the_store_on_disk_with_the_same_results(files, kind, tmp_path, monkeypatch):
    cfg = _recipe(files, kind)
    # (in memory first: the modules both import are then loaded, and not counted below)
    want_summary, want, want_peak = _fit(cfg, tmp_path / "memory", in_memory=True, monkeypatch=monkeypatch)
    summary, res, peak = _fit(cfg, tmp_path / "disk", in_memory=False, monkeypatch=monkeypatch)
    for name in ("alpha", "best_layer"):
        if name in want:
            np.testing.assert_array_equal(res[name].values, want[name].values)
    for name in ("score", "cv_score", "best_score", "ceiling", "ceiling_normalised"):
        if name in want:
            np.testing.assert_allclose(res[name].values, want[name].values, rtol=1e-10, atol=1e-12)
    assert summary["rois"] == want_summary["rois"] and set(summary["rois"]) == {"A", "B"}
    assert np.nanmedian(res["best_score"].values) > 0.3  # the planted features are found
    # the store's responses are 21.6 MB: read whole, the fit holds them and copies of its
    # splits; left on disk, it holds a batch of neuroids (and the 30 averaged test
    # stimuli) at a time, for the same work otherwise
    store_bytes = 450 * N_NEUROIDS * 4
    assert want_peak > 2 * store_bytes
    assert peak < want_peak - 2 * store_bytes, (peak / 2**20, want_peak / 2**20)
