"""NSD at full size: simulate a subject, then ingest it against plain reads of its files.

For each space (func1pt8mm HDF5, fsaverage MGH) and each session count (default 10, 40):

1. ``simulate``: :func:`neuroalign.datasets.simulate.simulate_nsd_scale` writes an NSD-size
   subject (NSD's grid or surface, 750 trials a session, ~1 GB a session file);
2. ``h5py``/``nibabel``: the plain reference, reading each session file whole with h5py
   (volume) or nibabel (fsaverage) and masking with numpy, no store;
3. ``raw``: reading every byte of the same files sequentially (``readinto``): disk speed;
4. ``floor``: the raw read plus a plain write of as many bytes as the store holds (one
   preallocated numpy buffer written per session to a file on the same disk): what any
   ingest must at least do;
5. ``ingest``: :func:`neuroalign.datasets.ingest_nsd` into a zarr store (nsdgeneral, and
   the whole brain/surface where the disk has room for its store); with ``--baseline
   SRC`` also the ingest of another neuroalign source tree (e.g. ``git archive`` of an
   earlier commit), right before, on the same files (``ingest_baseline``),

each in a fresh subprocess, with the input files dropped from the page cache before
(``POSIX_FADV_DONTNEED``), reporting wall time, CPU time (user + system, all threads of
the process), peak RSS (``ru_maxrss``) and the load average. The raw read and the ingest
alternate ``--repeats`` times (default 3; the floor runs once): the speed of a virtual
machine's disk drifts by 2-3x within minutes (a file written recently may still sit in the
host's cache, whatever the guest drops), so the medians are compared, and every run's time
is printed. The ingest of the nsdgeneral store at the largest session count is checked
against ``truth.json`` (NSD's ncsnr estimated from the store vs the true ncsnr).

Disk: the trees are written under ``--root`` (default ``/tmp/nsd-scale``) and deleted at
the end; a step is skipped when it would leave less than ``--min-free`` GiB free.

Run::

    python benchmarks/bench_nsd_scale.py [--root /tmp/nsd-scale] [--sessions 10 40]
        [--spaces func1pt8mm fsaverage] [--json results.json] [--profile]
        [--baseline /tmp/neuroalign-before] [--skip reference] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GiB = 2**30
BETAS = "betas_fithrf_GLMdenoise_RR"


# -- workers (each in its own process) -----------------------------------------------------------
def _files(root: Path, space: str, n: int) -> list[Path]:
    folder = root / f"nsddata_betas/ppdata/subj01/{space}/{BETAS}"
    if space == "func1pt8mm":
        return [folder / f"betas_session{s:02d}.hdf5" for s in range(1, n + 1)]
    return [folder / f"{h}.betas_session{s:02d}.mgh" for s in range(1, n + 1) for h in ("lh", "rh")]


def _mask(root: Path, space: str, mask: str | None):
    import nibabel as nib
    import numpy as np

    if space == "func1pt8mm":
        pp = root / "nsddata/ppdata/subj01/func1pt8mm"
        vol = pp / ("roi/nsdgeneral.nii.gz" if mask else "brainmask.nii.gz")
        return np.asarray(nib.load(vol).dataobj) > 0  # (X, Y, Z)
    label = root / "nsddata/freesurfer/fsaverage/label"
    if not mask:
        return None
    return {h: np.asarray(nib.load(label / f"{h}.nsdgeneral.mgz").dataobj).ravel() > 0 for h in ("lh", "rh")}


def work_simulate(a: dict) -> dict:
    from neuroalign.datasets.simulate import simulate_nsd_scale

    small = {"volume_shape": (20, 24, 18), "n_vertices": (3000, 2800)} if a.get("smoke") else {}
    sim = simulate_nsd_scale(a["root"], sessions=a["n"], spaces=(a["space"],), seed=0,
                             nsdgeneral_only=a.get("nsdgeneral_only", False), **small)
    return {"bytes": sim.truth["bytes_written"]}


def work_reference(a: dict) -> dict:
    """h5py (volume) / nibabel (fsaverage): each file read whole, masked with numpy."""
    import numpy as np

    root, space = Path(a["root"]), a["space"]
    mask = _mask(root, space, a["mask"])
    n_values = 0
    if space == "func1pt8mm":
        import h5py

        zyx_mask = mask.transpose(2, 1, 0)  # the betas are (trials, Z, Y, X)
        for p in _files(root, space, a["n"]):
            with h5py.File(p, "r") as f:
                vol = f["betas"][()]
            block = vol[:, zyx_mask].astype(np.float32) / np.float32(300)
            n_values += block.size
            del vol, block
    else:
        import nibabel as nib

        for p in _files(root, space, a["n"]):
            vals = np.asarray(nib.load(p).dataobj)[:, 0, 0, :]  # (V, T)
            hemi = p.name[:2]
            block = (vals[mask[hemi]] if mask is not None else vals).T.astype(np.float32)
            n_values += block.size
            del vals, block
    return {"values": n_values}


def work_raw(a: dict) -> dict:
    """Every byte of the same files, read sequentially, nothing else."""
    buf = bytearray(64 * 2**20)
    total = 0
    for p in _files(Path(a["root"]), a["space"], a["n"]):
        with open(p, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
    return {"bytes": total}


def work_floor(a: dict) -> dict:
    """The raw read, plus a plain sequential write of the store's bytes, session by session."""
    import numpy as np

    root, space = Path(a["root"]), a["space"]
    files = _files(root, space, a["n"])
    per = len(files) // a["n"]
    mask = _mask(root, space, a["mask"])
    if space == "func1pt8mm":
        import h5py

        with h5py.File(files[0], "r") as f:
            trials = f["betas"].shape[0]
        n_neuroids = int(mask.sum())
    else:
        import nibabel as nib

        shapes = [nib.load(p).shape for p in files[:2]]
        trials = shapes[0][3]
        n_neuroids = sum(int(m.sum()) for m in mask.values()) if mask else sum(sh[0] for sh in shapes)
    buf = bytearray(64 * 2**20)
    block = np.ones(trials * n_neuroids, dtype=np.float32)  # one session of the store
    total = written = 0
    try:
        with open(a["out"], "wb", buffering=0) as out:
            for s in range(a["n"]):
                for p in files[s * per : (s + 1) * per]:
                    with open(p, "rb", buffering=0) as f:
                        while n := f.readinto(buf):
                            total += n
                written += out.write(memoryview(block).cast("B"))
    finally:
        Path(a["out"]).unlink(missing_ok=True)
    return {"bytes": total, "written": written}


def work_ingest(a: dict) -> dict:
    from neuroalign.datasets import ingest_nsd

    kwargs = {"space": a["space"], "mask": a["mask"], "rois": (), "sessions": list(range(1, a["n"] + 1))}
    if a.get("profile"):
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        ingest_nsd(a["root"], 1, a["out"], **kwargs)
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(14)
        print(s.getvalue(), file=sys.stderr)
    else:
        ingest_nsd(a["root"], 1, a["out"], **kwargs)
    import zarr

    arr = zarr.open_array(str(Path(a["out"]) / "responses"), mode="r", zarr_format=2)
    size = sum(p.stat().st_size for p in Path(a["out"]).rglob("*") if p.is_file())
    return {"shape": list(arr.shape), "chunks": list(arr.chunks),
            "compressor": str(arr.metadata.compressor), "store_bytes": size,
            "chunk_files": sum(1 for p in (Path(a["out"]) / "responses").iterdir() if not p.name.startswith("."))}


def work_check(a: dict) -> dict:
    """NSD's ncsnr of the first neuroids of the store against truth.json."""
    import numpy as np

    from neuroalign.datasets.simulate import ScaleSimulation
    from neuroalign.store import open_store

    ds = open_store(a["out"], chunks=2000).isel(neuroid=slice(0, 2000))
    est = ds.na.ncsnr().values
    truth = ScaleSimulation.load(a["root"]).true_ncsnr(a["space"])[:2000]
    assert list(ds.neuroid_id.values) == list(truth.neuroid_id.values)
    true = truth.values
    return {"neuroids": len(est), "r": float(np.corrcoef(est, true)[0, 1]),
            "median_error": float(np.median(est - true)), "median_abs_error": float(np.median(np.abs(est - true)))}


WORKERS = {"simulate": work_simulate, "reference": work_reference, "raw": work_raw,
           "floor": work_floor, "ingest": work_ingest, "check": work_check}


def worker(mode: str, args: dict) -> None:
    """Run one step and print its figures; imports happen before the clock starts."""
    import warnings

    import h5py  # noqa: F401
    import nibabel  # noqa: F401
    import numpy  # noqa: F401

    if mode in ("simulate", "ingest", "check"):
        import zarr  # noqa: F401

        import neuroalign.datasets  # noqa: F401
        import neuroalign.datasets.simulate  # noqa: F401
        import neuroalign.store  # noqa: F401

    warnings.simplefilter("ignore")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = WORKERS[mode](args)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out.update(seconds=time.perf_counter() - t0,
               cpu_s=(r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),  # all threads
               sys_s=r1.ru_stime - r0.ru_stime,  # of which in the kernel
               peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               rss_at_start_mib=base / 1024)
    print(json.dumps(out))


# -- driver -----------------------------------------------------------------------------------
def _drop_cache(paths) -> None:
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _run(mode: str, args: dict, drop=(), src: Path = REPO) -> dict:
    _drop_cache(drop)
    load0 = os.getloadavg()[0]
    env = dict(os.environ, NEUROALIGN_PROGRESS="0", OMP_NUM_THREADS="2",
               PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, __file__, "--worker", mode, json.dumps(args)],
                         capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"{mode} {args} failed:\n{res.stderr[-4000:]}")
    if args.get("profile"):
        print(res.stderr, flush=True)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["load_avg"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
    return out


def _median(runs: list[dict]) -> dict:
    """The run of median wall time (the lower middle one of an even number)."""
    return sorted(runs, key=lambda r: r["seconds"])[(len(runs) - 1) // 2]


def _free(path: Path) -> float:
    return shutil.disk_usage(path).free / GiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/nsd-scale"))
    ap.add_argument("--sessions", type=int, nargs="+", default=[10, 40])
    ap.add_argument("--spaces", nargs="+", default=["func1pt8mm", "fsaverage"])
    ap.add_argument("--masks", nargs="+", default=["nsdgeneral", "whole"])
    ap.add_argument("--min-free", type=float, default=20.0, help="GiB to leave free on the disk")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3,
                    help="raw reads and ingests, alternated; the medians are compared")
    ap.add_argument("--profile", action="store_true", help="cProfile the first ingest")
    ap.add_argument("--smoke", action="store_true", help="small grids: check that the script runs")
    ap.add_argument("--nsdgeneral-only", action="store_true",
                    help="sparse trees: only the nsdgeneral values are on disk (the files keep "
                         "NSD's sizes; the rest are holes that read as 0 without disk reads)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="a neuroalign source tree (holding neuroalign/) whose ingest is timed too")
    ap.add_argument("--skip", nargs="*", default=[], choices=["reference", "floor"],
                    help="steps not to run")
    ap.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker[0], json.loads(a.worker[1]))
        return
    a.root.mkdir(parents=True, exist_ok=True)
    results = []
    per_session = {"func1pt8mm": 81 * 104 * 83 * 750 * 2 * 1.045, "fsaverage": 2 * 163842 * 750 * 4}
    store_per_session = {("func1pt8mm", "nsdgeneral"): 15724 * 750 * 4, ("func1pt8mm", "whole"): 303950 * 750 * 4,
                         ("fsaverage", "nsdgeneral"): 37984 * 750 * 4, ("fsaverage", "whole"): 327684 * 750 * 4}
    profiled = not a.profile
    tag = " (nsdgeneral-only tree)" if a.nsdgeneral_only else ""
    try:
        for space in a.spaces:
            for n in sorted(a.sessions):
                tree = a.root / f"{space}-{n}"
                need = n * per_session[space] / GiB * (0.1 if a.nsdgeneral_only else 1)
                if _free(a.root) - need < a.min_free:
                    print(f"skip {space} {n} sessions: {_free(a.root):.0f} GiB free, the tree needs {need:.0f}")
                    continue
                r = _run("simulate", {"root": str(tree), "n": n, "space": space, "smoke": a.smoke,
                                      "nsdgeneral_only": a.nsdgeneral_only})
                r.update(step="simulate", space=space, sessions=n, nsdgeneral_only=a.nsdgeneral_only)
                results.append(r)
                print(f"simulate{tag} {space} {n:>2} sessions: {r['seconds']:7.1f} s, peak RSS {r['peak_rss_mib']:6.0f} MiB, "
                      f"{r['bytes'] / GiB:.1f} GiB, load {r['load_avg']}, {_free(a.root):.0f} GiB free", flush=True)
                files = [str(p) for p in _files(tree, space, n)]
                for mask in a.masks:
                    m = None if mask == "whole" else "nsdgeneral"
                    store_need = n * store_per_session[(space, mask)] / GiB
                    if _free(a.root) - store_need < a.min_free:
                        print(f"skip {space} {mask} {n} sessions: the store needs {store_need:.0f} GiB, "
                              f"{_free(a.root):.0f} GiB free")
                        continue
                    args = {"root": str(tree), "n": n, "space": space, "mask": m}
                    row = {"space": space, "sessions": n, "mask": mask, "nsdgeneral_only": a.nsdgeneral_only}
                    if "reference" not in a.skip:
                        row["reference"] = _run("reference", args, drop=files)
                    out = a.root / f"store-{space}-{mask}-{n}.zarr"
                    # the raw read and the ingest alternate (the disk's speed drifts): medians
                    raws, ingests, bases = [], [], []
                    for rep in range(a.repeats):
                        raws.append(_run("raw", args, drop=files))
                        if "floor" not in a.skip and rep == 0:
                            row["floor"] = _run("floor", {**args, "out": str(out) + ".floor"}, drop=files)
                        if a.baseline:
                            bases.append(_run("ingest", {**args, "out": str(out)}, drop=files,
                                              src=a.baseline.resolve()))
                            shutil.rmtree(out)
                        ingests.append(_run("ingest", {**args, "out": str(out), "profile": not profiled},
                                            drop=files))
                        profiled = True
                        if rep + 1 < a.repeats:
                            shutil.rmtree(out)
                    row["raw"], row["ingest"] = _median(raws), _median(ingests)
                    row["raw_seconds"] = [r["seconds"] for r in raws]
                    row["ingest_seconds"] = [r["seconds"] for r in ingests]
                    if bases:
                        row["ingest_baseline"] = _median(bases)
                        row["ingest_baseline_seconds"] = [r["seconds"] for r in bases]
                    if m and n == max(a.sessions):
                        row["check"] = _run("check", {**args, "out": str(out)})
                    shutil.rmtree(out)
                    ing, raw = row["ingest"], row["raw"]
                    row["ratio_raw"] = ing["seconds"] / raw["seconds"]
                    parts = [f"{space}{tag} {mask:<10} {n:>2} sessions | ingest {ing['seconds']:7.1f} s "
                             f"(CPU {ing['cpu_s']:.1f} s) {ing['peak_rss_mib']:6.0f} MiB load {ing['load_avg']}"]
                    if "ingest_baseline" in row:
                        b = row["ingest_baseline"]
                        parts.append(f"baseline ingest {b['seconds']:7.1f} s (CPU {b['cpu_s']:.1f} s) "
                                     f"{b['peak_rss_mib']:6.0f} MiB load {b['load_avg']} "
                                     f"({b['seconds'] / raw['seconds']:.2f}x raw)")
                    if "reference" in row:
                        ref = row["reference"]
                        row["ratio_reference"] = ing["seconds"] / ref["seconds"]
                        parts.append(f"{'h5py' if space == 'func1pt8mm' else 'nibabel'} {ref['seconds']:7.1f} s "
                                     f"{ref['peak_rss_mib']:6.0f} MiB ({row['ratio_reference']:.2f}x)")
                    parts.append(f"raw read {raw['seconds']:6.1f} s (CPU {raw['cpu_s']:.1f} s) load {raw['load_avg']}, "
                                 f"ingest/raw {row['ratio_raw']:.2f}x")
                    if a.repeats > 1:
                        parts.append("runs: raw " + "/".join(f"{x:.1f}" for x in row["raw_seconds"])
                                     + " s, ingest " + "/".join(f"{x:.1f}" for x in row["ingest_seconds"]) + " s")
                    if "floor" in row:
                        fl = row["floor"]
                        row["ratio_floor"] = ing["seconds"] / fl["seconds"]
                        parts.append(f"floor (read + write {fl['written'] / GiB:.2f} GiB) {fl['seconds']:6.1f} s "
                                     f"(CPU {fl['cpu_s']:.1f} s) load {fl['load_avg']}, ingest/floor {row['ratio_floor']:.2f}x")
                    parts.append(f"chunks {ing['chunks']} ({ing['chunk_files']} files, {ing['compressor']}, "
                                 f"{ing['store_bytes'] / GiB:.2f} GiB)")
                    results.append(row)
                    print(" | ".join(parts), flush=True)
                    if "check" in row:
                        c = row["check"]
                        print(f"  ncsnr of {c['neuroids']} neuroids vs truth: r = {c['r']:.3f}, median error "
                              f"{c['median_error']:+.3f}, median |error| {c['median_abs_error']:.3f}", flush=True)
                shutil.rmtree(tree)
                if a.json:
                    a.json.write_text(json.dumps(results, indent=1))
    finally:  # the trees, stores and their lock files (hidden names too)
        for p in a.root.iterdir():
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        if a.json:
            a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
