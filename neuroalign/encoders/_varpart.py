"""Variance partitioning between feature spaces: a ridge encoder on every subset of the
spaces, unique and shared variance by inclusion-exclusion (the companion analysis of
:class:`~neuroalign.encoders.BandedRidgeEncoder`, exported from the same place)."""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.encoders._banded_solve import _to_numpy
from neuroalign.encoders._data import as_matrix
from neuroalign.encoders._results import cv_scheme
from neuroalign.encoders._ridge import RidgeEncoder
from neuroalign.encoders._scoring import r2_score
from neuroalign.exceptions import DimensionError
from neuroalign.store._join import match_stimuli

__all__ = ["variance_partitioning"]


def _subset_design(Xd: dict, subset, Y, *, what: str):
    """Features of ``subset`` side by side -> (X, Y, labelled).

    xarray features are joined space by space on ``stimulus_id`` (spaces in different row
    orders line up) into one features DataArray over the stimuli of ``Y``, which the encoder
    joins to ``Y`` on ``stimulus_id`` too (so its folds never depend on row order); arrays
    are taken row by row."""
    vals = [Xd[n] for n in subset]
    if all(isinstance(v, xr.DataArray) for v in vals) and isinstance(Y, xr.Dataset | xr.DataArray):
        from neuroalign.encoders._data import features_matrix
        from neuroalign.store._join import stimulus_ids

        resp = Y["responses"] if isinstance(Y, xr.Dataset) else Y
        ids = np.unique(stimulus_ids(resp, name="responses", func="variance_partitioning")[0])
        parts = []
        for name, v in zip(subset, vals, strict=True):
            fm = features_matrix(v)
            rows = match_stimuli(fm["stimulus_id"].values, ids, have_name=f"space {name!r}",
                                 want_name=f"the {what} responses", func="variance_partitioning")
            parts.append(np.asarray(fm.values)[rows])
        X = xr.DataArray(np.concatenate(parts, 1), dims=("stimulus", "unit"),
                         coords={"stimulus_id": ("stimulus", ids)}, name="+".join(subset))
        return X, Y, True
    if any(isinstance(v, xr.DataArray | xr.Dataset) for v in vals) or isinstance(Y, xr.Dataset | xr.DataArray):
        raise TypeError(
            f"variance_partitioning(): the {what} features and responses must all be xarray "
            "objects (joined on stimulus_id) or all arrays (taken row by row); got "
            f"{format_list([type(v).__name__ for v in vals])} and {type(Y).__name__!r}."
        )
    mats = [as_matrix(_to_numpy(v), name="X") for v in vals]
    Ym = as_matrix(_to_numpy(Y), name="Y")
    if any(m.shape[0] != Ym.shape[0] for m in mats):
        raise DimensionError(
            f"variance_partitioning(): the {what} features have {[m.shape[0] for m in mats]!r} "
            f"rows and the responses {Ym.shape[0]}; expected the same number of rows."
        )
    return np.concatenate(mats, 1), Ym, False


def variance_partitioning(
    X_train: dict,
    Y_train,
    X_test: dict,
    Y_test,
    *,
    encoder: RidgeEncoder | None = None,
) -> xr.Dataset:
    """Variance partitioning of held-out R² between feature spaces.

    Fits a ridge encoder on every non-empty subset of the spaces (concatenated
    features), scores R² on the test data, and derives by inclusion-exclusion the variance
    unique to each space and, for two spaces, the variance they share. For a vision model
    V and a language model L, ``unique`` of L is "how much L adds beyond V".

    Parameters
    ----------
    X_train, X_test : dict {space: features}
        xarray features (each joined on ``stimulus_id`` to the responses, so row order
        never matters and the features may cover more stimuli) or arrays (row by row).
    Y_train, Y_test : store Dataset, DataArray or ndarray
    encoder : RidgeEncoder, optional
        Its parameters are used for every fit.

    Returns
    -------
    xr.Dataset on ``neuroid`` with ``joint_r2``, ``r2`` (subset, neuroid), ``unique``
    (space, neuroid) and, for two spaces, ``shared``: held-out R² (attrs ``metric`` and
    ``score_kind``). NaN for neuroids excluded from a fit (NaN or constant).
    """
    from neuroalign.encoders._banded import _spaces

    names = list(_spaces(X_train, func="variance_partitioning"))
    if len(names) < 2:
        raise ValueError(f"variance_partitioning() needs at least 2 feature spaces; got {names!r}.")
    missing = [n for n in names if n not in X_test]
    if missing:
        raise KeyError(
            f"variance_partitioning(): X_test lacks the space(s) {format_list(missing)}; "
            f"X_train has {format_list(names)}."
        )
    base = encoder if encoder is not None else RidgeEncoder()
    r2 = {}
    template = None
    for k in range(1, len(names) + 1):
        for subset in itertools.combinations(names, k):
            Xtr, Ytr, _ = _subset_design(X_train, subset, Y_train, what="training")
            Xte, Yte, labelled = _subset_design(X_test, subset, Y_test, what="test")
            enc = RidgeEncoder(**base.get_params()).fit(Xtr, Ytr)
            if labelled:  # joined on stimulus_id; held-out R², NaN for excluded neuroids
                held = enc.set_params(metric="r2").score(Xte, Yte)
                template = held
                r2[subset] = np.asarray(held.values, dtype=np.float64)
            else:
                r2[subset] = np.where(enc.valid_neuroids_, r2_score(Yte, enc.predict(Xte)), np.nan)
    joint = r2[tuple(names)]
    unique = np.stack([joint - r2[tuple(n for n in names if n != s)] for s in names])
    coords = {"space": names, "subset": ["+".join(s) for s in r2]}
    if template is not None:
        coords.update({k: c for k, c in template.coords.items() if c.dims == ("neuroid",)})
    ds = xr.Dataset(
        {"joint_r2": ("neuroid", joint),
         "r2": (("subset", "neuroid"), np.stack(list(r2.values()))),
         "unique": (("space", "neuroid"), unique)},
        coords=coords,
    )
    if len(names) == 2:
        a, b = names
        ds["shared"] = ("neuroid", r2[(a,)] + r2[(b,)] - joint)
    for v in ds.data_vars:
        ds[v].attrs.update(metric="r2", kind="held-out")
    ds.attrs.update(metric="r2", score_kind="held-out", cv=cv_scheme(base.cv),
                    description="alpha per neuroid chosen by cross-validation within the "
                                "training data; R² on the test data")
    return ds
