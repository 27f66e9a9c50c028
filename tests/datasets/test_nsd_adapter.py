"""NSD adapter: element-wise checks on tiny synthetic files, and the simulation round trip."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import xarray as xr
from adapter_fixtures import PRF, write_nsd

from neuroalign.datasets import (
    HDF5Brick,
    MissingSessionsWarning,
    PublishedCountWarning,
    ingest_nsd,
    load_nsd,
    nsd_plan,
)
from neuroalign.exceptions import DataFormatError
from neuroalign.store import check_store, open_store

pytestmark = pytest.mark.filterwarnings("ignore::neuroalign.datasets.PublishedCountWarning")


def _expected_trials(w):
    per = w["per_session"]
    trial = np.concatenate([np.arange((s - 1) * per, s * per) for s in w["sessions"]])
    return trial


def _reps(ids):
    seen: dict = {}
    out = []
    for i in ids:
        out.append(seen.get(i, 0))
        seen[i] = out[-1] + 1
    return np.array(out)


@pytest.mark.parametrize("fmt", ["hdf5", "nifti"])
def test_volume_values_axis_order_and_scaling(tmp_path, fmt):
    w = write_nsd(tmp_path / "nsd", fmt=fmt)
    ds = load_nsd(w["root"], 1)
    check_store(ds)
    ijk = np.argwhere(w["general"])
    assert ds.sizes["neuroid"] == len(ijk)
    np.testing.assert_array_equal(np.c_[ds.i, ds.j, ds.k], ijk)
    trial = _expected_trials(w)
    per = w["per_session"]
    for p in (0, 5, len(trial) - 1):
        t = trial[p]
        raw = w["vol_betas"][t // per + 1][t % per]
        for n in (0, 3, len(ijk) - 1):
            i, j, k = ijk[n]
            assert ds.responses.values[p, n] == np.float32(raw[i, j, k]) / np.float32(300)
    # whole array, scaled exactly
    full = np.concatenate([w["vol_betas"][s] for s in w["sessions"]])
    np.testing.assert_array_equal(
        ds.responses.values, full[:, ijk[:, 0], ijk[:, 1], ijk[:, 2]].astype(np.float32) / np.float32(300)
    )
    assert ds.responses.dtype == np.float32
    assert np.abs(ds.responses.values).max() <= 32768 / 300


def test_func1mm_space(tmp_path):
    w = write_nsd(tmp_path / "nsd", space="func1mm", surface=False)
    ds = load_nsd(w["root"], 1, space="func1mm", rois=("prf-visualrois",))
    assert ds.attrs["space"] == "func1mm"
    ijk = np.argwhere(w["general"])
    full = np.concatenate([w["vol_betas"][s] for s in w["sessions"]])
    np.testing.assert_array_equal(
        ds.responses.values, full[:, ijk[:, 0], ijk[:, 1], ijk[:, 2]].astype(np.float32) / np.float32(300)
    )
    with pytest.raises(FileNotFoundError, match=r"func1pt8mm/betas_fithrf_GLMdenoise_RR: no such folder"):
        load_nsd(w["root"], 1)


def test_ids_repetitions_split_and_coords(tmp_path):
    w = write_nsd(tmp_path / "nsd")
    ds = load_nsd(w["root"], 1)
    mo, sim = w["masterordering"], w["subjectim"]
    nsd_id = sim[0, mo - 1] - 1  # 1-based -> 0-based
    np.testing.assert_array_equal(ds.nsd_id.values, nsd_id)
    assert ds.stimulus_id.values[0] == f"nsd-{nsd_id[0]:05d}"
    np.testing.assert_array_equal(ds.repetition.values, _reps(nsd_id))
    np.testing.assert_array_equal(ds.trial.values, np.arange(len(mo)))
    np.testing.assert_array_equal(ds.session.values, np.arange(len(mo)) // 8 + 1)
    shared = w["shared73k"] - 1
    np.testing.assert_array_equal(ds.split.values == "test", np.isin(nsd_id, shared))
    # hemisphere from the lh./rh. files, ids in X, Y, Z order
    np.testing.assert_array_equal(ds.hemisphere.values == "lh", ds.i.values < 2)
    assert ds.neuroid_id.values[0] == f"subj01_{ds.i.values[0]}_{ds.j.values[0]}_{ds.k.values[0]}"


def test_roi_membership_and_ncsnr(tmp_path):
    w = write_nsd(tmp_path / "nsd")
    ds = load_nsd(w["root"], 1, rois=("prf-visualrois", "floc-faces"))
    i, j, k = ds.i.values, ds.j.values, ds.k.values
    for idx, name in enumerate(PRF, start=1):
        member = w["prf"][i, j, k] == idx
        if member.any():
            np.testing.assert_array_equal(ds[f"roi_{name}"].values, member)
        else:
            assert f"roi_{name}" not in ds.coords
    np.testing.assert_array_equal(ds["roi_FFA-1"].values, w["faces"][i, j, k] == 2)
    assert "roi_FFA-2" not in ds.coords  # label with no voxel
    np.testing.assert_array_equal(ds.ncsnr.values, w["ncsnr"][i, j, k])


def test_mask_none_uses_brainmask(tmp_path):
    w = write_nsd(tmp_path / "nsd", surface=False)
    ds = load_nsd(w["root"], 1, mask=None, rois=())
    assert ds.sizes["neuroid"] == int(w["brain"].sum())
    # hemisphere from the affine (x < 0 is left)
    x = 1.8 * ds.i.values - 4.0
    np.testing.assert_array_equal(ds.hemisphere.values == "lh", x < 0)


def test_withheld_sessions_warn_and_trials_from_files(tmp_path):
    w = write_nsd(tmp_path / "nsd", n_sessions=4, write_sessions=[1, 2], surface=False)
    with pytest.warns(MissingSessionsWarning, match=r"session file\(s\) 3, 4 of subj01 are absent"):
        ds = load_nsd(w["root"], 1)
    assert ds.sizes["presentation"] == 16
    assert ds.attrs["sessions_absent"] == [3, 4]
    np.testing.assert_array_equal(ds.trial.values, np.arange(16))


def test_sessions_subset(tmp_path):
    w = write_nsd(tmp_path / "nsd", surface=False)
    ds = load_nsd(w["root"], 1, sessions=[2])
    np.testing.assert_array_equal(ds.trial.values, np.arange(8, 16))
    with pytest.raises(FileNotFoundError, match=r"no beta files for session\(s\) 7"):
        load_nsd(w["root"], 1, sessions=[7])


def test_fsaverage_no_scaling_nan_vertices(tmp_path):
    w = write_nsd(tmp_path / "nsd")
    ds = load_nsd(w["root"], 1, space="fsaverage", rois=("prf-visualrois",))
    check_store(ds)
    lhv = np.flatnonzero(w["surf_general"]["lh"] > 0)
    rhv = np.flatnonzero(w["surf_general"]["rh"] > 0)
    np.testing.assert_array_equal(ds.vertex.values, np.r_[lhv, rhv])
    np.testing.assert_array_equal(ds.hemisphere.values, ["lh"] * len(lhv) + ["rh"] * len(rhv))
    expected = np.concatenate(
        [np.concatenate([w["fs_betas"][(s, "lh")][lhv].T, w["fs_betas"][(s, "rh")][rhv].T], axis=1)
         for s in w["sessions"]]
    )
    np.testing.assert_array_equal(ds.responses.values, expected)  # NaN == NaN here
    assert np.isnan(ds.responses.values[:, 0]).all()
    vals = np.r_[w["surf_prf"]["lh"][lhv], w["surf_prf"]["rh"][rhv]]
    np.testing.assert_array_equal(ds["roi_V1v"].values, vals == 1)
    np.testing.assert_array_equal(ds.ncsnr.values, np.r_[w["surf_ncsnr"]["lh"][lhv], w["surf_ncsnr"]["rh"][rhv]])
    assert ds.neuroid_id.values[0] == f"subj01_lh_{lhv[0]}"


def test_fsaverage_default_rois_and_bad_dtype(tmp_path):
    import nibabel as nib

    w = write_nsd(tmp_path / "nsd")
    ds = load_nsd(w["root"], 1, space="fsaverage")  # fsaverage has atlases only: defaults present
    assert "roi_V1v" in ds.coords and not any("FFA" in c for c in ds.coords)
    with pytest.raises(ValueError, match=r"Unknown ROI 'floc-faces' for subj01 fsaverage.*Valid ROIs: 'nsdgeneral', 'prf-visualrois'"):
        load_nsd(w["root"], 1, space="fsaverage", rois=("floc-faces",))
    p = w["root"] / "nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR/lh.betas_session01.mgh"
    nib.save(nib.MGHImage(np.zeros((10, 1, 1, 8), np.int16), np.eye(4)), str(p))
    with pytest.raises(DataFormatError, match=r"lh.betas_session01.mgh: dtype int16, expected float32 \(fsaverage betas are PSC\)"):
        load_nsd(w["root"], 1, space="fsaverage")
    (w["root"] / "nsddata_betas/ppdata/subj01/fsaverage/betas_fithrf_GLMdenoise_RR/rh.betas_session02.mgh").unlink()
    with pytest.raises(FileNotFoundError, match=r"session 2 has lh.betas_session02.mgh but not both lh and rh files"):
        load_nsd(w["root"], 1, space="fsaverage")


def test_nativesurface_scaling(tmp_path):
    w = write_nsd(tmp_path / "nsd")
    ds = load_nsd(w["root"], 1, space="nativesurface", mask=None, rois=("prf-visualrois",))
    n_lh, n_rh = w["n_vertices"]
    assert ds.sizes["neuroid"] == n_lh + n_rh
    s = w["sessions"][1]
    got = ds.responses.values[8:16]
    exp = np.c_[w["nat_betas"][(s, "lh")], w["nat_betas"][(s, "rh")]].astype(np.float32) / np.float32(300)
    np.testing.assert_array_equal(got, exp)


def test_streaming_ingest_equals_load_and_resumes(tmp_path):
    w = write_nsd(tmp_path / "nsd", surface=False)
    mem = load_nsd(w["root"], 1)
    out = ingest_nsd(w["root"], 1, tmp_path / "s.zarr")
    disk = open_store(out).load()
    xr.testing.assert_identical(disk, mem)
    with pytest.raises(FileExistsError, match="already exists"):
        ingest_nsd(w["root"], 1, tmp_path / "s.zarr")

    # interrupt after the first session, then run again: it resumes and gives the same store
    plan = nsd_plan(w["root"], 1)
    calls = []
    orig = plan.blocks[1].read

    def boom():
        calls.append(1)
        raise KeyboardInterrupt

    plan.blocks[1].read = boom
    with pytest.raises(KeyboardInterrupt):
        plan.write(tmp_path / "r.zarr")
    assert not (tmp_path / "r.zarr").exists()
    partial = tmp_path / ".r.zarr.partial"
    assert partial.exists()
    with pytest.raises(FileNotFoundError, match="not a complete neuroalign store"):
        open_store(partial)
    plan2 = nsd_plan(w["root"], 1)
    read0 = plan2.blocks[0].read
    plan2.blocks[0].read = lambda: pytest.fail("session 1 was already written")  # resumed
    plan2.write(tmp_path / "r.zarr")
    plan2.blocks[0].read = read0
    assert calls == [1] and orig is not None
    xr.testing.assert_identical(open_store(tmp_path / "r.zarr").load(), mem)
    assert not partial.exists()


def test_stale_partial_starts_clean(tmp_path):
    from neuroalign._files import write_marker
    from neuroalign.exceptions import OutputExistsError

    w = write_nsd(tmp_path / "nsd", surface=False)
    partial = tmp_path / ".x.zarr.partial"
    partial.mkdir()
    (partial / "junk").write_text("x")
    # a folder of that name that neuroalign did not write is left alone
    with pytest.raises(OutputExistsError, match=r"\.x\.zarr\.partial: exists and holds files that "
                       "neuroalign did not write; it is left untouched"):
        ingest_nsd(w["root"], 1, tmp_path / "x.zarr", rois=())
    assert (partial / "junk").read_text() == "x"
    # a stale partial ingest of neuroalign's (marker, no valid state) starts clean
    write_marker(partial, "partial ingest")
    ingest_nsd(w["root"], 1, tmp_path / "x.zarr", rois=())
    assert not (tmp_path / "x.zarr" / "junk").exists() and not partial.exists()
    assert open_store(tmp_path / "x.zarr").sizes["presentation"] == 24


def test_brick_lazy_unpermuted(tmp_path):
    w = write_nsd(tmp_path / "nsd", surface=False)
    ds = load_nsd(w["root"], 1)
    ss = ds.attrs["stimulus_set"]
    assert ss["kind"] == "hdf5-brick" and ss["key"] == "imgBrick" and ss["id_coord"] == "nsd_id"
    brick = HDF5Brick(ss["path"], ss["key"])
    idx = ds.nsd_id.values[[5, 0, 5, 2]]
    np.testing.assert_array_equal(brick[idx], w["brick"][idx])
    np.testing.assert_array_equal(brick[int(idx[0])], w["brick"][idx[0]])
    with pytest.raises(IndexError, match="out of range; the brick holds 210 images"):
        brick[[3, 210]]


# -- simulation round trip ---------------------------------------------------------------

def test_simulated_nsd_round_trip(adapter_sim_nsd):
    sim = adapter_sim_nsd
    ref = sim.store().load()
    ds = load_nsd(sim.root, 1)
    check_store(ds)
    assert set(ds.variables) == set(ref.variables)
    for name in ref.variables:
        np.testing.assert_array_equal(ds[name].values, ref[name].values, err_msg=name)
        assert ds[name].dims == ref[name].dims
    for key in ("dataset", "space", "units", "schema_version", "volume_shape", "subject", "stimulus_set"):
        assert ds.attrs[key] == ref.attrs[key], key
    np.testing.assert_allclose(ds.attrs["affine"], ref.attrs["affine"], atol=1e-5)


def test_simulated_withheld_sessions(tmp_path):
    from neuroalign.datasets import simulate

    sim = simulate(tmp_path / "w", n_images=30, n_test=6, n_sessions=3, withhold_sessions=1, seed=2)
    with pytest.warns(MissingSessionsWarning, match=r"session file\(s\) 3 of subj01 are absent"):
        ds = load_nsd(sim.root, 1)
    ref = sim.store().load()
    np.testing.assert_array_equal(ds.responses.values, ref.responses.values)
    np.testing.assert_array_equal(ds.trial.values, ref.trial.values)


# -- bad input ---------------------------------------------------------------------------

@pytest.fixture
def nsd(tmp_path):
    return write_nsd(tmp_path / "nsd", surface=False)


def test_unknown_subject_space_roi(nsd):
    with pytest.raises(ValueError, match=r"'subject' in load_nsd\(\): 9. Expected one of 1, 2"):
        load_nsd(nsd["root"], 9)
    with pytest.raises(ValueError, match=r"'space' in load_nsd\(\): 'func2mm'. Expected one of 'func1pt8mm'"):
        load_nsd(nsd["root"], 1, space="func2mm")
    with pytest.raises(ValueError, match=r"Unknown ROI 'floc-cars'.*Valid ROIs: 'floc-bodies', 'floc-faces', 'floc-places', 'floc-words', 'nsdgeneral', 'prf-visualrois', 'streams'"):
        load_nsd(nsd["root"], 1, rois=("floc-cars",))
    with pytest.raises(FileNotFoundError, match=r"Subjects present under .*: 'subj01'"):
        load_nsd(nsd["root"], 2)


def _betas(w, sess=1):
    return w["root"] / "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR" / f"betas_session{sess:02d}.hdf5"


def test_wrong_shape_dtype_missing_key(nsd):
    import h5py

    p = _betas(nsd)
    with h5py.File(p, "w") as f:
        f.create_dataset("betas", data=np.zeros((8, 4, 6), np.int16))
    with pytest.raises(DataFormatError, match=r"betas_session01.hdf5: dataset 'betas' has shape \(8, 4, 6\), expected 4 dims"):
        load_nsd(nsd["root"], 1)
    with h5py.File(p, "w") as f:
        f.create_dataset("betas", data=np.zeros((8, 4, 6, 5), np.float32))
    with pytest.raises(DataFormatError, match=r"betas_session01.hdf5: dataset 'betas' has dtype float32, expected int16"):
        load_nsd(nsd["root"], 1)
    with h5py.File(p, "w") as f:
        f.create_dataset("data", data=np.zeros((8, 4, 6, 5), np.int16))
    with pytest.raises(DataFormatError, match=r"betas_session01.hdf5: has no dataset 'betas'. Keys present: 'data'"):
        load_nsd(nsd["root"], 1)


def test_truncated_hdf5_and_nifti(tmp_path):
    w = write_nsd(tmp_path / "nsd", fmt="both", surface=False)
    p = _betas(w)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFormatError, match=r"betas_session01.hdf5: cannot be read as HDF5 .*truncated or corrupt"):
        load_nsd(w["root"], 1)
    p.unlink()
    nii = p.with_name("betas_session01.nii.gz")
    raw = gzip.decompress(nii.read_bytes())
    nii.write_bytes(gzip.compress(raw[: len(raw) - 200]))
    with pytest.raises(DataFormatError, match=r"betas_session01.nii.gz: truncated or corrupt image data"):
        load_nsd(w["root"], 1, format="nifti")
    nii.write_bytes(b"not a nifti at all")
    with pytest.raises(DataFormatError, match=r"betas_session01.nii.gz: cannot be read as NIfTI"):
        load_nsd(w["root"], 1, format="nifti")


def test_roi_shape_differs_from_betas(nsd):
    import nibabel as nib

    roi = nsd["root"] / "nsddata/ppdata/subj01/func1pt8mm/roi/prf-visualrois.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 3), np.float32), np.eye(4)), str(roi))
    with pytest.raises(DataFormatError, match=r"prf-visualrois.nii.gz: volume of shape \(5, 6, 3\) \(X, Y, Z\), but the betas .* \(5, 6, 4\)"):
        load_nsd(nsd["root"], 1)


def test_expdesign_disagrees_with_betas(nsd):
    import scipy.io

    p = nsd["root"] / "nsddata/experiments/nsd/nsd_expdesign.mat"
    mat = scipy.io.loadmat(p)
    mat["masterordering"] = mat["masterordering"][:, :12]
    scipy.io.savemat(p, {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(DataFormatError, match=r"session 2 of 8 trials needs trials up to 16, but nsd_expdesign.mat 'masterordering' has only 12"):
        load_nsd(nsd["root"], 1)
    del mat["subjectim"]
    scipy.io.savemat(p, {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(DataFormatError, match=r"nsd_expdesign.mat: missing key\(s\) 'subjectim'"):
        load_nsd(nsd["root"], 1)


def test_session_trial_count_mismatch(nsd):
    import h5py

    with h5py.File(_betas(nsd, 2), "w") as f:
        f.create_dataset("betas", data=np.zeros((7, 4, 6, 5), np.int16))
    with pytest.raises(DataFormatError, match=r"betas_session02.hdf5: 7 trials, expected 8 like 2 of 3 sessions"):
        load_nsd(nsd["root"], 1)


def test_missing_ctab_and_expdesign(nsd):
    (nsd["root"] / "nsddata/freesurfer/subj01/label/floc-faces.mgz.ctab").unlink()
    with pytest.raises(FileNotFoundError, match=r"floc-faces.mgz.ctab: no such file \(expected the label table"):
        load_nsd(nsd["root"], 1, rois=("floc-faces",))
    (nsd["root"] / "nsddata/experiments/nsd/nsd_expdesign.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"nsd_expdesign.mat: no such file"):
        load_nsd(nsd["root"], 1)


def test_bad_ctab_line(nsd):
    (nsd["root"] / "nsddata/freesurfer/subj01/label/floc-faces.mgz.ctab").write_text("0 Unknown\nx FFA\n")
    with pytest.raises(DataFormatError, match=r"floc-faces.mgz.ctab: line 2 is 'x FFA', expected 'index name'"):
        load_nsd(nsd["root"], 1, rois=("floc-faces",))


def test_published_count_warning(nsd):
    with pytest.warns(PublishedCountWarning, match=r"the number of trials is 8, but the published value for subj01 is 750"):
        load_nsd(nsd["root"], 1)


def test_copy_tree_is_independent(tmp_path, nsd):
    # the adapter reads paths relative to root: a moved tree loads the same
    dst = tmp_path / "moved"
    shutil.copytree(nsd["root"], dst)
    a = load_nsd(nsd["root"], 1).responses.values
    b = load_nsd(dst, 1).responses.values
    np.testing.assert_array_equal(a, b)


def test_streamed_store_is_chunked_along_neuroid_only(tmp_path):
    w = write_nsd(tmp_path / "nsd", surface=False)
    out = ingest_nsd(w["root"], 1, tmp_path / "c.zarr", rois=())
    ds = open_store(out, chunks={})  # on-disk chunks
    assert ds.responses.chunks[0] == (24,)  # every chunk holds all presentations
    mem = load_nsd(w["root"], 1, rois=())
    np.testing.assert_array_equal(ds.na.average_repetitions().responses.values,
                                  mem.na.average_repetitions().responses.values)


def test_nifti_betas_wrong_dtype_and_dims(tmp_path):
    import nibabel as nib

    w = write_nsd(tmp_path / "nsd", fmt="nifti", surface=False)
    p = _betas(w).with_name("betas_session01.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 4, 8), np.float32), np.eye(4)), str(p))
    with pytest.raises(DataFormatError, match=r"betas_session01.nii.gz: image dtype is float32, expected int16 \(PSC x 300\)"):
        load_nsd(w["root"], 1)
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 4), np.int16), np.eye(4)), str(p))
    with pytest.raises(DataFormatError, match=r"betas_session01.nii.gz: image has shape \(5, 6, 4\), expected 4 dims \(X, Y, Z, trials\)"):
        load_nsd(w["root"], 1)


def test_source_lists_files_with_checksums(tmp_path):
    import hashlib

    w = write_nsd(tmp_path / "nsd", surface=False)
    src = load_nsd(w["root"], 1).attrs["source"]
    design = "nsddata/experiments/nsd/nsd_expdesign.mat"
    assert src["files"][design]["sha256"] == hashlib.sha256((w["root"] / design).read_bytes()).hexdigest()
    beta = "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session03.hdf5"
    assert src["files"][beta]["size"] == (w["root"] / beta).stat().st_size


@pytest.mark.parametrize("chunks", [None, (1, 4, 6, 5), (3, 2, 6, 5), (8, 1, 1, 1)])
def test_hdf5_chunk_layouts_read_the_same(tmp_path, chunks, monkeypatch):
    import h5py

    from neuroalign.datasets import _nsd_files

    w = write_nsd(tmp_path / "nsd", surface=False)
    for s in w["sessions"]:
        with h5py.File(_betas(w, s), "w") as f:
            f.create_dataset("betas", data=w["vol_betas"][s].transpose(0, 3, 2, 1), chunks=chunks)
    monkeypatch.setattr(_nsd_files, "_SLAB_BYTES", 200)  # force several slabs / trial batches
    ds = load_nsd(w["root"], 1, rois=())
    ijk = np.argwhere(w["general"])
    full = np.concatenate([w["vol_betas"][s] for s in w["sessions"]])
    np.testing.assert_array_equal(
        ds.responses.values, full[:, ijk[:, 0], ijk[:, 1], ijk[:, 2]].astype(np.float32) / np.float32(300)
    )
