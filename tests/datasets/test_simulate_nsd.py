"""The simulated NSD tree matches the published format (the card datasets/nsd.toml) and its truth."""

import json

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.io

from neuroalign.datasets import simulate
from neuroalign.datasets.simulate import ATLAS_LABELS, SimulationResult, nsd_paths
from neuroalign.store import ncsnr, noise_ceiling
from neuroalign.testing import ncsnr_sampling_sd


@pytest.fixture(scope="module")
def paths(sim_nsd):
    return nsd_paths(sim_nsd.root, 1)


def test_expdesign_keys_shapes_and_one_based_ids(sim_nsd, paths):
    d = scipy.io.loadmat(paths["expdesign"])
    assert {"basiccnt", "masterordering", "sharedix", "stimpattern", "subjectim"} <= set(d)
    n_img, n_test = sim_nsd.truth["design"]["n_images"], sim_nsd.truth["design"]["n_test"]
    mo, si, sh = d["masterordering"], d["subjectim"], d["sharedix"]
    assert mo.shape == (1, n_img * 3) and si.shape == (8, n_img) and sh.shape == (1, n_test)
    assert mo.min() == 1 and mo.max() == n_img  # 1-based into the subject's list
    assert si.min() == 1 and si.max() == n_img  # 1-based 73k ids
    for s in range(8):  # the first columns are the shared images for every subject
        assert np.array_equal(np.sort(si[s, :n_test]), np.sort(sh[0]))
    assert d["stimpattern"].ndim == 3 and d["stimpattern"].shape[:2] == (3, 12)
    assert d["basiccnt"].shape == (3, 3) and d["basiccnt"].sum() == n_img * 3


def test_stim_info_csv(sim_nsd, paths):
    header = paths["stim_info"].read_text().splitlines()[0]
    cols = ["", "cocoId", "cocoSplit", "cropBox", "loss", "nsdId", "flagged", "BOLD5000", "shared1000"]
    cols += [f"subject{s}" for s in range(1, 9)]
    cols += [f"subject{s}_rep{r}" for s in range(1, 9) for r in range(3)]
    assert header.split(",") == cols
    df = pd.read_csv(paths["stim_info"], index_col=0)
    n_img = sim_nsd.truth["design"]["n_images"]
    assert list(df.index) == list(range(n_img)) and list(df.nsdId) == list(range(n_img))  # 0-based
    assert set(df.shared1000.astype(str)) == {"True", "False"}
    assert set(df.cocoSplit) <= {"train2017", "val2017"}
    assert df.cropBox.str.match(r"^\(\d+, \d+, [\d.e-]+, [\d.e-]+\)$").all()
    # subject1_repR: 1-based global trial numbers consistent with the expdesign mapping
    d = scipy.io.loadmat(paths["expdesign"])
    mo = d["masterordering"][0].astype(int)
    nsd_of_trial = d["subjectim"][0, mo - 1].astype(int) - 1
    for r in range(3):
        trial1b = df[f"subject1_rep{r}"].to_numpy()
        assert trial1b.min() >= 1
        assert np.array_equal(nsd_of_trial[trial1b - 1], df.nsdId.to_numpy())
    assert (df.subject1_rep0 < df.subject1_rep1).all() and (df.subject1_rep1 < df.subject1_rep2).all()


def test_image_brick(sim_nsd, paths):
    with h5py.File(paths["stimuli"], "r") as f:
        assert list(f) == ["imgBrick"]
        b = f["imgBrick"]
        size = sim_nsd.truth["design"]["image_size"]
        assert b.shape == (sim_nsd.truth["design"]["n_images"], size, size, 3) and b.dtype == np.uint8


def test_betas_int16_trials_z_y_x_and_store_scaling(sim_nsd, paths):
    store = sim_nsd.store().load()
    X, Y, Z = sim_nsd.truth["design"]["volume_shape"]
    per = sim_nsd.truth["design"]["trials_per_session"]
    files = sorted(paths["betas"].glob("betas_session*.hdf5"))
    assert [f.name for f in files] == ["betas_session01.hdf5", "betas_session02.hdf5", "betas_session03.hdf5"]
    i, j, k = store.i.values, store.j.values, store.k.values
    for sess, f in enumerate(files, start=1):
        with h5py.File(f, "r") as h:
            assert list(h) == ["betas"]
            betas = h["betas"]
            assert betas.dtype == np.int16 and betas.shape == (per, Z, Y, X)
            raw = betas[:]
        rows = store.session.values == sess
        # (trials, Z, Y, X) indexed with (k, j, i); int16 / 300 = PSC exactly
        np.testing.assert_array_equal(
            store.responses.values[rows], raw[:, k, j, i].astype(np.float32) / np.float32(300)
        )
    assert not np.any(raw[:, ~nib.load(paths["ppdata"] / "brainmask.nii.gz").get_fdata().astype(bool).T])


def test_store_presentation_coordinates(sim_nsd, paths):
    store = sim_nsd.store()
    d = scipy.io.loadmat(paths["expdesign"])
    mo = d["masterordering"][0].astype(int)
    nsd = d["subjectim"][0, mo - 1].astype(int) - 1
    assert np.array_equal(store.trial.values, np.arange(len(mo)))
    assert np.array_equal(store.nsd_id.values, nsd)
    assert all(s == f"nsd-{n:05d}" for s, n in zip(store.stimulus_id.values, nsd, strict=True))
    for n in np.unique(nsd):  # repetition = 0-based order of that image's showings
        assert list(store.repetition.values[nsd == n]) == list(range((nsd == n).sum()))
    shared = d["sharedix"][0].astype(int) - 1
    assert np.array_equal(store.split.values == "test", np.isin(nsd, shared))


def test_roi_files_ctab_and_membership(sim_nsd, paths):
    store = sim_nsd.store()
    X, Y, Z = sim_nsd.truth["design"]["volume_shape"]
    general = nib.load(paths["roi"] / "nsdgeneral.nii.gz").get_fdata()
    assert general.shape == (X, Y, Z)
    assert set(np.unique(general)) == {-1.0, 0.0, 1.0}
    # store neuroids = nsdgeneral voxels in C order of the (X, Y, Z) mask
    vox = np.argwhere(general == 1)
    assert np.array_equal(np.c_[store.i.values, store.j.values, store.k.values], vox)
    for atlas, labels in ATLAS_LABELS.items():
        img = nib.load(paths["roi"] / f"{atlas}.nii.gz")
        assert img.shape == (X, Y, Z) and img.get_data_dtype() == np.float32
        ctab = (paths["labels"] / f"{atlas}.mgz.ctab").read_text().splitlines()
        assert ctab[0] == "0 Unknown"
        parsed = pd.read_csv(paths["labels"] / f"{atlas}.mgz.ctab", sep=" ", header=None, index_col=0).to_dict()[1]
        assert parsed == {0: "Unknown", **{i + 1: n for i, n in enumerate(labels)}}
        vol = img.get_fdata()
        for h in ("lh", "rh"):
            hv = nib.load(paths["roi"] / f"{h}.{atlas}.nii.gz").get_fdata()
            side = (np.arange(X) < X / 2) if h == "lh" else (np.arange(X) >= X / 2)
            assert not (hv[~side] > 0).any()
            np.testing.assert_array_equal(hv[side], vol[side])
        if atlas in ("nsdgeneral",):
            continue
        vals = vol[store.i.values, store.j.values, store.k.values]
        for idx, name in enumerate(labels, start=1):
            if (vals == idx).any():
                np.testing.assert_array_equal(store[f"roi_{name}"].values, vals == idx)
            else:
                assert f"roi_{name}" not in store.coords
    truth_roi = {n["neuroid_id"]: n["roi"] for n in sim_nsd.truth["neuroids"]}
    for roi in sim_nsd.truth["layer_of_roi"]:
        ids = set(store.na.roi(roi).neuroid_id.values)
        assert ids == {k for k, v in truth_roi.items() if v == roi}


def test_ncsnr_file_and_truth_recovery(sim_nsd, paths):
    store = sim_nsd.store().load()
    vol = nib.load(paths["betas"] / "ncsnr.nii.gz")
    assert vol.get_data_dtype() == np.float32
    np.testing.assert_allclose(
        vol.get_fdata()[store.i.values, store.j.values, store.k.values], store.ncsnr.values, rtol=1e-6
    )
    est = ncsnr(store).values
    np.testing.assert_allclose(est, store.ncsnr.values, rtol=1e-5)
    true = sim_nsd.true_ncsnr()
    assert list(true.neuroid_id.values) == list(store.neuroid_id.values)
    driven = true.values > 0
    n_img = sim_nsd.truth["design"]["n_images"]
    z = (est[driven] - true.values[driven]) / ncsnr_sampling_sd(true.values[driven], n_img, 3)
    assert np.abs(z).max() < 4.5 and abs(z.mean()) < 0.5
    nc = noise_ceiling(store)
    true_nc = sim_nsd.true_noise_ceiling().values
    assert np.corrcoef(nc.values[driven], true_nc[driven])[0, 1] > 0.9
    assert np.median(nc.values[~driven]) < 15  # pure-noise voxels have a low ceiling


def test_truth_json(sim_nsd):
    t = json.loads(sim_nsd.truth_path.read_text())
    assert t["layer_of_roi"] == {"V1v": "layer1", "hV4": "layer2", "PPA": "layer3", "FFA-1": "layer4"}
    assert t["model"]["arch"] == "resnet18" and t["model"]["seed"] == 0
    n = t["neuroids"][0]
    assert {"neuroid_id", "roi", "layer", "ncsnr", "noise_ceiling", "i", "j", "k"} <= set(n)
    assert SimulationResult.load(sim_nsd.root).truth == t


def test_ground_truth_brain_generates_the_data(sim_nsd, paths):
    store = sim_nsd.store().load()
    av = store.na.average_repetitions()
    with h5py.File(paths["stimuli"], "r") as f:
        images = f["imgBrick"][:]
    nsd_ids = np.array([int(s[4:]) for s in av.stimulus_id.values])
    signal = sim_nsd.brain().signal(images[nsd_ids])
    true_snr = sim_nsd.true_ncsnr().values
    for v in np.flatnonzero(true_snr > 1.2)[:20]:
        r = np.corrcoef(signal[:, v], av.responses.values[:, v])[0, 1]
        # averaged data vs noise-free signal: r ~ sqrt(NC) for a 3-trial mean
        assert r > 0.75
    # a different seed of the same network does not generate the data as well
    other = sim_nsd.brain()
    other.seed = 1
    other_sig = other.signal(images[nsd_ids])
    v = np.flatnonzero(true_snr > 1.2)[:20]
    r_true = np.mean([np.corrcoef(signal[:, i], av.responses.values[:, i])[0, 1] for i in v])
    r_other = np.mean([np.corrcoef(other_sig[:, i], av.responses.values[:, i])[0, 1] for i in v])
    assert r_true > r_other + 0.2


def test_reproducible_from_seed_and_withheld_sessions(tmp_path, sim_nsd):
    kw = dict(n_images=30, n_test=6, n_sessions=3, seed=11)
    a = simulate(tmp_path / "a", **kw)
    b = simulate(tmp_path / "b", **kw, withhold_sessions=1)
    sa, sb = a.store().load(), b.store().load()
    assert sorted(p.name for p in nsd_paths(b.root)["betas"].glob("betas_*")) == [
        "betas_session01.hdf5", "betas_session02.hdf5"]
    assert b.truth["design"]["sessions_withheld"] == [3]
    # the first sessions are identical; the withheld one is absent from the store
    assert sb.sizes["presentation"] == 2 * sa.sizes["presentation"] // 3
    np.testing.assert_array_equal(sa.stimulus_id.values[: sb.sizes["presentation"]], sb.stimulus_id.values)
    np.testing.assert_array_equal(sa.responses.values[: 20], sb.responses.values[:20])
    # some test images lost a repetition: the true noise ceiling uses the mixed form
    assert b.truth["design"]["test_inverse_n"] > 1 / 3


def test_bad_arguments(tmp_path, sim_nsd):
    with pytest.raises(ValueError, match=r"Invalid value for 'format' in simulate\(\): 'bids'"):
        simulate(tmp_path / "x", format="bids")
    with pytest.raises(ValueError, match="do not divide into n_sessions=7 equal sessions"):
        simulate(tmp_path / "x", n_images=20, n_test=4, n_sessions=7)
    with pytest.raises(ValueError, match=r"'n_test' in simulate\(\): 20. Expected fewer than n_images=20"):
        simulate(tmp_path / "x", n_images=20, n_test=20)
    with pytest.raises(FileExistsError, match="already exists"):
        simulate(sim_nsd.root)
    assert not (tmp_path / "x").exists()  # failed simulations leave nothing behind
