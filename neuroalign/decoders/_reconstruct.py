"""Embedding -> image with diffusion pipelines, and pipeline loading.

Modes of :class:`Reconstructor`:

- ``"unclip"``: image embeddings through ``image_embeds=`` (``StableUnCLIPImg2ImgPipeline``,
  or the project's :class:`EmbeddingDiffusionPipeline`);
- ``"tokens"``: token embeddings injected as ``prompt_embeds=`` (any text-conditioned pipeline);
- ``"ip-adapter"``: image embeddings through ``ip_adapter_image_embeds=`` (a pipeline with an
  IP-Adapter loaded, ``pipe.load_ip_adapter(...)``);
- ``"img2img"``: a low-level image prediction refined with ``image=``, ``strength=``
  (``StableDiffusionImg2ImgPipeline`` with the empty or given prompt embeddings, or the project
  pipeline, which also takes the predicted image embedding).

Pointing the same code at real weights::

    pipe = load_pipeline("/data/models/stable-diffusion-2-1-unclip")   # a local folder
    pipe = load_pipeline("stabilityai/stable-diffusion-2-1-unclip")     # from the HF cache
    Reconstructor(pipe, mode="unclip", guidance_scale=10).reconstruct(pred_clip_embeds)

``load_pipeline`` never touches the network unless ``allow_download=True`` is passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option, check_positive_int
from neuroalign.exceptions import DimensionError

__all__ = ["Reconstructor", "ReconstructionResult", "load_pipeline", "MODES"]

log = get_logger(__name__)
MODES = ("unclip", "tokens", "ip-adapter", "img2img")


def load_pipeline(source: str | Path, *, kind: str | None = None, allow_download: bool = False,
                  torch_dtype=None, **kwargs):
    """Load a pipeline from a local folder or the Hugging Face cache, with no network and no
    code from the folder unless asked.

    Parameters
    ----------
    source : str or path
        A folder (a project pipeline written by ``save_pretrained``, or a diffusers folder), or
        a Hub id (``"owner/name"``) already in the local Hugging Face cache.
    kind : str, optional
        diffusers class name to use (``"StableUnCLIPImg2ImgPipeline"``, ...); default
        ``DiffusionPipeline`` picks it from ``model_index.json``.
    allow_download : bool
        Fetch a Hub id that is not in the cache (off by default: then nothing touches the
        network, and a missing pipeline raises :class:`WeightsNotAvailableError` naming the
        cache folder it was looked for in).
    torch_dtype : torch.dtype, optional
        Precision of the weights (default: as saved).
    **kwargs
        Passed to ``from_pretrained`` (e.g. ``safety_checker=None``).

    Returns
    -------
    diffusers pipeline or EmbeddingDiffusionPipeline
        The pipeline, on the CPU.

    Raises
    ------
    WeightsNotAvailableError
        Not in the cache and ``allow_download`` is off.
    UnsafeFileError
        The folder holds pipeline code (a custom pipeline ``.py``), which is never run.
    """
    from neuroalign.exceptions import UnsafeFileError, WeightsNotAvailableError
    from neuroalign.features._weights import (
        HOW_TO_ALLOW,
        env_offline,
        hf_snapshot,
        hub_offline,
        looks_like_repo_id,
    )

    path = Path(source).expanduser()
    if path.is_dir() and (path / "neuroalign_pipeline.json").exists():
        from neuroalign.decoders._tiny import EmbeddingDiffusionPipeline

        return EmbeddingDiffusionPipeline.from_pretrained(path)
    import diffusers

    cls = diffusers.DiffusionPipeline if kind is None else getattr(diffusers, kind, None)
    if cls is None:
        raise ValueError(
            f"Invalid value for 'kind' in load_pipeline(): {kind!r}. Expected a diffusers "
            "pipeline class name such as 'StableUnCLIPImg2ImgPipeline'."
        )
    offline = env_offline() or not allow_download
    if path.is_dir():
        target = str(path)
    elif not looks_like_repo_id(str(source)):
        raise FileNotFoundError(
            f"load_pipeline(): {str(source)!r} is neither a folder nor a Hugging Face id "
            "('owner/name') in the local cache."
        )
    elif offline:  # found on disk: diffusers would still send a request
        target = str(hf_snapshot(str(source), "model_index.json", spec=f"Pipeline {str(source)!r}",
                                 weights_hint=" and its component folders (unet/, vae/, ...)"))
    else:
        target = str(source)
    extra = {} if torch_dtype is None else {"torch_dtype": torch_dtype}
    with hub_offline(offline):
        try:
            return cls.from_pretrained(target, local_files_only=offline, **extra, **kwargs)
        except ValueError as err:
            if "custom code" in str(err):
                raise UnsafeFileError(
                    f"load_pipeline(): {target} holds pipeline code (a .py file named in "
                    "model_index.json); neuroalign does not run code from a model folder."
                ) from err
            raise
        except OSError as err:
            if not offline:
                raise
            raise WeightsNotAvailableError(
                f"Pipeline {str(source)!r} is not complete offline: a file is missing in {target} "
                f"({err}). Copy the whole pipeline there, or pass {HOW_TO_ALLOW}."
            ) from err


@dataclass
class ReconstructionResult:
    """Output of :meth:`Reconstructor.reconstruct` (a dataclass; fields as parameters).

    Parameters
    ----------
    images : ndarray uint8 (N, H, W, 3)
        The selected reconstruction of each input.
    candidates : ndarray uint8 (N, n_samples, H, W, 3)
        Every sample drawn for each input.
    scores : ndarray (N, n_samples) or None
        Cosine similarity of each candidate's embedding to the predicted embedding.
    """

    images: np.ndarray
    candidates: np.ndarray
    scores: np.ndarray | None


def _to_uint8(images) -> np.ndarray:
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        arr = np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)
    return arr


class Reconstructor:
    """Reconstruct images from predicted embeddings with a diffusion pipeline.

    Parameters
    ----------
    pipeline : diffusers pipeline or EmbeddingDiffusionPipeline
    mode : {"unclip", "tokens", "ip-adapter", "img2img"}
    num_inference_steps : int
    guidance_scale : float
    n_samples : int
        Candidates per input; with ``n_samples > 1`` the candidate whose embedding (by
        ``scorer``) is most cosine-similar to the predicted one is kept (best-of-N).
    scorer : callable, optional
        uint8 images (N, H, W, 3) -> embeddings (N, D); default ``pipeline.embedder``.
    strength : float
        img2img: fraction of the schedule noised and re-denoised.
    prompt_embeds, negative_prompt_embeds : tensor, optional
        Text conditioning for modes other than ``"tokens"`` (default: empty prompt / zeros).
    height, width : int, optional
    seed : int
    pipeline_kwargs : dict, optional
        Passed to every pipeline call.
    """

    def __init__(self, pipeline, mode: str = "unclip", *, num_inference_steps: int = 20,
                 guidance_scale: float = 1.0, n_samples: int = 1, scorer=None, strength: float = 0.6,
                 prompt_embeds=None, negative_prompt_embeds=None, height: int | None = None,
                 width: int | None = None, seed: int = 0, pipeline_kwargs: dict | None = None) -> None:
        self.pipeline = pipeline
        self.mode = mode
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.n_samples = n_samples
        self.scorer = scorer
        self.strength = strength
        self.prompt_embeds = prompt_embeds
        self.negative_prompt_embeds = negative_prompt_embeds
        self.height = height
        self.width = width
        self.seed = seed
        self.pipeline_kwargs = pipeline_kwargs

    def _is_project(self) -> bool:
        return hasattr(self.pipeline, "predict_noise")

    def _call_kwargs(self, emb, low) -> dict:
        import torch

        kw: dict = {"num_inference_steps": self.num_inference_steps,
                    "guidance_scale": self.guidance_scale, "output_type": "np"}
        if self.height is not None:
            kw["height"], kw["width"] = self.height, self.width or self.height
        kw.update(self.pipeline_kwargs or {})
        project = self._is_project()
        if self.mode == "unclip":
            kw["image_embeds"] = emb if project else torch.as_tensor(emb, dtype=torch.float32)
        elif self.mode == "tokens":
            t = torch.as_tensor(emb, dtype=torch.float32)
            if t.ndim != 3:
                raise DimensionError(
                    f"mode='tokens' needs token embeddings (N, n_tokens, dim); got shape {tuple(t.shape)!r}."
                )
            kw["prompt_embeds"] = t
            kw["negative_prompt_embeds"] = (torch.zeros_like(t) if self.negative_prompt_embeds is None
                                            else self.negative_prompt_embeds.expand_as(t))
        elif self.mode == "ip-adapter":
            t = torch.as_tensor(emb, dtype=torch.float32)
            t = t[:, None] if t.ndim == 2 else t  # (N, n_images=1, D)
            if self.guidance_scale > 1:
                t = torch.cat([torch.zeros_like(t), t])
            kw["ip_adapter_image_embeds"] = [t]
        else:  # img2img
            kw["image"] = low if project else torch.from_numpy(
                np.asarray(low, np.float32) / (255.0 if np.asarray(low).dtype == np.uint8 else 1.0)
            ).permute(0, 3, 1, 2)
            kw["strength"] = self.strength
            if emb is not None and project:
                kw["image_embeds"] = emb
        if not project and self.mode != "tokens":
            n = len(emb) if emb is not None else len(low)
            if self.prompt_embeds is not None:
                pe = torch.as_tensor(self.prompt_embeds, dtype=torch.float32)
                kw["prompt_embeds"] = pe.expand(n, -1, -1)
                ne = self.negative_prompt_embeds
                kw["negative_prompt_embeds"] = torch.zeros_like(kw["prompt_embeds"]) if ne is None else torch.as_tensor(ne).expand(n, -1, -1)
            else:
                kw["prompt"] = [""] * n
        return kw

    def reconstruct(self, embeds=None, *, low_level=None, score_target=None,
                    batch_size: int = 8) -> ReconstructionResult:
        """Reconstruct one image per row of ``embeds`` (and/or ``low_level``).

        Parameters
        ----------
        embeds : array-like (N, D) or (N, n_tokens, D), optional
            Predicted embeddings (an ``EmbeddingDecoder.predict`` DataArray works too).
        low_level : array-like (N, H, W, 3), optional
            Low-level image predictions for ``mode="img2img"``.
        score_target : array-like (N, D), optional
            What best-of-N compares candidates with (default: ``embeds``).
        batch_size : int
            Inputs per pipeline call.

        Returns
        -------
        ReconstructionResult
            The chosen image of each input, every candidate and their scores.
        """
        import torch

        check_option(self.mode, MODES, name="mode", func="Reconstructor")
        n_samples = check_positive_int(self.n_samples, name="n_samples", func="Reconstructor")
        emb = None if embeds is None else np.asarray(getattr(embeds, "values", embeds), dtype=np.float32)
        if self.mode == "img2img" and low_level is None:
            raise ValueError("Reconstructor(mode='img2img').reconstruct() needs low_level= images.")
        if self.mode != "img2img" and emb is None:
            raise ValueError(f"Reconstructor(mode={self.mode!r}).reconstruct() needs embeds=.")
        n = len(emb) if emb is not None else len(low_level)
        cands = []
        for start in progress(range(0, n, batch_size), desc="reconstruct", unit="batch"):
            sl = slice(start, min(n, start + batch_size))
            e = None if emb is None else emb[sl]
            low = None if low_level is None else np.asarray(low_level)[sl]
            gen = torch.Generator().manual_seed(int(self.seed) + start)
            kw = self._call_kwargs(e, low)
            out = self.pipeline(num_images_per_prompt=n_samples, generator=gen, **kw)
            imgs = _to_uint8(out.images)
            cands.append(imgs.reshape(sl.stop - sl.start, n_samples, *imgs.shape[1:]))
        candidates = np.concatenate(cands)
        scores = None
        chosen = np.zeros(n, dtype=int)
        scorer = self.scorer or getattr(self.pipeline, "embedder", None)
        target = score_target if score_target is not None else emb
        if n_samples > 1 and scorer is not None and target is not None:
            flat = scorer(candidates.reshape(-1, *candidates.shape[2:]))
            flat = flat.reshape(n, n_samples, -1)
            tgt = np.asarray(getattr(target, "values", target), dtype=np.float64).reshape(n, -1)
            if tgt.shape[1] != flat.shape[2]:
                raise DimensionError(
                    f"Best-of-N: the scorer gives {flat.shape[2]} values per image but the "
                    f"target embedding has {tgt.shape[1]}; pass score_target= in the scorer's space."
                )
            flat = flat / np.maximum(np.linalg.norm(flat, axis=2, keepdims=True), 1e-12)
            tgt = tgt / np.maximum(np.linalg.norm(tgt, axis=1, keepdims=True), 1e-12)
            scores = np.einsum("nsd,nd->ns", flat, tgt)
            chosen = scores.argmax(axis=1)
        images = candidates[np.arange(n), chosen]
        return ReconstructionResult(images=images, candidates=candidates, scores=scores)
