"""What recipes read: stores (simulated on demand), feature sets, model files, results.

This module is the only place where a recipe's store may be simulated: when ``[store] path``
does not exist and lies inside ``[store.simulate] out``, the simulated brain is written to
``out`` first; a missing store anywhere else is an error, never replaced by a simulation.
A simulation in ``out`` is reused only when it was made with the table's settings; one made
with other settings (neuroalign's own output) is made again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign.exceptions import CacheMismatchError, DataFormatError, WeightsNotAvailableError

__all__ = ["open_store", "store_rois", "feature_set", "load_array", "load_results", "SIMULATED_TRUTH",
           "cluster_spec"]

log = get_logger(__name__)

#: The feature model name that means "the simulated brain's own generating network".
SIMULATED_TRUTH = "simulated-truth"


def open_store(spec: dict) -> tuple[xr.Dataset, Any]:
    """The store of a ``[store]`` table, and the simulation it came from (or None).

    A store at ``path`` is opened; a missing one is simulated when ``path`` lies inside
    ``[store.simulate] out``. A simulation already in ``out`` is reused when it was made
    with the table's settings (its ``truth.json["settings"]``), and made again otherwise
    (it is neuroalign's own output; a folder holding files of the user's is never
    replaced), so that the store read is always the one the recipe describes.
    """
    from neuroalign.store import open_store as _open

    path = Path(spec["path"])
    sim_cfg = dict(spec.get("simulate") or {})
    if sim_cfg:
        root = Path(sim_cfg.pop("out"))
        if root.resolve() == path.resolve() or root.resolve() in path.resolve().parents:
            from neuroalign.datasets.simulate import (
                SimulationResult,
                simulate,
                simulation_settings,
            )

            if (root / "truth.json").exists():
                sim = SimulationResult.load(root)
                made, wanted = sim.truth.get("settings"), simulation_settings(**sim_cfg)
                if made != wanted:
                    log.info("[store.simulate] %s: the simulation there was made with other "
                             "settings (%s): simulating again", root, _changed(made, wanted))
                    sim = simulate(root, overwrite=True, **sim_cfg)
            elif path.exists():
                return _open(path), None
            else:
                log.info("[store] path = %r does not exist: simulating into %s", str(path), root)
                sim = simulate(root, **sim_cfg)
            if path.resolve() not in (root.resolve(), sim.store_path.resolve()) and not path.exists():
                raise FileNotFoundError(
                    f"[store] path = {str(path)!r} does not exist; the simulation in {str(root)!r} "
                    f"writes its store at {str(sim.store_path)!r}.")
            return sim.store(), sim
    if not path.exists():
        hint = ("" if not sim_cfg else
                " (the [store.simulate] table only makes a store inside its 'out' folder)")
        raise FileNotFoundError(f"[store] path = {str(path)!r} does not exist{hint}.")
    if (path / "truth.json").exists():  # a simulation folder given as the store
        from neuroalign.datasets.simulate import SimulationResult

        sim = SimulationResult.load(path)
        return sim.store(), sim
    return _open(path), None


def _changed(made: dict | None, wanted: dict) -> str:
    if made is None:
        return "not recorded: made by an earlier version"
    keys = sorted(set(made) | set(wanted))
    return "; ".join(f"{k}: {made.get(k)!r} there, {wanted.get(k)!r} asked"
                     for k in keys if made.get(k) != wanted.get(k))


def store_rois(store: xr.Dataset, spec: dict, *, only: bool = False) -> xr.Dataset:
    """The neuroids of the ``[store] rois`` of ``spec`` (their union; all without ``rois``),
    selected before anything is read.

    ``only=True`` also drops the ``roi_*`` coordinates of the ROIs not asked for, so that
    nothing downstream (per-ROI summaries, results) reports them: an ROI that overlaps a
    requested one would otherwise be summarised over the overlap alone, under its own name.
    """
    from neuroalign.store import ROI_PREFIX

    rois = spec.get("rois")
    if not rois:
        return store
    rois = [rois] if isinstance(rois, str) else list(rois)
    out = store.na.roi(rois)
    if only:
        keep = {ROI_PREFIX + r.removeprefix(ROI_PREFIX) for r in rois}
        out = out.drop_vars([c for c in out.coords if str(c).startswith(ROI_PREFIX)
                             and str(c) not in keep])
    return out


#: Keys of a ``[features]`` table that change how features are computed, not what they
#: are (left out of the default cache's name; extract's cache key leaves them out too).
_NOT_IN_CACHE_NAME = ("cache", "batch_size", "device", "allow_download", "stop_early",
                      "channels_last", "show_progress")


def default_cache(spec: dict, cache_dir: Path) -> Path:
    """The default feature cache of a ``[features]`` table: ``cache_dir/<model>-<hash>.zarr``,
    named by everything in the table that makes the features (model, layers, weights, seed,
    transform, pooling ...), so that two feature sets never share a cache."""
    import hashlib
    import json

    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(spec["model"]))
    key = {k: v for k, v in spec.items() if k not in _NOT_IN_CACHE_NAME}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{slug}-{digest}.zarr"


def feature_set(spec: dict, store: xr.Dataset, cache_dir: Path | None = None, *,
                overwrite: bool = False, table: str = "features") -> xr.Dataset:
    """The features of a ``[features]`` table for the stimuli of ``store``.

    Extracted features are cached (``[features] cache``, default :func:`default_cache` in
    ``cache_dir``) and reused only when the cache's key matches (model, weights, layers,
    stimuli ...). A cache written for other settings (the store's stimuli changed) is an
    error unless ``overwrite`` (the recipe's ``--overwrite``): then it is computed again.
    ``table`` names the table in messages (``"features.spaces.vision"``).
    """
    if "path" in spec:
        return _feature_file(spec)
    model = spec["model"]
    layers = list(spec["layers"]) if isinstance(spec["layers"], list) else [spec["layers"]]
    if model == SIMULATED_TRUTH:
        from neuroalign.recipes._truth_features import (
            simulated_truth_features,
            simulated_truth_tokens,
        )

        if spec.get("tokens"):
            if len(layers) != 1:
                raise DataFormatError(f"[features] tokens = true needs exactly one layer; got {layers!r}.")
            return simulated_truth_tokens(store, layers[0], grid=int(spec.get("grid", 7)))
        return simulated_truth_features(store, layers)
    from neuroalign.features import extract

    kwargs = {k: v for k, v in spec.items() if k not in ("model", "layers", "tokens", "grid", "spaces")}
    if kwargs.get("weights") == "random":  # TOML has no None: random weights, seeded by 'seed'
        kwargs["weights"] = None
    if "cache" not in kwargs and cache_dir is not None:  # reruns reuse the features
        kwargs["cache"] = default_cache(spec, cache_dir)
    if spec.get("tokens"):
        kwargs["pooling"] = None
    try:
        return extract(model, store, layers=layers, **kwargs)
    except CacheMismatchError:
        if not overwrite or "cache" not in kwargs:
            raise
    except WeightsNotAvailableError as err:  # the recipe's keys, not extract()'s arguments
        raise WeightsNotAvailableError(
            f"[{table}] model = {model!r}, weights = {spec.get('weights', 'default')!r}: {err} "
            f"In this recipe: {table}.allow_download = true (--set {table}.allow_download=true) "
            f'lets neuroalign download them; {table}.weights = "random" uses random weights.'
        ) from None
    # --overwrite: a stale cache (a feature cache neuroalign wrote) is computed again
    log.info("feature cache %s was written for other settings: computing it again", kwargs["cache"])
    return extract(model, store, layers=layers, overwrite=True, **kwargs)


def _feature_file(spec: dict) -> xr.Dataset:
    path = Path(spec["path"])
    if not path.exists():
        raise FileNotFoundError(f"[features] path = {str(path)!r} does not exist.")
    from neuroalign.store._io import open_dataset_file

    ds = open_dataset_file(path, what="features zarr")
    if "stimulus_id" not in ds.coords:
        raise DataFormatError(f"[features] path = {str(path)!r}: no 'stimulus_id' coordinate; "
                              f"its coordinates are {list(ds.coords)!r}.")
    layers = spec.get("layers")
    if layers is not None:
        layers = [layers] if isinstance(layers, str) else list(layers)
        missing = [name for name in layers if name not in ds.data_vars]
        if missing:
            raise DataFormatError(f"[features] path = {str(path)!r} has no layer(s) {missing!r}; it "
                                  f"has {list(ds.data_vars)!r}.")
        ds = ds[layers]
    return ds.load()


def _split_spec(spec: str) -> tuple[Path, str]:
    if Path(spec).exists():
        return Path(spec), ""
    head, sep, var = spec.rpartition(":")
    if sep and head and "/" not in var and len(head) > 1:
        return Path(head), var
    return Path(spec), ""


def load_array(spec: str, stimulus_ids: np.ndarray | None = None):
    """``path[:variable]`` (.npy, .zarr, .nc) -> an array or a DataArray.

    A ``.npy`` of ``len(stimulus_ids)`` rows gets those ids (rows in the store's order after
    averaging); labelled features keep their own ``stimulus_id``.
    """
    path, var = _split_spec(str(spec))
    if not path.exists():
        raise FileNotFoundError(f"{str(path)!r}: no such file (from {spec!r}).")
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if stimulus_ids is not None and arr.ndim == 2 and len(arr) == len(stimulus_ids):
            return xr.DataArray(arr, dims=("stimulus", "unit"),
                                coords={"stimulus_id": ("stimulus", stimulus_ids)})
        return arr
    if path.suffix == ".zarr" or path.is_dir():
        from neuroalign.store import COMPLETE_MARKER, read_zarr

        # a zarr neuroalign wrote is checked against its manifest; any other is read as is
        ds = read_zarr(path, what="features zarr") if (path / COMPLETE_MARKER).exists() \
            else xr.open_zarr(path)
    else:
        ds = xr.open_dataset(path)
    if var:
        if var not in ds.data_vars:
            raise KeyError(f"{str(path)!r}: no variable {var!r}; it has {list(ds.data_vars)!r}.")
        return ds[var].load()
    if len(ds.data_vars) != 1:
        raise KeyError(f"{str(path)!r}: several variables {list(ds.data_vars)!r}; name one as "
                       f"{spec}:VARIABLE.")
    return ds[next(iter(ds.data_vars))].load()


def results_file(path: Path) -> Path:
    """A results file from a fit output folder (its ``results.zarr``) or the file itself."""
    path = Path(path)
    if path.is_dir() and (path / "results.zarr").exists():
        return path / "results.zarr"
    return path


def load_results(path: Path) -> xr.Dataset | xr.DataArray:
    """Layer scores from a fit output folder or a results file (.zarr, .nc)."""
    path = results_file(path)
    if not path.exists():
        raise FileNotFoundError(f"[results] path = {str(path)!r}: no such file or folder.")
    if path.suffix == ".zarr" or path.is_dir():
        from neuroalign.store import COMPLETE_MARKER, read_zarr

        return read_zarr(path, what="results zarr") if (path / COMPLETE_MARKER).exists() \
            else xr.open_zarr(path)
    return xr.open_dataset(path)


def cluster_spec(cfg: dict, out_dir: Path) -> dict | None:
    """A recipe's ``[cluster]`` table as ``cluster=`` takes it (``{"kind": ..., "result_path":
    ..., "batch_size": ..., **options}``), the cells defaulting to ``<out_dir>.cells`` (kept
    between runs, so a rerun computes only the missing cells); None without a ``[cluster]``
    table (one process, no cells)."""
    table = dict(cfg.get("cluster") or {})
    if not table:
        return None
    options = table.pop("options", None) or {}
    if table.get("result_path") is None:
        out_dir = Path(out_dir)
        table["result_path"] = str(out_dir.with_name(out_dir.name + ".cells"))
    return {k: v for k, v in table.items() if v is not None} | dict(options)
