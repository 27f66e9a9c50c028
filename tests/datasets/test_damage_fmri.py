"""Damage matrix of the Algonauts-2023, BOLD5000 and THINGS-fMRI adapters.

Pristine trees are written by ``adapter_fixtures`` in the published layouts (``np.save``
arrays and pickled mapping dicts; GLMsingle NIfTIs, image-name lists, release-1 ROI .mat;
a pandas fixed-format HDFStore and its metadata CSVs); each case damages one file.
"""

from __future__ import annotations

import pickle
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from adapter_fixtures import write_algonauts, write_bold5000, write_things_fmri
from damage import (
    Evil,
    check_case,
    copy_tree,
    empty,
    evil_pickle,
    flip_gzip,
    flip_h5_chunk,
    latin1,
    nifti,
    savemat,
    truncate,
)

from neuroalign.datasets import (
    TextEncodingWarning,
    load_algonauts2023,
    load_bold5000,
    load_things_fmri,
)
from neuroalign.exceptions import DataFormatError, UnsafeFileError

pytestmark = pytest.mark.filterwarnings("ignore::neuroalign.datasets.PublishedCountWarning")
E = DataFormatError


# -- Algonauts-2023 ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def alg(tmp_path_factory):
    return write_algonauts(tmp_path_factory.mktemp("pristine") / "alg")


def rm(r, name):
    return r / "subj01/roi_masks" / name


def fmri(r, hemi="lh", split="training"):
    folder = "training_split" if split == "training" else "test_split"
    return r / f"subj01/{folder}/{split}_fmri/{hemi}_{split}_fmri.npy"


def imgs(r):
    return r / "subj01/training_split/training_images"


MASK = "lh.all-vertices_fsaverage_space.npy"
MAP = "mapping_prf-visualrois.npy"
LAB = "lh.prf-visualrois_fsaverage_space.npy"


def _npy(p, fn):
    np.save(p, fn(np.load(p)))


def _first_pos(a, v):
    a = np.array(a, dtype=float if isinstance(v, float) else a.dtype)
    a[np.flatnonzero(a > 0)[0]] = v
    return a


def _rename_image(r, i, new_nr=None, new_nsd=None):
    names = sorted(p.name for p in imgs(r).iterdir())
    old = names[i]
    nr, nsd = old[6:10], old[15:20]
    (imgs(r) / old).rename(imgs(r) / f"train-{new_nr or nr}_nsd-{new_nsd or nsd}.png")


def _dup_nsd(r):
    names = sorted(p.name for p in imgs(r).iterdir())
    _rename_image(r, 1, new_nsd=names[0][15:20])


def _check_alg(w):
    def check(ds):
        np.testing.assert_array_equal(ds.responses.values[:5], np.c_[w["fmri"][("train", "lh")],
                                                                    w["fmri"][("train", "rh")]])
    return check


ALG = [
    ("mask-missing", lambda r, s: rm(r, MASK).unlink(), FileNotFoundError, rf"{MASK}: no such file"),
    ("mask-empty", lambda r, s: empty(rm(r, MASK)), E, rf"{MASK}: is empty \(0 bytes\)"),
    ("mask-truncated", lambda r, s: truncate(rm(r, MASK), 0.8), E, rf"{MASK}: cannot be read as .npy"),
    ("mask-pickled", lambda r, s: np.save(rm(r, MASK), np.array([1, Evil(s)], object), allow_pickle=True),
     UnsafeFileError, rf"{MASK}: refused to load: it holds pickled Python objects \(dtype object\)"),
    ("mask-not-binary", lambda r, s: _npy(rm(r, MASK), lambda a: _first_pos(a, 2)), E,
     rf"{MASK}: holds values 2, expected a 0/1 vertex mask"),
    ("mask-2d", lambda r, s: np.save(rm(r, MASK), np.ones((2, 3))), E,
     rf"{MASK}: shape \(2, 3\), expected a vector \(n_vertices,\)"),
    ("mask-float-01", lambda r, s: _npy(rm(r, MASK), lambda a: a.astype(np.float32)), None, None),
    ("fmri-missing-lh", lambda r, s: fmri(r).unlink(), FileNotFoundError,
     r"lh_training_fmri.npy: no such file \(expected the lh training fMRI; rh_training_fmri.npy is present\)"),
    ("fmri-empty", lambda r, s: empty(fmri(r)), E, r"lh_training_fmri.npy: is empty \(0 bytes\)"),
    ("fmri-truncated", lambda r, s: truncate(fmri(r), 0.7), E, r"lh_training_fmri.npy: cannot be read as .npy"),
    ("fmri-transposed", lambda r, s: _npy(fmri(r), lambda a: a.T), E,
     r"lh_training_fmri.npy: shape \(\d+, 5\), expected \(5, \d+\)"),
    ("fmri-pickled", lambda r, s: np.save(fmri(r), np.zeros((5, 2), object), allow_pickle=True), UnsafeFileError,
     r"lh_training_fmri.npy: refused to load: it holds pickled Python objects"),
    ("fmri-bool", lambda r, s: _npy(fmri(r), lambda a: a > 0), E,
     r"lh_training_fmri.npy: dtype bool, expected floating-point responses"),
    ("fmri-text", lambda r, s: _npy(fmri(r), lambda a: a.astype(str)), E,
     r"lh_training_fmri.npy: dtype <U\d+, expected floating-point responses"),
    ("fmri-test-one-hemisphere", lambda r, s: fmri(r, "rh", "test").unlink(), FileNotFoundError,
     r"rh_test_fmri.npy: no such file \(expected the rh test fMRI; lh_test_fmri.npy is present\)"),
    ("images-duplicate-nsd", lambda r, s: _dup_nsd(r), E,
     r"training_images: 'train-0001_nsd-\d+.png' and 'train-0002_nsd-\d+.png' show the same NSD image"),
    ("images-gap", lambda r, s: _rename_image(r, 1, new_nr="0009"), E,
     r"training_images: images are numbered 1, 3, 4, 5, 9, expected 1\.\.5"),
    ("images-stray-copy", lambda r, s: shutil.copy(next(imgs(r).iterdir()), imgs(r) / "train-0001_nsd-00123 (copy).png"),
     E, r"training_images: image name 'train-0001_nsd-00123 \(copy\).png', expected 'train-NNNN_nsd-MMMMM.png'"),
    ("images-test-in-train", lambda r, s: sorted(imgs(r).iterdir())[0].rename(imgs(r) / "test-0001_nsd-00999.png"), E, r"training_images: image name 'test-0001_nsd-00999.png'"),
    ("images-other-files", lambda r, s: [(imgs(r) / n).write_text("x") for n in (".DS_Store", "notes.txt")], None, None),
    ("mapping-crafted", lambda r, s: rm(r, MAP).write_bytes(evil_pickle(s)), UnsafeFileError,
     rf"{MAP}: refused to load: its pickle names posix.system"),
    ("mapping-crafted-npy", lambda r, s: np.save(rm(r, MAP), {1: Evil(s)}, allow_pickle=True), UnsafeFileError,
     rf"{MAP}: refused to load: its pickle names posix.system"),
    ("mapping-not-dict", lambda r, s: np.save(rm(r, MAP), np.array([1, 2])), E,
     rf"{MAP}: holds an array of shape \(2,\), expected a dict"),
    ("mapping-key-not-int", lambda r, s: np.save(rm(r, MAP), {"a": "V1v"}, allow_pickle=True), E,
     rf"{MAP}: key 'a' \(str\), expected integer label values"),
    ("mapping-value-not-str", lambda r, s: np.save(rm(r, MAP), {0: "Unknown", 1: 5}, allow_pickle=True), E,
     rf"{MAP}: name 5 \(int\) for label 1, expected a str"),
    ("mapping-duplicate-name", lambda r, s: np.save(rm(r, MAP), {1: "V1v", 2: "V1v", 3: "x"}, allow_pickle=True), E,
     rf"{MAP}: name 'V1v' for labels 1 and 2; expected one label per name"),
    ("mapping-truncated", lambda r, s: truncate(rm(r, MAP), 0.7), E, rf"{MAP}: cannot be read as a pickle"),
    ("mapping-empty", lambda r, s: empty(rm(r, MAP)), E, rf"{MAP}: is empty \(0 bytes\)"),
    ("mapping-pickle-dump", lambda r, s: rm(r, MAP).write_bytes(pickle.dumps({0: "Unknown", 1: "V1v", 2: "V1d", 3: "V2v"})),
     None, None),
    ("mapping-missing", lambda r, s: rm(r, MAP).unlink(), FileNotFoundError,
     rf"{MAP}: no such file \(expected the label names of ROI 'prf-visualrois'; {LAB} is present\)"),
    ("roi-wrong-length", lambda r, s: _npy(rm(r, LAB), lambda a: a[:-1]), E,
     rf"{LAB}: shape \(29,\), expected \(30,\) like {MASK}"),
    ("roi-non-integer", lambda r, s: _npy(rm(r, LAB), lambda a: _first_pos(a, 1.5)), E,
     rf"{LAB}: holds non-integer label values \(1.5\)"),
    ("roi-not-in-mapping", lambda r, s: _npy(rm(r, LAB), lambda a: _first_pos(a, 7)), E,
     rf"{LAB}: label value\(s\) 7 \(1 vertex\(es\)\) not in {MAP}"),
    ("roi-pickled", lambda r, s: np.save(rm(r, LAB), np.zeros(30, object), allow_pickle=True), UnsafeFileError,
     rf"{LAB}: refused to load: it holds pickled Python objects"),
    ("nc-wrong-shape", lambda r, s: np.save(r / "subj01/test_split/noise_ceiling/lh_noise_ceiling.npy", np.zeros(2)), E,
     r"lh_noise_ceiling.npy: shape \(2,\), expected \(\d+,\)"),
    ("nc-truncated", lambda r, s: truncate(r / "subj01/test_split/noise_ceiling/lh_noise_ceiling.npy", 0.8), E,
     r"lh_noise_ceiling.npy: cannot be read as .npy"),
]


@pytest.mark.parametrize(("damage", "error", "match"), [pytest.param(*c[1:], id=c[0]) for c in ALG])
def test_algonauts_damage(alg, tmp_path, damage, error, match):
    root = copy_tree(alg["root"], tmp_path / "alg")
    sentinel = tmp_path / "SENTINEL"
    damage(root, sentinel)
    check_case(lambda: load_algonauts2023(root, 1), error, match, None if error else _check_alg(alg))
    assert not sentinel.exists()


# -- BOLD5000 ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def b5k(tmp_path_factory):
    return write_bold5000(tmp_path_factory.mktemp("pristine") / "b5k")


def ses(r, n=1, suffix=""):
    return r / f"GLMsingle/CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-{n:02d}{suffix}.nii.gz"


def names(r):
    return r / "sub-CSI1_imgnames.txt"


def rep113(r):
    return r / "BOLD5000_Stimuli/Scene_Stimuli/repeated_stimuli_113_list.txt"


def mat(r):
    return r / "BOLD5000_ROIs/ROIs/CSI1/mat/CSI1_ROIs_TR34.mat"


def stimlist(r):
    return r / "BOLD5000_ROIs/ROIs/stim_lists/CSI01_stim_lists.txt"


def _copy_to(p, folder):
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(p, folder / p.name)


def _check_b5k(w, latin=False):
    def check(ds):
        if "i" in ds.coords:  # GLMsingle betas
            full = np.concatenate(w["vols"], axis=3)
            ijk = np.c_[ds.i, ds.j, ds.k]
            np.testing.assert_array_equal(ds.responses.values, full[ijk[:, 0], ijk[:, 1], ijk[:, 2]].T)
        if latin:  # the latin-1 name was decoded, not mangled
            assert "bold5000-\u00e9glise6" in set(ds.stimulus_id.values)
    return check


def _mask(r):
    nifti(r / "mask.nii.gz", np.ones((4, 5, 3), np.int16))
    return r / "mask.nii.gz"


ROI = {"source": "roi"}
B5K = [
    ("ses-stray-copy", lambda r: shutil.copy(ses(r), ses(r, 1, " (copy)")), {}, E,
     r"ses-01 \(copy\).nii.gz: unexpected file name; expected CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-NN.nii.gz"),
    ("ses-duplicate", lambda r: shutil.copy(ses(r), r / "GLMsingle/CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-1.nii.gz"),
     {}, E, r"_ses-1.nii.gz: a second file for session 1 \(besides .*_ses-01.nii.gz\)"),
    ("ses-two-folders", lambda r: _copy_to(ses(r), r / "backup"), {}, E,
     r"backup/CSI1_GLMbetas-TYPED-FITHRF-GLMDENOISE-RR_ses-01.nii.gz: a second file for session 1"),
    ("ses-empty", lambda r: empty(ses(r)), {}, E, r"ses-01.nii.gz: cannot be read as NIfTI"),
    ("ses-truncated", lambda r: truncate(ses(r, 2), 0.6), {}, E,
     r"ses-02.nii.gz: (cannot be read as NIfTI|truncated or corrupt image data)"),
    ("ses-gzip-flipped", lambda r: flip_gzip(ses(r, 2)), {}, E,
     r"ses-02.nii.gz: (cannot be read as NIfTI|truncated or corrupt image data)"),
    ("ses-3d", lambda r: nifti(ses(r, 2), np.zeros((4, 5, 3), np.float32)), {}, E,
     r"ses-02.nii.gz: image has shape \(4, 5, 3\), expected 4 dims"),
    ("ses-volume-mismatch", lambda r: nifti(ses(r, 2), np.zeros((4, 5, 4, 5), np.float32)), {}, E,
     r"ses-02.nii.gz: volume \(4, 5, 4\), expected \(4, 5, 3\)"),
    ("ses-int", lambda r: nifti(ses(r, 2), np.zeros((4, 5, 3, 5), np.int16)), {}, E,
     r"ses-02.nii.gz: image dtype is int16, expected float \(GLMsingle betas are PSC\)"),
    ("imgnames-missing", lambda r: names(r).unlink(), {}, FileNotFoundError,
     r"no file matching 'sub-CSI1_imgnames.txt'"),
    ("imgnames-empty", lambda r: empty(names(r)), {}, E, r"sub-CSI1_imgnames.txt: is empty"),
    ("imgnames-count", lambda r: names(r).write_text("a.jpg\nb.jpg\n"), {}, E,
     r"sub-CSI1_imgnames.txt: 2 image names, but the 2 session files hold 11 trials"),
    ("imgnames-latin1", lambda r: latin1(names(r), "church6", "\u00e9glise6"), {}, None,
     r"sub-CSI1_imgnames.txt: is not UTF-8 \(byte 0xe9"),
    ("imgnames-two-copies", lambda r: _copy_to(names(r), r / "other"), {}, E,
     r"found 2 files named 'sub-CSI1_imgnames.txt' \(.*\); expected one"),
    ("repeated-latin1", lambda r: latin1(rep113(r), "church6", "\u00e9glise6"), {}, None,
     r"repeated_stimuli_113_list.txt: is not UTF-8"),
    ("repeated-two-copies", lambda r: _copy_to(rep113(r), r / "other"), {}, E,
     r"found 2 files named 'repeated_stimuli_113_list.txt'"),
    ("repeated-missing", lambda r: rep113(r).unlink(), {}, None, r"no repeated_stimuli_113_list.txt"),
    ("mask-truncated", lambda r: truncate(_mask(r), 0.5), {"mask": "MASK"}, E,
     r"mask.nii.gz: (cannot be read as NIfTI|truncated or corrupt image data)"),
    ("mask-wrong-shape", lambda r: nifti(r / "mask.nii.gz", np.ones((4, 5, 2), np.int16)), {"mask": "MASK"}, E,
     r"mask.nii.gz: volume of shape \(4, 5, 2\), but the betas have \(X, Y, Z\) = \(4, 5, 3\)"),
    ("roi-mat-empty", lambda r: empty(mat(r)), ROI, E, r"CSI1_ROIs_TR34.mat: cannot be read as a MATLAB file"),
    ("roi-mat-truncated", lambda r: truncate(mat(r), 0.5), ROI, E, r"CSI1_ROIs_TR34.mat: cannot be read as a MATLAB file"),
    ("roi-mat-missing-key", lambda r: savemat(mat(r), RHRSC=None), ROI, E, r"CSI1_ROIs_TR34.mat: missing key\(s\) 'RHRSC'"),
    ("roi-mat-3d", lambda r: savemat(mat(r), LHLOC=np.zeros((11, 2, 2))), ROI, E,
     r"CSI1_ROIs_TR34.mat: 'LHLOC' has shape \(11, 2, 2\) dtype float64, expected float \(n_trials, n_voxels\)"),
    ("roi-mat-int", lambda r: savemat(mat(r), LHLOC=np.zeros((11, 2), np.int64)), ROI, E,
     r"CSI1_ROIs_TR34.mat: 'LHLOC' has shape \(11, 2\) dtype int64, expected float"),
    ("roi-mat-trials", lambda r: savemat(mat(r), LHPPA=np.zeros((3, 2))), ROI, E,
     r"CSI1_ROIs_TR34.mat: 'LHPPA' has 3 trials, but CSI01_stim_lists.txt lists 11"),
    ("roi-mat-two-copies", lambda r: _copy_to(mat(r), r / "other"), ROI, E, r"found 2 files named 'CSI1_ROIs_TR34.mat'"),
    ("roi-list-latin1", lambda r: latin1(stimlist(r), "church6", "\u00e9glise6"), ROI, None,
     r"CSI01_stim_lists.txt: is not UTF-8"),
    ("roi-list-empty", lambda r: empty(stimlist(r)), ROI, E, r"CSI01_stim_lists.txt: is empty"),
    ("roi-list-missing", lambda r: stimlist(r).unlink(), ROI, FileNotFoundError, r"no file matching 'CSI01_stim_lists.txt'"),
]


@pytest.mark.parametrize(("damage", "kwargs", "error", "match"), [pytest.param(*c[1:], id=c[0]) for c in B5K])
def test_bold5000_damage(b5k, tmp_path, damage, kwargs, error, match):
    root = copy_tree(b5k["root"], tmp_path / "b5k")
    damage(root)
    kwargs = {k: (root / "mask.nii.gz" if v == "MASK" else v) for k, v in kwargs.items()}
    warns = (UserWarning if "repeated_stimuli" in match else TextEncodingWarning) if error is None else None
    check_case(lambda: load_bold5000(root, 1, **kwargs), error, match,
               _check_b5k(b5k, "imgnames" in (match or "") or "stim_lists" in (match or ""))
               if error is None else None, warns=warns)


# -- THINGS-fMRI --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tf(tmp_path_factory):
    return write_things_fmri(tmp_path_factory.mktemp("pristine") / "tf")


def resp(r):
    return r / "betas_csv/sub-01_ResponseData.h5"


def stim(r):
    return r / "betas_csv/sub-01_StimulusMetadata.csv"


def vox(r):
    return r / "betas_csv/sub-01_VoxelMetadata.csv"


def _table(r):
    return pd.read_hdf(resp(r), "ResponseData")  # the test's own fixture: pandas may read it


def _to_hdf(r, df, key_="ResponseData", **kw):
    resp(r).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df.to_hdf(resp(r), key=key_, **kw)


def _items(r, labels, block=0):
    """Replace block ``block``'s pickled column labels (h5py, as PyTables stores them)."""
    import h5py

    blob = np.frombuffer(labels if isinstance(labels, bytes) else
                         pickle.dumps(np.array(labels, dtype=object)), np.uint8)
    with h5py.File(resp(r), "r+") as f:
        g = f["ResponseData"]
        attrs = dict(g[f"block{block}_items"].attrs)
        del g[f"block{block}_items"]
        d = g.create_dataset(f"block{block}_items", (1,), dtype=h5py.vlen_dtype(np.uint8))
        d[0] = blob
        d.attrs.update(attrs)


def _attr_payload(r, s, name="info", node="ResponseData", value=None):
    """A pickled attribute (PyTables unpickles such attributes when pandas reads them)."""
    import h5py

    with h5py.File(resp(r), "r+") as f:
        f[node].attrs[name] = np.bytes_(evil_pickle(s)) if value is None else value


def _untransposed(r):
    """The layout without the 'transposed' attr: values stored (columns, rows)."""
    import h5py

    with h5py.File(resp(r), "r+") as f:
        g = f["ResponseData"]
        for name in [k for k in g if k.endswith("_values")]:
            data, attrs = g[name][()], dict(g[name].attrs)
            del g[name]
            attrs.pop("transposed", None)
            g.create_dataset(name, data=data.T).attrs.update(attrs)


def _vox_set(r, col, row, value):
    df = pd.read_csv(vox(r))
    df[col] = df[col].astype(object)
    df.loc[row, col] = value
    df.to_csv(vox(r), index=False)


def _stim_edit(r, fn):
    df = pd.read_csv(stim(r))
    df = fn(df)
    df.to_csv(stim(r), index=False)


def _stim_set(col, row, value):
    def fn(df):
        df[col] = df[col].astype(object)
        df.loc[df.index[row], col] = value
        return df
    return fn


def _overlap(df):
    test = df.index[df.trial_type == "test"][0]
    df.loc[test, "stimulus"] = df.loc[df.index[df.trial_type == "train"][0], "stimulus"]
    return df


def _check_tf(w, order=None):
    def check(ds):
        vm = w["voxels"] if order is None else w["voxels"].iloc[order]
        rows = [list(w["voxels"].voxel_id).index(v) for v in vm.voxel_id]
        np.testing.assert_array_equal(ds.responses.values, w["values"][rows].T.astype(np.float32))
        np.testing.assert_array_equal(ds.voxel_id.values, vm.voxel_id)
    return check


TF = [
    ("resp-missing", lambda r, s: resp(r).unlink(), FileNotFoundError, r"no THINGS-fMRI response table for sub-01"),
    ("resp-empty", lambda r, s: empty(resp(r)), E, r"sub-01_ResponseData.h5: cannot be read as HDF5"),
    ("resp-two-layouts", lambda r, s: shutil.copy(resp(r), r / "sub-01_ResponseData.h5"), E,
     r"tf/sub-01_ResponseData.h5 and .*betas_csv/sub-01_ResponseData.h5: two files for the response table of sub-01"),
    ("resp-truncated", lambda r, s: truncate(resp(r), 0.5), E,
     r"sub-01_ResponseData.h5: (cannot be read as HDF5|cannot read dataset)"),
    ("resp-no-key", lambda r, s: _to_hdf(r, pd.DataFrame({"a": [1.0]}), key_="Other"), E, r"sub-01_ResponseData.h5: has no key 'ResponseData'. Keys present: 'Other'"),
    ("resp-table-format", lambda r, s: _to_hdf(r, _table(r).rename(columns=str), format="table"), E,
     r"sub-01_ResponseData.h5: 'ResponseData' has pandas_type 'frame_table', expected 'frame'"),
    ("resp-no-voxel-id", lambda r, s: _to_hdf(r, _table(r).drop(columns="voxel_id")), E,
     r"sub-01_ResponseData.h5: 'ResponseData' has no column 'voxel_id'"),
    ("resp-corrupt-chunk", lambda r, s: (_to_hdf(r, _table(r), complevel=9, complib="zlib"),
                                         flip_h5_chunk(resp(r), "ResponseData/block0_values")), E,
     r"sub-01_ResponseData.h5: cannot read dataset 'ResponseData/block0_values' \(.*\); the file is truncated or corrupt"),
    ("resp-crafted-labels", lambda r, s: _items(r, evil_pickle(s)), UnsafeFileError,
     r"sub-01_ResponseData.h5: refused to load: its pickle names posix.system"),
    ("resp-crafted-attr", lambda r, s: _attr_payload(r, s), None, None),
    ("resp-pickled-attr-encoding", lambda r, s: _attr_payload(r, s, "encoding"), UnsafeFileError,
     r"sub-01_ResponseData.h5: refused to read: attribute 'encoding' of /ResponseData holds a pickle"),
    ("resp-pickled-attr-kind", lambda r, s: _attr_payload(r, s, "kind", "ResponseData/block0_items"),
     UnsafeFileError, r"sub-01_ResponseData.h5: refused to read: attribute 'kind' of /ResponseData/block0_items"),
    ("resp-bad-encoding", lambda r, s: _attr_payload(r, s, "encoding", value=np.bytes_(b"no-such-codec")), E,
     r"sub-01_ResponseData.h5: ResponseData has encoding attribute 'no-such-codec'; expected a codec name"),
    ("resp-string-trials", lambda r, s: _to_hdf(r, _table(r).astype({c: str for c in range(9)})), E,
     r"sub-01_ResponseData.h5: trial column 0 holds dtype object; expected float betas"),
    ("resp-duplicate-column", lambda r, s: _items(r, [0, 1, 1, 3, 4, 5, 6, 7, 8]), E,
     r"sub-01_ResponseData.h5: column 1 appears twice"),
    ("resp-label-not-int", lambda r, s: _items(r, ["x", 1, 2, 3, 4, 5, 6, 7, 8]), E,
     r"sub-01_ResponseData.h5: column label 'x' is not a trial number"),
    ("resp-voxel-id-float", lambda r, s: _to_hdf(r, _table(r).assign(voxel_id=lambda d: d.voxel_id + 0.5)), E,
     r"sub-01_ResponseData.h5: column 'voxel_id' holds non-integer values"),
    ("resp-voxel-id-duplicate", lambda r, s: _to_hdf(r, _table(r).assign(voxel_id=[100] * 7)), E,
     r"sub-01_ResponseData.h5: voxel_id 100 appears more than once"),
    ("resp-untransposed-layout", lambda r, s: _untransposed(r), None, None),
    ("resp-compressed", lambda r, s: _to_hdf(r, _table(r), complevel=9, complib="zlib"), None, None),
    ("stim-empty", lambda r, s: empty(stim(r)), E, r"sub-01_StimulusMetadata.csv: is empty"),
    ("stim-latin1", lambda r, s: latin1(stim(r), "dog_0", "d\u00e9g_0"), None, r"sub-01_StimulusMetadata.csv: is not UTF-8"),
    ("stim-missing-column", lambda r, s: _stim_edit(r, lambda d: d.drop(columns="trial_id")), E,
     r"sub-01_StimulusMetadata.csv: missing column\(s\) 'trial_id'"),
    ("stim-duplicate-trial", lambda r, s: _stim_edit(r, lambda d: pd.concat([d, d.iloc[[2]]])), E,
     r"sub-01_StimulusMetadata.csv: trial_id \d appears on lines \d+, 11; expected one row per trial"),
    ("stim-trial-na", lambda r, s: _stim_edit(r, _stim_set("trial_id", 3, "n/a")), E,
     r"sub-01_StimulusMetadata.csv: column 'trial_id' holds nan on line\(s\) 5"),
    ("stim-trial-float", lambda r, s: _stim_edit(r, _stim_set("trial_id", 0, 1.5)), E,
     r"sub-01_StimulusMetadata.csv: column 'trial_id' holds 1.5 on line\(s\) 2"),
    ("stim-trial-negative", lambda r, s: _stim_edit(r, _stim_set("trial_id", 0, -1)), E,
     r"sub-01_StimulusMetadata.csv: column 'trial_id' holds -1 on line\(s\) 2 .*expected whole numbers >= 0"),
    ("stim-session-na", lambda r, s: _stim_edit(r, _stim_set("session", 6, "n/a")), E,
     r"sub-01_StimulusMetadata.csv: column 'session' holds nan on line\(s\) 8"),
    ("stim-run-float", lambda r, s: _stim_edit(r, _stim_set("run", 1, 2.5)), E,
     r"sub-01_StimulusMetadata.csv: column 'run' holds 2.5 on line\(s\) 3"),
    ("stim-train-test-overlap", lambda r, s: _stim_edit(r, _overlap), E,
     r"sub-01_StimulusMetadata.csv: stimulus 'dog_\d+s' is in both the train and the test trials"),
    ("stim-catch", lambda r, s: _stim_edit(r, _stim_set("trial_type", 0, "catch")), E,
     r"sub-01_StimulusMetadata.csv: trial_type values 'catch', expected only 'train' and 'test'"),
    ("stim-trial-not-in-table", lambda r, s: _stim_edit(r, _stim_set("trial_id", 0, 99)), E,
     r"sub-01_StimulusMetadata.csv: trial_id\(s\) 99 have no column in sub-01_ResponseData.h5 \(9 trial columns\)"),
    ("stim-stimulus-empty", lambda r, s: _stim_edit(r, _stim_set("stimulus", 4, "n/a")), E,
     r"sub-01_StimulusMetadata.csv: column 'stimulus' is empty on line 6"),
    ("stim-ragged", lambda r, s: stim(r).write_text(stim(r).read_text() + "a,b,c,d,e,f,g,h,i,j\n"), E,
     r"sub-01_StimulusMetadata.csv: cannot be read as a comma-separated table"),
    ("vox-empty", lambda r, s: empty(vox(r)), E, r"sub-01_VoxelMetadata.csv: is empty"),
    ("vox-latin1", lambda r, s: latin1(vox(r), "lFFA", "lFF\u00e9"), None, r"sub-01_VoxelMetadata.csv: is not UTF-8"),
    ("vox-duplicate", lambda r, s: _vox_set(r, "voxel_id", 1, 100), E,
     r"sub-01_VoxelMetadata.csv: voxel_id 100 appears more than once"),
    ("vox-x-na", lambda r, s: _vox_set(r, "voxel_x", 2, "n/a"), E,
     r"sub-01_VoxelMetadata.csv: column 'voxel_x' holds nan on line\(s\) 4"),
    ("vox-count", lambda r, s: pd.read_csv(vox(r)).iloc[:3].to_csv(vox(r), index=False), E,
     r"sub-01_VoxelMetadata.csv: 3 voxels, but sub-01_ResponseData.h5 has 7"),
    ("vox-ids-differ", lambda r, s: _vox_set(r, "voxel_id", 6, 999), E,
     r"sub-01_VoxelMetadata.csv: 7 voxels, but sub-01_ResponseData.h5 has 7; expected the same voxel_id values"),
    ("vox-nc-text", lambda r, s: _vox_set(r, "nc_testset", 0, "abc"), E,
     r"sub-01_VoxelMetadata.csv: column 'nc_testset' holds 'abc' on line 2"),
    ("vox-reordered", lambda r, s: pd.read_csv(vox(r)).iloc[::-1].to_csv(vox(r), index=False), None, None),
]


@pytest.mark.parametrize(("damage", "error", "match"), [pytest.param(*c[1:], id=c[0]) for c in TF])
def test_things_fmri_damage(tf, tmp_path, damage, error, match, request):
    root = copy_tree(tf["root"], tmp_path / "tf")
    sentinel = tmp_path / "SENTINEL"
    damage(root, sentinel)
    order = list(range(6, -1, -1)) if request.node.callspec.id == "vox-reordered" else None
    check_case(lambda: load_things_fmri(root, 1), error, match, _check_tf(tf, order) if error is None else None,
               warns=TextEncodingWarning if error is None and match else None)
    assert not sentinel.exists()
