"""Centred kernel alignment (Kornblith et al. 2019), matching their reference code.

Conventions (the copies in Brain-Score, thingsvision and Net2Brain differ):

- biased CKA centres the Gram matrices with ``H = I - 11^T/n``:
  ``CKA = <HKH, HLH>_F / (||HKH||_F ||HLH||_F)``; for the linear kernel this equals
  ``||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``, which is used when cheaper;
- debiased CKA uses the U-centring of Szekely & Rizzo (zero diagonal, sums divided by
  ``n - 2``), i.e. the unbiased HSIC estimator; it can be negative;
- the RBF kernel is ``exp(-||x_i - x_j||^2 / (2 threshold^2 median))`` where ``median`` is
  the median of ALL squared distances, the zero diagonal INCLUDED (Kornblith's choice;
  Brain-Score and thingsvision drop the zeros and get other values);
- columns are centred but not z-scored (Net2Brain z-scores every column first);
- CKA does not depend on the units of either representation (each is rescaled to unit
  peak before its kernel is formed, which changes no value but keeps data in units of
  1e-100 or 1e100 from underflowing or overflowing); channels constant over stimuli to
  rounding are exactly 0 after centring (:func:`centre_columns`), so a representation that
  is constant raises instead of giving a CKA of rounding noise.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from neuroalign._config import resolve_device
from neuroalign._validation import check_option
from neuroalign.compare._inputs import (
    align_stimuli,
    as_matrix,
    centre_columns,
    check_finite,
    is_torch,
    to_torch,
)
from neuroalign.exceptions import DimensionError

__all__ = ["cka", "CKA", "gram_linear", "gram_rbf", "center_gram"]


def gram_linear(X):
    """Linear kernel ``X X^T``."""
    return X @ X.T


def gram_rbf(X, threshold: float = 1.0):
    """RBF kernel with the median heuristic, the zero diagonal included in the median."""
    g = X @ X.T
    sq = g.diagonal() if is_torch(g) else np.diagonal(g)
    d2 = (sq[:, None] + sq[None, :] - 2 * g).clip(min=0)
    if not is_torch(d2):
        med = np.median(d2)
    else:  # torch's median is the lower middle value; numpy averages the two
        flat = d2.flatten().sort().values
        k = flat.numel()
        med = flat[k // 2] if k % 2 else (flat[k // 2 - 1] + flat[k // 2]) / 2
    if float(med) <= 0:
        raise ValueError(
            "Invalid value for 'X' in cka(kernel='rbf'): the median squared distance between "
            "stimuli is 0 (more than half the pairs are identical), so the median-heuristic "
            "bandwidth is undefined. Expected mostly distinct patterns, or use kernel='linear'."
        )
    return (-d2 / (2 * threshold**2 * med)).exp() if is_torch(d2) else np.exp(
        -d2 / (2 * threshold**2 * med)
    )


def center_gram(G, debiased: bool = False):
    """Centre a Gram matrix: ``HGH`` (biased) or the U-centring (debiased)."""
    G = G.clone() if is_torch(G) else np.array(G, dtype=np.float64, copy=True)
    n = G.shape[0]
    if debiased:
        if n < 4:
            raise DimensionError(
                f"Invalid value for 'X' in cka(debiased=True): {n} stimuli. "
                "Expected at least 4 stimuli for the unbiased HSIC estimator."
            )
        _fill_diag(G, 0)
        means = G.sum(axis=0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
        G = G - means[:, None] - means[None, :]
        _fill_diag(G, 0)
    else:
        means = G.mean(axis=0)
        means = means - means.mean() / 2
        G = G - means[:, None] - means[None, :]
    return G


def _fill_diag(G, value):
    if is_torch(G):
        G.fill_diagonal_(value)
    else:
        np.fill_diagonal(G, value)


def _cka_value(Kc, Lc) -> float:
    num = float((Kc * Lc).sum())
    nx = float((Kc * Kc).sum()) ** 0.5
    ny = float((Lc * Lc).sum()) ** 0.5
    if nx == 0 or ny == 0:
        which = "X" if nx == 0 else "Y"
        raise ValueError(
            f"Invalid value for {which!r} in cka(): its centred kernel is zero (every stimulus "
            "has the same pattern), so CKA is undefined. Expected varying patterns."
        )
    return num / (nx * ny)


def cka(
    X: Any,
    Y: Any,
    kernel: Literal["linear", "rbf"] = "linear",
    debiased: bool = False,
    *,
    threshold: float = 1.0,
    device: str | None = None,
) -> float:
    """Centred kernel alignment between two representations of the same stimuli.

    Parameters
    ----------
    X, Y : ndarray, torch.Tensor, xr.DataArray or xr.Dataset
        ``(n_stimuli, n_channels)`` each (widths may differ); labelled inputs are joined on
        ``stimulus_id``.
    kernel : {"linear", "rbf"}
        Linear kernel, or RBF with the median heuristic: bandwidth
        ``sigma^2 = threshold^2 * median(squared distances)``, the median taken over all
        ``n^2`` entries INCLUDING the zero diagonal (Kornblith et al.'s code).
    debiased : bool
        U-centred (unbiased HSIC) estimator instead of the biased ``HKH`` one.
    threshold : float
        RBF bandwidth as a fraction of the median distance (Kornblith's ``threshold``).
    device : str, optional
        Compute with torch on this device (``"auto"``, ``"cpu"``, ``"cuda"``).

    Returns
    -------
    float
        CKA; 1 for representations equal up to rotation and isotropic scaling (higher is
        more similar). Not a metric; ``arccos(CKA)`` of the linear kernel is one.
    """
    check_option(kernel, ("linear", "rbf"), name="kernel", func="cka")
    if not threshold > 0:
        raise ValueError(
            f"Invalid value for 'threshold' in cka(): {threshold!r}. Expected a positive number."
        )
    Xm, idx_x, _ = as_matrix(X, name="X", func="cka", keep_torch=True)
    Ym, idx_y, _ = as_matrix(Y, name="Y", func="cka", keep_torch=True)
    idx = align_stimuli(idx_x, idx_y, names=("X", "Y"), func="cka", n_a=Xm.shape[0], n_b=Ym.shape[0])
    if idx is not None:
        Ym = Ym[idx]
    check_finite(Xm, name="X", func="cka")
    check_finite(Ym, name="Y", func="cka")
    if device is not None or is_torch(Xm) or is_torch(Ym):
        dev = resolve_device(device) if device is not None else (
            Xm.device if is_torch(Xm) else Ym.device)
        Xm, Ym = to_torch(Xm, dev), to_torch(Ym, dev)
    else:
        Xm, Ym = np.asarray(Xm, dtype=np.float64), np.asarray(Ym, dtype=np.float64)
    Xm, Ym = _unit_scale(centre_columns(Xm)), _unit_scale(centre_columns(Ym))
    if kernel == "linear" and not debiased and Xm.shape[1] + Ym.shape[1] < Xm.shape[0]:
        num = float((Xm.T @ Ym).square().sum() if is_torch(Xm) else np.sum((Xm.T @ Ym) ** 2))
        nx = _fro(Xm.T @ Xm)
        ny = _fro(Ym.T @ Ym)
        if nx == 0 or ny == 0:
            return _cka_value(gram_linear(Xm), gram_linear(Ym))  # raises the clear error
        return num / (nx * ny)
    if kernel == "linear":
        K, L = gram_linear(Xm), gram_linear(Ym)
    else:
        K, L = gram_rbf(Xm, threshold), gram_rbf(Ym, threshold)
    return _cka_value(center_gram(K, debiased), center_gram(L, debiased))


def _unit_scale(Xc):
    """Centred ``Xc`` divided by its largest magnitude: CKA (every kernel here) does not
    change when a representation is scaled, and the kernels of data in tiny or huge units
    (products of fourth powers) would underflow or overflow."""
    peak = float(abs(Xc).max())
    return Xc / peak if peak > 0 else Xc


def _fro(M) -> float:
    return float((M * M).sum()) ** 0.5


class CKA:
    """Centred kernel alignment as an object: ``CKA(kernel="rbf").score(X, Y)``.

    CKA is a similarity (higher is more similar) and not a metric; see :func:`cka`.

    Parameters
    ----------
    kernel : {"linear", "rbf"}
        Kernel of both representations.
    debiased : bool
        The unbiased HSIC estimator (Song et al. 2012) instead of the plug-in one.
    threshold : float
        RBF bandwidth as a multiple of the median distance (``kernel="rbf"`` only).
    device : str, optional
        Where to compute (see :func:`cka`).
    """

    is_metric = False
    higher_is_better = True

    def __init__(self, kernel: Literal["linear", "rbf"] = "linear", debiased: bool = False,
                 *, threshold: float = 1.0, device: str | None = None) -> None:
        self.kernel = kernel
        self.debiased = debiased
        self.threshold = threshold
        self.device = device

    def fit(self, X: Any, Y: Any) -> CKA:
        """Nothing to fit; returns ``self``.

        Parameters
        ----------
        X, Y : array-like, shape (n_stimuli, n_channels)
            Ignored (CKA has no fitted state).

        Returns
        -------
        CKA
            ``self``.
        """
        return self

    def score(self, X: Any, Y: Any) -> float:
        """CKA between ``X`` and ``Y``.

        Parameters
        ----------
        X, Y : array-like, shape (n_stimuli, n_channels)
            Two representations of the same stimuli (labelled ones joined on
            ``stimulus_id``).

        Returns
        -------
        float
            The CKA similarity, in [0, 1] for the plug-in estimator.
        """
        return cka(X, Y, self.kernel, self.debiased, threshold=self.threshold, device=self.device)
