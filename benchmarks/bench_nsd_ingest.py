"""Peak memory of streaming NSD ingest vs. the number of sessions, and a naive reference.

Writes a synthetic 40-session NSD subject directly with h5py (int16 x300 betas in the
published (trials, Z, Y, X) layout, voxel-chunked like the real files), then measures, each
in a fresh subprocess:

- ``stream``: ``neuroalign.datasets.ingest_nsd`` into zarr (reads one session file at a time);
- ``naive``: read every session file whole into memory, then mask and concatenate
  (what a load-all loader does).

for the first 10 and all 40 sessions. Peak memory is reported two ways: the tracemalloc
peak (Python/numpy allocations) and the growth of the process's peak RSS over its value
after imports (``ru_maxrss``).

Run::

    python benchmarks/bench_nsd_ingest.py [--trials 300] [--shape 30 36 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_subject(root: Path, n_sessions: int, trials: int, shape: tuple[int, int, int], seed: int = 0) -> None:
    import h5py
    import nibabel as nib
    import scipy.io

    rng = np.random.default_rng(seed)
    X, Y, Z = shape
    n_trials = n_sessions * trials
    n_images = n_trials // 3
    design = root / "nsddata/experiments/nsd"
    design.mkdir(parents=True)
    subjectim = np.tile(np.arange(1, n_images + 1, dtype=float), (8, 1))
    mo = rng.permutation(np.repeat(np.arange(1, n_images + 1), 3)).astype(float)
    scipy.io.savemat(design / "nsd_expdesign.mat", {
        "masterordering": mo[None], "subjectim": subjectim,
        "sharedix": np.arange(1, 101, dtype=float)[None], "stimpattern": np.ones((n_sessions, 12, 1)),
    })
    roi = root / "nsddata/ppdata/subj01/func1pt8mm/roi"
    roi.mkdir(parents=True)
    ii, jj, kk = np.meshgrid(np.arange(X), np.arange(Y), np.arange(Z), indexing="ij")
    ell = ((ii - X / 2) / (0.45 * X)) ** 2 + ((jj - Y / 2) / (0.45 * Y)) ** 2 + ((kk - Z / 2) / (0.45 * Z)) ** 2 <= 1
    general = ell & (jj < 0.6 * Y)
    nib.save(nib.Nifti1Image(np.where(general, 1.0, np.where(ell, 0.0, -1.0)).astype(np.float32), np.eye(4)),
             str(roi / "nsdgeneral.nii.gz"))
    betas = root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
    betas.mkdir(parents=True)
    for s in range(1, n_sessions + 1):
        vol = rng.integers(-3000, 3000, size=(trials, Z, Y, X), dtype=np.int16)
        with h5py.File(betas / f"betas_session{s:02d}.hdf5", "w") as f:
            f.create_dataset("betas", data=vol, chunks=(trials, 1, 1, X))


def worker(mode: str, root: str, n_sessions: int, out: str) -> None:
    import resource
    import tracemalloc
    import warnings

    import h5py
    import nibabel as nib

    from neuroalign.datasets import ingest_nsd

    warnings.simplefilter("ignore")
    # warm up (imports, first-call caches) on one session, outside the measurement
    ingest_nsd(root, 1, out + ".warmup", rois=(), sessions=[1])
    shutil.rmtree(out + ".warmup")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sessions = list(range(1, n_sessions + 1))
    tracemalloc.start()
    t0 = time.perf_counter()
    if mode == "stream":
        ingest_nsd(root, 1, out, rois=(), sessions=sessions)
    else:
        mask = np.asarray(nib.load(f"{root}/nsddata/ppdata/subj01/func1pt8mm/roi/nsdgeneral.nii.gz").dataobj) > 0
        d = Path(root) / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR"
        vols = []
        for s in sessions:
            with h5py.File(d / f"betas_session{s:02d}.hdf5", "r") as f:
                vols.append(f["betas"][()])
        allv = np.concatenate(vols)  # (trials, Z, Y, X) int16, every session
        del vols
        data = allv.transpose(0, 3, 2, 1)[:, mask].astype(np.float32) / np.float32(300)
        del allv
        assert data.ndim == 2
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": mode, "sessions": n_sessions, "tracemalloc_peak_mib": peak / 2**20,
                      "rss_growth_mib": (rss - base) / 1024, "seconds": elapsed}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=300, help="trials per session (NSD: 750)")
    ap.add_argument("--shape", type=int, nargs=3, default=(30, 36, 30), help="volume X Y Z")
    ap.add_argument("--sessions", type=int, nargs="+", default=(10, 40))
    ap.add_argument("--keep", type=Path, default=None, help="write the subject here and keep it")
    ap.add_argument("--worker", nargs=4, metavar=("MODE", "ROOT", "N", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        mode, root, n, out = args.worker
        worker(mode, root, int(n), out)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-nsd-"))
    root = args.keep or tmp / "nsd"
    try:
        if not (root / "nsddata").exists():
            t0 = time.perf_counter()
            write_subject(root, max(args.sessions), args.trials, tuple(args.shape))
            print(f"wrote {max(args.sessions)} sessions of {args.trials} trials, volume {tuple(args.shape)} "
                  f"in {time.perf_counter() - t0:.1f} s", flush=True)
        session_mib = (root / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session01.hdf5").stat().st_size / 2**20
        print(f"one session file: {session_mib:.1f} MiB", flush=True)
        results = []
        for n in args.sessions:
            for mode in ("stream", "naive"):
                out = tmp / f"{mode}-{n}.zarr"
                repo = str(Path(__file__).resolve().parents[1])
                env = dict(os.environ, NEUROALIGN_PROGRESS="0",
                           PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
                res = subprocess.run([sys.executable, __file__, "--worker", mode, str(root), str(n), str(out)],
                                     capture_output=True, text=True, env=env)
                if res.returncode:
                    raise RuntimeError(f"{mode} {n} sessions failed:\n{res.stderr}")
                r = json.loads(res.stdout.strip().splitlines()[-1])
                results.append(r)
                print(f"{mode:>6} {n:>3} sessions: tracemalloc peak {r['tracemalloc_peak_mib']:8.1f} MiB, "
                      f"RSS growth {r['rss_growth_mib']:8.1f} MiB, {r['seconds']:6.1f} s", flush=True)
        by = {(r["mode"], r["sessions"]): r for r in results}
        lo, hi = min(args.sessions), max(args.sessions)
        for key in ("tracemalloc_peak_mib", "rss_growth_mib"):
            s_ratio = by[("stream", hi)][key] / by[("stream", lo)][key]
            n_ratio = by[("naive", hi)][key] / by[("stream", hi)][key]
            print(f"{key}: stream {hi}/{lo} sessions = {s_ratio:.2f}x; naive/stream at {hi} sessions = {n_ratio:.1f}x; "
                  f"stream peak at {hi} sessions = {by[('stream', hi)][key] / session_mib:.2f} session files")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
