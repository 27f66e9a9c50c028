"""Reconstructions judged against chance and against the input a refinement started from.

A reconstruction metric on its own says little: 2-way identification of 0.83 is far above
chance (0.5) and still worse than the blurry low-level prediction the diffusion step
started from (0.91). :func:`check_reconstructions` scores the reconstructions, the same
metrics on mismatched pairs (chance), and, when given, the same metrics on the baseline
images (e.g. Brain-Diffuser's low-level prediction before img2img), and says in words
whether the reconstructions beat chance and whether the refinement improved on its input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from neuroalign._validation import check_option, check_positive_int
from neuroalign.decoders import metrics as M
from neuroalign.exceptions import DimensionError

__all__ = ["ReconstructionCheck", "check_reconstructions"]

#: chance of 2-way identification, by construction
TWO_WAY_CHANCE = 0.5


@dataclass(frozen=True)
class ReconstructionCheck:
    """Scores of reconstructions next to chance and to a baseline, with paired tests.

    What :func:`check_reconstructions` returns (a dataclass; fields as parameters).

    Parameters
    ----------
    scores : dict of str -> float
        The metrics of :func:`~neuroalign.decoders.metrics.evaluate_reconstructions`.
    chance : dict of str -> float
        Each metric's chance level: 0.5 for 2-way identification; for PixCorr, SSIM and
        correlation distance the mean score of each reconstruction against the wrong
        ground-truth images (cyclic shifts of the test set).
    p_chance : dict of str -> float
        One-sided p of "better than chance", paired over images (t-test of each image's
        score against its own chance level; 2-way: against 0.5).
    baseline : dict of str -> float or None
        The same metrics for the baseline images (what the refinement started from).
    p_better, p_worse : dict of str -> float or None
        One-sided p of "better than the baseline" and of "worse than the baseline", paired
        over images.
    higher_is_better : dict of str -> bool
        The direction of each metric.
    baseline_name : str
        What the baseline images are (e.g. ``"low-level input"``).
    alpha : float
        Level of the tests.
    """

    scores: dict[str, float]
    chance: dict[str, float]
    p_chance: dict[str, float]
    baseline: dict[str, float] | None
    p_better: dict[str, float] | None
    p_worse: dict[str, float] | None
    higher_is_better: dict[str, bool]
    baseline_name: str = "baseline"
    alpha: float = 0.05

    @property
    def above_chance(self) -> dict[str, bool]:
        """Per metric: the reconstructions score better than chance (p < alpha)."""
        return {m: bool(p < self.alpha) for m, p in self.p_chance.items()}

    @property
    def beats_baseline(self) -> dict[str, bool] | None:
        """Per metric: better than the baseline (p < alpha); None without a baseline."""
        return None if self.p_better is None else {m: bool(p < self.alpha) for m, p in self.p_better.items()}

    @property
    def below_baseline(self) -> dict[str, bool] | None:
        """Per metric: worse than the baseline (p < alpha); None without a baseline."""
        return None if self.p_worse is None else {m: bool(p < self.alpha) for m, p in self.p_worse.items()}

    @property
    def improves_on_baseline(self) -> bool | None:
        """True when the reconstructions beat the baseline on every metric."""
        b = self.beats_baseline
        return None if b is None else all(b.values())

    def summary(self) -> str:
        """The verdict in one sentence.

        Returns
        -------
        str
            Above chance on k/m metrics; better and worse than the baseline on j/m and w/m,
            with each metric's scores.
        """
        m = len(self.scores)
        k = sum(self.above_chance.values())
        text = f"above chance on {k}/{m} metrics (paired over images; p < {self.alpha:g})"
        b, w = self.beats_baseline, self.below_baseline
        if b is None or w is None:
            return text + "; no baseline to compare them with."
        j, nw = sum(b.values()), sum(w.values())
        pairs = "; ".join(f"{name} {self.scores[name]:.3f} vs {self.baseline[name]:.3f}"
                          for name in self.scores)
        text += (f"; better than the {self.baseline_name} on {j}/{m} and worse on {nw}/{m} "
                 f"({pairs})")
        if j == m:
            return text + ": the refinement improves on its input."
        if nw == m:
            return text + ": the refinement makes its input worse."
        if nw:
            return text + ": the refinement makes its input worse on some metrics."
        return text + ": the refinement does not clearly improve on its input."

    def to_dict(self) -> dict[str, float | str]:
        """Flat table: ``<metric>``, ``<metric> chance``, ``<metric> p above chance`` and, with
        a baseline, ``<metric> <baseline_name>``, ``<metric> p better than <baseline_name>``,
        ``<metric> p worse than <baseline_name>``; then ``verdict`` (:meth:`summary`).

        Returns
        -------
        dict of str to float or str
            The flat table (one CSV row).
        """
        out: dict[str, float | str] = {}
        b = self.baseline_name
        for name, value in self.scores.items():
            out[name] = value
            out[f"{name} chance"] = self.chance[name]
            out[f"{name} p above chance"] = self.p_chance[name]
            if self.baseline is not None:
                out[f"{name} {b}"] = self.baseline[name]
                out[f"{name} p better than {b}"] = self.p_better[name]
                out[f"{name} p worse than {b}"] = self.p_worse[name]
        out["verdict"] = self.summary()
        return out

    def rows(self) -> list[dict[str, object]]:
        """One row per metric, for a report table.

        Returns
        -------
        list of dict
            ``metric``, ``reconstructions``, ``chance``, ``p (above chance)`` and, with a
            baseline, its score and the two paired p-values.
        """
        rows = []
        for name, value in self.scores.items():
            row: dict[str, object] = {"metric": name, "reconstructions": round(value, 4),
                                      "chance": round(self.chance[name], 4),
                                      "p (above chance)": float(f"{self.p_chance[name]:.2g}")}
            if self.baseline is not None:
                row[self.baseline_name] = round(self.baseline[name], 4)
                row["p (better)"] = float(f"{self.p_better[name]:.2g}")
                row["p (worse)"] = float(f"{self.p_worse[name]:.2g}")
            rows.append(row)
        return rows


def _p_greater(diff: np.ndarray) -> float:
    """One-sided p of mean(diff) > 0 (t-test); exact 0/1 when every difference is equal."""
    from scipy.stats import ttest_1samp

    diff = np.asarray(diff, dtype=float)
    if not np.isfinite(diff).all():
        return float("nan")
    if np.allclose(diff, diff[0], rtol=0, atol=1e-12):
        return 0.0 if diff[0] > 0 else 1.0
    return float(ttest_1samp(diff, 0.0, alternative="greater").pvalue)


def check_reconstructions(
    recons,
    targets,
    *,
    baseline=None,
    baseline_name: str = "baseline",
    networks: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    distance_networks: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    preset: str = "simulated",
    n_shifts: int = 5,
    alpha: float = 0.05,
) -> ReconstructionCheck:
    """Score reconstructions against chance and, optionally, against a baseline.

    Each metric is scored per image, so that "above chance" and "better/worse than the
    baseline" are one-sided paired t-tests over the test images at level ``alpha``, not
    comparisons of two means.

    Parameters
    ----------
    recons, targets : array-like (N, H, W, 3)
        Reconstructions and the ground-truth images, row for row (N >= 2).
    baseline : array-like (N, h, w, 3), optional
        What the reconstructions were refined from, row for row (e.g. the low-level
        prediction of img2img); scored with the same metrics.
    baseline_name : str
        Its name in tables and sentences (e.g. ``"low-level input"``).
    networks, distance_networks, preset
        As :func:`~neuroalign.decoders.metrics.evaluate_reconstructions`.
    n_shifts : int
        Mismatched pairings averaged for the chance level of PixCorr, SSIM and correlation
        distance (cyclic shifts by 1..n_shifts, capped at N - 1).
    alpha : float
        Level of the tests.

    Returns
    -------
    ReconstructionCheck

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> gt = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    >>> res = check_reconstructions(gt, gt, baseline=gt // 2 + 64)
    >>> res.above_chance["PixCorr"], res.beats_baseline["SSIM"]
    (True, True)
    """
    check_option(preset, tuple(M.PRESETS), name="preset", func="check_reconstructions")
    n_shifts = check_positive_int(n_shifts, name="n_shifts", func="check_reconstructions")
    p = M.PRESETS[preset]
    rec, gt = M._pair(recons, targets)
    if len(gt) < 2:
        raise DimensionError(f"check_reconstructions() needs at least 2 images; got {len(gt)}.")
    base = None
    if baseline is not None:
        base, _ = M._pair(baseline, gt)
    shifts = range(1, min(n_shifts, len(gt) - 1) + 1)
    small = {name: M.resize_images(x, p.image_size, antialias=p.antialias)
             for name, x in (("rec", rec), ("gt", gt), ("base", base)) if x is not None}
    per: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}  # matched, chance, base
    higher: dict[str, bool] = {}
    for key, fn in (("PixCorr", M.pixcorr), ("SSIM", M.ssim)):
        def score(a, b, fn=fn):
            return fn(a, b, size=None, per_image=True)
        chance_i = np.mean([score(small["rec"], np.roll(small["gt"], k, axis=0)) for k in shifts], axis=0)
        per[key] = (score(small["rec"], small["gt"]), chance_i,
                    None if base is None else score(small["base"], small["gt"]))
        higher[key] = True
    for name, fn in (networks or {}).items():
        fg, fr = fn(gt), fn(rec)
        per[f"{name} 2-way"] = (M.two_way_identification(fg, fr, per_image=True),
                                np.full(len(gt), TWO_WAY_CHANCE),
                                None if base is None else M.two_way_identification(fg, fn(base), per_image=True))
        higher[f"{name} 2-way"] = True
    for name, fn in (distance_networks or {}).items():
        fg, fr = fn(gt), fn(rec)
        chance_i = np.mean([M.correlation_distance(np.roll(fg, k, axis=0), fr, per_image=True)
                            for k in shifts], axis=0)
        per[f"{name} corr-dist"] = (M.correlation_distance(fg, fr, per_image=True), chance_i,
                                    None if base is None else M.correlation_distance(fg, fn(base), per_image=True))
        higher[f"{name} corr-dist"] = False
    sign = {k: 1.0 if h else -1.0 for k, h in higher.items()}
    scores = {k: float(np.mean(v[0])) for k, v in per.items()}
    chance = {k: float(np.mean(v[1])) for k, v in per.items()}
    p_chance = {k: _p_greater(sign[k] * (v[0] - v[1])) for k, v in per.items()}
    base_scores = p_better = p_worse = None
    if base is not None:
        base_scores = {k: float(np.mean(v[2])) for k, v in per.items()}
        p_better = {k: _p_greater(sign[k] * (v[0] - v[2])) for k, v in per.items()}
        p_worse = {k: _p_greater(sign[k] * (v[2] - v[0])) for k, v in per.items()}
    return ReconstructionCheck(scores=scores, chance=chance, p_chance=p_chance, baseline=base_scores,
                               p_better=p_better, p_worse=p_worse, higher_is_better=higher,
                               baseline_name=baseline_name, alpha=alpha)
