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


# -- scheduler conventions: a stand-in UNet that knows the one clean image of its data ------
CLEAN = 0.2  # the clean image (model space, [-1, 1]), the same in every pixel


class ExactUNet:
    """Predicts what the scheduler's ``prediction_type`` asks for, exactly, for a data set
    of one image (x0 = CLEAN): its input is the scheduler-scaled sample
    ``sqrt(abar) x0 + sqrt(1 - abar) eps`` (``scale_model_input``)."""

    def __init__(self, scheduler, size=8):
        from types import SimpleNamespace

        import torch

        self.scheduler = scheduler
        self.config = SimpleNamespace(sample_size=size, in_channels=3, cross_attention_dim=None)
        self.device = torch.device("cpu")

    def to(self, device):
        return self

    def __call__(self, x, t, **kw):
        from types import SimpleNamespace

        ab = self.scheduler.alphas_cumprod[int(t)].double()
        x = x.double()
        eps = (x - ab.sqrt() * CLEAN) / (1 - ab).sqrt()
        out = {"epsilon": eps, "v_prediction": ab.sqrt() * eps - (1 - ab).sqrt() * CLEAN,
               "sample": torch_full_like(x, CLEAN)}
        out["original_sample"] = out["sample"]  # diffusers' old name (Euler)
        out = out[self.scheduler.config.prediction_type]
        return SimpleNamespace(sample=out.float())


def torch_full_like(x, v):
    import torch

    return torch.full_like(x, v)


def exact_pipeline(name, prediction_type="epsilon", **config):
    from types import SimpleNamespace

    import diffusers

    sched = getattr(diffusers, name)(num_train_timesteps=1000, prediction_type=prediction_type, **config)
    return SimpleNamespace(unet=ExactUNet(sched), scheduler=sched)


def patch_encoder(images):  # a differentiable activation with a gradient everywhere
    w = images.new_tensor([1.0, -0.5, 0.25]).view(1, 3, 1, 1)
    return (images * w).mean(dim=(2, 3)).sum(1, keepdim=True) + images[:, :, :4, :4].mean((1, 2, 3))[:, None]


SCHEDULERS = ["DDIMScheduler", "DDPMScheduler", "EulerDiscreteScheduler", "LMSDiscreteScheduler",
              "HeunDiscreteScheduler", "DPMSolverMultistepScheduler"]


@pytest.mark.parametrize(("name", "prediction_type"),
                         [(n, k) for n in SCHEDULERS for k in ("epsilon", "v_prediction", "sample")]
                         + [("EulerDiscreteScheduler", "original_sample")])
def test_guidance_sees_the_exact_clean_image_with_any_scheduler(monkeypatch, name, prediction_type):
    """With a UNet that predicts exactly, the clean-image estimate the encoder is shown is
    the clean image at every step, in alpha space (DDIM, DDPM, DPM-Solver) and in sigma
    space (Euler, LMS, Heun: x = x0 + sigma eps), for every prediction type. The
    alpha-space formula used for every scheduler was off by up to 83,967 with Euler."""
    import torch

    import neuroalign.decoders._guided as G

    pipe = exact_pipeline(name, prediction_type)
    sched = pipe.scheduler
    shown, states = [], []
    real_clamp, real_step = G._clamp01, sched.step

    def spy_clamp(z):
        shown.append(z.detach().double() * 2 - 1)  # the mixed sample, before clamping
        return real_clamp(z)

    def spy_step(out, t, x, *a, **k):
        states.append((t, x.detach().double(), sched.scale_model_input(x, t).double()))
        return real_step(out, t, x, *a, **k)

    monkeypatch.setattr(G, "_clamp01", spy_clamp)
    monkeypatch.setattr(sched, "step", spy_step)
    for seed in (0, 3):
        shown.clear(), states.clear()
        torch.manual_seed(seed)  # DDPM's own noise
        res = BrainGuidedGenerator(patch_encoder, [0], pipe, scale=0.0, num_inference_steps=10,
                                   device="cpu", rois={}).generate(n=2, seed=seed)
        assert len(states) == len(sched.timesteps) == res.activation.shape[0]
        for (t, x, xa), sample in zip(states, shown[:len(states)], strict=True):
            k = float(xa.flatten()[0] / x.flatten()[0])  # x_alpha = k x: 1, or 1/sqrt(sigma^2 + 1)
            ab = k * k if abs(k - 1) > 1e-7 else float(sched.alphas_cumprod[int(t)])
            fac = np.sqrt(1 - ab)
            x0 = (sample - xa * (1 - fac)) / fac  # the mix is x0 * fac + x_alpha * (1 - fac)
            assert float((x0 - CLEAN).abs().max()) < 2e-3, (t, float((x0 - CLEAN).abs().max()))
        np.testing.assert_allclose(res.images / 255 * 2 - 1, CLEAN, atol=2 / 255)


@pytest.mark.parametrize("name", ["DDIMScheduler", "EulerDiscreteScheduler", "LMSDiscreteScheduler",
                                  "DPMSolverMultistepScheduler", "DDPMScheduler"])
def test_guided_sampling_does_not_depend_on_the_prediction_type(name):
    """The guided noise prediction is handed to the scheduler in its own prediction type:
    an exact UNet that predicts noise, velocity or the clean sample gives the same guided
    samples."""
    import torch

    runs = {}
    for kind in ("epsilon", "v_prediction", "sample"):
        extra = {"clip_sample": False} if name in ("DDIMScheduler", "DDPMScheduler") else {}
        pipe = exact_pipeline(name, kind, **extra)
        torch.manual_seed(0)
        runs[kind] = BrainGuidedGenerator(patch_encoder, [0], pipe, scale=20.0, num_inference_steps=10,
                                          device="cpu", rois={}).generate(n=2, seed=5)
    torch.manual_seed(0)
    plain = BrainGuidedGenerator(patch_encoder, [0], exact_pipeline(name), scale=0.0,
                                 num_inference_steps=10, device="cpu", rois={}).generate(n=2, seed=5)
    ref = runs["epsilon"]
    assert np.abs(ref.activation - plain.activation).max() > 1e-2  # the guidance acted
    for kind in ("v_prediction", "sample"):
        np.testing.assert_allclose(runs[kind].activation, ref.activation, rtol=1e-4, atol=1e-5, err_msg=kind)
        np.testing.assert_allclose(runs[kind].final_activation, ref.final_activation, rtol=1e-4,
                                   atol=1e-5, err_msg=kind)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_guided_euler_is_guided_ddim(prediction_type):
    """DDIM is Euler's method in sigma space (Karras et al. 2022): on the same time grid and
    from the same noise, guided DDIM and guided Euler take the same steps, so the same
    guidance (x0, the image the encoder sees, the gradient's scale) gives the same samples."""
    import torch

    runs = []
    for name, extra in (("DDIMScheduler", {"clip_sample": False}),
                        ("EulerDiscreteScheduler", {"timestep_spacing": "leading"})):
        pipe = exact_pipeline(name, prediction_type, **extra)
        if name == "DDIMScheduler":
            torch.manual_seed(0)
        runs.append(BrainGuidedGenerator(patch_encoder, [0], pipe, scale=20.0, num_inference_steps=10,
                                         device="cpu", rois={}).generate(n=3, seed=1))
    ddim, euler = runs
    np.testing.assert_allclose(euler.activation, ddim.activation, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(euler.final_activation, ddim.final_activation, rtol=1e-4, atol=1e-5)
    assert np.abs(euler.images.astype(int) - ddim.images).max() <= 1


@pytest.mark.parametrize(("name", "config", "match"), [
    ("DPMSolverMultistepScheduler", {"prediction_type": "flow_prediction", "use_flow_sigmas": True},
     r"DPMSolverMultistepScheduler is not supported: it uses flow-matching sigmas"),
    ("DPMSolverMultistepScheduler", {"prediction_type": "flow_prediction"},
     r"DPMSolverMultistepScheduler has prediction_type 'flow_prediction'"),
    ("EulerDiscreteScheduler", {"prediction_type": "original_velocity"},
     r"EulerDiscreteScheduler has prediction_type 'original_velocity'. Expected one of 'epsilon'"),
    ("FlowMatchEulerDiscreteScheduler", {}, r"FlowMatchEulerDiscreteScheduler is not supported: it has no 'alphas_cumprod'"),
    ("EDMEulerScheduler", {}, r"EDMEulerScheduler is not supported: it uses EDM preconditioning"),
])
def test_unsupported_schedulers_are_refused_by_name(name, config, match):
    """Schedulers whose conventions the guidance does not follow are refused, by name,
    before any step (they would guide on a wrong clean-image estimate)."""
    from types import SimpleNamespace

    import diffusers

    sched = getattr(diffusers, name)(**config)
    pipe = SimpleNamespace(unet=ExactUNet(sched), scheduler=sched)
    gen = BrainGuidedGenerator(patch_encoder, [0], pipe, scale=1.0, num_inference_steps=2,
                               device="cpu", rois={})
    with pytest.raises(ValueError, match=match):
        gen.generate(n=1)


def test_a_scheduler_scaling_its_input_otherwise_is_refused():
    from types import SimpleNamespace

    from diffusers import DDIMScheduler

    class Doubling(DDIMScheduler):
        def scale_model_input(self, sample, timestep=None):
            return sample * 2

    sched = Doubling()
    pipe = SimpleNamespace(unet=ExactUNet(sched), scheduler=sched)
    gen = BrainGuidedGenerator(patch_encoder, [0], pipe, scale=1.0, num_inference_steps=2,
                               device="cpu", rois={})
    with pytest.raises(ValueError, match=r"Doubling scales the UNet's input by 2.0 at timestep"):
        gen.generate(n=1)
