"""Reduction of features: PCA fitted on training stimuli, random projection, spatial pooling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option, check_positive_int
from neuroalign.exceptions import DimensionError, StimulusMismatchError

__all__ = ["reduce", "METHODS"]

log = get_logger(__name__)

METHODS = ("pca", "random", "spatial")


def _train_mask(features: xr.Dataset, train: Any) -> np.ndarray:
    ids = np.asarray(features["stimulus_id"].values).astype(str)
    if isinstance(train, xr.DataArray | np.ndarray | list | tuple) and len(train) == len(ids) and (
        np.asarray(train).dtype == bool
    ):
        mask = np.asarray(train, dtype=bool)
    else:
        want = [str(t) for t in np.asarray(train).ravel()]
        missing = sorted(set(want) - set(ids))
        if missing:
            raise StimulusMismatchError(
                f"Invalid value for 'train' in reduce(): {len(missing)} stimulus id(s) not in the "
                f"features: {missing[:10]!r}."
            )
        mask = np.isin(ids, want)
    if mask.sum() < 2:
        raise ValueError(
            f"Invalid value for 'train' in reduce(): {int(mask.sum())} training stimuli. "
            "Expected at least 2."
        )
    return mask


def reduce(
    features: xr.Dataset,
    method: str = "pca",
    *,
    n_components: int = 100,
    train: Sequence[str] | np.ndarray | None = None,
    layers: Sequence[str] | None = None,
    grid: tuple[int, int] = (2, 2),
    seed: int = 0,
    dtype: str | None = None,
) -> xr.Dataset:
    """Reduce each layer's features.

    Parameters
    ----------
    features : xr.Dataset
        Output of :func:`extract`.
    method : {"pca", "random", "spatial"}
        ``"pca"``: principal components fitted on the ``train`` stimuli only, applied to all;
        ``"random"``: a seeded Gaussian random projection to ``n_components``;
        ``"spatial"``: average token-level features over a ``grid`` of image regions and
        flatten (prefix tokens such as CLS are dropped).
    n_components : int
        Output dimension of ``"pca"`` and ``"random"`` (PCA: at most the number of training
        stimuli).
    train : sequence of str or bool array
        Training stimulus ids (or a mask on ``stimulus``); required for ``"pca"``, so the
        test stimuli never shape the components.
    layers : sequence of str, optional
        Variables to reduce (default all); the others are kept as they are.
    grid : (int, int)
        ``"spatial"``: output grid (rows, cols).
    seed : int
        ``"random"``: seed of the projection.
    dtype : {"float16", "float32", "float64"}, optional
        Storage dtype of the result (default: that of the input).

    Returns
    -------
    xr.Dataset
        Same variables and coordinates; reduced variables have dims
        ``("stimulus", "<layer>_unit")`` and attr ``reduction``.
    """
    check_option(method, METHODS, name="method", func="reduce")
    if dtype is not None:
        check_option(dtype, ("float16", "float32", "float64"), name="dtype", func="reduce")
    names = list(features.data_vars) if layers is None else list(layers)
    unknown = [n for n in names if n not in features.data_vars]
    if unknown:
        raise ValueError(
            f"Invalid value for 'layers' in reduce(): {unknown!r}. Expected variables of the "
            f"features: {list(features.data_vars)!r}."
        )
    if method == "pca":
        if train is None:
            raise ValueError(
                "Invalid value for 'train' in reduce(): None. PCA is fitted on the training "
                "stimuli only: pass their stimulus ids (or a boolean mask on 'stimulus')."
            )
        mask = _train_mask(features, train)
    if method in ("pca", "random"):
        n_components = check_positive_int(n_components, name="n_components", func="reduce")
    out = features.copy()
    for name in progress(names, desc=f"reduce ({method})", unit="layer"):
        var = features[name]
        unit = var.dims[-1]
        if method == "spatial":
            values, info = _spatial(var, name, grid)
        else:
            x = np.asarray(var.values, dtype=np.float64).reshape(var.shape[0], -1)
            if method == "pca":
                values, info = _pca(x, mask, n_components)
            else:
                values, info = _random(x, n_components, seed)
        values = values.astype(dtype or var.dtype, copy=False)
        out = out.drop_vars(name)
        drop = [c for c in out.coords if set(out[c].dims) & (set(var.dims) - {"stimulus"})
                and not any(set(out[v].dims) & set(out[c].dims) for v in out.data_vars)]
        out = out.drop_vars(drop)
        out[name] = xr.DataArray(values, dims=("stimulus", unit if var.ndim == 2 else f"{name}_unit"),
                                 attrs={**var.attrs, "reduction": info})
        for key in ("token_grid", "n_prefix_tokens"):
            out[name].attrs.pop(key, None)
    out.attrs = {**features.attrs, "reduction": method}
    return out


def _pca(x: np.ndarray, mask: np.ndarray, k: int):
    from sklearn.decomposition import PCA

    k = min(k, int(mask.sum()), x.shape[1])
    pca = PCA(n_components=k, svd_solver="auto", random_state=0).fit(x[mask])
    info = f"pca(n_components={k}, fitted_on={int(mask.sum())} stimuli)"
    return pca.transform(x), info


def _random(x: np.ndarray, k: int, seed: int):
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((x.shape[1], k)) / np.sqrt(k)
    return x @ proj, f"random_projection(n_components={k}, seed={seed})"


def _spatial(var: xr.DataArray, name: str, grid: tuple[int, int]):
    from neuroalign._config import require_torch

    torch = require_torch("reduce(method='spatial')")
    import torch.nn.functional as F

    tok_grid = list(var.attrs.get("token_grid", []))
    if var.ndim != 3 or len(tok_grid) != 2:
        raise DimensionError(
            f"reduce(method='spatial'): layer {name!r} has dims {var.dims}; expected token-level "
            "features ('stimulus', 'token', unit) with a token grid (extract with pooling=None)."
        )
    prefix = int(var.attrs.get("n_prefix_tokens", 0))
    h, w = tok_grid
    x = torch.as_tensor(np.asarray(var.values, dtype=np.float32))[:, prefix:]
    x = x.transpose(1, 2).reshape(x.shape[0], -1, h, w)
    pooled = F.adaptive_avg_pool2d(x, tuple(grid))
    values = pooled.flatten(1).numpy()  # (N, C * gh * gw), channel-major
    return values, f"spatial(grid={list(grid)}, from={tok_grid})"
