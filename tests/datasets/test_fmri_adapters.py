"""Algonauts-2023, BOLD5000 and THINGS-fMRI adapters."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
from adapter_fixtures import B5K_ROIS, write_algonauts, write_bold5000, write_things_fmri

from neuroalign.datasets import load_algonauts2023, load_bold5000, load_things_fmri
from neuroalign.exceptions import DataFormatError
from neuroalign.store import check_store

pytestmark = pytest.mark.filterwarnings("ignore::neuroalign.datasets.PublishedCountWarning")


# -- Algonauts ---------------------------------------------------------------------------

def test_algonauts_values_ids_rois(tmp_path):
    w = write_algonauts(tmp_path / "alg")
    ds = load_algonauts2023(w["root"], 1)
    check_store(ds)
    assert ds.responses.dims == ("stimulus", "neuroid")
    lv, rv = w["verts"]["lh"], w["verts"]["rh"]
    np.testing.assert_array_equal(ds.vertex.values, np.r_[lv, rv])
    np.testing.assert_array_equal(ds.responses.values[:5], np.c_[w["fmri"][("train", "lh")], w["fmri"][("train", "rh")]])
    np.testing.assert_array_equal(ds.responses.values[5:], np.c_[w["fmri"][("test", "lh")], w["fmri"][("test", "rh")]])
    np.testing.assert_array_equal(ds.stimulus_id.values, [f"nsd-{i:05d}" for i in w["nsd"]])
    np.testing.assert_array_equal(ds.split.values, ["train"] * 5 + ["test"] * 3)
    vals = np.r_[w["prf"]["lh"][lv], w["prf"]["rh"][rv]]
    np.testing.assert_array_equal(ds["roi_V1d"].values, vals == 2)
    np.testing.assert_array_equal(ds.noise_ceiling.values, np.r_[w["nc"]["lh"], w["nc"]["rh"]])
    assert ds.image_file.values[0].startswith("training_split/training_images/train-0001_nsd-")


def test_algonauts_withheld_test_and_bad_shape(tmp_path):
    w = write_algonauts(tmp_path / "alg", test_fmri=False)
    with pytest.warns(UserWarning, match="no test fMRI files"):
        ds = load_algonauts2023(w["root"], "subj01")
    assert (ds.split.values == "train").all()
    p = w["root"] / "subj01/training_split/training_fmri/lh_training_fmri.npy"
    np.save(p, np.zeros((4, 3), np.float32))
    with pytest.raises(DataFormatError, match=r"lh_training_fmri.npy: shape \(4, 3\), expected \(5, \d+\)"):
        load_algonauts2023(w["root"], 1)
    with pytest.raises(FileNotFoundError, match=r"subj02: no Algonauts-2023 subject folder.*Subjects present: 'subj01'"):
        load_algonauts2023(w["root"], 2)


# -- BOLD5000 ----------------------------------------------------------------------------

def test_bold5000_glmsingle_values(tmp_path):
    w = write_bold5000(tmp_path / "b5k")
    ds = load_bold5000(w["root"], "CSI1")
    check_store(ds)
    full = np.concatenate(w["vols"], axis=3)
    keep = (full[..., :6] != 0).any(axis=3)
    ijk = np.argwhere(keep)
    np.testing.assert_array_equal(np.c_[ds.i, ds.j, ds.k], ijk)
    np.testing.assert_array_equal(ds.responses.values, full[ijk[:, 0], ijk[:, 1], ijk[:, 2]].T)
    assert ds.stimulus_id.values[0] == "bold5000-church6"
    np.testing.assert_array_equal(ds.repetition.values[:2], [0, 1])
    names = np.array(w["names"])
    np.testing.assert_array_equal(ds.split.values == "test", np.isin(names, ["church6.jpg", "airplane1.jpg"]))
    np.testing.assert_array_equal(ds.session.values, [1] * 6 + [2] * 5)


def test_bold5000_release1_rois(tmp_path):
    w = write_bold5000(tmp_path / "b5k")
    ds = load_bold5000(w["root"], 1, source="roi")
    check_store(ds)
    expected = np.concatenate([w["roi"][f"{h}{r}"] for r in B5K_ROIS for h in ("LH", "RH")], axis=1)
    np.testing.assert_array_equal(ds.responses.values, expected.astype(np.float32))
    n_lh_ev = w["roi"]["LHEarlyVis"].shape[1]
    assert ds["roi_EarlyVis"].values[:n_lh_ev].all() and (ds.hemisphere.values[:n_lh_ev] == "lh").all()
    assert ds.neuroid_id.values[0] == "CSI1_LHEarlyVis_0000"


def test_bold5000_bad_input(tmp_path):
    w = write_bold5000(tmp_path / "b5k")
    with pytest.raises(ValueError, match=r"'subject' in load_bold5000\(\): 5. Expected one of 1, 2, 3, 4"):
        load_bold5000(w["root"], 5)
    (w["root"] / "sub-CSI1_imgnames.txt").write_text("a.jpg\nb.jpg\n")
    with pytest.raises(DataFormatError, match=r"sub-CSI1_imgnames.txt: 2 image names, but the 2 session files hold 11 trials"):
        load_bold5000(w["root"], 1)
    import scipy.io

    roi = dict(w["roi"])
    roi["LHPPA"] = roi["LHPPA"][:3]
    scipy.io.savemat(w["mat"], roi)
    with pytest.raises(DataFormatError, match=r"CSI1_ROIs_TR34.mat: 'LHPPA' has 3 trials, but CSI01_stim_lists.txt lists 11"):
        load_bold5000(w["root"], 1, source="roi")
    del roi["RHRSC"]
    scipy.io.savemat(w["mat"], roi)
    with pytest.raises(DataFormatError, match=r"CSI1_ROIs_TR34.mat: missing key\(s\) 'RHRSC'"):
        load_bold5000(w["root"], 1, source="roi")
    with pytest.raises(FileNotFoundError, match=r"no file matching 'CSI1_ROIs_TR5.mat'"):
        load_bold5000(w["root"], 1, source="roi", tr="5")


# -- THINGS-fMRI -------------------------------------------------------------------------

def test_things_fmri_values_rois_ceiling(tmp_path):
    w = write_things_fmri(tmp_path / "tf")
    ds = load_things_fmri(w["root"], 1)
    check_store(ds)
    np.testing.assert_array_equal(ds.responses.values, w["values"].T.astype(np.float32))
    vm = w["voxels"]
    np.testing.assert_array_equal(ds.i.values, vm.voxel_x)
    np.testing.assert_array_equal(ds["roi_lFFA"].values, vm.lFFA.astype(bool))
    np.testing.assert_array_equal(ds["roi_glasser-V1"].values, vm["glasser-V1"].astype(bool))
    assert "roi_prf-eccentricity" not in ds.coords and "roi_nc_testset" not in ds.coords
    np.testing.assert_allclose(ds.noise_ceiling.values, vm.nc_testset, rtol=1e-6)
    st = w["stim"]
    np.testing.assert_array_equal(ds.split.values, st.trial_type)
    assert ds.stimulus_id.values[1] == "things-cat_01s"
    np.testing.assert_array_equal(ds.repetition.values[[1, 4, 7]], [0, 1, 2])


def test_things_fmri_bad_input(tmp_path, monkeypatch):
    w = write_things_fmri(tmp_path / "tf")
    vm = w["voxels"]
    vm.iloc[:3].to_csv(w["dir"] / "sub-01_VoxelMetadata.csv", index=False)
    with pytest.raises(DataFormatError, match=r"sub-01_VoxelMetadata.csv: 3 voxels, but sub-01_ResponseData.h5 has 7"):
        load_things_fmri(w["root"], 1)
    w["stim"].drop(columns=["trial_id"]).to_csv(w["dir"] / "sub-01_StimulusMetadata.csv", index=False)
    with pytest.raises(DataFormatError, match=r"sub-01_StimulusMetadata.csv: missing column\(s\) 'trial_id'"):
        load_things_fmri(w["root"], 1)
    import pandas as pd

    p = w["dir"] / "sub-01_ResponseData.h5"
    pd.DataFrame({"a": [1.0]}).to_hdf(p, key="Other", mode="w")
    with pytest.raises(DataFormatError, match=r"sub-01_ResponseData.h5: has no key 'ResponseData'. Keys present: 'Other'"):
        load_things_fmri(w["root"], 1)
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    with pytest.raises(DataFormatError, match=r"sub-01_ResponseData.h5: cannot be read as HDF5"):
        load_things_fmri(w["root"], 1)
    with pytest.raises(FileNotFoundError, match=r"no THINGS-fMRI response table for sub-02"):
        load_things_fmri(w["root"], 2)


def test_things_fmri_reads_without_pytables_or_pandas_hdf(tmp_path, monkeypatch):
    """The HDFStore is read with h5py: PyTables is not needed, pandas never unpickles."""
    import pandas as pd

    w = write_things_fmri(tmp_path / "tf")
    real_import = builtins.__import__

    def no_tables(name, *a, **k):
        if name == "tables" or name.startswith("tables."):
            raise ImportError("No module named 'tables'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tables)
    monkeypatch.setattr(pd, "read_hdf", lambda *a, **k: pytest.fail("pandas.read_hdf was used"))
    monkeypatch.setattr(pd, "HDFStore", lambda *a, **k: pytest.fail("pandas.HDFStore was used"))
    ds = load_things_fmri(w["root"], 1)
    np.testing.assert_array_equal(ds.responses.values, w["values"].T.astype(np.float32))
