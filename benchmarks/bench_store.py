"""Store operations against the references, on an NSD-sized trial x voxel array.

    python benchmarks/bench_store.py [--trials 9000] [--voxels 15000]

Compares, on the same data in the same run:
- ``average_repetitions`` vs ``xarray`` ``groupby('stimulus_id').mean()`` and pandas groupby;
- ``ncsnr`` vs a direct implementation of NSD's recipe (scipy ``zscore`` per session with
  ``ddof=1``, NSD's ``calczscore``, then the across-repetition variance image by image);
- ``cv_folds`` vs scikit-learn ``GroupKFold``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import measure, report  # noqa: E402

from neuroalign.store import cv_folds, ncsnr  # noqa: E402
from neuroalign.testing import make_store  # noqa: E402


def nsd_reference_ncsnr(data: np.ndarray, ids: np.ndarray, session: np.ndarray) -> np.ndarray:
    z = np.empty_like(data, dtype=np.float64)
    for s in np.unique(session):
        m = session == s
        z[m] = stats.zscore(data[m], axis=0, ddof=1)  # NSD's calczscore: sample sd
    var = [z[ids == i].var(axis=0, ddof=1) for i in np.unique(ids) if (ids == i).sum() > 1]
    noise = np.mean(var, axis=0)
    return np.sqrt(np.maximum(0, 1 - noise)) / np.sqrt(noise)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=9000)
    p.add_argument("--voxels", type=int, default=15000)
    args = p.parse_args()
    n_img = args.trials // 3
    ds = make_store(n_img, args.voxels, n_repetitions=3, n_sessions=max(1, args.trials // 750),
                    ncsnr=0.8, seed=0)
    print(f"store: {args.trials} trials x {args.voxels} voxels float32, {n_img} images x 3 repetitions")

    t, m, ours = measure(lambda: ds.na.average_repetitions().responses.values)
    tx, mx, ref = measure(lambda: ds.responses.groupby("stimulus_id").mean().values)
    order = np.argsort(ds.na.average_repetitions().stimulus_id.values)
    assert np.allclose(ours[order], ref, atol=1e-5)
    print(report("average_repetitions", (t, m), (tx, mx), "xarray groupby.mean"))

    def pandas_mean():
        df = pd.DataFrame(ds.responses.values)
        return df.groupby(ds.stimulus_id.values, sort=False).mean().to_numpy()

    tp, mp, _ = measure(pandas_mean)
    print(report("average_repetitions", (t, m), (tp, mp), "pandas groupby.mean"))

    data, ids, session = ds.responses.values, ds.stimulus_id.values, ds.session.values
    t, m, ours = measure(lambda: ncsnr(ds).values)
    tr, mr, ref = measure(lambda: nsd_reference_ncsnr(data, ids, session))
    assert np.allclose(ours, ref, rtol=1e-4)
    print(report("ncsnr", (t, m), (tr, mr), "NSD recipe (scipy)"))

    from sklearn.model_selection import GroupKFold

    t, m, _ = measure(lambda: cv_folds(ids, 5), repeat=3)
    tg, mg, _ = measure(lambda: list(GroupKFold(5).split(data[:, :1], groups=ids)), repeat=3)
    print(report("cv_folds", (t, m), (tg, mg), "sklearn GroupKFold"))


if __name__ == "__main__":
    main()
