"""Generalised shape metrics (Williams et al. 2021), netrep ``LinearMetric`` conventions.

Both representations are centred (per column), partially whitened, and aligned by the
best rotation:

- partial whitening of centred ``X`` (``n`` stimuli x ``p`` channels): eigendecomposition
  of its covariance on its numerical range, ``X^T X = V_r diag(lam) V_r^T`` with the ``r``
  eigenvalues above ``max(n, p) eps lam_max``; ``d = alpha + (1 - alpha) lam^-1/2``,
  rescaled by ``s = sqrt(sum lam / sum (alpha lam^1/2 + 1 - alpha)^2)`` so that the total
  variance is preserved; ``Z = s (V_r diag(d) V_r^T + alpha (I - V_r V_r^T))``. ``alpha = 1``
  is no whitening (Procrustes; ``Z = I`` for ``alpha > 1 - 1e-7``), ``alpha = 0`` full
  whitening (CCA).
- fit: ``U S V^T = svd(Xw^T Yw)``, ``Wx = Zx U``, ``Wy = Zy V``.
- score ``"angular"``: ``arccos(<X Wx, Y Wy>_F / (||X Wx||_F ||Y Wy||_F))`` (radians, in
  ``[0, pi/2]``); ``"euclidean"``: ``||X Wx - Y Wy||_F`` (NOT divided by ``sqrt(n)``).
- narrower representations are zero-padded to the wider one's width (the padded channels
  have no variance: they change nothing).

On the training data this is the closed form (``Bx = Xc V_r diag(d)``, ``n x r``):

``angular = arccos(||Bx^T By||_* / (||Bx||_F ||By||_F))``,
``euclidean^2 = sx^2 ||Bx||^2 + sy^2 ||By||^2 - 2 sx sy ||Bx^T By||_*``;

for ``alpha = 0`` (``Bx`` an orthonormal basis of the column space of ``Xc``) the angular
distance is ``arccos(sum_k cos theta_k / sqrt(rx ry))`` with ``theta_k`` the principal
angles between the column spaces of ``Xc`` and ``Yc`` of ranks ``rx``, ``ry``. It is 0 when
both systems span every direction of the centred stimulus space (rank ``n - 1``, e.g.
more channels than stimuli): CCA of such systems cannot tell them apart.

**Where this differs from netrep.** netrep clips the eigenvalues at the absolute value
``1e-7`` instead of finding the range. On data of ordinary scale and full rank the two
agree (to ~1e-12); otherwise netrep depends on units and rounding: data in small units
(e.g. multiplied by 1e-6) have every eigenvalue clipped, so CCA becomes Procrustes; in
large units (x 1e6) the rounding-level eigenvalues of the null directions (more channels
than stimuli, collinear channels) exceed 1e-7 and are whitened into unit-variance noise
(errors up to ~0.2 rad); and the clipped null directions (including zero-padding) count in
its variance preservation, so its euclidean scale depends on the rank and on the width of
the partner. Here, scaling a system by any factor leaves every angular distance unchanged
and multiplies euclidean distances to it as the data. For ``0 < alpha < 1`` the whitening
blends the identity with ``C^-1/2`` in the data's own units, as netrep's does: such
metrics depend on the scale of each system by definition (normalise the systems, e.g. to
unit total variance, to compare across units).

Both scores are metrics (symmetric, triangle inequality) and distances (lower is more
similar). :func:`distance_matrix` computes all pairs among many systems, whitening each
system once; each pair then needs only the singular values of one small cross-product
``Bx^T By``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._config import limit_this_thread, max_threads, resolve_device, thread_limits
from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option, check_positive_int
from neuroalign.compare._inputs import (
    align_stimuli,
    as_matrix,
    centre_columns,
    check_finite,
    is_torch,
    to_numpy,
    to_torch,
)
from neuroalign.exceptions import DimensionError, NotFittedError

__all__ = [
    "ShapeMetric",
    "shape_distance",
    "partial_whiten",
    "distance_matrix",
    "mds",
    "EIGVAL_TOL",
]

log = get_logger(__name__)

EIGVAL_TOL = 1e-7  # netrep's tolerance: alpha above 1 - EIGVAL_TOL means no whitening


def _check_alpha(alpha: Any, func: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(
            f"Invalid value for 'alpha' in {func}: {alpha!r}. Expected a number in [0, 1] "
            "(1 = Procrustes, 0 = CCA)."
        )
    return float(alpha)


def _new_var(lam, alpha):
    return ((alpha * lam**0.5 + (1 - alpha)) ** 2).sum()


def _eigh(M):
    if is_torch(M):
        import torch

        return torch.linalg.eigh(M)
    return np.linalg.eigh(M)


def _range(Xc, alpha: float, name: str = "X", func: str = "ShapeMetric"):
    """Whitening of centred ``Xc`` on its numerical range: ``(lam, d, V, U, scale)``.

    ``lam`` (``r``) are the eigenvalues of ``Xc^T Xc`` above ``max(n, p) eps lam_max`` (a
    relative tolerance: the rank does not depend on units), ``d`` the whitening gains
    (module docstring) and ``scale`` the variance-preserving factor.
    From the smaller Gram matrix: ``V`` (``p x r``, eigenvectors of ``Xc^T Xc``) when
    ``p <= n``, else ``U`` (``n x r``, of ``Xc Xc^T``; the other is None).
    """
    n, p = Xc.shape
    wide = p > n
    lam, vec = _eigh(Xc @ Xc.T if wide else Xc.T @ Xc)
    lam_max = float(lam[-1]) if lam.shape[0] else 0.0
    keep = lam > max(n, p) * np.finfo(np.float64).eps * lam_max
    if lam_max <= 0 or not bool(keep.any()):
        raise ValueError(
            f"Invalid value for {name!r} in {func}(): a representation that is zero after "
            "centring (every stimulus has the same pattern), so the distance is undefined. "
            "Expected varying patterns."
        )
    lam, vec = lam[keep], vec[:, keep]
    d = alpha + (1 - alpha) * lam**-0.5
    scale = float(np.sqrt(float(lam.sum()) / float(_new_var(lam, alpha))))
    return lam, d, (None if wide else vec), (vec if wide else None), scale


def _whitening(Xc: np.ndarray, alpha: float, name: str = "X",
               func: str = "ShapeMetric.fit") -> tuple[np.ndarray, int]:
    """The partial whitening matrix ``Z`` (``p x p``) of centred ``Xc`` and its rank."""
    p = Xc.shape[1]
    if alpha > 1 - EIGVAL_TOL:
        return np.eye(p), p
    lam, d, V, U, scale = _range(Xc, alpha, name, func)
    if V is None:  # eigenvectors of X^T X on the range, from those of X X^T
        V = (Xc.T @ U) / lam**0.5
    return scale * ((V * (d - alpha)[None, :]) @ V.T + alpha * np.eye(p)), len(lam)


def _log_full_rank(rank: int, n: int, alpha: float, name: str) -> None:
    if alpha < 1 and rank >= n - 1:
        log.warning(
            "Shape metric (alpha=%s): %r spans every direction of the %d centred stimuli "
            "(rank %d, e.g. at least as many channels as stimuli), so whitening fits the "
            "stimuli exactly; with alpha=0 two such systems are at distance 0. Reduce the "
            "dimension first (e.g. PCA) or use a larger alpha.", alpha, name, n, rank,
        )


def partial_whiten(X: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Partially whiten centred ``X`` with the total variance preserved.

    ``Z`` is as in the module docstring (netrep's ``whiten`` with the covariance taken on
    its numerical range instead of clipped at ``1e-7``); it is the identity when
    ``alpha > 1 - 1e-7``.

    Parameters
    ----------
    X : ndarray, shape (n_stimuli, n_channels)
        Centred data.
    alpha : float
        In [0, 1]: 0 whitens fully (CCA), 1 leaves ``X`` as it is (Procrustes).

    Returns
    -------
    X_whitened : ndarray, shape (n_stimuli, n_channels)
        ``X @ Z``.
    Z : ndarray, shape (n_channels, n_channels)
        The whitening matrix.
    """
    alpha = _check_alpha(alpha, "partial_whiten()")
    X = np.asarray(X, dtype=np.float64)
    Z, _ = _whitening(X, alpha, "X", "partial_whiten")
    return X @ Z, Z


def _pad(X: np.ndarray, width: int) -> np.ndarray:
    if X.shape[1] == width:
        return X
    return np.concatenate([X, np.zeros((X.shape[0], width - X.shape[1]), dtype=X.dtype)], axis=1)


def _prepare_pair(X, Y, func: str):
    Xm, ix, _ = as_matrix(X, name="X", func=func)
    Ym, iy, _ = as_matrix(Y, name="Y", func=func)
    idx = align_stimuli(ix, iy, names=("X", "Y"), func=func, n_a=Xm.shape[0], n_b=Ym.shape[0])
    if idx is not None:
        Ym = Ym[idx]
    check_finite(Xm, name="X", func=func)
    check_finite(Ym, name="Y", func=func)
    return np.asarray(Xm, dtype=np.float64), np.asarray(Ym, dtype=np.float64)


def _angular(a, b) -> float:
    num = float(np.sum(a * b))
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    if den == 0:
        raise ValueError(
            "Invalid value in ShapeMetric.score(): a representation is zero after centring "
            "(every stimulus has the same pattern), so the angle is undefined. "
            "Expected varying patterns."
        )
    return float(np.arccos(np.clip(num / den, -1.0, 1.0)))


class ShapeMetric:
    """Generalised shape metric (netrep ``LinearMetric``): Procrustes to CCA.

    Parameters
    ----------
    alpha : float in [0, 1]
        Whitening: ``1`` Procrustes (rotations only), ``0`` CCA (full whitening),
        in between partial whitening.
    score_method : {"angular", "euclidean"}
        Angular distance (radians) or Euclidean distance (not divided by ``sqrt(n)``).
    zero_pad : bool
        Zero-pad the narrower representation; with ``False`` widths must agree.

    Attributes
    ----------
    mx_, my_ : ndarray
        Column means of the training data.
    Wx_, Wy_ : ndarray
        The fitted maps ``Zx U`` and ``Zy V``.

    Notes
    -----
    A metric (symmetric, triangle inequality); lower is more similar
    (``is_metric = True``, ``higher_is_better = False``).
    """

    is_metric = True
    higher_is_better = False

    def __init__(
        self,
        alpha: float = 1.0,
        score_method: Literal["angular", "euclidean"] = "angular",
        *,
        zero_pad: bool = True,
    ) -> None:
        self.alpha = alpha
        self.score_method = score_method
        self.zero_pad = zero_pad

    def _validate(self) -> None:
        _check_alpha(self.alpha, "ShapeMetric()")
        check_option(self.score_method, ("angular", "euclidean"), name="score_method",
                     func="ShapeMetric")

    def _widths(self, X, Y):
        if X.shape[1] != Y.shape[1]:
            if not self.zero_pad:
                raise DimensionError(
                    f"ShapeMetric(zero_pad=False): 'X' has {X.shape[1]} channels and 'Y' "
                    f"{Y.shape[1]}. Expected equal widths, or zero_pad=True."
                )
            w = max(X.shape[1], Y.shape[1])
            return _pad(X, w), _pad(Y, w)
        return X, Y

    def fit(self, X: Any, Y: Any) -> ShapeMetric:
        """Fit the alignment of ``X`` and ``Y`` (same stimuli, rows joined on ids).

        Parameters
        ----------
        X, Y : array-like, shape (n_stimuli, n_channels)
            Two representations of the same stimuli; labelled ones are joined on
            ``stimulus_id`` (rows in any order).

        Returns
        -------
        ShapeMetric
            ``self``, with the means ``mx_``, ``my_`` and maps ``Wx_``, ``Wy_``.
        """
        self._validate()
        X, Y = _prepare_pair(X, Y, "ShapeMetric.fit")
        X, Y = self._widths(X, Y)
        self.mx_ = X.mean(axis=0)
        self.my_ = Y.mean(axis=0)
        alpha = float(self.alpha)
        Xc, Yc = centre_columns(X), centre_columns(Y)
        Zx, rx = _whitening(Xc, alpha, "X")
        Zy, ry = _whitening(Yc, alpha, "Y")
        _log_full_rank(rx, X.shape[0], alpha, "X")
        _log_full_rank(ry, X.shape[0], alpha, "Y")
        Xw, Yw = Xc @ Zx, Yc @ Zy
        U, _, Vt = np.linalg.svd(Xw.T @ Yw)
        self.Wx_ = Zx @ U
        self.Wy_ = Zy @ Vt.T
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Centre with the training means and apply the fitted maps.

        Parameters
        ----------
        X, Y : array-like, shape (n_stimuli, n_channels)
            Two representations of the same stimuli; labelled ones are joined on
            ``stimulus_id`` (rows in any order).

        Returns
        -------
        tX, tY : ndarray
            ``X`` and ``Y`` in the aligned space.
        """
        if not hasattr(self, "Wx_"):
            raise NotFittedError(
                "This ShapeMetric is not fitted yet. Call fit(X, Y) before transform or score."
            )
        X, Y = _prepare_pair(X, Y, "ShapeMetric.transform")
        X, Y = self._widths(X, Y)
        if X.shape[1] != self.n_features_in_:
            raise DimensionError(
                f"ShapeMetric.transform(): {X.shape[1]} channels after padding, but the metric "
                f"was fitted on {self.n_features_in_}. Expected the same systems as in fit."
            )
        return (centre_columns(X, self.mx_) @ self.Wx_, centre_columns(Y, self.my_) @ self.Wy_)

    def score(self, X: Any, Y: Any) -> float:
        """Distance between ``X`` and ``Y`` under the fitted alignment.

        Parameters
        ----------
        X, Y : array-like, shape (n_stimuli, n_channels)
            Two representations of the same stimuli; labelled ones are joined on
            ``stimulus_id`` (rows in any order).

        Returns
        -------
        float
            Angular (radians) or Euclidean distance, as ``score_method``.
        """
        tX, tY = self.transform(X, Y)
        if self.score_method == "angular":
            return _angular(tX, tY)
        return float(np.linalg.norm(tX - tY))

    def fit_score(self, X: Any, Y: Any) -> float:
        """``fit(X, Y).score(X, Y)``.

        Parameters
        ----------
        X, Y : array-like, shape (n_stimuli, n_channels)
            Two representations of the same stimuli; labelled ones are joined on
            ``stimulus_id`` (rows in any order).

        Returns
        -------
        float
            The distance on the fitting data.
        """
        return self.fit(X, Y).score(X, Y)


# ---------------------------------------------------------------- whitening once per system


class _Whitened:
    """A centred, partially whitened system ``B`` (``n x r``) and its variance scale.

    ``B = Xc V_r diag(d)`` (``p <= n``) or ``U_r diag(lam^1/2 d)`` (``p > n``): a rotation of
    the training data whitened by :class:`ShapeMetric` (up to its scale ``scale``), so the
    cross-products of two systems have the same singular values. ``alpha = 1``: ``B = Xc``.
    """

    def __init__(self, X, alpha: float, name: str = "X", func: str = "distance_matrix"):
        self.width = X.shape[1]
        Xc = centre_columns(X)
        if alpha > 1 - EIGVAL_TOL:
            self.B, self.scale = Xc, 1.0
        else:
            lam, d, V, U, self.scale = _range(Xc, alpha, name, func)
            self.B = Xc @ (V * d[None, :]) if V is not None else U * (lam**0.5 * d)[None, :]
            _log_full_rank(len(lam), X.shape[0], alpha, name)
        self.sq_norm = float((self.B * self.B).sum())


def _svdvals(M):
    if is_torch(M):
        import torch

        return torch.linalg.svdvals(M)
    return np.linalg.svd(M, compute_uv=False)


def _fast_nuclear(M, a: _Whitened, b: _Whitened) -> float:
    """Nuclear norm of ``M`` from the eigenvalues of its smaller Gram matrix.

    ``sum sqrt(eig(M^T M))`` is about twice as fast as the singular values; a singular
    value ``s`` gets an error of about ``eps s_max^2 / s``, far below 1e-8 relative while
    every eigenvalue is above ``1e-14`` of the largest. For numerically rank-deficient
    ``M`` and for nearly identical systems (cosine above ``1 - 1e-4``, where ``arccos``
    amplifies rounding) the singular values themselves are used.
    """
    G = M.T @ M if M.shape[1] <= M.shape[0] else M @ M.T
    if is_torch(G):
        import torch

        ev = torch.linalg.eigvalsh(G)
        ev_min, ev_max = float(ev[0]), float(ev[-1])
        nuc = float(ev.clip(min=0).sqrt().sum())
    else:
        ev = np.linalg.eigvalsh(G)
        ev_min, ev_max = float(ev[0]), float(ev[-1])
        nuc = float(np.sqrt(np.maximum(ev, 0)).sum())
    den = np.sqrt(a.sq_norm * b.sq_norm)
    if ev_min < 1e-14 * ev_max or (den > 0 and nuc / den > 1 - 1e-4):
        nuc = float(_svdvals(M).sum())
    return nuc


def _pair_distance(a: _Whitened, b: _Whitened, nuc: float, score_method: str) -> float:
    if score_method == "angular":
        den = np.sqrt(a.sq_norm * b.sq_norm)
        if den == 0:
            raise ValueError(
                "Invalid value in distance_matrix(): a system is zero after centring (every "
                "stimulus has the same pattern). Expected varying patterns."
            )
        return float(np.arccos(np.clip(nuc / den, -1.0, 1.0)))
    sa, sb = a.scale, b.scale
    d2 = sa**2 * a.sq_norm + sb**2 * b.sq_norm - 2 * sa * sb * nuc
    return float(np.sqrt(max(d2, 0.0)))


def shape_distance(
    X: Any,
    Y: Any,
    *,
    alpha: float = 1.0,
    score_method: Literal["angular", "euclidean"] = "angular",
) -> float:
    """Generalised shape distance of ``X`` and ``Y`` fitted and scored on the same data.

    Equals ``ShapeMetric(alpha, score_method).fit_score(X, Y)`` (see :class:`ShapeMetric`
    for the conventions), computed from singular values only.

    Parameters
    ----------
    X, Y : array-like, shape (n_stimuli, n_channels)
        Two representations of the same stimuli (channel counts may differ); labelled
        ones are joined on ``stimulus_id``.
    alpha : float
        Regularisation in [0, 1]: 0 is CCA, 1 Procrustes.
    score_method : {"angular", "euclidean"}
        Angular distance (radians, in [0, pi/2]) or Euclidean distance after alignment.

    Returns
    -------
    float
        The distance (0 for representations equal up to rotation, translation and,
        with ``alpha=1``, scale).

    Examples
    --------
    The Procrustes distance (``alpha=1``) ignores rotations, translations and scale:

    >>> import numpy as np
    >>> from neuroalign.compare import shape_distance
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((50, 6))
    >>> Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    >>> round(shape_distance(X, 2 * X @ Q + 1), 6)
    0.0
    >>> shape_distance(X, rng.standard_normal((50, 6))) > 0.5
    True
    """
    alpha = _check_alpha(alpha, "shape_distance()")
    check_option(score_method, ("angular", "euclidean"), name="score_method",
                 func="shape_distance")
    X, Y = _prepare_pair(X, Y, "shape_distance")
    a = _Whitened(X, alpha, "X", "shape_distance")
    b = _Whitened(Y, alpha, "Y", "shape_distance")
    nuc = float(_svdvals(a.B.T @ b.B).sum())
    return _pair_distance(a, b, nuc, score_method)


def _systems_dict(systems: Any) -> dict[str, Any]:
    if isinstance(systems, xr.Dataset):
        return {str(k): systems[k] for k in systems.data_vars}
    if isinstance(systems, Mapping):
        return {str(k): v for k, v in systems.items()}
    if isinstance(systems, Sequence) and not isinstance(systems, str):
        return {f"system_{i}": v for i, v in enumerate(systems)}
    raise TypeError(
        f"Invalid value for 'systems' in distance_matrix(): {type(systems).__name__}. Expected "
        "a dict name -> (n_stimuli, n_channels) data, a list of them, or a features Dataset."
    )


_CROSS_BYTES = 32 * 2**20  # systems concatenated for one cross-product (per thread)


def _parallel_rows(func, items: list, *, threads: bool) -> None:
    """``func(item)`` for every item, in :func:`neuroalign._config.max_threads` threads
    with BLAS, OpenMP and torch limited so that threads times their BLAS threads never
    exceed the limit (restored afterwards). Each item's work is many small ``r x r``
    eigendecompositions, which scale poorly with BLAS threads and oversubscribe the cores
    when BLAS threads spin against each other; one BLAS thread per worker avoids both.
    Items are interleaved from both ends (rows of the upper triangle shrink)."""
    limit = max_threads()
    workers = min(limit, len(items)) if threads else 1
    if workers <= 1:
        for it in items:
            func(it)
        return
    order = [items[k // 2] if k % 2 == 0 else items[-1 - k // 2] for k in range(len(items))]
    each = max(1, limit // workers)
    with thread_limits(each), ThreadPoolExecutor(
            max_workers=workers, initializer=limit_this_thread, initargs=(each,)) as pool:
        list(pool.map(func, order))


def _pair_block(prepared: list, pairs, score_method: str) -> dict:
    """Distances of a block of pairs ``(b, 2)`` of whitened systems (the task of a cached
    cell, see ``distance_matrix(cluster=)``). One BLAS thread: each pair is a few small
    ``r x r`` products and eigendecompositions, which BLAS threads slow down (they spin
    against each other and against the other workers)."""
    d = np.empty(len(pairs))
    with thread_limits(1):
        for t, (i, j) in enumerate(np.asarray(pairs)):
            a, b = prepared[i], prepared[j]
            d[t] = _pair_distance(a, b, _fast_nuclear(a.B.T @ b.B, a, b), score_method)
    return {"distance": d}


def _pairs_in_cells(so, prepared: list, fps: list[str], metric: ShapeMetric, D: np.ndarray,
                    batch: int) -> None:
    """Fill ``D`` from cached cells of ``batch`` pairs (keyed by the two systems' data and
    the metric): a rerun, or a matrix with systems added, computes only the missing pairs."""
    from neuroalign._scaleout import fingerprint, run_cells

    m = len(prepared)
    pairs = np.array([(i, j) for i in range(m - 1) for j in range(i + 1, m)], dtype=np.int64)
    blocks = [pairs[s:s + batch] for s in range(0, len(pairs), batch)]
    base = fingerprint("shape-distance", float(metric.alpha), metric.score_method,
                       bool(metric.zero_pad))
    keys = [fingerprint(base, [(fps[i], fps[j]) for i, j in b.tolist()]) for b in blocks]
    with so:
        cells, so.info = run_cells(_pair_block, keys, lambda k: (blocks[k], metric.score_method),
                                   names=("distance",), folder=so.folder, shared=(prepared,),
                                   client=so.client, what="distance_matrix", fail=so.fail)
    for b, cell in zip(blocks, cells, strict=True):
        D[b[:, 0], b[:, 1]] = D[b[:, 1], b[:, 0]] = cell["distance"]


def distance_matrix(
    systems: Any,
    metric: ShapeMetric | Literal["procrustes", "cca"] = "procrustes",
    *,
    device: str | None = None,
    show_progress: bool | None = None,
    cluster: Any = None,
    cluster_options: dict | None = None,
    result_path: Any = None,
    batch_size: int | None = None,
    client: Any = None,
    _fail: dict | None = None,
) -> xr.DataArray:
    """All pairwise shape distances among many systems (models, layers, subjects, ROIs).

    Parameters
    ----------
    systems : dict, list or xr.Dataset
        ``name -> data`` with data ``(n_stimuli, n_channels)`` (arrays, DataArrays, stores
        averaged over repetitions; widths may differ), a list (named ``system_0``, ...),
        or a features Dataset (one system per layer). Labelled systems are joined on
        ``stimulus_id`` to the first one's order.
    metric : ShapeMetric or {"procrustes", "cca"}
        The metric (``"procrustes"`` = ``ShapeMetric(1.0)``, ``"cca"`` =
        ``ShapeMetric(0.0)``, angular). Each system is centred and whitened ONCE; each
        pair then needs the singular values of one ``r x r`` cross-product.
    device : str, optional
        Compute with torch on this device (``"auto"``, ``"cpu"``, ``"cuda"``).
    show_progress : bool, optional
        Progress bar over systems (default: when on a terminal).
    cluster : None, "none", "local", "slurm", "pbs", scheduler address, Client or dict
        Compute blocks of pairs as cached cells on this cluster
        (:func:`neuroalign._scaleout.get_client`, as :meth:`RidgeEncoder.fit
        <neuroalign.encoders.RidgeEncoder.fit>`); each system is whitened once here and
        sent to every worker. Same distances as the single-process run (to ~1e-12).
    cluster_options : dict, optional
        Options of the cluster (Slurm/PBS: dask-jobqueue's ``cores``, ``memory``, ...).
    result_path : path-like, optional
        Folder of the cached cells (``result_path/cells/``), one per block of pairs, keyed
        by the two systems' data and the metric: a rerun (or a matrix with systems added
        at the end) computes only the missing blocks. Also with ``cluster=None``.
    batch_size : int, optional
        Pairs per cell (default 256).
    client : dask.distributed.Client, optional
        Run the cells on this client's workers.

    Returns
    -------
    xr.DataArray
        Symmetric distances, dims ``('system_i', 'system_j')`` with the names as
        coordinates, zero diagonal; attrs ``alpha`` and ``score_method`` (with cells also
        ``n_cells``, ``n_cells_computed`` and ``result_path``).
    """
    from neuroalign._scaleout import ScaleOut, fingerprint

    so = ScaleOut(cluster=cluster, cluster_options=cluster_options, client=client,
                  result_path=result_path, batch_size=batch_size, func="distance_matrix",
                  prefix="neuroalign-shape-")
    so.fail = _fail
    batch = 256 if so.batch_size is None else check_positive_int(
        so.batch_size, name="batch_size", func="distance_matrix")
    if so.active and device is not None:
        raise ValueError(
            f"Invalid value for 'device' in distance_matrix() with cells (cluster= or "
            f"result_path=): {device!r}. Expected None (cells are computed with numpy)."
        )
    if isinstance(metric, str):
        check_option(metric, ("procrustes", "cca"), name="metric", func="distance_matrix")
        metric = ShapeMetric(1.0 if metric == "procrustes" else 0.0)
    if not isinstance(metric, ShapeMetric):
        raise TypeError(
            f"Invalid value for 'metric' in distance_matrix(): {type(metric).__name__}. "
            "Expected a ShapeMetric or one of 'procrustes', 'cca'."
        )
    metric._validate()
    named = _systems_dict(systems)
    if len(named) < 2:
        raise ValueError(
            f"Invalid value for 'systems' in distance_matrix(): {len(named)} system(s). "
            "Expected at least 2."
        )
    dev = resolve_device(device) if device is not None else None
    names = list(named)
    ref_ids, n_ref = None, None
    mats: list = []
    for name in progress(names, desc="checking systems", disable=None if show_progress is None
                         else not show_progress):
        X, ids, _ = as_matrix(named[name], name=f"systems[{name!r}]", func="distance_matrix",
                              keep_torch=True)
        if ref_ids is None and n_ref is None:
            ref_ids, n_ref = ids, X.shape[0]
        idx = align_stimuli(ref_ids, ids, names=(names[0], name), func="distance_matrix",
                            n_a=n_ref, n_b=X.shape[0])
        if idx is not None:
            X = X[idx]
        check_finite(X, name=f"systems[{name!r}]", func="distance_matrix")
        if not metric.zero_pad and mats and X.shape[1] != mats[0].shape[1]:
            raise DimensionError(
                f"distance_matrix() with zero_pad=False: system {name!r} has {X.shape[1]} "
                f"channels, {names[0]!r} has {mats[0].shape[1]}. Expected equal widths."
            )
        X = to_torch(X, dev) if dev is not None else np.asarray(to_numpy(X), dtype=np.float64)
        mats.append(X)
    fps = [fingerprint(np.asarray(X)) for X in mats] if so.active else []
    prepared: list = [None] * len(mats)

    def whiten(k: int) -> None:  # each system centred and whitened once, in threads
        prepared[k] = _Whitened(mats[k], float(metric.alpha), f"systems[{names[k]!r}]")
        mats[k] = None  # its converted copy (if any) goes as soon as it is whitened

    _parallel_rows(whiten, list(range(len(mats))), threads=dev is None)
    m = len(prepared)
    D = np.zeros((m, m))

    def row(i: int) -> None:
        Bi = prepared[i].B
        j = i + 1
        while j < m:  # the cross-products with the next systems, a block of them at a time
            stop, size = j, 0
            while stop < m and (stop == j or size + prepared[stop].B.nbytes <= _CROSS_BYTES):
                size += prepared[stop].B.nbytes
                stop += 1
            rest = prepared[j:stop]
            if dev is not None:
                import torch

                cross = Bi.T @ torch.cat([p.B for p in rest], dim=1)
            else:
                cross = Bi.T @ np.concatenate([p.B for p in rest], axis=1)
            start = 0
            for k, p in enumerate(rest):
                r = p.B.shape[1]
                nuc = _fast_nuclear(cross[:, start:start + r], prepared[i], p)
                start += r
                D[i, j + k] = D[j + k, i] = _pair_distance(prepared[i], p, nuc,
                                                           metric.score_method)
            j = stop

    if so.active:
        _pairs_in_cells(so, prepared, fps, metric, D, batch)
    else:
        _parallel_rows(row, list(range(m - 1)), threads=dev is None)
    cells = {"n_cells": so.info["n_batches"], "n_cells_computed": len(so.info["computed"]),
             **({"result_path": str(so.result_path)} if so.result_path else {})} if so.active else {}
    return xr.DataArray(
        D,
        dims=("system_i", "system_j"),
        coords={"system_i": names, "system_j": names},
        name="distance",
        attrs={"alpha": float(metric.alpha), "score_method": metric.score_method, **cells},
    )


def mds(distances: Any, n_components: int = 2) -> xr.DataArray:
    """Classical (Torgerson) multidimensional scaling of a distance matrix.

    Parameters
    ----------
    distances : ndarray or xr.DataArray
        Symmetric ``(m, m)`` distances, e.g. from :func:`distance_matrix`.
    n_components : int
        Embedding dimensions.

    Returns
    -------
    xr.DataArray
        Coordinates, dims ``('system', 'component')``; components ordered by eigenvalue
        (negative eigenvalues of a non-Euclidean distance are set to 0).
    """
    names = None
    if isinstance(distances, xr.DataArray):
        names = distances.coords[distances.dims[0]].values if distances.dims[0] in distances.coords else None
        distances = distances.values
    D = np.asarray(distances, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise DimensionError(
            f"Invalid value for 'distances' in mds(): shape {D.shape!r}. Expected a square matrix."
        )
    m = D.shape[0]
    H = np.eye(m) - 1.0 / m
    B = -0.5 * H @ (D**2) @ H
    w, V = np.linalg.eigh((B + B.T) / 2)
    order = np.argsort(w)[::-1][:n_components]
    coords = V[:, order] * np.sqrt(np.maximum(w[order], 0))[None, :]
    c = {"system": names} if names is not None else {}
    return xr.DataArray(coords, dims=("system", "component"), coords=c, name="mds")
