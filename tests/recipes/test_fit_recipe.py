"""`neuroalign fit RECIPE`: the fit runner, its outputs and its errors."""

import json
from pathlib import Path

import pytest
import xarray as xr
from typer.testing import CliRunner

from neuroalign.cli import app
from neuroalign.exceptions import DataFormatError
from neuroalign.recipes import load_recipe, run_recipe
from neuroalign.store import check_results

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "examples" / "recipes"


@pytest.fixture(scope="module")
def small_sim(sim_nsd_large):
    return sim_nsd_large


@pytest.mark.slow  # the whole recipe with real extraction, ~8 s
def test_cli_fit_layer_sweep_recipe(small_sim, tmp_path):
    out = tmp_path / "res"
    result = CliRunner().invoke(app, ["fit", str(RECIPES / "fit-layer-sweep.toml"),
                                      "--set", f"store.path={small_sim.store_path}", "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["best_layer_by_roi"]) >= set(small_sim.layer_of_roi())
    assert summary["best_layer_by_roi"]["FFA-1"] == "layer4"
    res = check_results(xr.open_zarr(out / "results.zarr"))
    assert {"score", "cv_score", "best_layer", "best_score", "ceiling_normalised"} <= set(res.data_vars)
    assert res["score"].dims == ("layer", "neuroid")
    assert res.attrs["metric"] == "pearson" and res.attrs["score_kind"] == "test"
    # what `neuroalign fit` writes is what `neuroalign map --scores` reads
    maps = CliRunner().invoke(app, ["map", str(small_sim.store_path), "--scores", str(out / "results.zarr"),
                                    "--out", str(tmp_path / "maps")])
    assert maps.exit_code == 0, maps.output
    assert (tmp_path / "maps" / "layer_preference.csv").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "fit" and run["recipe_text"] == (RECIPES / "fit-layer-sweep.toml").read_text()
    assert run["set"] == [f"store.path={small_sim.store_path}"]
    assert run["config"]["store"]["path"] == str(small_sim.store_path)
    assert {"python", "neuroalign", "numpy", "xarray", "zarr"} <= set(run["versions"])
    # the recipe extracts real features (neuroalign.features), cached beside the results
    assert [p.name for p in (tmp_path / "res.features").glob("*.zarr")] == [
        "torchvision-resnet18-seed0.zarr"]
    # every summary names its metric, kind and aggregate
    assert summary["metric"] == "pearson" and summary["score_kind"] == "test"
    assert summary["score_var"] == "best_score"
    assert summary["best_layer_selection"] == "cv-r2 within train"
    for roi, stats in summary["rois"].items():
        raw, norm = stats["score"], stats["ceiling_normalised"]
        assert raw["metric"] == "pearson" and raw["kind"] == "test" and raw["aggregate"] == "mean"
        assert raw["ci95"][0] <= raw["value"] <= raw["ci95"][1], roi
        assert norm["aggregate"] == "ratio of means over neuroids with noise ceiling >= 10 %"
        assert norm["ci95"][0] <= norm["value"] <= norm["ci95"][1], roi
        assert 0 < norm["n_neuroids"] <= stats["n_neuroids"]


def test_recipe_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('kind = "fit"\n[store]\npath = "x"\n[features]\nmodel = "m"\nlayers = "l"\n'
                   '[encoder]\nkind = "lasso"\n')
    with pytest.raises(DataFormatError, match=r"\[encoder\] kind = 'lasso'; expected one of 'layer-sweep'"):
        load_recipe(bad)
    bad.write_text('kind = "fit"\n[store]\npath = "x"\n[encoder]\nkind = "ridge"\n')
    with pytest.raises(DataFormatError, match=r"missing table \[features\]"):
        load_recipe(bad)
    bad.write_text("[store\n")
    with pytest.raises(DataFormatError, match="not valid TOML"):
        load_recipe(bad)
    bad.write_text('kind = "fit"\n[stor]\n')
    with pytest.raises(DataFormatError, match=r"unknown key 'stor' in the top level; did you mean 'store'\?"):
        load_recipe(bad)
    bad.write_text('kind = "fit"\n[store]\nrois = []\n[features]\nmodel = "m"\nlayers = "l"\n'
                   '[encoder]\nkind = "ridge"\n')
    with pytest.raises(DataFormatError, match=r"missing key 'path' in \[store\]"):
        load_recipe(bad)
    bad.write_text('kind = "fit"\n[store]\npath = "x"\n[features]\nmodel = "m"\n[encoder]\nkind = "ridge"\n')
    with pytest.raises(DataFormatError, match=r"\[features\] needs 'layers'"):
        load_recipe(bad)
    bad.write_text('kind = "fit"\n[store]\npath = "x"\n[features]\nmodel = "m"\nlayers = "l"\n'
                   '[encoder]\nkind = "banded-ridge"\n')
    with pytest.raises(DataFormatError, match=r"needs named feature spaces \[features.spaces.NAME\]"):
        load_recipe(bad)
    result = CliRunner().invoke(app, ["fit", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_unknown_feature_model_is_a_clear_error(small_sim, tmp_path):
    # neuroalign.features rejects the spec itself, naming it and the known sources
    with pytest.raises(ValueError, match="no-such-model"):
        run_recipe(RECIPES / "fit-layer-sweep.toml", out=tmp_path / "x",
                   sets=[f"store.path={small_sim.store_path}", "features.model=no-such-model"])


def test_store_rois_restrict_the_summaries_to_those_rois(tmp_path):
    """[store] rois = ["A"] on a store where 'AB' overlaps A and 'B' does not: only A is
    summarised (not 'AB' over its overlap with A, under its own name), and no other ROI
    gets a best layer or a warning."""
    import warnings

    import numpy as np

    from neuroalign.store import save_store
    from neuroalign.testing import make_store

    n = 18
    rois = {"A": np.arange(n) < 6, "AB": np.arange(n) < 12, "B": np.arange(n) >= 12}
    ds, sig = make_store(n_stimuli=30, n_neuroids=n, n_repetitions=2, n_test=8, rois=rois, seed=1,
                         ncsnr=2.0, return_signal=True)
    save_store(ds, tmp_path / "store.zarr")
    rng = np.random.default_rng(0)
    xr.Dataset({"good": (("stimulus", "u"), sig.values @ rng.standard_normal((n, 8))),
                "noise": (("stimulus", "v"), rng.standard_normal((30, 4)))},
               coords={"stimulus_id": ("stimulus", sig["stimulus_id"].values)}
               ).to_zarr(tmp_path / "features.zarr", zarr_format=2, consolidated=True)
    recipe = tmp_path / "fit.toml"
    recipe.write_text('kind = "fit"\n[store]\npath = "store.zarr"\nrois = ["A"]\n[features]\n'
                      'path = "features.zarr"\n[encoder]\nkind = "layer-sweep"\nalphas = [1, 100]\n'
                      'cv = 3\n[outputs]\nn_boot = 20\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DataQualityWarning about ROIs nobody asked for
        summary = run_recipe(recipe, out=tmp_path / "res")["result"]
    assert summary["best_layer_by_roi"] == {"A": "good"}
    assert {k: v["n_neuroids"] for k, v in summary["rois"].items()} == {"A": 6}
    res = xr.open_zarr(tmp_path / "res" / "results.zarr")
    assert [c for c in res.coords if str(c).startswith("roi_")] == ["roi_A"]

