"""Result Datasets on ``neuroid`` shared by the encoders."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign.encoders._scoring import ceiling_normalise

__all__ = ["results_dataset"]


def results_dataset(
    variables: dict[str, np.ndarray],
    template: xr.DataArray | None,
    valid: np.ndarray,
    *,
    ceiling=None,
    metric: str = "r2",
    attrs: dict | None = None,
) -> xr.Dataset:
    """Build the per-neuroid result Dataset, keeping only ``valid`` neuroids.

    ``ceiling`` (percent of explainable variance, per neuroid, aligned with the full
    neuroid axis) adds ``ceiling_normalised`` from ``score``.
    """
    n = len(valid)
    data = {k: ("neuroid", np.asarray(v)) for k, v in variables.items()}
    ds = xr.Dataset(data)
    if template is not None:
        ds = ds.assign_coords({k: c for k, c in template.coords.items() if c.dims == ("neuroid",)})
    else:
        ds = ds.assign_coords(neuroid_id=("neuroid", np.array([f"n{i}" for i in range(n)])))
    if ceiling is not None:
        c = np.asarray(getattr(ceiling, "values", ceiling), dtype=np.float64)
        ds["noise_ceiling"] = ("neuroid", c)
        ds["ceiling_normalised"] = ("neuroid", ceiling_normalise(ds["score"].values, c, metric=metric))
    ds.attrs.update(attrs or {})
    ds.attrs["metric"] = metric
    ds.attrs["n_excluded"] = int((~valid).sum())
    return ds.isel(neuroid=np.flatnonzero(valid))
