"""The ``rsa`` and ``shape`` recipe runners: tables and figures.

The recipes' schemas are in :mod:`neuroalign.recipes._kinds` (documented in docs/recipes.md).
A ``.npy`` model is ``(n_stimuli, n_channels)`` with rows in the order of the store's
stimuli after ``average_repetitions()``; labelled features are joined on ``stimulus_id``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from neuroalign._files import atomic_dir
from neuroalign.recipes._inputs import feature_set, load_array, open_store

__all__ = ["run_rsa", "run_shape", "RSA_KIND", "SHAPE_KIND"]

#: Marker kinds of the output folders (each replaced only by its own kind, with overwrite).
RSA_KIND = "RSA output"
SHAPE_KIND = "shape output"


def _averaged_ids(store) -> np.ndarray:
    av = store.na.average_repetitions() if store.na.is_trial_level else store
    return av["stimulus_id"].values.astype(str)


def _representations(cfg: dict, table: str, store, cache_dir: Path, *,
                     overwrite: bool = False) -> dict[str, Any]:
    """Named representations: the files of ``[table]`` and every layer of ``[features]``."""
    ids = _averaged_ids(store) if store is not None else None
    out: dict[str, Any] = {name: load_array(spec, ids) for name, spec in (cfg.get(table) or {}).items()}
    if cfg.get("features") is not None:
        feats = feature_set(cfg["features"], store, cache_dir, overwrite=overwrite)
        for layer in feats.data_vars:
            name = str(layer)
            if name in out:
                raise ValueError(f"[{table}] {name!r} and a [features] layer have the same name.")
            out[name] = feats[layer].rename({feats[layer].dims[1]: "unit"})
    return out


def run_rsa(cfg: dict, out: Path, *, overwrite: bool = False) -> dict:
    """Run a validated ``rsa`` recipe; write per ROI a score table (CSV), a model bar plot
    with the noise ceiling and RDM heatmaps (PNG) into ``out`` (atomically).

    Returns ``{"rois": {roi: {"noise_ceiling": [low, high], "models": {name: score}}},
    "text": [lines]}``.
    """
    out = Path(out)
    store = open_store(cfg["store"])[0]
    rois = cfg["store"].get("rois")
    rois = [rois] if isinstance(rois, str) else (rois or [None])
    models = _representations(cfg, "models", store, out.with_name(out.name + ".features"),
                              overwrite=overwrite)
    lines: list[str] = []
    summary: dict[str, Any] = {}
    from neuroalign._scaleout import ScaleOut
    from neuroalign.recipes._inputs import cluster_spec

    # one cluster for every ROI; the data RDMs in cells under result_path (kept between runs)
    with ScaleOut(cluster=cluster_spec(cfg, out), func="data_rdms", prefix="neuroalign-rdms-") as so, \
            atomic_dir(out, overwrite=overwrite, kind=RSA_KIND) as tmp:
        tmp.mkdir(parents=True)
        cells = {"client": so.lazy, "result_path": so.folder} if so.active else {}
        for roi in rois:
            summary[roi or "all"] = _rsa_roi(store, roi, models, cfg["rdm"], dict(cfg["rsa"]), tmp,
                                             lines, cells)
    return {"rois": summary, "text": lines}


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells)


def _rsa_roi(store, roi, models, data_cfg, rsa_cfg, out_dir: Path, lines: list[str],
             cells: dict) -> dict:
    """One ROI of an RSA recipe: the table, the bar plot and the RDMs, written in ``out_dir``
    (``cells``: ``client`` and ``result_path`` of :func:`~neuroalign.compare.data_rdms`)."""
    from neuroalign.compare import data_rdms, plot_model_scores, plot_rdms, rsa

    sub = store.na.roi(roi) if roi else store
    if data_cfg.get("pseudo_subjects"):
        sub = _pseudo(sub, int(data_cfg["pseudo_subjects"]), int(data_cfg["random_state"]))
    d = data_rdms(sub, data_cfg.get("metric", "correlation"), by=data_cfg.get("by", "subject"),
                  **cells)
    res = rsa(models, d, **rsa_cfg)
    tag = roi or "all"
    rows = [[str(m), float(res.score.sel(model=m)), float(res.ci_low.sel(model=m)),
             float(res.ci_high.sel(model=m)), float(res.p_zero.sel(model=m))]
            for m in res.model.values]
    header = ["model", "score", "ci_low", "ci_high", "p_zero"]
    csv = out_dir / f"rsa_{tag}.csv"
    csv.write_text(",".join(header) + "\n" + "\n".join(
        ",".join(f"{v:.6g}" if isinstance(v, float) else v for v in r) for r in rows) + "\n")
    lines.append(f"ROI {tag}: {d.sizes['subject']} subject(s), method {res.attrs['method']}, "
               f"noise ceiling [{float(res.noise_ceiling_lower):.4f}, "
               f"{float(res.noise_ceiling_upper):.4f}]")
    lines.append(_table(rows, header))
    fig = plot_model_scores(res, title=f"RSA {tag}")
    png = out_dir / f"rsa_{tag}.png"
    fig.savefig(png, dpi=100)
    from neuroalign.compare import rdm as make_rdm

    heat = {f"data ({tag}, mean)": d.mean("subject")}
    heat.update({name: make_rdm(m, rsa_cfg.get("model_metric", "correlation"))
                 if not (hasattr(m, "dims") and "stimulus_i" in m.dims) else m
                 for name, m in models.items()})
    rdm_png = out_dir / f"rdms_{tag}.png"
    plot_rdms(heat).savefig(rdm_png, dpi=100)
    return {"noise_ceiling": [float(res.noise_ceiling_lower), float(res.noise_ceiling_upper)],
            "method": str(res.attrs["method"]),
            "models": {r[0]: {"score": r[1], "ci95": [r[2], r[3]], "p_zero": r[4]} for r in rows}}


def run_shape(cfg: dict, out: Path, *, overwrite: bool = False) -> dict:
    """Run a validated ``shape`` recipe: pairwise generalised shape distances among the
    systems (files, model layers, and each ROI's averaged responses); write
    ``distances.csv`` and ``mds.png`` into ``out`` (atomically)."""
    from neuroalign.compare import ShapeMetric, distance_matrix, plot_mds

    out = Path(out)
    store = None
    if cfg.get("store") is not None:
        store = open_store(cfg["store"])[0]
    named = _representations(cfg, "systems", store, out.with_name(out.name + ".features"),
                             overwrite=overwrite)
    if store is not None:
        av = store.na.average_repetitions() if store.na.is_trial_level else store
        rois = cfg["store"].get("rois")
        rois = [rois] if isinstance(rois, str) else (rois or sorted(
            str(c)[4:] for c in av.coords if str(c).startswith("roi_")))
        for roi in rois:
            resp = av.na.roi(roi)["responses"].transpose("stimulus", "neuroid").load()  # read once
            named[f"ROI {roi}"] = resp.rename(neuroid="unit").drop_vars(
                [c for c in resp.coords if c != "stimulus_id"])
    shape = cfg["shape"]
    if shape["standardise"]:
        named = {k: _zscore(v) for k, v in named.items()}
    from neuroalign.recipes._inputs import cluster_spec

    D = distance_matrix(named, ShapeMetric(shape["alpha"], shape["score_method"]),
                        cluster=cluster_spec(cfg, out))
    names = [str(n) for n in D.system_i.values]
    rows = [[n] + [float(v) for v in D.values[i]] for i, n in enumerate(names)]
    with atomic_dir(out, overwrite=overwrite, kind=SHAPE_KIND) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "distances.csv").write_text(",".join(["system"] + names) + "\n" + "\n".join(
            ",".join([r[0]] + [f"{v:.6g}" for v in r[1:]]) for r in rows) + "\n")
        plot_mds(D, title=f"shape metric alpha={shape['alpha']}").savefig(tmp / "mds.png", dpi=100)
    text = [f"shape distances (alpha={shape['alpha']}, {shape['score_method']}):",
            _table(rows, ["system"] + names)]
    return {"systems": names, "distances": {r[0]: dict(zip(names, r[1:], strict=True)) for r in rows},
            "text": text}


def _zscore(x):
    values = np.asarray(x, dtype=float)
    sd = values.std(0)
    z = (values - values.mean(0)) / np.where(sd > 0, sd, 1.0)
    return x.copy(data=z) if hasattr(x, "copy") and hasattr(x, "dims") else z


def _pseudo(sub, n: int, seed: int):
    from neuroalign.compare import pseudo_subjects

    name = "random_state" if "random_state" in inspect.signature(pseudo_subjects).parameters else "seed"
    return pseudo_subjects(sub, n, **{name: seed})
