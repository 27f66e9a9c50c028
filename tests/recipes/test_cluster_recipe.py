"""The recipes' ``[cluster]`` table: schema, defaults, and the runners that pass it to
``cluster=`` (fit: ridge, layer sweep, banded ridge, attention routing; shape: the distance matrix; map: its sweep; rsa:
the data RDMs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neuroalign.exceptions import DataFormatError
from neuroalign.recipes import load_recipe, run_recipe
from neuroalign.recipes._inputs import cluster_spec


def _write(tmp_path, text: str, name: str = "r.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _fit(store, feats, kind="ridge", extra=""):
    return (f'kind = "fit"\n[store]\npath = "{store}"\n[features]\npath = "{feats}"\n'
            f'layers = ["good", "noise"]\n[encoder]\nkind = "{kind}"\ncv = 3\n'
            'alphas = { logspace = [-2, 4, 7] }\n[encoder.params]\ndtype = "float64"\n'
            '[outputs]\nn_boot = 10\n' + extra)


SLURM = ('[cluster]\nkind = "slurm"\njobs = 4\ncores = 8\nmemory = "32GB"\n'
         'walltime = "04:00:00"\nqueue = "gpu"\naccount = "lab42"\n'
         'job_extra = ["--gres=gpu:1"]\nbatch_size = 5000\n'
         '[cluster.options]\nlog_directory = "logs"\n')


def test_schema_of_the_cluster_table(tmp_path, own_data):
    _, store, feats = own_data
    r = load_recipe(_write(tmp_path, _fit(store, feats, extra=SLURM)))
    cl = r.config["cluster"]
    assert cl["kind"] == "slurm" and cl["jobs"] == 4 and cl["job_extra"] == ["--gres=gpu:1"]
    spec = cluster_spec(r.config, tmp_path / "out")
    # result_path defaults beside the output folder (kept between runs); options merged in
    assert spec["result_path"] == str(tmp_path / "out.cells")
    assert spec["log_directory"] == "logs" and "options" not in spec
    assert spec["cores"] == 8 and spec["batch_size"] == 5000
    with pytest.raises(DataFormatError, match=r"unknown key 'wall_time' in \[cluster\]; did you "
                                              r"mean 'walltime'\?"):
        load_recipe(_write(tmp_path, _fit(store, feats, extra=SLURM.replace("walltime", "wall_time"))))
    with pytest.raises(DataFormatError, match=r"\[cluster\] jobs = '4'; expected an integer"):
        load_recipe(_write(tmp_path, _fit(store, feats, extra=SLURM.replace("jobs = 4", "jobs = '4'"))))
    decode = f'kind = "decode"\n[store]\npath = "{store}"\n[cluster]\nkind = "local"\n'
    with pytest.raises(DataFormatError, match=r"table \[cluster\] does not belong in this recipe kind"):
        load_recipe(_write(tmp_path, decode))
    # a relative result_path is relative to the recipe's folder
    r = load_recipe(_write(tmp_path, _fit(store, feats, extra='[cluster]\nresult_path = "cells"\n')))
    assert cluster_spec(r.config, tmp_path / "o") == {"kind": "none", "jobs": 1,
                                                      "result_path": str(tmp_path / "cells")}
    r = load_recipe(_write(tmp_path, _fit(store, feats, extra='[cluster]\nkind = "none"\n')))
    assert cluster_spec(r.config, tmp_path / "o") == {  # cells in this process
        "kind": "none", "jobs": 1, "result_path": str(tmp_path / "o.cells")}
    # without the table: one process, no cells
    assert cluster_spec(load_recipe(_write(tmp_path, _fit(store, feats))).config, tmp_path) is None
    # the scheduler's and the workers' network interfaces (a cluster whose compute nodes
    # reach the login node on one network only) reach dask-jobqueue as given
    pytest.importorskip("dask_jobqueue")
    from neuroalign._scaleout import kept_environ, make_cluster

    net = SLURM + 'interface = "lo"\nscheduler_options = {interface = "lo"}\n'
    spec = cluster_spec(load_recipe(_write(tmp_path, _fit(store, feats, extra=net))).config,
                        tmp_path / "o")
    assert spec["scheduler_options"] == {"interface": "lo"}
    with kept_environ():
        cluster = make_cluster("slurm", {k: v for k, v in spec.items()
                                         if k not in ("kind", "result_path", "batch_size")})
        try:
            assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
            assert "--interface lo" in cluster.job_script()
        finally:
            cluster.close()


def _leaves(obj, key=()):
    """``(path, value)`` of every leaf of a JSON document, in order."""
    if isinstance(obj, dict):
        return [leaf for k, v in obj.items() for leaf in _leaves(v, (*key, k))]
    if isinstance(obj, list):
        return [leaf for i, v in enumerate(obj) for leaf in _leaves(v, (*key, i))]
    return [(key, obj)]


def _cells(folder: Path) -> dict[str, int]:
    return {f.name: f.stat().st_mtime_ns for f in (folder / "cells").glob("*.npz")}


@pytest.mark.parametrize("kind", ["ridge", "layer-sweep"])
def test_fit_recipe_with_a_local_cluster_equals_one_process_and_reruns_only_missing(
        tmp_path, own_data, kind):
    _, store, feats = own_data
    plain = run_recipe(_write(tmp_path, _fit(store, feats, kind), "plain.toml"),
                       out=tmp_path / "plain")
    extra = ('[cluster]\nkind = "local"\nn_workers = 2\nprocesses = false\nbatch_size = 7\n')
    recipe = _write(tmp_path, _fit(store, feats, kind, extra), "cl.toml")
    first = run_recipe(recipe, out=tmp_path / "cl")
    cells = _cells(tmp_path / "cl.cells")
    n_layers = 2 if kind == "layer-sweep" else 1
    assert len(cells) == n_layers * -(-24 // 7)
    a = xr.open_zarr(tmp_path / "plain" / "results.zarr").load()
    b = xr.open_zarr(tmp_path / "cl" / "results.zarr").load()
    for var in ("alpha", "cv_score", "score"):
        np.testing.assert_allclose(b[var].values, a[var].values, rtol=0, atol=1e-12)
    # the summaries: the same fields and text, the numbers to 1e-12 (the scores are equal
    # to that; a bootstrap interval over them may differ in the last bit)
    got, want = (_leaves(json.loads((tmp_path / d / "summary.json").read_text())["rois"])
                 for d in ("cl", "plain"))
    assert [k for k, _ in got] == [k for k, _ in want]
    for (key, g), (_, w) in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=0, abs=1e-12) if isinstance(w, float) else g == w, key
    assert first["result"]["median_score"] == pytest.approx(plain["result"]["median_score"],
                                                            rel=0, abs=1e-12)
    # a rerun (in one process, the same cells folder) loads every cell; a lost one is redone
    victim = sorted(cells)[1]
    (tmp_path / "cl.cells" / "cells" / victim).unlink()
    run_recipe(recipe, out=tmp_path / "cl", overwrite=True,
               sets=['cluster.kind="none"'])
    after = _cells(tmp_path / "cl.cells")
    assert set(after) == set(cells)
    assert [n for n in after if after[n] != cells.get(n)] == [victim]
    # every cell on disk: a rerun on Slurm loads them all, submits no job, writes nothing

    def refuse(kind, options=None):
        raise AssertionError(f"a {kind!r} cluster was started with every cell on disk")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("neuroalign._scaleout.make_cluster", refuse)
        run_recipe(recipe, out=tmp_path / "cl", overwrite=True, sets=['cluster.kind="slurm"'])
    assert _cells(tmp_path / "cl.cells") == after
    c = xr.open_zarr(tmp_path / "cl" / "results.zarr").load()
    for var in ("alpha", "cv_score", "score"):
        np.testing.assert_allclose(c[var].values, a[var].values, rtol=0, atol=1e-12)


def test_shape_and_banded_recipes_in_cells_and_the_map_refusal(tmp_path, own_data):
    _, store, feats = own_data
    text = (f'kind = "shape"\n[systems]\ng = "{feats}:good"\nn = "{feats}:noise"\n'
            f'g2 = "{feats}:good"\n[shape]\nalpha = 0.5\n')
    plain = run_recipe(_write(tmp_path, text, "s.toml"), out=tmp_path / "s")
    cl = run_recipe(_write(tmp_path, text + '[cluster]\nresult_path = "shape-cells"\n'
                           'batch_size = 1\n', "c.toml"), out=tmp_path / "c")
    assert len(_cells(tmp_path / "shape-cells")) == 3
    plain, cl = plain["result"]["distances"], cl["result"]["distances"]
    assert plain["g"]["n"] > 0.1
    for a in plain:
        for b in plain[a]:
            assert cl[a][b] == pytest.approx(plain[a][b], abs=1e-12)
    banded = (f'kind = "fit"\n[store]\npath = "{store}"\n[features.spaces.a]\npath = "{feats}"\n'
              f'layers = "good"\n[features.spaces.b]\npath = "{feats}"\nlayers = "noise"\n'
              '[encoder]\nkind = "banded-ridge"\ncv = 3\nalphas = [1.0, 100.0]\n'
              '[encoder.params]\nn_iter = 3\ndevice = "cpu"\n[outputs]\nn_boot = 10\n')
    one = run_recipe(_write(tmp_path, banded, "b1.toml"), out=tmp_path / "b1")
    cells = run_recipe(_write(tmp_path, banded + '[cluster]\nbatch_size = 10\n', "b2.toml"),
                       out=tmp_path / "b2")
    assert len(_cells(tmp_path / "b2.cells")) == 3  # 24 neuroids in cells of 10
    a = xr.open_zarr(tmp_path / "b1" / "results.zarr").load()
    b = xr.open_zarr(tmp_path / "b2" / "results.zarr").load()
    np.testing.assert_array_equal(b["alpha"].values, a["alpha"].values)
    np.testing.assert_allclose(b["cv_score"].values, a["cv_score"].values, rtol=0, atol=1e-12)
    # banded weights are float32 (himalaya): held-out scores agree to float32 rounding
    np.testing.assert_allclose(b["score"].values, a["score"].values, rtol=1e-5, atol=1e-6)
    assert cells["result"]["median_score"] == pytest.approx(one["result"]["median_score"], rel=1e-5)
    maps = (f'kind = "map"\n[store]\npath = "{store}"\n[results]\npath = "r.zarr"\n'
            '[cluster]\nkind = "local"\n')
    with pytest.raises(DataFormatError, match=r"\[cluster\] with \[results\]: the map reads its "
                                              r"scores and fits nothing"):
        load_recipe(_write(tmp_path, maps, "m.toml"))


def test_the_slurm_example_of_the_docs_is_a_valid_recipe_and_job_script(tmp_path):
    """docs/recipes.md's Slurm recipe loads, and the job script dask-jobqueue would submit
    holds what it asks for."""
    import re

    from neuroalign._scaleout import make_cluster

    text = (Path(__file__).resolve().parents[2] / "docs" / "recipes.md").read_text()
    toml = re.search(r"## Beyond one machine.*?```toml\n(.*?)```", text, re.S).group(1)
    r = load_recipe(_write(tmp_path, toml))
    spec = cluster_spec(r.config, tmp_path / "out")
    assert spec["result_path"] == "/scratch/me/subj01-cells" and spec["batch_size"] == 20000
    assert spec["log_directory"] == "/scratch/me/dask-logs"
    spec["log_directory"] = str(tmp_path / "logs")  # dask-jobqueue creates it
    cluster = make_cluster(spec["kind"], {k: v for k, v in spec.items()
                                          if k not in ("kind", "result_path", "batch_size")})
    try:
        script = cluster.job_script().splitlines()
    finally:
        cluster.close()
    for line in ("#SBATCH -p cpu", "#SBATCH -A lab42", "#SBATCH --cpus-per-task=8",
                 "#SBATCH -t 04:00:00", "#SBATCH --constraint=skylake"):
        assert line in script, (line, script)


def test_map_recipe_fits_its_sweep_in_cells(tmp_path, own_data):
    """A map recipe without [results] fits its layer sweep in cells (under <out>.cells)."""
    _, store, feats = own_data
    text = (f'kind = "map"\n[store]\npath = "{store}"\nrois = ["A", "B"]\n[features]\n'
            f'path = "{feats}"\nlayers = ["good", "noise"]\n[encoder]\ncv = 3\n'
            'alphas = [1.0, 100.0]\n')
    plain = run_recipe(_write(tmp_path, text, "m1.toml"), out=tmp_path / "m1")
    cells = run_recipe(_write(tmp_path, text + '[cluster]\nbatch_size = 10\n', "m2.toml"),
                       out=tmp_path / "m2")
    assert len(_cells(tmp_path / "m2.cells")) == 2 * 3  # 2 layers x 24 neuroids in 10s
    assert cells["result"]["best_layer_by_roi"] == plain["result"]["best_layer_by_roi"]
    assert plain["result"]["best_layer_by_roi"]["A"] == "good"


def _rsa(store, feats, extra=""):
    return (f'kind = "rsa"\n[store]\npath = "{store}"\nrois = ["A", "B"]\n[rdm]\n'
            'pseudo_subjects = 3\n'
            f'[models]\ngood = "{feats}:good"\nnoise = "{feats}:noise"\n[rsa]\nmethod = "pearson"\n'
            'n_bootstrap = 20\n' + extra)


def test_rsa_recipe_with_a_cluster_table(tmp_path, own_data):
    """An rsa recipe's [cluster] table: validated, its data RDMs (one cell per pseudo-subject
    and ROI) on a local cluster give the plain run's scores, and a rerun computes only the
    cell that is missing."""
    _, store, feats = own_data
    r = load_recipe(_write(tmp_path, _rsa(store, feats, '[cluster]\nkind = "local"\n')))
    assert cluster_spec(r.config, tmp_path / "o")["result_path"] == str(tmp_path / "o.cells")
    with pytest.raises(DataFormatError, match=r"r.toml: \[cluster\] batch_size = 5 does not "
                                              r"apply to an rsa recipe: its cells are one data "
                                              r"RDM per subject and ROI"):
        load_recipe(_write(tmp_path, _rsa(store, feats, '[cluster]\nbatch_size = 5\n')))
    with pytest.raises(DataFormatError, match=r"\[cluster\] n_workers = 'two'; expected an integer"):
        load_recipe(_write(tmp_path, _rsa(store, feats, "[cluster]\nn_workers = 'two'\n")))
    plain = run_recipe(_write(tmp_path, _rsa(store, feats), "p.toml"), out=tmp_path / "p")
    recipe = _write(tmp_path, _rsa(store, feats, '[cluster]\nkind = "local"\nn_workers = 2\n'
                                                 'processes = false\n'), "c.toml")
    first = run_recipe(recipe, out=tmp_path / "c")
    cells = _cells(tmp_path / "c.cells")
    assert len(cells) == 2 * 3  # 2 ROIs x 3 pseudo-subjects
    a, b = plain["result"]["rois"], first["result"]["rois"]
    assert set(a) == {"A", "B"} and a["A"]["models"]["good"]["score"] > a["A"]["models"]["noise"]["score"]
    for roi in a:
        assert b[roi]["noise_ceiling"] == pytest.approx(a[roi]["noise_ceiling"], abs=1e-12)
        for m in a[roi]["models"]:
            for k in ("score", "ci95", "p_zero"):
                assert b[roi]["models"][m][k] == pytest.approx(a[roi]["models"][m][k], abs=1e-12)
    assert (tmp_path / "c" / "rsa_A.csv").read_text() == (tmp_path / "p" / "rsa_A.csv").read_text()
    victim = sorted(cells)[2]
    (tmp_path / "c.cells" / "cells" / victim).unlink()
    again = run_recipe(recipe, out=tmp_path / "c", overwrite=True, sets=['cluster.kind="none"'])
    after = _cells(tmp_path / "c.cells")
    assert set(after) == set(cells)
    assert [n for n in after if after[n] != cells.get(n)] == [victim]
    assert again["result"]["rois"] == first["result"]["rois"]


def test_routing_recipe_in_cells_of_epochs(tmp_path, own_data):
    """A fit recipe with attention routing and a [cluster] table: chunks of epochs as cells,
    the plain run's results; a rerun loads the finished fit without training."""
    _, store, feats = own_data
    ds = xr.open_zarr(feats).load()
    tokens = ds["good"].values.reshape(40, 4, 4) + 0.1 * np.random.default_rng(2).standard_normal(
        (40, 4, 4))
    tok = xr.Dataset({"tok": (("stimulus", "token", "tok_unit"), tokens.astype(np.float32))},
                     coords={"stimulus_id": ("stimulus", ds["stimulus_id"].values)})
    tok.to_zarr(tmp_path / "tokens.zarr", zarr_format=2, consolidated=True)
    text = (f'kind = "fit"\n[store]\npath = "{store}"\n[features]\npath = "{tmp_path / "tokens.zarr"}"\n'
            'layers = "tok"\n[encoder]\nkind = "attention-routing"\n[encoder.params]\n'
            'd_model = 8\nmax_epochs = 12\npatience = 4\ndevice = "cpu"\n[outputs]\nn_boot = 10\n')
    plain = run_recipe(_write(tmp_path, text, "p.toml"), out=tmp_path / "p")
    recipe = _write(tmp_path, text + '[cluster]\nbatch_size = 5\n', "c.toml")
    first = run_recipe(recipe, out=tmp_path / "c")
    cells = _cells(tmp_path / "c.cells")
    assert 1 <= len(cells) <= 3  # 12 epochs at most, in cells of 5
    a = xr.open_zarr(tmp_path / "p" / "results.zarr").load()
    b = xr.open_zarr(tmp_path / "c" / "results.zarr").load()
    for var in ("cv_score", "score"):
        np.testing.assert_array_equal(b[var].values, a[var].values)
    assert first["result"]["median_score"] == plain["result"]["median_score"]
    run_recipe(recipe, out=tmp_path / "c", overwrite=True)
    assert _cells(tmp_path / "c.cells") == cells  # loaded, nothing trained again
