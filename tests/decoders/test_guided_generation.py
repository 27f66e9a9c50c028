"""Encoder-guided generation on the simulated brain, scored by the TRUE ROI response."""

from __future__ import annotations

import numpy as np
import pytest

from neuroalign.decoders import (
    BrainGuidedGenerator,
    DifferentiableRidgeEncoder,
    PooledFeatureExtractor,
    resolve_target,
    store_images,
    tiny_pipeline,
)
from neuroalign.exceptions import DimensionError, NotFittedError


@pytest.fixture(scope="module")
def setup(sim_nsd, tmp_path_factory):
    from neuroalign.datasets.simulate import build_network

    avg = sim_nsd.store().load().na.average_repetitions()
    ext = PooledFeatureExtractor(build_network("resnet18", sim_nsd.truth["model"]["seed"]),
                                 ["layer1", "layer2", "layer3", "layer4"], input_size=224)
    enc = DifferentiableRidgeEncoder.fit_store(ext, avg, alpha=10.0)
    pipe = tiny_pipeline(tmp_path_factory.mktemp("pipe") / "tiny", n_images=64, steps=30, seed=0)
    return sim_nsd, avg, enc, pipe


@pytest.mark.slow
def test_guided_images_drive_true_roi_response(setup):
    sim, avg, enc, pipe = setup
    roi = "FFA-1"
    gen = BrainGuidedGenerator(enc, roi, pipe, scale=10.0, num_inference_steps=12)
    guided = gen.generate(3, seed=0)
    plain = gen.generate(3, seed=0, scale=0.0)
    assert guided.images.shape == (3, 32, 32, 3) and guided.activation.shape == (12, 3)
    # the encoder's own prediction goes up ...
    assert np.all(guided.final_activation > plain.final_activation)
    # ... and so does the ground-truth brain's response: above the unguided samples from the
    # same seeds, and above the ROI's mean response to the stimulus set
    brain = sim.brain()
    true_guided = brain.roi_response(guided.images, roi)
    true_plain = brain.roi_response(plain.images, roi)
    stim_mean = brain.roi_response(store_images(avg), roi).mean()
    assert np.all(true_guided > true_plain), (true_guided, true_plain)
    assert np.all(true_guided > stim_mean), (true_guided, stim_mean)


def test_fitted_encoder_matches_closed_form_and_is_differentiable(setup):
    import torch

    _, avg, enc, _ = setup
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    pred = enc(x)
    assert pred.shape == (2, avg.sizes["neuroid"])
    pred[:, enc.rois["FFA-1"]].mean().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    # the read-out is the ridge core: scikit-learn's Ridge(alpha) on standardised features
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    X = enc.extractor.extract(store_images(avg)).astype(np.float64)
    Y = avg["responses"].transpose("stimulus", "neuroid").values.astype(np.float64)
    sc = StandardScaler().fit(X)
    ref = Ridge(alpha=10.0).fit(sc.transform(X), Y)
    coef = ref.coef_ / np.where(sc.scale_ > 0, sc.scale_, 1.0)
    np.testing.assert_allclose(enc.coef.numpy(), coef, rtol=1e-4, atol=1e-6 * np.abs(coef).max())
    np.testing.assert_allclose(enc.intercept.numpy(), ref.intercept_ - sc.mean_ @ coef.T,
                               rtol=1e-4, atol=1e-4)
    # and a planted linear map is recovered with a tiny penalty
    from neuroalign.decoders._encoder import readout_fit

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4)) * [1, 2, 3, 4] + 5
    W = rng.normal(size=(3, 4))
    coef, b = readout_fit(X, X @ W.T + 1.5, alpha=1e-8)
    np.testing.assert_allclose(coef, W.T, atol=1e-6)
    np.testing.assert_allclose(b, 1.5 + 0 * b, atol=1e-5)


def test_targets_contrast_and_voxel_sets():
    rois = {"A": np.array([True, True, False, False]), "B": np.array([False, False, True, False])}
    pos, neg = resolve_target("A - B", 4, rois)
    np.testing.assert_array_equal(pos, rois["A"])
    np.testing.assert_array_equal(neg, rois["B"])
    pos, neg = resolve_target([3], 4, rois)
    assert neg is None and pos.tolist() == [False, False, False, True]
    with pytest.raises(KeyError, match="Invalid value for 'target': 'C' is not an ROI"):
        resolve_target("C", 4, rois)
    with pytest.raises(DimensionError, match="Invalid shape for 'target' mask"):
        resolve_target(np.ones(3, bool), 4, rois)
    with pytest.raises(DimensionError, match=r"Expected indices in \[0, 4\)"):
        resolve_target([7], 4, rois)
    with pytest.raises(DimensionError, match="it selects no neuroid"):
        resolve_target(np.zeros(4, bool), 4, rois)


def test_contrast_guidance_runs_with_any_callable(setup):
    import torch

    _, _, _, pipe = setup
    def enc2(images):
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3)).mean(1, keepdim=True)], 1)

    gen = BrainGuidedGenerator(enc2, ([0, 1], [3]), pipe, scale=50.0, num_inference_steps=3,
                               rois={})
    res = gen.generate(2, seed=1)
    assert res.activation.shape == (3, 2) and res.final_activation.shape == (2,)


def test_encoder_errors():
    import torch

    ext = torch.nn.Identity()
    with pytest.raises(DimensionError, match="Invalid shape for 'coef' in DifferentiableRidgeEncoder"):
        DifferentiableRidgeEncoder(ext, np.zeros((2, 2, 2)))
    with pytest.raises(DimensionError, match="Invalid shape for 'intercept'"):
        DifferentiableRidgeEncoder(ext, np.zeros((2, 3)), np.zeros(3))
    enc = DifferentiableRidgeEncoder(lambda x: x.reshape(len(x), -1), np.zeros((2, 5)))
    with pytest.raises(DimensionError, match="The extractor gives 12 features; 'coef' expects 5"):
        enc(torch.zeros(1, 3, 2, 2))
    with pytest.raises(NotFittedError, match="has no 'coef_'"):
        DifferentiableRidgeEncoder.from_estimator(ext, object())
    from neuroalign.decoders._encoder import readout_fit

    with pytest.raises(DimensionError, match="fit_store\\(\\): the features have shape \\(3, 2\\)"):
        readout_fit(np.zeros((3, 2)), np.zeros((4, 1)))
    with pytest.raises(KeyError, match="Unknown layer\\(s\\) \\['nope'\\]"):
        PooledFeatureExtractor(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)), ["nope"])
    pfe = PooledFeatureExtractor(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)), ["0"], input_size=8)
    with pytest.raises(DimensionError, match="PooledFeatureExtractor expects images"):
        pfe(torch.zeros(1, 4, 8, 8))


def test_from_estimator_wraps_a_fitted_linear_model():
    import torch
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 6)), rng.normal(size=(30, 3))
    est = Ridge(alpha=1.0).fit(X, Y)
    enc = DifferentiableRidgeEncoder.from_estimator(torch.nn.Identity(), est, rois={"A": [0, 2]})
    out = enc(torch.as_tensor(X[:4], dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out, est.predict(X[:4]), rtol=1e-4, atol=1e-5)
    assert enc.n_neuroids == 3 and enc.rois["A"].tolist() == [0, 2]
