"""Memory preflight: estimated peak against the peak measured in a fresh process.

Each cell of the grid runs in its own subprocess: it builds the inputs (in the working
dtype, touched), returns the memory freed while building them to the system (``malloc_trim``: otherwise the
job reuses it unseen), resets the kernel's peak-RSS counter (``/proc/self/clear_refs``), runs the
job and reports ``VmHWM - VmRSS`` (peak resident memory minus the baseline with the inputs
loaded) next to :mod:`neuroalign._preflight`'s estimate. Jobs: ``ridge_cv`` with refit
(primal and dual forms, float32 and float64, several batch sizes and alpha counts), the
correlation RDM, the ridge decoder's fit (``EmbeddingDecoder(kind="ridge")``, brain
features fewer and more than the samples), ``ridge_refit`` (the read-out fit of
``DifferentiableRidgeEncoder.fit_store``), a ``LayerSweep`` (primal and dual layers),
``BandedRidgeEncoder.fit`` (himalaya's random search, then the cv R² at each choice; 2-3
spaces, several batches of targets), ``searchlight`` (volume, one and two threads,
chunk from ``max_memory``; spearman, pearson, tau-a and Bures comparisons) and ``surface``
(the searchlight on two icospheres: geodesic discs, the meshes' graphs and each chunk's
Dijkstra search) and ``fsaverage5`` (the same on a real folded cortex: nilearn's fsaverage5
pial and white meshes, read from the installed package, every vertex of both hemispheres).

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/bench_preflight.py [--quick]

Linux only (``/proc``). Prints one line per cell and the worst relative error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# (job, n, p, t, alphas, folds, batch, dtype, form)
GRID = [
    ("ridge", 2000, 500, 20000, 10, 5, 4096, "float32", "primal"),
    ("ridge", 3000, 800, 10000, 10, 5, 2048, "float32", "primal"),
    ("ridge", 3000, 800, 10000, 10, 5, 512, "float32", "primal"),
    ("ridge", 2000, 1000, 5000, 20, 5, 2048, "float64", "primal"),
    ("ridge", 4000, 256, 30000, 10, 5, 8192, "float32", "primal"),
    ("ridge", 600, 12000, 3000, 10, 5, 2048, "float32", "dual"),
    ("ridge", 800, 6000, 4000, 10, 5, 1024, "float64", "dual"),
    ("ridge", 2500, 600, 8000, 30, 3, 4096, "float32", "primal"),
    ("ridge", 1000, 50000, 2000, 10, 5, 4096, "float32", "dual"),  # bench_primal_dual's case
    ("ridge", 1500, 20000, 6000, 10, 5, 2048, "float32", "dual"),
    ("ridge", 3000, 512, 20000, 10, 5, 4096, "float32", "primal-disk"),  # store on disk
    ("rdm", 4000, 1000, 0, 0, 0, 0, "float64", "correlation"),
    ("rdm", 5000, 300, 0, 0, 0, 0, "float32", "correlation"),
    ("decoder", 2000, 1500, 256, 5, 5, 0, "float64", "primal"),
    ("decoder", 600, 8000, 512, 5, 5, 0, "float64", "dual"),
    ("refit", 3000, 1000, 4000, 0, 0, 4096, "float64", "primal"),
    ("refit", 800, 20000, 1000, 0, 0, 4096, "float64", "dual"),
    ("sweep", 2000, 512, 5000, 10, 5, 4096, "float32", 4),  # 4 layers of 512 features
    ("sweep", 600, 4000, 3000, 10, 5, 2048, "float32", 3),  # 3 dual-form layers
    ("sweep", 2000, 512, 5000, 10, 5, 4096, "float32", "6best"),  # keep_weights="best"
    # the responses in a store on disk (as the whole-brain sweep): one batch read at a time
    ("sweep", 3000, 512, 20000, 10, 5, 4096, "float32", "4diskbest"),
    ("sweep", 3000, 512, 20000, 10, 5, 2048, "float32", "3disk"),
    # banded: n, p (all spaces), t, alphas, folds, himalaya's batch, spaces x candidates
    ("banded", 2000, 400, 5000, 10, 5, 4096, "float32", "2x4"),
    ("banded", 1500, 1200, 3000, 8, 4, 1024, "float32", "3x3"),
    ("banded", 3000, 300, 12000, 10, 5, 2048, "float32", "2x3"),
    # searchlight: stimuli, side of a cubic mask (side^3 centres), models, radius, threads
    # (n_jobs), max_memory (MiB per thread), data dtype, method
    ("searchlight", 100, 30, 3, 3, 1, 256, "float64", "spearman"),
    ("searchlight", 60, 36, 2, 4, 2, 128, "float64", "pearson"),
    ("searchlight", 200, 24, 4, 2.5, 1, 512, "float32", "spearman"),
    ("searchlight", 100, 30, 3, 3, 1, 256, "float64", "tau_a"),
    ("searchlight", 80, 30, 3, 3, 1, 256, "float64", "bures"),
    # surface: stimuli, icosphere level (2 hemispheres of 10 * 4^level + 2 vertices),
    # models, disc radius (mm, on a sphere of radius 100 mm), threads, max_memory, dtype,
    # method; the data are the vertices of a polar cap of 12 % of each sphere
    ("surface", 100, 7, 3, 8.0, 1, 256, "float32", "spearman"),
    ("surface", 60, 6, 2, 12.0, 2, 128, "float64", "bures"),
    # fsaverage5: a real folded cortex (nilearn's fsaverage5, 2 x 10,242 vertices, read from
    # the installed package), the data on every vertex of both hemispheres: stimuli, the
    # mesh ("pial" or "white"), models, geodesic disc radius (mm), threads, max_memory,
    # dtype, method
    ("fsaverage5", 100, "pial", 3, 6.0, 1, 256, "float32", "spearman"),
    ("fsaverage5", 100, "pial", 3, 10.0, 1, 256, "float64", "spearman"),
    ("fsaverage5", 100, "pial", 3, 15.0, 2, 128, "float32", "spearman"),
    ("fsaverage5", 100, "white", 3, 10.0, 1, 256, "float32", "spearman"),
    ("fsaverage5", 80, "white", 3, 6.0, 1, 256, "float64", "bures"),
    ("fsaverage5", 80, "white", 3, 10.0, 1, 256, "float64", "bures"),
    ("fsaverage5", 60, "pial", 2, 15.0, 2, 128, "float64", "bures"),
    # the same folds at fsaverage's density: each hemisphere subdivided twice (163,842
    # vertices), every vertex a centre
    ("fsaverage5", 20, "pial-dense", 2, 6.0, 1, 256, "float32", "spearman"),
    ("fsaverage5", 60, "pial-dense", 2, 6.0, 2, 128, "float64", "spearman"),
]
QUICK = [GRID[0], GRID[8], GRID[11], GRID[13], GRID[16], GRID[19], GRID[24]]

CHILD = r"""
import json, sys, numpy as np
job, n, p, t, a, F, batch, dtype, form = json.loads(sys.argv[1])
from neuroalign import _preflight as pf

def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

rng = np.random.default_rng(0)
if job == 'ridge':
    from neuroalign.encoders import ridge_cv
    from neuroalign.store import cv_folds
    X = rng.standard_normal((n, p)).astype(dtype)
    Y = rng.standard_normal((n, t)).astype(dtype)
    folds = cv_folds(np.arange(n).astype(str), F)
    alphas = np.logspace(-2, 5, a)
    disk = form.endswith('-disk')  # the responses in a store on disk, read a batch at a time
    form = form.removesuffix('-disk')
    if disk:
        import atexit, shutil, tempfile
        from neuroalign.store import LazyResponses, open_store, save_store
        from neuroalign.testing import make_store
        tmp = tempfile.mkdtemp(prefix='bench-preflight-')
        atexit.register(shutil.rmtree, tmp, True)
        save_store(make_store(n, t, n_repetitions=1, n_test=0, dtype=np.dtype(dtype)).assign(
            responses=(('presentation', 'neuroid'), Y)), tmp + '/store.zarr')
        del Y
        Y = LazyResponses(open_store(tmp + '/store.zarr')['responses'])
    est = pf.ridge_memory(n, p, t, n_alphas=a, n_folds=F, batch=batch,
                          itemsize=np.dtype(dtype).itemsize, form=form, disk=disk)
    run = lambda: ridge_cv(X, Y, alphas, folds, form=form, n_targets_batch=batch, refit=True)
elif job == 'refit':
    from neuroalign.encoders import ridge_refit
    X = rng.standard_normal((n, p)).astype(dtype)
    Y = rng.standard_normal((n, t)).astype(dtype)
    est = pf.refit_memory(n, p, t, batch=batch, itemsize=np.dtype(dtype).itemsize, form=form)
    run = lambda: ridge_refit(X, Y, np.full(t, 10.0), form=form, n_targets_batch=batch,
                              dtype=dtype)
elif job == 'sweep':
    from neuroalign.encoders import LayerSweep
    keep = 'best' if str(form).endswith('best') else 'all'
    disk = 'disk' in str(form)  # the responses in a store on disk, read a batch at a time
    n_layers = int(str(form).removesuffix('best').removesuffix('disk'))
    layers = {f'l{i}': rng.standard_normal((n, p)).astype(dtype) for i in range(n_layers)}
    Y = rng.standard_normal((n, t)).astype(dtype)
    if disk:
        import tempfile, xarray as xr
        from neuroalign.store import open_store, save_store
        from neuroalign.testing import make_store
        ids = np.array([f'stim{i:06d}' for i in range(n)])
        import atexit, shutil
        tmp = tempfile.mkdtemp(prefix='bench-preflight-')
        atexit.register(shutil.rmtree, tmp, True)
        save_store(make_store(n, t, n_repetitions=1, n_test=0, dtype=np.dtype(dtype)).assign(
            responses=(('presentation', 'neuroid'), Y)).assign_coords(
            stimulus_id=('presentation', ids)), tmp + '/store.zarr')
        del Y
        Y = open_store(tmp + '/store.zarr')
        layers = xr.Dataset({k: (('stimulus', f'u{k}'), v) for k, v in layers.items()},
                            coords={'stimulus_id': ('stimulus', ids)})
    est = pf.sweep_peak(n, [p] * n_layers, t, n_alphas=a, n_folds=F, batch=batch,
                        itemsize=np.dtype(dtype).itemsize, keep=keep, responses=not disk)
    sweep = LayerSweep(alphas=np.logspace(-2, 5, a), cv=F, device='cpu', dtype=dtype,
                       n_targets_batch=batch, keep_weights=keep)
    run = lambda: sweep.fit(layers, Y)
elif job == 'banded':
    from neuroalign._preflight_search import banded_memory
    from neuroalign.encoders import BandedRidgeEncoder, _banded_solve
    s, iters = (int(v) for v in form.split('x'))
    sizes = [p // s] * s
    X = {f's{i}': rng.standard_normal((n, q)).astype(dtype) for i, q in enumerate(sizes)}
    # targets of every signal-to-noise ratio, so that every alpha is chosen by some
    gain = np.logspace(-2, 1, t).astype(dtype)
    Y = sum((X[k] @ rng.standard_normal((q, t)).astype(dtype)) / np.sqrt(q)
            for k, q in zip(X, sizes)) * gain + rng.standard_normal((n, t)).astype(dtype)
    _banded_solve.TARGETS_BATCH = batch
    est = n * t * 4 + banded_memory(n, sizes, t, n_alphas=a, n_iter=iters, n_folds=F,
                                    batch=batch)  # + the fit's copy of the valid targets
    enc = BandedRidgeEncoder(alphas=np.logspace(-2, 5, a), n_iter=iters, cv=F, device='cpu')
    run = lambda: enc.fit(X, Y)
elif job in ('searchlight', 'surface', 'fsaverage5'):
    from neuroalign._config import max_threads
    from neuroalign._preflight_search import searchlight_chunk, searchlight_memory
    from neuroalign.compare import searchlight
    from neuroalign.compare._searchlight import _geometry_sizes
    from neuroalign.compare._searchlight_geometry import SurfaceDiscs, VolumeSpheres
    side, k, radius, jobs, mib = p, t, a, F, batch
    if job == 'searchlight':
        ijk = np.argwhere(np.ones((side,) * 3, dtype=bool))
        N = len(ijk)
        geom = VolumeSpheres(ijk, radius, (side,) * 3)
        where = dict(ijk=ijk, volume_shape=(side,) * 3)
    elif job == 'fsaverage5':
        from nilearn.datasets import load_fsaverage
        name, _, dense = side.partition('-')
        surf = load_fsaverage('fsaverage5')[{'pial': 'pial', 'white': 'white_matter'}[name]]
        meshes = {h: (np.asarray(surf.parts[part].coordinates, dtype=np.float64),
                      np.asarray(surf.parts[part].faces))
                  for h, part in (('lh', 'left'), ('rh', 'right'))}
        del surf
        if dense:  # 'pial-dense': subdivided twice at the edges' midpoints, fsaverage's
            for h, (v, f) in meshes.items():  # density (163,842 vertices), the same folds
                for _ in range(2):
                    e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
                    edges, inv = np.unique(e, axis=0, return_inverse=True)
                    mid = len(v) + inv.reshape(3, -1).T
                    v = np.vstack([v, (v[edges[:, 0]] + v[edges[:, 1]]) / 2])
                    (a, b, c), (ab, bc, ca) = f.T, mid.T
                    f = np.concatenate([np.stack(x, 1) for x in ((a, ab, ca), (b, bc, ab),
                                                                  (c, ca, bc), (ab, bc, ca))])
                meshes[h] = (v, f)
            del e, edges, inv, mid, a, b, c, ab, bc, ca, v, f
        V = len(meshes['lh'][0])
        vertex, hemi = np.r_[np.arange(V), np.arange(V)], np.repeat(['lh', 'rh'], V)
        N = len(vertex)
        geom = SurfaceDiscs(meshes, hemi, vertex, radius, 1.0)
        import xarray as xr
        where = dict(surface=meshes)
    else:
        sys.path.insert(0, 'benchmarks')
        from bench_searchlight import icosphere
        v, f = icosphere(side)
        cap = np.flatnonzero(v[:, 2] > 100 * (1 - 2 * 0.12))
        vertex, hemi = np.r_[cap, cap], np.repeat(['lh', 'rh'], len(cap))
        N = len(vertex)
        geom = SurfaceDiscs({'lh': (v, f), 'rh': (v, f)}, hemi, vertex, radius, 0.0)
        import xarray as xr
        where = dict(surface={'lh': (v, f), 'rh': (v, f)}, threshold=0.0)
    X = rng.standard_normal((n, N)).astype(dtype)
    if job in ('surface', 'fsaverage5'):
        X = xr.DataArray(X, dims=('stimulus', 'neuroid'),
                         coords={'vertex': ('neuroid', vertex), 'hemisphere': ('neuroid', hemi)})
    models = rng.random((k, n * (n - 1) // 2))
    sizes = _geometry_sizes(geom)
    width = sizes.pop('width')
    del geom
    workers = min(max_threads(), jobs)
    kw = dict(method=form, rdm_metric='correlation', itemsize=np.dtype(dtype).itemsize)
    chunk = searchlight_chunk(n, N, width, n_models=k, workers=workers, max_memory=mib,
                              apply_budget=False, **kw, **sizes)
    sizes.pop('max_chunk', None)
    est = searchlight_memory(n, N, width, chunk, n_models=k, workers=workers, **kw, **sizes)
    run = lambda: searchlight(X, models, radius=radius, method=form, n_jobs=jobs,
                              max_memory=mib, show_progress=False, **where)
elif job == 'rdm':
    from neuroalign.compare import rdm
    X = rng.standard_normal((n, p)).astype(dtype)
    est = pf.rdm_memory(n, p, metric=form, copy=dtype != 'float64')
    run = lambda: rdm(X, form)
else:
    import xarray as xr
    from neuroalign.decoders import EmbeddingDecoder
    from neuroalign.testing import make_store
    store = make_store(n, p, n_repetitions=1, n_test=0, dtype=np.float64)
    ids = store['stimulus_id'].values
    feats = xr.DataArray(rng.standard_normal((len(ids), t)), dims=('stimulus', 'unit'),
                         coords={'stimulus_id': ('stimulus', ids)})
    del rng
    dec = EmbeddingDecoder(kind='ridge', alphas=np.logspace(-1, 3, a), cv=F, average=False)
    est = pf.decoder_memory(n, p, t, n_alphas=a, n_folds=F, copy=False)  # float64: a view
    run = lambda: dec.fit(store, feats)
import ctypes, gc; gc.collect()
ctypes.CDLL('libc.so.6').malloc_trim(0)  # freed set-up memory back to the system first
base = status('VmRSS')
open('/proc/self/clear_refs', 'w').write('5')
run()
peak = status('VmHWM') - base
print(json.dumps({'est': est, 'peak': peak}))
"""


def run_cell(cell) -> dict:
    env = dict(os.environ, NEUROALIGN_MEMORY_LIMIT="off")
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cell)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return fh.read().split()[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", default="", help="comma-separated jobs to run (default: all)")
    args = ap.parse_args()
    worst = 0.0
    cells = QUICK if args.quick else GRID
    if args.jobs:
        jobs = set(args.jobs.split(","))
        if "searchlight" in jobs:
            jobs |= {"surface", "fsaverage5"}  # the searchlight on a surface
        cells = [c for c in cells if c[0] in jobs]
    for cell in cells:
        r = run_cell(cell)
        err = (r["est"] - r["peak"]) / r["peak"]
        worst = max(worst, abs(err))
        job, n, p, t, a, F, batch, dtype, form = cell
        form = f"{form} layers" if job == "sweep" else form
        if job in ("searchlight", "surface", "fsaverage5"):
            where = {"searchlight": f"centres={p}^3", "surface": f"icosphere={p}",
                     "fsaverage5": f"mesh={p}"}[job]
            label = (f"{job:<8} stimuli={n:<4} {where} models={t} radius={a} "
                     f"n_jobs={F} max_memory={batch} {dtype:<8} {form:<12}")
        else:
            label = (f"{job:<8} n={n:<6} p={p:<6} t={t:<6} alphas={a:<3} folds={F} "
                     f"batch={batch:<5} {dtype:<8} {form:<12}")
        print(f"{label} measured {r['peak'] / 2**20:8.1f} MiB  estimate "
              f"{r['est'] / 2**20:8.1f} MiB  error {err:+6.1%}  load {_load()}", flush=True)
    print(f"worst |error|: {worst:.1%}")


if __name__ == "__main__":
    main()
