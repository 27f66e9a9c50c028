"""Per-subject data RDMs as cached cells (``data_rdms(cluster=, result_path=)``): one cell
per subject, keyed by the subject's responses, stimuli and runs, the metric and the noise
precision (:mod:`neuroalign._scaleout`)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign.compare._rdm import _DESCRIPTIONS, RDM_DIMS, rdm

__all__ = ["subject_rdm_cells"]

_VARS = ("rdm", "ids", "has_ids", "n_channels")


def _ids_array(ids) -> np.ndarray:
    arr = np.asarray(ids)
    return arr.astype(str) if arr.dtype == object else arr


def _subject_rdm(sub: xr.Dataset, metric: str, kw: dict) -> dict:
    """Task: one subject's RDM (as :func:`neuroalign.compare.rdm`), as arrays."""
    d = rdm(sub, metric, **kw)
    has = "stimulus_id_i" in d.coords
    return {"rdm": np.asarray(d.values), "has_ids": np.array(has),
            "ids": _ids_array(d.coords["stimulus_id_i"].values) if has else np.zeros(0),
            "n_channels": np.array(int(d.attrs["n_channels"]))}


def subject_rdm_cells(store: xr.Dataset, subjects: list, by: str, metric: str, kw: dict,
                      runs: str, so) -> list[xr.DataArray]:
    """The RDM of each subject of ``store`` (grouped by the neuroid coordinate ``by``) from
    cached cells on ``so`` (a started :class:`neuroalign._scaleout.ScaleOut`); each as
    :func:`neuroalign.compare.rdm` returns it, with a ``subject`` dim."""
    from neuroalign._scaleout import fingerprint, run_cells

    subs = [store.isel(neuroid=np.flatnonzero(store.coords[by].values == s)) for s in subjects]
    noise = kw.get("noise")
    base = fingerprint("data-rdm", metric, runs,
                       None if noise is None else np.asarray(noise, dtype=np.float64))

    def key(sub, subj):
        parts = [str(subj), np.ascontiguousarray(sub["responses"].values),
                 _ids_array(sub.coords["stimulus_id"].values), list(sub["responses"].dims)]
        if runs in sub.coords:
            parts.append(_ids_array(sub.coords[runs].values))
        return fingerprint(base, *parts)

    keys = [key(sub, subj) for sub, subj in zip(subs, subjects, strict=True)]
    cells, so.info = run_cells(_subject_rdm, keys, lambda i: (subs[i], metric, kw), names=_VARS,
                               folder=so.folder, client=so.lazy, what="data_rdms",
                               fail=so.fail)
    out = []
    for subj, c in zip(subjects, cells, strict=True):
        coords = {}
        if bool(c["has_ids"]):
            coords = {"stimulus_id_i": (RDM_DIMS[0], c["ids"]), "stimulus_id_j": (RDM_DIMS[1], c["ids"])}
        d = xr.DataArray(c["rdm"], dims=RDM_DIMS, coords=coords, name="rdm",
                         attrs={"metric": metric, "description": _DESCRIPTIONS[metric],
                                "n_channels": int(c["n_channels"])})
        out.append(d.expand_dims(subject=[str(subj)]))
    return out
