"""`neuroalign fit RECIPE`: the fit runner, its outputs and its errors."""

import json
from pathlib import Path

import numpy as np
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
    from neuroalign.recipes._inputs import default_cache

    assert list((tmp_path / "res.features").glob("*.zarr")) == [
        default_cache(load_recipe(RECIPES / "fit-layer-sweep.toml").config["features"],
                      tmp_path / "res.features")]
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


_SPACE = 'model = "torchvision:resnet18"\nweights = "random"\ntransform = "simulation"\n'


def test_default_feature_caches_are_named_by_every_setting(tmp_path):
    from neuroalign.recipes._inputs import default_cache

    base = {"model": "torchvision:resnet18", "weights": "random", "seed": 0,
            "transform": "simulation", "layers": ["layer1"], "tokens": False, "grid": 7}
    names = {default_cache(base | change, tmp_path).name for change in (
        {}, {"layers": ["layer2"]}, {"layers": ["layer1", "layer2"]}, {"seed": 1},
        {"weights": "default"}, {"transform": "imagenet"}, {"pooling": "max"}, {"tokens": True},
        {"model": "torchvision:resnet50"})}
    assert len(names) == 9 and all(n.startswith("torchvision-resnet") for n in names)
    # how the features are computed is not what they are: the same cache
    assert default_cache(base | {"batch_size": 8, "device": "cpu"}, tmp_path) == \
        default_cache(base, tmp_path)


def test_a_stale_feature_cache_is_an_error_naming_overwrite_which_recomputes_it(sim_nsd, tmp_path):
    from neuroalign.exceptions import CacheMismatchError
    from neuroalign.recipes._inputs import default_cache, feature_set

    spec = {"model": "torchvision:resnet18", "weights": "random", "transform": "simulation",
            "layers": ["layer1"], "tokens": False, "grid": 7}
    test = sim_nsd.store().na.split("test")
    ids = np.unique(test["stimulus_id"].values)
    part = test.isel(presentation=np.flatnonzero(np.isin(test["stimulus_id"].values, ids[:6])))
    feature_set(spec, part, tmp_path)  # the cache, written for 6 stimuli
    with pytest.raises(CacheMismatchError, match=r"other settings .*\(CLI: --overwrite\)"):
        feature_set(spec, test, tmp_path)
    feats = feature_set(spec, test, tmp_path, overwrite=True)  # computed again
    assert feats.sizes["stimulus"] == len(ids)
    assert xr.open_zarr(default_cache(spec, tmp_path)).sizes["stimulus"] == len(ids)
    assert feature_set(spec, test, tmp_path)["layer1"].shape == feats["layer1"].shape  # a hit


@pytest.mark.slow  # four recipe runs with real extraction, ~18 s
def test_feature_caches_of_recipes_never_collide(sim_nsd, tmp_path):
    """Two feature spaces of one model get caches of their own; changing a recipe's layers
    makes a new cache; a cache written for other stimuli is never reused: an error naming
    --overwrite, which computes it again."""
    from neuroalign.exceptions import CacheMismatchError
    from neuroalign.features import extract

    banded = tmp_path / "banded.toml"
    banded.write_text(f'kind = "fit"\n[store]\npath = "{sim_nsd.store_path}"\nrois = ["V1v"]\n'
                      f'[features.spaces.early]\n{_SPACE}layers = ["layer1"]\n'
                      f'[features.spaces.late]\n{_SPACE}layers = ["layer2"]\n'
                      '[encoder]\nkind = "banded-ridge"\nalphas = [1, 100]\ncv = 3\n'
                      'params = { n_iter = 2 }\n[outputs]\nn_boot = 20\n')
    run_recipe(banded, out=tmp_path / "band")
    assert len(list((tmp_path / "band.features").glob("torchvision-resnet18-*.zarr"))) == 2
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'kind = "fit"\n[store]\npath = "{sim_nsd.store_path}"\nrois = ["V1v"]\n'
                     f'[features]\n{_SPACE}layers = ["layer1"]\n[encoder]\nkind = "layer-sweep"\n'
                     'alphas = [1, 100]\ncv = 3\n[outputs]\nn_boot = 20\n')
    run_recipe(sweep, out=tmp_path / "sw")
    run_recipe(sweep, out=tmp_path / "sw", overwrite=True, sets=['features.layers=["layer1", "layer2"]'])
    assert len(list((tmp_path / "sw.features").glob("*.zarr"))) == 2
    # the recipe's default cache, written for other stimuli (only the test split's)
    from neuroalign.recipes._inputs import default_cache

    spec = load_recipe(sweep).config["features"]
    cache = default_cache(spec, tmp_path / "stale.features")
    extract("torchvision:resnet18", sim_nsd.store().na.split("test"), layers=["layer1"],
            weights=None, transform="simulation", cache=cache)
    with pytest.raises(CacheMismatchError, match=r"other settings .*--overwrite"):
        run_recipe(sweep, out=tmp_path / "stale")
    res = CliRunner().invoke(app, ["fit", str(sweep), "-o", str(tmp_path / "stale"), "--overwrite"])
    assert res.exit_code == 0, res.output
    n = sim_nsd.store().na.average_repetitions().sizes["stimulus"]
    assert xr.open_zarr(cache).sizes["stimulus"] == n  # computed again, for every stimulus


def test_edited_simulate_settings_simulate_again(tmp_path):
    """[store.simulate] reuses the simulation in 'out' only when it was made with the same
    settings; an edited table makes it again, so the store read is the one the recipe (and
    its run.json) describes."""
    from neuroalign.recipes._inputs import open_store

    sim = {"out": str(tmp_path / "simx"), "n_images": 12, "n_test": 4, "n_sessions": 2,
           "image_size": 32}
    spec = {"path": str(tmp_path / "simx" / "store.zarr"), "simulate": sim}
    assert open_store(spec)[0].sizes["presentation"] == 36  # 12 images x 3 repetitions
    first = (tmp_path / "simx" / "truth.json").stat().st_mtime_ns
    assert open_store(spec)[0].sizes["presentation"] == 36  # the same settings: reused
    assert (tmp_path / "simx" / "truth.json").stat().st_mtime_ns == first
    store, made = open_store({**spec, "simulate": {**sim, "n_images": 16}})
    assert store.sizes["presentation"] == 48  # 16 images, as asked

    from neuroalign.datasets.simulate import simulation_settings

    asked = {k: v for k, v in sim.items() if k != "out"} | {"n_images": 16}
    assert made.truth["settings"] == simulation_settings(**asked)


def test_bad_recipe_values_name_the_recipe_key_and_a_working_remedy(own_data, sim_nsd, tmp_path,
                                                                    monkeypatch):
    from neuroalign.exceptions import WeightsNotAvailableError

    # cv: the recipe file, table and key, not LayerSweep()
    with pytest.raises(DataFormatError, match=r"fit-layer-sweep.toml: \[encoder\] cv = -2; expected "
                                              r"an integer of at least 2"):
        load_recipe(RECIPES / "fit-layer-sweep.toml", sets=["encoder.cv=-2"])
    # test_split: the recipe key and the store's held-out splits, before any work
    _, store, feats = own_data
    recipe = tmp_path / "fit.toml"
    recipe.write_text(f'kind = "fit"\n[store]\npath = "{store}"\ntest_split = "tst"\n[features]\n'
                      f'path = "{feats}"\n[encoder]\nkind = "ridge"\n')
    with pytest.raises(DataFormatError, match=r"\[store\] test_split = 'tst': expected a held-out "
                                              r"split of the store .*store.zarr', one of 'test'\."):
        run_recipe(recipe, out=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    # missing pretrained weights: the recipe's own key, which fit recipes accept
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    with pytest.raises(WeightsNotAvailableError) as err:
        run_recipe(RECIPES / "fit-layer-sweep.toml", out=tmp_path / "b",
                   sets=[f"store.path={sim_nsd.store_path}", "features.weights=default"])
    message = str(err.value)
    assert "[features] model = 'torchvision:resnet18', weights = 'default'" in message
    assert "--set features.allow_download=true" in message
    assert "other recipes: [features] allow_download = true" in message
    assert "recipes: allow_download = true)" not in message
    load_recipe(RECIPES / "fit-layer-sweep.toml", sets=["features.allow_download=true"])  # accepted

