"""``neuroalign rsa RECIPE`` and ``neuroalign shape RECIPE``."""

from __future__ import annotations

from neuroalign.cli._app import OutOption, Overwrite, RecipeArg, SetOption, app, run_recipe_command


@app.command("rsa")
def rsa_cmd(recipe: RecipeArg, out: OutOption = None, sets: SetOption = None,
            overwrite: Overwrite = False) -> None:
    """Representational similarity analysis with noise ceilings, per ROI, as an rsa recipe says.

    Writes per ROI a score table (CSV), a model bar plot with the noise ceiling and RDM
    heatmaps (PNG), and run.json. An existing output folder is an error unless it is an
    earlier RSA output and --overwrite is given; a folder of your own files is never replaced.
    """
    run_recipe_command(recipe, kind="rsa", out=out, sets=sets, overwrite=overwrite)


@app.command("shape")
def shape_cmd(recipe: RecipeArg, out: OutOption = None, sets: SetOption = None,
              overwrite: Overwrite = False) -> None:
    """Pairwise generalised shape distances among systems (model layers, ROIs), as a shape
    recipe says: distances.csv, an MDS figure and run.json.

    An existing output folder is an error unless it is an earlier shape output and
    --overwrite is given; a folder of your own files is never replaced.
    """
    run_recipe_command(recipe, kind="shape", out=out, sets=sets, overwrite=overwrite)
