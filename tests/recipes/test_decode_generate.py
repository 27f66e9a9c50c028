"""End to end: `neuroalign decode RECIPE` and `neuroalign generate RECIPE` on the simulated brain."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from neuroalign.cli import app


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from neuroalign.decoders import tiny_pipeline

    path = tmp_path_factory.mktemp("pipe") / "tiny"
    tiny_pipeline(path, n_images=48, steps=20, seed=0)
    return path


@pytest.mark.slow
def test_decode_recipe_reconstructs_above_chance(sim_nsd, tiny_path, tmp_path):
    recipe = tmp_path / "sim.toml"
    recipe.write_text(f"""
kind = "decode"
[store]
path = "{sim_nsd.root.resolve()}"
[outputs]
dir = "out"
[pipeline]
source = "{tiny_path}"
[decoder]
kind = "ridge"
[lowlevel]
size = 8
[reconstruct]
mode = "img2img"
strength = 0.5
num_inference_steps = 6
n_samples = 2
[metrics]
networks = ["alexnet2"]
""")
    res = CliRunner().invoke(app, ["decode", str(recipe)])
    assert res.exit_code == 0, res.output
    table = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (tmp_path / "out" / "grid.png").exists() and (tmp_path / "out" / "metrics.csv").exists()
    assert "retrieval forward" in res.output
    # held-out retrieval clearly above chance, reconstructions above chance on 2-way identification
    assert table["retrieval forward"] > 3 * table["retrieval chance"]
    assert table["alexnet2 2-way"] > 0.65
    assert table["PixCorr"] > 0.1
    # every metric next to its chance level and the low-level input img2img refined
    for k in ("PixCorr", "SSIM", "alexnet2 2-way"):
        assert {f"{k} chance", f"{k} low-level input", f"{k} p above chance",
                f"{k} p better than low-level input", f"{k} p worse than low-level input"} <= set(table)
    for k in ("PixCorr", "alexnet2 2-way"):
        assert table[f"{k} p above chance"] < 0.05, k
    assert table["alexnet2 2-way chance"] == 0.5
    assert "better than the low-level input on" in table["verdict"]
    assert table["verdict"] in res.output


@pytest.mark.slow
def test_generate_command(sim_nsd, tiny_path, tmp_path):
    out = tmp_path / "gen"
    recipe = tmp_path / "guided.toml"
    recipe.write_text(f'kind = "generate"\n[store]\npath = "{sim_nsd.root}"\n[encoder]\n'
                      'model = "simulated-truth"\n[generate]\nroi = "FFA-1"\nn = 2\nscale = 10.0\n')
    res = CliRunner().invoke(app, ["generate", str(recipe), "--set", "generate.steps=3",
                                   "--set", f"pipeline.source={tiny_path}", "-o", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "activations.json").read_text())
    assert len(data["true_guided"]) == 2 and "true_stimulus_mean" in data
    assert (out / "grid.png").exists() and (out / "activation_trajectory.csv").exists()


def test_cli_errors(tmp_path):
    from neuroalign.exceptions import DataFormatError
    from neuroalign.recipes import load_recipe
    from neuroalign.recipes._decode import run_generate

    with pytest.raises(FileNotFoundError, match="Recipe .* does not exist"):
        load_recipe(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(DataFormatError, match="not a valid TOML recipe"):
        load_recipe(bad)
    bad.write_text('kind = "decode"\n[data]\nstore = "x"\n')
    with pytest.raises(DataFormatError, match=r"unknown key 'data' in the top level"):
        load_recipe(bad)
    bad.write_text('kind = "generate"\n[encoder]\nmodel = "simulated-truth"\npath = "e"\n'
                   '[generate]\nroi = "FFA-1"\n')
    with pytest.raises(DataFormatError, match=r"\[encoder\] needs exactly one of 'path'"):
        load_recipe(bad)
    bad.write_text('kind = "generate"\n[encoder]\nmodel = "simulated-truth"\n[generate]\nroi = "FFA-1"\n')
    with pytest.raises(DataFormatError, match=r"is fitted on the responses of \[store\]"):
        load_recipe(bad)
    with pytest.raises(FileNotFoundError, match="--encoder .*expected a simulated dataset folder"):
        run_generate(tmp_path / "nothing", "FFA-1")
    res = CliRunner().invoke(app, ["decode", str(tmp_path / "none.toml")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = CliRunner().invoke(app, ["generate"])
    assert res.exit_code != 0 and "RECIPE" in res.output


def test_pipeline_embedder_error():
    from neuroalign.exceptions import DataFormatError
    from neuroalign.recipes._decode import pipeline_embedder

    with pytest.raises(DataFormatError, match="object has no image embedder"):
        pipeline_embedder(object())


def test_shipped_recipes_parse():
    from pathlib import Path

    from neuroalign.recipes import load_recipe

    root = Path(__file__).resolve().parents[2] / "examples" / "recipes"
    names = {p.name for p in root.glob("*.toml")}
    assert {"decode-nsd-unclip.toml", "decode-unclip.toml", "decode-img2img.toml",
            "generate-ffa.toml"} <= names
    for path in sorted(root.glob("decode-*.toml")):
        assert load_recipe(path).config["reconstruct"]["mode"] in ("unclip", "tokens", "ip-adapter", "img2img")
    assert load_recipe(root / "generate-ffa.toml").config["generate"]["roi"] == "FFA-1"


@pytest.mark.slow
def test_decode_recipe_fits_on_the_recipes_rois_only(sim_nsd, tiny_path, tmp_path, monkeypatch):
    """`[store] rois` picks the decoder's voxels (it was ignored: every voxel was used)."""
    from neuroalign.decoders._embedding import EmbeddingDecoder
    from neuroalign.recipes import run_recipe
    from neuroalign.store import open_store

    class Fitted(Exception):
        pass

    seen = {}

    def fit(self, store, target):
        seen["neuroids"] = store.sizes["neuroid"]
        raise Fitted

    monkeypatch.setattr(EmbeddingDecoder, "fit", fit)
    recipe = tmp_path / "rois.toml"
    recipe.write_text(f"""
kind = "decode"
[store]
path = "{sim_nsd.root.resolve()}"
rois = ["FFA-1", "PPA"]
[pipeline]
source = "{tiny_path}"
[metrics]
networks = ["alexnet2"]
""")
    with pytest.raises(Fitted):
        run_recipe(recipe, out=tmp_path / "out")
    store = open_store(sim_nsd.store_path)
    want = int((store["roi_FFA-1"].values | store["roi_PPA"].values).sum())
    assert 0 < want < store.sizes["neuroid"] and seen["neuroids"] == want
    assert not (tmp_path / "out").exists()


def _sizes_of_the_store_read(monkeypatch, budget=None):
    """Record each ``xr.Dataset.load`` of a store's responses: their sizes, in order."""
    import xarray as xr

    loads, real = [], xr.Dataset.load

    def load(self, **kw):
        if "responses" in self.data_vars:
            loads.append(dict(self["responses"].sizes))
        return real(self, **kw)

    monkeypatch.setattr(xr.Dataset, "load", load)
    if budget is not None:
        monkeypatch.setenv("NEUROALIGN_MEMORY_LIMIT", budget)
    return loads


@pytest.mark.parametrize("kind", ["decode", "generate"])
def test_a_store_too_large_for_memory_stops_before_it_is_read(kind, sim_nsd, tiny_path, tmp_path,
                                                                  monkeypatch):
    """decode and generate read the store's responses into memory: a memory preflight
    stops them at once, with what it needs and how to lower it, before anything is read."""
    from neuroalign.exceptions import MemoryPreflightError
    from neuroalign.recipes import run_recipe

    loads = _sizes_of_the_store_read(monkeypatch, budget="64KiB")  # the store: ~0.8 MiB
    recipe = tmp_path / f"{kind}.toml"
    body = (f'[pipeline]\nsource = "{tiny_path}"\n[metrics]\nnetworks = ["alexnet2"]\n' if kind == "decode"
            else f'[pipeline]\nsource = "{tiny_path}"\n[encoder]\nmodel = "simulated-truth"\n'
                 'layers = ["layer4"]\n[generate]\nroi = "FFA-1"\nn = 1\n')
    recipe.write_text(f'kind = "{kind}"\n[store]\npath = "{sim_nsd.root.resolve()}"\n{body}')
    with pytest.raises(MemoryPreflightError, match=rf"{kind}: reading the store's responses .*"
                                                   r"\[store\] rois in the recipe"):
        run_recipe(recipe, out=tmp_path / "out")
    assert loads == [] and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_decode_on_averages_reads_only_the_averages(sim_nsd, tiny_path, tmp_path, monkeypatch):
    """[decoder] average = true: the store's averages are read (a third of the trials here),
    and the decoder is fitted on the same values as on the trials averaged in memory; with a
    low-level decoder (fitted on single trials) the trials are read."""
    import numpy as np

    from neuroalign.decoders._embedding import EmbeddingDecoder
    from neuroalign.recipes import run_recipe
    from neuroalign.store import open_store

    class Fitted(Exception):
        pass

    seen = []

    def fit(self, store, target):
        seen.append(store)
        raise Fitted

    monkeypatch.setattr(EmbeddingDecoder, "fit", fit)
    loads = _sizes_of_the_store_read(monkeypatch)
    for lowlevel in ("", "[lowlevel]\nsize = 8\n"):
        recipe = tmp_path / "avg.toml"
        recipe.write_text(f'kind = "decode"\n[store]\npath = "{sim_nsd.root.resolve()}"\n'
                          f'[pipeline]\nsource = "{tiny_path}"\n[decoder]\nkind = "ridge"\n'
                          f'average = true\n{lowlevel}[metrics]\nnetworks = ["alexnet2"]\n')
        with pytest.raises(Fitted):
            run_recipe(recipe, out=tmp_path / "out")
    store = open_store(sim_nsd.store_path)
    n_stim = len(np.unique(store.stimulus_id.values))
    assert store.sizes["presentation"] > n_stim
    assert [next(iter(s)) for s in loads] == ["stimulus", "presentation"]
    assert loads[0]["stimulus"] == n_stim and loads[1]["presentation"] == store.sizes["presentation"]
    want = store.load().na.split("train").na.average_repetitions()
    got = seen[0]
    assert "presentation" not in got.dims and "presentation" in seen[1].dims
    want = want.sel(stimulus_id=got.stimulus_id.values)
    np.testing.assert_allclose(got["responses"].values, want["responses"].values, rtol=1e-6, atol=1e-6)
