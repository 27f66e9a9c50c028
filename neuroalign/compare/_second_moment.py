"""Second-moment RDM comparisons: ``cosine_cov``, ``pearson_cov`` and ``bures``.

Each RDM ``D`` over ``n`` stimuli is mapped to its double-centred second-moment matrix
``G = -1/2 H D H`` (``H = I - 11^T / n``), and the comparison is made between the ``G``:
``cosine_cov`` is ``<Ga, Gb>_F / (||Ga||_F ||Gb||_F)`` (rsatoolbox ``"cosine_cov"`` with
``sigma_k=None``: the whitened comparison of Diedrichsen et al. 2020), ``pearson_cov`` the
same after centring the RDM vectors (rsatoolbox ``"corr_cov"``), and ``bures`` the Bures
similarity ``tr((Ga^1/2 Gb Ga^1/2)^1/2) / sqrt(tr Ga tr Gb)``.

**Missing pairs.** When some dissimilarities are missing (NaN; e.g. the pairs of a stimulus
with its own copy in a bootstrap resample), rsatoolbox's covariance weighting double-centres
by least squares over the pairs present (``_cov_weighting``). That equals the exact
double-centring ``G = -1/2 H D* H`` of the RDM ``D*`` whose missing entries are imputed
so that ``G`` is zero there: ``G_ij = Y_ij - c_i - c_j`` on the pairs present and on the
diagonal (``Y = -1/2 D``, zero at missing pairs), ``G_ij = 0`` at missing pairs, where
``c = b / 2`` solves ``N b = Y 1`` with ``N = I + (Deg + Adj) / 2`` for the graph of the
pairs present (``N >= I``, always invertible). ``G`` then has zero row sums, and
``cosine_cov`` / ``pearson_cov`` equal rsatoolbox's on the same RDMs (pinned by the tests
to ~1e-15). rsatoolbox's ``bures`` drops the missing entries and reshapes the shorter
vector into a smaller RDM of the wrong pairs (or fails); neuroalign's ``bures`` uses the
same ``G`` as the covariance weighting, so every method scores such an RDM the same way.

A comparison is undefined when a ``G`` is zero (to rounding, relative to the RDM's
magnitude), i.e. for an RDM whose dissimilarities (present) are all zero; for ``bures`` also when ``tr G <= 0`` (possible only with negative
dissimilarities, e.g. crossnobis). ``bures`` can exceed 1 when a ``G`` is not positive
semi-definite (RDMs that are not squared Euclidean distances; missing pairs), as
rsatoolbox's does.
"""

from __future__ import annotations

import numpy as np

from neuroalign.compare._rdm import vector_squareform

__all__ = ["gram_from_vectors", "second_moment_compare"]

_EPS = np.finfo(np.float64).eps


def gram_from_vectors(v: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Double-centred second-moment matrices ``(k, n, n)`` from RDM vectors.

    Parameters
    ----------
    v : ndarray
        ``(k, m)`` upper-triangle vectors of the pairs present (all ``n (n-1) / 2`` pairs
        when ``keep`` is None).
    keep : ndarray of bool, optional
        ``(n (n-1) / 2,)``: which pairs ``v`` holds; the others are missing (see the module
        docstring).
    """
    if keep is None or keep.all():
        Y = -0.5 * vector_squareform(v)
        rm = Y.mean(axis=1, keepdims=True)
        return Y - rm - np.swapaxes(rm, 1, 2) + rm.mean(axis=2, keepdims=True)
    full = np.zeros((len(v), len(keep)))
    full[:, keep] = v
    Y = -0.5 * vector_squareform(full)
    obs = vector_squareform(keep.astype(np.float64))
    n = obs.shape[0]
    N = 0.5 * (np.diag(obs.sum(axis=1)) + obs) + np.eye(n)
    c = 0.5 * np.linalg.solve(N, Y.sum(axis=2).T).T  # (k, n)
    G = Y - c[:, :, None] - c[:, None, :]
    G *= obs + np.eye(n)
    return G


def _undefined(G: np.ndarray, norms: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rows whose ``G`` is zero to rounding (relative to the RDM vector's magnitude)."""
    n = G.shape[-1]
    scale = np.abs(v).max(axis=1) if v.shape[1] else np.zeros(len(v))
    return norms <= 64 * _EPS * n * scale


def _bures(Ga: np.ndarray, Gb: np.ndarray) -> np.ndarray:
    """rsatoolbox's Bures similarity for all pairs: ``sum sqrt(max(eig(M), 0)) / sqrt(tr Ga
    tr Gb)`` with ``M = Ga+^1/2 Gb Ga+^1/2`` (``Ga+``: negative eigenvalues clipped).

    ``M`` is formed on the range of ``Ga+`` only (its eigenvalues above ``n eps`` of the
    largest): every ``G`` has the constant vector in its null space, and the square roots of
    rounding-level eigenvalues of ``M`` along such null directions would add errors of
    ~1e-9 each.
    """
    n = Ga.shape[-1]
    tb = np.trace(Gb, axis1=1, axis2=2)
    out = np.empty((len(Ga), len(Gb)))
    for i in range(len(Ga)):
        va, ua = np.linalg.eigh(Ga[i])
        r = va > n * _EPS * max(np.abs(va).max(), np.finfo(np.float64).tiny)
        S = ua[:, r] * np.sqrt(va[r])[None, :]  # M's nonzero spectrum: eig(S^T Gb S)
        K = np.swapaxes(S, 0, 1)[None] @ Gb @ S[None]
        ev = np.linalg.eigvalsh((K + np.swapaxes(K, 1, 2)) / 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i] = np.sqrt(np.maximum(ev, 0)).sum(axis=1) / np.sqrt(np.trace(Ga[i]) * tb)
    return out


def second_moment_compare(a: np.ndarray, b: np.ndarray, method: str,
                          keep: np.ndarray | None = None):
    """``(similarities (ka, kb), undefined_a (ka,), undefined_b (kb,))`` for
    ``cosine_cov``, ``pearson_cov`` or ``bures``; undefined entries are NaN."""
    ra, rb = a, b  # magnitudes before centring: what "zero to rounding" is relative to
    if method == "pearson_cov":
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
    Ga, Gb = gram_from_vectors(a, keep), gram_from_vectors(b, keep)
    fa, fb = Ga.reshape(len(Ga), -1), Gb.reshape(len(Gb), -1)
    na = np.sqrt(np.einsum("ij,ij->i", fa, fa))
    nb = np.sqrt(np.einsum("ij,ij->i", fb, fb))
    bad_a, bad_b = _undefined(Ga, na, ra), _undefined(Gb, nb, rb)
    if method == "bures":  # a non-positive trace (e.g. negative crossnobis) has no root
        bad_a |= ~(np.trace(Ga, axis1=1, axis2=2) > 0)
        bad_b |= ~(np.trace(Gb, axis1=1, axis2=2) > 0)
        sim = _bures(Ga, Gb)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = (fa @ fb.T) / na[:, None] / nb[None, :]
    sim[bad_a] = np.nan
    sim[:, bad_b] = np.nan
    return sim, bad_a, bad_b
