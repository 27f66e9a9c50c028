"""Encoder-guided image generation (BrainDiVE-style), with its own sampling loop.

diffusers' step callbacks cannot change the noise prediction, so the loop is written out.
At each step the UNet sees ``x_a = scheduler.scale_model_input(x_t)``, which is the
alpha-space sample ``sqrt(abar) x0 + sqrt(1 - abar) eps`` for every supported scheduler:
``x_t`` itself for alpha-space schedulers (DDIM, DDPM, DPM-Solver, ``abar =
alphas_cumprod[t]``) and ``x_t / sqrt(sigma^2 + 1)`` for sigma-space ones (Euler, LMS,
Heun, ...: ``x_t = x0 + sigma eps``, ``abar = 1 / (sigma^2 + 1)``). The clean image is
predicted from the UNet's output in the scheduler's ``prediction_type`` (``epsilon``:
``x0 = (x_a - sqrt(1 - abar) eps) / sqrt(abar)``; ``v_prediction``: ``x0 = sqrt(abar) x_a
- sqrt(1 - abar) v``; ``sample``: the output), mixed as ``sample = x0 * sqrt(1 - abar) +
x_a * (1 - sqrt(1 - abar))`` (crowsonkb / BrainDiVE), decoded (VAE for latent pipelines,
identity for pixel ones) to images in ``[0, 1]``, passed through the differentiable
encoder, and the predicted mean activation of the target ``a`` gives ``g = d(scale * a) /
d x_t``. The noise prediction becomes ``eps - s g``, ``s`` the noise's standard deviation
in the scheduler's space (``sqrt(1 - abar)`` in alpha space, as BrainDiVE, Luo et al. 2023;
``sigma`` in sigma space: the same shift of the score), handed to ``scheduler.step`` in
the scheduler's own prediction type.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger, progress
from neuroalign.exceptions import DimensionError

__all__ = ["BrainGuidedGenerator", "GuidedResult", "resolve_target"]

log = get_logger(__name__)


@dataclass
class GuidedResult:
    """Output of :meth:`BrainGuidedGenerator.generate` (a dataclass; fields as parameters).

    Parameters
    ----------
    images : ndarray uint8 (n, H, W, 3)
        The generated images.
    activation : ndarray (n_steps, n)
        The encoder's predicted target activation of the predicted clean image at each step.
    final_activation : ndarray (n,)
        Predicted activation of the final images.
    seeds : list of int
        The seed of each image.
    """

    images: np.ndarray
    activation: np.ndarray
    final_activation: np.ndarray
    seeds: list[int]


def resolve_target(target, n_neuroids: int, rois: dict | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Weights over neuroids for a target: ``(positive mask, negative mask or None)``.

    ``target`` is an ROI name (``"FFA-1"``), a voxel set (boolean mask, or a list / array of
    indices), or a contrast of two of those as a tuple ``("FFA-1", "PPA")`` or the string
    ``"FFA-1 - PPA"`` (mean of the first minus mean of the second).

    Parameters
    ----------
    target : str, tuple, bool array or sequence of int
        As above.
    n_neuroids : int
        Number of the encoder's outputs.
    rois : dict of str to mask or indices, optional
        Named neuroid sets.

    Returns
    -------
    positive : ndarray of bool, shape (n_neuroids,)
        The neuroids whose mean is raised.
    negative : ndarray of bool or None
        The neuroids whose mean is subtracted (a contrast), else None.

    Raises
    ------
    KeyError
        An ROI name that ``rois`` does not hold.
    """
    rois = rois or {}

    def one(t) -> np.ndarray:
        if isinstance(t, str):
            if t not in rois:
                raise KeyError(
                    f"Invalid value for 'target': {t!r} is not an ROI of the encoder. "
                    f"Known ROIs: {sorted(rois)!r}."
                )
            t = rois[t]
        arr = np.asarray(t)
        if arr.dtype == bool:
            if arr.shape != (n_neuroids,):
                raise DimensionError(
                    f"Invalid shape for 'target' mask: {arr.shape!r}. Expected ({n_neuroids},)."
                )
            mask = arr
        else:
            idx = arr.astype(int).reshape(-1)
            if idx.size == 0 or idx.min() < 0 or idx.max() >= n_neuroids:
                raise DimensionError(
                    f"Invalid value for 'target': indices {idx[:5].tolist()!r}... Expected "
                    f"indices in [0, {n_neuroids})."
                )
            mask = np.zeros(n_neuroids, bool)
            mask[idx] = True
        if not mask.any():
            raise DimensionError("Invalid value for 'target': it selects no neuroid.")
        return mask

    if isinstance(target, str) and " - " in target:
        target = tuple(s.strip() for s in target.split(" - ", 1))
    if isinstance(target, tuple) and len(target) == 2 and all(
            isinstance(t, str | list | np.ndarray) for t in target):
        return one(target[0]), one(target[1])
    return one(target), None


def _clamp01(x):
    return x.clamp(0, 1)


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def _prediction_type(scheduler) -> str:
    """The scheduler's ``prediction_type``, or ``ValueError`` naming what is not supported."""
    name = type(scheduler).__name__
    config = getattr(scheduler, "config", None)
    why = None
    if getattr(config, "sigma_data", None) is not None:
        why = "it uses EDM preconditioning (sigma_data)"
    elif getattr(scheduler, "alphas_cumprod", None) is None:
        why = "it has no 'alphas_cumprod'"
    elif getattr(config, "use_flow_sigmas", False):
        why = "it uses flow-matching sigmas (use_flow_sigmas=True)"
    if why:
        raise ValueError(
            f"BrainGuidedGenerator: the pipeline's scheduler {name} is not supported: {why}. "
            "Expected a diffusers scheduler of a variance-preserving model, in alpha space "
            "(DDIM, DDPM, DPMSolverMultistep, ...) or sigma space (Euler, LMS, Heun, ...)."
        )
    kind = getattr(config, "prediction_type", None)
    kind = "sample" if kind == "original_sample" else kind  # diffusers' old name
    if kind not in PREDICTION_TYPES:
        raise ValueError(
            f"BrainGuidedGenerator: the scheduler {name} has prediction_type {kind!r}. Expected "
            "one of 'epsilon', 'v_prediction', 'sample' (the UNet predicts the noise, the "
            "velocity or the clean sample)."
        )
    return kind


def _clean_estimate(kind: str, out, x_a, fac, root):
    """``x0`` from the UNet's output ``out`` of kind ``kind`` and the alpha-space sample
    ``x_a = root x0 + fac eps`` (``root = sqrt(abar)``, ``fac = sqrt(1 - abar)``)."""
    if kind == "epsilon":
        return (x_a - fac * out) / root
    if kind == "v_prediction":  # v = root eps - fac x0
        return root * x_a - fac * out
    return out


def _shift_noise(kind: str, out, shift, fac, root):
    """The output of kind ``kind`` whose noise is ``eps - shift`` (``d out / d eps`` is 1,
    ``1 / sqrt(abar)`` for the velocity, ``-sqrt(1 - abar) / sqrt(abar)`` for the clean
    sample)."""
    if kind == "epsilon":
        return out - shift
    if kind == "v_prediction":
        return out - shift / root
    return out + shift * fac / root


def _noise_level(scheduler, t):
    """``(abar, k)`` at timestep ``t``: ``x_a = k x_t`` is the alpha-space sample
    ``sqrt(abar) x0 + sqrt(1 - abar) eps`` the UNet sees (``scale_model_input``)."""
    import torch

    k = float(scheduler.scale_model_input(torch.ones((), dtype=torch.float64), t))
    if k == 1.0:  # alpha space: x_t is the sample the UNet sees
        return scheduler.alphas_cumprod[int(t)], k
    if not 0.0 < k < 1.0:
        raise ValueError(
            f"BrainGuidedGenerator: the scheduler {type(scheduler).__name__} scales the UNet's "
            f"input by {k!r} at timestep {t!r}; expected 1 (alpha space) or 1 / sqrt(sigma^2 + "
            "1) (sigma space)."
        )
    abar = torch.tensor(k * k, dtype=scheduler.alphas_cumprod.dtype)
    return abar, k  # sigma space: abar = 1 / (sigma^2 + 1)


class BrainGuidedGenerator:
    """Generate images that drive a target of a differentiable encoder.

    Parameters
    ----------
    encoder : torch.nn.Module or callable
        Images ``(B, 3, H, W)`` in ``[0, 1]`` -> predicted responses ``(B, n_neuroids)``, e.g.
        :class:`DifferentiableRidgeEncoder` or an attention-routing encoder. ROI names are
        looked up in ``rois`` or in ``encoder.rois``.
    target : str, tuple of str, mask or indices
        See :func:`resolve_target`.
    pipeline : diffusers pipeline or EmbeddingDiffusionPipeline
        Supplies ``unet``, ``scheduler`` and (latent pipelines) ``vae``; conditional latent
        UNets get ``prompt_embeds`` (default: the pipeline's encoding of the empty prompt).
        The scheduler is a diffusers scheduler of a variance-preserving model, in alpha
        space (DDIM, DDPM, DPMSolverMultistep, ...) or sigma space (Euler, LMS, Heun, ...),
        with ``prediction_type`` ``"epsilon"``, ``"v_prediction"`` or ``"sample"``; the
        clean-image estimate follows its convention (module docstring). Others
        (EDM-preconditioned, flow matching) raise ``ValueError`` naming them.
    scale : float
        Guidance strength. It multiplies a gradient whose size depends on the encoder's units
        and the pipeline's space: BrainDiVE used 130 on Stable Diffusion latents with a
        z-scored encoder; the project's 32 px pixel-space pipeline with a ridge encoder in
        percent signal change works at ~10 (too large a scale overshoots and saturates).
    num_inference_steps : int
    rois : dict, optional
    prompt_embeds : tensor, optional
    image_embeds : array-like, optional
        Condition of an :class:`EmbeddingDiffusionPipeline` (default: its null embedding).
    encoder_size : int, optional
        Resize decoded images to this side before the encoder (default: as decoded).
    device : str
    """

    def __init__(self, encoder, target, pipeline, *, scale: float = 100.0, num_inference_steps: int = 20,
                 rois: dict | None = None, prompt_embeds=None, image_embeds=None,
                 encoder_size: int | None = None, device: str = "auto") -> None:
        self.encoder = encoder
        self.target = target
        self.pipeline = pipeline
        self.scale = scale
        self.num_inference_steps = num_inference_steps
        self.rois = rois
        self.prompt_embeds = prompt_embeds
        self.image_embeds = image_embeds
        self.encoder_size = encoder_size
        self.device = device

    # ----------------------------------------------------------- internals
    def _setup(self, n: int):
        import torch

        pipe = self.pipeline
        unet = pipe.unet
        vae = getattr(pipe, "vae", None)
        cond = {}
        if hasattr(pipe, "predict_noise"):  # EmbeddingDiffusionPipeline
            with torch.no_grad():
                c = pipe.condition(self.image_embeds, 1)
            def eps_fn(x, t):
                return pipe.predict_noise(x, t, c.expand(len(x), -1))
            channels, size = 3, int(unet.config.sample_size)
        else:
            if getattr(unet.config, "cross_attention_dim", None):
                pe = self.prompt_embeds
                if pe is None:
                    with torch.no_grad():
                        pe = pipe.encode_prompt("", unet.device, 1, False)[0]
                cond["encoder_hidden_states"] = torch.as_tensor(pe).to(unet.device)
            def eps_fn(x, t):
                kw = dict(cond)
                if "encoder_hidden_states" in kw:
                    kw["encoder_hidden_states"] = kw["encoder_hidden_states"].expand(len(x), -1, -1)
                out = unet(x, t, **kw).sample
                return out[:, : x.shape[1]]
            channels = int(unet.config.in_channels)
            size = int(unet.config.sample_size)
        if vae is not None:
            sf = float(getattr(vae.config, "scaling_factor", 1.0))

            def decode(z):
                return _clamp01((vae.decode(z / sf).sample + 1) / 2)
        else:
            def decode(z):
                return _clamp01((z + 1) / 2)
        return eps_fn, decode, (channels, size)

    def _activation(self, images, pos, neg):
        import torch.nn.functional as F

        if self.encoder_size is not None and images.shape[-1] != self.encoder_size:
            images = F.interpolate(images, size=(self.encoder_size, self.encoder_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        pred = self.encoder(images)
        a = pred[:, pos].mean(dim=1)
        if neg is not None:
            a = a - pred[:, neg].mean(dim=1)
        return a

    def generate(self, n: int = 4, *, seed: int = 0, scale: float | None = None) -> GuidedResult:
        """Generate ``n`` images, from the seeds ``seed`` to ``seed + n - 1``.

        ``scale=0`` gives the unguided samples from the same seeds.

        Parameters
        ----------
        n : int
            Number of images.
        seed : int
            Seed of the first image.
        scale : float, optional
            Guidance strength for this call (default: the generator's ``scale``).

        Returns
        -------
        GuidedResult
            Images, the predicted target activation along the way and at the end, seeds.
        """
        import torch

        device = resolve_device(self.device)
        unet = self.pipeline.unet
        unet.to(device)
        for name in ("vae", "proj"):
            if getattr(self.pipeline, name, None) is not None:
                getattr(self.pipeline, name).to(device)
        if hasattr(self.encoder, "to"):
            self.encoder.to(device)
        scale = self.scale if scale is None else float(scale)
        rois = self.rois if self.rois is not None else getattr(self.encoder, "rois", None)
        n_out = getattr(self.encoder, "n_neuroids", None)
        eps_fn, decode, (channels, size) = self._setup(n)
        if n_out is None:
            with torch.no_grad():
                n_out = int(self.encoder(torch.zeros(1, 3, 32, 32, device=device)).shape[1])
        pos, neg = resolve_target(self.target, n_out, rois)
        pos_t = torch.from_numpy(np.flatnonzero(pos)).to(device)
        neg_t = None if neg is None else torch.from_numpy(np.flatnonzero(neg)).to(device)
        scheduler = self.pipeline.scheduler
        kind = _prediction_type(scheduler)
        scheduler.set_timesteps(self.num_inference_steps)
        seeds = [seed + i for i in range(n)]
        x = torch.cat([torch.randn((1, channels, size, size), generator=torch.Generator().manual_seed(s))
                       for s in seeds])
        x = x.to(device) * float(getattr(scheduler, "init_noise_sigma", 1.0))
        trajectory = []
        for t in progress(scheduler.timesteps, desc="guided generation", unit="step"):
            x_in = x.detach().requires_grad_(scale != 0)
            with torch.set_grad_enabled(scale != 0):
                x_a = scheduler.scale_model_input(x_in, t)
                out = eps_fn(x_a, t)  # noise, velocity or clean sample: the scheduler's kind
                abar, k = _noise_level(scheduler, t)
                fac, root = (1 - abar).sqrt(), abar.sqrt()
                x0 = _clean_estimate(kind, out, x_a, fac, root)
                sample = x0 * fac + x_a * (1 - fac)
                act = self._activation(decode(sample), pos_t, neg_t)
                if scale != 0:
                    grad = torch.autograd.grad((scale * act).sum(), x_in)[0]
                    # eps - s g, s = sqrt(1 - abar) / k: sqrt(1 - abar) in alpha space,
                    # sigma in sigma space
                    out = _shift_noise(kind, out.detach(), (fac / k) * grad, fac, root)
            trajectory.append(act.detach().double().cpu().numpy())
            x = scheduler.step(out.detach(), t, x.detach()).prev_sample
        with torch.no_grad():
            imgs = decode(x)
            final = self._activation(imgs, pos_t, neg_t).double().cpu().numpy()
        images = np.round(imgs.permute(0, 2, 3, 1).cpu().numpy() * 255).astype(np.uint8)
        return GuidedResult(images=images, activation=np.stack(trajectory), final_activation=final,
                            seeds=seeds)
