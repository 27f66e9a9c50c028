"""The recipe schema: strict keys with "did you mean", kinds, the path rule, the default
output folder, --set, and docs/recipes.md checked against the schema in code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from neuroalign.cli import app
from neuroalign.exceptions import DataFormatError
from neuroalign.recipes import RECIPE_KINDS, default_out, load_recipe, reference_markdown
from neuroalign.recipes._kinds import SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
FIT = ('kind = "fit"\n[store]\npath = "data/store.zarr"\n[features]\nmodel = "simulated-truth"\n'
       'layers = ["layer1"]\n[encoder]\nkind = "ridge"\n')


def _write(tmp_path, text: str, name: str = "r.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, match", [
    (FIT.replace('kind = "ridge"', 'kind = "ridge"\nalpha = [1.0]'),
     r"r.toml: unknown key 'alpha' in \[encoder\]; did you mean 'alphas'\? Expected one of 'kind', 'alphas'"),
    (FIT + "[store.simulate]\nout = 'sim'\nn_image = 3\n",
     r"unknown key 'n_image' in \[store.simulate\]; did you mean 'n_images'\?.*"
     r"\(or a keyword argument of neuroalign.datasets.simulate"),
    (FIT + "[outputs]\nn_boots = 3\n", r"unknown key 'n_boots' in \[outputs\]; did you mean 'n_boot'\?"),
    (FIT + "[encoder.params]\nfit_intercep = true\n",
     r"unknown key 'fit_intercep' in \[encoder.params\]; did you mean 'fit_intercept'\?"),
    (FIT + "[rsa]\nmethod = 'pearson'\n",
     r"table \[rsa\] does not belong in this recipe kind \(it is a table of 'rsa' recipes\)"),
    (FIT.replace('kind = "fit"', 'kind = "fitt"'), r"kind = 'fitt'; expected one of 'fit', 'rsa', "
     r"'shape', 'map', 'decode', 'generate'; did you mean 'fit'\?"),
    (FIT.replace('kind = "fit"\n', ''), r"no 'kind' key; every recipe says what it runs .*"
     r"\(its tables look like a 'fit' recipe\)"),
    (FIT.replace('kind = "ridge"', 'kind = "ridge"\ncv = "5"'), r"\[encoder\] cv = '5'; expected an integer"),
    (FIT.replace('kind = "ridge"', 'kind = "ridge"\nalphas = { logspace = [1, 2] }'),
     r"alphas = \{'logspace': \[1, 2\]\}; expected an array of numbers or \{ logspace = \[low, high, n\] \}"),
    ('kind = "map"\n[store]\npath = "s.zarr"\n',
     r"a map recipe needs \[results\] \(layer scores\) or \[features\]"),
])
def test_strict_recipes(tmp_path, text, match):
    with pytest.raises(DataFormatError, match=match):
        load_recipe(_write(tmp_path, text))


@pytest.mark.parametrize("sets, match", [
    (["store.paht=x"], r"--set 'store.paht=x': a fit recipe has no key 'paht' in \[store\]; did you "
                       r"mean 'path'\?"),
    (["encoder.alpha=1"], r"no key 'alpha' in \[encoder\]; did you mean 'alphas'\?"),
    (["encoder.params.fit_intercep=false"], r"no key 'fit_intercep' in \[encoder.params\]; did you "
                                            r"mean 'fit_intercept'\?"),
    (["stor.path=x"], r"no key 'stor' in the top level; did you mean 'store'\?"),
    (["kind=rsa"], r"the kind of a recipe cannot be overridden"),
    (["store=x"], r"\[store\] is a table; set one of its keys"),
    (["store.path"], r"Invalid --set 'store.path': expected TABLE.KEY=VALUE"),
    (["encoder.cv=five"], r"\[encoder\] cv = 'five'; expected an integer"),
])
def test_strict_set(tmp_path, sets, match):
    with pytest.raises(DataFormatError, match=match):
        load_recipe(_write(tmp_path, FIT), sets=sets)


def test_set_values_are_toml_or_strings(tmp_path):
    r = load_recipe(_write(tmp_path, FIT), sets=[
        "encoder.cv=3", "encoder.alphas=[0.1, 10]", "store.rois=V1v", 'store.test_split="val"',
        "encoder.params.fit_intercept=false"])
    enc = r.config["encoder"]
    assert enc["cv"] == 3 and enc["alphas"] == [0.1, 10] and enc["params"] == {"fit_intercept": False}
    assert r.config["store"]["rois"] == "V1v" and r.config["store"]["test_split"] == "val"
    assert r.sets[0] == "encoder.cv=3"


def test_path_rule_and_default_output(tmp_path, monkeypatch):
    sub = tmp_path / "study"
    sub.mkdir()
    recipe = _write(sub, FIT + "[features.x]\n" if False else FIT, "fit.toml")
    monkeypatch.chdir(tmp_path)
    r = load_recipe(Path("study/fit.toml"))
    # a relative path in the file is relative to the recipe's folder, not to the cwd
    assert r.config["store"]["path"] == str(sub / "data" / "store.zarr")
    assert default_out(r) == sub / "fit-results"
    # a relative path given with --set is relative to the cwd
    r = load_recipe(recipe, sets=["store.path=other/s.zarr", "outputs.dir=out"])
    assert r.config["store"]["path"] == str(tmp_path / "other" / "s.zarr")
    assert default_out(r) == tmp_path / "out"
    # [outputs] dir in the file: relative to the file
    r = load_recipe(_write(sub, FIT + '[outputs]\ndir = "res"\n', "fit2.toml"))
    assert default_out(r) == sub / "res"
    # model names are not paths; absolute paths stay as they are
    r = load_recipe(_write(sub, FIT.replace("data/store.zarr", "/abs/store.zarr")
                           .replace('kind = "ridge"', 'kind = "ridge"') + '[outputs]\n', "f3.toml"))
    assert r.config["store"]["path"] == "/abs/store.zarr"
    assert r.config["features"]["model"] == "simulated-truth"


def test_every_kind_documented_and_doc_matches_the_code():
    """docs/recipes.md holds the reference generated from the schema the code checks."""
    text = (ROOT / "docs" / "recipes.md").read_text()
    m = re.search(r"<!-- schema: begin -->\n(.*)<!-- schema: end -->", text, re.S)
    assert m, "docs/recipes.md lost its schema markers"
    assert m.group(1) == reference_markdown(), (
        "docs/recipes.md is out of date with neuroalign/recipes/_kinds.py: regenerate the part "
        "between the schema markers with neuroalign.recipes.reference_markdown()")
    assert tuple(SCHEMAS) == RECIPE_KINDS
    for kind in RECIPE_KINDS:
        assert f'### kind = "{kind}"' in text
        assert re.search(rf"\| `{kind}` \|", text), kind  # the overview table


def test_reference_names_every_key():
    """A key added to a schema shows up in the reference (and so in the docs)."""
    md = reference_markdown()
    for kind, (_, root) in SCHEMAS.items():
        part = md.split(f'### kind = "{kind}"')[1].split("### kind =")[0]

        _walk(root, part, kind)


def _walk(table, part: str, kind: str, path=()):
    for key in table.keys:
        if key.type in ("table", "tables") and key.table is not None:
            sub = path + ((key.name, "NAME") if key.type == "tables" else (key.name,))
            assert f"`[{'.'.join(sub)}]`" in part, (kind, sub)
            _walk(key.table, part, kind, sub)
        else:
            assert f"| `{key.name}` |" in part, (kind, path, key.name)


def test_command_of_another_kind_is_refused(tmp_path):
    recipe = _write(tmp_path, FIT)
    for command in ("rsa", "shape", "decode", "generate"):
        res = CliRunner().invoke(app, [command, str(recipe)])
        assert res.exit_code == 2
        assert f"kind = 'fit', not a {command} recipe. Run it with `neuroalign fit`" in res.output


def test_help_lists_commands_in_pipeline_order_with_usual_metavars():
    res = CliRunner().invoke(app, ["--help"])
    names = [ln.split()[0] for ln in res.output.split("Commands:")[1].splitlines()
             if ln.startswith("  ") and not ln.startswith("   ")]
    assert names == ["simulate", "ingest", "info", "store", "features", "fit", "rsa", "shape", "map",
                     "decode", "generate", "run", "report", "demo"]
    for command in ("fit", "rsa", "shape", "decode", "generate", "run"):
        text = CliRunner().invoke(app, [command, "--help"]).output
        assert "RECIPE" in text.splitlines()[0], text
        for option in ("-o, --out PATH", "--set TABLE.KEY=VALUE", "--overwrite"):
            assert option in text, (command, option)
    assert "{PATH}" in CliRunner().invoke(app, ["map", "--help"]).output
    assert "{STORE}" in CliRunner().invoke(app, ["info", "--help"]).output
    assert "-o, --out PATH" in CliRunner().invoke(app, ["map", "--help"]).output


def test_features_from_a_file(tmp_path, own_data):
    root, store, feats = own_data
    text = (f'kind = "fit"\n[store]\npath = "{store}"\n[features]\npath = "{feats}"\nlayers = "good"\n'
            '[encoder]\nkind = "ridge"\n')
    r = load_recipe(_write(tmp_path, text))
    assert r.config["features"]["path"] == str(feats)
    with pytest.raises(DataFormatError, match=r"reads features from a file; 'weights' do not apply"):
        load_recipe(_write(tmp_path, text.replace('layers = "good"', 'layers = "good"\nweights = "x"')))
    with pytest.raises(DataFormatError, match=r"needs exactly one of 'model'"):
        load_recipe(_write(tmp_path, text.replace('layers = "good"', 'model = "m"')))
