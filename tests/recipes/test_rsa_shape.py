"""``neuroalign rsa RECIPE`` and ``neuroalign shape RECIPE``: the rsa and shape runners."""

import json
from pathlib import Path

import numpy as np
import xarray as xr
from typer.testing import CliRunner

from neuroalign.cli import app
from neuroalign.store import save_store
from neuroalign.testing import make_store

runner = CliRunner()


def _setup(tmp_path):
    rois = {"A": np.arange(24) < 12, "B": np.arange(24) >= 12}
    ds, sig = make_store(n_stimuli=12, n_neuroids=24, n_repetitions=2, rois=rois, seed=0,
                         return_signal=True)
    save_store(ds, tmp_path / "store.zarr")
    np.save(tmp_path / "true.npy", sig.values)  # rows in stimulus order of make_store
    avg_ids = ds.na.average_repetitions().stimulus_id.values
    sig = sig.sel(stimulus=[list(sig.stimulus_id.values).index(s) for s in avg_ids])
    rng = np.random.default_rng(0)
    feats = xr.Dataset(
        {"good": sig.rename(neuroid="good_unit").drop_vars("neuroid_id"),
         "noise": (("stimulus", "noise_unit"), rng.standard_normal((12, 8)))},
        coords={"stimulus_id": ("stimulus", avg_ids)},
    )
    feats.to_zarr(tmp_path / "features.zarr", zarr_format=2, consolidated=True)
    return ds


def test_rsa_recipe_writes_tables_and_figures(tmp_path, monkeypatch):
    _setup(tmp_path)
    (tmp_path / "recipe.toml").write_text(
        'kind = "rsa"\n[store]\npath = "store.zarr"\nrois = ["A", "B"]\n[rdm]\nmetric = "correlation"\n'
        'pseudo_subjects = 3\n\n[models]\ngood = "features.zarr:good"\n'
        'noise = "features.zarr:noise"\n\n[rsa]\nmethod = "pearson"\nn_bootstrap = 30\n\n'
        '[outputs]\ndir = "out"\n'
    )
    monkeypatch.chdir(tmp_path.parent)  # paths are relative to the recipe, not to the cwd
    res = runner.invoke(app, ["rsa", str(tmp_path / "recipe.toml")])
    assert res.exit_code == 0, res.output
    assert "noise ceiling" in res.output and "good" in res.output
    for tag in ("A", "B"):
        table = (tmp_path / "out" / f"rsa_{tag}.csv").read_text().splitlines()
        assert table[0] == "model,score,ci_low,ci_high,p_zero"
        scores = {r.split(",")[0]: float(r.split(",")[1]) for r in table[1:]}
        assert scores["good"] > scores["noise"]
        assert (tmp_path / "out" / f"rsa_{tag}.png").stat().st_size > 0
        assert (tmp_path / "out" / f"rdms_{tag}.png").stat().st_size > 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["kind"] == "rsa" and set(run["result"]["rois"]) == {"A", "B"}
    assert run["result"]["rois"]["A"]["models"]["good"]["score"] == scores["good"] or tag == "B"
    # `neuroalign run` runs an RSA recipe as RSA (never as another kind)
    res = runner.invoke(app, ["run", str(tmp_path / "recipe.toml"), "-o", str(tmp_path / "o2"),
                              "--set", "store.rois=A"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o2").glob("rsa_*.csv")) == ["rsa_A.csv"]


def test_rsa_recipe_errors(tmp_path):
    _setup(tmp_path)
    res = runner.invoke(app, ["rsa", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "does not exist" in res.output
    (tmp_path / "r.toml").write_text('kind = "rsa"\n[store]\npath = "store.zarr"\n')
    res = runner.invoke(app, ["rsa", str(tmp_path / "r.toml")])
    assert res.exit_code == 2 and "a rsa recipe needs [models] or [features]" in res.output
    (tmp_path / "r.toml").write_text(
        'kind = "rsa"\n[store]\npath = "store.zarr"\n[models]\nx = "nope.npy"\n[rsa]\nmethod = "pearson"\n')
    res = runner.invoke(app, ["rsa", str(tmp_path / "r.toml"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "nope.npy' does not exist" not in res.output
    assert "nope.npy" in res.output and "no such file" in res.output
    (tmp_path / "r.toml").write_text(
        'kind = "rsa"\n[store]\npath = "store.zarr"\n[models]\nx = "true.npy"\n[rsa]\nmethods = "x"\n')
    res = runner.invoke(app, ["rsa", str(tmp_path / "r.toml")])
    assert res.exit_code == 2
    assert "unknown key 'methods' in [rsa]; did you mean 'method'?" in res.output
    assert "(or a keyword argument of neuroalign.compare.rsa)" in res.output
    (tmp_path / "r.toml").write_text('kind = "rsa"\n[store]\nrois = "A"\n[models]\nx = "true.npy"\n')
    res = runner.invoke(app, ["rsa", str(tmp_path / "r.toml")])
    assert res.exit_code == 2 and "missing key 'path' in [store]" in res.output
    (tmp_path / "r.toml").write_text('kind = "rsa"\n[data]\nstore = "store.zarr"\n')
    res = runner.invoke(app, ["rsa", str(tmp_path / "r.toml")])
    assert res.exit_code == 2 and "unknown key 'data' in the top level" in res.output


def test_shape_recipe(tmp_path):
    _setup(tmp_path)
    recipe = tmp_path / "shape.toml"
    recipe.write_text('kind = "shape"\n[systems]\ng = "features.zarr:good"\nn = "features.zarr:noise"\n'
                      'g2 = "features.zarr:good"\n[shape]\nalpha = 0.5\n')
    res = runner.invoke(app, ["shape", str(recipe)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "shape-results"  # the default output folder: beside the recipe
    lines = (out / "distances.csv").read_text().splitlines()
    assert lines[0] == "system,g,n,g2"
    d = np.array([[float(v) for v in ln.split(",")[1:]] for ln in lines[1:]])
    assert d[0, 2] < 1e-6 and d[0, 1] > 0.1
    assert (out / "mds.png").stat().st_size > 0
    # each ROI's averaged responses are a system too
    res = runner.invoke(app, ["shape", str(recipe), "-o", str(tmp_path / "s2"),
                              "--set", "store.path=" + str(tmp_path / "store.zarr")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s2" / "distances.csv").read_text().splitlines()[0] == "system,g,n,g2,ROI A,ROI B"
    res = runner.invoke(app, ["shape", str(recipe), "--set", "systems.n=features.zarr:missing",
                              "-o", str(tmp_path / "s3")])  # --set paths are relative to the cwd
    assert res.exit_code == 2 and f"{str(Path.cwd() / 'features.zarr')!r}: no such file" in res.output
    res = runner.invoke(app, ["shape", str(recipe), "--set", f"systems.n={tmp_path}/features.zarr:missing",
                              "-o", str(tmp_path / "s3")])
    assert res.exit_code == 2 and "no variable 'missing'" in res.output
    res = runner.invoke(app, ["shape", str(recipe), "--set", "shape.score_method=cos",
                              "-o", str(tmp_path / "s3")])
    assert res.exit_code == 2
    assert "[shape] score_method = 'cos'; expected one of 'angular', 'euclidean'" in res.output
