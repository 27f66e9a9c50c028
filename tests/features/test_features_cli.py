"""``neuroalign features``: extract (also in the short form) and layers."""

from __future__ import annotations

import h5py
import numpy as np
import xarray as xr
from PIL import Image
from typer.testing import CliRunner

from neuroalign.cli import app

runner = CliRunner()


def _folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_layers_command():
    res = runner.invoke(app, ["features", "layers", "torchvision:resnet18", "--blocks"])
    assert res.exit_code == 0, res.output
    assert res.output.split() == ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"]
    res = runner.invoke(app, ["features", "layers", "torchvision:resnet18"])
    assert "layer4.1.conv2" in res.output.split()
    res = runner.invoke(app, ["features", "layers", "nope:x"])
    assert res.exit_code == 2 and "Unknown model spec 'nope:x'" in res.output


def test_short_form_extracts_to_zarr_and_reuses_it(tmp_path):
    folder = _folder(tmp_path)
    out = tmp_path / "f.zarr"
    args = ["features", "torchvision:resnet18", "--stimuli", str(folder), "--layers",
            "layer1,layer2", "--out", str(out), "--random-weights", "--batch-size", "2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    ds = xr.open_zarr(out)
    assert ds["layer2"].shape == (3, 128) and list(ds["stimulus_id"].values) == ["0", "1", "2"]
    res = runner.invoke(app, args)  # a complete cache: reused
    assert res.exit_code == 0 and "for 3 stimuli" in res.output
    res = runner.invoke(app, [*args[:4], "--layers", "layer9", *args[6:], "--overwrite"])
    assert res.exit_code == 2 and "Unknown layer 'layer9'" in res.output


def test_extract_subcommand_texts_and_hdf5(tmp_path):
    txt = tmp_path / "s.txt"
    txt.write_text("a dog runs\n\na cat sleeps\n")
    res = runner.invoke(app, ["features", "extract", "minilm", "--stimuli", str(txt), "--texts",
                              "--layers", "encoder.layer.5", "--out", str(tmp_path / "t.zarr")])
    assert res.exit_code == 0, res.output
    assert xr.open_zarr(tmp_path / "t.zarr")["encoder.layer.5"].shape == (2, 384)
    brick = tmp_path / "b.hdf5"
    with h5py.File(brick, "w") as f:
        f["imgBrick"] = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    res = runner.invoke(app, ["features", "extract", "minilm", "--stimuli", str(brick),
                              "--out", str(tmp_path / "x.zarr")])
    assert res.exit_code == 2 and "image stimuli, but model 'minilm' takes text" in res.output
