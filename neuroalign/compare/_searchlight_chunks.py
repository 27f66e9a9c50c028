"""The work of one chunk of searchlight centres: gather each centre's patterns, form every
centre's RDM with one batched matrix product, and compare the RDMs with the model RDMs
(vectorised over centres for pearson, cosine, spearman and rho_a). Used by
:func:`neuroalign.compare.searchlight`, in threads or as cached cells."""

from __future__ import annotations

import numpy as np

from neuroalign.compare._compare_rdms import _compare_vectors
from neuroalign.compare._ranks import _rank_torch, rank_average

__all__: list[str] = []

_FAST = ("pearson", "cosine", "spearman", "rho_a")
_EPS = np.finfo(np.float64).eps


def _chunk_rdms(X, table, metric: str, device):
    """RDM vectors ``(c, n_pairs)`` of the neighbourhoods in ``table`` (``-1`` = padding),
    and which centres have a stimulus whose pattern is constant (correlation undefined).

    Patterns are gathered as ``(c, w, n)`` (voxels x stimuli per centre), padding set to
    0, centred over each neighbourhood's own voxels for ``"correlation"``, and each voxel
    over the stimuli for the Euclidean metrics (distances do not change, and the
    expansion ``|x_i|^2 + |x_j|^2 - 2 x_i.x_j`` no longer loses every digit to a baseline
    far above the differences); one batched matrix product gives every centre's Gram
    matrix. Each centre's RDM depends on its own neuroids only: padding is assigned 0,
    never multiplied by 0 (the neuroid that fills it may be NaN, and NaN * 0 = NaN)."""
    n = X.shape[0]
    c, w = table.shape
    valid = table >= 0
    pad = ~valid
    # the neuroids this chunk needs, transposed (stimuli last), then whole rows gathered
    # into (c, w, n); padding gathers some neuroid of the chunk and is overwritten
    used, local = np.unique(np.where(valid, table, table[valid][0]), return_inverse=True)
    XT = np.ascontiguousarray(np.take(X, used, axis=1).T, dtype=np.float64)
    P = np.take(XT, local.reshape(table.shape), axis=0)
    del XT
    P[pad] = 0.0
    count = valid.sum(1).astype(np.float64)
    iu = np.triu_indices(n, k=1)
    if metric == "correlation":
        ones = valid[:, None, :].astype(np.float64)  # (c, 1, w): sums over the voxels
        raw = np.einsum("cwn,cwn->cn", P, P)  # a constant row c: |c|^2 w
        mean = np.matmul(ones, P)  # (c, 1, n)
        mean /= count[:, None, None]
        P -= mean
        P[pad] = 0.0
    else:
        P -= P.mean(axis=2, keepdims=True)  # padding rows stay 0
    if device is not None:
        import torch

        Pt = torch.as_tensor(P, device=device)
        sq = (Pt * Pt).sum(1)
        G = Pt.transpose(1, 2) @ Pt
        sq, G = sq.cpu().numpy(), G.cpu().numpy()
        del Pt
    else:
        sq = np.einsum("cwn,cwn->cn", P, P)
        G = np.matmul(P.transpose(0, 2, 1), P)
    del P
    if metric == "correlation":
        # centring a constant row c leaves errors of a few eps |c| per voxel: a centred norm
        # below 64 eps |c| sqrt(w) = 64 eps * the uncentred norm is zero in exact arithmetic
        norms = np.sqrt(sq)
        const = norms <= 64 * _EPS * np.sqrt(raw)
        bad = const.any(1)
        norms[const] = 1.0
        r = G[:, iu[0], iu[1]]
        r /= norms[:, iu[0]] * norms[:, iu[1]]
        d = np.subtract(1.0, r, out=r)
    else:
        d = sq[:, iu[0]] + sq[:, iu[1]] - 2 * G[:, iu[0], iu[1]]
        np.maximum(d, 0, out=d)
        if metric == "sqeuclidean":
            d /= count[:, None]
        else:
            np.sqrt(d, out=d)
        bad = np.zeros(c, dtype=bool)
    return d, bad


class _Models:
    """Model RDM vectors prepared once for the fast comparison methods.

    ``keep``: which of all ``n (n-1) / 2`` pairs ``vb`` holds (None: all). The
    second-moment methods need it to place the pairs present among the stimuli."""

    def __init__(self, vb: np.ndarray, method: str, device, keep: np.ndarray | None = None):
        self.method, self.device, self.raw = method, device, vb
        self.keep = None if keep is None or keep.all() else keep
        m = vb.shape[1]
        if method in ("spearman", "rho_a"):
            rb = _rank_torch(vb, device) if device is not None else rank_average(vb)
            v = rb - (m + 1) / 2.0
        elif method == "pearson":
            v = vb - vb.mean(1, keepdims=True)
        else:
            v = vb.copy()
        norms = np.sqrt(np.einsum("ij,ij->i", v, v))
        if method in ("pearson", "spearman", "cosine"):
            tol = 0.0 if method != "pearson" else \
                64 * _EPS * np.sqrt(m) * np.abs(vb).max(1)
            if np.any(norms <= tol):
                raise ValueError(
                    "Invalid value for 'models' in searchlight(): model RDM(s) "
                    f"{np.flatnonzero(norms <= tol)[:5].tolist()!r} have all dissimilarities "
                    f"equal (zero norm after centring), so {method!r} is undefined. Expected "
                    "model RDMs with varying dissimilarities."
                )
            v = v / norms[:, None]
        self.v = v

    def compare(self, d: np.ndarray) -> np.ndarray:
        """Similarities ``(c, k)`` of data RDM vectors ``d`` (NaN where undefined)."""
        method, m = self.method, d.shape[1]
        if method not in _FAST:
            return _compare_vectors(d, self.raw, method, "searchlight", self.device,
                                    keep=self.keep, nan=True)
        if method in ("spearman", "rho_a"):
            a = _rank_torch(d, self.device) if self.device is not None else rank_average(d)
            a -= (m + 1) / 2.0
        elif method == "pearson":
            tol = 64 * _EPS * np.sqrt(m) * np.abs(d).max(1)
            a = d - d.mean(1, keepdims=True)
        else:
            a = d
        if method == "rho_a":
            return 12.0 * (a @ self.v.T) / (float(m) ** 3 - m)
        na = np.sqrt(np.einsum("ij,ij->i", a, a))
        undefined = na <= (tol if method == "pearson" else 0.0)
        na[undefined] = 1.0
        out = (a @ self.v.T) / na[:, None]
        out[undefined] = np.nan
        return out


def _centre_chunk(X, prepared: _Models, bad_vox, keep, rdm_metric: str, dev, centres, table) -> dict:
    """One chunk of centres -> similarities ``(k, c)``, which centres are undefined, and
    their neighbourhood sizes (also the task of a cached cell, see ``cluster=``)."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow: named below, as NaN
        d, const = _chunk_rdms(X, table, rdm_metric, dev)
    valid = table >= 0
    # a centre is undefined when one of its own neuroids is bad (padding is no neuroid),
    # or when its RDM is not finite all the same (an overflow): such rows are set to 0
    # before the comparison, so no NaN is ever ranked as a value, and then made NaN
    bad = const | (bad_vox[np.where(valid, table, 0)] & valid).any(1)
    bad |= ~np.isfinite(d).all(1)
    if bad.any():
        d[bad] = 0.0
    sim = prepared.compare(d[:, keep] if not keep.all() else d)
    sim[bad] = np.nan
    return {"sim": np.ascontiguousarray(sim.T), "bad": bad, "sizes": valid.sum(1)}
