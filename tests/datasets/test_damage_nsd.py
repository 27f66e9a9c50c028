"""Damage matrix of the NSD adapter: every file it reads, damaged one way at a time.

Each case copies a pristine tree written by ``adapter_fixtures.write_nsd`` (the published
layout: expdesign .mat, int16 (trials, Z, Y, X) HDF5 and (X, Y, Z, trials) NIfTI betas,
ROI volumes, .ctab tables, fsaverage .mgh and nativesurface HDF5 betas), damages one file
and checks a named error that names the file, or a correct load with a warning.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from adapter_fixtures import write_nsd
from damage import (
    check_case,
    compress_h5,
    copy_tree,
    empty,
    flip_gzip,
    flip_h5_chunk,
    nifti,
    nifti_data,
    read_h5,
    rewrite_h5,
    savemat,
    truncate,
)

from neuroalign.datasets import HDF5Brick, MissingSessionsWarning, TextEncodingWarning, load_nsd
from neuroalign.exceptions import DataFormatError

pytestmark = pytest.mark.filterwarnings("ignore::neuroalign.datasets.PublishedCountWarning")

AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
AFFINE[:3, 3] = [-4.0, -5.0, -3.0]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return write_nsd(tmp_path_factory.mktemp("pristine") / "nsd", fmt="both")


def design(r):
    return r / "nsddata/experiments/nsd/nsd_expdesign.mat"


def bdir(r, space="func1pt8mm"):
    return r / f"nsddata_betas/ppdata/subj01/{space}/betas_fithrf_GLMdenoise_RR"


def h5(r, sess=1):
    return bdir(r) / f"betas_session{sess:02d}.hdf5"


def nii(r, sess=1):
    return bdir(r) / f"betas_session{sess:02d}.nii.gz"


def roi(r, name):
    return r / f"nsddata/ppdata/subj01/func1pt8mm/roi/{name}.nii.gz"


def ctab(r, name, subj="subj01"):
    return r / f"nsddata/freesurfer/{subj}/label/{name}.mgz.ctab"


def fs(r, hemi="lh", sess=1):
    return bdir(r, "fsaverage") / f"{hemi}.betas_session{sess:02d}.mgh"


def fslabel(r, name, hemi="lh"):
    return r / f"nsddata/freesurfer/fsaverage/label/{hemi}.{name}.mgz"


def nat(r, hemi="lh", sess=1):
    return bdir(r, "nativesurface") / f"{hemi}.betas_session{sess:02d}.hdf5"


def _design_with(r, w, **kw):
    savemat(design(r), **kw)


def _mo(w):
    return w["masterordering"][None, :].astype(float)


def _subjectim_dup(r, w):
    s = w["subjectim"].astype(float)
    s[0, 5] = s[0, 4]
    savemat(design(r), subjectim=s)


def _mo_out_of_range(r, w):
    mo = _mo(w)
    mo[0, 3] = 13
    savemat(design(r), masterordering=mo)


def _mo_nan(r, w):
    mo = _mo(w)
    mo[0, 2] = np.nan
    savemat(design(r), masterordering=mo)


def _h5_axes(r, sess):
    """Rewrite session ``sess`` as (trials, X, Y, Z): the wrong axis order for h5py."""
    rewrite_h5(h5(r, sess), "betas", w_betas(r, sess))


def w_betas(r, sess):
    """(T, X, Y, Z) of session ``sess`` as written (read back from the HDF5)."""
    return read_h5(h5(r, sess), "betas").transpose(0, 3, 2, 1)


def _corrupt_h5(path, key="betas"):
    compress_h5(path, key)
    flip_h5_chunk(path, key)


def _vol(r, name, fn):
    p = roi(r, name)
    arr = nifti_data(p).astype(np.float32)
    nifti(p, fn(arr), AFFINE)


def _set(arr, index, value):
    arr = arr.copy()
    arr[index] = value
    return arr


def _first_voxel(arr, value):
    """Set the first voxel with a positive label to ``value``."""
    arr = arr.copy()
    arr[tuple(np.argwhere(arr > 0)[0])] = value
    return arr


def _nii_scaled(r, w):
    """Set scl_slope = 2 in the header (bytes 112:116 of a NIfTI-1 header)."""
    import gzip

    data = bytearray(gzip.decompress(nii(r).read_bytes()))
    data[112:120] = np.array([2.0, 0.0], "<f4").tobytes()
    nii(r).write_bytes(gzip.compress(bytes(data)))


def _ctab_lines(r, lines, name="prf-visualrois"):
    for subj in ("subj01", "fsaverage"):
        p = ctab(r, name, subj)
        if p.exists():
            p.write_text("".join(f"{x}\n" for x in lines))


def _both_ctabs(r, fn, name="prf-visualrois"):
    for subj in ("subj01", "fsaverage"):
        if ctab(r, name, subj).exists():
            fn(ctab(r, name, subj))


def _latin1_ctab(p):
    p.write_bytes(p.read_text().replace("V1v", "V1\u00e9").encode("latin-1"))


def _mgh(r, path, fn):
    arr = nifti_data(path)
    nifti(path, fn(arr), mgh=True)


def _expected_volume(w, sessions):
    ijk = np.argwhere(w["general"])
    rows = [w["vol_betas"][s][:, ijk[:, 0], ijk[:, 1], ijk[:, 2]] for s in sessions]
    return np.concatenate(rows).astype(np.float32) / np.float32(300)


def _check_gap(ds, w=None):
    assert list(np.unique(ds.session.values)) == [1, 3]


def _check_latin1(ds):
    assert "roi_V1\u00e9" in ds.coords and "roi_V1d" in ds.coords


def _check_bom(ds):
    assert "roi_V1v" in ds.coords


NIFTI = {"format": "nifti"}
FS = {"space": "fsaverage", "rois": ("prf-visualrois",)}
NAT = {"space": "nativesurface", "rois": ("prf-visualrois",)}
PRF = {"rois": ("prf-visualrois",)}
E = DataFormatError

# (id, damage(root, w), load kwargs, error (None: loads), match, check)
CASES = [
    # -- nsd_expdesign.mat ---------------------------------------------------------------
    ("design-missing", lambda r, w: design(r).unlink(), {}, FileNotFoundError,
     r"nsd_expdesign.mat: no such file \(expected a MATLAB .mat file\)", None),
    ("design-empty", lambda r, w: empty(design(r)), {}, E,
     r"nsd_expdesign.mat: cannot be read as a MATLAB file", None),
    ("design-truncated", lambda r, w: truncate(design(r), 0.6), {}, E,
     r"nsd_expdesign.mat: cannot be read as a MATLAB file", None),
    ("design-missing-key", lambda r, w: savemat(design(r), subjectim=None), {}, E,
     r"nsd_expdesign.mat: missing key\(s\) 'subjectim'. Keys present: .*'masterordering'", None),
    ("masterordering-non-integer", lambda r, w: savemat(design(r), masterordering=_mo(w) + 0.5), {}, E,
     r"nsd_expdesign.mat: 'masterordering' holds non-integer values \(\d+\.5", None),
    ("masterordering-0-based", lambda r, w: savemat(design(r), masterordering=_mo(w) - _mo(w).min()), {}, E,
     r"nsd_expdesign.mat: 'masterordering' values span 0\.\.\d+, expected 1-based indices 1\.\.12", None),
    ("masterordering-out-of-range", _mo_out_of_range, {}, E,
     r"nsd_expdesign.mat: 'masterordering' values span 1\.\.13, expected 1-based indices 1\.\.12", None),
    ("masterordering-nan", _mo_nan, {}, E,
     r"nsd_expdesign.mat: 'masterordering' holds non-integer values \(nan\)", None),
    ("masterordering-2d", lambda r, w: savemat(design(r), masterordering=_mo(w).reshape(2, -1)), {}, E,
     r"nsd_expdesign.mat: 'masterordering' has shape \(2, 12\), expected a vector \(1, n_trials\)", None),
    ("masterordering-text", lambda r, w: savemat(design(r), masterordering=np.array(["abc"])), {}, E,
     r"nsd_expdesign.mat: 'masterordering' has dtype <U3, expected numbers", None),
    ("design-too-short", lambda r, w: savemat(design(r), masterordering=_mo(w)[:, :20]), {}, E,
     r"betas_session03.hdf5: session 3 of 8 trials needs trials up to 24, but nsd_expdesign.mat "
     r"'masterordering' has only 20", None),
    ("subjectim-non-integer", lambda r, w: savemat(design(r), subjectim=w["subjectim"] + 0.25), {}, E,
     r"nsd_expdesign.mat: 'subjectim' holds non-integer values \(\d+\.25", None),
    ("subjectim-0-based", lambda r, w: savemat(design(r), subjectim=w["subjectim"] - w["subjectim"].min()), {}, E,
     r"nsd_expdesign.mat: 'subjectim' holds 73k ids down to 0, expected 1-based ids \(>= 1", None),
    ("subjectim-3d", lambda r, w: savemat(design(r), subjectim=np.zeros((2, 2, 3))), {}, E,
     r"nsd_expdesign.mat: 'subjectim' has shape \(2, 2, 3\), expected \(8, n_images\)", None),
    ("subjectim-duplicate-ids", _subjectim_dup, {}, E,
     r"nsd_expdesign.mat: 'subjectim' row 1 repeats 73k id\(s\) \d+; expected distinct images", None),
    ("sharedix-non-integer", lambda r, w: savemat(design(r), sharedix=w["shared73k"][None] + 0.5), {}, E,
     r"nsd_expdesign.mat: 'sharedix' holds non-integer values", None),
    ("sharedix-0-based", lambda r, w: savemat(design(r), sharedix=np.array([[0.0, 5.0]])), {}, E,
     r"nsd_expdesign.mat: 'sharedix' holds 73k ids down to 0, expected 1-based", None),
    # -- volume betas, HDF5 (trials, Z, Y, X) int16 ----------------------------------------
    ("h5-empty", lambda r, w: empty(h5(r)), {}, E, r"betas_session01.hdf5: cannot be read as HDF5", None),
    ("h5-truncated", lambda r, w: truncate(h5(r), 0.5), {}, E,
     r"betas_session01.hdf5: (cannot be read as HDF5|cannot read dataset 'betas')", None),
    ("h5-no-key", lambda r, w: rewrite_h5(h5(r), "data", np.zeros((8, 4, 6, 5), np.int16)), {}, E,
     r"betas_session01.hdf5: has no dataset 'betas'. Keys present: 'data'", None),
    ("h5-float", lambda r, w: rewrite_h5(h5(r), "betas", np.zeros((8, 4, 6, 5), np.float32)), {}, E,
     r"betas_session01.hdf5: dataset 'betas' has dtype float32, expected int16", None),
    ("h5-3d", lambda r, w: rewrite_h5(h5(r), "betas", np.zeros((8, 4, 30), np.int16)), {}, E,
     r"betas_session01.hdf5: dataset 'betas' has shape \(8, 4, 30\), expected 4 dims \(trials, Z, Y, X\)", None),
    ("h5-axis-order-one-session", lambda r, w: _h5_axes(r, 1), {}, E,
     r"betas_session01.hdf5: data shape \(4, 6, 5\), expected \(5, 6, 4\) like 2 of 3 sessions", None),
    ("h5-axis-order-all-sessions", lambda r, w: [_h5_axes(r, s) for s in (1, 2, 3)], {}, E,
     r"nsdgeneral.nii.gz: volume of shape \(5, 6, 4\) \(X, Y, Z\), but the betas \(betas_session01.hdf5\) "
     r"have \(X, Y, Z\) = \(4, 6, 5\).*HDF5 betas are \(trials, Z, Y, X\)", None),
    ("h5-corrupt-chunk", lambda r, w: _corrupt_h5(h5(r)), {}, E,
     r"betas_session01.hdf5: cannot read dataset 'betas' \(.*\); the file is truncated or corrupt", None),
    ("h5-fewer-trials", lambda r, w: rewrite_h5(h5(r, 2), "betas", np.zeros((7, 4, 6, 5), np.int16)), {}, E,
     r"betas_session02.hdf5: 7 trials, expected 8 like 2 of 3 sessions", None),
    ("h5-duplicate-session", lambda r, w: shutil.copy(h5(r), bdir(r) / "betas_session1.hdf5"), {}, E,
     r"betas_session1.hdf5: a second file for session 1 \(besides betas_session01.hdf5\)", None),
    ("h5-stray-copy", lambda r, w: shutil.copy(h5(r), bdir(r) / "betas_session01 (copy).hdf5"), {}, E,
     r"betas_session01 \(copy\).hdf5: unexpected file name among the beta files; expected "
     r"betas_sessionNN", None),
    ("h5-session-00", lambda r, w: shutil.copy(h5(r), bdir(r) / "betas_session00.hdf5"), {}, E,
     r"betas_session00.hdf5: session 0; NSD sessions are numbered from 1", None),
    ("h5-directory", lambda r, w: (h5(r, 2).unlink(), h5(r, 2).mkdir()), {}, E,
     r"betas_session02.hdf5: cannot be read as HDF5", None),
    ("h5-session-gap", lambda r, w: (h5(r, 2).unlink(), nii(r, 2).unlink()), {}, None,
     r"session file\(s\) 2 of subj01 are absent", "gap"),
    # -- volume betas, NIfTI (X, Y, Z, trials) int16 -----------------------------------------
    ("nii-empty", lambda r, w: empty(nii(r)), NIFTI, E, r"betas_session01.nii.gz: cannot be read as NIfTI", None),
    ("nii-truncated", lambda r, w: truncate(nii(r), 0.5), NIFTI, E,
     r"betas_session01.nii.gz: (cannot be read as NIfTI|truncated or corrupt image data)", None),
    ("nii-gzip-flipped", lambda r, w: flip_gzip(nii(r)), NIFTI, E,
     r"betas_session01.nii.gz: (cannot be read as NIfTI|truncated or corrupt image data)", None),
    ("nii-float", lambda r, w: nifti(nii(r), np.zeros((5, 6, 4, 8), np.float32), AFFINE), NIFTI, E,
     r"betas_session01.nii.gz: image dtype is float32, expected int16", None),
    ("nii-3d", lambda r, w: nifti(nii(r), np.zeros((5, 6, 4), np.int16), AFFINE), NIFTI, E,
     r"betas_session01.nii.gz: image has shape \(5, 6, 4\), expected 4 dims \(X, Y, Z, trials\)", None),
    ("nii-trials-first", lambda r, w: nifti(nii(r), np.zeros((8, 5, 6, 4), np.int16), AFFINE), NIFTI, E,
     r"betas_session01.nii.gz: 4 trials, expected 8 like 2 of 3 sessions", None),
    ("nii-scaled", _nii_scaled, NIFTI, E,
     r"betas_session01.nii.gz: has a scale factor \(scl_slope=2.0, scl_inter=0.0\); NSD betas are "
     r"stored unscaled", None),
    # -- ROI volumes -------------------------------------------------------------------------
    ("mask-missing", lambda r, w: roi(r, "nsdgeneral").unlink(), {}, ValueError,
     r"Unknown ROI 'nsdgeneral' for subj01 func1pt8mm: no nsdgeneral.nii.gz in", None),
    ("mask-empty", lambda r, w: empty(roi(r, "nsdgeneral")), {}, E,
     r"nsdgeneral.nii.gz: cannot be read as NIfTI", None),
    ("mask-truncated", lambda r, w: truncate(roi(r, "nsdgeneral"), 0.7), {}, E,
     r"nsdgeneral.nii.gz: (cannot be read as NIfTI|truncated or corrupt image data)", None),
    ("mask-gzip-flipped", lambda r, w: flip_gzip(roi(r, "nsdgeneral")), {}, E,
     r"nsdgeneral.nii.gz: (cannot be read as NIfTI|truncated or corrupt image data)", None),
    ("mask-wrong-shape", lambda r, w: nifti(roi(r, "nsdgeneral"), np.ones((5, 6, 3), np.float32), AFFINE), {}, E,
     r"nsdgeneral.nii.gz: volume of shape \(5, 6, 3\) \(X, Y, Z\), but the betas", None),
    ("mask-two-frames", lambda r, w: nifti(roi(r, "nsdgeneral"), np.ones((5, 6, 4, 2), np.float32), AFFINE), {}, E,
     r"nsdgeneral.nii.gz: volume of shape \(5, 6, 4, 2\) \(X, Y, Z\), but the betas", None),
    ("mask-no-voxel", lambda r, w: nifti(roi(r, "nsdgeneral"), np.zeros((5, 6, 4), np.float32), AFFINE), {}, E,
     r"nsdgeneral.nii.gz: no voxel > 0; expected a mask with at least one voxel", None),
    ("mask-nan", lambda r, w: _vol(r, "nsdgeneral", lambda a: _set(a, (1, 1, 1), np.nan)), {}, E,
     r"nsdgeneral.nii.gz: holds 1 non-finite value\(s\); expected integer labels", None),
    ("roi-non-integer", lambda r, w: _vol(r, "prf-visualrois", lambda a: _first_voxel(a, 2.5)), PRF, E,
     r"prf-visualrois.nii.gz: holds non-integer label values \(2.5\); expected integer labels", None),
    ("roi-label-not-in-ctab", lambda r, w: _vol(r, "prf-visualrois", lambda a: _first_voxel(a, 9)), PRF, E,
     r"prf-visualrois.nii.gz: label value\(s\) 9 \(1 voxel\(s\)\) not in prf-visualrois.mgz.ctab", None),
    ("roi-hemi-wrong-shape", lambda r, w: nifti(roi(r, "lh.nsdgeneral"), np.ones((5, 6, 3), np.float32), AFFINE),
     {}, E, r"lh.nsdgeneral.nii.gz: volume of shape \(5, 6, 3\) \(X, Y, Z\), but the betas", None),
    ("brainmask-missing", lambda r, w: (roi(r, "x").parent.parent / "brainmask.nii.gz").unlink(),
     {"mask": None}, FileNotFoundError, r"brainmask.nii.gz: no such file", None),
    ("brainmask-wrong-shape", lambda r, w: nifti(roi(r, "x").parent.parent / "brainmask.nii.gz",
                                                  np.ones((4, 6, 4), np.int16), AFFINE),
     {"mask": None}, E, r"brainmask.nii.gz: volume of shape \(4, 6, 4\)", None),
    ("ncsnr-wrong-shape", lambda r, w: nifti(bdir(r) / "ncsnr.nii.gz", np.ones((5, 6), np.float32), AFFINE), {}, E,
     r"ncsnr.nii.gz: volume of shape \(5, 6\) \(X, Y, Z\), but the betas", None),
    ("ncsnr-truncated", lambda r, w: truncate(bdir(r) / "ncsnr.nii.gz", 0.6), {}, E,
     r"ncsnr.nii.gz: (cannot be read as NIfTI|truncated or corrupt image data)", None),
    # -- .ctab label tables -----------------------------------------------------------------------
    ("ctab-missing", lambda r, w: _both_ctabs(r, lambda p: p.unlink()), PRF, FileNotFoundError,
     r"prf-visualrois.mgz.ctab: no such file \(expected the label table of ROI 'prf-visualrois'\)", None),
    ("ctab-empty", lambda r, w: _both_ctabs(r, empty), PRF, E,
     r"prf-visualrois.mgz.ctab: holds no labels; expected lines 'index name'", None),
    ("ctab-latin1", lambda r, w: _both_ctabs(r, _latin1_ctab), PRF, None,
     r"prf-visualrois.mgz.ctab: is not UTF-8 \(byte 0xe9 at offset \d+\); read it as latin-1", "latin1"),
    ("ctab-bom", lambda r, w: _both_ctabs(r, lambda p: p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())),
     PRF, None, None, "bom"),
    ("ctab-non-integer", lambda r, w: _ctab_lines(r, ["0 Unknown", "x V1v"]), PRF, E,
     r"prf-visualrois.mgz.ctab: line 2 is 'x V1v', expected 'index name' with an integer index", None),
    ("ctab-index-only", lambda r, w: _ctab_lines(r, ["0 Unknown", "1"]), PRF, E,
     r"prf-visualrois.mgz.ctab: line 2 is '1', expected 'index name'", None),
    ("ctab-duplicate-index", lambda r, w: _ctab_lines(r, ["0 Unknown", "1 V1v", "2 V1d", "2 V2v"]), PRF, E,
     r"prf-visualrois.mgz.ctab: index 2 appears twice \(lines 3 and 4\)", None),
    ("ctab-duplicate-name", lambda r, w: _ctab_lines(r, ["0 Unknown", "1 V1v", "2 V1v"]), PRF, E,
     r"prf-visualrois.mgz.ctab: label 'V1v' appears twice \(lines 2 and 3\)", None),
    # -- fsaverage .mgh betas and .mgz labels --------------------------------------------------
    ("fs-hemi-missing", lambda r, w: fs(r, "lh", 2).unlink(), FS, FileNotFoundError,
     r"session 2 has rh.betas_session02.mgh but not both lh and rh files", None),
    ("fs-empty", lambda r, w: empty(fs(r)), FS, E, r"lh.betas_session01.mgh: cannot be read as MGH", None),
    ("fs-truncated", lambda r, w: truncate(fs(r), 0.5), FS, E,
     r"lh.betas_session01.mgh: (cannot be read as MGH|truncated or corrupt image data)", None),
    ("fs-int", lambda r, w: nifti(fs(r), np.zeros((10, 1, 1, 8), np.int32), mgh=True), FS, E,
     r"lh.betas_session01.mgh: dtype int32, expected float32 \(fsaverage betas are PSC\)", None),
    ("fs-wrong-shape", lambda r, w: nifti(fs(r), np.zeros((10, 2, 1, 8), np.float32), mgh=True), FS, E,
     r"lh.betas_session01.mgh: shape \(10, 2, 1, 8\), expected \(n_vertices, 1, 1, n_trials\)", None),
    ("fs-trial-mismatch", lambda r, w: nifti(fs(r, "rh"), np.zeros((12, 1, 1, 7), np.float32), mgh=True), FS, E,
     r"rh.betas_session01.mgh: 7 trials, but lh.betas_session01.mgh has 8", None),
    ("fs-vertex-mismatch", lambda r, w: nifti(fs(r, "lh", 2), np.zeros((11, 1, 1, 8), np.float32), mgh=True), FS, E,
     r"lh.betas_session02.mgh: data shape \(11, 12\), expected \(10, 12\) like 2 of 3 sessions", None),
    ("fs-duplicate-session", lambda r, w: [shutil.copy(fs(r, h, 2), bdir(r, "fsaverage") / f"{h}.betas_session2.mgh")
                                           for h in ("lh", "rh")], FS, E,
     r"lh.betas_session2.mgh: a second file for session 2 \(besides lh.betas_session02.mgh\)", None),
    ("fs-label-wrong-length", lambda r, w: nifti(fslabel(r, "prf-visualrois"), np.zeros((9, 1, 1), np.float32), mgh=True),
     FS, E, r"lh.prf-visualrois.mgz: \(9,\) values, but the lh betas have 10 vertices", None),
    ("fs-label-non-integer", lambda r, w: _mgh(r, fslabel(r, "prf-visualrois"), lambda a: _first_voxel(a, 1.5)),
     FS, E, r"lh.prf-visualrois.mgz: holds non-integer label values \(1.5\)", None),
    ("fs-label-not-in-ctab", lambda r, w: _mgh(r, fslabel(r, "prf-visualrois"), lambda a: _first_voxel(a, 9)),
     FS, E, r"lh.prf-visualrois.mgz: label value\(s\) 9 \(1 vertex\(es\)\) not in prf-visualrois.mgz.ctab", None),
    ("fs-label-gzip-flipped", lambda r, w: flip_gzip(fslabel(r, "prf-visualrois")), FS, E,
     r"lh.prf-visualrois.mgz: (cannot be read as MGH|truncated or corrupt image data)", None),
    ("fs-mask-non-integer", lambda r, w: _mgh(r, fslabel(r, "nsdgeneral", "rh"), lambda a: _first_voxel(a, 0.5)),
     FS, E, r"rh.nsdgeneral.mgz: holds non-integer label values \(0.5\)", None),
    ("fs-ncsnr-wrong-length", lambda r, w: nifti(bdir(r, "fsaverage") / "rh.ncsnr.mgh", np.zeros((5, 1, 1), np.float32),
                                                mgh=True), FS, E, r"rh.ncsnr.mgh: 5 vertices, expected 12 like the betas", None),
    # -- nativesurface HDF5 (trials, vertices) int16 ------------------------------------------------
    ("nat-empty", lambda r, w: empty(nat(r)), NAT, E, r"lh.betas_session01.hdf5: cannot be read as HDF5", None),
    ("nat-truncated", lambda r, w: truncate(nat(r), 0.5), NAT, E,
     r"lh.betas_session01.hdf5: (cannot be read as HDF5|cannot read dataset 'betas')", None),
    ("nat-float", lambda r, w: rewrite_h5(nat(r), "betas", np.zeros((8, 10), np.float32)), NAT, E,
     r"lh.betas_session01.hdf5: dataset 'betas' has dtype float32, expected int16", None),
    ("nat-3d", lambda r, w: rewrite_h5(nat(r), "betas", np.zeros((8, 10, 1), np.int16)), NAT, E,
     r"lh.betas_session01.hdf5: dataset 'betas' has shape \(8, 10, 1\), expected 2 dims \(trials, vertices\)", None),
    ("nat-corrupt-chunk", lambda r, w: _corrupt_h5(nat(r, "rh", 3)), NAT, E,
     r"rh.betas_session03.hdf5: cannot read dataset 'betas' \(.*\); the file is truncated or corrupt", None),
]

CHECKS = {"gap": lambda w: lambda ds: (
    _check_gap(ds),
    np.testing.assert_array_equal(ds.responses.values, _expected_volume(w, [1, 3]))),
    "latin1": lambda w: _check_latin1, "bom": lambda w: _check_bom}


@pytest.mark.parametrize(("damage", "kwargs", "error", "match", "check"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_nsd_damage(pristine, tmp_path, damage, kwargs, error, match, check):
    root = copy_tree(pristine["root"], tmp_path / "nsd")
    damage(root, pristine)
    warns = (MissingSessionsWarning if check == "gap" else TextEncodingWarning) if error is None and match else None
    check_case(lambda: load_nsd(root, 1, **kwargs), error, match,
               CHECKS[check](pristine) if check else None, warns=warns)


BRICK = [
    ("brick-empty", lambda p: empty(p), "init", r"nsd_stimuli.hdf5: cannot be read as HDF5"),
    ("brick-truncated", lambda p: truncate(p, 0.3), "read",
     r"nsd_stimuli.hdf5: (cannot be read as HDF5|cannot read dataset 'imgBrick')"),
    ("brick-corrupt-chunk", lambda p: _corrupt_h5(p, "imgBrick"), "read",
     r"nsd_stimuli.hdf5: cannot read dataset 'imgBrick' \(.*\); the file is truncated or corrupt"),
]


@pytest.mark.parametrize(("damage", "when", "match"), [pytest.param(*c[1:], id=c[0]) for c in BRICK])
def test_nsd_brick_damage(pristine, tmp_path, damage, when, match):
    p = tmp_path / "nsd_stimuli.hdf5"
    shutil.copy(pristine["root"] / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5", p)
    damage(p)
    check_case(lambda: HDF5Brick(p)[[0, 5, 209]], DataFormatError, match)


def test_nsd_pristine_copy_loads(pristine, tmp_path):
    """The undamaged copy loads the written values (the matrix damages a valid tree)."""
    root = copy_tree(pristine["root"], tmp_path / "nsd")
    for kw in ({}, NIFTI):
        ds = load_nsd(root, 1, **kw)
        np.testing.assert_array_equal(ds.responses.values, _expected_volume(pristine, [1, 2, 3]))
    assert load_nsd(root, 1, **FS).sizes["presentation"] == 24
    assert load_nsd(root, 1, **NAT).sizes["presentation"] == 24
