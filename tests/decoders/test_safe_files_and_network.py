"""Decoders: saved encoders and pipelines hold no code, crafted files never run, and nothing
reaches the network unless allowed (sockets blocked, Hub client online, empty caches)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuroalign.decoders import DifferentiableRidgeEncoder, PooledFeatureExtractor
from neuroalign.exceptions import DataFormatError, UnsafeFileError, WeightsNotAvailableError
from neuroalign.testing import (
    block_network,
    empty_model_caches,
    place_in_hub_cache,
    write_crafted_pickle,
)

SPEC = {"source": "torchvision", "arch": "resnet18", "weights": None, "seed": 5}


@pytest.fixture
def online(tmp_path):
    with empty_model_caches(tmp_path / "caches") as caches:
        yield caches


@pytest.fixture(scope="module")
def encoder():
    ext = PooledFeatureExtractor.from_spec(SPEC, ["layer1", "layer4"], input_size=32)
    rng = np.random.default_rng(0)
    coef = rng.normal(size=(7, 64 + 512))
    return DifferentiableRidgeEncoder(ext, coef, rng.normal(size=7),
                                      rois={"A": np.array([1, 1, 0, 0, 0, 0, 1], bool), "B": [3, 4]},
                                      neuroid_ids=[f"v{i}" for i in range(7)])


def _same_outputs(a, b):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


# -- saving and loading the differentiable encoder ----------------------------------------
def test_encoder_round_trip_is_json_and_safetensors(encoder, tmp_path, online):
    path = encoder.save(tmp_path / "enc")
    assert sorted(p.name for p in path.iterdir()) == [".neuroalign", "encoder.json", "readout.safetensors"]
    meta = json.loads((path / "encoder.json").read_text())
    assert meta["extractor"]["network"] == SPEC and meta["rois"] == {"A": [0, 1, 6], "B": [3, 4]}
    with block_network() as attempts:
        back = DifferentiableRidgeEncoder.load(path)
    assert attempts == []
    _same_outputs(encoder, back)
    assert back.neuroid_ids == encoder.neuroid_ids
    np.testing.assert_array_equal(back.rois["A"], [True, True, False, False, False, False, True])
    np.testing.assert_array_equal(np.flatnonzero(back.rois["B"]), [3, 4])
    # the seeded network is the simulation's ground-truth network
    from neuroalign.datasets.simulate import build_network

    ref = build_network("resnet18", 5).state_dict()
    for k, v in back.extractor.model.state_dict().items():
        torch.testing.assert_close(v, ref[k])


def test_encoder_with_its_own_network_weights(encoder, tmp_path):
    ext = PooledFeatureExtractor.from_spec(SPEC, ["layer4"], input_size=32)
    with torch.no_grad():  # weights no seed rebuilds
        ext.model.layer4[0].conv1.weight.mul_(-2)
    enc = DifferentiableRidgeEncoder(ext, np.ones((2, 512)))
    path = enc.save(tmp_path / "enc", network_weights=True)
    assert (path / "network.safetensors").is_file()
    _same_outputs(enc, DifferentiableRidgeEncoder.load(path))
    with pytest.raises(Exception, match="already exists"):
        enc.save(tmp_path / "enc")


def test_encoder_without_a_network_description_is_not_saved(tmp_path):
    enc = DifferentiableRidgeEncoder(torch.nn.Identity(), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"its extractor \(Identity\) has no JSON description"):
        enc.save(tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_tampered_encoder_folders_are_refused(encoder, tmp_path):
    sentinel = tmp_path / "ran"
    good = encoder.save(tmp_path / "good")

    def variant(name, edit):
        import shutil

        p = tmp_path / name
        shutil.copytree(good, p)
        edit(p)
        return p

    def meta_edit(**changes):
        def edit(p):
            meta = json.loads((p / "encoder.json").read_text())
            for key, value in changes.items():
                node = meta
                *parents, last = key.split(".")
                for part in parents:
                    node = node[part]
                node[last] = value
            (p / "encoder.json").write_text(json.dumps(meta))
        return edit

    cases = [
        (meta_edit(format="pickle"), "format 'pickle'; expected 'neuroalign.DifferentiableRidgeEncoder'"),
        (meta_edit(version=99), "version 99"),
        (meta_edit(**{"extractor.network": {"source": "pickle", "file": "x.pt"}}), "network description .* is not supported"),
        (meta_edit(**{"extractor.network.weights": "../outside.safetensors"}), "must be a file name inside"),
        (meta_edit(**{"extractor.network.code": "import os"}), r"unknown network key\(s\) \['code'\]"),
        (meta_edit(n_features=3), r"expected 'coef' \(7, 3\)"),
        (meta_edit(rois={"A": [0, 99]}), r"ROI 'A' has indices outside \[0, 7\)"),
        (lambda p: (p / "encoder.json").write_text("{not json"), "encoder.json: not valid JSON"),
        (lambda p: write_crafted_pickle(p / "readout.safetensors", sentinel), "not a readable safetensors file"),
    ]
    for i, (edit, match) in enumerate(cases):
        with pytest.raises(DataFormatError, match=match):
            DifferentiableRidgeEncoder.load(variant(f"v{i}", edit))
    with pytest.raises(DataFormatError, match="not a saved encoder"):
        DifferentiableRidgeEncoder.load(tmp_path)
    assert not sentinel.exists()


# -- the generate recipe never unpickles an encoder ------------------------------------------
def test_crafted_encoder_file_never_runs(tmp_path, online):
    from typer.testing import CliRunner

    from neuroalign.cli import app
    from neuroalign.recipes import load_recipe
    from neuroalign.recipes._decode import run_generate, run_generate_recipe

    sentinel = tmp_path / "ran"
    crafted = write_crafted_pickle(tmp_path / "encoder.pt", sentinel)
    bare = write_crafted_pickle(tmp_path / "encoder.pkl", sentinel, torch_format=False)
    with block_network() as attempts:
        for f in (crafted, bare):
            with pytest.raises(UnsafeFileError, match=f"{f.name}'?: a pickled \\(torch.save\\) file"):
                run_generate(f, "FFA-1", out=tmp_path / "out")
        recipe = tmp_path / "guided.toml"
        recipe.write_text(f'kind = "generate"\n[encoder]\npath = "{crafted}"\n[generate]\nroi = "FFA-1"\n')
        with pytest.raises(UnsafeFileError, match="never unpickles an encoder"):
            run_generate_recipe(load_recipe(recipe).config, out=tmp_path / "out")
        res = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "out2")])
        assert res.exit_code != 0
        (tmp_path / "notes.txt").write_text("hello")
        with pytest.raises(DataFormatError, match="notes.txt'?: not a saved encoder"):
            run_generate(tmp_path / "notes.txt", "FFA-1", out=tmp_path / "out")
    assert attempts == [] and not sentinel.exists()


def test_generate_from_a_saved_encoder(sim_nsd, tmp_path):
    """A fitted encoder saved and loaded gives the same predictions; run_generate takes the folder."""
    from neuroalign.decoders import store_images

    avg = sim_nsd.store().load().na.average_repetitions().isel(stimulus=slice(0, 24))
    truth = sim_nsd.truth["model"]
    ext = PooledFeatureExtractor.from_spec({"source": "torchvision", "arch": truth["arch"],
                                            "weights": None, "seed": truth["seed"]},
                                           ["layer3", "layer4"], input_size=32)
    enc = DifferentiableRidgeEncoder.fit_store(ext, avg, images=store_images(avg), alpha=10.0)
    back = DifferentiableRidgeEncoder.load(enc.save(tmp_path / "enc"))
    imgs = torch.from_numpy(store_images(avg)[:3]).permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(back.coef, enc.coef, rtol=0, atol=0)
    torch.testing.assert_close(back.intercept, enc.intercept, rtol=0, atol=0)
    with torch.no_grad():  # float32 convolutions on CPU threads: equal to rounding
        torch.testing.assert_close(back(imgs), enc(imgs), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(back.rois["FFA-1"], enc.rois["FFA-1"])


# -- the tiny pipeline's files ---------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_pipe():
    from diffusers import DDIMScheduler

    from neuroalign.decoders import EmbeddingDiffusionPipeline, ImageEmbedder
    from neuroalign.decoders._tiny import _build_unet

    torch.manual_seed(0)
    unet = _build_unet(16, (8, 16))
    proj = torch.nn.Linear(4, unet.time_embedding.linear_2.out_features)
    return EmbeddingDiffusionPipeline(unet, proj, DDIMScheduler(), np.zeros(4), np.ones(4),
                                      ImageEmbedder(layers=("layer1",), input_size=32))


def test_tiny_pipeline_files_hold_no_code(tiny_pipe, tmp_path, online):
    from neuroalign.decoders import load_pipeline

    tiny_pipe.save_pretrained(tmp_path / "p")
    files = sorted(str(p.relative_to(tmp_path / "p")) for p in (tmp_path / "p").rglob("*") if p.is_file())
    assert all(f.endswith((".json", ".safetensors")) for f in files), files
    with block_network() as attempts:
        back = load_pipeline(tmp_path / "p")
    assert attempts == []
    for k, v in tiny_pipe.proj.state_dict().items():
        torch.testing.assert_close(back.proj.state_dict()[k], v)
    # an older layout (proj.pt) still loads if it is plain tensors; a crafted one never runs
    sentinel = tmp_path / "ran"
    (tmp_path / "p" / "proj.safetensors").unlink()
    torch.save(tiny_pipe.proj.state_dict(), tmp_path / "p" / "proj.pt")
    load_pipeline(tmp_path / "p")
    write_crafted_pickle(tmp_path / "p" / "proj.pt", sentinel)
    with pytest.raises(UnsafeFileError, match="proj.pt: refused to load"):
        load_pipeline(tmp_path / "p")
    assert not sentinel.exists()
    meta = json.loads((tmp_path / "p" / "neuroalign_pipeline.json").read_text())
    meta["embedder"]["module"] = "os.system"
    (tmp_path / "p" / "neuroalign_pipeline.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r"unknown embedder key\(s\) \['module'\]"):
        load_pipeline(tmp_path / "p")


# -- diffusers pipelines from the Hub cache -------------------------------------------
def _ddpm():
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                       block_out_channels=(8, 16), down_block_types=("DownBlock2D",) * 2,
                       up_block_types=("UpBlock2D",) * 2, norm_num_groups=4)
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler())


def test_load_pipeline_offline(online, tmp_path):
    from neuroalign.decoders import load_pipeline

    folder = online.hub / "models--org--tiny-ddpm"
    with block_network() as attempts, pytest.raises(WeightsNotAvailableError) as err:
        load_pipeline("org/tiny-ddpm")
    assert attempts == []
    assert f"{folder}/snapshots/<commit>/model_index.json" in str(err.value)
    assert "--allow-download" in str(err.value)
    pipe = _ddpm()
    place_in_hub_cache(online.hub, "org/tiny-ddpm", pipe.save_pretrained)
    with block_network() as attempts:
        back = load_pipeline("org/tiny-ddpm")
    assert attempts == [] and type(back).__name__ == "DDPMPipeline"
    for k, v in pipe.unet.state_dict().items():
        torch.testing.assert_close(back.unet.state_dict()[k], v)


def test_pipeline_folder_with_code_is_refused(tmp_path):
    from neuroalign.decoders import load_pipeline

    sentinel = tmp_path / "ran"
    _ddpm().save_pretrained(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    index["_class_name"] = ["my_pipeline", "MyPipeline"]
    (tmp_path / "p" / "model_index.json").write_text(json.dumps(index))
    (tmp_path / "p" / "my_pipeline.py").write_text(
        f"open({str(sentinel)!r}, 'w').close()\n"
        "from diffusers import DDPMPipeline\nclass MyPipeline(DDPMPipeline):\n    pass\n")
    with pytest.raises(UnsafeFileError, match="holds pipeline code"):
        load_pipeline(tmp_path / "p")
    assert not sentinel.exists()


# -- the metric networks ---------------------------------------------------------------
def test_metric_networks_offline(online):
    import torchvision

    from neuroalign.decoders.metrics import feature_network

    with block_network() as attempts, pytest.raises(WeightsNotAvailableError) as err:
        feature_network("alexnet2", weights="DEFAULT")
    assert attempts == []
    assert f"expected the file {online.checkpoints / 'alexnet-owt-7be5be79.pth'}" in str(err.value)
    # placed in the torch cache (random weights under torchvision's file name): loads offline
    torch.manual_seed(6)
    state = torchvision.models.get_model("resnet18", weights=None).state_dict()
    online.checkpoints.mkdir(parents=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
               online.checkpoints / "resnet18-f37072fd.pth")
    with block_network() as attempts:
        net = feature_network("resnet18", weights="DEFAULT")
    assert attempts == []
    torch.testing.assert_close(net.model.conv1.weight, state["conv1.weight"].half().float())
    # the opt-in reaches out, and only it
    with block_network() as attempts, pytest.raises(OSError):
        feature_network("alexnet2", weights="DEFAULT", allow_download=True)
    assert len(attempts) == 1 and "download.pytorch.org" in attempts[0]


def test_decode_recipe_metric_weights_offline(sim_nsd, online, tmp_path):
    from neuroalign.recipes._decode import run_decode
    from neuroalign.recipes._recipe import recipe_from_dict

    recipe = {"kind": "decode", "store": {"path": str(sim_nsd.root)},
              "metrics": {"networks": ["alexnet2"], "weights": "DEFAULT"}}
    with block_network() as attempts, pytest.raises(WeightsNotAvailableError, match="alexnet-owt-7be5be79.pth"):
        run_decode(recipe_from_dict(recipe).config, tmp_path / "out")
    assert attempts == []
    for bad, match in (({"allow_download": "yes"}, "allow_download = 'yes'; expected true or false"),
                       ({"pipeline": {"source": "x/y", "trust_remote_code": True}},
                        r"\[pipeline\] \['trust_remote_code'\]: neuroalign does not run code")):
        with pytest.raises(DataFormatError, match=match):
            run_decode(recipe_from_dict({**recipe, "metrics": {"weights": "none", "networks": []},
                                         **bad}).config, tmp_path / "out")
