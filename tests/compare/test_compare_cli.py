"""``neuroalign rsa RECIPE.toml`` and ``neuroalign shape``."""

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
    feats.to_zarr(tmp_path / "features.zarr")
    return ds


def test_rsa_recipe_writes_tables_and_figures(tmp_path):
    _setup(tmp_path)
    (tmp_path / "recipe.toml").write_text(
        '[data]\nstore = "store.zarr"\nroi = ["A", "B"]\nmetric = "correlation"\n'
        'pseudo_subjects = 3\n\n[models]\ngood = "features.zarr:good"\n'
        'noise = "features.zarr:noise"\n\n[rsa]\nmethod = "pearson"\nn_bootstrap = 30\n\n'
        '[output]\ndir = "out"\n'
    )
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


def test_rsa_recipe_errors(tmp_path):
    _setup(tmp_path)
    res = runner.invoke(app, ["rsa", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2 and "no such recipe file" in res.output
    (tmp_path / "r.toml").write_text('[data]\nstore = "store.zarr"\n')
    res = runner.invoke(app, ["rsa", str(tmp_path / "r.toml")])
    assert res.exit_code == 2 and "missing section [models]" in res.output
    (tmp_path / "r.toml").write_text(
        '[data]\nstore = "store.zarr"\n[models]\nx = "nope.npy"\n[rsa]\nmethod = "pearson"\n')
    res = runner.invoke(app, ["rsa", str(tmp_path / "r.toml")])
    assert res.exit_code == 2 and "nope.npy: no such features file" in res.output
    (tmp_path / "r.toml").write_text(
        '[data]\nstore = "store.zarr"\n[models]\nx = "true.npy"\n[rsa]\nmethods = "x"\n')
    res = runner.invoke(app, ["rsa", str(tmp_path / "r.toml")])
    assert res.exit_code == 2 and "unknown key(s) ['methods'] in [rsa]" in res.output
    (tmp_path / "r.toml").write_text('[data]\nroi = "A"\n[models]\nx = "true.npy"\n')
    res = runner.invoke(app, ["rsa", str(tmp_path / "r.toml")])
    assert res.exit_code == 2 and "[data] needs 'store'" in res.output


def test_shape_command(tmp_path, monkeypatch):
    _setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["shape", "g=features.zarr:good", "n=features.zarr:noise",
                              "features.zarr:good", "--alpha", "0.5", "--out", "shape"])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "shape" / "distances.csv").read_text().splitlines()
    assert lines[0] == "system,g,n,system_2"
    d = np.array([[float(v) for v in ln.split(",")[1:]] for ln in lines[1:]])
    assert d[0, 2] < 1e-6 and d[0, 1] > 0.1
    assert (tmp_path / "shape" / "mds.png").stat().st_size > 0
    res = runner.invoke(app, ["shape", "features.zarr:missing", "features.zarr:good"])
    assert res.exit_code == 2 and "no variable 'missing'" in res.output
    res = runner.invoke(app, ["shape", "features.zarr:good", "features.zarr:noise",
                              "--score-method", "cos"])
    assert res.exit_code == 2 and "'score_method'" in res.output
