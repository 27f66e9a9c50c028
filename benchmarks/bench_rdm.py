"""Correlation RDM and rank comparisons against rsatoolbox, each side in a fresh process.

    nice -n 0 python benchmarks/bench_rdm.py --only rdm     # 2000 stimuli x 20000 channels
    nice -n 0 python benchmarks/bench_rdm.py --only rank    # 100 model RDMs vs 1 (2000 stimuli)
    nice -n 0 python benchmarks/bench_rdm.py --only rank-small  # 5000 RDMs of 100 stimuli vs 1
    nice -n 0 python benchmarks/bench_rdm.py --quick        # small sizes

Each side generates the same data (fixed seed) in its own process, runs once untimed on a
small input (first-call imports), then is timed; it reports its time and its peak RSS
(``ru_maxrss``) and the RSS once the data is in memory, and saves its values, which the
parent compares. rsatoolbox's rank comparisons are timed on ``--ref-models`` of the model
RDMs and scaled to all (its ``compare`` loops over models).
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

RSA_METHOD = {"spearman": "spearman", "tau_a": "tau-a"}


def rdm_data(n, p):
    return np.random.default_rng(0).standard_normal((n, p))


def rank_data(n_stim, n_models):
    rng = np.random.default_rng(1)
    n_pairs = n_stim * (n_stim - 1) // 2
    data = rng.random(n_pairs)
    models = data[None] + rng.random((n_models, n_pairs)) * np.linspace(0.2, 5, n_models)[:, None]
    return data, models


def worker(args):
    import rsatoolbox

    if args.case == "rdm":
        X = rdm_data(args.n, args.p)
        small = rdm_data(20, 50)
        if args.side == "neuroalign":
            from neuroalign.compare import rdm

            def run(x):
                return rdm(x, "correlation").values
        else:
            def run(x):
                ds = rsatoolbox.data.Dataset(x)
                return rsatoolbox.rdm.calc_rdm(ds, method="correlation").get_matrices()[0]
    else:
        data, models = rank_data(args.n, args.n_models)
        if args.side == "rsatoolbox":
            models = models[:args.ref_models]
        X = (models, data)
        small = rank_data(30, 3)[::-1]
        if args.side == "neuroalign":
            if args.n * (args.n - 1) // 2 >= 1 << 15:
                import torch  # noqa: F401 - long rows are sorted by torch when imported

            from neuroalign.compare import compare_rdms

            def run(x):
                return compare_rdms(x[0], x[1], args.method)
        else:
            def run(x):
                return rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(x[0]),
                                              rsatoolbox.rdm.RDMs(x[1][None]),
                                              method=RSA_METHOD[args.method])[:, 0]
    run(small)
    rss0 = self_peak_rss_mib()
    t0 = time.perf_counter()
    out = run(X)
    seconds = time.perf_counter() - t0
    np.save(args.save, np.asarray(out))
    print(json.dumps({"side": args.side, "seconds": seconds, "peak_rss_MiB": self_peak_rss_mib(),
                      "rss_after_data_MiB": rss0,
                      "items": int(len(X[0])) if args.case == "rank" else None}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--method", default="spearman", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--p", type=int, default=20000, help=argparse.SUPPRESS)
    ap.add_argument("--n-models", type=int, default=100, help=argparse.SUPPRESS)
    ap.add_argument("--ref-models", type=int, default=10,
                    help="rsatoolbox timed on this many model RDMs, scaled to all")
    ap.add_argument("--only", choices=["rdm", "rank", "rank-small"], default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.side:
        return worker(args)
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    q = args.quick
    cases = []
    if args.only in (None, "rdm"):
        cases.append(("rdm", None, ["--n", str(300 if q else 2000), "--p",
                                    str(2000 if q else 20000)]))
    if args.only in (None, "rank"):
        n_models = 10 if q else 100
        for m in ("spearman", "tau_a"):
            cases.append(("rank", m, ["--n", str(200 if q else 2000), "--n-models",
                                      str(n_models), "--ref-models",
                                      str(3 if q else args.ref_models)]))
    if args.only in (None, "rank-small"):  # many short rows: ranked together, no row loop
        for m in ("spearman",):
            cases.append(("rank", m, ["--n", "100", "--n-models", str(500 if q else 5000),
                                      "--ref-models", str(500 if q else 5000)]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, method, extra in cases:
            res = {}
            for side in ("neuroalign", "rsatoolbox"):
                res[side] = run_fresh(__file__, ["--case", case, "--method", method or "",
                                                 "--side", side, "--save",
                                                 f"{tmp}/{side}.npy", *extra], env=env)
                print(json.dumps(res[side]), flush=True)
            ours, ref = np.load(f"{tmp}/neuroalign.npy"), np.load(f"{tmp}/rsatoolbox.npy")
            t_ref = res["rsatoolbox"]["seconds"]
            if case == "rank":
                k = res["rsatoolbox"]["items"]
                t_ref *= res["neuroalign"]["items"] / k
                diff = float(np.max(np.abs(ours[:k] - ref)))
                name = (f"{method}: {res['neuroalign']['items']} model RDMs vs 1 data RDM "
                        f"({extra[1]} stimuli)")
            else:
                diff = float(np.max(np.abs(ours - ref)))
                name = "correlation RDM " + " x ".join(extra[1::2])
            rows.append({"case": name, "speedup": t_ref / res["neuroalign"]["seconds"],
                         "neuroalign_s": res["neuroalign"]["seconds"],
                         "rsatoolbox_s_measured": res["rsatoolbox"]["seconds"],
                         "rsatoolbox_s_scaled": t_ref, "max_abs_diff": diff,
                         "neuroalign_peak_rss_MiB": res["neuroalign"]["peak_rss_MiB"],
                         "rsatoolbox_peak_rss_MiB": res["rsatoolbox"]["peak_rss_MiB"],
                         "neuroalign_rss_after_data_MiB": res["neuroalign"]["rss_after_data_MiB"],
                         "rsatoolbox_rss_after_data_MiB": res["rsatoolbox"]["rss_after_data_MiB"],
                         "load": res["rsatoolbox"]["load_after"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
