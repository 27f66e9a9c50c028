"""``extract``: layer activations of a network for a stimulus set, as a features Dataset."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option, check_positive_int
from neuroalign._version import __version__
from neuroalign.features._cache import FeatureCache
from neuroalign.features._hooks import POOLINGS, LayerRecorder, resolve_layers
from neuroalign.features._language import encode_texts, story_inputs
from neuroalign.features._sources import DEFAULT, FeatureModel, load_model, module_fingerprint
from neuroalign.stimuli import StimulusSet
from neuroalign.store._join import index_stimuli

__all__ = ["extract", "list_layers", "block_layers"]

log = get_logger(__name__)

DTYPES = ("float32", "float16", "float64")

#: Version of the extraction rules, part of every cache key: 2 takes a layer's output at its
#: last call of the forward pass, the class token of torchvision ViTs, and torchvision's
#: Resize(int)/CenterCrop sizes; 3 reads torchvision's (B, H, W, C) feature maps (Swin,
#: ConvNeXt blocks) channels last. A cache written under other rules is never a hit.
RULES = 3


def list_layers(model: Any, **kwargs: Any) -> list[str]:
    """Names of the hookable layers of ``model`` (a spec or a module).

    ``kwargs`` go to :func:`load_model`; by default a spec is built with random weights
    (layer names do not depend on the weights), so no download is needed.

    Parameters
    ----------
    model : str, torch.nn.Module or FeatureModel
        A spec (see :func:`extract`) or a module.
    **kwargs
        Passed to :func:`load_model` for a spec.

    Returns
    -------
    list of str
        The names to pass as ``layers=`` to :func:`extract`, in ``named_modules()`` order. A
        module run several times per forward pass is listed once; its features are its
        output at its last call.

    Examples
    --------
    >>> list_layers("torchvision:resnet18")[:3]
    ['conv1', 'bn1', 'relu']
    """
    from neuroalign.features._hooks import list_layers as _names

    if isinstance(model, str):
        kwargs.setdefault("weights", None)
    return _names(load_model(model, **kwargs).module)


def block_layers(model: Any, modality: str | None = None, **kwargs: Any) -> list[str]:
    """The blocks of ``model`` (a spec, module or FeatureModel) for a layer sweep.

    Transformer layers (the children of the largest list of identical blocks, in the tower of
    ``modality`` for two-tower models such as CLIP), else the top-level stages.

    Parameters
    ----------
    model : str, torch.nn.Module or FeatureModel
        A spec (see :func:`extract`) or a module.
    modality : {"image", "text"}, optional
        The tower of a two-tower model.
    **kwargs
        Passed to :func:`load_model` for a spec.

    Returns
    -------
    list of str
        Layer names, input to output.

    Examples
    --------
    >>> block_layers("torchvision:resnet18")
    ['conv1', 'bn1', 'layer1', 'layer2', 'layer3', 'layer4', 'fc']
    """
    from neuroalign.features._hooks import block_layers as _blocks

    if isinstance(model, str):
        kwargs.setdefault("weights", None)
    return _blocks(load_model(model, **kwargs).module, modality)


def _as_stimuli(stimuli: Any) -> StimulusSet:
    if isinstance(stimuli, StimulusSet):
        return stimuli
    if isinstance(stimuli, xr.Dataset):
        return StimulusSet.from_store(stimuli)
    raise TypeError(
        f"Invalid value for 'stimuli' in extract(): {type(stimuli).__name__}. Expected a "
        "StimulusSet or a store (xr.Dataset with a 'stimulus_set' attribute)."
    )


def _spec_fields(model, weights, seed, transform, tokenizer) -> dict[str, Any]:
    if isinstance(model, str):
        wid = "random" if weights is None else (
            str(weights) if weights == DEFAULT else f"file:{os.path.abspath(weights)}")
        return {"model": model, "weights": wid,
                "seed": (0 if seed is None else seed) if weights is None else None,
                "transform": transform if transform is None or isinstance(transform, str)
                else getattr(transform, "describe", lambda: repr(transform))()}
    if isinstance(model, FeatureModel):  # its weights as they are now, and how it is read
        return {"model": model.name, "weights": model.weights,
                "values": module_fingerprint(model.module),
                "tokens": [model.n_prefix_tokens, list(model.patch_grid or ()), model.causal],
                "transform": model.describe_transform()}
    tf = None if transform is None else (transform if isinstance(transform, str) else
                                         getattr(transform, "describe", lambda: repr(transform))())
    tok = None if tokenizer is None else getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    return {"model": f"module:{type(model).__qualname__}", "weights": module_fingerprint(model),
            "transform": tf, "tokenizer": tok}


def _prepare(fm: FeatureModel, stim: StimulusSet, items: list[Any], start: int, stop: int,
             context: int | None, story_words, device):
    """Model inputs and the forward function for one batch."""
    if stim.modality == "image":
        x = fm.transform(items).to(device)
        if fm.extra.get("channels_last"):
            x = x.contiguous(memory_format=__import__("torch").channels_last)
        return fm.image_forward, x, None
    if context is not None:
        texts, spans = story_inputs(items, stim.source["story"][start:stop],
                                    stim.source["word_index"][start:stop], story_words, context)
    else:
        texts, spans = items, None
    inputs, select = encode_texts(fm.tokenizer, texts, spans=spans)
    return fm.text_forward, {k: v.to(device) for k, v in inputs.items()}, select


def _token_coords(name, tokdim, n_tokens, grid, prefix) -> dict[str, Any]:
    rows = np.full(n_tokens, -1)
    cols = np.full(n_tokens, -1)
    if grid is not None and n_tokens - prefix == grid[0] * grid[1]:
        r, c = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
        rows[prefix:], cols[prefix:] = r, c
    return {f"{tokdim}_row": (tokdim, rows), f"{tokdim}_col": (tokdim, cols)}


def extract(
    model: Any,
    stimuli: Any,
    *,
    layers: str | Sequence[str],
    pooling: str | None = "auto",
    batch_size: int = 32,
    device: str = "auto",
    cache: str | os.PathLike | None = None,
    weights: Any = DEFAULT,
    seed: int | None = None,
    transform: Any = None,
    tokenizer: Any = None,
    context: int | None = None,
    dtype: str = "float32",
    allow_download: bool = False,
    overwrite: bool = False,
    stop_early: bool = True,
    channels_last: bool | None = None,
) -> xr.Dataset:
    """Layer activations of ``model`` for every stimulus, collected by forward hooks.

    Parameters
    ----------
    model : str or torch.nn.Module
        A spec (``"open_clip:ViT-B-32/openai"``, ``"hf:facebook/dinov2-small"``,
        ``"hf:gpt2"``, ``"torchvision:resnet50"``, ``"minilm"``) or a module with its
        ``transform`` (images) or ``tokenizer`` (text).
    stimuli : StimulusSet or xr.Dataset
        The stimuli (a store is turned into its stimulus set with
        :meth:`StimulusSet.from_store`).
    layers : str or sequence of str
        Module names (see :func:`list_layers`), or ``"blocks"`` for every block (a sweep).
        A layer's features are the module's output at its last call of the forward pass:
        a module run several times per pass (the one ReLU of a torchvision ResNet block)
        gives its last output (there, the block's output), whatever else is requested.
    pooling : {"auto", "cls", "mean", "spatial", "last"} or None
        Images: ``"auto"`` takes the CLS token of vision transformers and the spatial average
        of feature maps; ``"mean"`` averages patch tokens (or positions); ``None`` keeps
        token-level features ``(stimulus, token, unit)``. Text: ``"auto"`` is the mean over
        tokens for encoders and the last token for causal LMs; word-level stimuli pool the
        word's sub-word tokens.
    batch_size : int
        Stimuli per forward pass (and per cache chunk).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    cache : path-like, optional
        A zarr folder. Written batch by batch; an interrupted run resumes where it stopped;
        a complete cache with the same key (model, weights, layers, pooling, transform,
        stimulus-set hash, version of the extraction rules, ...) is returned without running
        the model.
    weights : "default", None or path
        Pretrained weights of the spec, random weights (``None``, seeded by ``seed``), or a
        local checkpoint.
    seed : int, optional
        Seed of random weights (default 0). ``"torchvision:resnet18"`` with ``weights=None,
        seed=0`` is the simulation's ground-truth network.
    transform : str, ImageTransform or callable, optional
        Image preprocessing (default: the model's own; ``"simulation"`` is the simulated
        dataset's preprocessing).
    tokenizer : optional
        Tokenizer for a text module passed directly.
    context : int, optional
        Word-level stimuli (:meth:`StimulusSet.from_story`): number of preceding words of the
        story fed with each word.
    dtype : {"float32", "float16", "float64"}
        Storage dtype.
    allow_download : bool
        Allow downloading weights (never by default).
    overwrite : bool
        Replace a cache written with other settings (only a feature cache neuroalign wrote;
        a folder of the user's at ``cache`` is never replaced).
    stop_early : bool
        Skip the rest of the network once every requested layer has run its last call. The
        first batch runs the whole network and counts each layer's calls; later batches stop
        after that many (a count that changes between batches raises ``RuntimeError``). The
        features are the same either way: ``stop_early`` is not part of the cache key.
    channels_last : bool, optional
        Run convolutional networks in channels-last memory format (faster on CPU). Default:
        on for CPU image extraction with a CNN; the module's format is restored afterwards.

    Returns
    -------
    xr.Dataset
        One variable per layer, dims ``("stimulus", "<layer>_unit")`` or
        ``("stimulus", "token", "<layer>_unit")``; coordinate ``stimulus_id`` (an xarray
        index: ``features.sel(stimulus_id=[...])``; the stimulus set's source identifiers
        are coordinates too) on ``stimulus``; attrs ``model``, ``weights``, ``transform``,
        ``stimulus_set_hash``, ``layers``, ``pooling``.

    Raises
    ------
    ValueError
        Unknown model spec, unknown layer (with close matches), or stimuli of a modality the
        model does not take.
    WeightsNotAvailableError
        Pretrained weights are not available offline.
    CacheMismatchError
        ``cache`` holds features computed with other settings.
    OutputExistsError
        ``cache`` is a file, or a folder neuroalign did not write (left untouched).
    TargetLockedError
        Another process is writing ``cache``.
    StoreCorruptError
        The complete cache at ``cache`` is damaged (a chunk missing, truncated or altered).
    OSError
        A write failed (e.g. a full disk); the message names the cache and the batch, and
        the same call again resumes from the batches already written.
    RuntimeError
        A requested layer did not run in the forward pass, or (``stop_early=True``) its
        number of calls per pass changed between batches.

    Examples
    --------
    Any ``torch.nn.Module`` works, its layers named as in ``named_modules()``:

    >>> import numpy as np
    >>> import torch
    >>> from neuroalign.features import extract
    >>> from neuroalign.stimuli import StimulusSet
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3))
    >>> images = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    >>> stimuli = StimulusSet.from_arrays(images, [f"img{i}" for i in range(5)])
    >>> features = extract(net, stimuli, layers=["0", "2"], transform="simulation", device="cpu")
    >>> list(features.data_vars), dict(features.sizes)
    (['0', '2'], {'stimulus': 5, '0_unit': 4, '2_unit': 6})
    >>> features["stimulus_id"].values.tolist()
    ['img0', 'img1', 'img2', 'img3', 'img4']
    """

    check_option(pooling, POOLINGS, name="pooling", func="extract")
    batch_size = check_positive_int(batch_size, name="batch_size", func="extract")
    check_option(dtype, DTYPES, name="dtype", func="extract")
    stim = _as_stimuli(stimuli)
    if context is not None:
        context = check_positive_int(context, name="context", func="extract", minimum=0)
        if stim.modality != "text" or "word_index" not in stim.source:
            raise ValueError(
                f"Invalid value for 'context' in extract(): {context!r} needs word-level text "
                "stimuli (StimulusSet.from_story()); got "
                f"{stim.modality} stimuli without 'word_index'."
            )
    if stim.modality == "text" and pooling is None:
        raise ValueError(
            "Invalid value for 'pooling' in extract(): None with text stimuli. Token-level "
            "features are for images; for word-level text features use "
            "StimulusSet.from_story() with extract(..., context=N)."
        )
    n = len(stim)
    if n == 0:
        raise ValueError("Invalid value for 'stimuli' in extract(): an empty stimulus set.")
    stim_hash = stim.content_hash()  # once: it reads the content (the key and the attrs)
    fields = {**_spec_fields(model, weights, seed, transform, tokenizer),
              "layers": layers if isinstance(layers, str) else list(layers),
              "pooling": pooling, "context": context, "dtype": dtype,
              "stimuli": stim_hash, "n_stimuli": n, "rules": RULES}
    store = FeatureCache(cache, fields, overwrite=overwrite) if cache is not None else None
    # one extraction at a time per cache: the lock is held from the check to the rename
    with store.locked() if store is not None else contextlib.nullcontext():
        if store is not None and store.hit():
            log.info("feature cache hit: %s", store.path)
            return store.open()
        return _compute(store, model, stim, n, layers=layers, pooling=pooling,
                        batch_size=batch_size, device=device, weights=weights, seed=seed,
                        transform=transform, tokenizer=tokenizer, context=context, dtype=dtype,
                        allow_download=allow_download, stop_early=stop_early,
                        channels_last=channels_last, stim_hash=stim_hash)


def _compute(store: FeatureCache | None, model: Any, stim: StimulusSet, n: int, *, layers,
             pooling, batch_size, device, weights, seed, transform, tokenizer, context, dtype,
             allow_download, stop_early, channels_last, stim_hash: str) -> xr.Dataset:
    """The forward passes of :func:`extract`, batch by batch (into ``store`` when given)."""
    import torch

    fm = load_model(model, weights=weights, seed=seed, transform=transform, tokenizer=tokenizer,
                    allow_download=allow_download)
    if stim.modality not in fm.modalities:
        raise ValueError(
            f"Invalid value for 'stimuli' in extract(): {stim.modality} stimuli, but model "
            f"{fm.name!r} takes {' or '.join(fm.modalities)} stimuli."
        )
    names = resolve_layers(fm.module, layers, modality=stim.modality)
    dev = resolve_device(device)
    fm.module.to(dev)
    done = store.resume() if store is not None else set()
    if store is not None and store.initialised and store.batch_size != batch_size:
        log.info("resuming with the interrupted run's batch_size=%d (chunks on disk)",
                 store.batch_size)
        batch_size = store.batch_size
    story_words = None
    if context is not None:
        story_words = {}
        for s, p, w in zip(stim.source["story"], stim.source["word_index"], stim.source["word"],
                           strict=True):
            story_words.setdefault(s, {})[p] = w

    recorder = LayerRecorder(fm.module, names, pooling=pooling, modality=stim.modality,
                             n_prefix_tokens=fm.n_prefix_tokens, causal=fm.causal,
                             stop_early=stop_early)
    np_dtype = np.dtype(dtype)
    buffers: dict[str, np.ndarray] = {}
    dims: dict[str, tuple[str, ...]] = {}
    var_attrs: dict[str, dict[str, Any]] = {}
    token_coords: dict[str, Any] = {}
    starts = [s for s in range(0, n, batch_size) if s not in done]
    if store is not None and store.initialised:
        existing = xr.open_zarr(store.partial, consolidated=False, zarr_format=2)
        dims = {k: tuple(v.dims) for k, v in existing.data_vars.items()}
        existing.close()
    use_cl = channels_last
    if use_cl is None:
        use_cl = dev == "cpu" and stim.modality == "image" and _is_cnn(fm)
    with recorder, torch.inference_mode(), _memory_format(fm, bool(use_cl)):
        for start in progress(starts, desc=f"features {fm.name}", total=len(starts), unit="batch"):
            stop = min(start + batch_size, n)
            items = stim.load(range(start, stop))
            forward, inputs, select = _prepare(fm, stim, items, start, stop, context,
                                               story_words, dev)
            out = recorder.run(forward, inputs, select)
            arrays = {name: out[name].float().cpu().numpy().astype(np_dtype, copy=False)
                      for name in names}
            if not dims:
                dims, var_attrs, token_coords = _layout(names, arrays, recorder, fm)
            if store is not None and not store.initialised:
                store.initialise(_template(stim, names, arrays, dims, var_attrs, token_coords,
                                           n, np_dtype), chunk=batch_size)
            if store is not None:
                store.write(start, stop, arrays, dims)
            else:
                for name in names:
                    if name not in buffers:
                        buffers[name] = np.empty((n, *arrays[name].shape[1:]), dtype=np_dtype)
                    buffers[name][start:stop] = arrays[name]
    attrs = {
        "model": fm.name, "weights": fm.weights, "transform": fm.describe_transform(),
        "stimulus_set_hash": stim_hash, "modality": stim.modality,
        "layers": list(names), "pooling": str(pooling), "context": -1 if context is None else context,
        "neuroalign_version": __version__,
    }
    if store is not None:
        attrs["cache_key"] = store.key
        return store.finalise(attrs)
    ds = _template(stim, names, buffers, dims, var_attrs, token_coords, n, np_dtype, fill=True)
    ds.attrs.update(attrs)
    return ds


def _is_cnn(fm: FeatureModel) -> bool:
    """A network whose compute is mostly 2-d convolutions (not a ViT patch embedding)."""
    import torch

    convs = [m for m in fm.module.modules() if isinstance(m, torch.nn.Conv2d)]
    return len(convs) >= 4


class _memory_format:
    """Temporarily run ``fm`` in channels-last memory format (restored on exit)."""

    def __init__(self, fm: FeatureModel, enabled: bool) -> None:
        self.fm, self.enabled = fm, enabled

    def __enter__(self) -> None:
        import torch

        if self.enabled:
            self.fm.module.to(memory_format=torch.channels_last)
            self.fm.extra["channels_last"] = True

    def __exit__(self, *exc) -> None:
        import torch

        if self.enabled:
            self.fm.module.to(memory_format=torch.contiguous_format)
            self.fm.extra.pop("channels_last", None)


def _layout(names, arrays, recorder: LayerRecorder, fm: FeatureModel):
    dims: dict[str, tuple[str, ...]] = {}
    var_attrs: dict[str, dict[str, Any]] = {}
    token_coords: dict[str, Any] = {}
    n_tok = {name: arrays[name].shape[1] for name in names if arrays[name].ndim == 3}
    shared = len(set(n_tok.values())) <= 1
    for name in names:
        arr = arrays[name]
        if arr.ndim == 2:
            dims[name] = ("stimulus", f"{name}_unit")
            continue
        tokdim = "token" if shared else f"{name}_token"
        dims[name] = ("stimulus", tokdim, f"{name}_unit")
        grid = recorder.grids.get(name, fm.patch_grid)
        prefix = 0 if name in recorder.grids else fm.n_prefix_tokens
        var_attrs[name] = {"token_grid": list(grid) if grid else [], "n_prefix_tokens": int(prefix)}
        token_coords.update(_token_coords(name, tokdim, arr.shape[1], grid, prefix))
    return dims, var_attrs, token_coords


def _template(stim, names, arrays, dims, var_attrs, token_coords, n, np_dtype, fill=False):
    coords: dict[str, Any] = {"stimulus_id": ("stimulus", np.array(stim.ids, dtype=str))}
    for key, values in stim.source.items():
        coords[key] = ("stimulus", np.asarray(values))
    coords.update(token_coords)
    data = {}
    for name in names:
        arr = arrays[name]
        if fill:
            values = arr
        else:
            import dask.array as da

            values = da.zeros((n, *arr.shape[1:]), dtype=np_dtype)
        data[name] = xr.Variable(dims[name], values, attrs=var_attrs.get(name, {}))
    return index_stimuli(xr.Dataset(data, coords=coords))
