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
    """Scores of reconstructions next to chance and to a baseline.

    Attributes
    ----------
    scores : dict of str -> float
        The metrics of :func:`~neuroalign.decoders.metrics.evaluate_reconstructions`.
    chance : dict of str -> float
        Each metric's chance level: 0.5 for 2-way identification; for PixCorr, SSIM and
        correlation distance the mean score of each reconstruction against the wrong
        ground-truth images (cyclic shifts of the test set).
    baseline : dict of str -> float or None
        The same metrics for the baseline images (what the refinement started from).
    higher_is_better : dict of str -> bool
    baseline_name : str
    """

    scores: dict[str, float]
    chance: dict[str, float]
    baseline: dict[str, float] | None
    higher_is_better: dict[str, bool]
    baseline_name: str = "baseline"

    def _better(self, a: float, b: float, metric: str) -> bool:
        return bool(a > b) if self.higher_is_better[metric] else bool(a < b)

    @property
    def above_chance(self) -> dict[str, bool]:
        """Per metric: the reconstructions score better than chance."""
        return {m: self._better(v, self.chance[m], m) for m, v in self.scores.items()}

    @property
    def beats_baseline(self) -> dict[str, bool] | None:
        """Per metric: the reconstructions score better than the baseline (None without one)."""
        if self.baseline is None:
            return None
        return {m: self._better(v, self.baseline[m], m) for m, v in self.scores.items()}

    @property
    def improves_on_baseline(self) -> bool | None:
        """True when the reconstructions beat the baseline on every metric."""
        b = self.beats_baseline
        return None if b is None else all(b.values())

    def summary(self) -> str:
        """One sentence (no commas, so that it fits a CSV cell): above chance on k/m metrics;
        better than the baseline on j/m."""
        m = len(self.scores)
        k = sum(self.above_chance.values())
        text = f"above chance on {k}/{m} metrics"
        b = self.beats_baseline
        if b is None:
            return text + " (no baseline to compare the reconstructions with)."
        j = sum(b.values())
        pairs = "; ".join(f"{name} {self.scores[name]:.3f} vs {self.baseline[name]:.3f}"
                          for name in self.scores)
        text += f"; better than the {self.baseline_name} on {j}/{m} ({pairs})"
        if j == m:
            return text + ": the refinement improves on its input."
        if j == 0:
            return text + ": the refinement makes its input worse."
        return text + ": the refinement does not improve on its input on every metric."

    def to_dict(self) -> dict[str, float | str]:
        """Flat table: ``metric``, ``metric chance``, ``metric <baseline_name>`` and ``verdict``."""
        out: dict[str, float | str] = {}
        for name, value in self.scores.items():
            out[name] = value
            out[f"{name} chance"] = self.chance[name]
            if self.baseline is not None:
                out[f"{name} {self.baseline_name}"] = self.baseline[name]
        out["verdict"] = self.summary()
        return out

    def rows(self) -> list[dict[str, object]]:
        """One row per metric, for a report table."""
        rows = []
        for name, value in self.scores.items():
            row: dict[str, object] = {"metric": name, "reconstructions": round(value, 4),
                                      "chance": round(self.chance[name], 4)}
            if self.baseline is not None:
                row[self.baseline_name] = round(self.baseline[name], 4)
                row["better than " + self.baseline_name] = "yes" if self.beats_baseline[name] else "NO"
            row["better than chance"] = "yes" if self.above_chance[name] else "NO"
            rows.append(row)
        return rows


def _shift_mean(fn: Callable[[np.ndarray, np.ndarray], float], a, b, shifts: int) -> float:
    """Mean of ``fn(a, roll(b, k))`` over ``k = 1..shifts``: every pair mismatched."""
    return float(np.mean([fn(a, np.roll(b, k, axis=0)) for k in range(1, shifts + 1)]))


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
) -> ReconstructionCheck:
    """Score reconstructions against chance and, optionally, against a baseline.

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
    shifts = min(n_shifts, len(gt) - 1)
    size, aa = p.image_size, p.antialias
    pix = lambda a, b: M.pixcorr(a, b, size=size, antialias=aa)  # noqa: E731
    ssim = lambda a, b: M.ssim(a, b, size=size, antialias=aa)  # noqa: E731
    scores = {"PixCorr": pix(rec, gt), "SSIM": ssim(rec, gt)}
    chance = {"PixCorr": _shift_mean(pix, rec, gt, shifts), "SSIM": _shift_mean(ssim, rec, gt, shifts)}
    higher = {"PixCorr": True, "SSIM": True}
    base_scores = None if base is None else {"PixCorr": pix(base, gt), "SSIM": ssim(base, gt)}
    for name, fn in (networks or {}).items():
        key = f"{name} 2-way"
        fg, fr = fn(gt), fn(rec)
        scores[key], chance[key], higher[key] = M.two_way_identification(fg, fr), TWO_WAY_CHANCE, True
        if base_scores is not None:
            base_scores[key] = M.two_way_identification(fg, fn(base))
    for name, fn in (distance_networks or {}).items():
        key = f"{name} corr-dist"
        fg, fr = fn(gt), fn(rec)
        scores[key], higher[key] = M.correlation_distance(fg, fr), False
        chance[key] = _shift_mean(lambda a, b: M.correlation_distance(b, a), fr, fg, shifts)
        if base_scores is not None:
            base_scores[key] = M.correlation_distance(fg, fn(base))
    return ReconstructionCheck(scores=scores, chance=chance, baseline=base_scores,
                               higher_is_better=higher, baseline_name=baseline_name)
