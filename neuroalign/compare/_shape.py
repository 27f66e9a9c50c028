"""Generalised shape metrics (Williams et al. 2021), netrep ``LinearMetric`` conventions.

Both representations are centred (per column), partially whitened, and aligned by the
best rotation:

- partial whitening of centred ``X``: eigendecomposition ``X^T X = V diag(lam) V^T`` with
  ``lam`` clipped at ``1e-7`` (this clipping is the regularisation of rank-deficient
  covariances, e.g. more channels than stimuli); ``d = alpha + (1 - alpha) lam^-1/2``,
  rescaled so that the total variance is preserved; ``Z = V diag(d) V^T``. ``alpha = 1``
  is no whitening (Procrustes), ``alpha = 0`` full whitening (CCA).
- fit: ``U S V^T = svd(Xw^T Yw)``, ``Wx = Zx U``, ``Wy = Zy V``.
- score ``"angular"``: ``arccos(<X Wx, Y Wy>_F / (||X Wx||_F ||Y Wy||_F))`` (radians, in
  ``[0, pi/2]``); ``"euclidean"``: ``||X Wx - Y Wy||_F`` (NOT divided by ``sqrt(n)``).
- narrower representations are zero-padded to the wider one's width.

Both scores are metrics (symmetric, triangle inequality) and distances (lower is more
similar). :func:`distance_matrix` computes all pairs among many systems, whitening each
system once: on the training data, the fitted score equals
``arccos(||Xw^T Yw||_* / (||Xw|| ||Yw||))``, so each pair needs only the singular values
of one small cross-product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._config import resolve_device
from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option
from neuroalign.compare._inputs import (
    align_stimuli,
    as_matrix,
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

EIGVAL_TOL = 1e-7


def _check_alpha(alpha: Any, func: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(
            f"Invalid value for 'alpha' in {func}: {alpha!r}. Expected a number in [0, 1] "
            "(1 = Procrustes, 0 = CCA)."
        )
    return float(alpha)


def _new_var(lam, alpha):
    return (alpha**2 * lam + 2 * alpha * (1 - alpha) * lam**0.5 + (1 - alpha) ** 2).sum()


def partial_whiten(X: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Partially whiten centred ``X`` (netrep ``whiten`` with variance preserved).

    Returns ``(X @ Z, Z)``; ``Z`` is the identity when ``alpha > 1 - 1e-7``.
    """
    alpha = _check_alpha(alpha, "partial_whiten()")
    if alpha > 1 - EIGVAL_TOL:
        return X, np.eye(X.shape[1])
    lam, V = np.linalg.eigh(X.T @ X)
    lam = np.maximum(lam, EIGVAL_TOL)
    d = alpha + (1 - alpha) * lam**-0.5
    d = d * np.sqrt(lam.sum() / _new_var(lam, alpha))
    Z = (V * d[None, :]) @ V.T
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
        """Fit the alignment of ``X`` and ``Y`` (same stimuli, rows joined on ids)."""
        self._validate()
        X, Y = _prepare_pair(X, Y, "ShapeMetric.fit")
        X, Y = self._widths(X, Y)
        self.mx_ = X.mean(axis=0)
        self.my_ = Y.mean(axis=0)
        Xw, Zx = partial_whiten(X - self.mx_, self.alpha)
        Yw, Zy = partial_whiten(Y - self.my_, self.alpha)
        if self.alpha < 1 and min(X.shape[1], Y.shape[1]) >= X.shape[0]:
            log.warning(
                "ShapeMetric(alpha=%s): %d channels for %d stimuli; the covariance is rank "
                "deficient and its eigenvalues are clipped at %g.",
                self.alpha, X.shape[1], X.shape[0], EIGVAL_TOL,
            )
        U, _, Vt = np.linalg.svd(Xw.T @ Yw)
        self.Wx_ = Zx @ U
        self.Wy_ = Zy @ Vt.T
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Centre with the training means and apply the fitted maps."""
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
        return (X - self.mx_) @ self.Wx_, (Y - self.my_) @ self.Wy_

    def score(self, X: Any, Y: Any) -> float:
        """Distance between ``X`` and ``Y`` under the fitted alignment."""
        tX, tY = self.transform(X, Y)
        if self.score_method == "angular":
            return _angular(tX, tY)
        return float(np.linalg.norm(tX - tY))

    def fit_score(self, X: Any, Y: Any) -> float:
        """``fit(X, Y).score(X, Y)``."""
        return self.fit(X, Y).score(X, Y)


# ---------------------------------------------------------------- whitening once per system


class _Whitened:
    """A centred, partially whitened system ``B`` (n x r) with the same cross-product
    singular values as netrep's ``X Z``, plus its variance terms.

    ``alpha = 1``: ``B = Xc`` (no decomposition). Otherwise the eigendecomposition of the
    smaller Gram matrix: ``Xc^T Xc = V diag(lam) V^T`` (p <= n) gives ``B = Xc V diag(d)``
    (``= X Z V``, a rotation of netrep's whitened data); ``Xc Xc^T = U diag(lam) U^T``
    (p > n) gives ``B = U diag(sqrt(lam) d)``. Eigenvalues beyond the rank are 0, clipped
    to the tolerance, as in netrep.
    """

    def __init__(self, X, alpha: float):
        self.width = X.shape[1]
        Xc = X - X.mean(axis=0, keepdims=True)
        self.alpha = alpha
        self.identity = alpha > 1 - EIGVAL_TOL
        if self.identity:
            self.B = Xc
            self.lam_sum = self.var_sum = 0.0
            self.sq_norm = float((Xc * Xc).sum())
            return
        torch_in = is_torch(Xc)
        if torch_in:
            import torch

            eigh = torch.linalg.eigh
        else:
            eigh = np.linalg.eigh
        n, p = Xc.shape
        if p <= n:
            lam, V = eigh(Xc.T @ Xc)
            lam = lam.clip(min=EIGVAL_TOL)
            d = alpha + (1 - alpha) * lam**-0.5
            self.B = Xc @ (V * d[None, :])
            n_null = 0
        else:
            lam_raw, U = eigh(Xc @ Xc.T)
            lam = lam_raw.clip(min=EIGVAL_TOL)
            d = alpha + (1 - alpha) * lam**-0.5
            self.B = U * (lam_raw.clip(min=0) ** 0.5 * d)[None, :]
            n_null = p - n
        tol_var = float(_new_var(np.array([EIGVAL_TOL]), alpha))
        self.lam_sum = float(lam.sum()) + n_null * EIGVAL_TOL
        self.var_sum = float(_new_var(lam, alpha)) + n_null * tol_var
        self.sq_norm = float((self.B * self.B).sum())

    def scale(self, width: int) -> float:
        """Variance-preserving factor of netrep's whitening after zero-padding to ``width``."""
        if self.identity:
            return 1.0
        extra = width - self.width
        tol_var = float(_new_var(np.array([EIGVAL_TOL]), self.alpha))
        return float(np.sqrt((self.lam_sum + extra * EIGVAL_TOL) / (self.var_sum + extra * tol_var)))


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
    width = max(a.width, b.width)
    sa, sb = a.scale(width), b.scale(width)
    if score_method == "angular":
        den = np.sqrt(a.sq_norm * b.sq_norm)
        if den == 0:
            raise ValueError(
                "Invalid value in distance_matrix(): a system is zero after centring (every "
                "stimulus has the same pattern). Expected varying patterns."
            )
        return float(np.arccos(np.clip(nuc / den, -1.0, 1.0)))
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
    """
    alpha = _check_alpha(alpha, "shape_distance()")
    check_option(score_method, ("angular", "euclidean"), name="score_method",
                 func="shape_distance")
    X, Y = _prepare_pair(X, Y, "shape_distance")
    a, b = _Whitened(X, alpha), _Whitened(Y, alpha)
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


def distance_matrix(
    systems: Any,
    metric: ShapeMetric | Literal["procrustes", "cca"] = "procrustes",
    *,
    device: str | None = None,
    show_progress: bool | None = None,
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

    Returns
    -------
    xr.DataArray
        Symmetric distances, dims ``('system_i', 'system_j')`` with the names as
        coordinates, zero diagonal; attrs ``alpha`` and ``score_method``.
    """
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
    prepared = []
    for name in progress(names, desc="whitening systems", disable=None if show_progress is None
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
        if not metric.zero_pad and prepared and X.shape[1] != prepared[0].width:
            raise DimensionError(
                f"distance_matrix() with zero_pad=False: system {name!r} has {X.shape[1]} "
                f"channels, {names[0]!r} has {prepared[0].width}. Expected equal widths."
            )
        X = to_torch(X, dev) if dev is not None else np.asarray(to_numpy(X), dtype=np.float64)
        prepared.append(_Whitened(X, float(metric.alpha)))
    m = len(prepared)
    D = np.zeros((m, m))
    for i in range(m - 1):
        rest = prepared[i + 1:]
        Bi = prepared[i].B
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
            D[i, i + 1 + k] = D[i + 1 + k, i] = _pair_distance(
                prepared[i], p, nuc, metric.score_method)
    return xr.DataArray(
        D,
        dims=("system_i", "system_j"),
        coords={"system_i": names, "system_j": names},
        name="distance",
        attrs={"alpha": float(metric.alpha), "score_method": metric.score_method},
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
