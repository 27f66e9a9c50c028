"""Representational dissimilarity matrices (RDMs).

Conventions (named explicitly, because the reference libraries disagree):

- ``"correlation"``: ``1 - r`` with ``r`` the Pearson correlation of two patterns across
  channels (rsatoolbox ``"correlation"``, scipy ``"correlation"``). Not divided by channels.
- ``"euclidean"``: the plain Euclidean distance ``||x_i - x_j||`` (scipy, thingsvision).
- ``"sqeuclidean"``: ``||x_i - x_j||^2 / p`` with ``p`` channels. This is what rsatoolbox
  calls ``"euclidean"``.
- ``"mahalanobis"``: ``(x_i - x_j)^T P (x_i - x_j) / p`` with ``P`` the noise precision.
- ``"crossnobis"``: leave-one-run-out cross-validated Mahalanobis distance, divided by
  ``p`` (rsatoolbox ``"crossnobis"``): for each run ``m``, ``A`` = condition means of the
  other runs, ``B`` = condition means of run ``m``, ``K = A P B^T``,
  ``d_ij = (K_ii + K_jj - K_ij - K_ji) / p``, averaged over runs. Unbiased: can be < 0.
- ``"poisson"``: symmetrised KL divergence of Poisson rates, divided by ``p`` (rsatoolbox
  ``"poisson"``), after the rsatoolbox prior ``x <- (x + 0.1) / 1.1``.

Every RDM is computed from one Gram matrix (one matrix product), on numpy or, with
``device=``, on a torch device.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._config import resolve_device
from neuroalign._preflight import check_rdm
from neuroalign._validation import check_option
from neuroalign.compare._inputs import as_matrix, check_finite, is_torch, to_numpy, to_torch
from neuroalign.exceptions import DimensionError

__all__ = ["rdm", "RDM_METRICS", "RDM_DIMS", "squareform_vector", "vector_squareform"]

RDM_METRICS = ("correlation", "euclidean", "sqeuclidean", "mahalanobis", "crossnobis", "poisson")
RDM_DIMS = ("stimulus_i", "stimulus_j")
_DESCRIPTIONS = {
    "correlation": "1 - Pearson r across channels",
    "euclidean": "Euclidean distance (not squared, not normalised)",
    "sqeuclidean": "squared Euclidean distance / n_channels (rsatoolbox 'euclidean')",
    "mahalanobis": "(x_i - x_j)^T P (x_i - x_j) / n_channels",
    "crossnobis": "leave-one-run-out crossnobis / n_channels (rsatoolbox 'crossnobis')",
    "poisson": "symmetrised Poisson KL divergence / n_channels, prior (x + 0.1) / 1.1",
}
_POISSON_PRIOR = (1.0, 0.1)  # rsatoolbox prior_lambda, prior_weight


def squareform_vector(d: Any) -> Any:
    """Upper triangle (``k=1``, row-major: scipy ``squareform`` order) of ``(..., n, n)``."""
    n = d.shape[-1]
    iu = np.triu_indices(n, k=1)
    return d[..., iu[0], iu[1]]


def vector_squareform(v: np.ndarray) -> np.ndarray:
    """Square symmetric matrices ``(..., n, n)`` with zero diagonal from vectors ``(..., m)``."""
    v = np.asarray(v)
    m = v.shape[-1]
    n = int(round((1 + np.sqrt(1 + 8 * m)) / 2))
    if n * (n - 1) // 2 != m:
        raise DimensionError(
            f"An RDM vector of length {m} is not an upper triangle n(n-1)/2 of any n."
        )
    out = np.zeros(v.shape[:-1] + (n, n), dtype=v.dtype)
    iu = np.triu_indices(n, k=1)
    out[..., iu[0], iu[1]] = v
    out[..., iu[1], iu[0]] = v
    return out


def _gram_distance(gram, sq_i, sq_j):
    """``sq_i + sq_j - 2 G``, clipped at 0 (works for numpy and torch)."""
    return (sq_i[:, None] + sq_j[None, :] - 2 * gram).clip(min=0)


def _diag(g):
    return g.diagonal() if is_torch(g) else np.diagonal(g)


def _zero_diag(d):
    if is_torch(d):
        d.fill_diagonal_(0)
    else:
        np.fill_diagonal(d, 0)
    return d


_BLOCK_BYTES = 32 * 2**20  # float64 channel block centred at a time (correlation RDM)


def _constant_rows(norms, X, peak) -> None:
    """Raise when a centred row's norm is below the rounding of centring a constant row."""
    # centring a constant row c leaves errors of a few eps |c| per channel (relative to each
    # row's own magnitude, so the test does not depend on units)
    tol = 64 * np.finfo(np.float64).eps * np.sqrt(X.shape[1]) * peak
    const = np.flatnonzero(to_numpy(norms) <= tol)
    if const.size:
        raise ValueError(
            f"Invalid value for 'data' in rdm(metric='correlation'): {const.size} pattern(s) are "
            f"constant across channels (rows {const[:5].tolist()}), so their correlation is "
            "undefined. Expected patterns with non-zero variance across channels."
        )


def _correlation(X):
    if not is_torch(X):
        return _correlation_numpy(X)
    xc = X - X.mean(axis=1, keepdims=True)
    norms = (xc * xc).sum(axis=1) ** 0.5
    _constant_rows(norms, X, to_numpy(X.abs().amax(dim=1)))
    xc /= norms[:, None]  # in place: one copy of the data at most
    d = xc @ xc.T
    d = 1 - (d + d.T) / 2
    return _zero_diag(d)


def _correlation_numpy(X: np.ndarray) -> np.ndarray:
    """``1 - r`` without a full-size temporary: the Gram matrix of the row-centred data is
    accumulated over blocks of channels (each centred in float64, ``_BLOCK_BYTES``) by a
    symmetric rank-k update (BLAS ``syrk``, half the work of a matrix product). Peak memory
    above the data: the ``n x n`` result and one block, whatever the number of channels
    and the input's dtype (float32 data is never copied whole to float64)."""
    from scipy.linalg.blas import dsyrk

    n, p = X.shape
    mu = X.mean(axis=1, dtype=np.float64)
    peak = np.maximum(X.max(axis=1), -X.min(axis=1)).astype(np.float64)  # no |X| copy
    step = max(1, _BLOCK_BYTES // (8 * n))
    G = np.zeros((n, n), order="F")
    for start in range(0, p, step):
        block = np.array(X[:, start:start + step], dtype=np.float64, order="C")
        block -= mu[:, None]
        # block.T is Fortran-ordered (k x n): trans=1 gives block @ block.T with no copy
        G = dsyrk(1.0, block.T, beta=1.0, c=G, trans=1, overwrite_c=1)
        del block
    norms = np.sqrt(np.diagonal(G).copy())
    G += G.T  # syrk fills the upper triangle only; the lower one is still 0
    np.fill_diagonal(G, norms**2)
    _constant_rows(norms, X, peak)
    for start in range(0, n, step):  # by row blocks: n_i n_j is symmetric, no n x n temporary
        G[start:start + step] /= np.outer(norms[start:start + step], norms)
    np.subtract(1.0, G, out=G)
    return np.ascontiguousarray(_zero_diag(G))


def _centre_channels(X):
    """``X`` minus its column (per-channel) means, numpy or torch, in ``X``'s precision.

    Distances do not change when one vector is subtracted from every pattern, but the
    expansion ``|x_i|^2 + |x_j|^2 - 2 x_i.x_j`` of a squared distance loses every digit to
    a common offset far above the differences (a baseline of 1e6 with effects of 1e-2:
    75 % off); after centring, its terms are of the size of the differences."""
    return X - X.mean(axis=0, keepdims=True)


def _sqdist(X, precision=None):
    """Squared (Mahalanobis with ``precision``) distances between the rows of ``X``, from
    one Gram matrix of the centred rows."""
    X = _centre_channels(X)
    xp = X if precision is None else X @ precision
    gram = xp @ X.T
    sq = _diag(gram)
    return _zero_diag(_gram_distance(gram, sq, sq))


def _check_precision(noise, p: int, metric: str):
    if noise is None:
        raise ValueError(
            f"Invalid value for 'noise' in rdm(metric={metric!r}): None. Expected the noise "
            f"precision matrix, shape ({p}, {p}), or its diagonal, shape ({p},)."
        )
    P = to_numpy(noise).astype(np.float64)
    if P.ndim == 1:
        P = np.diag(P)
    if P.shape != (p, p):
        raise DimensionError(
            f"Invalid value for 'noise' in rdm(metric={metric!r}): shape {P.shape!r}. "
            f"Expected the precision matrix of the {p} channels, shape ({p}, {p}), or ({p},)."
        )
    check_finite(P, name="noise", func="rdm")
    if not np.allclose(P, P.T, rtol=1e-6, atol=1e-10 * np.abs(P).max()):
        raise ValueError(
            f"Invalid value for 'noise' in rdm(metric={metric!r}): the precision matrix is not "
            "symmetric. Expected a symmetric positive semi-definite precision (inverse noise "
            "covariance), e.g. from a shrinkage estimate."
        )
    return (P + P.T) / 2


def _poisson(X):
    Xn = to_numpy(X) if not is_torch(X) else X
    if float((Xn < 0).sum()):
        raise ValueError(
            "Invalid value for 'data' in rdm(metric='poisson'): negative values. "
            "Expected non-negative rates or counts."
        )
    lam, w = _POISSON_PRIOR
    X = (X + lam * w) / (1 + w)
    L = X.log() if is_torch(X) else np.log(X)
    cross = X @ L.T
    a = (X * L).sum(axis=1)
    d = a[:, None] + a[None, :] - cross - cross.T
    return _zero_diag(d.clip(min=0))


def _codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique labels in order of first appearance and each row's code."""
    uniq, first, inv = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[inv.ravel()]


def _group_means(X, codes: np.ndarray, n_groups: int, rows: np.ndarray):
    """Means of ``X[rows]`` per group code (as a matrix product, numpy or torch)."""
    M = np.zeros((n_groups, len(rows)))
    M[codes[rows], np.arange(len(rows))] = 1.0
    M /= M.sum(axis=1, keepdims=True)
    if is_torch(X):
        M = to_torch(M, X.device, X.dtype)
        return M @ X[to_torch(rows, X.device, None).long()]
    return M @ X[rows]


def _crossnobis(X, conditions: np.ndarray, runs: np.ndarray, precision):
    cond_names, ccode = _codes(conditions)
    run_names, rcode = _codes(runs)
    n_c = len(cond_names)
    if len(run_names) < 2:
        raise ValueError(
            f"Invalid value for 'runs' in rdm(metric='crossnobis'): {len(run_names)} distinct "
            "run. Expected at least 2 runs (each with every condition) to cross-validate."
        )
    present = np.zeros((len(run_names), n_c), dtype=bool)
    present[rcode, ccode] = True
    if not present.all():
        r, c = np.argwhere(~present)[0]
        raise ValueError(
            f"Invalid value for 'runs' in rdm(metric='crossnobis'): condition "
            f"{str(cond_names[c])!r} is missing from run {str(run_names[r])!r}. Expected every "
            "condition in every run."
        )
    total = None
    for m in range(len(run_names)):
        test = np.flatnonzero(rcode == m)
        train = np.flatnonzero(rcode != m)
        # each side centred on its own channel means: K_ii + K_jj - K_ij - K_ji does not
        # change, and an offset (even one that differs between runs) cancels exactly
        A = _centre_channels(_group_means(X, ccode, n_c, train))
        B = _centre_channels(_group_means(X, ccode, n_c, test))
        if precision is not None:
            A = A @ precision
        K = A @ B.T
        kd = _diag(K)
        d = kd[:, None] + kd[None, :] - K - K.T
        total = d if total is None else total + d
    d = total / len(run_names)
    return _zero_diag(d), cond_names


def rdm(
    data: Any,
    metric: Literal[
        "correlation", "euclidean", "sqeuclidean", "mahalanobis", "crossnobis", "poisson"
    ] = "correlation",
    *,
    noise: Any = None,
    conditions: Any = None,
    runs: Any = None,
    device: str | None = None,
) -> xr.DataArray:
    """Representational dissimilarity matrix over stimuli.

    Parameters
    ----------
    data : ndarray, torch.Tensor, xr.DataArray or xr.Dataset
        Patterns of shape ``(n_stimuli, n_channels)``: an array, a DataArray with dims
        ``('stimulus', <channel dim>)`` and coordinate ``stimulus_id``, a store averaged over
        repetitions, or features with one layer. For ``"crossnobis"``: trial-level patterns
        (an array, or a store / DataArray with dim ``'presentation'``).
    metric : str
        ``"correlation"`` (1 - Pearson r), ``"euclidean"`` (plain distance),
        ``"sqeuclidean"`` (squared distance / n_channels = rsatoolbox "euclidean"),
        ``"mahalanobis"``, ``"crossnobis"`` or ``"poisson"``; see the module docstring.
    noise : array-like, optional
        Noise precision matrix ``(n_channels, n_channels)`` (or its diagonal) for
        ``"mahalanobis"`` (required) and ``"crossnobis"`` (identity when omitted).
    conditions, runs : array-like or str, optional
        ``"crossnobis"`` only: the condition and the run (cross-validation fold) of each row;
        a string names a coordinate of a DataArray / store. Defaults for a store:
        ``conditions="stimulus_id"`` and ``runs="repetition"`` (the k-th presentation of
        each stimulus forms fold k, as rsatoolbox without ``cv_descriptor``).
    device : str, optional
        Compute on this torch device (``"auto"``, ``"cpu"``, ``"cuda"``). Default: numpy
        for numpy input, the tensor's own device for torch input.

    Returns
    -------
    xr.DataArray
        Square RDM with dims ``('stimulus_i', 'stimulus_j')``, coordinates
        ``stimulus_id_i``/``stimulus_id_j`` when the input has stimulus ids, float64, zero
        diagonal; attrs ``metric``, ``description`` and ``n_channels``.

    Examples
    --------
    >>> import xarray as xr
    >>> from neuroalign.compare import rdm
    >>> responses = xr.DataArray([[0.0, 1.0], [0.0, 2.0], [3.0, 0.0]], dims=("stimulus", "unit"),
    ...                          coords={"stimulus_id": ("stimulus", ["x", "y", "z"])})
    >>> d = rdm(responses, "euclidean")
    >>> d.dims, d.round(3).values.tolist()
    (('stimulus_i', 'stimulus_j'), [[0.0, 1.0, 3.162], [1.0, 0.0, 3.606], [3.162, 3.606, 0.0]])
    """
    check_option(metric, RDM_METRICS, name="metric", func="rdm")
    raw = data
    X, ids, sdim = as_matrix(
        data, name="data", func="rdm", allow_trials=metric == "crossnobis", keep_torch=True
    )
    n, p = X.shape
    if n < 2 or p < 1:
        raise DimensionError(
            f"Invalid value for 'data' in rdm(): shape {tuple(X.shape)!r}. "
            "Expected at least 2 stimuli and 1 channel."
        )
    check_finite(X, name="data", func="rdm")
    if device is None and not is_torch(X):  # memory preflight (numpy path)
        check_rdm(n, p, metric=metric, dtype=getattr(X, "dtype", "float64"))
    if device is not None or is_torch(X):
        dev = resolve_device(device) if device is not None else X.device
        X = to_torch(X, dev)
    elif metric != "correlation" or X.dtype.kind not in "fiu":  # correlation: per block
        X = np.asarray(X, dtype=np.float64)

    precision = None
    if metric in ("mahalanobis", "crossnobis") and (noise is not None or metric == "mahalanobis"):
        precision = _check_precision(noise, p, metric)
        if is_torch(X):
            precision = to_torch(precision, X.device)

    if metric == "crossnobis":
        conditions, runs = _crossnobis_labels(raw, ids, sdim, conditions, runs, n)
        d, ids = _crossnobis(X, conditions, runs, precision)
        d = d / p
    elif metric == "correlation":
        d = _correlation(X)
    elif metric == "euclidean":
        d = _sqdist(X) ** 0.5
    elif metric == "sqeuclidean":
        d = _sqdist(X) / p
    elif metric == "mahalanobis":
        d = _sqdist(X, precision) / p
    else:
        d = _poisson(X) / p
    d = np.asarray(to_numpy(d), dtype=np.float64)
    coords = {}
    if ids is not None:
        coords = {"stimulus_id_i": (RDM_DIMS[0], ids), "stimulus_id_j": (RDM_DIMS[1], ids)}
    return xr.DataArray(
        d,
        dims=RDM_DIMS,
        coords=coords,
        name="rdm",
        attrs={"metric": metric, "description": _DESCRIPTIONS[metric], "n_channels": int(p)},
    )


def _crossnobis_labels(raw, ids, sdim, conditions, runs, n):
    def resolve(value, default, pname):
        if value is None:
            value = default
        if isinstance(value, str):
            arr = raw["responses"] if isinstance(raw, xr.Dataset) else raw
            if not isinstance(arr, xr.DataArray) or value not in arr.coords:
                raise ValueError(
                    f"Invalid value for {pname!r} in rdm(metric='crossnobis'): {value!r}. "
                    "Expected an array with one label per row, or the name of a coordinate "
                    "of the DataArray / store."
                )
            return np.asarray(arr.coords[value].values)
        if value is None:
            raise ValueError(
                f"Invalid value for {pname!r} in rdm(metric='crossnobis'): None. "
                "Expected one label per row of 'data' (or a store with stimulus_id/repetition)."
            )
        value = np.asarray(to_numpy(value))
        if value.shape != (n,):
            raise DimensionError(
                f"Invalid value for {pname!r} in rdm(metric='crossnobis'): shape {value.shape!r}. "
                f"Expected one label per row, shape ({n},)."
            )
        return value

    is_labelled = isinstance(raw, xr.Dataset | xr.DataArray)
    conditions = resolve(conditions, "stimulus_id" if is_labelled else None, "conditions")
    runs = resolve(runs, "repetition" if is_labelled else None, "runs")
    return conditions.astype(str), runs
