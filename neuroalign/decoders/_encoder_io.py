"""Saving and loading a :class:`DifferentiableRidgeEncoder` with no code in the files.

A saved encoder is a folder::

    encoder.json          format, version, the extractor's description (network source,
                          architecture, seed or weights reference, layers, input size,
                          normalisation), n_neuroids, n_features, neuroid ids, ROIs (indices)
    readout.safetensors   coef (n_neuroids, n_features) and intercept (n_neuroids,)
    network.safetensors   the network's weights, only when saved with network_weights=True

Loading reads JSON and safetensors only: nothing in the folder can run code. The network is
rebuilt from its description: torchvision architecture + seed (random weights, as the
simulated brain's ground-truth network), torchvision pretrained weights from the local
torch cache, or the folder's ``network.safetensors``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign.exceptions import DataFormatError

__all__ = ["FORMAT", "save_encoder", "load_encoder", "network_from_spec"]

FORMAT = "neuroalign.DifferentiableRidgeEncoder"
VERSION = 1
_NETWORK_KEYS = {"source", "arch", "weights", "seed"}


def _check_network_spec(spec: Any, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict) or spec.get("source") != "torchvision" or "arch" not in spec:
        raise DataFormatError(
            f"{where}: the network description {spec!r} is not supported; expected "
            "{'source': 'torchvision', 'arch': ..., 'weights': None | 'DEFAULT' | "
            "'<name>' | 'network.safetensors', 'seed': int}."
        )
    extra = sorted(set(spec) - _NETWORK_KEYS)
    if extra:
        raise DataFormatError(f"{where}: unknown network key(s) {extra!r}; expected some of "
                              f"{sorted(_NETWORK_KEYS)!r}.")
    return spec


def network_from_spec(spec: dict[str, Any], *, folder: str | os.PathLike | None = None,
                      allow_download: bool = False):
    """Build the network a description names (offline unless ``allow_download``)."""
    from neuroalign.features._weights import torchvision_model

    where = str(folder) if folder is not None else "network spec"
    spec = _check_network_spec(spec, where)
    weights = spec.get("weights")
    if isinstance(weights, str) and weights.endswith(".safetensors"):
        if folder is None or Path(weights).name != weights:
            raise DataFormatError(
                f"{where}: network weights {weights!r} must be a file name inside the saved "
                "encoder's folder."
            )
        weights = Path(folder) / weights
        if not weights.is_file():
            raise DataFormatError(f"{where}: the network weights file {weights.name!r} is missing.")
    module, _ = torchvision_model(str(spec["arch"]), weights, seed=spec.get("seed", 0),
                                  allow_download=allow_download, func="network_from_spec")
    return module.eval()


def save_encoder(encoder, path: str | os.PathLike, *, network_weights: bool = False,
                 overwrite: bool = False) -> Path:
    """Write ``encoder`` (a :class:`DifferentiableRidgeEncoder` on a
    :class:`PooledFeatureExtractor` with a network description) to the folder ``path``."""
    from safetensors.torch import save_file

    from neuroalign._files import atomic_dir

    ext = encoder.extractor
    spec = getattr(ext, "network_spec", None)
    if spec is None:
        raise ValueError(
            f"DifferentiableRidgeEncoder.save(): its extractor ({type(ext).__name__}) has no JSON "
            "description of its network. Build it with PooledFeatureExtractor.from_spec({'source': "
            "'torchvision', 'arch': ..., 'seed': ...}, layers) (or pass network_spec=); "
            "neuroalign never saves code or pickles."
        )
    spec = dict(_check_network_spec(spec, "DifferentiableRidgeEncoder.save()"))
    if network_weights:
        spec["weights"] = "network.safetensors"
    n, f = (int(s) for s in encoder.coef.shape)
    rois = {}
    for name, sel in encoder.rois.items():
        sel = np.asarray(sel)
        idx = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(np.int64).reshape(-1)
        rois[str(name)] = [int(i) for i in idx]
    meta = {
        "format": FORMAT, "version": VERSION,
        "extractor": {"kind": "PooledFeatureExtractor", "network": spec, "layers": list(ext.layers),
                      "input_size": int(ext.input_size),
                      "mean": [float(v) for v in ext.mean.reshape(-1)],
                      "std": [float(v) for v in ext.std.reshape(-1)]},
        "n_neuroids": n, "n_features": f,
        "neuroid_ids": None if encoder.neuroid_ids is None else [str(v) for v in encoder.neuroid_ids],
        "rois": rois,
    }
    path = Path(path)
    with atomic_dir(path, overwrite=overwrite, kind="saved encoder") as tmp:
        tmp.mkdir()
        (tmp / "encoder.json").write_text(json.dumps(meta, indent=1))
        save_file({"coef": encoder.coef.detach().cpu().contiguous(),
                   "intercept": encoder.intercept.detach().cpu().contiguous()},
                  str(tmp / "readout.safetensors"))
        if network_weights:
            state = {k: v.detach().cpu().contiguous() for k, v in ext.model.state_dict().items()}
            save_file(state, str(tmp / "network.safetensors"))
    return path


def _read_meta(folder: Path) -> dict[str, Any]:
    meta_file = folder / "encoder.json"
    if not meta_file.is_file():
        raise DataFormatError(
            f"{folder}: not a saved encoder (no encoder.json); expected a folder written by "
            "DifferentiableRidgeEncoder.save()."
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataFormatError(f"{meta_file}: not valid JSON ({err}).") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataFormatError(f"{meta_file}: format {got!r}; expected {FORMAT!r}.")
    if meta.get("version") != VERSION:
        raise DataFormatError(f"{meta_file}: version {meta.get('version')!r}; this neuroalign reads "
                              f"version {VERSION}.")
    missing = [k for k in ("extractor", "n_neuroids", "n_features", "rois") if k not in meta]
    if missing:
        raise DataFormatError(f"{meta_file}: missing key(s) {missing!r}.")
    return meta


def load_encoder(path: str | os.PathLike, *, allow_download: bool = False):
    """Read a folder written by :func:`save_encoder`; returns the encoder in eval mode."""
    from neuroalign.decoders._encoder import DifferentiableRidgeEncoder, PooledFeatureExtractor
    from neuroalign.features._weights import load_state_file

    folder = Path(path)
    meta = _read_meta(folder)
    ex = meta["extractor"]
    if not isinstance(ex, dict) or ex.get("kind") != "PooledFeatureExtractor":
        raise DataFormatError(f"{folder / 'encoder.json'}: extractor kind "
                              f"{ex.get('kind') if isinstance(ex, dict) else ex!r}; expected "
                              "'PooledFeatureExtractor'.")
    readout = load_state_file(folder / "readout.safetensors")
    n, f = int(meta["n_neuroids"]), int(meta["n_features"])
    coef, intercept = readout.get("coef"), readout.get("intercept")
    if coef is None or intercept is None or tuple(coef.shape) != (n, f) or tuple(intercept.shape) != (n,):
        raise DataFormatError(
            f"{folder / 'readout.safetensors'}: expected 'coef' ({n}, {f}) and 'intercept' ({n},); "
            f"got {({k: tuple(v.shape) for k, v in readout.items()})!r}."
        )
    rois = {}
    for name, idx in meta["rois"].items():
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise DataFormatError(f"{folder / 'encoder.json'}: ROI {name!r} has indices outside "
                                  f"[0, {n}).")
        mask = np.zeros(n, bool)
        mask[idx] = True
        rois[name] = mask
    net = network_from_spec(ex["network"], folder=folder, allow_download=allow_download)
    ext = PooledFeatureExtractor(net, ex["layers"], input_size=int(ex["input_size"]),
                                 mean=tuple(ex["mean"]), std=tuple(ex["std"]),
                                 network_spec=ex["network"])
    enc = DifferentiableRidgeEncoder(ext, coef.numpy(), intercept.numpy(), rois=rois,
                                     neuroid_ids=meta.get("neuroid_ids"))
    return enc.eval()
