"""Whole-brain fsaverage ridge on one machine, run in full (not projected).

1. ``make``: writes a simulated subject as a neuroalign store with ``save_store``, streamed
   (dask, one chunk of neuroids at a time; never whole in memory): ``--trials`` trials
   (``--images`` images, each shown ``trials / images`` times, over sessions of 750
   trials) x ``--vertices`` vertices (default fsaverage's 2 x 163,842), float32. Each
   vertex's response is ``s_v * f(image) @ w_v + noise`` with ``w_v`` from a rank-64
   truth over ``--features`` features and ``s_v`` uniform in [0, 1] (some vertices carry
   no signal), noise sd 1.
2. ``fit`` (a fresh process): ``open_store`` (lazy), the features as a DataArray with
   ``stimulus_id``, then the public ``RidgeEncoder(...).fit(features, store,
   result_path=..., batch_size=...)`` (5 stimulus-grouped folds, 10 alphas, float32): the
   responses stay on disk and each cell reads its own vertices. Reports wall and CPU time,
   peak RSS (``VmHWM``), median CV R², and the recovery of the truth (correlation of the
   fitted with the true weights, and of CV R² with the planted signal strength).
3. ``--sweep-vertices N`` (a fresh process): ``LayerSweep`` of ``--sweep-layers`` layers
   over the store's first N vertices, in cells; layer ``L // 2`` carries the features that
   drive the responses and the others mix them with noise, less the further from it, so
   the best layer is known. ``--skip-fit`` runs only the sweep (on a kept store).
4. ``--recipe`` (a fresh process; with ``--test-images N``, whose presentations are the
   store's test split): ``neuroalign fit`` of a ridge recipe on the store (``run_recipe``,
   the features as a zarr file): the store stays on disk for the fit, the noise ceiling
   and the test average. Reports wall and CPU time, peak RSS, the median held-out r and
   its rank correlation with the planted signal strength.
5. ``--ceiling`` (a fresh process): the noise ceiling of the test split alone
   (``open_store(path).na.noise_ceiling(split="test")``, NSD's ncsnr over every trial, a
   block of vertices at a time from disk): wall and CPU time, peak RSS.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/bench_wholebrain.py \
        --root /tmp/wholebrain --json wholebrain.json

What it wrote (the store: 39 GB at full size) is removed afterwards unless ``--keep``;
nothing else in ``--root`` is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MAKE = r"""
import json, sys, time, resource, numpy as np, xarray as xr, dask.array as da
from neuroalign.store import save_store
n, n_img, p, v, root, n_test = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
F = rng.standard_normal((n_img, p), dtype=np.float32)
A = (rng.standard_normal((p, 64)) / np.sqrt(p)).astype(np.float32)
FA = F @ A                                          # (images, 64)
reps = n // n_img
img = np.random.default_rng(1).permutation(np.repeat(np.arange(n_img), reps))
chunk = 2**25 // (4 * n)                            # ~32 MiB chunks, as save_store chooses
def block(block_info=None):
    a, b = block_info[None]['array-location'][1]
    r = np.random.default_rng([2, a])
    B = r.standard_normal((64, b - a)).astype(np.float32) / np.float32(8.0)
    s = r.uniform(0, 1, b - a).astype(np.float32)
    return (FA[img] @ B) * s + r.standard_normal((n, b - a), dtype=np.float32)
Y = da.map_blocks(block, dtype=np.float32, chunks=((n,), tuple(
    min(chunk, v - a) for a in range(0, v, chunk))))
ids = np.array([f"img{i:05d}" for i in range(n_img)])
seen = np.zeros(n_img, int); rep = np.empty(n, int)
for t, i in enumerate(img):
    rep[t] = seen[i]; seen[i] += 1
ds = xr.Dataset(
    {"responses": (("presentation", "neuroid"), Y)},
    coords={"stimulus_id": ("presentation", ids[img]), "repetition": ("presentation", rep),
            "session": ("presentation", np.arange(n) // 750), "trial": ("presentation", np.arange(n)),
            "split": ("presentation", np.where(img < n_test, "test", "train")),
            "neuroid_id": ("neuroid", np.array([f"v{j:06d}" for j in range(v)])),
            "subject": ("neuroid", np.full(v, "sub-sim"))},
    attrs={"dataset": "simulated whole brain", "space": "fsaverage", "units": "a.u.",
           "schema_version": "1.0"})
t0 = time.perf_counter()
save_store(ds, root + "/store.zarr", neuroid_chunk=chunk)
print(json.dumps({"wall": time.perf_counter() - t0}))
"""

# peak RSS and CPU time of the child itself; the planted strength s_v of the first vertices
# (drawn as the writer draws it: each chunk's generator gives its weights, then s)
MEASURE = r"""
import numpy as np
def strength(n, n_vertices):
    chunk = 2**25 // (4 * n)
    out = []
    for a in range(0, n_vertices, chunk):
        g = np.random.default_rng([2, a])
        g.standard_normal((64, min(a + chunk, n_vertices) - a))
        out.append(g.uniform(0, 1, min(a + chunk, n_vertices) - a))
    return np.concatenate(out)[:n_vertices]
import resource
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
"""

FIT = MEASURE + r"""
import json, sys, time, numpy as np, xarray as xr
from neuroalign.encoders import RidgeEncoder
from neuroalign.store import open_store
n, n_img, p, v, root, batch, cells, device = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
F = rng.standard_normal((n_img, p), dtype=np.float32)
A = (rng.standard_normal((p, 64)) / np.sqrt(p)).astype(np.float32)
ids = np.array([f"img{i:05d}" for i in range(n_img)])
features = xr.DataArray(F, dims=("stimulus", "unit"), coords={"stimulus_id": ("stimulus", ids)},
                        name="layer")
cuda = device.startswith("cuda")
if cuda:  # CUDA initialised before the clock starts
    import torch
    torch.zeros(1, device=device)
t0, c0 = time.perf_counter(), cpu()
store = open_store(root + "/store.zarr")
enc = RidgeEncoder(alphas=np.logspace(-1, 5, 10), cv=5, dtype="float32", device=device)
if cells:
    enc.fit(features, store, result_path=root + "/cells", batch_size=batch)
else:   # the plain call: responses stay on disk, each fold decomposed once for all batches
    enc.fit(features, store)
wall, used = time.perf_counter() - t0, cpu() - c0
# the truth of a sample of vertices (same generator as the writer)
chunk = 2**25 // (4 * n)
r2 = enc.cv_scores_
corr, corr_r2 = [], []
for a in range(0, v, chunk * max(1, v // 20 // chunk)):  # 20 of the writer's chunks
    b = min(a + chunk, v)
    g = np.random.default_rng([2, a])
    B = g.standard_normal((64, b - a)).astype(np.float32) / np.float32(8.0)
    s = g.uniform(0, 1, b - a).astype(np.float32)
    W = (A @ B) * s
    C = enc.coef_[:, a:b]
    good = s > 0.5
    corr += [float(np.corrcoef(W[:, j], C[:, j])[0, 1]) for j in np.flatnonzero(good)[:20]]
    corr_r2 += list(zip(s.tolist(), r2[a:b].tolist()))
ss, rr = np.array(corr_r2).T
print(json.dumps({"wall": wall, "cpu": used, "peak": status("VmHWM"), "device": device,
                  "peak_device": torch.cuda.max_memory_allocated() if cuda else None,
                  "median_cv_r2": float(np.nanmedian(r2)),
                  "median_weight_corr_strong": float(np.median(corr)),
                  "r2_vs_strength_spearman": float(
                      np.corrcoef(np.argsort(np.argsort(ss)), np.argsort(np.argsort(rr)))[0, 1]),
                  "n_batches": enc.scaleout_info_["n_batches"] if cells else 1,
                  "n_valid": int(enc.valid_neuroids_.sum())}))
"""


SWEEP = MEASURE + r"""
import json, sys, time, numpy as np, xarray as xr
from neuroalign.encoders import LayerSweep
from neuroalign.store import open_store
n, n_img, p, v, root, batch, n_layers, n_vertices, keep, device = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
F = rng.standard_normal((n_img, p), dtype=np.float32)
ids = np.array([f"img{i:05d}" for i in range(n_img)])
true = n_layers // 2       # layer `true` is the features that drive the responses; the others
layers = {}                # mix them with their own noise, less the further from it
for k in range(n_layers):
    c = np.float32(np.exp(-((k - true) ** 2) / 2.0))
    noise = np.random.default_rng([3, k]).standard_normal((n_img, p), dtype=np.float32)
    layers[f"layer{k:02d}"] = (("stimulus", f"unit{k:02d}"), c * F + np.sqrt(1 - c * c) * noise)
features = xr.Dataset(layers, coords={"stimulus_id": ("stimulus", ids)})
t0, c0 = time.perf_counter(), cpu()
store = open_store(root + "/store.zarr").isel(neuroid=slice(0, n_vertices))
sweep = LayerSweep(alphas=np.logspace(-1, 5, 10), cv=5, dtype="float32", device=device,
                   keep_weights=keep).fit(
    features, store, result_path=root + f"/sweep-cells-{n_vertices}", batch_size=batch)
wall, used = time.perf_counter() - t0, cpu() - c0
best = sweep.best_layer_.values
strong = strength(n, n_vertices) > 0.5
print(json.dumps({"wall": wall, "cpu": used, "peak": status("VmHWM"),
                  "true_layer_found": float(np.mean(best[strong] == f"layer{true:02d}")),
                  "n_layers": n_layers, "n_vertices": n_vertices, "keep_weights": keep}))
"""


RECIPE = MEASURE + r"""
import json, sys, time, numpy as np, xarray as xr
from neuroalign.recipes import run_recipe
n, n_img, p, v, root = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
F = rng.standard_normal((n_img, p), dtype=np.float32)
ids = np.array([f"img{i:05d}" for i in range(n_img)])
xr.Dataset({"layer": (("stimulus", "unit"), F)}, coords={"stimulus_id": ("stimulus", ids)}).to_zarr(
    root + "/features.zarr", mode="w")
recipe = root + "/fit.toml"
with open(recipe, "w") as f:
    f.write(f'kind = "fit"\n[store]\npath = "{root}/store.zarr"\ntest_split = "test"\n'
            f'[features]\npath = "{root}/features.zarr"\n[encoder]\nkind = "ridge"\n'
            'alphas = { logspace = [-1, 5, 10] }\ncv = 5\n[encoder.params]\ndtype = "float32"\n')
t0, c0 = time.perf_counter(), cpu()
res = run_recipe(recipe, out=root + "/fit-out", overwrite=True)
wall, used = time.perf_counter() - t0, cpu() - c0
out = xr.open_zarr(root + "/fit-out/results.zarr")
score = out["score"].values.ravel()        # held-out r on the averaged test images
ceiling = out["noise_ceiling"].values.ravel()
s = strength(n, v)
rank = lambda x: np.argsort(np.argsort(x))
ok = np.isfinite(score)
print(json.dumps({"wall": wall, "cpu": used, "peak": status("VmHWM"),
                  "median_test_r": float(np.nanmedian(score)),
                  "test_r_vs_strength_spearman": float(np.corrcoef(rank(s[ok]), rank(score[ok]))[0, 1]),
                  "median_ceiling": float(np.nanmedian(ceiling))}))
"""


CEILING = MEASURE + r"""
import json, sys, time, numpy as np
from neuroalign.store import open_store
n, n_img, p, v, root = json.loads(sys.argv[1])
store = open_store(root + "/store.zarr")
t0, c0 = time.perf_counter(), cpu()
ceiling = store.na.noise_ceiling(split="test").values   # NSD's ncsnr, all trials, from disk
wall, used = time.perf_counter() - t0, cpu() - c0
print(json.dumps({"wall": wall, "cpu": used, "peak": status("VmHWM"),
                  "median_ceiling": float(np.nanmedian(ceiling)),
                  "n_nan": int(np.isnan(ceiling).sum())}))
"""


def _run(code: str, args: list) -> dict:
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)],
                         capture_output=True, text=True, env=dict(os.environ))
    if out.returncode:
        sys.exit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/wholebrain")
    ap.add_argument("--trials", type=int, default=30000)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--features", type=int, default=1024)
    ap.add_argument("--vertices", type=int, default=2 * 163_842)
    ap.add_argument("--batch", type=int, default=20000)
    ap.add_argument("--sweep-layers", type=int, default=12)
    ap.add_argument("--keep-weights", choices=("all", "best"), default="best",
                    help="the sweep's keep_weights (best: each vertex's best layer only)")
    ap.add_argument("--sweep-vertices", type=int, default=0,
                    help="also sweep --sweep-layers layers over this many vertices (0: no sweep)")
    ap.add_argument("--skip-fit", action="store_true")
    ap.add_argument("--no-cells", action="store_true",
                    help="fit with the plain call (no result_path, no batch_size)")
    ap.add_argument("--test-images", type=int, default=0,
                    help="images (the first ones) whose presentations are the store's test split")
    ap.add_argument("--recipe", action="store_true",
                    help="also run `neuroalign fit` (a ridge recipe, store on disk; needs --test-images)")
    ap.add_argument("--ceiling", action="store_true",
                    help="also time the noise ceiling of the test split alone (needs --test-images)")
    ap.add_argument("--device", default="cpu", help="the fits' device= (cpu, cuda)")
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    root = Path(a.root)
    made = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    size = [a.trials, a.images, a.features, a.vertices, str(root)]
    res = {"size": size[:4], "batch": a.batch, "load_before": open("/proc/loadavg").read().split()[:3]}
    if not (root / "store.zarr").exists():
        res["make"] = _run(MAKE, size + [a.test_images])
        print(f"store written in {res['make']['wall']:.0f} s", flush=True)
    if not a.skip_fit:
        t = time.time()
        res["fit"] = _run(FIT, size + [a.batch, not a.no_cells, a.device])
        res["load_after"] = open("/proc/loadavg").read().split()[:3]
        f = res["fit"]
        print(f"fit: {a.trials} trials x {a.features} features -> {a.vertices} vertices in "
              f"{f['n_batches']} cells{' (plain call)' if a.no_cells else ''} on {a.device}: {f['wall']:.0f} s wall "
              f"({(time.time() - t):.0f} s with start), {f['cpu']:.0f} s CPU, peak RSS {f['peak'] / 2**30:.2f} GiB"
              + (f", peak device memory {f['peak_device'] / 2**30:.2f} GiB" if f["peak_device"] else "")
              + f"; median CV R² {f['median_cv_r2']:.3f}; weights vs truth r = {f['median_weight_corr_strong']:.3f} "
              f"(vertices with s > 0.5); CV R² vs planted strength, Spearman "
              f"{f['r2_vs_strength_spearman']:.3f}", flush=True)
    if a.recipe:
        res["recipe"] = r = _run(RECIPE, size)
        print(f"neuroalign fit (ridge recipe, store on disk, test split of {a.test_images} images): "
              f"{r['wall']:.0f} s wall, {r['cpu']:.0f} s CPU, peak RSS {r['peak'] / 2**30:.2f} GiB; "
              f"median held-out r {r['median_test_r']:.3f}, against the planted strength Spearman "
              f"{r['test_r_vs_strength_spearman']:.3f}; median noise ceiling {r['median_ceiling']:.1f} %",
              flush=True)
    if a.ceiling:
        res["ceiling"] = c = _run(CEILING, size)
        print(f"noise ceiling of the store on disk (ncsnr over all {a.trials} trials): "
              f"{c['wall']:.1f} s wall, {c['cpu']:.1f} s CPU, peak RSS {c['peak'] / 2**30:.2f} GiB; "
              f"median {c['median_ceiling']:.1f} %, {c['n_nan']} NaN", flush=True)
    if a.sweep_vertices:
        res["sweep"] = w = _run(SWEEP, size + [a.batch, a.sweep_layers, a.sweep_vertices,
                                               a.keep_weights, a.device])
        res["load_after_sweep"] = open("/proc/loadavg").read().split()[:3]
        print(f"sweep: {a.sweep_layers} layers x {a.features} features -> {a.sweep_vertices} "
              f"vertices: {w['wall']:.0f} s wall, {w['cpu']:.0f} s CPU, peak RSS "
              f"{w['peak'] / 2**30:.2f} GiB; true layer found for "
              f"{100 * w['true_layer_found']:.1f} % of the vertices with s > 0.5", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    if not a.keep:  # what this benchmark wrote, and the root if it made it
        for name in ["store.zarr", "cells", "features.zarr", "fit.toml", "fit-out",
                     *(p.name for p in root.glob("sweep-cells-*"))]:
            path = root / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            (root / f".{name}.lock").unlink(missing_ok=True)  # neuroalign's writer locks
        if made and not any(root.iterdir()):
            root.rmdir()
    # the planted truth must be found (a wrong number here is a bug, not a slow run)
    found = {"fit: CV R² against the planted strength (Spearman)":
             res.get("fit", {}).get("r2_vs_strength_spearman"),
             "recipe: held-out r against the planted strength (Spearman)":
             res.get("recipe", {}).get("test_r_vs_strength_spearman"),
             "sweep: the true layer is the best layer of the strong vertices":
             res.get("sweep", {}).get("true_layer_found")}
    lost = {k: v for k, v in found.items() if v is not None and not v > 0.5}
    if lost:
        sys.exit(f"the planted truth was not recovered: {lost}")


if __name__ == "__main__":
    main()
