"""The project's own small diffusion pipeline: pixel-space, conditioned on an image embedding.

:class:`EmbeddingDiffusionPipeline` is an unCLIP-style decoder in miniature: a diffusers
``UNet2DModel`` (32 px by default) whose time embedding is shifted by a linear projection of a
standardised image embedding (classifier-free dropout to a null embedding during training).
It answers the same keyword arguments as diffusers pipelines (``image_embeds=``,
``image=``/``strength=`` for img2img, ``num_inference_steps``, ``generator``,
``num_images_per_prompt``, ``guidance_scale``, ``output_type="np"``), so
:class:`~neuroalign.decoders.Reconstructor` and
:class:`~neuroalign.decoders.BrainGuidedGenerator` drive it like real Stable Diffusion.

:func:`tiny_pipeline` trains one on the simulated stimulus families on first use
(deterministic from ``seed``, a short CPU budget) and caches it under
``neuroalign._config.cache_dir() / "pipelines"``; later calls load it from there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuroalign._config import cache_dir
from neuroalign._logging import get_logger, progress
from neuroalign.exceptions import DataFormatError, DimensionError

__all__ = ["EmbeddingDiffusionPipeline", "ImageEmbedder", "tiny_pipeline", "train_tiny_pipeline"]

log = get_logger(__name__)


class ImageEmbedder:
    """Image embedding of the tiny pipeline: spatially pooled layers of a seeded torchvision net.

    Parameters
    ----------
    arch : str
    seed : int
        Seed of the random weights (``weights=None``), or use ``weights`` for pretrained ones.
    layers : sequence of str
    input_size : int
    weights : str, optional
        torchvision weights name (loaded from the local torch cache).
    """

    def __init__(self, arch: str = "resnet18", seed: int = 0, layers=("layer1", "layer2", "layer3", "layer4"),
                 input_size: int = 64, weights: str | None = None) -> None:
        self.arch, self.seed, self.layers = arch, int(seed), tuple(layers)
        self.input_size, self.weights = int(input_size), weights
        self._module = None

    def config(self) -> dict:
        """What rebuilds this embedder (saved with a pipeline).

        Returns
        -------
        dict
            ``arch``, ``seed``, ``layers``, ``input_size``, ``weights``.
        """
        return {"arch": self.arch, "seed": self.seed, "layers": list(self.layers),
                "input_size": self.input_size, "weights": self.weights}

    @property
    def module(self):
        """The differentiable :class:`PooledFeatureExtractor` (images in [0, 1] -> (B, D))."""
        if self._module is None:
            from neuroalign.decoders._encoder import PooledFeatureExtractor
            from neuroalign.features._weights import torchvision_model

            net, _ = torchvision_model(self.arch, self.weights, seed=self.seed, func="ImageEmbedder")
            self._module = PooledFeatureExtractor(net, self.layers, input_size=self.input_size)
        return self._module

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Embeddings ``(N, D)`` of uint8 images ``(N, H, W, 3)``."""
        return self.module.extract(np.asarray(images))


@dataclass
class _Output:
    images: np.ndarray


class EmbeddingDiffusionPipeline:
    """Pixel-space diffusion conditioned on an image embedding (see module docstring).

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        With ``class_embed_type="identity"``.
    proj : torch.nn.Linear
        Embedding (D) -> time-embedding width.
    scheduler : diffusers scheduler (DDIM)
    embed_mean, embed_scale : ndarray (D,)
        Standardisation of the embedding.
    embedder : ImageEmbedder, optional
        Computes embeddings of images (targets for decoders, best-of-N scoring).
    """

    def __init__(self, unet, proj, scheduler, embed_mean, embed_scale, embedder: ImageEmbedder | None = None) -> None:
        self.unet = unet.eval()
        self.proj = proj.eval()
        self.scheduler = scheduler
        self.embed_mean = np.asarray(embed_mean, dtype=np.float32)
        self.embed_scale = np.asarray(embed_scale, dtype=np.float32)
        self.embedder = embedder
        self.vae = None

    @property
    def sample_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def embed_dim(self) -> int:
        return int(self.embed_mean.shape[0])

    def condition(self, image_embeds, n: int):
        """The UNet's condition for a batch.

        Parameters
        ----------
        image_embeds : array-like (N, embed_dim) or None
            Image embeddings; ``None`` gives the null (unconditional) embedding.
        n : int
            Batch size, for the null embedding.

        Returns
        -------
        torch.Tensor, shape (n, time_embed_dim)
            The standardised embedding, projected.
        """
        import torch

        if image_embeds is None:
            z = torch.zeros(n, self.embed_dim)
        else:
            e = np.asarray(image_embeds.detach().cpu() if hasattr(image_embeds, "detach") else image_embeds,
                           dtype=np.float32)
            e = e.reshape(1, -1) if e.ndim == 1 else e.reshape(len(e), -1)
            if e.shape[1] != self.embed_dim:
                raise DimensionError(
                    f"Invalid shape for 'image_embeds': {np.shape(image_embeds)!r}. Expected "
                    f"(N, {self.embed_dim})."
                )
            z = torch.from_numpy((e - self.embed_mean) / self.embed_scale)
        return self.proj(z.to(next(self.proj.parameters()).device))

    def predict_noise(self, x, t, cond):
        """The UNet's noise prediction.

        Parameters
        ----------
        x : torch.Tensor (B, 3, H, W)
            Noisy images.
        t : int or torch.Tensor
            Timestep.
        cond : torch.Tensor (B, time_embed_dim)
            Condition from :meth:`condition`.

        Returns
        -------
        torch.Tensor (B, 3, H, W)
            The predicted noise.
        """
        return self.unet(x, t, class_labels=cond).sample

    def __call__(self, *, image_embeds=None, image=None, strength: float = 0.6, num_inference_steps: int = 20,
                 guidance_scale: float = 2.0, num_images_per_prompt: int = 1, generator=None,
                 output_type: str = "np", batch_size: int | None = None, **_ignored) -> _Output:
        """Sample images; ``image`` (uint8 (N, H, W, 3) or float [0, 1]) with ``strength`` gives
        img2img (noise the image to ``strength`` of the schedule and denoise it)."""
        import torch
        import torch.nn.functional as F

        n_cond = None if image_embeds is None else len(np.atleast_2d(np.asarray(
            image_embeds.detach().cpu() if hasattr(image_embeds, "detach") else image_embeds)))
        n_img = None if image is None else len(image)
        n = n_cond or n_img or batch_size or 1
        n_total = n * int(num_images_per_prompt)
        size = self.sample_size
        with torch.no_grad():
            cond = self.condition(image_embeds, n).repeat_interleave(num_images_per_prompt, 0)
            null = self.condition(None, n_total)
            self.scheduler.set_timesteps(num_inference_steps)
            timesteps = self.scheduler.timesteps
            x = torch.randn((n_total, 3, size, size), generator=generator)
            if image is not None:
                from neuroalign.decoders.metrics import to_float_images

                arr = torch.from_numpy(to_float_images(image)).permute(0, 3, 1, 2).float()
                arr = F.interpolate(arr, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                x0 = (arr * 2 - 1).repeat_interleave(num_images_per_prompt, 0)
                start = int(round(num_inference_steps * (1 - float(strength))))
                timesteps = timesteps[start:]
                if len(timesteps):
                    x = self.scheduler.add_noise(x0, x, timesteps[:1].repeat(n_total))
                else:
                    x = x0
            for t in timesteps:
                eps = self.predict_noise(x, t, cond)
                if guidance_scale != 1.0 and image_embeds is not None:
                    eps_u = self.predict_noise(x, t, null)
                    eps = eps_u + guidance_scale * (eps - eps_u)
                x = self.scheduler.step(eps, t, x).prev_sample
        imgs = ((x.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()
        if output_type == "uint8":
            imgs = np.round(imgs * 255).astype(np.uint8)
        return _Output(images=imgs)

    # ------------------------------------------------------------ save/load
    def save_pretrained(self, path: str | Path) -> None:
        """Write ``unet/`` (safetensors), ``scheduler/``, ``proj.safetensors`` and
        ``neuroalign_pipeline.json``: no file that holds code.

        Parameters
        ----------
        path : path-like
            The folder (created).
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(path / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(path / "scheduler")
        save_file({k: v.detach().contiguous() for k, v in self.proj.state_dict().items()},
                  str(path / "proj.safetensors"))
        meta = {"kind": "neuroalign-embedding-diffusion",
                "embed_mean": self.embed_mean.tolist(), "embed_scale": self.embed_scale.tolist(),
                "proj_out": int(self.proj.out_features),
                "embedder": None if self.embedder is None else self.embedder.config()}
        (path / "neuroalign_pipeline.json").write_text(json.dumps(meta))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> EmbeddingDiffusionPipeline:
        """Read a pipeline written by :meth:`save_pretrained` (offline; no code is run).

        Parameters
        ----------
        path : path-like
            The folder.

        Returns
        -------
        EmbeddingDiffusionPipeline
            The pipeline.

        Raises
        ------
        DataFormatError
            The folder is not such a pipeline.
        """
        import torch
        from diffusers import DDIMScheduler, UNet2DModel

        from neuroalign.features._weights import hub_offline, load_state_file

        path = Path(path)
        meta_file = path / "neuroalign_pipeline.json"
        if not meta_file.exists():
            raise DataFormatError(
                f"{path}: no neuroalign_pipeline.json; not a pipeline written by "
                "EmbeddingDiffusionPipeline.save_pretrained()."
            )
        meta = json.loads(meta_file.read_text())
        emb_cfg = meta.get("embedder") or None
        if emb_cfg is not None:
            unknown = sorted(set(emb_cfg) - {"arch", "seed", "layers", "input_size", "weights"})
            if unknown:
                raise DataFormatError(f"{meta_file}: unknown embedder key(s) {unknown!r}.")
        with hub_offline():
            unet = UNet2DModel.from_pretrained(path / "unet", low_cpu_mem_usage=False)
            scheduler = DDIMScheduler.from_pretrained(path / "scheduler")
        mean = np.asarray(meta["embed_mean"], dtype=np.float32)
        proj = torch.nn.Linear(len(mean), meta["proj_out"])
        proj_file = path / "proj.safetensors"
        proj.load_state_dict(load_state_file(proj_file if proj_file.exists() else path / "proj.pt"))
        embedder = ImageEmbedder(**emb_cfg) if emb_cfg else None
        return cls(unet, proj, scheduler, mean, meta["embed_scale"], embedder)


def _build_unet(size: int, channels: tuple[int, ...]):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=size, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=channels, down_block_types=("DownBlock2D",) * len(channels),
        up_block_types=("UpBlock2D",) * len(channels), norm_num_groups=8,
        class_embed_type="identity",
    )


def train_tiny_pipeline(
    images: np.ndarray,
    *,
    embedder: ImageEmbedder | None = None,
    size: int = 32,
    channels: tuple[int, ...] = (16, 32),
    steps: int = 600,
    batch_size: int = 16,
    lr: float = 2e-3,
    p_uncond: float = 0.1,
    seed: int = 0,
) -> EmbeddingDiffusionPipeline:
    """Train an :class:`EmbeddingDiffusionPipeline` on uint8 ``images`` (N, H, W, 3).

    Deterministic from ``seed`` on CPU. Images are resized to ``size`` and augmented with
    horizontal flips only when the embedding is flip-invariant (it is not: none here).

    Parameters
    ----------
    images : ndarray of uint8, shape (N, H, W, 3)
        Training images.
    embedder : ImageEmbedder, optional
        The image embedding the pipeline is conditioned on (default: ``ImageEmbedder()``).
    size : int
        Side of the generated images.
    channels : tuple of int
        UNet channels per resolution.
    steps : int
        Optimisation steps.
    batch_size : int
        Images per step.
    lr : float
        Learning rate (AdamW).
    p_uncond : float
        Probability of dropping the condition (classifier-free guidance).
    seed : int
        Seed of initialisation and sampling.

    Returns
    -------
    EmbeddingDiffusionPipeline
        The trained pipeline.
    """
    import torch
    import torch.nn.functional as F
    from diffusers import DDIMScheduler

    from neuroalign.decoders.metrics import resize_images

    embedder = embedder or ImageEmbedder()
    emb = embedder(images).astype(np.float32)
    mean, sd = emb.mean(0), emb.std(0)
    sd = np.where(sd > 0, sd, 1.0).astype(np.float32)
    x_all = torch.from_numpy(resize_images(images, size)).permute(0, 3, 1, 2).float() * 2 - 1
    z_all = torch.from_numpy((emb - mean) / sd)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        unet = _build_unet(size, tuple(channels))
        proj = torch.nn.Linear(emb.shape[1], unet.time_embedding.linear_2.out_features)
    finally:
        torch.random.set_rng_state(state)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                              clip_sample=True, prediction_type="epsilon")
    params = list(unet.parameters()) + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=int(steps), pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    unet.train()
    n = len(x_all)
    for _ in progress(range(int(steps)), desc="training tiny pipeline", unit="step"):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=g)
        x0, z = x_all[idx], z_all[idx].clone()
        drop = torch.rand(len(idx), generator=g) < p_uncond
        z[drop] = 0.0
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(idx),), generator=g)
        xt = scheduler.add_noise(x0, noise, t)
        loss = F.mse_loss(unet(xt, t, class_labels=proj(z)).sample, noise)
        last = float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    log.info("tiny pipeline trained: %d steps, last loss %.4f", steps, last)
    return EmbeddingDiffusionPipeline(unet.eval(), proj.eval(), scheduler, mean, sd, embedder)


def tiny_pipeline(
    path: str | Path | None = None,
    *,
    n_images: int = 600,
    steps: int = 600,
    size: int = 32,
    seed: int = 0,
    retrain: bool = False,
) -> EmbeddingDiffusionPipeline:
    """The project's tiny pipeline: trained on first use on the simulated stimulus families
    (:func:`neuroalign.datasets.simulate.make_images`), then cached.

    Parameters
    ----------
    path : path-like, optional
        Cache folder; default ``cache_dir() / "pipelines" / "tiny-<hash of settings>"``.
    n_images, steps, size, seed : training settings (part of the cache key).
    retrain : bool
        Train again even if cached.

    Returns
    -------
    EmbeddingDiffusionPipeline
        The trained pipeline (read from the cache when it is there).
    """
    from neuroalign.datasets.simulate import make_images
    from neuroalign.store import atomic_dir

    settings = {"n_images": n_images, "steps": steps, "size": size, "seed": seed, "v": 1}
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    path = Path(path) if path is not None else cache_dir() / "pipelines" / f"tiny-{key}"
    if (path / "neuroalign_pipeline.json").exists() and not retrain:
        return EmbeddingDiffusionPipeline.from_pretrained(path)
    log.info("training the tiny pipeline (first use); cached at %s", path)
    images, _ = make_images(n_images, size=max(size, 64), seed=10_000 + seed)
    pipe = train_tiny_pipeline(images, size=size, steps=steps, seed=seed)
    with atomic_dir(path, overwrite=True) as tmp:
        pipe.save_pretrained(tmp)
    return pipe
