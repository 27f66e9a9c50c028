"""extract() on random-weight vision architectures: shapes, names, equality, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuroalign.datasets.simulate import build_network, pooled_activations, simulate
from neuroalign.exceptions import WeightsNotAvailableError
from neuroalign.features import (
    TRANSFORM_PRESETS,
    ImageTransform,
    block_layers,
    extract,
    list_layers,
    load_model,
)
from neuroalign.stimuli import StimulusSet

SMALL = ImageTransform(size=64, name="small")


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (5, 40, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def stim(images):
    return StimulusSet.from_arrays(images)


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "nsd"
    return simulate(root, n_images=6, n_test=1, n_sessions=1, image_size=32)


def test_resnet18_seed0_is_the_simulation_ground_truth(nsd):
    ds = nsd.store()
    stim = StimulusSet.from_store(ds)
    fm = load_model("torchvision:resnet18", weights=None, seed=0)
    truth = build_network("resnet18", 0)
    for (k, a), (_, b) in zip(fm.module.state_dict().items(), truth.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    layers = ["layer1", "layer2", "layer3", "layer4"]
    feats = extract("torchvision:resnet18", stim, layers=layers, weights=None, seed=0,
                    transform="simulation", batch_size=32, device="cpu")
    images = np.stack(stim.load())
    ref = pooled_activations(truth, images, layers)
    for layer in layers:
        np.testing.assert_allclose(feats[layer].values, ref[layer], rtol=0, atol=1e-5)
    assert list(feats["stimulus_id"].values) == stim.ids
    assert feats["nsd_id"].values.tolist() == stim.source["nsd_id"]
    assert feats.attrs["weights"] == "random(seed=0)"
    assert feats.attrs["transform"].startswith("simulation(")
    # one hook engine: the truth features of the encoders, the simulation's own activations
    # and the decoders' differentiable extractor all agree with extract()
    from neuroalign.decoders import PooledFeatureExtractor
    from neuroalign.recipes import simulated_truth_features

    truth_feats = simulated_truth_features(ds.isel(presentation=slice(None, None, -1)), layers)
    assert list(truth_feats["stimulus_id"].values) == sorted(stim.ids)
    rows = [stim.ids.index(s) for s in truth_feats["stimulus_id"].values]
    ext = PooledFeatureExtractor(truth, layers, input_size=224)
    pooled = ext.extract(images)
    start = 0
    for layer in layers:
        np.testing.assert_allclose(truth_feats[layer].values, feats[layer].values[rows], rtol=0,
                                   atol=1e-6)
        width = feats[layer].shape[1]
        np.testing.assert_allclose(pooled[:, start:start + width], feats[layer].values, rtol=0,
                                   atol=1e-5)
        start += width


def test_resnet_shapes_names_and_determinism(stim):
    kw = {"weights": None, "transform": SMALL, "device": "cpu"}
    a = extract("torchvision:resnet18", stim, layers=["layer2", "layer4"], batch_size=2, **kw)
    b = extract("torchvision:resnet18", stim, layers=["layer2", "layer4"], batch_size=3, **kw)
    assert a["layer2"].dims == ("stimulus", "layer2_unit") and a["layer2"].shape == (5, 128)
    assert a["layer4"].shape == (5, 512)
    assert "stimulus_id" in a.xindexes  # features.sel(stimulus_id=...) works
    np.testing.assert_array_equal(a.sel(stimulus_id=[stim.ids[3]])["layer4"].values, a["layer4"].values[[3]])
    np.testing.assert_allclose(a["layer4"].values, b["layer4"].values, atol=1e-5)
    c = extract("torchvision:resnet18", stim, layers=["layer4"], seed=1, **kw)
    assert not np.allclose(a["layer4"].values, c["layer4"].values)


def test_resnet_token_level_keeps_grid(stim):
    kw = {"weights": None, "transform": SMALL, "device": "cpu"}
    f = extract("torchvision:resnet18", stim, layers=["layer3", "layer4"], pooling=None, **kw)
    assert f["layer4"].dims == ("stimulus", "layer4_token", "layer4_unit")
    assert f["layer4"].shape == (5, 4, 512) and f["layer3"].shape == (5, 16, 256)
    assert f["layer4"].attrs["token_grid"] == [2, 2]
    assert f["layer4_token_row"].values[3] == 1 and f["layer4_token_col"].values[3] == 1
    assert f["layer3_token_row"].values[5] == 1 and f["layer3_token_col"].values[5] == 1
    pooled = extract("torchvision:resnet18", stim, layers=["layer4"], **kw)
    np.testing.assert_allclose(f["layer4"].values.mean(1), pooled["layer4"].values, atol=1e-5)


@pytest.fixture(scope="module")
def small(images):
    return StimulusSet.from_arrays(images[:2])


@pytest.fixture(scope="module")
def clip_feats(small):
    return extract("open_clip:ViT-B-32", small, layers=["visual.transformer.resblocks.1",
                                                      "visual.transformer.resblocks.11"],
                   weights=None, pooling=None, batch_size=5, device="cpu")


@pytest.mark.slow
def test_open_clip_vit_token_level_and_pooling(small, clip_feats):
    stim = small
    name = "visual.transformer.resblocks.11"
    var = clip_feats[name]
    assert var.dims == ("stimulus", "token", f"{name}_unit")
    assert var.shape == (2, 50, 768)
    assert var.attrs["token_grid"] == [7, 7] and var.attrs["n_prefix_tokens"] == 1
    assert clip_feats["token_row"].values[0] == -1 and clip_feats["token_col"].values[1] == 0
    cls = extract("open_clip:ViT-B-32", stim, layers=[name], weights=None, device="cpu")
    mean = extract("open_clip:ViT-B-32", stim, layers=[name], weights=None, pooling="mean",
                   device="cpu")
    np.testing.assert_allclose(cls[name].values, var.values[:, 0], atol=1e-5)
    np.testing.assert_allclose(mean[name].values, var.values[:, 1:].mean(1), atol=1e-5)


def test_open_clip_hooks_equal_forward_intermediates(small, clip_feats):
    stim = small
    last = clip_feats["visual.transformer.resblocks.11"]
    assert last.dims == ("stimulus", "token", "visual.transformer.resblocks.11_unit")
    assert last.shape == (2, 50, 768) and last.attrs["token_grid"] == [7, 7]
    fm = load_model("open_clip:ViT-B-32", weights=None)
    x = fm.transform(stim.load())
    with torch.no_grad():
        out = fm.module.visual.forward_intermediates(x, indices=[1, 11], output_fmt="NLC",
                                                     intermediates_only=True)
    inter = out["image_intermediates"]
    np.testing.assert_allclose(clip_feats["visual.transformer.resblocks.1"].values[:, 1:],
                               inter[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(clip_feats["visual.transformer.resblocks.11"].values[:, 1:],
                               inter[1].numpy(), atol=1e-4)


def test_hf_dinov2_hooks_equal_hidden_states(stim, tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                     intermediate_size=64, image_size=56, patch_size=14)).eval()
    tf = ImageTransform(size=56, name="tiny")
    f = extract(model, stim, layers="blocks", transform=tf, pooling=None, device="cpu")
    assert list(f.data_vars) == ["encoder.layer.0", "encoder.layer.1", "encoder.layer.2"]
    with torch.no_grad():
        hs = model(pixel_values=tf(stim.load()), output_hidden_states=True).hidden_states
    for i in range(3):
        np.testing.assert_allclose(f[f"encoder.layer.{i}"].values, hs[i + 1].numpy(), atol=1e-5)
    assert f["encoder.layer.0"].attrs["token_grid"] == [4, 4]
    # the same weights saved to a local folder load offline through the hf: spec
    model.save_pretrained(tmp_path / "dino")
    g = extract(f"hf:{tmp_path / 'dino'}", stim, layers=["encoder.layer.2"], transform=tf,
                pooling=None, device="cpu")
    np.testing.assert_allclose(g["encoder.layer.2"].values, f["encoder.layer.2"].values, atol=1e-6)
    assert g.attrs["weights"] == f"hf:{tmp_path / 'dino'}"


def test_hf_clip_spec_from_local_dir(tmp_path, stim):
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    from neuroalign.features import minilm_path

    cfg = CLIPConfig(
        text_config=CLIPTextConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, vocab_size=30522, max_position_embeddings=64),
        vision_config=CLIPVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(tmp_path / "clip")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path / "clip")
    spec = f"hf:{tmp_path / 'clip'}"
    assert block_layers(spec, "image") == [
        "vision_model.encoder.layers.0", "vision_model.encoder.layers.1"]
    img = extract(spec, stim, layers="blocks", device="cpu")
    assert img["vision_model.encoder.layers.1"].shape == (5, 32)
    txt = extract(spec, StimulusSet.from_texts(["a dog", "a red car"]), layers="blocks",
                  device="cpu")
    assert list(txt.data_vars) == ["text_model.encoder.layers.0", "text_model.encoder.layers.1"]


def test_list_layers_and_blocks():
    names = list_layers("torchvision:resnet18")
    assert names[:3] == ["conv1", "bn1", "relu"] and "layer4.1.conv2" in names
    fm = load_model("open_clip:ViT-B-32", weights=None)
    assert block_layers(fm, "image")[-1] == "visual.transformer.resblocks.11"
    assert block_layers(fm, "text")[0] == "transformer.resblocks.0"


def test_unknown_layer_lists_close_matches(stim):
    with pytest.raises(ValueError, match="Unknown layer 'layer5'.*Close matches: 'layer4'"):
        extract("torchvision:resnet18", stim, layers=["layer5"], weights=None, device="cpu")
    with pytest.raises(ValueError, match="Unknown layer 'zzz' in extract\\(\\). Use list_layers"):
        extract("torchvision:resnet18", stim, layers=["zzz"], weights=None, device="cpu")
    with pytest.raises(ValueError, match="repeats a layer"):
        extract("torchvision:resnet18", stim, layers=["fc", "fc"], weights=None, device="cpu")


def test_unknown_spec_lists_sources(stim):
    with pytest.raises(ValueError, match="Unknown model spec 'timm:vit'.*open_clip:<arch>"):
        extract("timm:vit", stim, layers=["x"])
    with pytest.raises(ValueError, match="Unknown torchvision architecture 'resnet19'.*Close matches"):
        load_model("torchvision:resnet19", weights=None)
    with pytest.raises(ValueError, match="Unknown open_clip architecture 'ViT-B-33'"):
        load_model("open_clip:ViT-B-33", weights=None)
    with pytest.raises(TypeError, match="Expected a spec string"):
        load_model(3)


def test_wrong_modality(stim):
    texts = StimulusSet.from_texts(["a dog"])
    with pytest.raises(ValueError, match="text stimuli, but model 'torchvision:resnet18' takes image"):
        extract("torchvision:resnet18", texts, layers=["fc"], weights=None, device="cpu")
    with pytest.raises(TypeError, match="Expected a StimulusSet or a store"):
        extract("torchvision:resnet18", ["a"], layers=["fc"], weights=None)


def test_weights_not_available_offline(tmp_path, monkeypatch, stim):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotAvailableError, match="not in the local torch cache.*allow_download=True"):
        load_model("torchvision:resnet18")
    with pytest.raises(WeightsNotAvailableError, match="hf:org/none is not available offline.*local folder"):
        load_model("hf:org/none")
    with pytest.raises(WeightsNotAvailableError, match="Weights .openai. of open_clip:ViT-B-32 are not available offline.*local checkpoint file"):
        load_model("open_clip:ViT-B-32/openai")
    with pytest.raises(ValueError, match="Unknown open_clip pretrained tag for ViT-B-32 'nope'"):
        load_model("open_clip:ViT-B-32/nope")
    with pytest.raises(ValueError, match="Unknown weights for torchvision:resnet18 'V9'"):
        load_model("torchvision:resnet18", weights="V9")


def test_local_checkpoint_file(tmp_path, stim):
    net = build_network("resnet18", 3)
    torch.save(net.state_dict(), tmp_path / "w.pth")
    f = extract("torchvision:resnet18", stim, layers=["layer4"], weights=tmp_path / "w.pth",
                transform=SMALL, device="cpu")
    ref = extract("torchvision:resnet18", stim, layers=["layer4"], weights=None, seed=3,
                  transform=SMALL, device="cpu")
    np.testing.assert_allclose(f["layer4"].values, ref["layer4"].values, atol=1e-5)
    assert f.attrs["weights"].startswith("file:")


def test_pooling_errors(stim):
    with pytest.raises(ValueError, match="'cls' for layer 'layer4', a convolutional feature map"):
        extract("torchvision:resnet18", stim, layers=["layer4"], weights=None, pooling="cls",
                device="cpu")
    with pytest.raises(ValueError, match="Invalid value for 'pooling' in extract\\(\\): 'max'"):
        extract("torchvision:resnet18", stim, layers=["layer4"], pooling="max")
    with pytest.raises(ValueError, match="Invalid value for 'transform' in extract\\(\\): 'bogus'"):
        extract("torchvision:resnet18", stim, layers=["layer4"], weights=None, transform="bogus")


def test_module_with_callable_transform(stim):
    import torchvision.transforms as T

    net = build_network("resnet18", 0)
    tf = T.Compose([T.Resize((64, 64)), T.ToTensor()])
    f = extract(net, stim, layers=["layer3"], transform=tf, device="cpu")
    assert f["layer3"].shape == (5, 256)
    assert "Resize" in f.attrs["transform"] and f.attrs["model"] == "module:ResNet"


# -- a module that runs several times per forward pass: its features are its last call --------
# torchvision's BasicBlock runs its one ``relu`` twice (after bn1, after the residual sum) and
# the Bottleneck three times (64, 64 then 256 channels in layer1): the last call is the
# block's output, a planted answer that does not depend on the hooks.
REUSED = {"resnet18": ("layer1.0.relu", "layer1.0"), "resnet50": ("layer1.0.relu", "layer1.0")}


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_reused_module_gives_its_last_call_whatever_else_is_requested(stim, arch):
    relu, block = REUSED[arch]
    net = load_model(f"torchvision:{arch}", weights=None, seed=0, transform=SMALL)
    ref = extract(net, stim, layers=[block], device="cpu")[block].values
    ref_tokens = extract(net, stim, layers=[block], pooling=None, device="cpu")[block]
    for stop_early in (True, False):
        kw = {"device": "cpu", "stop_early": stop_early}
        for layers, batch_size in [([relu], 2), ([relu, "layer4"], 5), (["layer4", relu], 3),
                                   (["conv1", relu], 1), ([relu, block], 4)]:
            f = extract(net, stim, layers=layers, batch_size=batch_size, **kw)
            np.testing.assert_allclose(f[relu].values, ref, rtol=0, atol=1e-5,
                                       err_msg=f"{layers}, batch_size={batch_size}, {stop_early=}")
        tokens = extract(net, stim, layers=["layer2", relu], pooling=None, batch_size=2, **kw)
        np.testing.assert_allclose(tokens[relu].values, ref_tokens.values, rtol=0, atol=1e-5)
        assert tokens[relu].attrs["token_grid"] == ref_tokens.attrs["token_grid"] == [16, 16]


@pytest.mark.parametrize("seed", [0, 1])
def test_reused_module_matches_an_overwriting_hook_loop(images, seed):
    # the rule, as a plain forward hook that keeps the last output: the same for every
    # requested set and order, with and without stop_early, and in the decoders' extractor
    from neuroalign.decoders import PooledFeatureExtractor

    net = build_network("resnet18", seed)
    names = ["layer1.0.relu", "layer2.1.relu", "layer3.0.relu"]
    last: dict[str, torch.Tensor] = {}
    modules = dict(net.named_modules())
    handles = [modules[n].register_forward_hook(
        lambda _m, _i, out, n=n: last.__setitem__(n, out.mean(dim=(2, 3)))) for n in names]
    x = SMALL(list(images))
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    stim = StimulusSet.from_arrays(images)
    for layers in (names, names[::-1], names[1:2], [names[2], "layer4", names[0]]):
        for stop_early in (True, False):
            f = extract(net, stim, layers=layers, transform=SMALL, batch_size=2, device="cpu",
                        stop_early=stop_early)
            for n in layers:
                if n in last:
                    np.testing.assert_allclose(f[n].values, last[n].numpy(), rtol=0, atol=1e-5,
                                               err_msg=f"{n} of {layers}, stop_early={stop_early}")
        ext = PooledFeatureExtractor(net, layers, input_size=64, mean=SMALL.mean, std=SMALL.std)
        for _ in range(2):  # the first pass learns the calls, the second stops early
            with torch.no_grad():
                pooled = ext(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0)
            start = 0
            for n in layers:
                width = f[n].shape[1]
                if n in last:
                    np.testing.assert_allclose(pooled[:, start:start + width].numpy(),
                                               last[n].numpy(), rtol=0, atol=1e-5)
                start += width


class _Repeat(torch.nn.Module):
    """Runs ``act`` once per image of the batch: its call count depends on the input."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.act = torch.nn.Tanh()

    def forward(self, x):
        x = self.conv(x)
        for _ in range(x.shape[0]):
            x = self.act(x + 1)
        return x


def test_call_count_that_changes_between_batches_raises_with_stop_early(stim):
    net = _Repeat().eval()
    tf = ImageTransform(size=8, name="tiny")
    with pytest.raises(RuntimeError, match=r"Layer 'act' ran 1 time\(s\) in this forward pass of "
                                           r"_Repeat, 2 time\(s\) in the first.*stop_early=False"):
        extract(net, stim, layers=["act"], transform=tf, batch_size=2, device="cpu")
    f = extract(net, stim, layers=["act"], transform=tf, batch_size=2, device="cpu",
                stop_early=False)
    with torch.no_grad():
        ref = [net(tf(stim.load(range(s, min(s + 2, 5))))).mean(dim=(2, 3)) for s in (0, 2, 4)]
    np.testing.assert_allclose(f["act"].values, torch.cat(ref).numpy(), rtol=0, atol=1e-6)


# -- torchvision vision transformers: one class token before a (size / patch)^2 patch grid ----
@pytest.fixture(scope="module", params=[
    pytest.param(("vit_b_32", 7), id="b32"),
    pytest.param(("vit_b_16", 14), id="b16", marks=pytest.mark.slow),
])
def tv_vit(request):
    arch, grid = request.param
    return load_model(f"torchvision:{arch}", weights=None, seed=0), grid


def test_torchvision_vit_class_token_and_patch_grid(small, tv_vit):
    fm, grid = tv_vit
    assert fm.n_prefix_tokens == 1 and fm.patch_grid == (grid, grid)
    first, last = "encoder.layers.encoder_layer_0", "encoder"
    tok = extract(fm, small, layers=[first, last], pooling=None, device="cpu")
    # planted answer: the first block on the class token + patch embeddings, by hand
    m = fm.module
    x = fm.transform(small.load())
    heads_in = []
    handle = m.heads.register_forward_pre_hook(lambda _m, inp: heads_in.append(inp[0]))
    with torch.no_grad():
        emb = m._process_input(x)
        emb = torch.cat([m.class_token.expand(len(x), -1, -1), emb], dim=1)
        block0 = m.encoder.layers[0](m.encoder.dropout(emb + m.encoder.pos_embedding))
        m(x)  # the classifier reads the class token of the encoder's output
    handle.remove()
    n_tok = 1 + grid * grid
    assert tok[first].shape == (2, n_tok, 768)
    np.testing.assert_allclose(tok[first].values, block0.numpy(), rtol=0, atol=1e-4)
    assert tok[first].attrs["token_grid"] == [grid, grid]
    assert tok[first].attrs["n_prefix_tokens"] == 1
    rows, cols = tok["token_row"].values, tok["token_col"].values
    assert rows[0] == cols[0] == -1
    r, c = np.divmod(np.arange(grid * grid), grid)
    np.testing.assert_array_equal(rows[1:], r)
    np.testing.assert_array_equal(cols[1:], c)
    for pooling, want in [("auto", tok[last].values[:, 0]), ("cls", tok[last].values[:, 0]),
                          ("mean", tok[last].values[:, 1:].mean(1))]:
        f = extract(fm, small, layers=[last], pooling=pooling, device="cpu")
        np.testing.assert_allclose(f[last].values, want, rtol=0, atol=1e-5, err_msg=pooling)
    auto = extract(fm, small, layers=[first, last], device="cpu")
    np.testing.assert_allclose(auto[last].values, heads_in[0].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(auto[first].values, tok[first].values[:, 0], rtol=0, atol=1e-5)
    # the patch embedding is a feature map: its own grid, no class token
    conv = extract(fm, small, layers=["conv_proj"], pooling=None, device="cpu")["conv_proj"]
    assert conv.shape == (2, grid * grid, 768) and conv.attrs["n_prefix_tokens"] == 0


# -- "shortest" presets: torchvision's Resize(int) then CenterCrop, on float tensors ----------
# Resize(256) makes the long side int(256 * long / short) (truncated) and CenterCrop offsets by
# int(round((side - crop) / 2)): (300, 451) -> (256, 384) where rounding gave 385, and
# (481, 640) -> (256, 340) where it gave 341; 227 -> 224 crops from row round(1.5) = 2.
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shortest_side_presets_match_torchvision(seed):
    from torchvision.transforms import v2 as T

    rng = np.random.default_rng(seed)
    shapes = [(300, 451), (481, 640), (375, 500), (256, 256), (500, 333)]
    shapes += [tuple(int(v) for v in rng.integers(230, 700, 2)) for _ in range(4)]
    cases = [(TRANSFORM_PRESETS["imagenet"], 256, T.InterpolationMode.BILINEAR),
             (TRANSFORM_PRESETS["clip"], 224, T.InterpolationMode.BICUBIC),
             (ImageTransform(size=224, resize="shortest", resize_to=227, name="odd"), 227,
              T.InterpolationMode.BILINEAR)]
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    for tf, resize_to, interpolation in cases:
        ref = T.Compose([T.Resize(resize_to, interpolation=interpolation, antialias=True),
                         T.CenterCrop(tf.size), T.Normalize(tf.mean, tf.std)])
        out = tf(images)  # one batch of mixed sizes
        for img, got in zip(images, out, strict=True):
            want = ref(torch.from_numpy(img).permute(2, 0, 1).float() / 255.0)
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-5,
                                       err_msg=f"{tf.name} {img.shape}")


@pytest.mark.parametrize(("arch", "layers"), [
    # layer: (channels, laid out channels last?)
    pytest.param("swin_t", {"features.1": (96, True), "norm": (768, True), "permute": (768, False)},
                 marks=pytest.mark.slow),  # 16 s here
    ("convnext_tiny", {"features.1.0.block.2": (96, True), "features.1.0": (96, False)}),
])
def test_channels_last_feature_maps_pool_over_space(arch, layers, stim):
    """torchvision's Swin stages and ConvNeXt block internals are (B, H, W, C) between its
    Permute modules: their units are the channels and their tokens the positions (Swin's
    features.1 came out with 16 'units', its height, pooled over its channels)."""
    kw = {"weights": None, "transform": SMALL, "device": "cpu", "seed": 0, "batch_size": 2}
    names = list(layers)
    pooled = extract(f"torchvision:{arch}", stim, layers=names, **kw)
    tokens = extract(f"torchvision:{arch}", stim, layers=names, pooling=None, **kw)
    net = load_model(f"torchvision:{arch}", weights=None, seed=0).module.eval()
    seen = {}
    modules = dict(net.named_modules())
    for name in names:
        modules[name].register_forward_hook(lambda m, i, o, name=name: seen.update({name: o}))
    with torch.no_grad():
        net(SMALL(stim.load()))
    for name, (channels, last) in layers.items():
        maps = seen[name].permute(0, 3, 1, 2) if last else seen[name]  # (B, C, H, W)
        assert pooled[name].shape == (5, channels)
        np.testing.assert_allclose(pooled[name].values, maps.mean(dim=(2, 3)).numpy(),
                                   rtol=1e-4, atol=1e-5)
        assert tokens[name].shape == (5, maps.shape[2] * maps.shape[3], channels)
        np.testing.assert_allclose(tokens[name].values, maps.flatten(2).transpose(1, 2).numpy(),
                                   rtol=1e-4, atol=1e-5)
