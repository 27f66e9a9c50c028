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
- nearly identical systems (cosine above ``1 - 1e-4``): the same distances, measured on
  the aligned difference (``2 atan2(||u - v||, ||u + v||)`` of the normalised aligned
  systems, ``||X Wx - Y Wy||_F``) instead of the closed forms below, which cancel there
  to an error of ``sqrt(eps)`` (1.5e-8 rad) that depends on the summation order.
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
similar). :func:`~neuroalign.compare.distance_matrix` (in
:mod:`neuroalign.compare._shape_matrix`) computes all pairs among many systems, whitening
each system once; each pair then needs only the singular values of one small
cross-product ``Bx^T By``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from neuroalign._logging import get_logger
from neuroalign._validation import check_option
from neuroalign.compare._inputs import (
    align_stimuli,
    as_matrix,
    centre_columns,
    check_finite,
    is_torch,
    to_numpy,
)
from neuroalign.exceptions import DimensionError, NotFittedError

__all__ = [
    "ShapeMetric",
    "shape_distance",
    "partial_whiten",
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


def _angle(u, v) -> float:
    """Angle between two unit-norm arrays, ``2 atan2(||u - v||, ||u + v||)`` (Kahan).

    It equals ``arccos(<u, v>)`` and keeps full precision near 0, where ``arccos`` of a
    cosine within a rounding error of 1 is off by up to ``sqrt(2 eps)`` (1.5e-8 rad): a
    distance between nearly identical systems would then depend on the summation order
    (how the work is partitioned, the BLAS kernel of the machine).
    """
    return float(2 * np.arctan2(np.linalg.norm(u - v), np.linalg.norm(u + v)))


def _angular(a, b) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na * nb == 0:
        raise ValueError(
            "Invalid value in ShapeMetric.score(): a representation is zero after centring "
            "(every stimulus has the same pattern), so the angle is undefined. "
            "Expected varying patterns."
        )
    return _angle(a / na, b / nb)


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


def _aligned(a: _Whitened, b: _Whitened, ca: float, cb: float) -> tuple[np.ndarray, np.ndarray]:
    """``ca Bx Q`` and ``cb By``, with ``Q`` the rotation that aligns them best (both
    zero-padded to one width), in float64 on the CPU."""
    A, B = to_numpy(a.B).astype(np.float64), to_numpy(b.B).astype(np.float64)
    width = max(A.shape[1], B.shape[1])
    A, B = _pad(A, width), _pad(B, width)
    U, _, Vt = np.linalg.svd(A.T @ B)
    return ca * (A @ (U @ Vt)), cb * B


def _pair_distance(a: _Whitened, b: _Whitened, nuc: float, score_method: str) -> float:
    """The distance from the nuclear norm ``nuc`` of ``Bx^T By``.

    The closed forms (``arccos(nuc / (||Bx|| ||By||))``, ``sqrt(sx^2 ||Bx||^2 + ... -
    2 sx sy nuc)``) cancel for nearly identical systems, leaving an error of about
    ``sqrt(eps)`` relative (1.5e-8 rad) that depends on the summation order. There (cosine
    above ``1 - 1e-4``, or a squared Euclidean distance below ``1e-4`` of its terms) the
    two systems are aligned and their difference measured directly: then the distance is
    exact to rounding, whatever the partition of the work.
    """
    if score_method == "angular":
        den = np.sqrt(a.sq_norm * b.sq_norm)
        if den == 0:
            raise ValueError(
                "Invalid value in distance_matrix(): a system is zero after centring (every "
                "stimulus has the same pattern). Expected varying patterns."
            )
        if nuc / den <= 1 - 1e-4:
            return float(np.arccos(np.clip(nuc / den, -1.0, 1.0)))
        return _angle(*_aligned(a, b, 1 / np.sqrt(a.sq_norm), 1 / np.sqrt(b.sq_norm)))
    sa, sb = a.scale, b.scale
    terms = sa**2 * a.sq_norm + sb**2 * b.sq_norm
    d2 = terms - 2 * sa * sb * nuc
    if d2 >= 1e-4 * terms:
        return float(np.sqrt(d2))
    u, v = _aligned(a, b, sa, sb)
    return float(np.linalg.norm(u - v))


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
