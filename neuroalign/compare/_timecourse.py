"""Time-resolved RSA for MEG/EEG stores: one comparison per time point.

At each time point the data RDM of each subject (neuroid grouping ``by``) is computed
across the sensors and compared with every model RDM; scores are averaged over subjects.
With ``generalize=True`` the data RDMs of every pair of time points are also compared
(temporal generalisation of the representational geometry: a ``(time, time_other)``
matrix, averaged over subjects).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option
from neuroalign.compare._compare_rdms import COMPARE_METHODS, _compare_vectors
from neuroalign.compare._inputs import align_stimuli
from neuroalign.compare._rdm import squareform_vector
from neuroalign.compare._rsa import _features_of_store, _rdm_set
from neuroalign.exceptions import DimensionError

__all__ = ["rsa_timecourse"]

log = get_logger(__name__)


def rsa_timecourse(
    models: Any,
    store: xr.Dataset,
    *,
    method: str = "spearman",
    metric: str = "correlation",
    model_metric: str = "correlation",
    by: str = "subject",
    generalize: bool = False,
    show_progress: bool | None = None,
) -> xr.Dataset:
    """Compare model RDMs with the data RDM at every time point of an MEG/EEG store.

    Parameters
    ----------
    models : dict, array or xr.DataArray
        Model RDMs or features, as for :func:`rsa`.
    store : xr.Dataset
        A store with ``responses`` on ``(presentation | stimulus, neuroid, time)``;
        trial-level stores are averaged over repetitions first.
    method : str
        RDM comparison (see :func:`compare_rdms`).
    metric : str
        Data RDM metric at each time point (see :func:`rdm`; not ``"crossnobis"``).
    model_metric : str
        RDM metric for models given as features.
    by : str
        Neuroid coordinate defining the subjects (each gets its own data RDMs).
    generalize : bool
        Also compare data RDMs across every pair of time points.
    show_progress : bool, optional
        Progress bar over time points.

    Returns
    -------
    xr.Dataset
        ``score`` on ``(model, time)`` (mean over subjects), ``per_subject`` on
        ``(model, subject, time)``; with ``generalize``, ``generalization`` on
        ``(time, time_other)``.
    """
    from neuroalign.compare._rdm import rdm
    from neuroalign.store import check_store, is_trial_level

    check_option(method, COMPARE_METHODS, name="method", func="rsa_timecourse")
    if metric == "crossnobis":
        raise ValueError(
            "Invalid value for 'metric' in rsa_timecourse(): 'crossnobis'. Expected a metric "
            "of averaged patterns ('correlation', 'euclidean', 'sqeuclidean', 'mahalanobis', "
            "'poisson')."
        )
    check_store(store)
    if "time" not in store["responses"].dims:
        raise DimensionError(
            f"Invalid value for 'store' in rsa_timecourse(): responses with dims "
            f"{store['responses'].dims!r}. Expected a 'time' dim (MEG/EEG); use rsa() for "
            "fMRI stores."
        )
    if is_trial_level(store):
        store = store.na.average_repetitions()
    if by not in store.coords:
        raise ValueError(
            f"Invalid value for 'by' in rsa_timecourse(): {by!r}. Expected a neuroid "
            "coordinate such as 'subject'."
        )
    if isinstance(models, Mapping):  # features of more stimuli than the store: joined on id
        models = _features_of_store(models, store)
    M, mlabels, mids = _rdm_set(models, name="models", batch="model", model_metric=model_metric)
    ids = store.coords["stimulus_id"].values.astype(str)
    idx = align_stimuli(ids, mids, names=("store", "models"), func="rsa_timecourse",
                        n_a=len(ids), n_b=M.shape[-1])
    if idx is not None:
        M = M[:, idx][:, :, idx]
    mv = squareform_vector(M)
    times = store.coords["time"].values
    subjects = list(dict.fromkeys(store.coords[by].values.tolist()))
    resp = store["responses"].transpose("stimulus", "neuroid", "time")
    per_subject = np.empty((len(mlabels), len(subjects), len(times)))
    gen = np.zeros((len(times), len(times))) if generalize else None
    disable = None if show_progress is None else not show_progress
    for si, subj in enumerate(subjects):
        sub = resp.isel(neuroid=np.flatnonzero(store.coords[by].values == subj)).values
        dv = np.stack([
            squareform_vector(rdm(sub[:, :, t], metric).values)
            for t in progress(range(len(times)), desc=f"rdms {subj}", disable=disable)
        ])
        per_subject[:, si, :] = _compare_vectors(mv, dv, method, "rsa_timecourse")
        if generalize:
            gen += _compare_vectors(dv, dv, method, "rsa_timecourse")
    ds = xr.Dataset(
        {
            "score": (("model", "time"), per_subject.mean(axis=1)),
            "per_subject": (("model", "subject", "time"), per_subject),
        },
        coords={"model": mlabels, "subject": [str(s) for s in subjects], "time": times},
        attrs={"method": method, "metric": metric},
    )
    if generalize:
        ds["generalization"] = (("time", "time_other"), gen / len(subjects))
        ds = ds.assign_coords(time_other=times)
    return ds
