"""Benchmarks of neuroalign.compare against the reference libraries (same run, same data).

Run from the repository root::

    python benchmarks/bench_compare.py            # full sizes of the issue
    python benchmarks/bench_compare.py --quick    # small sizes, a smoke test

Each case reports wall time, peak traced memory (tracemalloc; numpy buffers are traced)
and the ratio to the reference, and checks that the values agree. The references:

- rsatoolbox ``calc_rdm`` / ``rdm.compare`` (installed);
- one matrix product ``X @ X.T`` of the same size (the floor of any correlation RDM);
- netrep's per-pair generalised shape metric, written out below as netrep's algorithm
  (centre, partially whiten both systems, SVD of the cross-product, transform, score), one
  pair at a time, as ``netrep.LinearMetric.fit_score`` does (netrep is not installed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neuroalign.compare import compare_rdms, distance_matrix, rdm  # noqa: E402
from neuroalign.compare._shape import EIGVAL_TOL  # noqa: E402


def timed(func, *args, repeat: int = 1, **kw):
    """(result, best wall seconds, peak traced MiB)."""
    best = np.inf
    peak = 0.0
    for _ in range(repeat):
        tracemalloc.start()
        t0 = time.perf_counter()
        out = func(*args, **kw)
        dt = time.perf_counter() - t0
        peak = max(peak, tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
        best = min(best, dt)
    return out, best, peak


# ---------------------------------------------------------------- netrep's per-pair algorithm
def _netrep_whiten(X, alpha):
    if alpha > 1 - EIGVAL_TOL:
        return X, np.eye(X.shape[1])
    lam, V = np.linalg.eigh(X.T @ X)
    lam = np.maximum(lam, EIGVAL_TOL)
    d = alpha + (1 - alpha) * lam ** (-0.5)
    new_var = np.sum(alpha**2 * lam + 2 * alpha * (1 - alpha) * lam**0.5 + (1 - alpha) ** 2)
    d = d * np.sqrt(np.sum(lam) / new_var)
    Z = (V * d[None, :]) @ V.T
    return X @ Z, Z


def netrep_pair(X, Y, alpha=1.0):
    """netrep LinearMetric(alpha, score_method='angular').fit_score(X, Y), per pair."""
    mx, my = X.mean(0), Y.mean(0)
    Xw, Zx = _netrep_whiten(X - mx, alpha)
    Yw, Zy = _netrep_whiten(Y - my, alpha)
    U, _, Vt = np.linalg.svd(Xw.T @ Yw)
    tX, tY = (X - mx) @ (Zx @ U), (Y - my) @ (Zy @ Vt.T)
    c = np.sum(tX * tY) / (np.linalg.norm(tX) * np.linalg.norm(tY))
    return float(np.arccos(np.clip(c, -1, 1)))


def netrep_matrix(systems, alpha):
    m = len(systems)
    D = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1, m):
            D[i, j] = D[j, i] = netrep_pair(systems[i], systems[j], alpha)
    return D


# ---------------------------------------------------------------- cases
def case_correlation_rdm(n, p, rng, skip_reference):
    import rsatoolbox

    X = rng.standard_normal((n, p))
    ours, t_ours, m_ours = timed(lambda: rdm(X, "correlation").values, repeat=2)
    _, t_mm, m_mm = timed(lambda: X @ X.T, repeat=2)
    row = {"case": f"correlation RDM {n}x{p}", "neuroalign_s": t_ours, "matmul_s": t_mm,
           "neuroalign_peak_MiB": m_ours, "matmul_peak_MiB": m_mm,
           "ratio_to_matmul": t_ours / t_mm}
    if not skip_reference:
        ds = rsatoolbox.data.Dataset(X)
        ref, t_ref, m_ref = timed(
            lambda: rsatoolbox.rdm.calc_rdm(ds, method="correlation").get_matrices()[0])
        row.update(rsatoolbox_s=t_ref, rsatoolbox_peak_MiB=m_ref, speedup=t_ref / t_ours,
                   max_rel_err=float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref))))
    return row


def case_rank_compare(n_stim, n_models, n_ref_models, rng):
    import rsatoolbox
    import torch  # noqa: F401 - long rows are sorted by torch; its one-time import (about
    # 2 s, much longer under tracemalloc) is left out of the timing, as rsatoolbox's is

    n_pairs = n_stim * (n_stim - 1) // 2
    data = rng.random(n_pairs)
    models = data[None] + rng.random((n_models, n_pairs)) * np.linspace(0.2, 5, n_models)[:, None]
    rows = []
    for ours_m, theirs_m in (("spearman", "spearman"), ("tau_a", "tau-a")):
        # first calls on a tiny input, untimed for the comparison: imports on both sides
        # (and, for tau-a, numba's import and its compiled count: loaded from numba's cache,
        # or compiled on the very first run of an installation); reported as first_call_s
        t0 = time.perf_counter()
        compare_rdms(models[:2, :500], data[:500], ours_m)
        first_call = time.perf_counter() - t0
        rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(models[:2, :500]),
                               rsatoolbox.rdm.RDMs(data[None, :500]), method=theirs_m)
        load_before = os.getloadavg()[0]
        ours, t_ours, m_ours = timed(lambda m=ours_m: compare_rdms(models, data, m))
        sub = models[:n_ref_models]
        ref, t_ref, m_ref = timed(lambda m=theirs_m, s=sub: rsatoolbox.rdm.compare(
            rsatoolbox.rdm.RDMs(s), rsatoolbox.rdm.RDMs(data[None]), method=m)[:, 0])
        t_ref_all = t_ref * n_models / n_ref_models
        rows.append({
            "case": f"{ours_m}: {n_models} model RDMs vs 1 data RDM ({n_stim} stimuli)",
            "neuroalign_s": t_ours, "neuroalign_peak_MiB": m_ours,
            "rsatoolbox_s_measured": t_ref, "rsatoolbox_models_timed": n_ref_models,
            "rsatoolbox_s_scaled_to_all": t_ref_all, "rsatoolbox_peak_MiB": m_ref,
            "speedup": t_ref_all / t_ours,
            "max_abs_err": float(np.max(np.abs(ours[:n_ref_models] - ref))),
            "first_call_s": first_call, "load_avg_before_after": [load_before,
                                                                  os.getloadavg()[0]],
        })
    return rows


def case_shape_matrix(n_sys, n, p, rng, alpha, n_ref_pairs):
    latent = rng.standard_normal((n, p))
    systems = [latent @ rng.standard_normal((p, p)) + rng.standard_normal((n, p))
               for _ in range(n_sys)]
    ours, t_ours, m_ours = timed(
        lambda: distance_matrix(systems, "procrustes" if alpha == 1 else "cca").values)
    n_pairs = n_sys * (n_sys - 1) // 2
    pairs = [(i, j) for i in range(n_sys) for j in range(i + 1, n_sys)][:n_ref_pairs]

    def ref_pairs():
        return [netrep_pair(systems[i], systems[j], alpha) for i, j in pairs]

    ref, t_ref, m_ref = timed(ref_pairs)
    t_ref_all = t_ref * n_pairs / len(pairs)
    err = max(abs(ours[i, j] - r) / abs(r) for (i, j), r in zip(pairs, ref, strict=True))
    return {"case": f"shape distance matrix alpha={alpha}: {n_sys} systems {n}x{p} "
                    f"({n_pairs} pairs)",
            "neuroalign_s": t_ours, "neuroalign_peak_MiB": m_ours,
            "netrep_pairs_timed": len(pairs), "netrep_s_measured": t_ref,
            "netrep_s_scaled_to_all": t_ref_all, "netrep_peak_MiB": m_ref,
            "speedup": t_ref_all / t_ours, "max_rel_err": float(err)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--only", choices=["rdm", "rank", "shape"], default=None)
    ap.add_argument("--alpha", type=float, action="append", default=None,
                    help="shape case: alpha value(s) (default 1 and 0)")
    ap.add_argument("--ref-pairs", type=int, default=None,
                    help="time netrep on this many pairs and scale (default: all 190)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    q = args.quick
    rows = []
    if args.only in (None, "rdm"):
        rows.append(case_correlation_rdm(300 if q else 2000, 2000 if q else 20000, rng, False))
        print(json.dumps(rows[-1]), flush=True)
    if args.only in (None, "rank"):
        for r in case_rank_compare(200 if q else 2000, 10 if q else 100, 3 if q else 10, rng):
            rows.append(r)
            print(json.dumps(r), flush=True)
    if args.only in (None, "shape"):
        for alpha in args.alpha or (1.0, 0.0):
            rows.append(case_shape_matrix(6 if q else 20, 300 if q else 2000, 50 if q else 500,
                                          rng, alpha, args.ref_pairs or (15 if q else 190)))
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
