"""Cells and ``cluster=`` against the single-process run, in one run, one after the other.

For each entry point (RidgeEncoder.fit, searchlight, distance_matrix): the single-process
call; the same call in cached cells in this process (``result_path=``, first run: every cell
computed and written); the rerun with every cell on disk (only loading); and the cells on a
``LocalCluster`` of 2 worker processes (``cluster="local"``, start-up included). Each checks
that its values equal the single-process ones (alphas exactly, values to 1e-12).

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/bench_scaleout.py

``--small`` runs the same steps on small inputs (a check that the script works, not a
measurement).
"""

from __future__ import annotations

import tempfile
import time
import warnings

import numpy as np


def _timed(func):
    t = time.perf_counter()
    out = func()
    return out, time.perf_counter() - t


def main() -> None:
    import argparse

    from neuroalign.compare import distance_matrix, searchlight
    from neuroalign.encoders import RidgeEncoder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="small inputs: checks the script runs")
    small = ap.parse_args().small
    # sizes, and the cell sizes of each entry point (ridge neuroids, centres, pairs)
    n, p, n_t, side, n_sys = (300, 40, 1200, 12, 12) if small else (1500, 200, 6000, 24, 60)
    cells = (300, 250, 11) if small else (1500, 2000, 200)
    rng = np.random.default_rng(0)
    local = {"n_workers": 2, "processes": True}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        # ridge: 1,500 samples x 200 features x 6,000 neuroids, cells of 1,500 neuroids
        X = rng.standard_normal((n, p))
        Y = X @ rng.standard_normal((p, n_t)) * 0.1 + rng.standard_normal((n, n_t))
        kw = dict(alphas=np.logspace(-2, 5, 10), dtype="float64", device="cpu")
        ref, t0 = _timed(lambda: RidgeEncoder(**kw).fit(X, Y))
        runs = {"cells, this process": dict(result_path=f"{tmp}/r1"),
                "rerun, all cells on disk": dict(result_path=f"{tmp}/r1"),
                "LocalCluster, 2 processes": dict(result_path=f"{tmp}/r2", cluster="local",
                                                  cluster_options=local)}
        rows.append((f"ridge {n}x{p}, {n_t} neuroids", "single process", t0, ""))
        for name, extra in runs.items():
            enc, t = _timed(lambda e=extra: RidgeEncoder(**kw).fit(X, Y, batch_size=cells[0], **e))
            assert np.array_equal(enc.best_alphas_, ref.best_alphas_)
            assert np.abs(enc.cv_scores_ - ref.cv_scores_).max() <= 1e-12
            rows.append(("", name, t, f"{len(enc.scaleout_info_['computed'])} of "
                                      f"{enc.scaleout_info_['n_batches']} cells computed"))
        # searchlight: 24^3 voxels, 40 stimuli, radius 3, spearman; cells of 2,000 centres
        ijk = np.argwhere(np.ones((side,) * 3, dtype=bool))
        data = rng.standard_normal((40, len(ijk)))
        models = rng.random((3, 780))
        skw = dict(ijk=ijk, radius=3.0, show_progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref, t0 = _timed(lambda: searchlight(data, models, **skw))
            rows.append((f"searchlight {side}^3, 40 stimuli", "single process (threads)", t0, ""))
            runs = {"cells, this process": dict(result_path=f"{tmp}/s1"),
                    "rerun, all cells on disk": dict(result_path=f"{tmp}/s1"),
                    "LocalCluster, 2 processes": dict(result_path=f"{tmp}/s2", cluster="local",
                                                      cluster_options=local)}
            for name, extra in runs.items():
                sl, t = _timed(lambda e=extra: searchlight(data, models, batch_size=cells[1], **skw,
                                                            **e))
                assert np.allclose(sl.values, ref.values, rtol=0, atol=1e-12, equal_nan=True)
                rows.append(("", name, t, f"{sl.attrs['n_cells_computed']} of "
                                          f"{sl.attrs['n_cells']} cells computed"))
        # distance matrix: 60 systems of 300 stimuli x 80 units, CCA; cells of 200 pairs
        systems = {f"s{i}": rng.standard_normal((300, 80)) for i in range(n_sys)}
        ref, t0 = _timed(lambda: distance_matrix(systems, "cca"))
        rows.append((f"distance_matrix {n_sys} systems, CCA", "single process (threads)", t0, ""))
        runs = {"cells, this process": dict(result_path=f"{tmp}/d1"),
                "rerun, all cells on disk": dict(result_path=f"{tmp}/d1"),
                "LocalCluster, 2 processes": dict(result_path=f"{tmp}/d2", cluster="local",
                                                  cluster_options=local)}
        for name, extra in runs.items():
            D, t = _timed(lambda e=extra: distance_matrix(systems, "cca", batch_size=cells[2], **e))
            assert np.abs(D.values - ref.values).max() <= 1e-12
            rows.append(("", name, t, f"{D.attrs['n_cells_computed']} of {D.attrs['n_cells']} "
                                      "cells computed"))
    print("| computation | run | wall | cells |\n|---|---|---|---|")
    for what, name, t, note in rows:
        print(f"| {what} | {name} | {t:.2f} s | {note} |")


if __name__ == "__main__":
    main()
