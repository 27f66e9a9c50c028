"""Recipes: the one orchestration layer above the stages and below the command line.

A recipe is a TOML file with a top-level ``kind`` (fit, rsa, shape, map, decode, generate);
:func:`load_recipe` checks it strictly against its kind's schema (documented in
docs/recipes.md), :func:`run_recipe` runs it, and :func:`write_report` turns any results
folder into one self-contained HTML page. Only this package chains stages or simulates a
brain on demand.
"""

from neuroalign._lazy import attach

_NAMES = {
    "_recipe": ["Recipe", "load_recipe", "default_out", "reference_markdown"],
    "_kinds": ["RECIPE_KINDS"],
    "_registry": ["run_recipe", "versions"],
    "_report": ["write_report"],
    "_truth_features": ["simulated_truth_features", "simulated_truth_tokens"],
}
__getattr__, __dir__ = attach(__name__, _NAMES,
                              torch_names=["simulated_truth_features", "simulated_truth_tokens"])

__all__ = ["RECIPE_KINDS", "Recipe", "load_recipe", "run_recipe", "write_report", "default_out",
           "reference_markdown", "versions", "simulated_truth_features", "simulated_truth_tokens"]
