"""The ``fit`` recipe runner: store, features, encoder, cross-validation and outputs.

The recipe's schema is in :mod:`neuroalign.recipes._kinds` (documented in docs/recipes.md).
Writes ``results.zarr`` (per-neuroid scores, best alpha/layer, ceiling-normalised score),
``summary.json`` (per-ROI summaries with bootstrap intervals) and, for some encoders,
``split_r2.zarr`` or ``routing_map.zarr``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger
from neuroalign.recipes._inputs import cluster_spec, feature_set, open_store, store_rois

__all__ = ["run_fit", "OUTPUT_KIND"]

log = get_logger(__name__)

#: Marker kind of a fit's output folder (replaced only by another fit's, with overwrite).
OUTPUT_KIND = "fit output"


def _alphas(spec) -> np.ndarray:
    if isinstance(spec, dict) and "logspace" in spec:
        lo, hi, n = spec["logspace"]
        return np.logspace(lo, hi, int(n))
    if spec is None:
        return np.logspace(-2, 6, 20)
    return np.asarray(spec, dtype=float)


def _finite_or_none(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _roi_summary(ds: xr.Dataset, outputs: dict) -> dict:
    """Per-ROI summary for summary.json, from :func:`neuroalign.encoders.roi_summary`: the
    raw held-out score and the ceiling-normalised score, each with its metric, aggregate
    and bootstrap interval."""
    from neuroalign.encoders._scoring import DEFAULT_CEILING_THRESHOLD, roi_summary

    n_boot = int(outputs.get("n_boot", 1000))
    summ = roi_summary(ds, aggregate=outputs.get("aggregate", "mean"), n_bootstrap=n_boot,
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


def _test_split(store: xr.Dataset, spec: dict) -> str:
    """``[store] test_split``, checked against the store's own splits (a named error, before
    any work, instead of one from deep inside the fit)."""
    from neuroalign._validation import format_list
    from neuroalign.exceptions import DataFormatError

    split = spec["test_split"]
    if "split" not in store.coords:
        raise DataFormatError(
            f"[store] test_split = {split!r}: the store {spec['path']!r} has no 'split' "
            "coordinate, so it has no held-out split to score.")
    held_out = sorted(set(np.asarray(store["split"].values).astype(str).tolist()) - {"train"})
    if split not in held_out:
        raise DataFormatError(
            f"[store] test_split = {split!r}: expected a held-out split of the store "
            f"{spec['path']!r}, one of {format_list(held_out) or 'none (only train)'}"
            + (" ('train' is what the encoder is fitted on)." if split == "train" else "."))
    return split


def run_fit(cfg: dict, out_dir: Path, *, overwrite: bool = False) -> dict:
    """Run a validated ``fit`` recipe ``cfg``; write its outputs into ``out_dir`` (atomically).

    Returns the summary written to ``summary.json``.
    """
    from neuroalign.encoders import (
        AttentionRoutingEncoder,
        BandedRidgeEncoder,
        LayerSweep,
        RidgeEncoder,
    )
    from neuroalign.store import save_store  # noqa: F401 - registers the accessor

    out_dir = Path(out_dir)
    # left on disk: the ridge fits read a batch of neuroids at a time, the ceiling and the
    # test average are computed a block of neuroids at a time
    # the [store] rois only: their neuroids, and no summary of any other ROI
    st = store_rois(open_store(cfg["store"])[0], cfg["store"], only=True)
    test_split = _test_split(st, cfg["store"])
    enc_spec = cfg["encoder"]
    kind = enc_spec["kind"]
    params = dict(enc_spec.get("params", {}))
    cv = enc_spec["cv"]
    outputs = dict(cfg["outputs"])
    # beside the results folder (which is replaced atomically on every run)
    cache_dir = out_dir.with_name(out_dir.name + ".features")
    ceiling = st.na.noise_ceiling(split=test_split)
    train = st.na.split("train")
    # the averaged test split, read from disk once after the fit (not beside its peak)
    test = st.na.split(test_split).na.average_repetitions()
    fspec = cfg["features"]
    summary: dict[str, Any] = {"study": cfg.get("study", {}), "encoder": kind}
    extra: dict[str, xr.DataArray] = {}
    cells = cluster_spec(cfg, out_dir)
    if kind == "banded-ridge":
        spaces = fspec["spaces"]
        feats = {name: feature_set(s, st, cache_dir, overwrite=overwrite, table=f"features.spaces.{name}")
                 for name, s in spaces.items()}
        mats = {name: xr.concat([f[v].rename({f[v].dims[1]: "unit"}) for v in f.data_vars], "unit")
                for name, f in feats.items()}
        enc = BandedRidgeEncoder(alphas=_alphas(enc_spec["alphas"]), cv=cv, **params)
        # features cover every stimulus; the join on stimulus_id takes each split's rows
        enc.fit(mats, train, cluster=cells)
        test = test.load()
        extra["split_r2"] = enc.score_split(mats, test)
        score = enc.score(mats, test)
    else:
        feats = feature_set(fspec, st, cache_dir, overwrite=overwrite)
        if kind == "layer-sweep":
            sweep = LayerSweep(alphas=_alphas(enc_spec["alphas"]), cv=cv, test_split=test_split, **params)
            sweep.fit(feats, st, cluster=cells)
            res = sweep.to_dataset(ceiling=ceiling)
            best = sweep.roi_best_layer()
            summary["best_layer_by_roi"] = {str(k): str(v) for k, v in
                                            zip(best.roi.values, best.values, strict=True)}
            summary["best_layer_selection"] = res.attrs["selection"]
            return _write(res, summary, out_dir, extra, outputs, overwrite)
        if kind == "ridge":
            enc = RidgeEncoder(alphas=_alphas(enc_spec["alphas"]), cv=cv, **params)
        else:
            enc = AttentionRoutingEncoder(**params)
        enc.fit(feats, train, cluster=cells)
        test = test.load()
        score = enc.score(feats, test)
        if kind != "ridge":
            from neuroalign.store import index_stimuli

            test_ids = test.stimulus_id.values
            extra["routing_map"] = enc.routing_maps(index_stimuli(feats).sel(stimulus_id=test_ids))
    res = _held_out_results(enc, score, test_split=test_split, ceiling=ceiling)
    return _write(res, summary, out_dir, extra, outputs, overwrite)


def _held_out_results(enc, score, *, test_split: str, ceiling) -> xr.Dataset:
    """Results of the schema (one layer) for an encoder's held-out ``score`` on
    ``test_split``: ``score`` the held-out score, ``cv_score`` its cross-validated R²."""
    from neuroalign.encoders._results import build_results, cv_scheme, params_json

    ds = enc.to_dataset()
    valid = np.asarray(enc.valid_neuroids_, bool)
    held = np.where(valid, np.asarray(getattr(score, "values", score), dtype=np.float64), np.nan)
    cv_all = np.full(valid.shape, np.nan)
    cv_all[valid] = ds["score"].values[0]
    alpha = np.full(valid.shape, np.nan)
    alpha[valid] = ds["alpha"].values[0]
    return build_results(
        held[None], layers=[str(ds["layer"].values[0])], models=[str(ds["model"].values[0])],
        template=score if isinstance(score, xr.DataArray) else None, valid=valid, alpha=alpha[None],
        cv_score=cv_all[None], metric=enc.metric, score_kind="test", split=test_split,
        cv=cv_scheme(enc.cv) if hasattr(enc, "cv") else ds.attrs["cv"],
        encoder=type(enc).__name__, params=params_json(enc), ceiling=ceiling,
    )


def _write(res: xr.Dataset, summary: dict, out_dir: Path, extra: dict,
           outputs: dict, overwrite: bool = False) -> dict:
    from neuroalign.store._io import atomic_dir, write_zarr

    score_var = "best_score"
    summary.update(metric=res.attrs["metric"], score_kind=res.attrs["score_kind"], score_var=score_var,
                   cv=res.attrs["cv"], split=res.attrs["split"])
    summary["rois"] = _roi_summary(res, outputs)
    vals = res[score_var].values
    summary["median_score"] = _finite_or_none(np.nanmedian(vals)) if np.isfinite(vals).any() else None
    with atomic_dir(out_dir, overwrite=overwrite, kind=OUTPUT_KIND) as tmp:
        tmp.mkdir(parents=True)
        write_zarr(res, tmp / "results.zarr")
        for name, arr in extra.items():
            write_zarr(arr.to_dataset(name=name), tmp / f"{name}.zarr")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    summary["out"] = str(out_dir)
    return summary
