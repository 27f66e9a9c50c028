"""``neuroalign run RECIPE``: run any recipe, whatever its kind."""

from __future__ import annotations

from neuroalign.cli._app import OutOption, Overwrite, RecipeArg, SetOption, app, run_recipe_command


@app.command("run")
def run_cmd(recipe: RecipeArg, out: OutOption = None, sets: SetOption = None,
            overwrite: Overwrite = False) -> None:
    """Run a recipe of any kind (fit, rsa, shape, map, decode, generate): its top-level kind
    says which runner runs it, and a recipe whose tables do not fit its kind is an error.

    Relative paths in the recipe are relative to the recipe file; relative paths given with
    --set are relative to the current directory. Writes the runner's outputs and run.json
    (the recipe, the --set overrides and the package versions). An existing output folder is
    an error unless it is an earlier output of the same kind and --overwrite is given; a
    folder of your own files is never replaced.
    """
    run_recipe_command(recipe, kind=None, out=out, sets=sets, overwrite=overwrite)
