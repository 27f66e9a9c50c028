"""Bad input across the adapters: every message names the file, what was found, what was expected."""

from __future__ import annotations

import numpy as np
import pytest
from adapter_fixtures import (
    EEG_CHANNELS,
    write_algonauts,
    write_bold5000,
    write_epochs,
    write_nsd,
    write_things_eeg2,
    write_things_fmri,
)

from neuroalign.datasets import (
    HDF5Brick,
    IngestPlan,
    load_algonauts2023,
    load_bold5000,
    load_mne_epochs,
    load_nsd,
    load_things_eeg2,
    load_things_fmri,
)
from neuroalign.datasets._formats import load_mat, load_mgh, load_npy_dict
from neuroalign.datasets._ingest import Block
from neuroalign.exceptions import DataFormatError

pytestmark = pytest.mark.filterwarnings("ignore::neuroalign.datasets.PublishedCountWarning")


def _savemat(path, **kw):
    import scipy.io

    mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    mat.update(kw)
    scipy.io.savemat(path, mat)


# -- shared readers ------------------------------------------------------------------------

def test_reader_errors(tmp_path):
    import nibabel as nib

    p = tmp_path / "x.mgh"
    nib.save(nib.MGHImage(np.zeros((4, 2, 1, 3), np.float32), np.eye(4)), str(p))
    with pytest.raises(DataFormatError, match=r"x.mgh: surface data of shape \(4, 2, 1, 3\), expected \(n_vertices, 1, 1\[, n_trials\]\)"):
        load_mgh(p)
    m = tmp_path / "bad.mat"
    m.write_bytes(b"MATLAB 5.0 nonsense")
    with pytest.raises(DataFormatError, match=r"bad.mat: cannot be read as a MATLAB file"):
        load_mat(m, ["a"])
    n = tmp_path / "bad.npy"
    n.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataFormatError, match=r"bad.npy: has a broken .npy header"):
        load_npy_dict(n, [], "a dict")


def test_brick_errors(tmp_path):
    import h5py

    p = tmp_path / "b.hdf5"
    with h5py.File(p, "w") as f:
        f.create_dataset("imgBrick", data=np.zeros((3, 4, 4, 4), np.uint8))
    with pytest.raises(DataFormatError, match=r"b.hdf5: dataset 'imgBrick' has shape \(3, 4, 4, 4\), expected \(n_images, height, width, 3\) RGB"):
        HDF5Brick(p)
    with h5py.File(p, "w") as f:
        f.create_dataset("imgBrick", data=np.zeros((3, 4, 4, 3), np.float32))
    with pytest.raises(DataFormatError, match=r"b.hdf5: dataset 'imgBrick' has dtype float32, expected uint8"):
        HDF5Brick(p)
    with h5py.File(p, "w") as f:
        f.create_dataset("imgBrick", data=np.zeros((3, 4, 4, 3), np.uint8))
    with pytest.raises(TypeError, match=r"HDF5Brick indices must be integers, got dtype float64"):
        HDF5Brick(p)[[0.5]]


def test_block_shape_checked(tmp_path):
    import xarray as xr

    sk = xr.Dataset(coords={"stimulus_id": ("presentation", ["a", "b"]), "neuroid_id": ("neuroid", ["n"])})
    plan = IngestPlan(sk, ("presentation", "neuroid"), [Block("f.hdf5", 0, 2, lambda: np.zeros((3, 1)))])
    with pytest.raises(DataFormatError, match=r"f.hdf5: read an array of shape \(3, 1\), expected \(2, 1\)"):
        plan.load()


# -- NSD -------------------------------------------------------------------------------------

@pytest.fixture
def nsd(tmp_path):
    return write_nsd(tmp_path / "nsd")


def _bdir(w, space="func1pt8mm"):
    return w["root"] / f"nsddata_betas/ppdata/subj01/{space}/betas_fithrf_GLMdenoise_RR"


def test_nsd_design_errors(nsd):
    p = nsd["root"] / "nsddata/experiments/nsd/nsd_expdesign.mat"
    _savemat(p, masterordering=np.array([[0.0, 50.0]]))
    with pytest.raises(DataFormatError, match=r"nsd_expdesign.mat: 'masterordering' values span 0..50, expected 1-based indices 1..12"):
        load_nsd(nsd["root"], 1)
    _savemat(p, subjectim=np.zeros((2, 2, 3)))
    with pytest.raises(DataFormatError, match=r"nsd_expdesign.mat: 'subjectim' has shape \(2, 2, 3\), expected \(8, n_images\) with a row for subject 1"):
        load_nsd(nsd["root"], 1)


def test_nsd_folder_errors(nsd, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere: no such folder \(expected an NSD root"):
        load_nsd(tmp_path / "nowhere", 1)
    for p in _bdir(nsd).glob("betas_session*"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match=r"betas_fithrf_GLMdenoise_RR: no betas_sessionNN files found"):
        load_nsd(nsd["root"], 1)


def test_nsd_format_and_geometry_errors(nsd):
    import h5py

    with pytest.raises(FileNotFoundError, match=r"betas_fithrf_GLMdenoise_RR: no NIfTI beta file for this session \(found betas_session01.hdf5\); format='nifti' asks for one"):
        # only HDF5 present; asking for nifti finds none
        load_nsd(nsd["root"], 1, format="nifti")
    with h5py.File(_bdir(nsd) / "betas_session02.hdf5", "w") as f:
        f.create_dataset("betas", data=np.zeros((8, 3, 6, 5), np.int16))
    with pytest.raises(DataFormatError, match=r"betas_session02.hdf5: data shape \(5, 6, 3\), expected \(5, 6, 4\) like 2 of 3 sessions"):
        load_nsd(nsd["root"], 1)


def test_nsd_surface_errors(nsd):
    import h5py
    import nibabel as nib

    nat = _bdir(nsd, "nativesurface")
    with h5py.File(nat / "rh.betas_session01.hdf5", "w") as f:
        f.create_dataset("betas", data=np.zeros((7, 12), np.int16))
    with pytest.raises(DataFormatError, match=r"rh.betas_session01.hdf5: 7 trials, but lh.betas_session01.hdf5 has 8"):
        load_nsd(nsd["root"], 1, space="nativesurface")
    lab = nsd["root"] / "nsddata/freesurfer/fsaverage/label/lh.prf-visualrois.mgz"
    nib.save(nib.MGHImage(np.zeros((9, 1, 1), np.float32), np.eye(4)), str(lab))
    with pytest.raises(DataFormatError, match=r"lh.prf-visualrois.mgz: \(9,\) values, but the lh betas have 10 vertices"):
        load_nsd(nsd["root"], 1, space="fsaverage", rois=("prf-visualrois",))
    nc = _bdir(nsd, "fsaverage") / "rh.ncsnr.mgh"
    nib.save(nib.MGHImage(np.zeros((5, 1, 1), np.float32), np.eye(4)), str(nc))
    with pytest.raises(DataFormatError, match=r"rh.ncsnr.mgh: 5 vertices, expected 12 like the betas"):
        load_nsd(nsd["root"], 1, space="fsaverage", rois=())


# -- THINGS-EEG2 / MNE ---------------------------------------------------------------------

def test_eeg2_argument_errors(tmp_path):
    w = write_things_eeg2(tmp_path / "eeg")
    with pytest.raises(ValueError, match=r"Invalid value for 'subject': 'bob'. Expected an integer or 'sub-NN'"):
        load_things_eeg2(w["root"], "bob")
    with pytest.raises(ValueError, match=r"'splits' in load_things_eeg2\(\): 'val'. Expected 'training' and/or 'test'"):
        load_things_eeg2(w["root"], 1, splits=("val",))
    p = w["dir"] / "preprocessed_eeg_test.npy"
    np.save(p, {"preprocessed_eeg_data": np.zeros((3, 2, 17, 7)), "ch_names": EEG_CHANNELS[::-1],
                "times": w["times"]}, allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_test.npy: channels or times differ from the first split's file"):
        load_things_eeg2(w["root"], 1)


def test_mne_column_errors(tmp_path):
    w = write_epochs(tmp_path / "e-epo.fif", n_epochs=6)
    p = w["path"]
    with pytest.raises(DataFormatError, match=r"e-epo.fif: no column 'kind' \(in drop=\)"):
        load_mne_epochs(p, stimulus_column="image_path", drop={"kind": ["x"]})
    with pytest.raises(DataFormatError, match=r"e-epo.fif: no column 'part' for split_column"):
        load_mne_epochs(p, stimulus_column="image_path", split_column="part")
    with pytest.raises(DataFormatError, match=r"e-epo.fif: no column 'ses' for session_column"):
        load_mne_epochs(p, stimulus_column="image_path", session_column="ses")
    with pytest.raises(DataFormatError, match=r"e-epo.fif: no epoch left with a stimulus in 'image_path'"):
        load_mne_epochs(p, stimulus_column="image_path", drop={"trial_type": ["exp", "test", "catch"]})
    import mne

    info = mne.create_info(["STI"], 100.0, ["stim"])
    mne.EpochsArray(np.zeros((2, 1, 5)), info, verbose="error",
                    metadata=w["metadata"].iloc[:2]).save(tmp_path / "s-epo.fif", verbose="error")
    with pytest.raises(DataFormatError, match=r"s-epo.fif: no MEG/EEG data channels among 'STI'"):
        load_mne_epochs(tmp_path / "s-epo.fif", stimulus_column="image_path")


# -- Algonauts ---------------------------------------------------------------------------------

def test_algonauts_errors(tmp_path):
    w = write_algonauts(tmp_path / "alg")
    s = w["root"] / "subj01"
    png = next((s / "training_split/training_images").iterdir())
    png.rename(png.with_name("image-0001.png"))
    with pytest.raises(DataFormatError, match=r"training_images: image name 'image-0001.png', expected 'train-NNNN_nsd-MMMMM.png'"):
        load_algonauts2023(w["root"], 1)
    w = write_algonauts(tmp_path / "alg2")
    s = w["root"] / "subj01"
    np.save(s / "roi_masks/mapping_prf-visualrois.npy", np.array([1, 2]))
    with pytest.raises(DataFormatError, match=r"mapping_prf-visualrois.npy: holds an array of shape \(2,\), expected a dict \(a pickled dict"):
        load_algonauts2023(w["root"], 1)
    np.save(s / "roi_masks/mapping_prf-visualrois.npy", {0: "Unknown", 1: "V1v", 2: "V1d", 3: "V2v"}, allow_pickle=True)
    np.save(s / "test_split/noise_ceiling/lh_noise_ceiling.npy", np.zeros(2))
    with pytest.raises(DataFormatError, match=r"lh_noise_ceiling.npy: shape \(2,\), expected \(\d+,\)"):
        load_algonauts2023(w["root"], 1)
    np.save(s / "roi_masks/lh.all-vertices_fsaverage_space.npy", np.zeros((2, 3)))
    with pytest.raises(DataFormatError, match=r"lh.all-vertices_fsaverage_space.npy: shape \(2, 3\), expected a vector \(n_vertices,\)"):
        load_algonauts2023(w["root"], 1)
    import shutil

    shutil.rmtree(s / "training_split/training_images")
    np.save(s / "roi_masks/lh.all-vertices_fsaverage_space.npy", np.ones(3, int))
    with pytest.raises(FileNotFoundError, match=r"training_images: no such folder \(expected train-NNNN_nsd-MMMMM.png images\)"):
        load_algonauts2023(w["root"], 1)


# -- BOLD5000 ----------------------------------------------------------------------------------

def test_bold5000_errors(tmp_path):
    import nibabel as nib

    w = write_bold5000(tmp_path / "b")
    with pytest.raises(ValueError, match=r"'variant' in load_bold5000\(\): 'TYPEZ'. Expected one of 'TYPEA-ASSUMEHRF'"):
        load_bold5000(w["root"], 1, variant="TYPEZ")
    with pytest.raises(ValueError, match=r"'source' in load_bold5000\(\): 'raw'"):
        load_bold5000(w["root"], 1, source="raw")
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 2), np.int16), np.eye(4)), str(mask))
    with pytest.raises(DataFormatError, match=r"mask.nii.gz: volume of shape \(4, 5, 2\), but the betas have \(X, Y, Z\) = \(4, 5, 3\)"):
        load_bold5000(w["root"], 1, mask=mask)
    nib.save(nib.Nifti1Image(np.ones((4, 5, 3), np.int16), np.eye(4)), str(mask))
    ds = load_bold5000(w["root"], 1, mask=mask)
    assert ds.sizes["neuroid"] == 60
    p = next((w["root"] / "GLMsingle").glob("*ses-02.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 4, 5), np.float32), np.eye(4)), str(p))
    with pytest.raises(DataFormatError, match=r"ses-02.nii.gz: volume \(4, 5, 4\), expected \(4, 5, 3\)"):
        load_bold5000(w["root"], 1)
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 3), np.float32), np.eye(4)), str(p))
    with pytest.raises(DataFormatError, match=r"ses-02.nii.gz: image has shape \(4, 5, 3\), expected 4 dims"):
        load_bold5000(w["root"], 1)
    roi = dict(w["roi"])
    roi["LHLOC"] = np.zeros((3, 2, 2))
    import scipy.io

    scipy.io.savemat(w["mat"], roi)
    with pytest.raises(DataFormatError, match=r"CSI1_ROIs_TR34.mat: 'LHLOC' has shape \(3, 2, 2\) dtype float64, expected float \(n_trials, n_voxels\)"):
        load_bold5000(w["root"], 1, source="roi")
    with pytest.raises(FileNotFoundError, match=r"nowhere: no such folder \(expected a BOLD5000 download\)"):
        load_bold5000(tmp_path / "nowhere", 1)


# -- THINGS-fMRI -------------------------------------------------------------------------------

def test_things_fmri_table_errors(tmp_path):
    import warnings

    import pandas as pd

    w = write_things_fmri(tmp_path / "tf")
    st = w["stim"]
    bad = st.copy()
    bad.loc[bad.index[0], "trial_type"] = "catch"
    bad.to_csv(w["dir"] / "sub-01_StimulusMetadata.csv", index=False)
    with pytest.raises(DataFormatError, match=r"sub-01_StimulusMetadata.csv: trial_type values 'catch', expected only 'train' and 'test'"):
        load_things_fmri(w["root"], 1)
    bad = st.copy()
    bad.loc[bad.index[0], "trial_id"] = 99
    bad.to_csv(w["dir"] / "sub-01_StimulusMetadata.csv", index=False)
    with pytest.raises(DataFormatError, match=r"sub-01_StimulusMetadata.csv: trial_id\(s\) 99 have no column in sub-01_ResponseData.h5 \(9 trial columns\)"):
        load_things_fmri(w["root"], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.DataFrame(w["values"]).to_hdf(w["dir"] / "sub-01_ResponseData.h5", key="ResponseData", mode="w")
    with pytest.raises(DataFormatError, match=r"sub-01_ResponseData.h5: 'ResponseData' has no column 'voxel_id'"):
        load_things_fmri(w["root"], 1)
