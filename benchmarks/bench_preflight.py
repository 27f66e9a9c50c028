"""Memory preflight: estimated peak against the peak measured in a fresh process.

Each cell of the grid runs in its own subprocess: it builds the inputs (in the working
dtype, touched), returns the memory freed while building them to the system (``malloc_trim``: otherwise the
job reuses it unseen), resets the kernel's peak-RSS counter (``/proc/self/clear_refs``), runs the
job and reports ``VmHWM - VmRSS`` (peak resident memory minus the baseline with the inputs
loaded) next to :mod:`neuroalign._preflight`'s estimate. Jobs: ``ridge_cv`` with refit
(primal and dual forms, float32 and float64, several batch sizes and alpha counts), the
correlation RDM, the ridge decoder's fit (``EmbeddingDecoder(kind="ridge")``, brain
features fewer and more than the samples), ``ridge_refit`` (the read-out fit of
``DifferentiableRidgeEncoder.fit_store``) and a ``LayerSweep`` (primal and dual layers).

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
    ("rdm", 4000, 1000, 0, 0, 0, 0, "float64", "correlation"),
    ("rdm", 5000, 300, 0, 0, 0, 0, "float32", "correlation"),
    ("decoder", 2000, 1500, 256, 5, 5, 0, "float64", "primal"),
    ("decoder", 600, 8000, 512, 5, 5, 0, "float64", "dual"),
    ("refit", 3000, 1000, 4000, 0, 0, 4096, "float64", "primal"),
    ("refit", 800, 20000, 1000, 0, 0, 4096, "float64", "dual"),
    ("sweep", 2000, 512, 5000, 10, 5, 4096, "float32", 4),  # 4 layers of 512 features
    ("sweep", 600, 4000, 3000, 10, 5, 2048, "float32", 3),  # 3 dual-form layers
]
QUICK = [GRID[0], GRID[8], GRID[10], GRID[12], GRID[15]]

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
    est = pf.ridge_memory(n, p, t, n_alphas=a, n_folds=F, batch=batch,
                          itemsize=np.dtype(dtype).itemsize, form=form)
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
    layers = {f'l{i}': rng.standard_normal((n, p)).astype(dtype) for i in range(form)}
    Y = rng.standard_normal((n, t)).astype(dtype)
    est = pf.sweep_peak(n, [p] * form, t, n_alphas=a, n_folds=F, batch=batch,
                        itemsize=np.dtype(dtype).itemsize)
    sweep = LayerSweep(alphas=np.logspace(-2, 5, a), cv=F, device='cpu', dtype=dtype,
                       n_targets_batch=batch)
    run = lambda: sweep.fit(layers, Y)
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
        cells = [c for c in cells if c[0] in args.jobs.split(",")]
    for cell in cells:
        r = run_cell(cell)
        err = (r["est"] - r["peak"]) / r["peak"]
        worst = max(worst, abs(err))
        job, n, p, t, a, F, batch, dtype, form = cell
        form = f"{form} layers" if job == "sweep" else form
        print(f"{job:<8} n={n:<6} p={p:<6} t={t:<6} alphas={a:<3} folds={F} batch={batch:<5} "
              f"{dtype:<8} {form:<12} measured {r['peak'] / 2**20:8.1f} MiB  estimate "
              f"{r['est'] / 2**20:8.1f} MiB  error {err:+6.1%}  load {_load()}", flush=True)
    print(f"worst |error|: {worst:.1%}")


if __name__ == "__main__":
    main()
