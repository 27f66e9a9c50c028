"""``neuroalign fit RECIPE``: a whole encoding study from a recipe."""

from __future__ import annotations

from neuroalign.cli._app import OutOption, Overwrite, RecipeArg, SetOption, app, run_recipe_command


@app.command("fit")
def fit_cmd(recipe: RecipeArg, out: OutOption = None, sets: SetOption = None,
            overwrite: Overwrite = False) -> None:
    """Fit voxelwise encoders as a fit recipe says: store, features, encoder, CV and outputs.

    Writes results.zarr (per-neuroid score, best alpha/layer, ceiling-normalised score),
    summary.json (per-ROI summaries with bootstrap intervals) and run.json. An existing
    output folder is an error unless it is an earlier fit's output and --overwrite is given;
    a folder of your own files (or one holding the input store) is never replaced.
    """
    run_recipe_command(recipe, kind="fit", out=out, sets=sets, overwrite=overwrite)
