"""extract() on a CUDA device gives the CPU's features (skipped without a GPU).

Convolutions on a GPU may run in TF32 (cuDNN's default), so the features are compared to
a tolerance relative to their scale, and by correlation. ``NEUROALIGN_GPU_TESTS_DEVICE=cpu``
runs this module without a GPU to check the test itself.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neuroalign.features import ImageTransform, extract  # noqa: E402
from neuroalign.stimuli import StimulusSet  # noqa: E402

DEVICE = os.environ.get("NEUROALIGN_GPU_TESTS_DEVICE", "cuda")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(DEVICE != "cpu" and not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("pooling", ["auto", None])
def test_resnet18_features_on_the_gpu_equal_the_cpu(pooling, tmp_path):
    rng = np.random.default_rng(0)
    stim = StimulusSet.from_arrays(rng.integers(0, 255, (7, 40, 48, 3), dtype=np.uint8))
    kw = dict(layers=["layer2", "layer4"], weights=None, seed=0, pooling=pooling,
              transform=ImageTransform(size=64, name="small"), batch_size=3)
    ref = extract("torchvision:resnet18", stim, device="cpu", **kw)
    got = extract("torchvision:resnet18", stim, device=DEVICE, cache=tmp_path / "c.zarr", **kw)
    again = extract("torchvision:resnet18", stim, device=DEVICE, cache=tmp_path / "c.zarr", **kw)
    for layer in kw["layers"]:
        a, b = ref[layer].values, got[layer].values
        assert b.dtype == np.float32 and a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-2 * np.abs(a).max()
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9999
        np.testing.assert_array_equal(again[layer].values, b)  # the cache returns the same
