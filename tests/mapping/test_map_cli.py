"""``neuroalign map`` writes the figures and tables."""

import re

import pytest
from typer.testing import CliRunner

from neuroalign.cli import app


def test_map_with_scores_file(sim_nsd_large, nsd_scores, tmp_path):
    from neuroalign.encoders import results_from_scores

    path = tmp_path / "scores.zarr"
    results_from_scores(nsd_scores, metric="r2", score_kind="cv", split="all").to_zarr(
        path, zarr_format=2)
    out = tmp_path / "maps"
    res = CliRunner().invoke(app, ["map", str(sim_nsd_large.root), "--scores", str(path), "--out", str(out),
                                   "--format", "png"])
    assert res.exit_code == 0, res.output
    for stem in ("roi_scores", "layer_profile", "volume_best_depth", "volume_best_score"):
        assert (out / f"{stem}.png").stat().st_size > 1000, stem
    # the simulated brain is a subject-native volume: real slices, no (schematic) surface
    assert not list(out.glob("surface*")), sorted(p.name for p in out.iterdir())
    assert "no surface map: the store's space 'func1pt8mm' is not MNI" in res.output
    assert (out / "roi_summary.csv").exists() and (out / "layer_preference.csv").exists()
    for roi, layer in sim_nsd_large.layer_of_roi().items():
        assert re.search(rf"{re.escape(roi)}\s+{layer}\s.*truth {layer}", res.output), res.output


def test_map_keeps_the_fits_own_best_layer(tmp_path):
    """A fit's results choose each voxel's layer by cv_score within train (their best_layer);
    the map keeps that choice and that layer's held-out score, never re-picking on the test
    scores."""
    import numpy as np
    import pandas as pd
    import xarray as xr

    from neuroalign.encoders import results_from_scores
    from neuroalign.store import save_results, save_store
    from neuroalign.testing import make_store

    n = 12
    store = make_store(16, n, n_repetitions=2, n_test=4,
                       rois={"A": np.arange(n) < 6, "B": np.arange(n) >= 6})
    save_store(store, tmp_path / "store.zarr")
    rng = np.random.default_rng(0)
    coords = {"layer": ["early", "late"], "neuroid_id": store["neuroid_id"]}
    # held-out scores favour 'early' everywhere; the cross-validated R² within train chose 'late'
    test = xr.DataArray(np.stack([rng.uniform(0.5, 0.6, n), rng.uniform(0.1, 0.2, n)]),
                        dims=("layer", "neuroid"), coords=coords)
    cv = xr.DataArray(np.stack([np.full(n, 0.1), np.full(n, 0.3)]), dims=("layer", "neuroid"),
                      coords=coords)
    res = results_from_scores(test, cv_score=cv, metric="pearson", score_kind="test", split="test")
    save_results(res, tmp_path / "results.zarr")
    out = tmp_path / "maps"
    cli = CliRunner().invoke(app, ["map", str(tmp_path / "store.zarr"), "--scores",
                                   str(tmp_path / "results.zarr"), "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    table = pd.read_csv(out / "layer_preference.csv")
    assert (table["best_layer"] == "late").all(), table["best_layer"].value_counts()
    np.testing.assert_allclose(table["best_score"], res["best_score"].values)
    assert pd.read_csv(out / "roi_summary.csv").set_index("roi")["best_layer"].to_dict() == {
        "A": "late", "B": "late"}


def test_map_errors(sim_nsd, tmp_path):
    from neuroalign.store import save_store

    store_path = tmp_path / "store.zarr"
    save_store(sim_nsd.store().load(), store_path)
    res = CliRunner().invoke(app, ["map", str(store_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "a store without layer scores" in res.output
    assert "pass --scores RESULTS" in res.output
    res = CliRunner().invoke(app, ["map", str(store_path), "--scores", str(tmp_path / "nope.nc")])
    assert res.exit_code == 2 and "nope.nc" in res.output and "does not exist" in res.output
    res = CliRunner().invoke(app, ["map", str(store_path), "--scores", str(store_path), "--units"])
    assert res.exit_code == 2 and "[map] units = true needs [features]" in res.output
    res = CliRunner().invoke(app, ["map", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no such recipe, results folder or store" in res.output


@pytest.mark.slow
def test_map_simulated_eeg_end_to_end(sim_eeg, tmp_path):
    out = tmp_path / "maps"
    res = CliRunner().invoke(app, ["map", str(sim_eeg.root), "--out", str(out), "--units",
                                   "--n-permutations", "19"])
    assert res.exit_code == 0, res.output
    for stem in ("topomap_best_depth", "topomap_best_score", "layer_profile"):
        assert (out / f"{stem}.png").exists(), stem
    assert (out / "roi_best_layer_over_time.csv").exists() and (out / "units_to_roi.csv").exists()
    assert "parietal" in res.output and "truth layer4" in res.output


def test_map_surface_store(tmp_path):
    """A store on fsaverage vertices gets a real surface map (not the schematic)."""
    import numpy as np
    import xarray as xr

    from neuroalign.store import save_store
    from neuroalign.testing import make_store

    n = 40
    store = make_store(12, n, n_repetitions=2, rois={"A": np.arange(n) < 20, "B": np.arange(n) >= 20})
    store = store.assign_coords(vertex=("neuroid", np.r_[np.arange(20), np.arange(20)]),
                                hemisphere=("neuroid", ["lh"] * 20 + ["rh"] * 20))
    store.attrs["space"] = "fsaverage"
    save_store(store, tmp_path / "surf.zarr")
    sc = xr.DataArray(np.random.default_rng(0).uniform(0, 1, (3, n)), dims=("layer", "neuroid"),
                      coords={"layer": ["a", "b", "c"], "neuroid_id": store["neuroid_id"]}, name="score")
    sc.to_netcdf(tmp_path / "scores.nc")
    out = tmp_path / "maps"
    res = CliRunner().invoke(app, ["map", str(tmp_path / "surf.zarr"), "--scores", str(tmp_path / "scores.nc"),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "surface_best_depth.png").exists()
    assert not (out / "volume_best_depth.png").exists()


def test_simulate_units_per_roi_option(tmp_path):
    res = CliRunner().invoke(app, ["simulate", str(tmp_path / "s"), "--units-per-roi", "0"])
    assert res.exit_code == 2 and "Invalid value for 'units_per_roi' in simulate()" in res.output
    assert not (tmp_path / "s").exists()
