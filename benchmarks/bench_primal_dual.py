"""p >> n: the automatic (dual) form against the forced primal form and himalaya.

1,000 samples x 50,000 features (float32) against ``--targets`` targets, 10 alphas, 5
folds. Each method runs in a fresh subprocess (wall time and peak RSS minus the baseline
with the data loaded):

* neuroalign ``form="auto"`` (chooses the dual form here; the fit keeps dual
  coefficients, as a kernel ridge does);
* the same, then its primal weights ``coef`` asked for (formed from the dual
  coefficients a block of features at a time);
* neuroalign ``form="primal"``: the memory preflight refuses it at 50,000 features (each
  fold's ``X^T X`` and its eigendecomposition need ~37 GiB); it is timed at
  ``--primal-features`` features instead, with the dual form at the same size;
* himalaya ``KernelRidgeCV(kernel="linear")`` (numpy backend) on the same folds, on the
  features centred as neuroalign centres them (absolute alphas on both sides), and the
  chosen alphas compared.

Both libraries are imported before the baseline is taken.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/bench_primal_dual.py [--no-primal]
        [--dtype float64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time, numpy as np
method, n, p, t, dtype = json.loads(sys.argv[1])
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
rng = np.random.default_rng(0)
X = rng.standard_normal((n, p), dtype=np.float32)
W = rng.standard_normal((p, t), dtype=np.float32) / np.sqrt(p)
Y = (X @ W + rng.standard_normal((n, t), dtype=np.float32)).astype(np.float32)
del W
X, Y = X.astype(dtype, copy=False), Y.astype(dtype, copy=False)
alphas = np.logspace(0, 6, 10)
from neuroalign.store import cv_folds
folds = cv_folds(np.arange(n).astype(str), 5)
if method == 'himalaya':
    from himalaya.kernel_ridge import KernelRidgeCV
    X -= X.mean(0)
else:  # both libraries imported before the baseline
    from neuroalign.encoders import ridge_cv
import gc; gc.collect()
base = status('VmRSS'); open('/proc/self/clear_refs', 'w').write('5')
import resource
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
t0, c0 = time.perf_counter(), cpu()
err = None
try:
    if method == 'himalaya':
        m = KernelRidgeCV(alphas=alphas, kernel='linear', cv=folds, fit_intercept=True).fit(X, Y)
        best = np.asarray(m.best_alphas_)
    else:
        res = ridge_cv(X, Y, alphas, folds, form=None if method.startswith('auto') else method,
                       refit=True, relative_alphas=False)
        best = res.best_alphas
        if method == 'auto+coef':  # the primal weights asked for (formed from the dual ones)
            assert res.coef.shape == (p, t) and res.coef.dtype == X.dtype
except MemoryError as e:
    err, best = str(e), np.array([])
wall, cpu_s = time.perf_counter() - t0, cpu() - c0
np.save(sys.argv[2], best)
print(json.dumps({'wall': wall, 'cpu': cpu_s, 'peak': status('VmHWM') - base, 'error': err}))
"""


def run(method, n, p, t, dtype, out) -> dict:
    env = dict(os.environ)
    res = subprocess.run([sys.executable, "-c", CHILD, json.dumps([method, n, p, t, dtype]), out],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    import tempfile

    import numpy as np

    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--features", type=int, default=50000)
    ap.add_argument("--targets", type=int, default=2000)
    ap.add_argument("--primal-features", type=int, default=4000)
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--no-primal", action="store_true",
                    help="skip the primal rows (the forced primal fit takes minutes)")
    a = ap.parse_args()
    holder = tempfile.TemporaryDirectory()  # removed at exit
    tmp = holder.name
    rows = [("auto", a.features), ("himalaya", a.features), ("auto+coef", a.features)]
    if not a.no_primal:
        rows += [("primal", a.features), ("primal", a.primal_features),
                 ("auto", a.primal_features)]
    best = {}
    for method, p in rows:
        path = f"{tmp}/{method}-{p}.npy"
        r = run(method, a.samples, p, a.targets, a.dtype, path)
        best[method, p] = np.load(path)
        if r["error"]:
            print(f"{method:<9} {a.samples} x {p:<6} -> {a.targets} targets: refused by the "
                  f"preflight: {r['error'][:160]}...", flush=True)
            continue
        print(f"{method:<9} {a.samples} x {p:<6} -> {a.targets} targets: {r['wall']:8.2f} s wall, "
              f"{r['cpu']:8.2f} s CPU, "
              f"peak {r['peak'] / 2**20:8.1f} MiB", flush=True)
    same = np.mean(np.isclose(best["auto", a.features], best["himalaya", a.features], rtol=1e-6))
    print(f"alphas equal to himalaya's at {a.features} features ({a.dtype}): {same:.1%} of targets")
    if not a.no_primal:
        same = np.mean(best["auto", a.primal_features] == best["primal", a.primal_features])
        print(f"dual (auto) and primal alphas equal at {a.primal_features} features: {same:.1%}")


if __name__ == "__main__":
    main()
