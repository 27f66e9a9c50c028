"""Searchlight RSA: neuroalign.compare.searchlight against rsatoolbox's searchlight.

Each side runs in a fresh process on the same generated data (fixed seed) and saves its
values; the parent checks that they agree and reports time, peak RSS and the ratio::

    nice -n 0 python benchmarks/bench_searchlight.py                 # small volume, both sides
    nice -n 0 python benchmarks/bench_searchlight.py --whole-brain   # + neuroalign on ~250k centres
    nice -n 0 python benchmarks/bench_searchlight.py --surface       # fsaverage-size meshes
    nice -n 0 python benchmarks/bench_searchlight.py --fsaverage5    # a real folded cortex

rsatoolbox's side: ``get_volume_searchlight`` + ``get_searchlight_RDMs`` +
``evaluate_models_searchlight(eval_fixed)``; neuroalign's: one ``searchlight`` call (which
also finds the spheres). Each side first runs once on a tiny volume (first-call imports,
e.g. xarray's of dask, are not timed). The whole-brain case runs neuroalign on the NSD func1pt8mm grid
(81 x 104 x 83) with an ellipsoidal brain mask, and states rsatoolbox's time extrapolated
from its measured time per centre on the small volume.
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

METHODS = {"spearman": "spearman", "pearson": "corr"}


def make_data(shape, n_stim, n_models, fill, seed=0):
    """Ellipsoidal mask filling ``fill`` of the grid's inscribed ellipsoid, data on it."""
    rng = np.random.default_rng(seed)
    c = (np.array(shape) - 1) / 2
    g = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    mask = (((g - c) / (c * fill ** (1 / 3))) ** 2).sum(-1) < 1
    ijk = np.argwhere(mask)
    data = rng.standard_normal((n_stim, len(ijk))).astype(np.float32)
    data += rng.standard_normal((n_stim, 1)).astype(np.float32)
    models = rng.random((n_models, n_stim * (n_stim - 1) // 2))
    return mask, ijk, data, models


def icosphere(level: int, radius: float = 100.0):
    """Vertices and faces of an icosahedron subdivided ``level`` times onto a sphere
    (level 7: 163,842 vertices, the tessellation of FreeSurfer's fsaverage)."""
    t = (1 + 5 ** 0.5) / 2
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t),
         (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
         (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
         (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    v, f = np.array(v, dtype=float), np.array(f)
    for _ in range(level):
        e = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
        edges, inv = np.unique(e, axis=0, return_inverse=True)
        mid = len(v) + inv.reshape(3, -1).T  # midpoint vertex of each face's 3 edges
        v = np.vstack([v, (v[edges[:, 0]] + v[edges[:, 1]]) / 2])
        a, b, c = f.T
        ab, bc, ca = mid.T
        f = np.concatenate([np.stack(x, 1) for x in
                            ((a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca))])
    v *= radius / np.linalg.norm(v, axis=1, keepdims=True)
    return v, f


def surface_worker(args):
    """neuroalign on two fsaverage-size spheres, on the vertices of a cap (a measured
    fraction of the surface; discs use the whole mesh)."""
    from neuroalign.compare import searchlight

    v, f = icosphere(7)
    rng = np.random.default_rng(0)
    cap = np.flatnonzero(v[:, 2] > 100 * (1 - 2 * args.surface_fraction))
    n = len(cap)
    data = rng.standard_normal((args.n_stim, 2 * n)).astype(np.float32)
    models = rng.random((args.n_models, args.n_stim * (args.n_stim - 1) // 2))
    import xarray as xr

    da = xr.DataArray(data, dims=("stimulus", "neuroid"), coords={
        "vertex": ("neuroid", np.r_[cap, cap]), "hemisphere": ("neuroid", ["lh"] * n + ["rh"] * n)})
    small = da.isel(neuroid=slice(0, 50))
    searchlight(small, models, surface={"lh": (v, f), "rh": (v, f)}, radius=args.radius,
                threshold=0, show_progress=False)  # warm-up
    rss0 = self_peak_rss_mib()
    t0 = time.perf_counter()
    sl = searchlight(da, models, surface={"lh": (v, f), "rh": (v, f)}, radius=args.radius,
                     threshold=0, show_progress=False)
    seconds = time.perf_counter() - t0
    print(json.dumps({"side": "neuroalign (surface)", "seconds": seconds,
                      "n_centres": int(sl.attrs["n_centres"]), "mesh_vertices": 2 * len(v),
                      "median_disc": float(np.median(sl["n_neighbours"].values)),
                      "seconds_per_centre": seconds / sl.attrs["n_centres"],
                      "extrapolated_all_vertices_s": seconds / sl.attrs["n_centres"] * 2 * len(v),
                      "peak_rss_MiB": self_peak_rss_mib(), "rss_after_data_MiB": rss0}))


def fsaverage5_worker(args):
    """neuroalign on every vertex of nilearn's fsaverage5 (2 x 10,242 vertices, a real
    folded cortex, read from the installed package): ``--fsaverage5-mesh`` ``midthickness``
    is ``surface="fsaverage5"`` (the named template), ``pial``/``white`` pass that mesh."""
    import xarray as xr
    from nilearn.datasets import load_fsaverage

    from neuroalign.compare import searchlight

    mesh = load_fsaverage("fsaverage5")
    V = len(mesh["pial"].parts["left"].coordinates)
    if args.fsaverage5_mesh == "midthickness":
        surface = "fsaverage5"
    else:
        part = mesh[{"pial": "pial", "white": "white_matter"}[args.fsaverage5_mesh]]
        surface = {h: (np.asarray(part.parts[p].coordinates, dtype=np.float64),
                       np.asarray(part.parts[p].faces))
                   for h, p in (("lh", "left"), ("rh", "right"))}
    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.n_stim, 2 * V)).astype(np.float32)
    models = rng.random((args.n_models, args.n_stim * (args.n_stim - 1) // 2))
    da = xr.DataArray(data, dims=("stimulus", "neuroid"), coords={
        "vertex": ("neuroid", np.r_[np.arange(V), np.arange(V)]),
        "hemisphere": ("neuroid", ["lh"] * V + ["rh"] * V)})
    kw = dict(surface=surface, radius=args.surface_radius, method=args.method,
              show_progress=False, n_jobs=args.n_jobs)
    searchlight(da.isel(neuroid=slice(0, 50)), models, threshold=0, **kw)  # warm-up
    rss0 = self_peak_rss_mib()
    t0 = time.perf_counter()
    sl = searchlight(da, models, **kw)
    seconds = time.perf_counter() - t0
    sizes = sl["n_neighbours"].values
    print(json.dumps({"side": f"neuroalign (fsaverage5 {args.fsaverage5_mesh})",
                      "seconds": seconds, "n_centres": int(sl.attrs["n_centres"]),
                      "radius_mm": args.surface_radius, "n_stim": args.n_stim,
                      "method": args.method, "n_jobs": args.n_jobs,
                      "median_disc": float(np.median(sizes)), "widest_disc": int(sizes.max()),
                      "seconds_per_centre": seconds / sl.attrs["n_centres"],
                      "peak_rss_MiB": self_peak_rss_mib(), "rss_after_data_MiB": rss0,
                      "load": open("/proc/loadavg").read().split()[0]}))


def worker(args):
    shape = tuple(args.shape)
    mask, ijk, data, models = make_data(shape, args.n_stim, args.n_models, args.fill)
    if args.side == "neuroalign":
        from neuroalign.compare import searchlight  # imports are not timed (nor rsatoolbox's)

        _, wi, wd, wm = make_data((6, 6, 6), args.n_stim, args.n_models, 1.0, seed=1)
        searchlight(wd, wm, ijk=wi, volume_shape=(6, 6, 6), radius=2, method=args.method,
                    show_progress=False)  # warm-up: first-call imports (xarray -> dask)
        rss0 = self_peak_rss_mib()
        best = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            sl = searchlight(data, models, ijk=ijk, volume_shape=shape, radius=args.radius,
                             method=args.method, show_progress=False)
            best = min(best, time.perf_counter() - t0)
        centres = np.ravel_multi_index(ijk[sl["n_neighbours"].values > 0].T, shape)
        vals = sl.values[:, sl["n_neighbours"].values > 0].T
    else:
        import contextlib
        import io

        import rsatoolbox
        from rsatoolbox.inference import eval_fixed
        from rsatoolbox.model import ModelFixed
        from rsatoolbox.util.searchlight import (
            evaluate_models_searchlight,
            get_searchlight_RDMs,
            get_volume_searchlight,
        )

        def run_rsa(mask, full, models, radius):
            centres, nbrs = get_volume_searchlight(mask, radius=radius, threshold=1.0)
            sl = get_searchlight_RDMs(full, centres, nbrs, np.arange(args.n_stim),
                                      method="correlation", verbose=False)
            mods = [ModelFixed(f"m{i}", rsatoolbox.rdm.RDMs(m[None]))
                    for i, m in enumerate(models)]
            res = evaluate_models_searchlight(sl, mods, eval_fixed,
                                              method=METHODS[args.method], n_jobs=1)
            return centres, np.array([r.evaluations[0, :, 0] for r in res])

        wmask, wi, wd, wm = make_data((6, 6, 6), args.n_stim, args.n_models, 1.0, seed=1)
        wfull = np.zeros((args.n_stim, 216))
        wfull[:, np.ravel_multi_index(wi.T, (6, 6, 6))] = wd
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            run_rsa(wmask, wfull, wm, 1.5)  # warm-up, as for neuroalign
        full = np.zeros((args.n_stim, int(np.prod(shape))), dtype=np.float64)
        full[:, np.ravel_multi_index(ijk.T, shape)] = data
        rss0 = self_peak_rss_mib()
        best = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                centres, vals = run_rsa(mask, full, models, args.radius)
            best = min(best, time.perf_counter() - t0)
    seconds = best
    if args.save:
        np.savez(args.save, centres=np.asarray(centres), values=vals)
    print(json.dumps({"side": args.side, "seconds": seconds, "n_centres": int(len(centres)),
                      "n_voxels": int(len(ijk)), "peak_rss_MiB": self_peak_rss_mib(),
                      "rss_after_data_MiB": rss0}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", choices=["neuroalign", "rsatoolbox", "surface", "fsaverage5"],
                    default=None,
                    help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--shape", type=int, nargs=3, default=[20, 20, 20])
    ap.add_argument("--fill", type=float, default=0.9)
    ap.add_argument("--n-stim", type=int, default=40)
    ap.add_argument("--n-models", type=int, default=3)
    ap.add_argument("--radius", type=float, default=3.0)
    ap.add_argument("--method", choices=sorted(METHODS), default="spearman")
    ap.add_argument("--repeat", type=int, default=3, help="runs per side (small volume); best kept")
    ap.add_argument("--whole-brain", action="store_true",
                    help="also neuroalign on the NSD func1pt8mm grid (81 x 104 x 83)")
    ap.add_argument("--wb-fill", type=float, default=0.87,
                    help="share of the grid's inscribed ellipsoid in the mask (0.87: ~250k centres)")
    ap.add_argument("--wb-n-stim", type=int, default=None, help="default: --n-stim")
    ap.add_argument("--surface", action="store_true",
                    help="only neuroalign on two fsaverage-size icospheres (2 x 163,842 "
                         "vertices, radius 100 mm), discs of --surface-radius mm")
    ap.add_argument("--surface-radius", type=float, default=8.0)
    ap.add_argument("--surface-fraction", type=float, default=0.05,
                    help="share of each sphere (a polar cap) whose vertices are centres")
    ap.add_argument("--fsaverage5", action="store_true",
                    help="only neuroalign on every vertex of nilearn's fsaverage5 (2 x 10,242 "
                         "vertices), discs of --surface-radius mm")
    ap.add_argument("--fsaverage5-mesh", choices=["midthickness", "pial", "white"],
                    default="midthickness")
    ap.add_argument("--n-jobs", type=int, default=None, help="threads (default: the cores)")
    args = ap.parse_args(argv)
    if args.side == "surface":
        return surface_worker(args)
    if args.side == "fsaverage5":
        return fsaverage5_worker(args)
    if args.fsaverage5:
        env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        r = run_fresh(__file__, ["--side", "fsaverage5", "--n-stim", str(args.n_stim),
                                 "--n-models", str(args.n_models), "--surface-radius",
                                 str(args.surface_radius), "--method", args.method,
                                 "--fsaverage5-mesh", args.fsaverage5_mesh,
                                 *(["--n-jobs", str(args.n_jobs)] if args.n_jobs else [])],
                     env=env)
        print(json.dumps(r), flush=True)
        return [r]
    if args.side:
        return worker(args)
    if args.surface:
        env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        r = run_fresh(__file__, ["--side", "surface", "--n-stim", str(args.n_stim),
                                 "--n-models", str(args.n_models), "--radius",
                                 str(args.surface_radius), "--surface-fraction",
                                 str(args.surface_fraction)], env=env)
        print(json.dumps(r), flush=True)
        return [r]
    common = ["--repeat", str(args.repeat), "--shape", *map(str, args.shape), "--fill", str(args.fill), "--n-stim",
              str(args.n_stim), "--n-models", str(args.n_models), "--radius", str(args.radius),
              "--method", args.method]
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        res = {}
        for side in ("neuroalign", "rsatoolbox"):
            res[side] = run_fresh(__file__, [*common, "--side", side, "--save",
                                             f"{tmp}/{side}.npz"], env=env)
            print(json.dumps(res[side]), flush=True)
        a, b = np.load(f"{tmp}/neuroalign.npz"), np.load(f"{tmp}/rsatoolbox.npz")
        same_centres = np.array_equal(a["centres"], b["centres"])
        err = float(np.max(np.abs(a["values"] - b["values"]))) if same_centres else None
        ratio = res["rsatoolbox"]["seconds"] / res["neuroalign"]["seconds"]
        rows.append({"case": f"small volume {tuple(args.shape)}, {args.n_stim} stimuli, "
                             f"radius {args.radius}, {args.method}",
                     "n_centres": res["neuroalign"]["n_centres"], "same_centres": same_centres,
                     "max_abs_diff": err, "speedup": ratio,
                     "neuroalign_s": res["neuroalign"]["seconds"],
                     "rsatoolbox_s": res["rsatoolbox"]["seconds"],
                     "neuroalign_peak_rss_MiB": res["neuroalign"]["peak_rss_MiB"],
                     "rsatoolbox_peak_rss_MiB": res["rsatoolbox"]["peak_rss_MiB"]})
        print(json.dumps(rows[-1]), flush=True)
        if args.whole_brain:
            n_stim = args.wb_n_stim or args.n_stim
            wb = run_fresh(__file__, ["--shape", "81", "104", "83", "--fill", str(args.wb_fill),
                                      "--n-stim", str(n_stim), "--n-models",
                                      str(args.n_models), "--radius", str(args.radius),
                                      "--method", args.method, "--repeat", "1",
                                      "--side", "neuroalign"], env=env)
            per_centre = res["rsatoolbox"]["seconds"] / res["rsatoolbox"]["n_centres"]
            rows.append({"case": f"whole brain (81, 104, 83), {wb.get('n_voxels')} voxels, "
                                 f"{n_stim} stimuli, radius {args.radius}, {args.method}",
                         **wb, "rsatoolbox_extrapolated_s": per_centre * wb.get("n_centres", 0)
                         if n_stim == args.n_stim else None})
            print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
