"""The core works without torch: store, reliability, the NSD adapter, compare and the ridge
encoder give the same numbers with torch blocked as with it, and the parts that need torch
(features, decoders, GPU devices) say what to install."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

BLOCK = '''
import sys

class _NoTorch:
    """Import hook: torch and torchvision are not installed."""
    tried = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            self.tried.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

_BLOCKER = _NoTorch()
sys.meta_path.insert(0, _BLOCKER)
'''

WORKLOAD = '''
def workload(nsd_root):
    import warnings

    import numpy as np
    import xarray as xr

    from neuroalign.compare import cka, compare_rdms, rdm, rsa, shape_distance
    from neuroalign.datasets import load_nsd
    from neuroalign.encoders import RidgeEncoder, ridge_cv
    from neuroalign.store import from_arrays, ncsnr, noise_ceiling
    from neuroalign.testing import make_store

    out = {}
    store, signal = make_store(n_stimuli=30, n_neuroids=10, ncsnr=1.5, seed=1,
                               return_signal=True)
    out["ncsnr"] = ncsnr(store).values.tolist()
    out["noise_ceiling"] = np.asarray(noise_ceiling(store)).tolist()
    with warnings.catch_warnings():  # a tiny tree: counts differ from the published ones
        warnings.simplefilter("ignore")
        nsd = load_nsd(nsd_root, 1)
    out["nsd_shape"] = list(nsd["responses"].shape)
    out["nsd_responses"] = float(np.asarray(nsd["responses"].values, dtype=np.float64).sum())
    out["nsd_ncsnr"] = ncsnr(nsd).values.tolist()
    ids = np.asarray(signal["stimulus_id"].values)
    rng = np.random.default_rng(7)
    F = np.concatenate([signal.values, rng.standard_normal((len(ids), 5))], axis=1)
    feats = xr.DataArray(F, dims=("stimulus", "layer_unit"),
                         coords={"stimulus_id": ("stimulus", ids)})
    avg = store.na.average_repetitions()
    other = make_store(n_stimuli=30, n_neuroids=10, ncsnr=1.5, seed=2).na.average_repetitions()
    r_data, r_feat = rdm(avg), rdm(feats)
    out["rdm"] = r_data.values.ravel().tolist()
    out["spearman"] = float(compare_rdms(r_feat, r_data, "spearman"))
    res = rsa({"m": r_feat}, {"s1": r_data, "s2": rdm(other)}, n_bootstrap=20)
    out["rsa"] = [float(res["score"].values[0]), float(res["noise_ceiling_upper"])]
    out["cka"] = float(cka(avg, feats))
    out["shape"] = float(shape_distance(avg, feats))
    enc = RidgeEncoder(cv=3).fit(feats, store)
    out["cv_scores"] = enc.cv_scores_.tolist()
    out["score"] = enc.score(feats, avg).values.tolist()
    out["best_alphas"] = enc.best_alphas_.tolist()
    X = rng.standard_normal((40, 6))
    loo = ridge_cv(X, X[:, :3] + rng.standard_normal((40, 3)), [0.1, 1.0, 10.0], "loo", refit=True)
    out["loo"] = loo.cv_mse.ravel().tolist() + loo.coef.ravel().tolist()
    small = from_arrays(rng.standard_normal((12, 4)), [f"s{i % 6}" for i in range(12)])
    out["from_arrays"] = list(small["responses"].shape)
    return out
'''

CHECKS = '''
import json, re, numpy as np
out = workload(NSD_ROOT)
errors = {}

def expect_import_error(key, func):
    try:
        func()
    except ImportError as err:
        errors[key] = str(err)
    else:
        errors[key] = None

import neuroalign.decoders, neuroalign.encoders, neuroalign.features, neuroalign.compare
from neuroalign._config import resolve_device
from neuroalign.encoders import RidgeEncoder
expect_import_error("features", lambda: __import__("neuroalign.features", fromlist=["extract"]).extract)
expect_import_error("decoders", lambda: neuroalign.decoders.EmbeddingDecoder)
expect_import_error("routing", lambda: neuroalign.encoders.AttentionRoutingEncoder)
expect_import_error("cuda_ridge", lambda: RidgeEncoder(device="cuda").fit(np.ones((5, 2)), np.ones((5, 1))))
expect_import_error("cuda_rdm", lambda: neuroalign.compare.rdm(np.eye(4), device="cuda"))
from neuroalign.datasets import simulate
expect_import_error("simulate", lambda: simulate(NSD_ROOT + "-sim"))
out["auto"] = resolve_device("auto")
out["errors"] = errors
out["torch_loaded"] = "torch" in sys.modules
out["torch_tried"] = sorted(set(_BLOCKER.tried))
print(json.dumps(out))
'''


def test_core_without_torch_gives_the_same_numbers(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent / "datasets"))
    try:
        from adapter_fixtures import write_nsd
    finally:
        sys.path.pop(0)
    nsd_root = tmp_path / "nsd"
    write_nsd(nsd_root, surface=False)

    code = (BLOCK + WORKLOAD + f"\nNSD_ROOT = {str(nsd_root)!r}\n" + CHECKS)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])

    # the blocker was in the way (something tried torch) and torch never got in
    assert child["torch_loaded"] is False
    assert child["auto"] == "cpu"
    # the parts that need torch say so, and how to install it
    for key, what in (("features", "neuroalign.features.extract"),
                      ("decoders", "neuroalign.decoders.EmbeddingDecoder"),
                      ("routing", "neuroalign.encoders.AttentionRoutingEncoder"),
                      ("cuda_ridge", "device='cuda'"), ("cuda_rdm", "device='cuda'"),
                      ("simulate", "neuroalign.datasets.simulate()")):
        msg = child["errors"][key]
        assert msg is not None, f"{key}: no ImportError without torch"
        assert msg.startswith(f"{what} needs PyTorch, which is not installed"), msg
        assert "pip install torch torchvision" in msg and "download.pytorch.org/whl/cpu" in msg
    assert set(child["torch_tried"]) >= {"torch"}

    # the same numbers as here, where torch can be imported
    ns: dict = {}
    exec(textwrap.dedent(WORKLOAD), ns)
    here = ns["workload"](str(nsd_root))
    for key, value in here.items():
        np.testing.assert_allclose(np.asarray(child[key], dtype=float),
                                   np.asarray(value, dtype=float), rtol=1e-12, atol=0,
                                   err_msg=key)
    assert child["nsd_shape"][0] == 24 and 0 < child["nsd_shape"][1]
