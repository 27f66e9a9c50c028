"""RSA inference: model scores with bootstrap confidence intervals, model-difference tests
and the noise ceiling (rsatoolbox conventions where they exist, named where they differ).

- score of a model = mean over subjects of ``compare_rdms(model, subject)``.
- bootstrap ``"stimulus"``: resample stimuli with replacement (rsatoolbox
  ``bootstrap_sample_pattern``); dissimilarities between two copies of the same stimulus
  are missing (rsatoolbox sets them to NaN), not scored as 0, and every method scores the
  resample as rsatoolbox's ``compare`` does on the resampled RDMs: the covariance-weighted
  methods (``cosine_cov``, ``pearson_cov``) double-centre over the pairs present, and
  ``bures`` uses the same second-moment matrices (see ``_second_moment``). Resamples with
  fewer than 3 distinct stimuli are left out, as in rsatoolbox's ``eval_bootstrap``.
  ``"subject"``: resample subjects (data RDMs) with replacement. ``"both"``: both at
  once. No variance correction is applied (rsatoolbox's ``eval_dual_bootstrap`` adds an
  internal cross-validation and the ``n_cv`` correction); the ``"both"`` intervals are
  therefore conservative (wider). Stimuli are resampled in the order of their
  ``stimulus_id`` and subjects in the order of their labels, so the result for a seed does
  not depend on the order of the rows.
- samples left out: those of fewer than 3 distinct stimuli, and, per model, those whose
  comparison is undefined (a resampled RDM with all dissimilarities equal, e.g. a
  categorical model on stimuli of one category). A :class:`DataQualityWarning` says how
  many; ``n_valid`` holds the count per model. When fewer than half of ``n_bootstrap``
  samples remain for a model (or for the samples shared by two models, for their
  difference), :class:`~neuroalign.exceptions.BootstrapError` is raised: intervals and
  p-values are never computed from a handful of samples (or none).
- confidence intervals: percentiles of the scored bootstrap samples.
- ``p_zero``: one-sided ``(#(sample <= 0) + 1) / (n_valid + 1)``.
- model differences: two-sided bootstrap p-value
  ``min(1, 2 min(P(diff <= 0), P(diff >= 0)))``, each ``P = (count + 1) / (n + 1)`` over the
  ``n`` samples scored for both models (ties count on both sides: identical models get 1).
- noise ceiling (rsatoolbox ``boot_noise_ceiling`` on the full data): lower = mean over
  subjects of ``compare(pool(other subjects), subject)`` (leave one subject out), upper =
  mean of ``compare(pool(all subjects), subject)``. Pooling is method-specific as in
  rsatoolbox: cosine and cosine_cov divide each RDM by its RMS then average; pearson and
  pearson_cov z-score then average; spearman, rho_a and tau_a average the ranks; bures
  averages the RDMs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import xarray as xr

from neuroalign._logging import get_logger, progress
from neuroalign._validation import check_option, check_positive_int
from neuroalign.compare._compare_rdms import (
    COMPARE_METHODS,
    _compare_vectors,
    as_rdm_vectors,
    rank_average,
)
from neuroalign.compare._data_rdms import data_rdms
from neuroalign.compare._inputs import align_stimuli
from neuroalign.compare._rdm import RDM_DIMS, rdm, squareform_vector, vector_squareform
from neuroalign.exceptions import BootstrapError, DataQualityWarning, DimensionError

__all__ = ["rsa", "rsa_noise_ceiling", "pool_rdms"]

log = get_logger(__name__)

BOOTSTRAPS = ("stimulus", "subject", "both", "none")
MIN_DISTINCT = 3  # resamples of fewer distinct stimuli are left out (rsatoolbox's rule)
MIN_VALID_FRACTION = 0.5  # fewer scored samples than this share of n_bootstrap: error


def _rdm_set(x: Any, *, name: str, batch: str, model_metric: str) -> tuple[np.ndarray, list[str], Any]:
    """RDMs as square stack ``(k, n, n)``, their labels and their stimulus ids."""
    if isinstance(x, Mapping):
        labels, mats, ids = [], [], None
        for key, value in x.items():
            if isinstance(value, xr.DataArray | xr.Dataset) and not (
                isinstance(value, xr.DataArray) and set(RDM_DIMS) <= set(value.dims)
            ):
                value = rdm(value, model_metric)
            elif not isinstance(value, xr.DataArray):
                arr = np.asarray(value)
                if arr.ndim == 2 and arr.shape[0] != arr.shape[1]:
                    value = rdm(arr, model_metric)
            vec, shape, _, _, vid = as_rdm_vectors(value, name=f"{name}[{key!r}]", func="rsa")
            if shape != ():
                raise DimensionError(
                    f"Invalid value for {name}[{key!r}] in rsa(): a stack of {len(vec)} RDMs. "
                    "Expected one RDM (or one features matrix) per entry."
                )
            if ids is None and vid is not None:
                ids = vid
            elif vid is not None:
                idx = align_stimuli(ids, vid, names=(name, f"{name}[{key!r}]"), func="rsa",
                                    n_a=len(ids), n_b=len(vid))
                if idx is not None:
                    vec = squareform_vector(vector_squareform(vec)[:, idx][:, :, idx])
            labels.append(str(key))
            mats.append(vec[0])
        if not mats:
            raise ValueError(f"Invalid value for {name!r} in rsa(): empty. Expected RDMs.")
        return _finite(vector_squareform(np.stack(mats)), name), labels, ids
    vec, shape, dims, coords, ids = as_rdm_vectors(x, name=name, func="rsa")
    if dims and len(dims) == 1 and dims[0] in coords:
        labels = [str(v) for v in coords[dims[0]].values]
    else:
        labels = [f"{batch}-{i}" for i in range(len(vec))]
    return _finite(vector_squareform(vec), name), labels, ids


def _features_of_store(models: Mapping, store: xr.Dataset) -> dict:
    """Model features (not RDMs) restricted to the store's stimuli, joined on ``stimulus_id``
    (:func:`neuroalign.store.match_stimuli`): a features table may describe more stimuli
    than the store holds, in any order; a stimulus of the store without features is named."""
    from neuroalign.store._join import match_stimuli

    want = np.unique(np.asarray(store["stimulus_id"].values).astype(str))
    out = {}
    for key, value in models.items():
        is_features = isinstance(value, xr.DataArray | xr.Dataset) and not set(RDM_DIMS) <= set(value.dims)
        coord = value.coords.get("stimulus_id") if is_features else None
        if coord is not None and coord.ndim == 1:
            rows = match_stimuli(coord.values, want, have_name=f"models[{key!r}]",
                                 want_name="the store", func="rsa")
            value = value.isel({coord.dims[0]: rows})
        out[key] = value
    return out


def _finite(D: np.ndarray, name: str) -> np.ndarray:
    bad = ~np.isfinite(squareform_vector(D))
    if bad.any():
        raise ValueError(
            f"Invalid value for {name!r} in rsa(): {int(bad.sum())} NaN or infinite "
            "dissimilarities. Expected complete RDMs (the stimulus bootstrap handles repeated "
            "stimuli itself)."
        )
    return D


def pool_rdms(vectors: np.ndarray, method: str) -> np.ndarray:
    """Pool RDM vectors into one, the way rsatoolbox pools for ``method``.

    Parameters
    ----------
    vectors : ndarray, shape (k, m)
        ``k`` RDMs as vectors of their ``m`` upper-triangle entries.
    method : str
        The comparison the pooled RDM is for (see :func:`compare_rdms`): cosine methods
        normalise each RDM's root mean square, Pearson methods z-score, rank methods
        rank, before the mean.

    Returns
    -------
    ndarray, shape (m,)
        The pooled RDM vector.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if method in ("cosine", "cosine_cov"):
        v = v / np.sqrt(np.mean(v**2, axis=1, keepdims=True))
    elif method in ("pearson", "pearson_cov"):
        with np.errstate(invalid="ignore", divide="ignore"):  # a constant RDM: NaN, and the
            # comparison with it raises
            v = (v - v.mean(axis=1, keepdims=True)) / v.std(axis=1, keepdims=True)
    elif method in ("spearman", "rho_a", "tau_a"):
        v = rank_average(v)
    pooled = v.mean(axis=0)
    if method in ("pearson", "pearson_cov"):
        pooled = pooled - pooled.min()
    return pooled


def rsa_noise_ceiling(data: Any, method: str = "spearman") -> tuple[float, float]:
    """Lower (leave-one-subject-out) and upper bounds of the noise ceiling.

    Parameters
    ----------
    data : array-like or xr.DataArray
        Data RDMs of at least 2 subjects: ``(n_subjects, n, n)``, a DataArray with a
        ``subject`` dim and ``('stimulus_i', 'stimulus_j')``, or a dict subject -> RDM.
    method : str
        The comparison method (see :func:`compare_rdms`).

    Returns
    -------
    (float, float)
        ``(lower, upper)``, see the module docstring for the definitions.
    """
    check_option(method, COMPARE_METHODS, name="method", func="rsa_noise_ceiling")
    D, _, _ = _rdm_set(data, name="data", batch="subject", model_metric="correlation")
    return _noise_ceiling(squareform_vector(D), method)


def _noise_ceiling(dv: np.ndarray, method: str) -> tuple[float, float]:
    s = len(dv)
    if s < 2:
        raise ValueError(
            f"Invalid value for 'data' in rsa(noise_ceiling=True): {s} subject RDM. Expected at "
            "least 2 subjects (or pseudo-subjects, see pseudo_subjects()) for a noise ceiling."
        )
    upper_ref = pool_rdms(dv, method)[None]
    upper = _compare_vectors(upper_ref, dv, method, "noise_ceiling")[0]
    lower = np.empty(s)
    for i in range(s):
        ref = pool_rdms(np.delete(dv, i, axis=0), method)[None]
        lower[i] = _compare_vectors(ref, dv[i:i + 1], method, "noise_ceiling")[0, 0]
    return float(lower.mean()), float(upper.mean())


def _p_two_sided(diff: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p over the last axis, from the samples where ``diff`` is finite."""
    n = np.isfinite(diff).sum(axis=-1)
    le = (np.sum(diff <= 0, axis=-1) + 1) / (n + 1)
    ge = (np.sum(diff >= 0, axis=-1) + 1) / (n + 1)
    return np.minimum(1.0, 2 * np.minimum(le, ge))


def _score_resample(M: np.ndarray, D: np.ndarray, sidx: np.ndarray, counts: np.ndarray,
                    method: str, pairs: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Score of each model on one resample: stimuli ``sidx`` (sorted, with repeats; the
    pairs of a stimulus with its own copies are missing, as rsatoolbox marks them NaN) and
    subjects weighted by ``counts``. NaN for a model whose comparison is undefined."""
    iu, ju = pairs if pairs is not None else np.triu_indices(len(sidx), k=1)
    a, c = sidx[iu], sidx[ju]
    keep = a != c
    a, c = a[keep], c[keep]
    used = np.flatnonzero(counts)
    sims = _compare_vectors(M[:, a, c], D[used][:, a, c], method, "rsa", keep=keep, nan=True)
    return sims @ counts[used] / counts[used].sum()


def _bootstrap(M, D, per_subject, method, bootstrap, n_boot, rng, sorder, disable):
    """Bootstrap distribution ``(k, n_boot)`` and the samples left out for drawing fewer
    than ``MIN_DISTINCT`` distinct stimuli."""
    k, s, n = len(M), len(D), D.shape[-1]
    pairs = np.triu_indices(n, k=1)
    boots = np.full((k, n_boot), np.nan)
    few = np.zeros(n_boot, dtype=bool)
    counts = np.ones(s)
    for b in progress(range(n_boot), desc="rsa bootstrap", total=n_boot, disable=disable):
        if bootstrap in ("subject", "both"):
            counts = np.empty(s)
            counts[sorder] = np.bincount(rng.integers(0, s, s), minlength=s)
        if bootstrap == "subject":
            boots[:, b] = per_subject @ counts / s
            continue
        sidx = np.sort(rng.integers(0, n, n))
        if len(np.unique(sidx)) < MIN_DISTINCT:
            few[b] = True
            continue
        boots[:, b] = _score_resample(M, D, sidx, counts, method, pairs)
    return boots, few


def _check_samples(boots: np.ndarray, few: np.ndarray, labels: list[str], n_boot: int) -> None:
    """Warn about samples left out; raise when fewer than ``MIN_VALID_FRACTION`` remain."""
    valid = np.isfinite(boots)
    n_valid = valid.sum(axis=1)
    n_few = int(few.sum())
    undefined = n_boot - n_few - n_valid
    if n_few or undefined.any():
        parts = []
        if n_few:
            parts.append(f"{n_few} drew fewer than {MIN_DISTINCT} distinct stimuli (left out, "
                         "as rsatoolbox does)")
        if undefined.any():
            bad = [f"{labels[i]!r} ({undefined[i]})" for i in np.flatnonzero(undefined)]
            shown = ", ".join(bad[:5]) + (f", ... ({len(bad) - 5} more)" if len(bad) > 5 else "")
            parts.append("the comparison was undefined (an RDM with all dissimilarities equal "
                         f"over the resampled stimuli) for model {shown}")
        warnings.warn(
            f"rsa(): bootstrap samples left out of {n_boot}: {'; '.join(parts)}. Intervals and "
            f"p-values use the samples left ({int(n_valid.min())} at least).",
            DataQualityWarning, stacklevel=3,
        )
    need = int(np.ceil(MIN_VALID_FRACTION * n_boot))
    joint = valid.astype(np.int64) @ valid.T.astype(np.int64)
    if joint.min() < need:  # a model first, then a pair of models
        own = np.diag(joint)
        i = j = int(np.argmin(own))
        if own[i] >= need:
            i, j = np.unravel_index(np.argmin(joint), joint.shape)
        which = f"model {labels[i]!r}" if i == j else f"models {labels[i]!r} and {labels[j]!r}"
        raise BootstrapError(
            f"rsa(): only {int(joint[i, j])} of {n_boot} bootstrap samples could be scored for "
            f"{which} ({n_few} drew fewer than {MIN_DISTINCT} distinct stimuli, the others an "
            f"undefined comparison). Expected at least {need} (half of n_bootstrap) for "
            "intervals and p-values: use more stimuli, models whose dissimilarities vary within "
            "small sets of stimuli, or bootstrap='subject'."
        )


def rsa(
    models: Any,
    data: Any,
    *,
    method: Literal[
        "cosine", "pearson", "spearman", "rho_a", "tau_a", "cosine_cov", "pearson_cov", "bures"
    ] = "spearman",
    bootstrap: Literal["stimulus", "subject", "both", "none"] = "stimulus",
    n_bootstrap: int = 1000,
    noise_ceiling: bool = True,
    ci: float = 0.95,
    model_metric: str = "correlation",
    data_metric: str = "correlation",
    seed: int | None = 0,
    show_progress: bool | None = None,
) -> xr.Dataset:
    """Compare model RDMs with data RDMs, with bootstrap inference and a noise ceiling.

    Parameters
    ----------
    models : dict, array or xr.DataArray
        Model RDMs: a dict name -> RDM or name -> features ``(n_stimuli, n_channels)``
        (turned into RDMs with ``model_metric``), a stack ``(n_models, n, n)``, or a
        DataArray with a ``model`` dim and ``('stimulus_i', 'stimulus_j')``.
    data : dict, array, xr.DataArray or xr.Dataset
        Data RDMs, one per subject: as ``models`` (e.g. from :func:`data_rdms`), or a
        store, turned into one RDM per ``subject`` by :func:`data_rdms` with
        ``data_metric``. Labelled RDMs are joined on ``stimulus_id``.
    method : str
        RDM comparison (see :func:`compare_rdms`).
    bootstrap : {"stimulus", "subject", "both", "none"}
        What to resample for the confidence intervals and model-difference tests.
    n_bootstrap : int
        Bootstrap samples.
    noise_ceiling : bool
        Compute the noise ceiling (needs at least 2 subjects).
    ci : float
        Confidence level of the percentile intervals.
    model_metric : str
        RDM metric for models given as features.
    data_metric : str
        RDM metric when ``data`` is a store.
    seed : int, optional
        Seed of the bootstrap.
    show_progress : bool, optional
        Progress bar over bootstrap samples (default: when on a terminal).

    Returns
    -------
    xr.Dataset
        On dim ``model``: ``score`` (mean similarity over subjects), ``ci_low``,
        ``ci_high``, ``se`` (bootstrap standard deviation), ``p_zero`` (one-sided
        bootstrap p of score <= 0); on ``(model, sample)``: ``bootstrap``; on
        ``(model, model_other)``: ``difference`` (score of model minus model_other) and
        ``p_difference`` (two-sided); on ``subject``-free scalars:
        ``noise_ceiling_lower`` and ``noise_ceiling_upper`` (NaN when not computed);
        ``per_subject`` on ``(model, subject)``; ``n_valid`` on ``model``: the bootstrap
        samples scored (the others are NaN in ``bootstrap``; see the module docstring).
        Attrs: method, bootstrap, n_bootstrap, ci.

    Raises
    ------
    BootstrapError
        When fewer than half of the bootstrap samples can be scored for a model.

    Examples
    --------
    Three subjects whose voxels read a latent space; one model shares it, one does not:

    >>> import numpy as np
    >>> from neuroalign.compare import rdm, rsa
    >>> rng = np.random.default_rng(0)
    >>> latent = rng.standard_normal((20, 4))
    >>> subjects = {f"sub-{s}": rdm(latent @ rng.standard_normal((4, 15))
    ...                             + 0.5 * rng.standard_normal((20, 15))) for s in range(3)}
    >>> models = {"good": rdm(latent), "noise": rdm(rng.standard_normal((20, 4)))}
    >>> result = rsa(models, subjects, n_bootstrap=50, seed=0)
    >>> result["score"].round(2).to_series().to_dict()
    {'good': 0.63, 'noise': 0.06}
    >>> bool(result["score"].sel(model="good") > result["ci_high"].sel(model="noise"))
    True
    >>> float(result.noise_ceiling_lower) <= float(result.noise_ceiling_upper)
    True
    """
    check_option(method, COMPARE_METHODS, name="method", func="rsa")
    check_option(bootstrap, BOOTSTRAPS, name="bootstrap", func="rsa")
    n_boot = check_positive_int(n_bootstrap, name="n_bootstrap", func="rsa")
    if not 0 < ci < 1:
        raise ValueError(f"Invalid value for 'ci' in rsa(): {ci!r}. Expected 0 < ci < 1.")
    if isinstance(data, xr.Dataset):
        if isinstance(models, Mapping) and "stimulus_id" in data.coords:
            models = _features_of_store(models, data)
        data = data_rdms(data, data_metric)
    M, mlabels, mids = _rdm_set(models, name="models", batch="model", model_metric=model_metric)
    D, slabels, dids = _rdm_set(data, name="data", batch="subject", model_metric=model_metric)
    if M.shape[-1] != D.shape[-1] and (mids is None or dids is None):
        raise DimensionError(
            f"rsa(): model RDMs are over {M.shape[-1]} stimuli and data RDMs over "
            f"{D.shape[-1]}. Expected the same stimuli."
        )
    idx = align_stimuli(dids, mids, names=("data", "models"), func="rsa",
                        n_a=D.shape[-1], n_b=M.shape[-1])
    if idx is not None:
        M = M[:, idx][:, :, idx]
    n, s, k = D.shape[-1], len(D), len(M)
    if bootstrap in ("subject", "both") and s < 2:
        raise ValueError(
            f"Invalid value for 'bootstrap' in rsa(): {bootstrap!r} with {s} subject RDM. "
            "Expected at least 2 subjects to resample subjects; use bootstrap='stimulus'."
        )
    if bootstrap in ("stimulus", "both") and n < 4:
        raise ValueError(
            f"Invalid value for 'bootstrap' in rsa(): {bootstrap!r} with {n} stimuli. "
            "Expected at least 4 stimuli to resample stimuli."
        )
    # canonical orders (stimuli by id, subjects by label): the resamples drawn for a seed do
    # not depend on the order of the rows or of the subjects
    ids = dids if dids is not None else mids
    if ids is not None:
        order = np.argsort(ids, kind="stable")
        D, M = D[:, order][:, :, order], M[:, order][:, :, order]
    sorder = np.argsort(np.asarray(slabels), kind="stable")
    mv, dv = squareform_vector(M), squareform_vector(D)
    per_subject = _compare_vectors(mv, dv, method, "rsa")  # (k, s)
    score = per_subject.mean(axis=1)

    boots = np.full((k, n_boot), np.nan)
    if bootstrap != "none":
        disable = None if show_progress is None else not show_progress
        boots, few = _bootstrap(M, D, per_subject, method, bootstrap, n_boot,
                                np.random.default_rng(seed), sorder, disable)
        _check_samples(boots, few, mlabels, n_boot)
    tail = (1 - ci) / 2
    n_valid = np.isfinite(boots).sum(axis=1)
    if bootstrap == "none":
        lo = hi = se = p_zero = np.full(k, np.nan)
        diff_p = np.full((k, k), np.nan)
    else:
        lo = np.nanquantile(boots, tail, axis=1)
        hi = np.nanquantile(boots, 1 - tail, axis=1)
        se = np.nanstd(boots, axis=1, ddof=1) if n_valid.min() > 1 else np.full(k, np.nan)
        p_zero = (np.sum(boots <= 0, axis=1) + 1) / (n_valid + 1)
        diff_p = _p_two_sided(boots[:, None, :] - boots[None, :, :])
        np.fill_diagonal(diff_p, 1.0)
    nc_lo = nc_hi = np.nan
    if noise_ceiling:
        nc_lo, nc_hi = _noise_ceiling(dv, method)
    ds = xr.Dataset(
        {
            "score": ("model", score),
            "ci_low": ("model", lo),
            "ci_high": ("model", hi),
            "se": ("model", se),
            "p_zero": ("model", p_zero),
            "bootstrap": (("model", "sample"), boots),
            "difference": (("model", "model_other"), score[:, None] - score[None, :]),
            "p_difference": (("model", "model_other"), diff_p),
            "n_valid": ("model", n_valid),
            "per_subject": (("model", "subject"), per_subject),
            "noise_ceiling_lower": ((), nc_lo),
            "noise_ceiling_upper": ((), nc_hi),
        },
        coords={"model": mlabels, "model_other": mlabels, "subject": slabels},
        attrs={"method": method, "bootstrap": bootstrap, "n_bootstrap": n_boot, "ci": ci,
               "higher_is_better": 1},
    )
    return ds
