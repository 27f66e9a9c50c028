"""Store operations: repetition averaging, ROI and split selection, z-scoring.

All operations return new objects and work chunk by chunk on dask-backed stores and on
stores opened from disk (the store is chunked along ``neuroid`` only, so every chunk holds
all presentations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    import scipy.sparse as sp

from neuroalign._validation import check_option, format_list
from neuroalign.exceptions import DimensionError, SplitLeakageError
from neuroalign.store._join import index_stimuli
from neuroalign.store._quality import neuroid_labels, report_neuroids
from neuroalign.store._schema import (
    ALLOW_SPLIT_OVERLAP,
    CHUNK_BYTES,
    NEUROID_DIM,
    RESPONSE_VAR,
    ROI_PREFIX,
    SPLITS,
    STIMULUS_DIM,
    TRIAL_DIM,
    check_store,
    sample_dim,
)

__all__ = [
    "average_repetitions",
    "select_roi",
    "roi_names",
    "select_split",
    "zscore",
    "stimulus_codes",
    "apply_along",
]


def stimulus_codes(ids) -> tuple[np.ndarray, np.ndarray]:
    """Unique stimulus ids in order of first appearance, and each row's code into them."""
    ids = np.asarray(ids)
    uniq, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[inverse.ravel()]


def apply_along(
    da: xr.DataArray,
    func: Callable[[np.ndarray], np.ndarray],
    dim: str,
    new_dim: str,
    new_size: int,
    dtype=None,
) -> xr.DataArray:
    """Apply ``func`` to arrays shaped ``(..., dim)`` -> ``(..., new_dim)``, dask-aware.

    The result keeps ``da``'s dim order with ``dim`` replaced by ``new_dim``; its dtype is
    ``dtype`` (default: ``da``'s float dtype, at least float32). Values still on disk are
    worked on block by block (:func:`on_disk_blocks`); the result is then lazy (dask).
    """
    if dtype is None:
        dtype = np.result_type(da.dtype, np.float32)
    da = on_disk_blocks(da, dim)
    out = xr.apply_ufunc(
        func,
        da,
        input_core_dims=[[dim]],
        output_core_dims=[[new_dim]],
        exclude_dims={dim} if dim == new_dim else set(),
        dask="parallelized",
        output_dtypes=[dtype],
        dask_gufunc_kwargs={"output_sizes": {new_dim: new_size}},
        keep_attrs=True,
    )
    order = [new_dim if d == dim else d for d in da.dims]
    return out.transpose(*order)


def on_disk_blocks(da: xr.DataArray, dim: str) -> xr.DataArray:
    """``da`` as dask blocks along ``neuroid`` when its values are still on disk.

    A store opened with :func:`~neuroalign.store.open_store` (no ``chunks``) is lazily
    indexed: a computation over all of it would read it whole into memory. Its blocks
    span whole store chunks along ``neuroid`` and hold all of ``dim``, about
    :data:`~neuroalign.store._schema.CHUNK_BYTES` each (at most
    :data:`~neuroalign.store._join.READ_CONCURRENCY` store chunks, as every read of a
    store does), so an operation over ``dim`` runs block by block and its result stays
    lazy. Arrays in memory or already in dask are returned as they are.
    """
    from neuroalign.store._join import READ_CONCURRENCY

    if da.chunks is not None or da.variable._in_memory:
        return da
    along = NEUROID_DIM if NEUROID_DIM in da.dims and dim != NEUROID_DIM else next(
        (d for d in da.dims if d != dim), None)
    if along is None or da.sizes[along] == 0:
        return da
    per = max(1, da.dtype.itemsize * (da.size // da.sizes[along]))  # bytes per neuroid
    size = max(1, CHUNK_BYTES // per)
    disk = (da.encoding.get("preferred_chunks") or {}).get(along)
    if disk:  # whole store chunks, and no more of them than a bounded read holds
        size = min(max(disk, size // disk * disk), READ_CONCURRENCY * disk)
    return da.chunk({along: min(size, da.sizes[along])})


def _group_matrix(codes: np.ndarray, n_groups: int, *, mean: bool) -> sp.csr_matrix:
    import scipy.sparse as sp  # here, not at import: scipy.sparse is slow to import

    n = len(codes)
    m = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_groups, n))
    if mean:
        counts = np.asarray(m.sum(axis=1)).ravel()
        m = sp.diags(1.0 / counts) @ m
    return m.tocsr()


#: Values of a block averaged at once by :func:`_mean_func` (gathered: 16 MiB of float32).
_MEAN_BLOCK = 2**22
#: Up to this many presentations of a stimulus are sorted by a network of compare-swaps
#: (elementwise minimum and maximum over all neuroids at once); more, by ``np.sort``.
_NETWORK_MAX = 12


def _sorted_columns(slab: np.ndarray) -> list[np.ndarray]:
    """The ``c`` values of each entry ``slab[i, :, k]`` of a ``(n, c, m)`` slab in
    ascending order, as ``c`` arrays ``(n, m)`` (the slab is overwritten: a private copy).
    Two values need no sorting (``a + b == b + a``); NaN anywhere makes the sum NaN either
    way."""
    c = slab.shape[1]
    if c > _NETWORK_MAX:
        slab.sort(axis=1)
        return [slab[:, j] for j in range(c)]
    cols = [slab[:, j] for j in range(c)]
    if c <= 2:
        return cols
    for i in range(c - 1):  # bubble network: after pass i, the last i + 1 are in place
        for j in range(c - 1 - i):
            lo = np.minimum(cols[j], cols[j + 1])
            np.maximum(cols[j], cols[j + 1], out=cols[j + 1])
            cols[j] = lo
    return cols


def _mean_func(codes: np.ndarray, n_groups: int) -> Callable[[np.ndarray], np.ndarray]:
    """``x (..., presentations) -> (..., stimuli)``: the mean of each stimulus's
    presentations, the same to the last bit in any order of the presentations.

    Each stimulus's values are sorted, summed in float64 from the smallest to the largest
    and divided by their count; the result is rounded once to the output dtype (float32
    for float32 data). The sum then depends on the values alone, never on their order
    nor on how the neuroids are chunked. The presentations are gathered once per block of
    at most :data:`_MEAN_BLOCK` values, grouped by the number of presentations of their
    stimulus.
    """
    counts = np.bincount(codes, minlength=n_groups)
    perm = np.lexsort((codes, counts[codes]))  # by count, then by stimulus
    groups = [(int(c), np.flatnonzero(counts == c)) for c in np.unique(counts)]

    def func(x: np.ndarray) -> np.ndarray:
        dtype = np.result_type(x.dtype, np.float32)
        lead = x.shape[:-1]
        # (presentations, values): a store's own layout (apply_along hands over a
        # transposed view of its (presentation, neuroid[, time]) blocks)
        rows = x.reshape(int(np.prod(lead, dtype=np.int64)), x.shape[-1]).T
        out = np.empty((n_groups, rows.shape[1]), dtype=dtype)
        step = max(1, _MEAN_BLOCK // max(1, rows.shape[0]))
        for a in range(0, rows.shape[1], step):
            part = rows[perm, a : a + step]  # a private copy, grouped
            at = 0
            for c, stim in groups:
                slab = part[at : at + stim.size * c].reshape(stim.size, c, part.shape[1])
                at += stim.size * c
                # sorted in the data's dtype (float64 keeps that order), summed in float64
                cols = _sorted_columns(slab)
                total = (np.add(cols[0], cols[1], dtype=np.float64) if c > 1
                         else cols[0].astype(np.float64))
                for col in cols[2:]:  # one after another, elementwise: a fixed order
                    np.add(total, col, out=total)
                total /= c
                out[stim, a : a + step] = total
        return out.T.reshape(*lead, n_groups)

    return func


def average_repetitions(ds: xr.Dataset) -> xr.Dataset:
    """Average all presentations of each stimulus: one row per ``stimulus_id``.

    Parameters
    ----------
    ds : xr.Dataset
        A trial-level store (dim ``presentation``).

    Returns
    -------
    xr.Dataset
        The same store with dim ``stimulus`` in place of ``presentation``, stimuli in order of
        first appearance, ``stimulus_id`` as an xarray index (``.sel(stimulus_id=...)``)
        and the coordinate ``n_repetitions``. Presentation coordinates
        that are constant within every stimulus (``split``, source ids) are carried over;
        per-trial ones (``repetition``, ``session``, ``trial``, ``run``) are dropped.

    Notes
    -----
    The average is the plain mean over a stimulus's presentations: a NaN in any of them
    makes that stimulus's average NaN for that neuroid (other stimuli and neuroids are
    unaffected). To leave a dropped trial out, drop its presentation first
    (``ds.isel(presentation=...)``); ``n_repetitions`` then counts what was averaged.
    The result does not depend on the order of the presentations, to the last bit: each
    stimulus's values are summed in float64 in sorted order, divided by their count and
    rounded once to the store's dtype (float32 stays float32). A store without
    presentations gives a store without stimuli.

    Raises
    ------
    SplitLeakageError
        The store allows a stimulus in both splits (attribute ``allow_split_overlap``):
        average each split separately (``ds.na.split("test").na.average_repetitions()``).
    """
    check_store(ds)
    if sample_dim(ds) != TRIAL_DIM:
        raise DimensionError(
            "average_repetitions() needs a trial-level store (dim 'presentation'); "
            "this store is already averaged (dim 'stimulus')."
        )
    uniq, codes = stimulus_codes(ds.coords["stimulus_id"].values)
    n = len(uniq)
    mean = _mean_func(codes, n)
    counts = np.bincount(codes, minlength=n)
    first = np.unique(codes, return_index=True)[1]  # first presentation of each stimulus

    data_vars = {}
    for name, var in ds.data_vars.items():
        if TRIAL_DIM in var.dims:
            if var.dtype.kind != "f":
                continue
            data_vars[name] = apply_along(var, mean, TRIAL_DIM, STIMULUS_DIM, n)
        else:
            data_vars[name] = var
    coords: dict[str, tuple] = {
        "stimulus_id": (STIMULUS_DIM, uniq),
        "n_repetitions": (STIMULUS_DIM, counts.astype(np.int64)),
    }
    per_trial = {"stimulus_id", "repetition", "session", "run", "trial"}
    for name, coord in ds.coords.items():
        if coord.dims != (TRIAL_DIM,) or name in per_trial:
            continue
        values = np.asarray(coord.values)
        picked = values[first]
        if np.array_equal(picked[codes], values):
            coords[str(name)] = (STIMULUS_DIM, picked)
        elif name == "split":  # only reachable when the store allows split overlap
            bad = uniq[np.unique(codes[picked[codes] != values])]
            raise SplitLeakageError(
                f"Stimuli appear in both splits: {format_list(bad, limit=5)}, and the store "
                f"allows it ({ALLOW_SPLIT_OVERLAP}=True); an averaged store holds one split "
                "per stimulus. Average each split on its own: "
                "ds.na.split('test').na.average_repetitions()."
            )
    out = xr.Dataset(data_vars, attrs=dict(ds.attrs))
    out = out.drop_vars([c for c in out.coords if TRIAL_DIM in out[c].dims], errors="ignore")
    out = out.assign_coords(coords)
    for name, coord in ds.coords.items():
        if TRIAL_DIM not in coord.dims and name not in out.coords:
            out = out.assign_coords({name: coord})
    return index_stimuli(out)


def roi_names(ds: xr.Dataset | xr.DataArray) -> list[str]:
    """Names of the ROIs of a store.

    Parameters
    ----------
    ds : xr.Dataset or xr.DataArray
        A store, or anything with ``roi_*`` coordinates.

    Returns
    -------
    list of str
        Its ``roi_*`` coordinates without the prefix.
    """
    return [str(c)[len(ROI_PREFIX):] for c in ds.coords if str(c).startswith(ROI_PREFIX)]


def select_roi(ds: xr.Dataset, name: str | list[str]) -> xr.Dataset:
    """Neuroids of an ROI.

    Parameters
    ----------
    ds : xr.Dataset
        A store.
    name : str or list of str
        ``"V1v"`` or ``"roi_V1v"``; a list selects the union.

    Returns
    -------
    xr.Dataset
        The store restricted to those neuroids.

    Raises
    ------
    KeyError
        An unknown ROI (the message lists the store's ROIs).
    """
    names = [name] if isinstance(name, str) else list(name)
    available = roi_names(ds)
    mask = np.zeros(ds.sizes[NEUROID_DIM], dtype=bool)
    for n in names:
        key = n[len(ROI_PREFIX):] if n.startswith(ROI_PREFIX) else n
        if key not in available:
            raise KeyError(
                f"Unknown ROI {n!r}. ROIs of this store: {format_list(available) or 'none'}."
            )
        mask |= np.asarray(ds.coords[ROI_PREFIX + key].values, dtype=bool)
    return ds.isel({NEUROID_DIM: np.flatnonzero(mask)})


def select_split(ds: xr.Dataset, split: str) -> xr.Dataset:
    """Presentations (or stimuli) of split ``"train"`` or ``"test"``.

    The store passes :func:`~neuroalign.store.check_store` first, so a stimulus with
    presentations in both splits raises :class:`~neuroalign.exceptions.SplitLeakageError`
    unless the store allows it (attribute ``allow_split_overlap``).

    Parameters
    ----------
    ds : xr.Dataset
        A store.
    split : {"train", "test"}
        The split.

    Returns
    -------
    xr.Dataset
        The store restricted to that split's presentations (or stimuli).

    Raises
    ------
    ValueError
        ``split`` is not ``"train"`` or ``"test"``, or the store has no presentations
        (stimuli) in it: the message says which splits the store holds, and how many
        rows each.
    """
    check_option(split, SPLITS, name="split", func="split")
    check_store(ds)
    dim = sample_dim(ds)
    labels = np.asarray(ds.coords["split"].values)
    rows = np.flatnonzero(labels == split)
    if rows.size == 0:
        what = "presentations" if dim == TRIAL_DIM else "stimuli"
        found, n = np.unique(labels, return_counts=True)
        held = ", ".join(f"{str(s)!r} ({int(k)} {what})" for s, k in zip(found, n, strict=True))
        raise ValueError(
            f"Invalid value for 'split' in split(): {split!r}. The store has no {what} in "
            f"split {split!r}; its 'split' coordinate holds {held or f'no {what}'}. Give "
            f"some {what} that split (e.g. from_arrays(..., test=[...])), or use the store "
            "whole."
        )
    return ds.isel({dim: rows})


def check_by(ds: xr.Dataset, by: str | None, *, func: str, dim: str,
             optional: str | None = None) -> str | None:
    """``by`` checked as a grouping of the rows of ``dim``: a coordinate on ``dim`` alone.

    The one check of every ``by=`` that groups presentations (z-scoring, ncsnr): a
    coordinate on ``neuroid`` (or on both dims) would otherwise be read as labels of the
    presentations. ``by=None`` passes; ``by == optional`` (ncsnr's default ``"session"``)
    becomes ``None`` when the store has no such coordinate.

    Raises
    ------
    KeyError
        ``by`` is not a coordinate on ``dim`` alone; the message says where it is, if
        anywhere, and lists the coordinates on ``dim``.
    """
    if by is None:
        return None
    if by not in ds.coords:
        if by == optional:
            return None
        found = ""
    elif ds.coords[by].dims == (dim,):
        return by
    else:
        found = f" (it is on dims {ds.coords[by].dims!r})"
    present = sorted(str(c) for c in ds.coords if ds.coords[c].dims == (dim,))
    rows = "presentations" if dim == TRIAL_DIM else "stimuli"
    raise KeyError(
        f"{func}(by={by!r}): the store has no coordinate {by!r} on dim {dim!r}{found}. "
        f"Coordinates on {dim!r}: {format_list(present) or 'none'}. Use by=None to z-score "
        f"over all {rows}."
    )


def _zscore_func(codes: np.ndarray, n_groups: int, ddof: int) -> Callable[[np.ndarray], np.ndarray]:
    members = [np.flatnonzero(codes == g) for g in range(n_groups)]

    def func(x: np.ndarray) -> np.ndarray:
        dtype = np.result_type(x.dtype, np.float32)
        out = np.empty(x.shape, dtype=dtype)
        for idx in members:
            # take() gives C order whatever the layout of x: x[..., mask] gave a column-major
            # block of two neuroids or more, whose sums numpy takes in another order than a
            # lone neuroid's (the z-scores then changed in the last bit with the chunking)
            block = x.take(idx, axis=-1).astype(np.float64, copy=False)
            finite = np.isfinite(block)
            n = finite.sum(axis=-1, keepdims=True)
            vals = np.where(finite, block, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mu = vals.sum(axis=-1, keepdims=True) / n
                dev = np.where(finite, block - mu, 0.0)
                sd = np.sqrt((dev**2).sum(axis=-1, keepdims=True) / (n - ddof))
                hi = np.where(finite, block, -np.inf).max(axis=-1, keepdims=True)
                lo = np.where(finite, block, np.inf).min(axis=-1, keepdims=True)
                ok = ~np.isinf(block).any(axis=-1, keepdims=True) & (n > ddof) & (hi > lo)
                out[..., idx] = np.where(ok & finite, dev / np.where(ok, sd, 1.0), np.nan)
        return out

    return func


def zscore(
    ds: xr.Dataset, by: str | None = "session", *, ddof: int = 0, strict: bool = False
) -> xr.Dataset:
    """Z-score each neuroid over presentations, separately within each ``by`` group.

    NSD's convention is ``by="session"``: betas are z-scored per voxel within each
    session before averaging or reliability estimates. ``by=None`` z-scores over all
    presentations.

    Parameters
    ----------
    ds : xr.Dataset
        A store (trial-level or averaged).
    by : str or None
        Grouping coordinate on the sample dim.
    ddof : {0, 1}
        Delta degrees of freedom of the standard deviation. The default ``0`` (population
        sd) is :func:`scipy.stats.zscore`'s convention; NSD's ``calczscore`` (and
        :func:`~neuroalign.store.ncsnr`) use ``1`` (sample sd, ``N - 1``).
    strict : bool
        Raise :class:`~neuroalign.exceptions.DataFormatError` instead of warning about
        unusable neuroids.

    Returns
    -------
    xr.Dataset
        The store with ``responses`` z-scored (the input is not modified).

    Notes
    -----
    Missing values (NaN) are left out of the mean and sd of their group and stay NaN
    (scipy's ``nan_policy="omit"``). A neuroid that is constant within a group, has an
    infinite value in it, or has no more than ``ddof`` finite values there is NaN in that
    whole group (scipy also gives NaN for a constant column, never 0), with a
    :class:`~neuroalign.exceptions.DataQualityWarning` naming those neuroids. The store
    must be in memory or dask-backed; a dask-backed store is read once for that check.
    """
    check_store(ds)
    ddof = check_option(ddof, (0, 1), name="ddof", func="zscore")
    dim = sample_dim(ds)
    by = check_by(ds, by, func="zscore", dim=dim)
    if by is None:
        codes = np.zeros(ds.sizes[dim], dtype=int)
    else:
        _, codes = stimulus_codes(ds.coords[by].values)
    n_groups = int(codes.max()) + 1 if codes.size else 0
    resp = ds[RESPONSE_VAR]
    z = apply_along(resp, _zscore_func(codes, n_groups, ddof), dim, dim, ds.sizes[dim])
    made_nan = (z.isnull() & resp.notnull()).any(dim)
    bad = np.asarray(made_nan.values)
    if bad.any():
        report_neuroids(
            "zscore()",
            neuroid_labels(ds, ds.sizes[NEUROID_DIM]),
            {f"constant, infinite or (nearly) all NaN within a {by or 'store'} group": bad},
            outcome="They are NaN in those groups",
            strict=strict,
        )
    return ds.assign({RESPONSE_VAR: z.assign_coords(resp.coords)})
