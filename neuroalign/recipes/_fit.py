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
    n_boot = 2000                     # bootstrap resamples of the ROI summaries
    aggregate = "mean"                # or "median"
    ceiling_threshold = 10            # percent; neuroids below it are left out of the
                                      # ceiling-normalised ROI summaries

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


def _finite_or_none(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _roi_summary(ds: xr.Dataset, outputs: dict) -> dict:
    """Per-ROI summary for summary.json, from :func:`neuroalign.encoders.roi_summary`: the
    raw held-out score and the ceiling-normalised score, each with its metric, aggregate
    and bootstrap interval."""
    from neuroalign.encoders._scoring import DEFAULT_CEILING_THRESHOLD, roi_summary

    n_boot = int(outputs.get("n_boot", 1000))
    summ = roi_summary(ds, aggregate=outputs.get("aggregate", "mean"), n_boot=n_boot,
                       ceiling_threshold=float(outputs.get("ceiling_threshold", DEFAULT_CEILING_THRESHOLD)))
    out = {}
    for roi in summ["roi"].values:
        row = summ.sel(roi=roi)
        if int(row["n_neuroids"]) == 0:
            continue
        entry: dict[str, Any] = {"n_neuroids": int(row["n_neuroids"])}
        for name in ("score", "ceiling_normalised"):
            if name not in summ:
                continue
            attrs = summ[name].attrs
            entry[name] = {
                "metric": attrs["metric"], "aggregate": attrs["aggregate"],
                "value": _finite_or_none(row[name]),
                "ci95": [_finite_or_none(row[f"{name}_ci_low"]), _finite_or_none(row[f"{name}_ci_high"])],
            }
            if name == "score":
                entry[name]["kind"] = attrs.get("kind", "")
            else:
                entry[name]["n_neuroids"] = int(row["n_above_threshold"])
        out[str(roi)] = entry
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
    outputs = dict(recipe.get("outputs", {}))
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
        metric = enc.metric
        variables = {"score": score, "best_alpha": enc.best_alphas_}
        extra["split_r2"] = split
    else:
        feats = _feature_set(fspec, st, cache_dir)
        ftrain, ftest = _subset(feats, train.stimulus_id), _subset(feats, test.stimulus_id)
        if kind == "layer-sweep":
            sweep = LayerSweep(alphas=_alphas(enc_spec.get("alphas")), cv=cv, test_split=test_split, **params)
            sweep.fit(feats, st)
            res = sweep.to_dataset(ceiling=ceiling)
            best = sweep.roi_best_layer()
            summary["best_layer_by_roi"] = {str(k): str(v) for k, v in
                                            zip(best.roi.values, best.values, strict=True)}
            summary["best_layer_selection"] = res.attrs["selection"]
            return _write(res, summary, out_dir, source, extra, outputs, overwrite)
        if kind == "ridge":
            enc = RidgeEncoder(alphas=_alphas(enc_spec.get("alphas")), cv=cv, **params).fit(ftrain, train)
            score = np.asarray(enc.score(ftest, test))
            variables = {"score": score, "best_alpha": enc.best_alphas_}
            metric = enc.metric
        else:
            enc = AttentionRoutingEncoder(**params).fit(ftrain, train)
            score = np.asarray(enc.score(ftest, test))
            variables = {"score": score}
            metric = enc.metric
            maps = enc.routing_maps(ftest)
            extra["routing_map"] = maps
    from neuroalign.encoders._results import results_dataset

    tmpl = train["responses"].isel(presentation=0, drop=True)
    tmpl = tmpl.drop_vars([c for c in tmpl.coords if tmpl[c].dims != ("neuroid",)])
    valid = getattr(enc, "valid_neuroids_", np.ones(st.sizes["neuroid"], bool))
    res = results_dataset({k: np.asarray(v) for k, v in variables.items()}, tmpl, valid,
                          ceiling=ceiling, metric=metric, kind=test_split, cv=cv, test_split=test_split)
    return _write(res, summary, out_dir, source, extra, outputs, overwrite)


def _write(res: xr.Dataset, summary: dict, out_dir: Path, source: Path | None, extra: dict,
           outputs: dict, overwrite: bool = False) -> dict:
    from neuroalign.store._io import atomic_dir, write_zarr

    score_var = res.attrs["score_var"]
    summary.update(metric=res.attrs["metric"], score_kind=res.attrs["score_kind"], score_var=score_var,
                   cv=res.attrs["cv"], test_split=res.attrs["test_split"])
    summary["rois"] = _roi_summary(res, outputs)
    vals = res[score_var].values
    summary["median_score"] = _finite_or_none(np.nanmedian(vals)) if np.isfinite(vals).any() else None
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
