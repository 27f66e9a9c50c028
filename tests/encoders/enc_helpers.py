import numpy as np
import xarray as xr


def planted(n=120, p=30, t=50, noise=5.0, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)).astype(np.float32)
    W = rng.standard_normal((p, t)) * (rng.random(t) * 2)
    Y = (X @ W + rng.standard_normal((n, t)) * noise).astype(np.float32)
    return X, Y, W



def feature_da(X, ids, layer="layer"):
    return xr.DataArray(
        X, dims=("stimulus", f"{layer}_unit"), coords={"stimulus_id": ("stimulus", np.asarray(ids))},
        name=layer,
    )
