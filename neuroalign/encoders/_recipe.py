"""Encoding-study recipes (TOML): store, features, encoder, CV and outputs in one file.

Schema (see ``encoders/*.toml`` at the repository root)::

    kind = "fit"                      # optional; what `neuroalign run` dispatches on

    [study]
    name = "sim-ridge-layer-sweep"

    [store]
    path = "sim/store.zarr"           # a store; when it does not exist and lies under
    simulate = { out = "sim", n_images = 240, routing_roi = false }  # out, it is simulated
    rois = ["V1v", "FFA-1"]           # optional subset
    test_split = "test"               # held-out split scored against the noise ceiling

    [features]                        # one feature set ...
    model = "simulated-truth"         # or any model neuroalign.features.extract knows
    layers = ["layer1", "layer2"]
    tokens = false                    # token-level features (attention routing)
    grid = 7

    [features.spaces.vision]          # ... or several named spaces (banded ridge)
    model = "simulated-truth"
    layers = ["layer2"]

    [encoder]
    kind = "layer-sweep"              # "ridge", "banded-ridge", "attention-routing"
    alphas = { logspace = [-2, 6, 20] }
    cv = 5
    params = { }                      # other constructor arguments

    [outputs]
    dir = "results/sim-ridge-sweep"
    n_boot = 2000

``features.model = "simulated-truth"`` computes the simulated brain's ground-truth network
activations; any other model is a :func:`neuroalign.features.extract` spec, called as
``extract(model, store, layers=..., **other keys)`` (``weights = "random"`` builds random
weights seeded by ``seed``; ``tokens = true`` asks for token-level features, ``pooling=None``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._config import read_recipe
from neuroalign._files import check_target
from neuroalign._logging import get_logger
from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import DataFormatError

__all__ = ["load_recipe", "check_recipe", "run_recipe", "ENCODER_KINDS", "OUTPUT_KIND"]

log = get_logger(__name__)

ENCODER_KINDS = ("layer-sweep", "ridge", "banded-ridge", "attention-routing")
#: Marker kind of a fit's output folder (replaced only by another fit's, with overwrite).
OUTPUT_KIND = "fit output"
_SECTIONS = ("kind", "study", "store", "features", "encoder", "outputs")


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read and check a recipe file."""
    return check_recipe(read_recipe(path), path)


def check_recipe(recipe: dict[str, Any], path: str | Path = "recipe") -> dict[str, Any]:
    """Check the tables of a recipe (read from ``path``); return it unchanged."""
    if recipe.get("kind", "fit") != "fit":
        raise DataFormatError(f"{path}: kind = {recipe['kind']!r}; an encoder recipe has kind = 'fit'.")
    unknown = sorted(set(recipe) - set(_SECTIONS))
    if unknown:
        raise DataFormatError(
            f"{path}: unknown section(s) {format_list(unknown)}; expected {format_list(_SECTIONS)}."
        )
    for key in ("store", "features", "encoder"):
        if key not in recipe:
            raise DataFormatError(f"{path}: missing section [{key}].")
    kind = recipe["encoder"].get("kind")
    if kind not in ENCODER_KINDS:
        raise DataFormatError(
            f"{path}: [encoder] kind = {kind!r}; expected one of {format_list(ENCODER_KINDS)}."
        )
    if "path" not in recipe["store"] and "simulate" not in recipe["store"]:
        raise DataFormatError(f"{path}: [store] needs 'path' or a 'simulate' table.")
    return recipe


def _alphas(spec) -> np.ndarray:
    if isinstance(spec, dict) and "logspace" in spec:
        lo, hi, n = spec["logspace"]
        return np.logspace(lo, hi, int(n))
    if spec is None:
        return np.logspace(-2, 6, 20)
    return np.asarray(spec, dtype=float)


def _open_store(spec: dict, store_override: str | None) -> xr.Dataset:
    from neuroalign.store import open_store

    if store_override:
        return open_store(store_override)
    path = spec.get("path")
    if path and Path(path).exists():
        return open_store(path)
    sim = spec.get("simulate")
    if sim is None:
        raise FileNotFoundError(f"[store] path = {path!r} does not exist and no 'simulate' table is given.")
    from neuroalign.datasets.simulate import SimulationResult, simulate

    out = Path(sim.get("out", "sim"))
    if path and out.resolve() not in Path(path).resolve().parents:
        # a store path outside the simulation folder is a real store that is missing:
        # never stand a simulation in for it
        raise FileNotFoundError(
            f"[store] path = {path!r} does not exist (the 'simulate' table only makes stores "
            f"under its out = {str(out)!r})."
        )
    log.info("[store] path = %r does not exist: simulating into %s", path, out)
    res = SimulationResult.load(out) if (out / "truth.json").exists() else simulate(out, **{k: v for k, v in sim.items() if k != "out"})
    return res.store()


def _feature_set(spec: dict, store: xr.Dataset, cache_dir: Path | None = None) -> xr.Dataset:
    model = spec.get("model")
    layers = list(spec.get("layers") or [])
    if model == "simulated-truth":
        from neuroalign.encoders._truth_features import (
            simulated_truth_features,
            simulated_truth_tokens,
        )

        if spec.get("tokens"):
            if len(layers) != 1:
                raise DataFormatError(f"[features] tokens = true needs exactly one layer; got {layers!r}.")
            return simulated_truth_tokens(store, layers[0], grid=int(spec.get("grid", 7)))
        return simulated_truth_features(store, layers)
    from neuroalign.features import extract

    kwargs = {k: v for k, v in spec.items() if k not in ("model", "layers", "tokens", "grid")}
    if kwargs.get("weights") == "random":  # TOML has no None: random weights, seeded by 'seed'
        kwargs["weights"] = None
    if "cache" not in kwargs and cache_dir is not None:  # reruns reuse the features
        slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(model))
        kwargs["cache"] = cache_dir / f"{slug}-seed{kwargs.get('seed', 0)}.zarr"
    if spec.get("tokens"):
        kwargs["pooling"] = None
    return extract(model, store, layers=layers, **kwargs)


def _subset(feats: xr.Dataset, ids) -> xr.Dataset:
    keep = np.isin(feats["stimulus_id"].values, np.unique(np.asarray(ids)))
    return feats.isel(stimulus=np.flatnonzero(keep))


def _roi_summary(ds: xr.Dataset, var: str, n_boot: int) -> dict:
    from neuroalign.encoders._scoring import bootstrap_roi

    out = {}
    for c in ds.coords:
        if str(c).startswith("roi_") and ds[c].dims == ("neuroid",):
            mask = np.asarray(ds[c].values, dtype=bool)
            if mask.any():
                m, lo, hi = bootstrap_roi(ds[var].values, mask, n_boot=n_boot)
                out[str(c)[4:]] = {"mean": m, "ci95": [lo, hi], "n_neuroids": int(mask.sum())}
    return out


def run_recipe(recipe: dict | str | Path, *, store: str | None = None, out: str | None = None,
               overwrite: bool = False) -> dict:
    """Run a recipe; write ``results.zarr``, ``summary.json`` and the recipe into the output
    folder. Returns the summary dict.

    The output folder is written atomically. An existing one is replaced only with
    ``overwrite=True`` and only when it is an earlier fit's output (neuroalign's marker);
    a folder of the user's, or one holding this fit's input store, raises
    :class:`~neuroalign.exceptions.OutputExistsError` before anything is computed.
    """
    from neuroalign.encoders import (
        AttentionRoutingEncoder,
        BandedRidgeEncoder,
        LayerSweep,
        RidgeEncoder,
    )
    from neuroalign.store import save_store  # noqa: F401 - registers the accessor

    source = None
    if not isinstance(recipe, dict):
        source = Path(recipe)
        recipe = load_recipe(source)
    out_dir = Path(out or recipe.get("outputs", {}).get("dir", "results"))
    check_target(out_dir, overwrite=overwrite, kind=OUTPUT_KIND,
                 inputs=[store, recipe["store"].get("path"), source,
                         (recipe["store"].get("simulate") or {}).get("out", "sim")
                         if "simulate" in recipe["store"] else None])
    st = _open_store(recipe["store"], store).load()
    rois = recipe["store"].get("rois")
    if rois:
        st = st.na.roi(list(rois))
    test_split = recipe["store"].get("test_split", "test")
    enc_spec = recipe["encoder"]
    kind = check_option(enc_spec["kind"], ENCODER_KINDS, name="kind", func="run_recipe")
    params = dict(enc_spec.get("params", {}))
    cv = enc_spec.get("cv", 5)
    n_boot = int(recipe.get("outputs", {}).get("n_boot", 1000))
    # beside the results folder (which is replaced atomically on every run)
    cache_dir = out_dir.with_name(out_dir.name + ".features")
    ceiling = st.na.noise_ceiling(split=test_split)
    train = st.na.split("train")
    test = st.na.split(test_split).na.average_repetitions()
    fspec = recipe["features"]
    summary: dict[str, Any] = {"study": recipe.get("study", {}), "encoder": kind}
    extra: dict[str, xr.DataArray] = {}
    if kind == "banded-ridge":
        spaces = fspec.get("spaces")
        if not spaces:
            raise DataFormatError("[features] banded-ridge needs [features.spaces.<name>] tables.")
        feats = {name: _feature_set(s, st, cache_dir) for name, s in spaces.items()}
        mats = {name: xr.concat([f[v].rename({f[v].dims[1]: "unit"}) for v in f.data_vars], "unit")
                for name, f in feats.items()}
        enc = BandedRidgeEncoder(alphas=_alphas(enc_spec.get("alphas")), cv=cv, **params)
        enc.fit({n: _subset(m.to_dataset(name=n), train.stimulus_id)[n] for n, m in mats.items()}, train)
        Xte = {n: _subset(m.to_dataset(name=n), test.stimulus_id)[n] for n, m in mats.items()}
        split = enc.score_split(Xte, test)
        score = enc.score(Xte, test)
        metric = "r2"
        variables = {"score": score, "best_alpha": np.zeros_like(score)}
        extra["split_r2"] = split
    else:
        feats = _feature_set(fspec, st, cache_dir)
        ftrain, ftest = _subset(feats, train.stimulus_id), _subset(feats, test.stimulus_id)
        if kind == "layer-sweep":
            sweep = LayerSweep(alphas=_alphas(enc_spec.get("alphas")), cv=cv, test_split=test_split, **params)
            sweep.fit(feats, st)
            res = sweep.to_dataset(ceiling=ceiling)
            summary["best_layer_by_roi"] = {str(k): str(v) for k, v in
                                            zip(sweep.roi_best_layer().roi.values, sweep.roi_best_layer().values, strict=True)}
            summary["rois"] = _roi_summary(res, "ceiling_normalised", n_boot)
            return _write(res, summary, out_dir, source, extra, overwrite)
        if kind == "ridge":
            enc = RidgeEncoder(alphas=_alphas(enc_spec.get("alphas")), cv=cv, **params).fit(ftrain, train)
            score = np.asarray(enc.score(ftest, test))
            variables = {"score": score, "best_alpha": enc.best_alphas_}
            metric = enc.metric
        else:
            enc = AttentionRoutingEncoder(**params).fit(ftrain, train)
            score = np.asarray(enc.score(ftest, test))
            variables = {"score": score, "best_alpha": np.zeros_like(score)}
            metric = enc.metric
            maps = enc.routing_maps(ftest)
            extra["routing_map"] = maps
        summary["metric"] = metric
    from neuroalign.encoders._results import results_dataset

    tmpl = train["responses"].isel(presentation=0, drop=True)
    tmpl = tmpl.drop_vars([c for c in tmpl.coords if tmpl[c].dims != ("neuroid",)])
    valid = getattr(enc, "valid_neuroids_", np.ones(st.sizes["neuroid"], bool))
    res = results_dataset({k: np.asarray(v) for k, v in variables.items()}, tmpl, valid,
                          ceiling=ceiling, metric="pearson" if kind != "banded-ridge" else "r2")
    summary["rois"] = _roi_summary(res, "ceiling_normalised", n_boot)
    return _write(res, summary, out_dir, source, extra, overwrite)


def _write(res: xr.Dataset, summary: dict, out_dir: Path, source: Path | None, extra: dict,
           overwrite: bool = False) -> dict:
    from neuroalign.store._io import atomic_dir, write_zarr

    summary["median_score"] = float(np.median(res["score"].values)) if res.sizes["neuroid"] else 0.0
    with atomic_dir(out_dir, overwrite=overwrite, kind=OUTPUT_KIND) as tmp:
        tmp.mkdir(parents=True)
        write_zarr(res, tmp / "results.zarr")
        for name, arr in extra.items():
            write_zarr(arr.to_dataset(name=name), tmp / f"{name}.zarr")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
        if source is not None:
            shutil.copy(source, tmp / source.name)
    summary["out"] = str(out_dir)
    return summary
