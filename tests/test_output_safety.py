"""Every command that writes: a folder of the user's is refused and survives byte for byte,
also when it holds the command's input; ``--overwrite`` replaces only an earlier output of
the same command; a full disk is a named error and the rerun resumes."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image
from typer.testing import CliRunner

from neuroalign.cli import app
from neuroalign.store import save_store
from neuroalign.testing import make_store

runner = CliRunner()


def _user_folder(path: Path, store: bool = False) -> Path:
    """A folder of the user's: a precious file, a subfolder, optionally a store."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "precious.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    (path / "notes").mkdir(exist_ok=True)
    (path / "notes" / "thesis.tex").write_text("chapter 1")
    if store:
        save_store(make_store(12, 6, rois={"A": np.arange(6) < 3}), path / "store.zarr")
    return path


def _snapshot(path: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every file under ``path`` (links and folders included)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(path.rglob("*"))}


def _refused(args: list[str], folder: Path, before: dict[str, str], match: str = "did not write") -> None:
    """``args`` fail cleanly, with and without --overwrite, and ``folder`` is unchanged."""
    for extra in ([], ["--overwrite"]):
        res = runner.invoke(app, [*args, *extra])
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
        assert match in res.output, res.output
        assert _snapshot(folder) == before


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A tiny simulation of this module's own (tests here try to overwrite it)."""
    from neuroalign.datasets.simulate import simulate

    return simulate(tmp_path_factory.mktemp("safety") / "sim", n_images=24, n_test=6, n_sessions=3,
                    image_size=32)


def _fit_recipe(path: Path, store: Path, out: str) -> Path:
    path.write_text(
        # features cached beside the output folder: reruns skip the network
        f'kind = "fit"\n[store]\npath = "{store}"\n[features]\nmodel = "torchvision:resnet18"\nweights = "random"\n'
        f'layers = ["layer1"]\ntransform = "simulation"\ndevice = "cpu"\n'
        f'[encoder]\nkind = "ridge"\nalphas = [1.0, 100.0]\ncv = 2\n[outputs]\ndir = "{out}"\nn_boot = 20\n'
    )
    return path


# -- fit and run ------------------------------------------------------------------------------
def test_fit_and_run_refuse_user_folders_and_overwrite_their_own(tmp_path, sim):
    user = _user_folder(tmp_path / "user", store=True)
    before = _snapshot(user)
    recipe = _fit_recipe(tmp_path / "r.toml", user / "store.zarr", str(user))
    for command in ("fit", "run"):
        # the recipe's outputs.dir is the user's folder holding its input store
        _refused([command, str(recipe)], user, before, match="this run's input")
        _refused([command, str(recipe), "--out", str(user / "notes")], user, before)
    # the simulation folder holding the input store (neuroalign's, of another kind)
    sim_before = _snapshot(sim.root)
    recipe = _fit_recipe(tmp_path / "s.toml", sim.store_path, str(tmp_path / "res"))
    for command in ("fit", "run"):
        for out in (sim.root, sim.store_path):
            _refused([command, str(recipe), "--out", str(out)], sim.root, sim_before,
                     match="this run's input")
    # its own earlier output: refused without --overwrite, replaced with it (fit and run
    # write the same kind of output)
    out = tmp_path / "res"
    res = runner.invoke(app, ["fit", str(recipe)])
    assert res.exit_code == 0, res.output
    first = json.loads((out / "summary.json").read_text())
    assert {p.name for p in out.iterdir()} == {".neuroalign", "results.zarr", "summary.json", "run.json"}
    for command in ("fit", "run"):
        res = runner.invoke(app, [command, str(recipe)])
        assert res.exit_code == 2 and "already exists (a fit output written by neuroalign)" in res.output
    (out / "summary.json").write_text("stale")
    res = runner.invoke(app, ["run", str(recipe), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "summary.json").read_text())["median_score"] == first["median_score"]
    # the recipe as run is recorded in run.json
    assert {p.name for p in out.iterdir()} == {".neuroalign", "results.zarr", "summary.json", "run.json"}
    results = xr.open_zarr(out / "results.zarr", consolidated=True, zarr_format=2)
    assert "score" in results and (out / "results.zarr" / ".neuroalign-manifest.json").is_file()
    res = runner.invoke(app, ["store", "verify", str(out)])  # the output folder's zarrs
    assert res.exit_code == 0 and "in 1 zarr folder(s): all checksums match" in res.output
    # a user's file added to the output keeps it from being replaced
    (out / "my-plot.png").write_bytes(b"mine")
    for command in ("fit", "run"):
        res = runner.invoke(app, [command, str(recipe), "--overwrite"])
        assert res.exit_code == 2 and "also holds 'my-plot.png'" in res.output
    assert (out / "my-plot.png").read_bytes() == b"mine"
    (out / "my-plot.png").unlink()
    res = runner.invoke(app, ["fit", str(recipe), "--overwrite"])  # run.json counts as its own
    assert res.exit_code == 0, res.output
    assert _snapshot(sim.root) == sim_before


# -- simulate ---------------------------------------------------------------------------------
def test_simulate(tmp_path):
    user = _user_folder(tmp_path / "user")
    before = _snapshot(user)
    _refused(["simulate", str(user), "--n-images", "20", "--n-test", "4"], user, before)
    # another command's output is not a simulation
    from neuroalign._files import atomic_dir

    fit_out = tmp_path / "fit"
    with atomic_dir(fit_out, kind="fit output") as tmp:
        tmp.mkdir()
        (tmp / "summary.json").write_text("{}")
    fit_before = _snapshot(fit_out)
    _refused(["simulate", str(fit_out), "--n-images", "20", "--n-test", "4"], fit_out, fit_before,
             match="holds a fit output written by neuroalign, not a simulation")
    # its own earlier output is replaced with --overwrite only
    args = ["simulate", str(tmp_path / "s2"), "--n-images", "12", "--n-test", "4", "--n-sessions", "2",
            "--image-size", "32"]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "already exists (a simulation written by neuroalign)" in res.output
    (tmp_path / "s2" / "truth.json").write_text("stale")
    assert runner.invoke(app, [*args, "--overwrite", "--seed", "1"]).exit_code == 0
    assert json.loads((tmp_path / "s2" / "truth.json").read_text())["format"] == "nsd"


# -- rsa and shape ----------------------------------------------------------------------------
def test_rsa(tmp_path):
    user = _user_folder(tmp_path / "study", store=True)
    np.save(user / "model.npy", np.random.default_rng(1).standard_normal((12, 5)))
    recipe = user / "rsa.toml"
    recipe.write_text('kind = "rsa"\n[store]\npath = "store.zarr"\n[rdm]\npseudo_subjects = 2\n'
                      '[models]\nm = "model.npy"\n[rsa]\nn_bootstrap = 10\n[outputs]\ndir = "."\n')
    before = _snapshot(user)
    _refused(["rsa", str(recipe)], user, before, match="this run's input")  # the recipe's own folder
    _refused(["rsa", str(recipe), "--out", str(user / "notes")], user, before)
    out = tmp_path / "rsa-out"
    assert runner.invoke(app, ["rsa", str(recipe), "--out", str(out)]).exit_code == 0
    res = runner.invoke(app, ["rsa", str(recipe), "--out", str(out)])
    assert res.exit_code == 2 and "already exists (an RSA output written by neuroalign)" in res.output
    (out / "rsa_all.csv").write_text("stale")
    res = runner.invoke(app, ["rsa", str(recipe), "--out", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert (out / "rsa_all.csv").read_text().startswith("model,score")
    assert _snapshot(user) == before


def test_shape(tmp_path):
    user = _user_folder(tmp_path / "user")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.save(user / f"{name}.npy", rng.standard_normal((20, 4)))
    before = _snapshot(user)
    recipe = tmp_path / "shape.toml"
    recipe.write_text(f'kind = "shape"\n[systems]\na = "{user / "a.npy"}"\nb = "{user / "b.npy"}"\n')
    args = ["shape", str(recipe)]
    _refused([*args, "--out", str(user)], user, before, match="this run's input")
    _refused([*args, "--out", str(user / "notes")], user, before)
    out = tmp_path / "shape-out"
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 0
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 2
    (out / "distances.csv").write_text("stale")
    assert runner.invoke(app, [*args, "--out", str(out), "--overwrite"]).exit_code == 0
    assert (out / "distances.csv").read_text().startswith("system,a,b")
    assert _snapshot(user) == before


# -- map --------------------------------------------------------------------------------------
def test_map(tmp_path):
    user = _user_folder(tmp_path / "user", store=True)
    store = xr.open_zarr(user / "store.zarr")
    scores = xr.DataArray(np.random.default_rng(0).random((2, 6)), dims=("layer", "neuroid"),
                          coords={"layer": ["l1", "l2"], "neuroid_id": ("neuroid", store.neuroid_id.values)},
                          name="score")
    scores.to_netcdf(user / "scores.nc")
    before = _snapshot(user)
    args = ["map", str(user / "store.zarr"), "--scores", str(user / "scores.nc"), "--rois", "A"]
    _refused([*args, "--out", str(user)], user, before, match="this run's input")
    _refused([*args, "--out", str(user / "notes")], user, before)
    out = tmp_path / "maps"
    res = runner.invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 2
    (out / "layer_preference.csv").write_text("stale")
    assert runner.invoke(app, [*args, "--out", str(out), "--overwrite"]).exit_code == 0
    assert (out / "layer_preference.csv").read_text() != "stale"
    assert _snapshot(user) == before


# -- decode, generate, demo: refused before any work ------------------------------------------
def test_decode_generate_demo_refuse_user_folders(tmp_path, sim):
    user = _user_folder(tmp_path / "user", store=True)
    before = _snapshot(user)
    recipe = tmp_path / "d.toml"
    recipe.write_text(f'kind = "decode"\n[store]\npath = "{user / "store.zarr"}"\n[outputs]\ndir = "{user}"\n')
    _refused(["decode", str(recipe)], user, before, match="this run's input")
    _refused(["decode", str(recipe), "--out", str(user / "notes")], user, before)
    _refused(["run", str(recipe)], user, before, match="this run's input")
    sim_before = _snapshot(sim.root)
    grecipe = tmp_path / "g.toml"
    grecipe.write_text(f'kind = "generate"\n[store]\npath = "{sim.root}"\n[encoder]\n'
                       f'model = "simulated-truth"\n[generate]\nroi = "FFA-1"\n[outputs]\ndir = "{user}"\n')
    _refused(["generate", str(grecipe), "--out", str(sim.root)], sim.root, sim_before,
             match="this run's input")
    _refused(["generate", str(grecipe)], user, before)
    _refused(["run", str(grecipe)], user, before)
    res = runner.invoke(app, ["demo", "--quick", "--out", str(user)])
    assert res.exit_code == 2 and "did not write" in res.output and "Traceback" not in res.output
    assert _snapshot(user) == before


def test_demo_folder_is_claimed_once_and_reused(tmp_path):
    from neuroalign._files import claim_dir, read_marker, target_lock
    from neuroalign.exceptions import TargetLockedError
    from neuroalign.recipes._demo import DEMO_KIND, DemoConfig, run_demo

    out = claim_dir(tmp_path / "demo", kind=DEMO_KIND)
    assert read_marker(out)["kind"] == DEMO_KIND
    with target_lock(out, what=DEMO_KIND), pytest.raises(TargetLockedError, match="is writing this demo folder"):
        run_demo(DemoConfig(out=out, echo=lambda s: None))  # a second demo in the same folder


# -- features extract -------------------------------------------------------------------------
def _images(folder: Path, n: int = 6) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _features(stimuli: Path, out: Path, *extra: str):
    return runner.invoke(app, ["features", "torchvision:resnet18", "--stimuli", str(stimuli),
                               "--layers", "layer1", "--out", str(out), "--random-weights",
                               "--batch-size", "2", "--device", "cpu", *extra])


def test_features_extract(tmp_path):
    imgs = _images(tmp_path / "imgs")
    before = _snapshot(imgs)
    for extra in ([], ["--overwrite"]):
        res = _features(imgs, imgs, *extra)  # --out is the stimulus folder itself
        assert res.exit_code == 2 and "did not write" in res.output, res.output
    assert _snapshot(imgs) == before
    out = tmp_path / "f.zarr"
    assert _features(imgs, out).exit_code == 0
    first = xr.open_zarr(out)["layer1"].values
    res = _features(imgs, out, "--seed", "1")  # other settings: named, the cache kept
    assert res.exit_code == 2 and "written for other settings" in res.output
    np.testing.assert_array_equal(xr.open_zarr(out)["layer1"].values, first)
    res = _features(imgs, out, "--seed", "1", "--overwrite")
    assert res.exit_code == 0, res.output
    assert not np.allclose(xr.open_zarr(out)["layer1"].values, first)


def test_full_disk_is_a_named_error_and_the_rerun_resumes(tmp_path, monkeypatch):
    import zarr.storage._local as local

    imgs = _images(tmp_path / "imgs")
    ref = tmp_path / "ref.zarr"
    assert _features(imgs, ref).exit_code == 0
    out = tmp_path / "f.zarr"
    real, writes = local._put, []

    def full(path, value, exclusive=False):
        if "/layer1/" in str(path).replace("\\", "/") and not Path(path).name.startswith("."):
            writes.append(path)
            if len(writes) == 2:  # the second batch's chunk: the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, value, exclusive)

    monkeypatch.setattr(local, "_put", full)
    res = _features(imgs, out)
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    assert f"{out}: writing the features of stimuli 2..3 failed (No space left on device)" in res.output
    assert "run the same extraction again to resume" in res.output
    assert not out.exists()
    state = json.loads((tmp_path / ".f.zarr.partial-state.json").read_text())
    assert state["done"] == [0]  # the failed batch is not recorded
    monkeypatch.setattr(local, "_put", real)
    res = _features(imgs, out)
    assert res.exit_code == 0, res.output
    done, want = xr.open_zarr(out), xr.open_zarr(ref)
    np.testing.assert_array_equal(done["layer1"].values, want["layer1"].values)
    np.testing.assert_array_equal(done["stimulus_id"].values, want["stimulus_id"].values)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".f.zarr")) == [".f.zarr.lock"]
