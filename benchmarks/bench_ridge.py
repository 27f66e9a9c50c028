"""Benchmark: cross-validated ridge with a per-neuroid alpha.

neuroalign ``RidgeEncoder`` vs himalaya ``RidgeCV`` vs scikit-learn ``RidgeCV``, on the
same data and the same stimulus-grouped folds, each in its own subprocess (so peak
resident memory is measured per method), plus a ``LayerSweep`` over many layers against
independent fits. Run from the repository root::

    python benchmarks/bench_ridge.py                      # full size (see README)
    python benchmarks/bench_ridge.py --n 1000 --p 256 --t 2000 --layers 4   # quick
    python benchmarks/bench_ridge.py --device cuda --himalaya-backend torch_cuda --no-sweep \
        --methods neuroalign,himalaya                     # on a GPU: both sides on the device

Prints a Markdown table; ``--json`` writes the raw figures. On a GPU the table adds each
side's peak device memory (``torch.cuda.max_memory_allocated``) and the times include the
copies to and from the device (the results come back as numpy arrays).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_data(n, p, t, seed=0, noise=4.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p), dtype=np.float32)
    Y = np.empty((n, t), dtype=np.float32)
    k = min(64, p)
    step = 2048
    for start in range(0, t, step):
        stop = min(start + step, t)
        W = rng.standard_normal((k, stop - start), dtype=np.float32)
        W *= rng.random(stop - start, dtype=np.float32) * 0.5
        Y[:, start:stop] = X[:, :k] @ W + noise * rng.standard_normal((n, stop - start), dtype=np.float32)
    return X, Y


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return float(line.split()[1]) / 1024.0
    return float("nan")


def child(args) -> None:
    """Run one method in this (fresh) process; print a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from himalaya.ridge import RidgeCV as HimalayaRidgeCV
    from sklearn.linear_model import RidgeCV as SkRidgeCV

    from neuroalign.encoders import LayerSweep, RidgeEncoder
    from neuroalign.store import cv_folds

    alphas = np.logspace(-2, 6, args.alphas)
    out = {"method": args.method, "device": args.device}
    cuda = args.device.startswith("cuda")
    if cuda:  # CUDA initialised before the clock starts, for both sides
        torch.zeros(1, device=args.device)
        torch.cuda.reset_peak_memory_stats()
    if args.method in ("sweep", "independent"):
        layers = {f"layer{i}": make_data(args.n, args.p, 1, seed=100 + i)[0] for i in range(args.layers)}
        _, Y = make_data(args.n, args.p, args.t)
        base = current_rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        if args.method == "sweep":
            sw = LayerSweep(alphas=alphas, cv=args.folds, device=args.device).fit(layers, Y)
            best = sw.best_alphas_.values
        else:
            best = np.stack([RidgeEncoder(alphas=alphas, cv=args.folds, device=args.device).fit(X, Y).best_alphas_
                             for X in layers.values()])
        out["time_s"] = time.perf_counter() - t0
        out["cpu_s"] = time.process_time() - c0
    else:
        X, Y = make_data(args.n, args.p, args.t)
        folds = cv_folds(np.arange(args.n).astype(str), args.folds)
        base = current_rss_mb()
        t0, c0 = time.perf_counter(), time.process_time()
        if args.method == "neuroalign":
            enc = RidgeEncoder(alphas=alphas, cv=args.folds, device=args.device,
                               n_targets_batch=args.batch).fit(X, Y)
            best = enc.best_alphas_
        elif args.method == "himalaya":
            from himalaya.backend import set_backend

            backend = set_backend(args.himalaya_backend, on_error="raise")
            enc = HimalayaRidgeCV(alphas=alphas, cv=folds, fit_intercept=True).fit(X, Y)
            best = backend.to_numpy(enc.best_alphas_)  # waits for the device
        elif args.method == "sklearn":
            enc = SkRidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
            best = np.asarray(enc.alpha_)
        elif args.method == "neuroalign-loo":
            enc = RidgeEncoder(alphas=alphas, cv="loo", device=args.device, n_targets_batch=args.batch).fit(X, Y)
            best = enc.best_alphas_
        else:
            raise SystemExit(f"unknown method {args.method!r}")
        out["time_s"] = time.perf_counter() - t0
        out["cpu_s"] = time.process_time() - c0
    out["peak_device_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    out["peak_rss_mb"] = rss_mb()
    out["baseline_rss_mb"] = base
    out["peak_extra_mb"] = out["peak_rss_mb"] - base
    np.save(args.save, np.asarray(best, dtype=np.float64))
    print("RESULT " + json.dumps(out), flush=True)


def run(method, args, tmp) -> dict:
    save = Path(tmp) / f"{method}.npy"
    cmd = [sys.executable, __file__, "--child", method, "--save", str(save),
           "--n", str(args.n), "--p", str(args.p), "--t", str(args.t), "--alphas", str(args.alphas),
           "--folds", str(args.folds), "--threads", str(args.threads), "--batch", str(args.batch),
           "--layers", str(args.layers), "--device", args.device,
           "--himalaya-backend", args.himalaya_backend]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{method} failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(lines[-1][7:])
    res["best"] = np.load(save)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--p", type=int, default=1024)
    ap.add_argument("--t", type=int, default=20000)
    ap.add_argument("--alphas", type=int, default=20)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--sweep-n", type=int, default=2000)
    ap.add_argument("--sweep-p", type=int, default=256)
    ap.add_argument("--sweep-t", type=int, default=5000)
    ap.add_argument("--methods", default="neuroalign,himalaya,sklearn")
    ap.add_argument("--device", default="cpu", help="neuroalign's device= (cpu, cuda)")
    ap.add_argument("--himalaya-backend", default="numpy",
                    help="himalaya's backend (numpy, torch, torch_cuda, cupy)")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", default=None)
    ap.add_argument("--save", default=None)
    args = ap.parse_args()
    if args.child:
        args.method = args.child
        child(args)
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in args.methods.split(","):
            print(f"running {m} ...", file=sys.stderr, flush=True)
            results[m] = run(m, args, tmp)
        if not args.no_sweep:
            sargs = argparse.Namespace(**{**vars(args), "n": args.sweep_n, "p": args.sweep_p,
                                          "t": args.sweep_t})
            for m in ("sweep", "independent"):
                print(f"running {m} ...", file=sys.stderr, flush=True)
                results[m] = run(m, sargs, tmp)
    ref = results["neuroalign"]["best"] if "neuroalign" in results else None
    print(f"\nX {args.n}x{args.p}, Y {args.n}x{args.t} float32, {args.alphas} alphas, "
          f"{args.folds} folds, {args.threads} threads, neuroalign on {args.device}, himalaya's "
          f"backend {args.himalaya_backend}\n")
    print("| method | time (s) | CPU time (s) | peak RSS (MB) | peak above data (MB) | peak device memory (MB) | alphas equal to neuroalign |")
    print("|---|---|---|---|---|---|---|")
    for m in args.methods.split(","):
        r = results[m]
        same = "-" if ref is None or m == "neuroalign" else f"{np.mean(np.isclose(r['best'], ref, rtol=1e-4)):.4f}"
        dev = "-" if r.get("peak_device_mb") is None else f"{r['peak_device_mb']:.0f}"
        print(f"| {m} | {r['time_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{r['peak_extra_mb']:.0f} | {dev} | {same} |")
    if "himalaya" in results and "neuroalign" in results:
        h, o = results["himalaya"], results["neuroalign"]
        print(f"\nspeed-up vs himalaya: {h['time_s'] / o['time_s']:.2f}x; peak-above-data ratio "
              f"neuroalign/himalaya: {o['peak_extra_mb'] / h['peak_extra_mb']:.2f}; peak RSS ratio: "
              f"{o['peak_rss_mb'] / h['peak_rss_mb']:.2f}")
    if not args.no_sweep:
        s, i = results["sweep"], results["independent"]
        print(f"\nlayer sweep, {args.layers} layers of X {args.sweep_n}x{args.sweep_p}, Y "
              f"{args.sweep_n}x{args.sweep_t}: sweep {s['time_s']:.1f} s, {args.layers} independent "
              f"fits {i['time_s']:.1f} s ({i['time_s'] / s['time_s']:.2f}x), alphas identical: "
              f"{np.array_equal(s['best'], i['best'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {m: {k: v for k, v in r.items() if k != "best"} for m, r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
