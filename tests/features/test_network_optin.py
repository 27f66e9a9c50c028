"""No network unless the user opted in; weights placed in the local caches load offline;
no code runs from a weights file.

Each test blocks sockets (``neuroalign.testing.block_network``, which records every attempt)
and puts the Hub client back ONLINE (``HF_HUB_OFFLINE`` unset, huggingface_hub's constant
False, its agent registry unresolved, empty temporary caches), so that a library call that
would reach out really tries, and ``attempts`` shows it. The tests marked "what the library
does" pin the facts neuroalign's guards rest on (see ``neuroalign/features/_weights.py``).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from neuroalign.exceptions import UnsafeFileError, WeightsNotAvailableError
from neuroalign.features import ImageTransform, extract, load_model
from neuroalign.stimuli import StimulusSet
from neuroalign.testing import (
    block_network,
    empty_model_caches,
    place_in_hub_cache,
    write_crafted_pickle,
)

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TINY = ImageTransform(size=32, name="tiny")


@pytest.fixture
def online(tmp_path):
    """Empty HF / torch / clip caches under tmp_path, and a Hub client that is not offline."""
    with empty_model_caches(tmp_path) as caches:
        caches.tmp = tmp_path
        yield caches


def place(hub, repo_id, save):
    return place_in_hub_cache(hub, repo_id, save, commit=COMMIT)


def tiny_vit():
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(1)
    return ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=37, image_size=32, patch_size=8)).eval()


@pytest.fixture(scope="module")
def stim():
    return StimulusSet.from_arrays(np.random.default_rng(0).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8))


# -- what the libraries do --------------------------------------------------------------
def test_what_the_library_does_local_files_only_still_sends_a_request(online):
    """transformers' local_files_only=True, and HF_HUB_OFFLINE set after import, do not stop
    requests: looking for a file that is not in the cache (here a missing model; in practice
    also an optional file of a cached one) attempts a connection before it gives up."""
    import os

    from transformers import AutoConfig

    os.environ["HF_HUB_OFFLINE"] = "1"  # too late: read once, at import
    try:
        with block_network() as attempts, pytest.raises(OSError):
            AutoConfig.from_pretrained("org/absent", local_files_only=True)
    finally:
        del os.environ["HF_HUB_OFFLINE"]
    assert attempts, "huggingface_hub no longer sends a request under local_files_only=True"
    # neuroalign's switch (huggingface_hub's constant) does stop it
    from neuroalign.features._weights import hub_offline

    importlib.import_module("huggingface_hub.utils._detect_agent")._registry = None
    with block_network() as attempts, hub_offline(), pytest.raises(OSError):
        AutoConfig.from_pretrained("org/absent", local_files_only=True)
    assert attempts == []


def test_what_the_library_does_torchvision_downloads_and_unpickles(online):
    import torchvision

    with block_network() as attempts, pytest.raises(Exception):  # noqa: B017 - URLError
        torchvision.models.get_model("squeezenet1_1", weights="DEFAULT")
    assert any("download.pytorch.org" in a for a in attempts), attempts
    # a crafted file in the torch cache runs its code when torchvision loads it
    w = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT
    sentinel = online.tmp / "ran"
    write_crafted_pickle(online.checkpoints / w.url.rsplit("/", 1)[1], sentinel)
    with pytest.raises(Exception):  # noqa: B017 - what it unpickled is no state dict
        torchvision.models.get_model("squeezenet1_1", weights="DEFAULT")
    assert sentinel.exists()


# -- Hugging Face --------------------------------------------------------------------
def test_hf_model_not_in_cache_names_the_cache_folder(online, stim):
    folder = online.hub / "models--org--absent-vit"
    with block_network() as attempts:
        with pytest.raises(WeightsNotAvailableError) as err:
            extract("hf:org/absent-vit", stim, layers=["layers.0"], device="cpu")
    assert attempts == []
    msg = str(err.value)
    assert f"{folder}/snapshots/<commit>/config.json" in msg and f"{folder}/refs/main" in msg
    assert "allow_download=True" in msg and "--allow-download" in msg
    with block_network() as attempts, pytest.raises(WeightsNotAvailableError, match="not available offline"):
        load_model("hf:/no/such/folder")
    assert attempts == []


def test_hf_model_in_cache_loads_offline(online, stim, tmp_path):
    model = tiny_vit()

    def save(folder):
        model.save_pretrained(folder)
        from transformers import ViTImageProcessor

        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)

    place(online.hub, "org/tiny-vit", save)
    with block_network() as attempts:
        got = extract("hf:org/tiny-vit", stim, layers=["layers.0"], transform=TINY,
                      pooling=None, device="cpu")
        fm = load_model("hf:org/tiny-vit")
    assert attempts == []
    assert got.attrs["weights"] == "hf:org/tiny-vit"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(fm.module.state_dict()[k], v)
    with torch.no_grad():
        hs = model(pixel_values=TINY(stim.load()), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(got["layers.0"].values, hs[1].numpy(), atol=1e-5)


def test_hf_config_without_weights_names_the_missing_file(online):
    from transformers import ViTConfig

    place(online.hub, "org/no-weights", ViTConfig(hidden_size=32, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=37).save_pretrained)
    with block_network() as attempts, pytest.raises(
            WeightsNotAvailableError, match=r"expected model.safetensors \(or pytorch_model.bin\) in .*models--org--no-weights"):
        load_model("hf:org/no-weights")
    assert attempts == []


# -- open_clip -----------------------------------------------------------------------
def test_open_clip_tag_not_in_cache_names_the_files(online):
    with block_network() as attempts, pytest.raises(WeightsNotAvailableError) as err:
        load_model("open_clip:ViT-B-32/openai")
    assert attempts == []
    msg = str(err.value)
    assert str(online.hub / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots") in msg
    assert "open_clip_pytorch_model.bin" in msg and "allow_download=True" in msg


@pytest.fixture
def tiny_open_clip(monkeypatch):
    """A tiny open_clip architecture with one pretrained tag that lives on the Hub."""
    import open_clip
    from open_clip import factory, pretrained

    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    monkeypatch.setitem(factory._MODEL_CONFIGS, "na-tiny", cfg)
    monkeypatch.setitem(pretrained._PRETRAINED, "na-tiny",
                        {"hub": pretrained._pcfg(hf_hub="na-org/tiny-clip/")})
    torch.manual_seed(2)
    return open_clip.create_model("na-tiny", pretrained=None).eval()


def test_open_clip_tag_in_cache_loads_offline_and_never_unpickles_code(online, tiny_open_clip):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tiny_open_clip.state_dict().items()}
    place(online.hub, "na-org/tiny-clip",
                       lambda d: save_file(state, str(d / "open_clip_model.safetensors")))
    with block_network() as attempts:
        fm = load_model("open_clip:na-tiny/hub")
    assert attempts == [] and fm.weights == "hub"
    for k, v in state.items():
        torch.testing.assert_close(fm.module.state_dict()[k], v)
    # the same place holding a crafted pickle instead: refused, nothing runs
    sentinel = online.tmp / "ran"
    snap = online.hub / "models--na-org--tiny-clip" / "snapshots" / COMMIT
    (snap / "open_clip_model.safetensors").unlink()
    write_crafted_pickle(snap / "open_clip_pytorch_model.bin", sentinel)
    with block_network() as attempts, pytest.raises(UnsafeFileError, match="open_clip_pytorch_model.bin"):
        load_model("open_clip:na-tiny/hub")
    assert attempts == [] and not sentinel.exists()


# -- torchvision -----------------------------------------------------------------------
def _squeezenet_file(online):
    import torchvision

    w = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT
    return online.checkpoints / w.url.rsplit("/", 1)[1]


def test_torchvision_weights_not_in_cache_and_the_opt_in(online):
    path = _squeezenet_file(online)
    with block_network() as attempts, pytest.raises(WeightsNotAvailableError) as err:
        load_model("torchvision:squeezenet1_1")
    assert attempts == []
    assert f"expected the file {path}" in str(err.value) and "--allow-download" in str(err.value)
    # the opt-in is what lets it reach out (and only it)
    with block_network() as attempts, pytest.raises(OSError):
        load_model("torchvision:squeezenet1_1", allow_download=True)
    assert len(attempts) == 1 and "download.pytorch.org" in attempts[0]


def test_torchvision_weights_in_cache_load_offline(online):
    import torchvision

    torch.manual_seed(3)
    state = torchvision.models.get_model("squeezenet1_1", weights=None).state_dict()
    path = _squeezenet_file(online)
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    with block_network() as attempts:
        fm = load_model("torchvision:squeezenet1_1")
    assert attempts == [] and fm.weights == "SqueezeNet1_1_Weights.IMAGENET1K_V1"
    for k, v in state.items():
        torch.testing.assert_close(fm.module.state_dict()[k], v)


def test_crafted_checkpoint_never_runs(online, tmp_path):
    sentinel = tmp_path / "ran"
    cached = write_crafted_pickle(_squeezenet_file(online), sentinel)
    with block_network() as attempts, pytest.raises(UnsafeFileError, match="refused to load") as err:
        load_model("torchvision:squeezenet1_1")
    assert attempts == [] and not sentinel.exists()
    assert str(cached) in str(err.value)
    # given as a local weights file, in torch and in bare-pickle form
    for torch_format in (True, False):
        f = write_crafted_pickle(tmp_path / f"w{torch_format}.pth", sentinel, torch_format=torch_format)
        with pytest.raises(UnsafeFileError, match=f"w{torch_format}.pth: refused to load"):
            load_model("torchvision:squeezenet1_1", weights=f)
    assert not sentinel.exists()


def test_local_safetensors_weights(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(4)
    state = torchvision.models.get_model("squeezenet1_1", weights=None).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    fm = load_model("torchvision:squeezenet1_1", weights=str(tmp_path / "w.safetensors"))
    for k, v in state.items():
        torch.testing.assert_close(fm.module.state_dict()[k], v)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    from neuroalign.exceptions import DataFormatError

    with pytest.raises(DataFormatError, match="bad.safetensors: not a readable safetensors file"):
        load_model("torchvision:squeezenet1_1", weights=str(tmp_path / "bad.safetensors"))


def test_hub_offline_switch_is_restored(online):
    from huggingface_hub import constants

    from neuroalign.features._weights import hub_offline

    with hub_offline():
        assert constants.HF_HUB_OFFLINE is True
    assert constants.HF_HUB_OFFLINE is False
    with pytest.raises(RuntimeError), hub_offline():
        raise RuntimeError("boom")
    assert constants.HF_HUB_OFFLINE is False


def test_features_extract_command_stays_offline(online, tmp_path):
    """`neuroalign features extract hf:<model>` without --allow-download: no connection, and
    the message names the cache folder the model belongs in."""
    from PIL import Image
    from typer.testing import CliRunner

    from neuroalign.cli import app

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    with block_network() as attempts:
        res = CliRunner().invoke(app, ["features", "extract", "hf:org/absent-vit", "--stimuli", str(folder),
                                       "--layers", "layers.0", "--out", str(tmp_path / "f.zarr")])
    assert attempts == []
    assert res.exit_code == 2 and "models--org--absent-vit" in res.output, res.output
