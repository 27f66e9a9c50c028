"""Result Datasets on ``neuroid`` shared by the encoders: the one builder, which names the
metric, the kind of score (cross-validated or held-out) and the CV scheme."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign._validation import check_option
from neuroalign.encoders._scoring import SCORERS, ceiling_normalise

__all__ = ["results_dataset", "cv_scheme", "CV_KIND"]

CV_KIND = "cv"


def cv_scheme(cv, *, blocks: bool = False) -> str:
    """A readable description of a ``cv`` parameter, for the attrs of a results Dataset."""
    if isinstance(cv, str):
        return "leave-one-out (closed form)" if cv == "loo" else cv
    if isinstance(cv, int | np.integer) and not isinstance(cv, bool):
        if blocks:
            return f"{int(cv)}-fold, contiguous blocks of samples (neuroalign.encoders.block_folds)"
        return f"{int(cv)}-fold, stimulus-grouped (neuroalign.store.cv_folds)"
    return repr(cv)


def results_dataset(
    variables: dict[str, np.ndarray | tuple[tuple[str, ...], np.ndarray]],
    template: xr.DataArray | None,
    valid: np.ndarray,
    *,
    metric: str = "r2",
    kind: str = CV_KIND,
    cv=None,
    test_split: str | None = None,
    score_var: str = "score",
    ceiling=None,
    normalised_var: str = "ceiling_normalised",
    coords: dict | None = None,
    attrs: dict | None = None,
) -> xr.Dataset:
    """Build a per-neuroid result Dataset, keeping only ``valid`` neuroids.

    Parameters
    ----------
    variables : dict
        ``{name: array on neuroid}`` or ``{name: (dims, array)}`` for other dims (e.g.
        ``("layer", "neuroid")``).
    template : DataArray or None
        Carries the neuroid coordinates (``neuroid_id``, ``roi_*`` ...).
    valid : ndarray of bool
        Neuroids kept (NaN/constant neuroids are left out; their count is in
        ``attrs["n_excluded"]``).
    metric : {"pearson", "r2"}
        Metric of ``score_var``.
    kind : str
        ``"cv"`` (default; cross-validated within the fitting data) or the name of the held-out
        split the score was computed on.
    cv : int, "loo" or splitter, optional
        The CV scheme (described in ``attrs["cv"]``).
    test_split : str, optional
        The held-out split, if any.
    score_var : str
        The per-neuroid score variable (gets ``metric`` and ``kind`` attrs; named in
        ``attrs["score_var"]``).
    ceiling : array-like, optional
        Noise ceiling in percent per neuroid (full neuroid axis): adds ``noise_ceiling``
        and ``normalised_var`` (:func:`ceiling_normalise` of ``score_var``).
    coords, attrs : dict, optional
        Extra coordinates (e.g. ``{"layer": names}``) and attributes.
    """
    check_option(metric, tuple(SCORERS), name="metric", func="results_dataset")
    n = len(valid)
    data = {}
    for name, val in variables.items():
        if isinstance(val, tuple):
            data[name] = (val[0], np.asarray(val[1]))
        else:
            data[name] = ("neuroid", np.asarray(val))
    ds = xr.Dataset(data, coords=coords or {})
    if template is not None:
        ds = ds.assign_coords({k: c for k, c in template.coords.items() if c.dims == ("neuroid",)})
    else:
        ds = ds.assign_coords(neuroid_id=("neuroid", np.array([f"n{i}" for i in range(n)])))
    if score_var in ds:
        ds[score_var].attrs.update(metric=metric, kind=kind)
    if ceiling is not None:
        c = np.asarray(getattr(ceiling, "values", ceiling), dtype=np.float64)
        ds["noise_ceiling"] = ("neuroid", c)
        ds["noise_ceiling"].attrs["units"] = "percent of explainable variance"
        ds[normalised_var] = ("neuroid", ceiling_normalise(ds[score_var].values, c, metric=metric))
        ds[normalised_var].attrs.update(
            metric=f"{'max(r, 0)²' if metric == 'pearson' else 'R²'} / noise ceiling", kind=kind,
            source=score_var)
    ds.attrs.update(attrs or {})
    ds.attrs.update(metric=metric, score_kind=kind, score_var=score_var,
                    cv="" if cv is None else cv_scheme(cv), test_split=test_split or "",
                    n_excluded=int((~np.asarray(valid, bool)).sum()))
    return ds.isel(neuroid=np.flatnonzero(valid))
