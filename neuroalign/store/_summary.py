"""Human-readable summary of a store (used by ``neuroalign info``)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.store._ops import roi_names
from neuroalign.store._schema import (
    ALLOW_SPLIT_OVERLAP,
    NEUROID_DIM,
    RESPONSE_VAR,
    TIME_DIM,
    sample_dim,
    split_overlap,
)

__all__ = ["summary"]


def summary(ds: xr.Dataset) -> str:
    """A short multi-line text describing a store: sizes, splits, ROIs, reliability.

    A store that allows stimuli in both splits (attribute ``allow_split_overlap``) says so,
    with the number of such stimuli and the first few of them.

    Parameters
    ----------
    ds : xr.Dataset
        A store.

    Returns
    -------
    str
        The description (what ``neuroalign info`` prints).
    """
    resp = ds[RESPONSE_VAR]
    dim = sample_dim(ds)
    ids = np.asarray(ds.coords["stimulus_id"].values)
    split = np.asarray(ds.coords["split"].values)
    lines = [
        f"dataset: {ds.attrs.get('dataset', '?')}  space: {ds.attrs.get('space', '?')}  "
        f"units: {ds.attrs.get('units', '?')}  schema: {ds.attrs.get('schema_version', '?')}",
        f"responses: {dict(resp.sizes)} {resp.dtype}",
        f"{dim}s: {ds.sizes[dim]} ({len(np.unique(ids))} unique stimuli; "
        + ", ".join(f"{s}: {int((split == s).sum())}" for s in ("train", "test"))
        + ")",
    ]
    if ds.attrs.get(ALLOW_SPLIT_OVERLAP, False):
        both = split_overlap(ds)
        lines.append(
            f"split overlap: ALLOWED ({ALLOW_SPLIT_OVERLAP}=True); {len(both)} stimuli in both "
            "train and test" + (f": {format_list(both, limit=5)}" if len(both) else "")
        )
    if "subject" in ds.coords:
        lines.append(f"subjects: {', '.join(map(str, np.unique(ds.coords['subject'].values)))}")
    if "session" in ds.coords:
        lines.append(f"sessions: {len(np.unique(ds.coords['session'].values))}")
    if TIME_DIM in resp.dims:
        t = ds.coords[TIME_DIM].values
        lines.append(f"time: {len(t)} samples, {float(t[0]):.3f} .. {float(t[-1]):.3f} s")
    rois = roi_names(ds)
    if rois:
        parts = [f"{r} ({int(np.asarray(ds.coords['roi_' + r].values).sum())})" for r in rois]
        lines.append(f"ROIs ({NEUROID_DIM}s): " + ", ".join(parts))
    if "ncsnr" in ds.data_vars:
        v = np.asarray(ds["ncsnr"].values, dtype=float).ravel()
        bad = int((~np.isfinite(v)).sum())
        v = v[np.isfinite(v)]
        text = "ncsnr:"
        if v.size:
            text += f" median {np.median(v):.3f} (range {v.min():.3f} .. {v.max():.3f})"
        if bad:
            text += f" {bad} of {v.size + bad} not finite"
        lines.append(text)
    return "\n".join(lines)
