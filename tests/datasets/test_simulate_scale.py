"""The NSD-size simulation (small grids here): NSD's design and formats, read back exactly
by load_nsd, a known ncsnr, determinism, bounded memory, and ``simulate --size nsd``."""

from __future__ import annotations

import hashlib
import tracemalloc
import warnings

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io
from typer.testing import CliRunner

from neuroalign.cli import app
from neuroalign.datasets import ingest_nsd, load_nsd
from neuroalign.datasets.simulate import ScaleSimulation, _scale, _scale_betas, simulate_nsd_scale
from neuroalign.store import open_store

runner = CliRunner()
SMALL = {"volume_shape": (14, 16, 12), "n_vertices": (300, 260)}
# a short design (4 sessions of 225 trials) for the tests that need several trees
SHORT = {**SMALL, "n_images": 300, "n_shared": 30, "n_sessions": 4, "trials_per_session": 225}
BETAS = "nsddata_betas/ppdata/subj01/{}/betas_fithrf_GLMdenoise_RR"


def _h5(root, s):
    return root / BETAS.format("func1pt8mm") / f"betas_session{s:02d}.hdf5"


def _mgh(root, hemi, s):
    return root / BETAS.format("fsaverage") / f"{hemi}.betas_session{s:02d}.mgh"


def _digest(path):  # .mgh files carry no timestamp (HDF5 and .mat headers do)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def nsd_design(tmp_path_factory):
    """NSD's own design (10,000 images, 40 x 750), 2 sessions on small grids."""
    return simulate_nsd_scale(tmp_path_factory.mktemp("scale") / "nsd", sessions=2, **SMALL)


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """The short design, 2 of its 4 sessions on small grids."""
    return simulate_nsd_scale(tmp_path_factory.mktemp("scale") / "short", sessions=2, **SHORT)


def test_expdesign_and_stim_info_have_nsds_shape(nsd_design):
    root = nsd_design.root
    d = scipy.io.loadmat(root / "nsddata/experiments/nsd/nsd_expdesign.mat")
    mo, si, sh = d["masterordering"], d["subjectim"], d["sharedix"]
    assert mo.shape == (1, 30000) and si.shape == (8, 10000) and sh.shape == (1, 1000)
    assert d["stimpattern"].shape[:2] == (40, 12) and d["basiccnt"].shape == (3, 40)
    assert np.array_equal(np.bincount(mo.ravel().astype(int))[1:], np.full(10000, 3))  # 3 x each
    assert (si[:, :1000] == si[0, :1000]).all() and np.array_equal(si[0, :1000], sh[0])
    assert len(np.unique(si)) == 73000  # the 73k set: shared + each subject's own
    assert d["stimpattern"][0].sum() == 750 and d["basiccnt"].sum() == 30000
    info = pd.read_csv(root / "nsddata/experiments/nsd/nsd_stim_info_merged.csv", index_col=0)
    assert len(info) == 73000 and (info["nsdId"] == np.arange(73000)).all()
    assert (info["shared1000"].astype(str) == "True").sum() == 1000
    # subjectX_repR: the 1-based global trials of each image, as masterordering says
    trial_img = si[0, mo[0].astype(int) - 1].astype(int) - 1
    for r in range(3):
        col = info["subject1_rep" + str(r)].to_numpy()
        shown = np.flatnonzero(col)
        assert len(shown) == 10000 and (trial_img[col[shown] - 1] == shown).all()
    assert (info["subject1_rep0"] < info["subject1_rep1"])[info["subject1"] == 1].all()
    beh = pd.read_csv(root / "nsddata/ppdata/subj01/behav/responses.tsv", sep="\t")
    assert len(beh) == 1500 and beh["RUN"].max() == 12 and (beh["73KID"] == trial_img[:1500] + 1).all()


def test_volume_betas_read_back_exactly(nsd_design):
    root, truth = nsd_design.root, nsd_design.truth
    ds = load_nsd(root, 1)
    assert ds.sizes == {"presentation": 1500, "neuroid": truth["func1pt8mm"]["n_nsdgeneral"]}
    assert list(ds.neuroid_id.values) == truth["func1pt8mm"]["neuroid_id"]
    roi = root / "nsddata/ppdata/subj01/func1pt8mm/roi"
    general = np.asarray(nib.load(roi / "nsdgeneral.nii.gz").dataobj) > 0
    brain = np.asarray(nib.load(roi.parent / "brainmask.nii.gz").dataobj) > 0
    i, j, k = np.argwhere(general).T
    raw = np.concatenate([h5py.File(_h5(root, s), "r")["betas"][()] for s in (1, 2)])
    assert raw.shape == (1500, 12, 16, 14) and raw.dtype == np.int16  # (trials, Z, Y, X)
    np.testing.assert_array_equal(ds.responses.values, raw[:, k, j, i].astype(np.float32) / np.float32(300))
    assert not raw.transpose(0, 3, 2, 1)[:, ~brain].any()  # non-brain voxels are 0, as NSD's
    assert (raw.transpose(0, 3, 2, 1)[:, brain] != 0).mean() > 0.99
    # ROI coordinates from the label volumes
    prf = np.asarray(nib.load(roi / "prf-visualrois.nii.gz").dataobj)[i, j, k]
    assert np.array_equal(ds["roi_V1v"].values, prf == 1) and ds["roi_hV4"].values.sum() > 0
    assert set(np.unique(np.asarray(nib.load(roi / "nsdgeneral.nii.gz").dataobj))) == {-1.0, 0.0, 1.0}
    # trials map to images through the expdesign (DATASETS.md 1.2), shared images = test
    d = scipy.io.loadmat(root / "nsddata/experiments/nsd/nsd_expdesign.mat")
    nsd_id = d["subjectim"][0, d["masterordering"][0, :1500].astype(int) - 1].astype(int) - 1
    assert np.array_equal(ds.nsd_id.values, nsd_id)
    assert np.array_equal(ds.split.values == "test", np.isin(nsd_id, np.array(truth["design"]["test_nsd_ids"])))
    whole = load_nsd(root, 1, mask=None, rois=())
    assert whole.sizes["neuroid"] == truth["func1pt8mm"]["n_neuroids"] == brain.sum()
    bi, bj, bk = np.argwhere(brain).T
    np.testing.assert_array_equal(whole.responses.values, raw[:, bk, bj, bi].astype(np.float32) / np.float32(300))


def test_fsaverage_betas_read_back_exactly(nsd_design):
    root, truth = nsd_design.root, nsd_design.truth
    ds = load_nsd(root, 1, space="fsaverage")
    assert list(ds.neuroid_id.values) == truth["fsaverage"]["neuroid_id"]
    label = root / "nsddata/freesurfer/fsaverage/label"
    parts = []
    for hemi in ("lh", "rh"):
        img = nib.load(_mgh(root, hemi, 1))
        assert img.shape[1:] == (1, 1, 750) and img.get_data_dtype() == np.dtype(">f4")
        mask = np.asarray(nib.load(label / f"{hemi}.nsdgeneral.mgz").dataobj).ravel() > 0
        vals = np.concatenate([np.asarray(nib.load(_mgh(root, hemi, s)).dataobj)[:, 0, 0, :] for s in (1, 2)], axis=1)
        parts.append(vals[mask].T)
    np.testing.assert_array_equal(ds.responses.values, np.concatenate(parts, axis=1).astype(np.float32))
    assert ds.sizes["neuroid"] == truth["fsaverage"]["n_nsdgeneral"] and "roi_early" in ds.coords
    everything = load_nsd(root, 1, space="fsaverage", mask=None, rois=())
    assert everything.sizes["neuroid"] == 560 and (everything.responses.values != 0).mean() > 0.99


def test_signal_has_the_true_ncsnr(tmp_path):
    # a short design with every repetition written: NSD's ncsnr estimate finds the truth
    sim = simulate_nsd_scale(tmp_path / "s", sessions=4, spaces=("func1pt8mm",), volume_shape=(20, 22, 18),
                             n_images=300, n_shared=30, n_sessions=4, trials_per_session=225, seed=3)
    ds = load_nsd(sim.root, 1, rois=())
    est = ds.na.ncsnr()
    true = sim.true_ncsnr("func1pt8mm")
    assert list(est.neuroid_id.values) == list(true.neuroid_id.values)
    err = est.values - true.values
    assert np.corrcoef(est.values, true.values)[0, 1] > 0.8
    assert abs(np.median(err)) < 0.03 and np.median(np.abs(err)) < 0.1
    assert sim.truth["func1pt8mm"]["ncsnr"] == pytest.approx(list(true.values))


def test_nsdgeneral_only_writes_the_same_nsdgeneral_values(short, tmp_path):
    sparse = simulate_nsd_scale(tmp_path / "g", sessions=2, nsdgeneral_only=True, **SHORT)
    for space in ("func1pt8mm", "fsaverage"):
        a = load_nsd(short.root, 1, space=space, rois=())
        b = load_nsd(sparse.root, 1, space=space, rois=())
        np.testing.assert_array_equal(a.responses.values, b.responses.values)
    whole = load_nsd(sparse.root, 1, mask=None, rois=())
    general = np.isin(whole.neuroid_id.values, sparse.truth["func1pt8mm"]["neuroid_id"])
    assert not whole.responses.values[:, ~general].any() and whole.responses.values[:, general].all(axis=1).mean() > 0.9
    # same file sizes as the full tree (every chunk allocated), but mostly holes
    assert _h5(sparse.root, 1).stat().st_size == _h5(short.root, 1).stat().st_size


def test_deterministic_per_session_and_seed(short, tmp_path):
    one = simulate_nsd_scale(tmp_path / "one", sessions=1, **SHORT)
    other = simulate_nsd_scale(tmp_path / "other", sessions=1, seed=1, **SHORT)

    def content(root):
        with h5py.File(_h5(root, 1), "r") as f:
            vol = f["betas"][()]
        mat = scipy.io.loadmat(root / "nsddata/experiments/nsd/nsd_expdesign.mat")
        return vol, _digest(_mgh(root, "rh", 1)), mat["masterordering"], mat["subjectim"]

    a, b, c = content(one.root), content(short.root), content(other.root)
    for x, y, z in zip(a, b, c, strict=True):
        assert np.array_equal(x, y)  # session 1 written alone == session 1 of 2
        assert not np.array_equal(x, z)  # another seed
    assert ScaleSimulation.load(one.root).truth["design"]["sessions_written"] == [1]


def test_writer_memory_is_bounded_by_a_piece_not_a_session(tmp_path, monkeypatch):
    monkeypatch.setattr(_scale_betas, "_PIECE_BYTES", 128 * 2**10)
    shape, T = (32, 32, 30), 300
    brain = np.ones(shape[::-1], dtype=bool)
    p = _scale_betas.neuroid_params(0, "func1pt8mm", np.arange(brain.sum()) % 7 == 0, 4, (0.1, 0.8))
    latent = np.random.default_rng(0).standard_normal((T, 4)).astype(np.float32)
    session = int(np.prod(shape)) * T * 2  # 18 MB of int16
    tracemalloc.start()
    try:
        written = _scale_betas.write_volume_session(tmp_path / "b.hdf5", seed=0, session=1, shape=shape,
                                                    brain=brain, p=p, latent=latent, nsdgeneral_only=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == session
    assert peak < session / 4, f"peak {peak / 2**20:.1f} MiB for a {session / 2**20:.1f} MiB session"
    with h5py.File(tmp_path / "b.hdf5", "r") as f:
        assert f["betas"].shape == (T, 30, 32, 32) and f["betas"].chunks == (T, 1, 1, 1)
        assert (f["betas"][:, 5, 6, 7] != 0).all()
    # the surface writer too
    V = (30000, 25000)
    ps = _scale_betas.neuroid_params(0, "fsaverage", np.arange(sum(V)) % 5 == 0, 4, (0.1, 0.8))
    tracemalloc.start()
    try:
        written = _scale_betas.write_surface_session({h: tmp_path / f"{h}.mgh" for h in ("lh", "rh")}, seed=0,
                                                     session=1, n_vertices=V, p=ps, latent=latent,
                                                     nsdgeneral_only=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == sum(V) * T * 4 and peak < written / 4
    assert nib.load(tmp_path / "rh.mgh").shape == (25000, 1, 1, T)


def test_invalid_parameters_and_full_disk(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"Invalid value for 'sessions' in simulate_nsd_scale\(\): 41. "
                       r"Expected 1..40"):
        simulate_nsd_scale(tmp_path / "x", sessions=41)
    with pytest.raises(ValueError, match=r"Invalid value for 'spaces' .*\('func1mm',\)"):
        simulate_nsd_scale(tmp_path / "x", spaces=("func1mm",))
    with pytest.raises(ValueError, match=r"Expected 3 \* n_images == n_sessions \* trials_per_session"):
        simulate_nsd_scale(tmp_path / "x", sessions=4, n_images=100, n_sessions=4, trials_per_session=70)
    monkeypatch.setattr(_scale.shutil, "disk_usage", lambda p: type("U", (), {"free": 10 * 2**30})())
    with pytest.raises(OSError, match=r"10.0 GiB free, but 40 session\(s\) of func1pt8mm and fsaverage "
                       r"betas need about 77.5 GiB. Write fewer sessions, one space, or nsdgeneral_only=True"):
        simulate_nsd_scale(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_size_nsd(tmp_path, monkeypatch):
    real = _scale.simulate_nsd_scale
    seen = {}

    def small(out, **kw):  # the CLI's call, run on small grids and a short design
        seen.update(kw)
        return real(out, **kw, **SHORT)

    monkeypatch.setattr(_scale, "simulate_nsd_scale", small)
    out = tmp_path / "cli"
    res = runner.invoke(app, ["simulate", str(out), "--size", "nsd", "--sessions", "2",
                              "--space", "fsaverage", "--nsdgeneral-only", "--seed", "4"])
    assert res.exit_code == 0, res.output
    assert seen == {"sessions": 2, "spaces": ("fsaverage",), "nsdgeneral_only": True, "seed": 4,
                    "image_size": 32, "overwrite": False}
    assert "design: 300 images, 900 trials in 4 sessions of 225; sessions written: 1, 2" in res.output
    assert "fsaverage: 560 neuroids" in res.output and "nsdgeneral only" in res.output
    assert load_nsd(out, 1, space="fsaverage", sessions=[1, 2]).sizes["presentation"] == 450
    res = runner.invoke(app, ["simulate", str(tmp_path / "y"), "--size", "nsd", "--n-images", "50"])
    assert res.exit_code == 2 and "--n-images: not an option of --size nsd" in res.output
    res = runner.invoke(app, ["simulate", str(tmp_path / "y"), "--sessions", "2"])
    assert res.exit_code == 2 and "--sessions applies to --size nsd only" in res.output
    res = runner.invoke(app, ["simulate", str(out), "--size", "nsd", "--sessions", "1"])
    assert res.exit_code == 2 and "already exists" in res.output


def test_ingest_of_the_scale_tree_equals_load(nsd_design, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # two of the 40 sessions asked for: no warning
        out = ingest_nsd(nsd_design.root, 1, tmp_path / "s.zarr", sessions=[1, 2], space="fsaverage")
    disk = open_store(out, chunks={})
    mem = load_nsd(nsd_design.root, 1, sessions=[1, 2], space="fsaverage")
    np.testing.assert_array_equal(disk.responses.values, mem.responses.values)
    assert disk.responses.chunks[0] == (1500,)


@pytest.mark.slow
def test_real_nsd_grid_one_session(tmp_path):
    sim = simulate_nsd_scale(tmp_path / "big", sessions=1, spaces=("func1pt8mm",), nsdgeneral_only=True)
    assert sim.truth["func1pt8mm"]["n_nsdgeneral"] == 15724 and 290000 < sim.truth["func1pt8mm"]["n_neuroids"] < 320000
    ds = load_nsd(sim.root, 1, sessions=[1], rois=())
    assert ds.sizes == {"presentation": 750, "neuroid": 15724}
    with h5py.File(_h5(sim.root, 1), "r") as f:
        assert f["betas"].shape == (750, 83, 104, 81) and f["betas"].chunks == (750, 1, 1, 1)
        i, j, k = (int(x) for x in ds.neuroid_id.values[7].split("_")[1:])
        np.testing.assert_array_equal(ds.responses.values[:, 7], f["betas"][:, k, j, i] / np.float32(300))
