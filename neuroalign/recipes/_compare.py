"""``neuroalign rsa RECIPE.toml`` and ``neuroalign shape SYSTEM...``: tables and figures.

An RSA recipe (paths relative to the recipe file)::

    [data]
    store = "store.zarr"            # a store written by neuroalign
    roi = ["V1v", "FFA-1"]          # optional: one analysis per ROI
    metric = "correlation"          # data RDM metric (crossnobis: cross-validated
                                    # across repetitions of a trial-level store)
    pseudo_subjects = 4             # optional: split neuroids into pseudo-subjects
    by = "subject"                  # neuroid coordinate defining subjects

    [models]                        # name = "file.npy" | "features.zarr:layer" | "f.nc:var"
    layer1 = "features.zarr:layer1"

    [rsa]                           # keyword arguments of neuroalign.compare.rsa
    method = "spearman"
    bootstrap = "stimulus"
    n_bootstrap = 1000
    model_metric = "correlation"
    seed = 0

    [output]
    dir = "rsa-results"

A ``.npy`` model is ``(n_stimuli, n_channels)`` with rows in the order of the store's
stimuli after ``average_repetitions()``; labelled features are joined on ``stimulus_id``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuroalign._config import read_recipe
from neuroalign._files import atomic_dir, check_target

#: Marker kinds of the output folders (each replaced only by its own kind, with overwrite).
RSA_KIND = "RSA output"
SHAPE_KIND = "shape output"

_RSA_KEYS = {"method", "bootstrap", "n_bootstrap", "model_metric", "seed", "ci", "noise_ceiling"}


def _load_features(spec: str, base: Path, stimulus_ids: np.ndarray | None = None):
    """``path[:variable]`` -> array or DataArray."""
    import xarray as xr

    path_s, _, var = spec.partition(":") if not Path(spec).exists() else (spec, "", "")
    path = Path(path_s)
    if not path.is_absolute():
        path = base / path
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such features file (from {spec!r}).")
    if path.suffix == ".npy":
        arr = np.load(path)
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
            raise KeyError(f"{path}: no variable {var!r}; it has {list(ds.data_vars)!r}.")
        return ds[var].load()
    if len(ds.data_vars) != 1:
        raise KeyError(f"{path}: several variables {list(ds.data_vars)!r}; name one as {spec}:VAR.")
    return ds[next(iter(ds.data_vars))].load()


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells)


def run_rsa_recipe(recipe: Path, out: Path | None = None, n_bootstrap: int | None = None, *,
                   overwrite: bool = False) -> tuple[list[Path], list[str]]:
    """Run an RSA recipe; return the files written and the lines of its text summary.

    The output folder is written atomically; an existing one is replaced only with
    ``overwrite=True`` and only when it is an earlier RSA output (neuroalign's marker).
    """
    from neuroalign.store import open_store

    cfg = read_recipe(recipe)
    base = recipe.parent
    for section in ("data", "models"):
        if section not in cfg:
            raise ValueError(f"{recipe}: missing section [{section}]. Expected [data] and [models].")
    data_cfg, rsa_cfg = cfg["data"], dict(cfg.get("rsa", {}))
    unknown = set(rsa_cfg) - _RSA_KEYS
    if unknown:
        raise ValueError(f"{recipe}: unknown key(s) {sorted(unknown)!r} in [rsa]. "
                         f"Expected some of {sorted(_RSA_KEYS)!r}.")
    if n_bootstrap is not None:
        rsa_cfg["n_bootstrap"] = n_bootstrap
    if "store" not in data_cfg:
        raise ValueError(f"{recipe}: [data] needs 'store' (path to a store).")
    store_path = Path(data_cfg["store"])
    store_path = store_path if store_path.is_absolute() else base / store_path
    out_dir = Path(out or base / cfg.get("output", {}).get("dir", "rsa-results"))
    model_paths = [base / str(spec).partition(":")[0] for spec in cfg["models"].values()]
    check_target(out_dir, overwrite=overwrite, kind=RSA_KIND,
                 inputs=[store_path, recipe, *model_paths])
    store = open_store(store_path).load()
    rois = data_cfg.get("roi")
    rois = [rois] if isinstance(rois, str) else (rois or [None])
    avg_ids = (store.na.average_repetitions() if store.na.is_trial_level else store)[
        "stimulus_id"].values.astype(str)
    models = {name: _load_features(spec, base, avg_ids) for name, spec in cfg["models"].items()}
    written: list[Path] = []
    lines: list[str] = []
    with atomic_dir(out_dir, overwrite=overwrite, kind=RSA_KIND) as tmp:
        tmp.mkdir(parents=True)
        for roi in rois:
            written += _rsa_roi(store, roi, models, data_cfg, rsa_cfg, tmp, lines)
    return [out_dir / p.name for p in written], lines


def _rsa_roi(store, roi, models, data_cfg, rsa_cfg, out_dir: Path, lines: list[str]) -> list[Path]:
    """One ROI of an RSA recipe: the table, the bar plot and the RDMs, written in ``out_dir``."""
    from neuroalign.compare import data_rdms, plot_model_scores, plot_rdms, pseudo_subjects, rsa

    sub = store.na.roi(roi) if roi else store
    if data_cfg.get("pseudo_subjects"):
        sub = pseudo_subjects(sub, int(data_cfg["pseudo_subjects"]),
                              seed=int(data_cfg.get("seed", 0)))
    d = data_rdms(sub, data_cfg.get("metric", "correlation"), by=data_cfg.get("by", "subject"))
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
    return [csv, png, rdm_png]


def run_shape(specs: dict[str, str], *, alpha: float = 1.0, score_method: str = "angular",
              out: Path = Path("shape-results"), overwrite: bool = False, base: Path | None = None):
    """Pairwise shape distances among ``specs`` (name -> ``path[:variable]``); write
    ``distances.csv`` and ``mds.png`` in ``out``. Returns ``(rows, names, files)``."""
    from neuroalign.compare import ShapeMetric, distance_matrix, plot_mds

    out = Path(out)
    check_target(out, overwrite=overwrite, kind=SHAPE_KIND,
                 inputs=[p if Path(p).exists() else p.partition(":")[0] for p in specs.values()])
    named = {name: _load_features(path, base or Path.cwd()) for name, path in specs.items()}
    D = distance_matrix(named, ShapeMetric(alpha, score_method))
    names = [str(n) for n in D.system_i.values]
    rows = [[n] + [float(v) for v in D.values[i]] for i, n in enumerate(names)]
    with atomic_dir(out, overwrite=overwrite, kind=SHAPE_KIND) as tmp:
        tmp.mkdir(parents=True)
        (tmp / "distances.csv").write_text(",".join(["system"] + names) + "\n" + "\n".join(
            ",".join([r[0]] + [f"{v:.6g}" for v in r[1:]]) for r in rows) + "\n")
        plot_mds(D, title=f"shape metric alpha={alpha}").savefig(tmp / "mds.png", dpi=100)
    return rows, names, [out / "distances.csv", out / "mds.png"]
