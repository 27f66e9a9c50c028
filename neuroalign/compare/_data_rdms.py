"""Data RDMs from a store: one RDM per subject (or per any neuroid grouping), in cached
cells on a cluster when asked (:func:`data_rdms`), and pseudo-subjects for a noise ceiling
from one subject (:func:`pseudo_subjects`). Compared with models by
:func:`neuroalign.compare.rsa`."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from neuroalign._validation import check_positive_int, format_list
from neuroalign.compare._rdm import rdm

__all__ = ["data_rdms", "pseudo_subjects"]


def pseudo_subjects(store: xr.Dataset, n_subjects: int, *, seed: int = 0) -> xr.Dataset:
    """Split a store's neuroids at random into ``n_subjects`` disjoint pseudo-subjects.

    The ``subject`` coordinate is replaced by ``pseudo-00``, ``pseudo-01``, ... Useful for a
    noise ceiling from a single subject: each pseudo-subject samples different neuroids
    of the same region, as different brains sample different neurons of the same area.

    Parameters
    ----------
    store : xr.Dataset
        Any store (trial-level or averaged).
    n_subjects : int
        Number of groups (at least 2, at most the number of neuroids).
    seed : int
        Seed of the random assignment.

    Returns
    -------
    xr.Dataset
        The store with its ``subject`` coordinate on ``neuroid`` replaced (about equal
        group sizes), ready for :func:`data_rdms` or :func:`rsa`.
    """
    n_subjects = check_positive_int(n_subjects, name="n_subjects", func="pseudo_subjects",
                                    minimum=2)
    n = store.sizes["neuroid"]
    if n_subjects > n:
        raise ValueError(
            f"Invalid value for 'n_subjects' in pseudo_subjects(): {n_subjects!r}. Expected at "
            f"most the number of neuroids ({n})."
        )
    rng = np.random.default_rng(seed)
    groups = rng.permutation(np.arange(n) % n_subjects)
    labels = np.array([f"pseudo-{g:02d}" for g in groups])
    return store.assign_coords(subject=("neuroid", labels))


def data_rdms(
    store: xr.Dataset,
    metric: str = "correlation",
    *,
    roi: str | list[str] | None = None,
    by: str = "subject",
    runs: str = "repetition",
    noise: Any = None,
    cluster: Any = None,
    cluster_options: dict | None = None,
    result_path: Any = None,
    client: Any = None,
) -> xr.DataArray:
    """One data RDM per subject (or per any neuroid grouping) from a store.

    Parameters
    ----------
    store : xr.Dataset
        A store. Trial-level stores are averaged over repetitions, except for
        ``metric="crossnobis"``, which cross-validates the distances across ``runs``
        (default: the k-th repetition of each stimulus forms fold k).
    metric : str
        RDM metric (see :func:`rdm`).
    roi : str or list of str, optional
        Restrict to these ROIs first.
    by : str
        Neuroid coordinate that defines the subjects (``"subject"``).
    runs : str
        Presentation coordinate of the cross-validation folds for ``"crossnobis"``.
    noise : array-like, optional
        Noise precision (same for every subject) for mahalanobis / crossnobis.
    cluster : None, "none", "local", "slurm", "pbs", scheduler address, Client or dict
        Compute one cached cell per subject on this cluster
        (:func:`neuroalign._scaleout.get_client`, as :meth:`RidgeEncoder.fit
        <neuroalign.encoders.RidgeEncoder.fit>`); same RDMs as the single-process run.
    cluster_options : dict, optional
        Options of the cluster (Slurm/PBS: dask-jobqueue's ``cores``, ``memory``, ...).
    result_path : path-like, optional
        Folder of the cached cells (``result_path/cells/``), keyed by each subject's
        responses, stimuli and runs, the metric and ``noise``: a rerun (or a store with a
        subject added) computes only the missing subjects. Also with ``cluster=None``.
    client : dask.distributed.Client, optional
        Run the cells on this client's workers.

    Returns
    -------
    xr.DataArray
        Dims ``('subject', 'stimulus_i', 'stimulus_j')``.
    """
    from neuroalign.store import is_trial_level

    if roi is not None:
        store = store.na.roi(roi)
    if by not in store.coords or "neuroid" not in store.coords[by].dims:
        raise ValueError(
            f"Invalid value for 'by' in data_rdms(): {by!r}. Expected a neuroid coordinate; "
            f"the store has {format_list(c for c in store.coords if 'neuroid' in store.coords[c].dims)}."
        )
    trial = is_trial_level(store)
    if trial and metric != "crossnobis":
        store = store.na.average_repetitions()
    if metric == "crossnobis" and not trial:
        raise ValueError(
            "Invalid value for 'store' in data_rdms(metric='crossnobis'): an averaged store. "
            "Expected a trial-level store (dim 'presentation') to cross-validate across runs."
        )
    out = []
    subjects = list(dict.fromkeys(store.coords[by].values.tolist()))
    from neuroalign._scaleout import ScaleOut

    so = ScaleOut(cluster=cluster, cluster_options=cluster_options, client=client,
                  result_path=result_path, func="data_rdms", prefix="neuroalign-rdms-")
    if so.active:
        from neuroalign.compare._cells import subject_rdm_cells

        kw = {"noise": noise} if noise is not None else {}
        if metric == "crossnobis":
            kw.update(conditions="stimulus_id", runs=runs)
        with so:
            return xr.concat(subject_rdm_cells(store, subjects, by, metric, kw, runs, so),
                             dim="subject")
    for subj in subjects:
        sub = store.isel(neuroid=np.flatnonzero(store.coords[by].values == subj))
        kw = {"noise": noise} if noise is not None else {}
        if metric == "crossnobis":
            kw.update(conditions="stimulus_id", runs=runs)
        out.append(rdm(sub, metric, **kw).expand_dims(subject=[str(subj)]))
    return xr.concat(out, dim="subject")
