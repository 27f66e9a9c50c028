"""Reconstructor modes on tiny random diffusers pipelines (offline), and pipeline loading."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from neuroalign.decoders import Reconstructor  # noqa: E402
from neuroalign.decoders._reconstruct import load_pipeline  # noqa: E402
from neuroalign.exceptions import DimensionError  # noqa: E402

DIM = 32


def _text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    return CLIPTextModel(CLIPTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=DIM, projection_dim=DIM,
                                        intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                        pad_token_id=1, vocab_size=100))


def _vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",))


def _unet(**extra):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=DIM, attention_head_dim=4, norm_num_groups=8, **extra,
    )


def _ddim():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         set_alpha_to_one=False, steps_offset=1, clip_sample=False)


@pytest.fixture(scope="module")
def unclip_pipe():
    from diffusers import DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import (
        StableUnCLIPImageNormalizer,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    enc = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=DIM, projection_dim=DIM, num_hidden_layers=2,
                                                         num_attention_heads=4, image_size=16, intermediate_size=37,
                                                         patch_size=4))
    return StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=16, size=16), image_encoder=enc,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=DIM),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"), tokenizer=None,
        text_encoder=_text_encoder(),
        unet=_unet(class_embed_type="projection", projection_class_embeddings_input_dim=2 * DIM),
        scheduler=_ddim(), vae=_vae(),
    )


def _sd():
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(vae=_vae(), text_encoder=_text_encoder(), tokenizer=None, unet=_unet(),
                                   scheduler=_ddim(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


@pytest.fixture(scope="module")
def sd_pipe():
    return _sd()


def _prompt():
    return torch.zeros(1, 4, DIM)


def test_unclip_mode_image_embeds(unclip_pipe):
    emb = np.random.default_rng(0).normal(size=(2, DIM))
    rec = Reconstructor(unclip_pipe, "unclip", num_inference_steps=2, prompt_embeds=_prompt(), height=16)
    out = rec.reconstruct(emb)
    assert out.images.shape == (2, 16, 16, 3) and out.images.dtype == np.uint8
    # the embedding drives the image: a different embedding, same seed -> different pixels
    other = rec.reconstruct(-emb)
    assert np.abs(out.images.astype(int) - other.images.astype(int)).sum() > 0


def test_unclip_best_of_n_selects_highest_score(unclip_pipe):
    emb = np.random.default_rng(1).normal(size=(2, DIM))

    def scorer(images):
        return images.reshape(len(images), -1)[:, :DIM].astype(float)

    rec = Reconstructor(unclip_pipe, "unclip", num_inference_steps=2, prompt_embeds=_prompt(), height=16,
                        n_samples=3, scorer=scorer)
    out = rec.reconstruct(emb)
    assert out.candidates.shape == (2, 3, 16, 16, 3) and out.scores.shape == (2, 3)
    best = out.scores.argmax(1)
    np.testing.assert_array_equal(out.images, out.candidates[np.arange(2), best])
    with pytest.raises(DimensionError, match="Best-of-N: the scorer gives"):
        Reconstructor(unclip_pipe, "unclip", num_inference_steps=1, prompt_embeds=_prompt(), height=16,
                      n_samples=2, scorer=lambda im: np.ones((len(im), 5))).reconstruct(emb)


def test_img2img_mode_from_low_level(sd_pipe):
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline(**sd_pipe.components)
    low = np.random.default_rng(2).integers(0, 255, (2, 16, 16, 3), dtype=np.uint8)
    rec = Reconstructor(pipe, "img2img", num_inference_steps=4, strength=0.5, prompt_embeds=_prompt())
    out = rec.reconstruct(low_level=low)
    assert out.images.shape == (2, 16, 16, 3)
    # the low-level image steers the result
    assert not np.array_equal(out.images, rec.reconstruct(low_level=255 - low).images)


def test_tokens_mode_prompt_embeds(sd_pipe):
    tokens = np.random.default_rng(4).normal(size=(2, 4, DIM))
    rec = Reconstructor(sd_pipe, "tokens", num_inference_steps=2, guidance_scale=2.0, height=16)
    a = rec.reconstruct(tokens).images
    b = rec.reconstruct(tokens * 0).images
    assert a.shape == (2, 16, 16, 3) and not np.array_equal(a, b)
    with pytest.raises(DimensionError, match="mode='tokens' needs token embeddings"):
        rec.reconstruct(tokens[:, 0])


def _add_ip_adapter(pipe, embed_dim=DIM, n_tokens=4):
    from diffusers.models.attention_processor import AttnProcessor2_0, IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection

    unet = pipe.unet
    bo = unet.config.block_out_channels
    procs = {}
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            procs[name] = AttnProcessor2_0()
            continue
        if name.startswith("mid_block"):
            hidden = bo[-1]
        elif name.startswith("up_blocks"):
            hidden = list(reversed(bo))[int(name.split(".")[1])]
        else:
            hidden = bo[int(name.split(".")[1])]
        procs[name] = IPAdapterAttnProcessor2_0(hidden, unet.config.cross_attention_dim, num_tokens=(n_tokens,), scale=1.0)
    torch.manual_seed(0)
    unet.set_attn_processor(procs)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection(
        [ImageProjection(cross_attention_dim=unet.config.cross_attention_dim, image_embed_dim=embed_dim,
                         num_image_text_embeds=n_tokens)])
    unet.config.encoder_hid_dim_type = "ip_image_proj"
    return pipe


def test_ip_adapter_mode():
    pipe = _add_ip_adapter(_sd())
    emb = np.random.default_rng(5).normal(size=(2, DIM))
    rec = Reconstructor(pipe, "ip-adapter", num_inference_steps=2, guidance_scale=1.0,
                        prompt_embeds=_prompt(), height=16)
    a = rec.reconstruct(emb).images
    b = rec.reconstruct(-emb).images
    assert a.shape == (2, 16, 16, 3) and not np.array_equal(a, b)


def test_reconstructor_errors(unclip_pipe, tmp_path):
    with pytest.raises(ValueError, match="Invalid value for 'mode' in Reconstructor"):
        Reconstructor(unclip_pipe, "dream").reconstruct(np.zeros((1, DIM)))
    with pytest.raises(ValueError, match="needs low_level= images"):
        Reconstructor(unclip_pipe, "img2img").reconstruct(np.zeros((1, DIM)))
    with pytest.raises(ValueError, match=r"Reconstructor\(mode='unclip'\).reconstruct\(\) needs embeds="):
        Reconstructor(unclip_pipe, "unclip").reconstruct()
    with pytest.raises(ValueError, match="Invalid value for 'n_samples' in Reconstructor"):
        Reconstructor(unclip_pipe, "unclip", n_samples=0).reconstruct(np.zeros((1, DIM)))
    with pytest.raises(ValueError, match="Invalid value for 'kind' in load_pipeline"):
        load_pipeline(tmp_path, kind="NoSuchPipeline")
    with pytest.raises(FileNotFoundError, match="is neither a folder nor a Hugging Face id"):
        load_pipeline(str(tmp_path / "missing"))


def test_load_pipeline_from_local_folder(sd_pipe, tmp_path):
    sd_pipe.save_pretrained(tmp_path / "sd")
    loaded = load_pipeline(tmp_path / "sd", kind="StableDiffusionPipeline", tokenizer=None,
                           safety_checker=None, feature_extractor=None, image_encoder=None)
    assert type(loaded).__name__ == "StableDiffusionPipeline"
    assert loaded.unet.config.sample_size == 16


def test_guided_generation_on_latent_pipeline(sd_pipe):
    """BrainGuidedGenerator drives a latent (VAE + cross-attention UNet) pipeline too."""
    from neuroalign.decoders import BrainGuidedGenerator

    def encoder(images):  # "neuroids": mean red, mean green, mean blue
        return images.mean(dim=(2, 3))

    gen = BrainGuidedGenerator(encoder, [0], sd_pipe, scale=2000.0, num_inference_steps=4,
                               prompt_embeds=_prompt())
    guided = gen.generate(2, seed=0)
    plain = gen.generate(2, seed=0, scale=0.0)
    assert guided.images.shape == (2, 16, 16, 3) and guided.activation.shape == (4, 2)
    assert np.all(guided.final_activation > plain.final_activation)


def test_pipeline_embedder_uses_the_unclip_image_encoder(unclip_pipe):
    from neuroalign.recipes._decode import pipeline_embedder

    imgs = np.random.default_rng(6).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    emb = pipeline_embedder(unclip_pipe)(imgs)
    assert emb.shape == (3, DIM) and np.isfinite(emb).all()
    # embeddings of the training images feed the unclip mode directly
    out = Reconstructor(unclip_pipe, "unclip", num_inference_steps=1, prompt_embeds=_prompt(),
                        height=16).reconstruct(emb)
    assert out.images.shape == (3, 16, 16, 3)
