"""``neuroalign ingest`` commands."""

from __future__ import annotations

import numpy as np
import pytest
from adapter_fixtures import write_epochs, write_things_fmri
from typer.testing import CliRunner

from neuroalign.cli import app
from neuroalign.datasets import load_nsd, load_things_eeg2
from neuroalign.store import open_store

runner = CliRunner()


def test_ingest_nsd_cli(adapter_sim_nsd, tmp_path):
    out = tmp_path / "nsd.zarr"
    res = runner.invoke(app, ["ingest", "nsd", str(adapter_sim_nsd.root), "--subject", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"store: {out}" in res.output
    ds = open_store(out).load()
    np.testing.assert_array_equal(ds.responses.values, load_nsd(adapter_sim_nsd.root, 1).responses.values)
    res = runner.invoke(app, ["ingest", "nsd", str(adapter_sim_nsd.root), "--out", str(out)])
    assert res.exit_code == 2 and "already exists" in res.output
    res = runner.invoke(app, ["ingest", "nsd", str(adapter_sim_nsd.root), "--subject", "1",
                              "--roi", "floc-cars", "--out", str(tmp_path / "x.zarr")])
    assert res.exit_code == 2 and "Unknown ROI 'floc-cars'" in res.output


def test_ingest_eeg2_cli(adapter_sim_eeg, tmp_path):
    out = tmp_path / "eeg.zarr"
    res = runner.invoke(app, ["ingest", "things-eeg2", str(adapter_sim_eeg.root), "-s", "1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(open_store(out).responses.values,
                                  load_things_eeg2(adapter_sim_eeg.root, 1).responses.values)


def test_ingest_mne_and_things_fmri_cli(tmp_path):
    w = write_epochs(tmp_path / "e-epo.fif", n_epochs=12)
    out = tmp_path / "m.zarr"
    res = runner.invoke(app, ["ingest", "mne", str(w["path"]), "--stimulus-column", "image_path",
                              "--stem", "--split-column", "trial_type", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert open_store(out).sizes["presentation"] == 12
    t = write_things_fmri(tmp_path / "tf")
    res = runner.invoke(app, ["ingest", "things-fmri", str(t["root"]), "-s", "1", "-o", str(tmp_path / "t.zarr")])
    assert res.exit_code == 0, res.output
    assert open_store(tmp_path / "t.zarr").sizes["neuroid"] == 7
    res = runner.invoke(app, ["ingest", "things-fmri", str(t["root"]), "-s", "3", "-o", str(tmp_path / "u.zarr")])
    assert res.exit_code == 2 and "no THINGS-fMRI response table for sub-03" in res.output


@pytest.mark.parametrize("cmd", ["nsd", "algonauts2023", "bold5000", "things-eeg2", "things-meg", "mne", "things-fmri"])
def test_ingest_help(cmd):
    res = runner.invoke(app, ["ingest", cmd, "--help"])
    assert res.exit_code == 0 and "--out" in res.output


def test_ingest_mne_metadata_keeps_stimulus_ids_as_written(tmp_path):
    """``ingest mne --metadata``: zero-padded codes keep their zeros and a stimulus named
    'NA' is not dropped as missing (read as from_nifti reads events tables)."""
    w = write_epochs(tmp_path / "e-epo.fif", n_epochs=6, metadata=False)
    codes = ["NA", "0001", "0002", "null", "0004", "0005"]
    (tmp_path / "md.csv").write_text("trial_type,code\n" + "".join(f"exp,{c}\n" for c in codes))
    out = tmp_path / "m.zarr"
    res = runner.invoke(app, ["ingest", "mne", str(w["path"]), "--stimulus-column", "code",
                              "--metadata", str(tmp_path / "md.csv"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert open_store(out).stimulus_id.values.tolist() == codes
