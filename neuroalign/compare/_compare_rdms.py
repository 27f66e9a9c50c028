"""Comparison of RDMs (rsatoolbox ``rdm.compare`` conventions, vectorised over stacks).

All methods work on the upper triangles (``k=1``, scipy ``squareform`` order). Entries
that are NaN in any of the compared RDMs are left out of every comparison (as rsatoolbox
does; the bootstrap uses this for duplicated stimuli); fewer than 2 entries left raises.
The second-moment methods (``cosine_cov``, ``pearson_cov``, ``bures``) double-centre over
the pairs present, as rsatoolbox's covariance weighting does (see
:mod:`neuroalign.compare._second_moment`).

A comparison that is undefined raises: ``pearson`` (``spearman``) of an RDM whose
dissimilarities (ranks) are all equal, to rounding; ``cosine`` of an all-zero RDM; the
second-moment methods of an RDM whose ``G`` is zero. (rsatoolbox returns 0 there.)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._validation import check_option
from neuroalign.compare._inputs import align_stimuli, is_torch, to_numpy
from neuroalign.compare._ranks import (
    _ROWS_BLOCK,
    _ROWS_MAX,
    _rank_torch,
    _rows_parallel,
    _sort_row,
    _tau_a,
    rank_average,
)
from neuroalign.compare._rdm import RDM_DIMS, squareform_vector, vector_squareform
from neuroalign.compare._second_moment import second_moment_compare
from neuroalign.exceptions import DimensionError

__all__ = ["compare_rdms", "COMPARE_METHODS", "rank_average", "as_rdm_vectors"]

COMPARE_METHODS = (
    "cosine", "pearson", "spearman", "rho_a", "tau_a", "cosine_cov", "pearson_cov", "bures",
)

_RANK_CHUNK = 8  # RDMs ranked at a time (memory: 8 x n_pairs x 8 bytes)
_DIRECT_MAX = 4  # against at most this many RDMs, rows are ranked and dotted one by one

_SYMMETRY_RTOL = 1e-5  # asymmetry of a square RDM, relative to its largest entry


def _is_symmetric(arr: np.ndarray) -> bool:
    """Whether a square array equals its transpose up to rounding, in any units.

    The tolerance is relative to the array's largest finite entry (``_SYMMETRY_RTOL``),
    never absolute: an absolute one (``np.allclose``'s ``atol=1e-8``) took any array in
    units of 1e-9 for symmetric. NaN and infinite entries must mirror each other exactly.
    """
    t = arr.T
    finite = np.isfinite(arr) & np.isfinite(t)
    if not np.array_equal(arr[~finite], t[~finite], equal_nan=True):
        return False
    a = np.where(finite, arr, 0.0)
    scale = np.abs(a).max(initial=0.0)
    return bool((np.abs(a - a.T) <= _SYMMETRY_RTOL * scale).all())


def as_rdm_vectors(x: Any, *, name: str, func: str):
    """RDM(s) as a 2-D array of upper-triangle vectors ``(k, n_pairs)``.

    Accepts a square RDM ``(n, n)``, a stack ``(k, n, n)``, vectors ``(n_pairs,)`` or
    ``(k, n_pairs)``, and DataArrays with dims ``('stimulus_i', 'stimulus_j')`` plus any
    batch dims. Returns ``(vectors, batch_shape, batch_dims, batch_coords, stimulus_ids)``.

    A ``(k, k)`` array is one square RDM when it is symmetric (to rounding: differences
    up to ``1e-5`` times its largest entry, whatever the units, and NaN in mirrored
    places), otherwise ``k`` vectors of ``k`` pairs. An exactly symmetric stack of
    vectors cannot be told from a square RDM and is read as one.
    """
    if isinstance(x, xr.DataArray):
        if not set(RDM_DIMS) <= set(x.dims):
            raise DimensionError(
                f"Invalid value for {name!r} in {func}(): a DataArray with dims {x.dims!r}. "
                f"Expected an RDM with dims {RDM_DIMS!r} (from neuroalign.compare.rdm)."
            )
        batch_dims = tuple(d for d in x.dims if d not in RDM_DIMS)
        x = x.transpose(*batch_dims, *RDM_DIMS)
        ids = x.coords["stimulus_id_i"].values.astype(str) if "stimulus_id_i" in x.coords else None
        coords = {d: x.coords[d] for d in batch_dims if d in x.coords}
        arr = np.asarray(x.values, dtype=np.float64)
        batch_shape = arr.shape[:-2]
        n = arr.shape[-1]
        vec = squareform_vector(arr.reshape((-1, n, n)))
        return vec, batch_shape, batch_dims, coords, ids
    arr = np.asarray(to_numpy(x) if is_torch(x) else x, dtype=np.float64)
    if arr.ndim == 3:
        if arr.shape[1] != arr.shape[2]:
            raise DimensionError(
                f"Invalid value for {name!r} in {func}(): shape {arr.shape!r}. "
                "Expected square RDMs (k, n, n)."
            )
        return squareform_vector(arr), arr.shape[:1], None, {}, None
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1] and _is_symmetric(arr):
        return squareform_vector(arr)[None], (), None, {}, None
    if arr.ndim == 2:
        return arr, arr.shape[:1], None, {}, None
    if arr.ndim == 1:
        return arr[None], (), None, {}, None
    raise DimensionError(
        f"Invalid value for {name!r} in {func}(): shape {arr.shape!r}. Expected an RDM (n, n), "
        "a stack (k, n, n), or upper-triangle vectors (n_pairs,) / (k, n_pairs)."
    )


_EPS = np.finfo(np.float64).eps


def _cosine(a: np.ndarray, b: np.ndarray, tol_a=0.0, tol_b=0.0):
    """Cosines of all row pairs, ``(sim, undefined_a, undefined_b)``: a row whose norm is at
    most its tolerance has no direction (NaN)."""
    na = np.sqrt(np.einsum("ij,ij->i", a, a))
    nb = np.sqrt(np.einsum("ij,ij->i", b, b))
    bad_a, bad_b = na <= tol_a, nb <= tol_b
    if not (bad_a.any() or bad_b.any()):
        return (a @ b.T) / na[:, None] / nb[None, :], bad_a, bad_b
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = (a @ b.T) / na[:, None] / nb[None, :]
    sim[bad_a] = np.nan
    sim[:, bad_b] = np.nan
    return sim, bad_a, bad_b


def _centre(v):
    return v - v.mean(axis=1, keepdims=True)


def _centre_tol(v: np.ndarray) -> np.ndarray:
    """Norm below which a centred row is constant to rounding: centring a constant row ``c``
    leaves errors of a few ``eps |c|`` per entry."""
    if v.shape[1] == 0:
        return np.zeros(len(v))
    return 64 * _EPS * np.sqrt(v.shape[1]) * np.abs(v).max(axis=1)


def _zero_norm_error(name: str, func: str) -> ValueError:
    return ValueError(
        f"Invalid value for {name!r} in {func}(): an RDM with zero norm after centring "
        "(all dissimilarities equal, to rounding), so the comparison is undefined. Expected "
        "RDMs with varying dissimilarities."
    )


def _rank_compare_direct(a, rb, method: str):
    """Spearman / rho-a of each row of ``a`` against a few centred rank rows ``rb``.

    Each row of ``a`` is sorted once and its centred ranks, in sorted order, are dotted with
    ``rb`` gathered in that order: no rank matrix is built.
    """
    m = a.shape[1]
    out = np.empty((len(a), len(rb)))
    nb = np.sqrt(np.einsum("ij,ij->i", rb, rb))
    bad_a = np.zeros(len(a), dtype=bool)
    bad_b = (nb == 0) if method == "spearman" else np.zeros(len(rb), dtype=bool)
    plain = np.arange(1, m + 1, dtype=np.float64) - (m + 1) / 2.0

    def one(i: int) -> None:
        order, ties = _sort_row(a[i])
        if len(ties) == 0:
            r = plain
        else:
            new = np.ones(m, dtype=bool)
            new[ties + 1] = False
            starts = np.flatnonzero(new)
            counts = np.diff(np.append(starts, m))
            r = np.repeat(starts + (counts + 1) / 2.0 - (m + 1) / 2.0, counts)
        num = np.take(rb, order, axis=1) @ r
        if method == "spearman":
            na = np.sqrt(r @ r)
            if na == 0:
                bad_a[i] = True
                out[i] = np.nan
                return
            with np.errstate(invalid="ignore", divide="ignore"):
                out[i] = num / (na * nb)
        else:
            out[i] = 12.0 * num / (m**3 - m)

    _rows_parallel(one, len(a), m)
    out[:, bad_b] = np.nan
    return out, bad_a, bad_b


def _rank_compare(a, b, method: str, device: str | None):
    """Spearman / rho-a, ranking the larger stack in chunks (bounded memory);
    ``(sim, undefined_a, undefined_b)``."""
    if len(b) > len(a):
        sim, bad_b, bad_a = _rank_compare(b, a, method, device)
        return sim.T, bad_a, bad_b
    ranker = rank_average if device is None else (lambda v: _rank_torch(v, device))
    rb = _centre(ranker(b))
    n = a.shape[1]
    short = n < _ROWS_MAX  # short rows: ranked many at a time (rank_rows)
    if device is None and len(b) <= _DIRECT_MAX and not short:
        return _rank_compare_direct(a, rb, method)
    chunk = max(_RANK_CHUNK, _ROWS_BLOCK // max(n, 1)) if short else _RANK_CHUNK
    out = np.empty((len(a), len(b)))
    bad_a, bad_b = np.zeros(len(a), dtype=bool), np.zeros(len(b), dtype=bool)
    for start in range(0, len(a), chunk):
        ra = _centre(ranker(a[start:start + chunk]))
        if method == "spearman":
            sim, ba, bb = _cosine(ra, rb)
            out[start:start + chunk] = sim
            bad_a[start:start + chunk] = ba
            bad_b |= bb
        else:
            out[start:start + chunk] = 12.0 * (ra @ rb.T) / (n**3 - n)
    return out, bad_a, bad_b


def _compare_vectors(a: np.ndarray, b: np.ndarray, method: str, func: str,
                     device: str | None = None, *, keep: np.ndarray | None = None,
                     nan: bool = False) -> np.ndarray:
    """Similarities ``(len(a), len(b))`` of RDM vectors over the pairs present.

    ``keep`` locates those pairs among all ``n (n-1) / 2`` (the second-moment methods need
    the stimuli of each pair); None: all present. An undefined comparison (an RDM constant
    after centring, see the methods) raises, or with ``nan=True`` is NaN.
    """
    if method == "cosine":
        sim, bad_a, bad_b = _cosine(a, b)
    elif method == "pearson":
        sim, bad_a, bad_b = _cosine(_centre(a), _centre(b), _centre_tol(a), _centre_tol(b))
    elif method in ("spearman", "rho_a"):
        sim, bad_a, bad_b = _rank_compare(a, b, method, device)
    elif method == "tau_a":
        return _tau_a(a, b)
    else:
        sim, bad_a, bad_b = second_moment_compare(a, b, method, keep)
    if not nan and (bad_a.any() or bad_b.any()):
        raise _zero_norm_error("a" if bad_a.any() else "b", func)
    return sim


def compare_rdms(
    a: Any,
    b: Any,
    method: Literal[
        "cosine", "pearson", "spearman", "rho_a", "tau_a", "cosine_cov", "pearson_cov", "bures"
    ] = "spearman",
    *,
    device: str | None = None,
) -> float | np.ndarray | xr.DataArray:
    """Similarity of RDMs (higher is more similar), one value per pair of RDMs.

    Parameters
    ----------
    a, b : array-like or xr.DataArray
        One RDM or a stack of RDMs each: square ``(n, n)`` or ``(k, n, n)``, upper-triangle
        vectors ``(n_pairs,)`` or ``(k, n_pairs)``, or DataArrays from :func:`rdm` (with any
        extra batch dims, e.g. ``model``). DataArrays with stimulus ids are joined on them.
        A ``(k, k)`` array is one square RDM when it is symmetric up to rounding relative
        to its largest entry (in any units), otherwise ``k`` vectors of ``k`` pairs.
    method : str
        - ``"cosine"``: cosine of the upper-triangle vectors.
        - ``"pearson"``: Pearson r of the vectors (rsatoolbox ``"corr"``).
        - ``"spearman"``: Pearson r of the ranks (ties averaged).
        - ``"rho_a"``: ``12 <ra - mean, rb - mean> / (N^3 - N)`` with ``N`` pairs (no tie
          correction; rsatoolbox ``"rho-a"``).
        - ``"tau_a"``: Kendall tau-a, ``(concordant - discordant) / (N (N-1) / 2)``
          (rsatoolbox ``"tau-a"``; ties count 0). The discordant pairs are counted by
          code that numba compiles on the first call of an installation (a few seconds,
          then cached); without numba, by scipy's count (the same values, slower).
        - ``"cosine_cov"``, ``"pearson_cov"``: cosine (after centring the vectors, for
          ``pearson_cov``) of the double-centred second-moment matrices
          ``G = -1/2 H D H``, i.e. the whitened comparison of Diedrichsen et al. (2020)
          under the RDM covariance of i.i.d. patterns (rsatoolbox ``"cosine_cov"`` and
          ``"corr_cov"`` with ``sigma_k=None``).
        - ``"bures"``: Bures similarity ``tr((Ga^1/2 Gb Ga^1/2)^1/2) / sqrt(tr Ga tr Gb)``
          (negative eigenvalues clipped to 0).

        NaN entries are left out (second-moment methods: double-centred over the pairs
        present, as rsatoolbox's covariance weighting).

    device : str, optional
        Rank with ``torch.sort`` on this device (``"auto"``, ``"cpu"``, ``"cuda"``) for
        ``"spearman"`` and ``"rho_a"``; other methods run in numpy.

    Returns
    -------
    float, ndarray or xr.DataArray
        A float for one RDM against one; otherwise an array of shape
        ``batch(a) + batch(b)``, a DataArray when an input carries named batch dims.
    """
    check_option(method, COMPARE_METHODS, name="method", func="compare_rdms")
    va, sha, dima, coa, ida = as_rdm_vectors(a, name="a", func="compare_rdms")
    vb, shb, dimb, cob, idb = as_rdm_vectors(b, name="b", func="compare_rdms")
    if va.shape[1] != vb.shape[1]:
        raise DimensionError(
            f"compare_rdms(): 'a' has RDMs of {va.shape[1]} pairs and 'b' of {vb.shape[1]}. "
            "Expected RDMs over the same stimuli."
        )
    idx = align_stimuli(ida, idb, names=("a", "b"), func="compare_rdms",
                        n_a=va.shape[1], n_b=vb.shape[1])
    if idx is not None:
        sq = vector_squareform(vb)[:, idx][:, :, idx]
        vb = squareform_vector(sq)
    if np.isinf(va).any() or np.isinf(vb).any():
        raise ValueError(
            "Invalid value in compare_rdms(): infinite dissimilarities. Expected finite values "
            "(NaN marks entries to leave out)."
        )
    keep = ~(np.isnan(va).any(axis=0) | np.isnan(vb).any(axis=0))
    if not keep.all():
        if keep.sum() < 2:
            raise ValueError(
                "Invalid value in compare_rdms(): fewer than 2 dissimilarities are finite in "
                "every RDM. Expected RDMs with finite entries."
            )
        va, vb = va[:, keep], vb[:, keep]
    else:
        keep = None
    if device is not None:
        from neuroalign._config import resolve_device

        device = resolve_device(device)
    sim = _compare_vectors(va, vb, method, "compare_rdms", device, keep=keep)
    out = sim.reshape(tuple(sha) + tuple(shb))
    if out.ndim == 0:
        return float(out)
    if dima or dimb:
        dims = tuple(dima or (f"a_{i}" for i in range(len(sha)))) + tuple(
            dimb or (f"b_{i}" for i in range(len(shb)))
        )
        if len(set(dims)) != len(dims):
            dims = tuple(f"{d}_a" for d in (dima or ())) + tuple(f"{d}_b" for d in (dimb or ()))
            coa = {f"{k}_a": (f"{k}_a", v.values) for k, v in coa.items()}
            cob = {f"{k}_b": (f"{k}_b", v.values) for k, v in cob.items()}
        return xr.DataArray(out, dims=dims, coords={**coa, **cob}, name=method)
    return out
