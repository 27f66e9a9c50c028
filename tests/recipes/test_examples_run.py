"""`neuroalign run RECIPE`: every shipped recipe runs on simulated data, changing paths only.

Each recipe in examples/recipes/ (a new one is picked up automatically) is run through
the CLI with ``--set`` overrides of its *paths* only: the store (a small simulated dataset
made with the recipe's own ``simulate`` options), the pipeline folder (a small tiny pipeline,
or for a real-data recipe a tiny random-weight pipeline of the recipe's diffusers class) and,
for recipes that ask for pretrained metric networks, ``$TORCH_HOME`` (random-weight
checkpoints under torchvision's file names). Everything else runs exactly as written.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from neuroalign.cli import app
from neuroalign.recipes import load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("examples/recipes/*.toml"))
# the simulated datasets the recipes run on here: small versions of what their 'simulate' asks for
SMALL = {"n_images": 90, "n_test": 18, "n_sessions": 3, "seed": 0}
# for real-data recipes (no 'simulate' table), whose settings are sized for real data
# (e.g. 512 px unCLIP samples): fewer test images keep the run short
SMALL_REAL = {"n_images": 60, "n_test": 6, "n_sessions": 2, "seed": 0}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """options -> a small SimulationResult made with those options (one per option set)."""
    from neuroalign.datasets.simulate import simulate

    made = {}

    def get(options: dict | None):
        small = SMALL if options is not None else SMALL_REAL
        opts = {**{k: v for k, v in (options or {}).items() if k != "out"}, **small}
        key = json.dumps(opts, sort_keys=True)
        if key not in made:
            made[key] = simulate(tmp_path_factory.mktemp("sim") / "sim", **opts)
        return made[key]

    return get


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from neuroalign.decoders import tiny_pipeline

    path = tmp_path_factory.mktemp("pipe") / "tiny"
    tiny_pipeline(path, n_images=48, steps=20, seed=0)
    return path


def _byte_chars() -> list[str]:
    """The 256 characters of CLIP's byte-level BPE alphabet."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _tiny_unclip(path: Path) -> Path:
    """A random-weight StableUnCLIPImg2ImgPipeline (SD 2.1 unCLIP's class and components,
    tiny sizes: 32-dim CLIP, 16x16 latents, a VAE with scale factor 32 so 512 px output
    stays cheap), written with save_pretrained."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableUnCLIPImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    dim = 32
    chars = _byte_chars()
    vocab = {t: i for i, t in enumerate([*chars, *(c + "</w>" for c in chars),
                                         "<|startoftext|>", "<|endoftext|>"])}
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"], vocab_size=len(vocab), max_position_embeddings=8,
        hidden_size=dim, projection_dim=dim, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2))
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=dim, projection_dim=dim, num_hidden_layers=2, num_attention_heads=4,
        image_size=16, intermediate_size=37, patch_size=4))
    vae = AutoencoderKL(block_out_channels=(8,) * 6, norm_num_groups=4, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 6,
                        up_block_types=("UpDecoderBlock2D",) * 6)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=dim,
        attention_head_dim=4, norm_num_groups=8, class_embed_type="projection",
        projection_class_embeddings_input_dim=2 * dim)
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=16, size=16), image_encoder=image_encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=dim),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=8), text_encoder=text,
        unet=unet, vae=vae,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                set_alpha_to_one=False, steps_offset=1, clip_sample=False))
    pipe.save_pretrained(path)
    return path


# stand-ins for real diffusers pipelines, by the recipe's [pipeline] kind
_PIPELINE_STANDINS = {"StableUnCLIPImg2ImgPipeline": _tiny_unclip}


@pytest.fixture(scope="module")
def pipeline_standin(tmp_path_factory):
    made = {}

    def get(kind: str) -> Path:
        if kind not in _PIPELINE_STANDINS:
            pytest.fail(f"no tiny stand-in for [pipeline] kind = {kind!r}: add one to _PIPELINE_STANDINS")
        if kind not in made:
            made[kind] = _PIPELINE_STANDINS[kind](tmp_path_factory.mktemp("standin") / kind)
        return made[kind]

    return get


@pytest.fixture(scope="module")
def random_torch_home(tmp_path_factory):
    """A $TORCH_HOME whose hub/checkpoints hold random weights under torchvision's file names
    for the metric networks (what 'weights = "DEFAULT"' loads; nothing is downloaded)."""
    import torch
    import torchvision

    from neuroalign.decoders.metrics import _NETWORKS

    home = tmp_path_factory.mktemp("torch-home")
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    for arch in sorted({arch for arch, *_ in _NETWORKS.values()} & {"alexnet", "inception_v3"}):
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        torch.manual_seed(0)
        kw = {"aux_logits": True, "init_weights": False} if arch == "inception_v3" else {}
        state = torchvision.models.get_model(arch, weights=None, **kw).state_dict()
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
                   ckpt / weights.url.rsplit("/", 1)[1])
    return home


def _path_overrides(recipe, simulated, tiny_path, pipeline_standin, fit_output,
                    features_file) -> tuple[list[str], int]:
    """The --set options that point a recipe at the test's data (paths only), and the number
    of test images of that data."""
    cfg = recipe.config
    sim_cfg = cfg["store"].get("simulate")
    sim = simulated(sim_cfg)
    sets = [f"store.path={sim.root}"]
    if recipe.kind == "map":
        sets.append(f"results.path={fit_output(sim)}")
    if "path" in (cfg.get("features") or {}):
        sets.append(f"features.path={features_file(sim)}")
    if "pipeline" in cfg:
        source = cfg["pipeline"]["source"]
        folder = tiny_path if source == "tiny" else pipeline_standin(cfg["pipeline"].get("kind"))
        sets.append(f"pipeline.source={folder}")
    return sets, (SMALL if sim_cfg is not None else SMALL_REAL)["n_test"]


@pytest.fixture(scope="module")
def features_file(tmp_path_factory):
    """sim -> a features zarr of its stimuli (the generating network's layer1 and layer4)."""
    from neuroalign.recipes._inputs import feature_set

    made = {}

    def get(sim):
        if sim.root not in made:
            feats = feature_set({"model": "simulated-truth", "layers": ["layer1", "layer4"]}, sim.store())
            path = tmp_path_factory.mktemp("feats") / "features.zarr"
            feats.to_zarr(path, zarr_format=2, consolidated=True)
            made[sim.root] = path
        return made[sim.root]

    return get


@pytest.fixture(scope="module")
def fit_output(tmp_path_factory):
    """sim -> the output folder of a small layer sweep on it (what a map recipe reads)."""
    from neuroalign.recipes import run_recipe

    made = {}

    def get(sim):
        if sim.root not in made:
            out = tmp_path_factory.mktemp("fit") / "fit-results"
            run_recipe(ROOT / "examples/recipes/fit-layer-sweep.toml", out=out, sets=[
                f"store.path={sim.root}", "features.model=simulated-truth", "outputs.n_boot=20"])
            made[sim.root] = out
        return made[sim.root]

    return get


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_on_simulated_data(recipe, simulated, tiny_path, pipeline_standin, fit_output,
                                       features_file, tmp_path, monkeypatch, request):
    import torch

    torch.set_num_threads(2)
    loaded = load_recipe(ROOT / recipe)
    cfg, kind = loaded.config, loaded.kind
    sets, n_test = _path_overrides(loaded, simulated, tiny_path, pipeline_standin, fit_output,
                                   features_file)
    if cfg.get("metrics", {}).get("weights", "none") != "none":
        monkeypatch.setenv("TORCH_HOME", str(request.getfixturevalue("random_torch_home")))
    monkeypatch.chdir(tmp_path)  # relative paths in the recipe land here
    out = tmp_path / "out"
    args = ["run", str(ROOT / recipe), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert f"{kind} results: {out}" in res.output
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == kind and run["set"] == sets
    # every kind of output makes a report page: its section, figures and recipe
    from neuroalign.recipes import write_report

    html = write_report(out, tmp_path / "report.html").read_text()
    assert f"<h2>{kind}: " in html and "<h2>Summary</h2>" in html
    assert (kind == "fit" or "<img" in html) and "<td>neuroalign</td>" in html
    if kind == "fit":
        import xarray as xr

        summary = json.loads((out / "summary.json").read_text())
        assert summary["rois"], summary
        for roi, stats in summary["rois"].items():
            raw = stats["score"]
            assert _finite(raw["value"]) and raw["ci95"][0] <= raw["value"] <= raw["ci95"][1], roi
            assert stats["n_neuroids"] > 0
        assert set(cfg["store"].get("rois", [])) <= set(summary["rois"])
        # the simulated brain carries signal: held-out predictions beat zero
        assert _finite(summary["median_score"]) and summary["median_score"] > 0
        res_ds = xr.open_zarr(out / "results.zarr")
        assert np.isfinite(res_ds["score"].values).mean() > 0.9
    elif kind == "decode":
        table = json.loads((out / "metrics.json").read_text())
        nets = cfg["metrics"]["networks"]
        assert {"PixCorr", "SSIM", "retrieval forward", *(f"{n} 2-way" for n in nets)} <= set(table)
        assert all(_finite(v) for k, v in table.items() if k != "verdict"), table
        assert "above chance on" in table["verdict"]
        assert all(0 <= table[f"{n} 2-way"] <= 1 for n in nets)
        assert table["n_test"] == n_test
        from PIL import Image

        with Image.open(out / "grid.png") as im:
            assert im.width > 0 and np.asarray(im).std() > 0
    elif kind == "rsa":
        assert run["result"]["rois"] and (out / "rsa_V1v.csv").exists()
    elif kind == "shape":
        assert (out / "distances.csv").exists() and (out / "mds.png").exists()
    elif kind == "map":
        assert (out / "layer_preference.csv").exists() and (out / "roi_summary.csv").exists()
    else:
        data = json.loads((out / "activations.json").read_text())
        assert len(data["true_guided"]) == len(data["predicted_guided"]) == cfg["generate"]["n"]
        assert all(_finite(v) for v in data["true_guided"] + data["predicted_guided"])
        assert (out / "grid.png").exists()


@pytest.mark.slow
def test_simulation_made_on_demand(tmp_path):
    """As written, a simulated recipe makes its dataset beside the recipe file."""
    recipe = tmp_path / "study" / "banded.toml"
    recipe.parent.mkdir()
    recipe.write_text((ROOT / "examples/recipes/fit-banded-ridge.toml").read_text())
    res = CliRunner().invoke(app, [
        "run", str(recipe),
        "--set", "store.simulate.n_images=60", "--set", "store.simulate.n_test=12",
        "--set", "store.simulate.n_sessions=2", "--set", "outputs.n_boot=50"])
    assert res.exit_code == 0, res.output
    sim = tmp_path / "study" / "sim"
    assert (sim / "truth.json").exists() and (sim / "store.zarr").exists()
    out = tmp_path / "study" / "banded-results"
    summary = json.loads((out / "summary.json").read_text())
    assert {"hV4", "FFA-1"} <= set(summary["rois"])
    import xarray as xr

    split = xr.open_zarr(out / "split_r2.zarr")["split_r2"]  # the share of each feature space
    assert list(split["space"].values) == ["vision", "language"]
    assert np.isfinite(split.values).mean() > 0.9


def test_every_kind_has_an_example():
    kinds = {load_recipe(ROOT / r).kind for r in RECIPES}
    assert kinds == {"fit", "rsa", "shape", "map", "decode", "generate"}


def test_missing_real_store_is_not_replaced_by_a_simulation(tmp_path, monkeypatch):
    """Pointing a simulated recipe at a real store that is missing fails; it never simulates."""
    monkeypatch.chdir(tmp_path)
    for recipe in ("fit-layer-sweep.toml", "decode-unclip.toml", "rsa-layers.toml"):
        res = CliRunner().invoke(app, ["run", str(ROOT / "examples/recipes" / recipe), "-o", "out",
                                       "--set", "store.path=/data/nsd-missing.zarr"])
        assert res.exit_code == 2, res.output
        assert "[store] path = '/data/nsd-missing.zarr' does not exist" in res.output
    res = CliRunner().invoke(app, ["run", str(ROOT / "examples/recipes/decode-nsd-unclip.toml"),
                                   "-o", "out"])
    nsd = ROOT / "examples/recipes/nsd-subj01.zarr"
    assert res.exit_code == 2 and f"[store] path = {str(nsd)!r} does not exist" in res.output
    assert not (tmp_path / "sim").exists()
