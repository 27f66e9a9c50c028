"""The solver of :class:`~neuroalign.encoders.BandedRidgeEncoder`: himalaya's random search
over the simplex of per-space scalings (``GroupRidgeCV``), with a memory preflight that
chooses the batch of targets himalaya works on, then each target's cross-validated R² at
its own choice of space weights and alpha.
"""

from __future__ import annotations

import contextlib

import numpy as np

from neuroalign.encoders._solvers import ridge_cv

__all__ = ["CONCENTRATION", "TARGETS_BATCH", "banded_solve"]

CONCENTRATION = (0.1, 1.0)  # himalaya's default Dirichlet concentrations


@contextlib.contextmanager
def _himalaya_backend(device: str):
    """Temporarily set himalaya's backend (numpy on CPU, torch_cuda on GPU)."""
    from himalaya.backend import get_backend, set_backend

    previous = get_backend().name
    set_backend("torch_cuda" if device.startswith("cuda") else "numpy", on_error="raise")
    try:
        yield
    finally:
        set_backend(previous, on_error="warn")


def _to_numpy(x):
    if hasattr(x, "cpu"):
        x = x.cpu()
    return np.asarray(x)


def _candidate_gammas(n_iter: int, n_spaces: int, random_state) -> np.ndarray:
    """The space weights himalaya's random search tries (as ``GroupRidgeCV`` draws them)."""
    from himalaya.kernel_ridge import generate_dirichlet_samples

    gammas = np.asarray(generate_dirichlet_samples(n_samples=n_iter, n_kernels=n_spaces,
                                                   concentration=list(CONCENTRATION),
                                                   random_state=random_state), dtype=np.float64)
    gammas[0] = 1.0 / n_spaces
    return gammas


def _chosen(deltas: np.ndarray, gammas: np.ndarray, alphas: np.ndarray):
    """Candidate index and alpha index of each target from himalaya's ``deltas_``
    (``deltas = log(gamma / alpha)`` with ``sum(gamma) = 1``)."""
    w = np.exp(deltas.astype(np.float64))  # (n_spaces, n_targets)
    alpha = 1.0 / w.sum(0)
    gamma = w * alpha
    it = np.abs(gamma.T[:, None, :] - gammas[None]).sum(-1).argmin(1)
    ai = np.abs(np.log(alpha)[:, None] - np.log(alphas)[None]).argmin(1)
    return it, ai


def _cv_r2_at(mats, Y, gammas, it, ai, alphas, folds, fit_intercept,
              batch: int = 4096) -> np.ndarray:
    """Mean validation R² over ``folds`` of each target at its chosen space weights and
    alpha: the features of each space scaled by ``sqrt(gamma)``, one ridge per candidate,
    on at most ``batch`` of its targets at a time (in float64)."""
    out = np.full(Y.shape[1], np.nan)
    for k in np.unique(it):
        chosen = np.flatnonzero(it == k)
        Z = np.concatenate([m.astype(np.float64) * np.sqrt(g) for m, g in zip(mats, gammas[k], strict=True)], 1)
        for start in range(0, len(chosen), batch):
            cols = chosen[start:start + batch]
            # himalaya's alphas are absolute penalties on Z (numpy: torch is not needed)
            res = ridge_cv(Z, np.asarray(Y[:, cols], dtype=np.float64), alphas, folds,
                           fit_intercept=fit_intercept, relative_alphas=False,
                           dtype=np.float64, n_targets_batch=batch)
            out[cols] = res.cv_r2[ai[cols], np.arange(len(cols))]
    return out


#: Targets himalaya works on at once when the memory allows (its ``n_targets_batch``).
TARGETS_BATCH = 4096


def banded_solve(mats, Yok, folds, alphas, gammas, fit_intercept: bool, random_state,
                 device: str, *, func: str = "BandedRidgeEncoder.fit") -> dict:
    """himalaya's random search over the candidate space weights ``gammas`` for the targets
    ``Yok`` (each target's choice is its own), then each target's cv R² at its choice.

    The batch of targets himalaya works on is the largest (at most :data:`TARGETS_BATCH`)
    whose peak memory fits (:func:`neuroalign._preflight_search.banded_batch`); it raises
    :class:`~neuroalign.exceptions.MemoryPreflightError` before the search starts when not
    even one target fits. On a GPU the batch is :data:`TARGETS_BATCH`.
    """
    from himalaya.ridge import GroupRidgeCV

    batch = TARGETS_BATCH
    if not str(device).startswith("cuda"):  # memory preflight (numpy path)
        from neuroalign._preflight_search import banded_batch

        batch = banded_batch(Yok.shape[0], [m.shape[1] for m in mats], Yok.shape[1],
                             n_alphas=len(alphas), n_iter=len(gammas), n_folds=len(folds),
                             batch=batch, fit_intercept=fit_intercept, func=func)
    with _himalaya_backend(device):
        model = GroupRidgeCV(
            groups="input", fit_intercept=fit_intercept, cv=folds,
            random_state=random_state,
            solver_params={"alphas": alphas, "n_iter": gammas, "progress_bar": False,
                           "n_targets_batch": batch},
        )
        model.fit(mats, Yok)
        coef = _to_numpy(model.coef_)
        deltas = _to_numpy(model.deltas_)
        intercept = _to_numpy(model.intercept_) if fit_intercept else np.zeros(Yok.shape[1])
    it, ai = _chosen(deltas, gammas, alphas)
    cv_r2 = _cv_r2_at(mats, Yok, gammas, it, ai, alphas, folds, fit_intercept, batch)
    return {"coef": coef, "deltas": deltas, "intercept": np.asarray(intercept), "ai": ai,
            "cv_r2": cv_r2}


