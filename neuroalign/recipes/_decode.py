"""The ``decode`` and ``generate`` recipe runners (``neuroalign decode`` / ``generate``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._files import atomic_dir, check_target
from neuroalign._logging import get_logger
from neuroalign.decoders._grid import save_grid
from neuroalign.exceptions import DataFormatError

__all__ = ["run_decode", "run_generate", "run_generate_recipe", "save_grid", "pipeline_embedder",
           "DECODE_KIND", "GENERATE_KIND"]

log = get_logger(__name__)

#: Marker kinds of the output folders (each replaced only by its own kind, with overwrite).
DECODE_KIND = "decode output"
GENERATE_KIND = "generate output"


def pipeline_embedder(pipe):
    """The image embedding a pipeline is conditioned on: ``pipe.embedder`` (project pipeline) or
    the CLIP image encoder of an unCLIP / IP-Adapter pipeline (``image_encoder`` +
    ``feature_extractor``)."""
    if getattr(pipe, "embedder", None) is not None:
        return pipe.embedder
    enc, proc = getattr(pipe, "image_encoder", None), getattr(pipe, "feature_extractor", None)
    if enc is None or proc is None:
        raise DataFormatError(
            f"{type(pipe).__name__} has no image embedder: expected 'embedder' or "
            "'image_encoder' + 'feature_extractor'."
        )

    def embed(images: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            pix = proc(images=list(images), return_tensors="pt").pixel_values
            return enc(pix.to(enc.dtype)).image_embeds.double().numpy()

    return embed


#: pipeline settings that would run code from the pipeline's folder or fetch it
_CODE_KEYS = ("trust_remote_code", "custom_pipeline", "custom_revision")


def _load_pipe(pipeline: dict, allow_download: bool = False):
    """The pipeline of a ``[pipeline]`` table."""
    from neuroalign.decoders._reconstruct import load_pipeline
    from neuroalign.decoders._tiny import tiny_pipeline

    p = dict(pipeline)
    code = [k for k in _CODE_KEYS if k in p]
    if code:
        raise DataFormatError(
            f"[pipeline] {code!r}: neuroalign does not run code from a pipeline folder or the Hub; "
            "remove the key(s)."
        )
    source = p.pop("source", "tiny")
    if source == "tiny":
        return tiny_pipeline(p.pop("path", None), **p)
    return load_pipeline(source, kind=p.pop("kind", None), allow_download=allow_download, **p)


def run_decode(cfg: dict, out: Path, *, overwrite: bool = False,
               allow_download: bool | None = None) -> dict[str, Any]:
    """Run a validated ``decode`` recipe: store -> EmbeddingDecoder -> Reconstructor -> metrics.

    Writes ``grid.png`` (ground truth row above reconstruction row), ``metrics.json`` and
    ``metrics.csv`` into ``out``, atomically. Returns the metrics: each reconstruction
    metric with its chance level (``"<metric> chance"``) and, for img2img, the same metric of
    the low-level input the diffusion step refined (``"<metric> low-level input"``), the
    retrieval scores, and ``"verdict"``: a sentence saying whether the reconstructions beat
    chance and whether the refinement improved on its input. Nothing touches the network
    unless the recipe says ``allow_download = true`` (or ``allow_download=True``).
    """
    from neuroalign.decoders._embedding import EmbeddingDecoder
    from neuroalign.decoders._reconstruct import Reconstructor
    from neuroalign.decoders._stimuli import store_images
    from neuroalign.decoders._verdict import check_reconstructions
    from neuroalign.decoders.metrics import feature_network
    from neuroalign.recipes._inputs import open_store, store_rois

    out = Path(out)
    allow = cfg["allow_download"] if allow_download is None else bool(allow_download)
    dcfg = dict(cfg.get("decoder", {}))
    # the decoder's voxels: the recipe's ROIs (all without), read into memory once they fit;
    # a decoder fitted on averages (average = true) needs only them, averaged from disk,
    # unless the low-level decoder (fitted on single trials) needs the trials too
    store = store_rois(open_store(cfg["store"])[0], cfg["store"])
    if dcfg.get("average", False) and cfg.get("lowlevel") is None:
        store = _averaged(store)
    store = _read(store, "decode")
    # the metric networks before the fits: missing weights stop the run before long work
    mcfg = cfg["metrics"]
    weights = mcfg["weights"]
    nets = {name: feature_network(name, weights=None if weights == "none" else weights,
                                  allow_download=allow)
            for name in mcfg["networks"]}
    avg = _averaged(store)
    images = store_images(avg)
    pipe = _load_pipe(cfg["pipeline"], allow)
    embed = pipeline_embedder(pipe)
    emb = embed(images)
    target = xr.DataArray(emb, dims=("stimulus", "embedding"),
                          coords={"stimulus_id": ("stimulus", avg.stimulus_id.values)})
    dec = EmbeddingDecoder(dcfg.pop("kind", "ridge"), **dcfg).fit(store.na.split("train"), target)
    test = store.na.split("test")
    retrieval = dec.score(test, target)
    test_avg = _averaged(test)
    pred = dec.predict(test_avg)
    order = {s: i for i, s in enumerate(avg.stimulus_id.values)}
    gt = images[[order[s] for s in test_avg.stimulus_id.values]]
    low = None
    if cfg.get("lowlevel") is not None:  # Brain-Diffuser / MindEye2-style low-level (blurry) image prediction
        from neuroalign.decoders.metrics import resize_images

        size = int(cfg["lowlevel"]["size"])
        thumbs = resize_images(images, size)
        tdec = EmbeddingDecoder("ridge").fit(store.na.split("train"), xr.DataArray(
            thumbs, dims=("stimulus", "y", "x", "rgb"),
            coords={"stimulus_id": ("stimulus", avg.stimulus_id.values)}))
        low = np.round(np.clip(tdec.predict(test_avg).values, 0, 1) * 255).astype(np.uint8)
    rcfg = dict(cfg.get("reconstruct", {}))
    rcfg_mode = rcfg.pop("mode", "unclip")
    rec = Reconstructor(pipe, rcfg_mode, scorer=embed, **rcfg).reconstruct(pred.values, low_level=low)
    # scored against chance and, for img2img, against the low-level input it refined
    check = check_reconstructions(rec.images, gt, baseline=low if rcfg_mode == "img2img" else None,
                                  baseline_name="low-level input", networks=nets,
                                  preset=mcfg["preset"])
    table = check.to_dict()
    verdict = table.pop("verdict")
    table.update({"retrieval forward": retrieval["forward"], "retrieval backward": retrieval["backward"],
                  "retrieval chance": retrieval["chance"], "n_test": len(gt), "verdict": verdict})
    with atomic_dir(out, overwrite=overwrite, kind=DECODE_KIND) as tmp:
        tmp.mkdir(parents=True)
        save_grid([gt[:16], rec.images[:16]], tmp / "grid.png")
        (tmp / "metrics.json").write_text(json.dumps(table, indent=2))
        (tmp / "metrics.csv").write_text("metric,value\n" + "".join(f"{k},{v}\n" for k, v in table.items()))
    return table


def _averaged(store: xr.Dataset) -> xr.Dataset:
    """One row per stimulus: the store's repetitions averaged (a store on disk: a block of
    neuroids at a time, lazily), or the store itself when it is already averaged."""
    from neuroalign.store import is_trial_level

    return store.na.average_repetitions() if is_trial_level(store) else store


def _read(store: xr.Dataset, command: str) -> xr.Dataset:
    """``store`` read into memory, after a memory preflight of its bytes: a store too large
    stops at once with a named error, before anything is read."""
    from neuroalign._preflight import check_memory, format_bytes

    shape = " x ".join(f"{n} {d}" for d, n in store["responses"].sizes.items())
    check_memory(int(store.nbytes), what=f"{command}: reading the store's responses ({shape}, "
                 f"{format_bytes(store.nbytes)}) into memory",
                 lower="[store] rois in the recipe (the neuroids it reads; all without), e.g. "
                       "rois = [\"nsdgeneral\"]" + (", or [decoder] average = true (one row per "
                                                    "stimulus)" if command == "decode" else ""))
    return store.load()


def run_generate_recipe(cfg: dict, out: Path, *, overwrite: bool = False,
                        allow_download: bool | None = None) -> dict[str, Any]:
    """Run a validated ``generate`` recipe: a differentiable encoder (a saved one, or a ridge
    read-out of a network's pooled layers fitted on the store's averaged responses) guides
    the pipeline towards ``[generate] roi``. See :func:`run_generate` for the outputs."""
    from neuroalign.decoders._encoder import DifferentiableRidgeEncoder, PooledFeatureExtractor
    from neuroalign.decoders._stimuli import store_images
    from neuroalign.recipes._inputs import SIMULATED_TRUTH, open_store, store_rois

    allow = cfg["allow_download"] if allow_download is None else bool(allow_download)
    ecfg, gcfg = cfg["encoder"], cfg["generate"]
    roi = gcfg["roi"]
    brain, stim_mean = None, None
    if "path" in ecfg:
        enc = _saved_encoder(Path(ecfg["path"]), allow)
    else:
        store, sim = open_store(cfg["store"])
        avg = _read(_averaged(store_rois(store, cfg["store"])), "generate")
        layers = tuple(ecfg["layers"])
        if ecfg["model"] == SIMULATED_TRUTH:
            if sim is None:
                raise DataFormatError(
                    f"[encoder] model = {SIMULATED_TRUTH!r} needs a simulated store ([store] path "
                    "a simulation folder, or [store.simulate]).")
            truth = sim.truth["model"]  # the ground-truth network: torchvision arch, seeded weights
            spec = {"source": "torchvision", "arch": truth["arch"], "weights": None, "seed": truth["seed"]}
            brain = sim.brain()
        else:
            source, _, arch = ecfg["model"].partition(":")
            if source != "torchvision" or not arch:
                raise DataFormatError(f"[encoder] model = {ecfg['model']!r}; expected "
                                      f"{SIMULATED_TRUTH!r} or 'torchvision:ARCH'.")
            weights = None if ecfg["weights"] == "random" else ecfg["weights"]
            spec = {"source": "torchvision", "arch": arch, "weights": weights, "seed": ecfg["seed"]}
        ext = PooledFeatureExtractor.from_spec(spec, layers)
        enc = DifferentiableRidgeEncoder.fit_store(ext, avg, alpha=ecfg["alpha"])
        if brain is not None:
            stim_mean = float(brain.roi_response(store_images(avg), roi).mean())
    pipe = _load_pipe(cfg["pipeline"], allow)
    return _generate(enc, roi, pipe, Path(out), n=gcfg["n"], scale=gcfg["scale"], steps=gcfg["steps"],
                     seed=gcfg["random_state"], brain=brain, stim_mean=stim_mean, overwrite=overwrite)


def _saved_encoder(path: Path, allow_download: bool):
    from neuroalign.decoders._encoder import DifferentiableRidgeEncoder

    if (path / "encoder.json").is_file():
        return DifferentiableRidgeEncoder.load(path, allow_download=allow_download)
    if path.is_file():
        raise _encoder_file_error(path)
    raise FileNotFoundError(
        f"[encoder] path = {str(path)!r}: expected a saved encoder folder (with encoder.json, "
        "written by DifferentiableRidgeEncoder.save)."
    )


def run_generate(encoder: str | Path, roi: str, *, n: int = 8, out: str | Path = "generate-out",
                 pipeline: Any = "tiny", scale: float = 10.0, steps: int = 12, seed: int = 0,
                 layers: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4"),
                 alpha: float = 10.0, overwrite: bool = False,
                 allow_download: bool = False) -> dict[str, Any]:
    """Guided generation for ``roi``; ``encoder`` is a simulated dataset folder (a ridge encoder
    is fitted on its averaged responses with the ground-truth network's pooled features) or a
    folder written by :meth:`DifferentiableRidgeEncoder.save` (JSON + safetensors; a pickled
    ``torch.save`` file is refused with :class:`UnsafeFileError` and never opened by torch).
    ``pipeline`` is a source (``"tiny"``, a local folder or cached Hugging Face id) or a loaded
    pipeline. Nothing touches the network unless ``allow_download``.

    Writes ``grid.png`` (unguided row above guided row, same seeds), ``activations.json`` and
    ``activation_trajectory.csv`` under ``out`` (atomically; an existing ``out`` is replaced
    only with ``overwrite=True`` and only when it is an earlier generate output); returns the
    activations (predicted, and the TRUE responses when ``encoder`` is a simulated dataset)."""
    from neuroalign.decoders._encoder import DifferentiableRidgeEncoder, PooledFeatureExtractor
    from neuroalign.decoders._stimuli import store_images

    encoder = Path(encoder)
    out = Path(out)
    check_target(out, overwrite=overwrite, kind=GENERATE_KIND,
                 inputs=[encoder, pipeline if isinstance(pipeline, str | Path) and pipeline != "tiny" else None])
    brain, stim_mean = None, None
    if (encoder / "truth.json").exists():
        from neuroalign.datasets.simulate import SimulationResult

        sim = SimulationResult.load(encoder)
        avg = sim.store().load().na.average_repetitions()
        truth = sim.truth["model"]  # the ground-truth network: torchvision arch, seeded weights
        ext = PooledFeatureExtractor.from_spec(
            {"source": "torchvision", "arch": truth["arch"], "weights": None, "seed": truth["seed"]}, layers)
        enc = DifferentiableRidgeEncoder.fit_store(ext, avg, alpha=alpha)
        brain = sim.brain()
        stim_mean = float(brain.roi_response(store_images(avg), roi).mean())
    elif (encoder / "encoder.json").is_file():
        enc = DifferentiableRidgeEncoder.load(encoder, allow_download=allow_download)
    elif encoder.is_file():
        raise _encoder_file_error(encoder)
    else:
        raise FileNotFoundError(
            f"--encoder {str(encoder)!r}: expected a simulated dataset folder (with truth.json) or "
            "a saved encoder folder (with encoder.json, written by DifferentiableRidgeEncoder.save)."
        )
    pipe = (_load_pipe({"source": pipeline}, allow_download)
            if isinstance(pipeline, str | Path) else pipeline)
    return _generate(enc, roi, pipe, out, n=n, scale=scale, steps=steps, seed=seed, brain=brain,
                     stim_mean=stim_mean, overwrite=overwrite)


def _generate(enc, roi: str, pipe, out: Path, *, n: int, scale: float, steps: int, seed: int,
              brain=None, stim_mean: float | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Guided and unguided images from the same seeds; ``grid.png``, ``activations.json`` and
    ``activation_trajectory.csv`` written into ``out`` (atomically)."""
    from neuroalign.decoders._guided import BrainGuidedGenerator

    gen = BrainGuidedGenerator(enc, roi, pipe, scale=scale, num_inference_steps=steps)
    guided = gen.generate(n, seed=seed)
    plain = gen.generate(n, seed=seed, scale=0.0)
    result: dict[str, Any] = {"roi": roi, "predicted_guided": guided.final_activation.tolist(),
                              "predicted_unguided": plain.final_activation.tolist()}
    if brain is not None:
        result["true_guided"] = brain.roi_response(guided.images, roi).tolist()
        result["true_unguided"] = brain.roi_response(plain.images, roi).tolist()
        result["true_stimulus_mean"] = stim_mean
    with atomic_dir(out, overwrite=overwrite, kind=GENERATE_KIND) as tmp:
        tmp.mkdir(parents=True)
        save_grid([plain.images, guided.images], tmp / "grid.png")
        np.savetxt(tmp / "activation_trajectory.csv", guided.activation, delimiter=",")
        (tmp / "activations.json").write_text(json.dumps(result, indent=2))
    return result


def _encoder_file_error(path: Path) -> Exception:
    """The error for an encoder given as a single file: never unpickled, only its first bytes
    are looked at to say what it is."""
    from neuroalign.exceptions import UnsafeFileError

    with open(path, "rb") as fh:
        head = fh.read(4)
    how = ("Save the encoder with DifferentiableRidgeEncoder.save(folder) (JSON + safetensors) "
           "and pass the folder.")
    if head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save zip archive, or a raw pickle
        return UnsafeFileError(
            f"--encoder {str(path)!r}: a pickled (torch.save) file. neuroalign never unpickles an "
            f"encoder: unpickling runs whatever code the file names. {how}"
        )
    return DataFormatError(f"--encoder {str(path)!r}: not a saved encoder. {how}")
