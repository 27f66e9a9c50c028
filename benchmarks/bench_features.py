"""Feature-extraction benchmark: neuroalign.features.extract vs a hand-written hook loop.

Images per second and peak memory (max RSS) for a ViT-B (open_clip ViT-B-32) and a
ResNet-50 (torchvision), random weights, 4 layers, on CPU. Each measurement runs in its own
subprocess so peak memory is per configuration. Default sizes are modest because the CPU is
shared; raise ``--n-images`` for steadier figures.

    python benchmarks/bench_features.py                      # defaults: 32 images, batch 16
    python benchmarks/bench_features.py --n-images 64 --memory-sizes 48,288
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

MODELS = {
    "vit-b-32": ("open_clip:ViT-B-32", [f"visual.transformer.resblocks.{i}" for i in (2, 5, 8, 11)]),
    "resnet50": ("torchvision:resnet50", ["layer1", "layer2", "layer3", "layer4"]),
    "resnet18": ("torchvision:resnet18", ["layer1", "layer2", "layer3", "layer4"]),
}


def _stimuli(n: int, size: int = 224):
    """A lazy stimulus set: images are generated when loaded (no growth with ``n``)."""
    import numpy as np

    from neuroalign.stimuli import StimulusSet

    def loader(idx):
        return [np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8)
                for i in idx]

    return StimulusSet([f"img-{i:06d}" for i in range(n)], modality="image", loader=loader,
                       fingerprint={"bench": n})


def _baseline(fm, stim, layers, batch_size):
    """The plain loop: hooks that keep raw outputs, a full forward, pooling afterwards."""
    import numpy as np
    import torch

    modules = dict(fm.module.named_modules())
    outputs = {}
    handles = [modules[name].register_forward_hook(
        lambda m, i, o, name=name: outputs.__setitem__(name, o)) for name in layers]
    feats = {name: [] for name in layers}
    try:
        with torch.no_grad():
            for start in range(0, len(stim), batch_size):
                x = fm.transform(stim.load(range(start, min(start + batch_size, len(stim)))))
                fm.image_forward(x)
                for name in layers:
                    o = outputs[name]
                    o = o.mean(dim=(2, 3)) if o.ndim == 4 else o[:, 0]
                    feats[name].append(o.numpy())
    finally:
        for h in handles:
            h.remove()
    return {k: np.concatenate(v) for k, v in feats.items()}


def child(args) -> dict:
    import torch

    from neuroalign.features import extract, load_model

    torch.set_num_threads(args.threads)
    spec, layers = MODELS[args.model]
    fm = load_model(spec, weights=None)
    stim = _stimuli(args.n_images)
    warm = _stimuli(2)
    if args.mode == "baseline":
        _baseline(fm, warm, layers, args.batch_size)
        t = time.perf_counter()
        feats = _baseline(fm, stim, layers, args.batch_size)
    else:
        extract(fm, warm, layers=layers, batch_size=args.batch_size, device="cpu")
        cache = None
        if args.mode == "cache":
            cache = Path(tempfile.mkdtemp()) / "features.zarr"
        t = time.perf_counter()
        ds = extract(fm, stim, layers=layers, batch_size=args.batch_size, device="cpu",
                     cache=cache)
        elapsed = time.perf_counter() - t
        feats = {name: ds[name].values for name in layers}
    elapsed = locals().get("elapsed") or time.perf_counter() - t
    if args.save:
        import numpy as np

        np.savez(args.save, **{k.replace(".", "_"): v for k, v in feats.items()})
    return {"model": args.model, "mode": args.mode, "n_images": args.n_images,
            "seconds": elapsed, "images_per_s": args.n_images / elapsed,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run(model, mode, n, args, save=None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model", model, "--mode", mode,
           "--n-images", str(n), "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    if save:
        cmd += ["--save", save]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vit-b-32,resnet50")
    p.add_argument("--n-images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of each side; best kept")
    p.add_argument("--memory-sizes", default="48,144", help="stimulus counts for the cache memory check")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    p.add_argument("--modes", default="baseline,extract",
                   help="sides to time: baseline (hook loop), extract, cache (extract to zarr)")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    import os

    import numpy as np

    print(f"# load average {os.getloadavg()}", flush=True)
    rows = []
    modes = args.modes.split(",")
    tmp = Path(tempfile.mkdtemp())
    for model in args.models.split(","):
        best: dict[str, dict] = {}
        for _ in range(args.repeats):  # alternate to share the load of a busy machine fairly
            for mode in modes:
                r = _run(model, mode, args.n_images, args, save=str(tmp / f"{mode}.npz"))
                print(f"#   {mode}: {r['images_per_s']:.2f} img/s", flush=True)
                if mode not in best or r["images_per_s"] > best[mode]["images_per_s"]:
                    best[mode] = r
        base = np.load(tmp / "baseline.npz") if "baseline" in modes else None
        for mode in modes:
            if mode == "baseline":
                continue
            ratio = best[mode]["images_per_s"] / best["baseline"]["images_per_s"]
            out = np.load(tmp / f"{mode}.npz")
            diff = max(float(np.max(np.abs(out[k] - base[k])) / np.max(np.abs(base[k])))
                       for k in base.files)
            rows.append((model, best["baseline"], best[mode], ratio))
            print(f"{model:9s} hand-written loop {best['baseline']['images_per_s']:6.2f} img/s "
                  f"(peak {best['baseline']['peak_rss_mib']:.0f} MiB) | {mode} "
                  f"{best[mode]['images_per_s']:6.2f} img/s (peak "
                  f"{best[mode]['peak_rss_mib']:.0f} MiB) | ratio {ratio:.2f}x | outputs: max "
                  f"rel. diff {diff:.1e} | load {os.getloadavg()}", flush=True)
    if not args.memory_sizes:
        return
    model = args.models.split(",")[-1]
    for n in [int(s) for s in args.memory_sizes.split(",")]:
        r = _run(model, "cache", n, args)
        print(f"{model:9s} extract to cache, {n:5d} stimuli: {r['images_per_s']:6.2f} img/s, "
              f"peak {r['peak_rss_mib']:.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
