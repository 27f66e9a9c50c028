"""The project's tiny pipeline: trained on first use, cached, deterministic, every mode."""

from __future__ import annotations

import numpy as np
import pytest

from neuroalign.decoders import (
    EmbeddingDiffusionPipeline,
    Reconstructor,
    load_pipeline,
    tiny_pipeline,
)
from neuroalign.exceptions import DataFormatError, DimensionError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("pipe") / "tiny"
    return path, tiny_pipeline(path, n_images=48, steps=20, seed=0)


def test_trained_on_first_use_then_cached(tiny):
    import torch

    path, pipe = tiny
    assert (path / "neuroalign_pipeline.json").exists()
    again = tiny_pipeline(path, n_images=48, steps=20, seed=0)  # loads, does not retrain
    for a, b in zip(pipe.unet.parameters(), again.unet.parameters(), strict=True):
        assert torch.equal(a, b)
    loaded = load_pipeline(path)
    assert isinstance(loaded, EmbeddingDiffusionPipeline) and loaded.embed_dim == pipe.embed_dim


def test_training_is_deterministic(tmp_path):
    import torch

    torch.set_num_threads(1)
    a = tiny_pipeline(tmp_path / "a", n_images=12, steps=3, seed=1)
    b = tiny_pipeline(tmp_path / "b", n_images=12, steps=3, seed=1)
    for p, q in zip(a.unet.parameters(), b.unet.parameters(), strict=True):
        assert torch.equal(p, q)


def test_modes_on_project_pipeline(tiny):
    _, pipe = tiny
    from neuroalign.datasets.simulate import make_images

    imgs, _ = make_images(2, 32, seed=9)
    emb = pipe.embedder(imgs)
    out = Reconstructor(pipe, "unclip", num_inference_steps=3, n_samples=2, guidance_scale=2.0).reconstruct(emb)
    assert out.images.shape == (2, 32, 32, 3) and out.scores.shape == (2, 2)
    np.testing.assert_array_equal(out.images, out.candidates[np.arange(2), out.scores.argmax(1)])
    # img2img at strength 0 returns the low-level image itself
    same = Reconstructor(pipe, "img2img", num_inference_steps=4, strength=0.0).reconstruct(emb, low_level=imgs)
    assert np.abs(same.images.astype(int) - imgs.astype(int)).mean() < 3
    noisy = Reconstructor(pipe, "img2img", num_inference_steps=4, strength=0.5).reconstruct(emb, low_level=imgs)
    assert noisy.images.shape == (2, 32, 32, 3)


def test_tiny_pipeline_errors(tiny, tmp_path):
    _, pipe = tiny
    with pytest.raises(DimensionError, match="Invalid shape for 'image_embeds'"):
        pipe(image_embeds=np.zeros((2, 7)), num_inference_steps=1)
    with pytest.raises(DataFormatError, match="no neuroalign_pipeline.json"):
        EmbeddingDiffusionPipeline.from_pretrained(tmp_path)
