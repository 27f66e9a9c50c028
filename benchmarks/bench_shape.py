"""Shape-metric distance matrix: neuroalign.compare.distance_matrix against netrep.

Each side runs in a fresh process on the same generated systems (fixed seed); values are
checked against each other::

    nice -n 0 python benchmarks/bench_shape.py                    # 20 systems 2000 x 500
    nice -n 0 python benchmarks/bench_shape.py --ref-systems 8    # netrep on 8 (28 pairs)

netrep is not on PyPI and is never imported by neuroalign: its column runs only when a
checkout is found (``--netrep PATH``, default ``$NETREP_PATH``), put on ``PYTHONPATH`` of
that side's process only; otherwise that column is skipped with a message. Sides:

- ``neuroalign``: ``distance_matrix(systems, "procrustes" | "cca")`` (threads over rows of
  pairs with one BLAS thread each);
- ``netrep_pool``: ``LinearMetric(alpha).pairwise_distances(systems, processes=2)`` (its
  multiprocessing pool, one pair per task);
- ``netrep_seq``: ``netrep.multiset.pairwise_distances(LinearMetric(alpha), systems)``
  (its sequential loop).

netrep's per-pair time is scaled from ``--ref-systems`` systems to all pairs (its work is
one independent fit per pair); ``--ref-systems 20`` times it on all 190 pairs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fresh import run_fresh, self_peak_rss_mib  # noqa: E402


def make_systems(n_sys, n, p, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, p))
    return [latent @ rng.standard_normal((p, p)) + rng.standard_normal((n, p))
            for _ in range(n_sys)]


def worker(args):
    systems = make_systems(args.n_sys, args.n, args.p)[:args.use]
    rss0 = self_peak_rss_mib()
    if args.side == "neuroalign":
        from neuroalign.compare import distance_matrix

        distance_matrix(make_systems(3, 50, 5, seed=1), args.metric)  # warm-up (imports)
        t0 = time.perf_counter()
        D = distance_matrix(systems, args.metric, show_progress=False).values
    else:
        from netrep.metrics import LinearMetric
        from netrep.multiset import pairwise_distances

        metric = LinearMetric(alpha=1.0 if args.metric == "procrustes" else 0.0)
        warm = make_systems(3, 50, 5, seed=1)
        t0 = time.perf_counter()
        if args.side == "netrep_pool":
            metric.pairwise_distances(warm, processes=args.processes, verbose=False)
            t0 = time.perf_counter()
            D = metric.pairwise_distances(systems, processes=args.processes, verbose=False)[0]
        else:
            pairwise_distances(metric, warm, verbose=False)
            t0 = time.perf_counter()
            D = pairwise_distances(metric, systems, verbose=False)
            D = D[0] if isinstance(D, tuple) else D
    seconds = time.perf_counter() - t0
    np.save(args.save, D)
    print(json.dumps({"side": args.side, "seconds": seconds, "systems": len(systems),
                      "pairs": len(systems) * (len(systems) - 1) // 2,
                      "peak_rss_MiB": self_peak_rss_mib(), "rss_after_data_MiB": rss0}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--use", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n-sys", type=int, default=20)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--p", type=int, default=500)
    ap.add_argument("--metric", choices=["procrustes", "cca"], default="procrustes")
    ap.add_argument("--ref-systems", type=int, default=8,
                    help="netrep timed on the pairs of this many systems, scaled to all")
    ap.add_argument("--processes", type=int, default=2, help="netrep's pool size")
    ap.add_argument("--netrep", default=os.environ.get("NETREP_PATH"),
                    help="a netrep checkout (its parent of the 'netrep' package)")
    ap.add_argument("--sides", default="neuroalign,netrep_pool,netrep_seq")
    args = ap.parse_args(argv)
    if args.side:
        args.use = args.use or args.n_sys
        return worker(args)
    common = ["--n-sys", str(args.n_sys), "--n", str(args.n), "--p", str(args.p),
              "--metric", args.metric, "--processes", str(args.processes)]
    threads = os.environ.get("OMP_NUM_THREADS", "2")
    all_pairs = args.n_sys * (args.n_sys - 1) // 2
    res, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides.split(","):
            if side != "neuroalign" and not (args.netrep and Path(args.netrep, "netrep").is_dir()):
                print(f"# {side}: skipped, no netrep checkout (netrep is not on PyPI; pass "
                      "--netrep PATH or set NETREP_PATH)", flush=True)
                continue
            env = {"OMP_NUM_THREADS": threads}
            if side != "neuroalign":
                env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                     args.netrep])
            use = args.n_sys if side == "neuroalign" else args.ref_systems
            r = run_fresh(__file__, [*common, "--side", side, "--use", str(use),
                                     "--save", f"{tmp}/{side}.npy"], env=env)
            if "error" in r:
                print(json.dumps(r), flush=True)
                continue
            r["seconds_all_pairs"] = r["seconds"] * all_pairs / r["pairs"]
            res[side] = r
            print(json.dumps(r), flush=True)
        if "neuroalign" in res:
            ours = np.load(f"{tmp}/neuroalign.npy")
            for side in ("netrep_pool", "netrep_seq"):
                if side not in res:
                    continue
                ref = np.load(f"{tmp}/{side}.npy")
                k = len(ref)
                iu = np.triu_indices(k, 1)
                rows.append({
                    "case": f"{args.metric}: {args.n_sys} systems {args.n}x{args.p} "
                            f"({all_pairs} pairs) vs {side}",
                    "speedup": res[side]["seconds_all_pairs"] / res["neuroalign"]["seconds"],
                    "neuroalign_s": res["neuroalign"]["seconds"],
                    f"{side}_s_measured": res[side]["seconds"],
                    f"{side}_pairs_timed": res[side]["pairs"],
                    f"{side}_s_scaled": res[side]["seconds_all_pairs"],
                    "max_rel_diff": float(np.max(np.abs(ours[:k, :k][iu] - ref[iu])
                                                 / np.abs(ref[iu]))),
                    "neuroalign_peak_rss_MiB": res["neuroalign"]["peak_rss_MiB"],
                    f"{side}_peak_rss_MiB": res[side]["peak_rss_MiB"],
                    "load": res[side]["load_after"]})
                print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
