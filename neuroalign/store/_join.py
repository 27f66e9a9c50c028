"""The one join of features and responses: on ``stimulus_id``, never by row position.

Features (:func:`neuroalign.features.extract`) and averaged stores
(:func:`~neuroalign.store.average_repetitions`) carry ``stimulus_id`` as an xarray index
on their ``stimulus`` dim, so ``features.sel(stimulus_id=[...])`` works. Every stage that
meets features and responses goes through :func:`join_features`; the lower-level
:func:`match_stimuli` is the one place where ids are matched.

Rules (the same everywhere):

- the order of the rows of either side never matters;
- the features may describe more stimuli than the responses hold (a features table
  describes a whole stimulus set, so ``fit(features, store.na.split("train"))`` works);
- a response whose stimulus has no features, or a stimulus id that appears twice in the
  features, raises :class:`~neuroalign.exceptions.StimulusMismatchError` naming them;
- a split is taken by name (``split="train"``), from the store's ``split`` coordinate.

Inputs without the index (your own Datasets with a plain ``stimulus_id`` coordinate)
are accepted: the join indexes them itself.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from neuroalign._validation import format_list
from neuroalign.exceptions import DimensionError, StimulusMismatchError
from neuroalign.store._schema import CHUNK_BYTES

__all__ = ["Joined", "LazyResponses", "join_features", "match_stimuli", "index_stimuli", "stimulus_ids"]

STIMULUS_ID = "stimulus_id"


def index_stimuli(obj):
    """``obj`` with ``stimulus_id`` as an xarray index on its dim (a no-op when it is one).

    Applies to Datasets and DataArrays whose ``stimulus_id`` coordinate lies on one dim
    (``stimulus`` for features and averaged stores; a trial-level store's ``presentation``
    is left alone: its ids repeat). Other objects are returned unchanged.
    """
    if not isinstance(obj, xr.Dataset | xr.DataArray) or STIMULUS_ID not in obj.coords:
        return obj
    coord = obj.coords[STIMULUS_ID]
    if coord.ndim != 1 or coord.dims[0] == "presentation" or STIMULUS_ID in obj.xindexes:
        return obj
    return obj.set_xindex(STIMULUS_ID)


def stimulus_ids(obj, *, name: str, func: str) -> tuple[np.ndarray, str]:
    """The ``stimulus_id`` values of ``obj`` (as str) and the dim they lie on."""
    if STIMULUS_ID not in obj.coords:
        raise DimensionError(
            f"{func}(): the {name} have no 'stimulus_id' coordinate; coordinates present: "
            f"{format_list(sorted(map(str, obj.coords))) or 'none'}. Expected one stimulus id "
            "per row (features and stores are joined on it)."
        )
    coord = obj.coords[STIMULUS_ID]
    if coord.ndim != 1:
        raise DimensionError(
            f"{func}(): the {name}' 'stimulus_id' coordinate has dims {coord.dims!r}; expected "
            "one dim (the rows)."
        )
    return np.asarray(coord.values).astype(str), str(coord.dims[0])


def match_stimuli(
    have,
    want,
    *,
    have_name: str = "the features",
    want_name: str = "the responses",
    func: str,
    exact: bool = False,
) -> np.ndarray:
    """Row of ``have`` for each stimulus id in ``want`` (positions, in ``want``'s order).

    Parameters
    ----------
    have : array-like of str
        Stimulus ids of the table looked up (the features): one row per stimulus.
    want : array-like of str
        Stimulus ids of the rows to fill (the responses); may repeat (trial-level stores).
    have_name, want_name : str
        How the two sides are named in messages (``"the features"``, ``"'Y'"``).
    func : str
        The public function, for messages.
    exact : bool
        False (the join's rule): ``have`` may hold more stimuli than ``want``. True (two
        representations compared stimulus by stimulus, e.g. CKA): both must hold the same
        set of stimuli, each once.

    Raises
    ------
    StimulusMismatchError
        A duplicated id in ``have`` (or in ``want`` when ``exact``), an id of ``want`` that
        ``have`` lacks, or (``exact``) an id of ``have`` that ``want`` lacks; the message
        counts and names them.
    """
    import pandas as pd

    have = np.asarray(have).astype(str)
    want = np.asarray(want).astype(str)
    for ids, label in ((have, have_name), (want, want_name)) if exact else ((have, have_name),):
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise StimulusMismatchError(
                f"{func}(): {label} hold repeated stimulus_id values: "
                f"{format_list(uniq[counts > 1], limit=5)}. Expected one row per stimulus"
                + (" (average repetitions first)." if exact else ".")
            )
    index = pd.Index(have)
    pos = index.get_indexer(want)
    missing = np.unique(want[pos < 0])
    extra = np.setdiff1d(have, want) if exact else np.array([], dtype=str)
    if missing.size or extra.size:
        parts = []
        if missing.size:
            parts.append(f"{missing.size} stimuli of {want_name} are missing from {have_name}: "
                         f"{format_list(missing, limit=5)}")
        if extra.size:
            parts.append(f"{extra.size} stimuli of {have_name} are not in {want_name}: "
                         f"{format_list(extra, limit=5)}")
        hint = ("Expected the same stimuli on both sides (in any order)." if exact else
                "Expected features for every stimulus of the responses (extra feature rows "
                "are fine).")
        raise StimulusMismatchError(f"{func}(): joined on stimulus_id, " + "; ".join(parts)
                                    + ". " + hint)
    return pos.astype(np.int64)


@dataclass(frozen=True)
class Joined:
    """Features and responses as plain arrays, aligned row by row, with their labels.

    Attributes
    ----------
    features : dict {layer: ndarray}
        Each layer's features, one row per response row (a trial-level store repeats a
        stimulus's features for each presentation); trailing dims as in the features
        (``(rows, units)``, or ``(rows, tokens, units)`` for token-level features).
    responses : ndarray or None
        ``(rows, neuroids)`` or ``(rows, neuroids, times)``; None when joined without a
        store.
    stimulus_id : ndarray of str
        The stimulus of each row.
    neuroids : DataArray or None
        A template on ``neuroid`` carrying the store's neuroid coordinates.
    sample_dim : str
        The store's row dim (``"presentation"`` or ``"stimulus"``).
    times : ndarray or None
        The store's ``time`` coordinate (time-resolved stores).
    split : ndarray of str or None
        The ``split`` label of each row (None when the store has no ``split`` coordinate).
    layer_attrs : dict {layer: dict}
        The attributes of each layer's features.
    """

    features: dict[str, np.ndarray]
    responses: np.ndarray | None
    stimulus_id: np.ndarray
    neuroids: xr.DataArray | None
    sample_dim: str
    times: np.ndarray | None = None
    split: np.ndarray | None = None
    layer_attrs: dict[str, dict] = field(default_factory=dict)

    def matrix(self, layer: str | None = None) -> np.ndarray:
        """One layer's features as a 2-D ``(rows, units)`` array, or with ``layer=None``
        every layer side by side (in the order of the features' variables)."""
        names = list(self.features) if layer is None else [layer]
        mats = [m.reshape(m.shape[0], -1) for m in (self.features[n] for n in names)]
        return mats[0] if len(mats) == 1 else np.concatenate(mats, axis=1)


def _layers(features, layers, *, func: str) -> dict[str, xr.DataArray]:
    if isinstance(features, xr.DataArray):
        return {str(features.name) if features.name is not None else "features": features}
    if not isinstance(features, xr.Dataset):
        raise TypeError(
            f"{func}(): features must be an xr.Dataset (one variable per layer) or an "
            f"xr.DataArray with a 'stimulus_id' coordinate; got {type(features).__name__!r}."
        )
    names = [str(v) for v in features.data_vars] if layers is None else [str(v) for v in layers]
    if not names:
        raise DimensionError(f"{func}(): the features Dataset holds no variables (layers).")
    unknown = [n for n in names if n not in features.data_vars]
    if unknown:
        raise KeyError(
            f"Invalid value for 'layers' in {func}(): {format_list(unknown)}. The features hold "
            f"{format_list(list(features.data_vars))}."
        )
    return {n: features[n] for n in names}


def _responses(store, *, func: str) -> xr.DataArray:
    if isinstance(store, xr.Dataset):
        if "responses" not in store.data_vars:
            raise DimensionError(
                f"{func}(): the store has no variable 'responses'; variables present: "
                f"{format_list(sorted(map(str, store.data_vars))) or 'none'}."
            )
        resp = store["responses"]
    elif isinstance(store, xr.DataArray):
        resp = store
    else:
        raise TypeError(
            f"{func}(): expected a store (xr.Dataset with 'responses') or a responses "
            f"DataArray; got {type(store).__name__!r}."
        )
    if "neuroid" not in resp.dims:
        raise DimensionError(
            f"{func}(): the responses have dims {resp.dims!r}; expected a 'neuroid' dim."
        )
    return resp


def join_features(features, store, *, split: str | None = None, layers=None,
                  lazy: bool = False, func: str = "join_features") -> Joined:
    """Align features with a store's responses, row by row, joined on ``stimulus_id``.

    Parameters
    ----------
    features : xr.Dataset or xr.DataArray
        A features Dataset (one variable per layer, rows on the dim of its
        ``stimulus_id`` coordinate) or one layer as a DataArray. It may hold more stimuli
        than the store, in any order; each stimulus once.
    store : xr.Dataset or xr.DataArray
        A store (variable ``responses``; trial-level or averaged, with or without a
        ``time`` dim) or a responses DataArray with a ``neuroid`` dim and a
        ``stimulus_id`` coordinate on its row dim.
    split : str, optional
        Only the store's rows of this split (its ``split`` coordinate), e.g. ``"train"``.
    layers : list of str, optional
        Variables of a features Dataset to join (default: all).
    lazy : bool
        Leave 2-D responses on disk: ``responses`` is then a :class:`LazyResponses`, read a
        block of neuroids at a time (for fits in cells over stores larger than memory, e.g.
        ``RidgeEncoder.fit(..., result_path=...)``). Default: read them into memory.
    func : str
        The calling function, named in error messages.

    Returns
    -------
    Joined
        ``features`` (per layer), ``responses``, ``stimulus_id``, ``neuroids`` (the
        neuroid coordinates), ``sample_dim`` and ``times``, with one row per row of the
        store (per presentation for a trial-level store, per stimulus for an averaged
        one), in the store's order.

    Raises
    ------
    StimulusMismatchError
        A stimulus of the store has no features, or the features hold a stimulus twice;
        the message names them.
    DimensionError
        A side has no ``stimulus_id`` coordinate, or the store no ``neuroid`` dim.
    ValueError
        ``split`` names no rows of the store.

    Examples
    --------
    >>> joined = join_features(features, store, split="train")   # doctest: +SKIP
    >>> X, Y = joined.matrix("layer4"), joined.responses          # doctest: +SKIP
    """
    table = _layers(features, layers, func=func)
    resp = _responses(store, func=func)
    ids, sdim = stimulus_ids(resp, name="responses", func=func)
    if split is not None:
        if "split" not in resp.coords or resp.coords["split"].dims != (sdim,):
            raise ValueError(
                f"Invalid value for 'split' in {func}(): {split!r} needs a store with a 'split' "
                f"coordinate on {sdim!r}; coordinates present: "
                f"{format_list(sorted(map(str, resp.coords)))}."
            )
        labels = np.asarray(resp.coords["split"].values).astype(str)
        rows = np.flatnonzero(labels == str(split))
        if rows.size == 0:
            raise ValueError(
                f"Invalid value for 'split' in {func}(): {split!r}. The store's splits are "
                f"{format_list(sorted(set(labels.tolist())))}."
            )
        resp = resp.isel({sdim: rows})
        ids = ids[rows]
    other = [d for d in resp.dims if d not in (sdim, "neuroid", "time")]
    if other:
        raise DimensionError(
            f"{func}(): the responses have dims {resp.dims!r}; expected ({sdim!r}, 'neuroid'"
            "[, 'time'])."
        )
    order = [sdim, "neuroid"] + (["time"] if "time" in resp.dims else [])
    resp = resp.transpose(*order)
    want = "the store" if isinstance(store, xr.Dataset) else "the responses"
    out: dict[str, np.ndarray] = {}
    attrs: dict[str, dict] = {}
    positions: dict[tuple, np.ndarray] = {}
    for name, da in table.items():
        fids, fdim = stimulus_ids(da, name="features", func=func)
        da = da.transpose(fdim, ...)
        key = (fids.dtype.str, fids.tobytes())  # layers of one Dataset share their ids
        pos = positions.get(key)
        if pos is None:
            pos = positions[key] = match_stimuli(fids, ids, have_name="the features",
                                                 want_name=want, func=func)
        out[name] = np.asarray(da.values)[pos]
        attrs[name] = dict(da.attrs)
    neuroid_coords = {k: v for k, v in resp.coords.items() if v.dims == ("neuroid",)}
    template = xr.DataArray(np.zeros(resp.sizes["neuroid"]), dims="neuroid", coords=neuroid_coords)
    times = np.asarray(resp["time"].values) if "time" in resp.dims and "time" in resp.coords else None
    labels = (np.asarray(resp.coords["split"].values).astype(str)
              if "split" in resp.coords and resp.coords["split"].dims == (sdim,) else None)
    values = LazyResponses(resp) if lazy and resp.ndim == 2 else np.asarray(resp.values)
    return Joined(out, values, ids, template, sdim, times, labels, attrs)


#: Chunks a read of responses from disk asks zarr for at once. zarr holds each chunk in
#: flight twice (its file bytes and its decoded values), so its default of 10 held 0.6 GiB
#: beside a 0.5 GiB batch of whole-brain neuroids; 4 read a 3.9 GB store from a cold disk
#: as fast (2.3 s; 3.1 s with 2, 4.1-4.3 s a chunk at a time).
READ_CONCURRENCY = 4


@contextmanager
def bounded_reads():
    """zarr's ``async.concurrency`` at most :data:`READ_CONCURRENCY` inside the block (a
    lower setting of the user's is kept), as it was afterwards."""
    import zarr

    now = zarr.config.get("async.concurrency")
    if now is not None and int(now) <= READ_CONCURRENCY:
        yield
        return
    with zarr.config.set({"async.concurrency": READ_CONCURRENCY}):
        yield


class LazyResponses:
    """2-D responses ``(rows, neuroids)`` left on disk, read a block of neuroids at a time.

    What :func:`join_features` returns with ``lazy=True``, for fits whose responses do not
    fit in memory (a whole-brain store opened with :func:`~neuroalign.store.open_store`
    reads only what is indexed). Indexing is numpy's (see :meth:`__getitem__`); column
    selections stay lazy (``Y[:, mask]``, ``Y[:, [2, 0, 1]]``, ``Y[:, a:b]``), anything
    else reads: ``np.asarray(Y)``, a row ``Y[i, cols]``, a column ``Y[:, j]``.

    Parameters
    ----------
    data : xr.DataArray
        2-D responses ``(rows, neuroids)``, lazily indexed (as :func:`open_store` gives them).
    columns : ndarray of int, optional
        The neuroids (positions along ``data``'s second dim) this view holds; default all.

    Examples
    --------
    >>> Y = join_features(features, open_store(path), lazy=True).responses  # doctest: +SKIP
    >>> block = np.asarray(Y[:, :1000])                                     # doctest: +SKIP
    """

    def __init__(self, data: xr.DataArray, columns: np.ndarray | None = None) -> None:
        self._data = data
        self._columns = np.arange(data.shape[1]) if columns is None else np.asarray(columns)
        self.shape = (int(data.shape[0]), int(self._columns.size))
        self.dtype = data.dtype
        self.ndim = 2

    def _read(self, columns: np.ndarray) -> np.ndarray:
        if columns.size and np.all(np.diff(columns) == 1):  # one contiguous range
            sel: slice | np.ndarray = slice(int(columns[0]), int(columns[-1]) + 1)
        else:
            sel = columns
        with bounded_reads():
            return np.asarray(self._data.isel({self._data.dims[1]: sel}).values)

    def chunk_columns(self) -> int:
        """Neuroids in a store chunk's bytes of these responses
        (:func:`~neuroalign.store.save_store` writes chunks of that size).

        Returns
        -------
        int
            The number of neuroids, at least 1.
        """
        return max(1, CHUNK_BYTES // max(1, self.dtype.itemsize * self.shape[0]))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self._read(self._columns)
        return out if dtype is None else out.astype(dtype, copy=False)

    def _positions(self, key, axis: int) -> np.ndarray:
        """Positions picked by ``key`` along ``axis`` (0: rows, 1: columns), as numpy picks
        them from an array of that length (same shape, same errors, named)."""
        try:
            return np.asarray(np.arange(self.shape[axis])[key])
        except IndexError as err:
            raise IndexError(
                f"{('rows', 'columns')[axis]} of LazyResponses {self.shape[0]} x "
                f"{self.shape[1]}: {err} (key {key!r})."
            ) from None

    def __getitem__(self, key):
        """Index as numpy indexes a 2-D array: ``Y[rows]`` or ``Y[rows, columns]`` with
        ints, slices, lists or arrays of ints (negative ones count from the end) or bools,
        and ``...``. ``Y[:, columns]`` with a slice or a 1-D selection stays on disk (a
        :class:`LazyResponses`); anything else is read and returned as an ndarray.

        Raises
        ------
        IndexError
            What numpy refuses (out-of-bounds positions, a boolean mask of another
            length, non-integer positions), more than two indices, or ``None``
            (``np.newaxis``); the message names the axis and the key.
        """
        key = key if isinstance(key, tuple) else (key,)
        if any(k is None for k in key):
            raise IndexError(
                f"LazyResponses[{key!r}]: None (np.newaxis) is not supported; index the "
                "array read (np.asarray(Y)) instead."
            )
        dots = [i for i, k in enumerate(key) if k is Ellipsis]
        if len(dots) > 1:
            raise IndexError(f"LazyResponses[{key!r}]: an index can only have one ellipsis.")
        if dots:
            at = dots[0]
            fill = (slice(None),) * max(0, 2 - (len(key) - 1))
            key = key[:at] + fill + key[at + 1:]
        if len(key) > 2:
            raise IndexError(
                f"LazyResponses[...]: too many indices: {len(key)}; the responses are 2-D "
                f"({self.shape[0]} rows x {self.shape[1]} columns)."
            )
        rows, cols = (*key, slice(None))[:2]
        all_rows = isinstance(rows, slice) and rows == slice(None)
        # refused before anything is read
        at_rows = None if isinstance(rows, slice) else self._positions(rows, 0)
        if isinstance(cols, slice):
            picked = self._columns[cols]
            return LazyResponses(self._data, picked) if all_rows else self._read(picked)[rows]
        pos = self._positions(cols, 1)
        if at_rows is not None and at_rows.ndim and pos.ndim:
            try:
                np.broadcast_shapes(at_rows.shape, pos.shape)
            except ValueError:
                raise IndexError(
                    f"LazyResponses[{rows!r}, {cols!r}]: the row and column selections "
                    f"have shapes {at_rows.shape} and {pos.shape}, which do not broadcast "
                    "together (numpy pairs them element by element)."
                ) from None
        if all_rows and pos.ndim == 1:
            return LazyResponses(self._data, self._columns[pos])
        # read each column once, then index the block as numpy would (rows and column
        # arrays broadcast together; an int column drops its axis)
        uniq, inverse = np.unique(pos, return_inverse=True)
        block = self._read(self._columns[uniq])
        return block[rows, inverse.reshape(pos.shape)]

    def blocks(self, size: int):
        """Yield ``(start, stop, block)`` over the columns, ``size`` neuroids at a time.

        The next block is read in a background thread while the caller works on this one
        (zarr's decoding and copies overlap the caller's work), so at most two blocks are
        held: the one yielded and the one being read. The generator keeps no reference to
        a block it has yielded. Close it (``contextlib.closing``) to stop early; the read in
        flight is then waited for.

        Parameters
        ----------
        size : int
            Neuroids per block.

        Yields
        ------
        tuple of (int, int, ndarray)
            The block's first and past-the-end column, and its values.
        """
        from concurrent.futures import ThreadPoolExecutor

        spans = [(a, min(a + size, self.shape[1])) for a in range(0, self.shape[1], size)]

        def read(span):
            return self._read(self._columns[span[0] : span[1]])

        if len(spans) < 2:
            for span in spans:
                yield *span, read(span)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="neuroalign-read") as pool:
            ahead = pool.submit(read, spans[0])
            for span, after in zip(spans, [*spans[1:], None], strict=True):
                box = [ahead.result()]  # the future keeps its result: dropped before yield
                ahead = pool.submit(read, after) if after is not None else None
                yield *span, box.pop()

    def __repr__(self) -> str:
        return f"<LazyResponses {self.shape[0]} x {self.shape[1]} {self.dtype} on disk>"
