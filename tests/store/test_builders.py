"""Bring-your-own-data builders: from_arrays, from_nifti, from_epochs.

Each builder's store passes check_store, equals a store built by hand element by element
(shuffled trial orders, repeated stimuli), round-trips through save_store/open_store, and
works end to end (ncsnr, noise ceiling, a RidgeEncoder joined on stimulus_id). Every bad
input gets a named error naming the argument.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from neuroalign.exceptions import (
    DataFormatError,
    DimensionError,
    OutputExistsError,
    SplitLeakageError,
    StimulusMismatchError,
)
from neuroalign.store import (
    SCHEMA_VERSION,
    check_store,
    from_arrays,
    from_epochs,
    from_nifti,
    ncsnr,
    noise_ceiling,
    open_store,
    save_store,
)
from neuroalign.testing import assert_store_equal

README = Path(__file__).resolve().parents[2] / "README.md"


def signal_data(n_stim=40, n_reps=3, n_feat=6, n_neuroids=8, noise=0.5, seed=0):
    """Responses driven linearly by features, trials shuffled; ids as str."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_stim, n_feat))
    W = rng.standard_normal((n_feat, n_neuroids))
    sig = X @ W
    sig = (sig - sig.mean(0)) / sig.std(0)
    order = rng.permutation(np.repeat(np.arange(n_stim), n_reps))
    Y = sig[order] + noise * rng.standard_normal((len(order), n_neuroids))
    ids = np.array([f"img-{s:03d}" for s in range(n_stim)])
    feats = xr.Dataset({"fc": (("stimulus", "fc_unit"), X)}, coords={"stimulus_id": ("stimulus", ids)})
    return Y, ids[order], feats


def hand_repetition(ids, order_key):
    rep = np.zeros(len(ids), dtype=np.int64)
    for row in range(len(ids)):
        rep[row] = sum(1 for other in range(len(ids))
                       if ids[other] == ids[row] and order_key[other] < order_key[row])
    return rep


# -- from_arrays ---------------------------------------------------------------------------

def test_from_arrays_equals_hand_built_store():
    rng = np.random.default_rng(1)
    ids = np.array(["b", "a", "c", "a", "b", "a", "d"])
    session = np.array([2, 1, 1, 2, 1, 1, 2])
    trial = np.array([0, 5, 2, 1, 3, 0, 2])
    Y = rng.standard_normal((7, 4)).astype(np.float32)
    rois = {"V1": np.array([True, True, False, False]), "FFA-1": np.array([False, True, True, False])}
    store = from_arrays(Y, ids, session=session, trial=trial, test=["d"], rois=rois,
                        units="percent signal change", dataset="mine")
    # chronological order is (session, trial): a@(1,0) a@(1,5) a@(2,1); b@(1,3) b@(2,0)
    rep = hand_repetition(ids, list(zip(session, trial, strict=True)))
    assert rep.tolist() == [1, 1, 0, 2, 0, 0, 0]
    expected = xr.Dataset(
        {"responses": (("presentation", "neuroid"), Y)},
        coords={
            "stimulus_id": ("presentation", ids),
            "repetition": ("presentation", rep),
            "session": ("presentation", session.astype(np.int64)),
            "trial": ("presentation", trial.astype(np.int64)),
            "split": ("presentation", np.array(["train"] * 6 + ["test"])),
            "neuroid_id": ("neuroid", np.array([f"sub-01_{n:06d}" for n in range(4)])),
            "subject": ("neuroid", np.array(["sub-01"] * 4)),
            "roi_V1": ("neuroid", rois["V1"]),
            "roi_FFA-1": ("neuroid", rois["FFA-1"]),
        },
        attrs={"dataset": "mine", "space": "none", "units": "percent signal change",
               "schema_version": SCHEMA_VERSION, "subject": "sub-01"},
    )
    assert_store_equal(store, expected)
    # the same trials in another row order: the same store, rows permuted (repetition
    # follows the clock, not the row order)
    perm = np.array([6, 3, 0, 5, 1, 4, 2])
    shuffled = from_arrays(Y[perm], ids[perm], session=session[perm], trial=trial[perm], test=["d"],
                           rois=rois, units="percent signal change", dataset="mine")
    assert_store_equal(shuffled, expected.isel(presentation=perm))
    # without timing, row order is presentation order
    plain = from_arrays(Y, ids)
    assert plain["repetition"].values.tolist() == [0, 0, 0, 1, 1, 2, 0]
    assert set(plain["split"].values) == {"train"}


def test_from_arrays_round_trips_and_volume_coords(tmp_path):
    rng = np.random.default_rng(2)
    ijk = np.array([[1, 2, 0], [0, 0, 3], [2, 1, 1]])
    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    store = from_arrays(rng.standard_normal((5, 3)), [3, 1, 3, 2, 1], ijk=ijk, affine=affine,
                        volume_shape=(3, 3, 4), hemisphere=["lh", "right", "L"], subject="subj01",
                        split={"1": "test", "2": "train", "3": "train"})
    assert store["stimulus_id"].values.tolist() == ["3", "1", "3", "2", "1"]
    assert store["split"].values.tolist() == ["train", "test", "train", "train", "test"]
    assert store["neuroid_id"].values.tolist() == ["subj01_1_2_0", "subj01_0_0_3", "subj01_2_1_1"]
    assert store["hemisphere"].values.tolist() == ["lh", "rh", "lh"]
    assert [store[c].values.tolist() for c in "ijk"] == ijk.T.tolist()
    assert store.attrs["affine"] == affine.tolist() and store.attrs["volume_shape"] == [3, 3, 4]
    assert store.attrs["space"] == "volume" and store["responses"].dtype == np.float64
    save_store(store, tmp_path / "s.zarr")
    assert_store_equal(open_store(tmp_path / "s.zarr").load(), store)
    surf = from_arrays(np.zeros((2, 2)), ["a", "b"], vertices=[7, 7], hemisphere=["lh", "rh"])
    assert surf["neuroid_id"].values.tolist() == ["sub-01_lh_7", "sub-01_rh_7"]
    assert surf.attrs["space"] == "surface"


def test_from_arrays_time_resolved_and_int_data():
    data = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    store = from_arrays(data, ["x", "y"], sensors=["Fz", "Cz", "Pz"], times=[-0.1, 0.0, 0.1, 0.2], units="V")
    assert store["responses"].dims == ("presentation", "neuroid", "time")
    assert store["responses"].dtype == np.float32
    np.testing.assert_array_equal(store["responses"].values, data)
    assert store["neuroid_id"].values.tolist() == ["sub-01_Fz", "sub-01_Cz", "sub-01_Pz"]
    assert store.attrs["space"] == "sensor"
    check_store(store)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"stimulus_ids": ["a", "b"]}, DimensionError, r"'stimulus_ids' in from_arrays\(\): 2 ids, but 'responses' has 4"),
    ({"stimulus_ids": ["a", None, "b", np.nan]}, DataFormatError, r"2 missing stimulus id\(s\).*position\(s\) 1, 3"),
    ({"stimulus_ids": [1.0, 2.5, 1.0, 3.0]}, DataFormatError, r"2\.5, a non-integer number"),
    ({"neuroid_ids": ["n1", "n2", "n1"]}, DataFormatError, r"'neuroid_ids'.*duplicated value\(s\) 'n1'"),
    ({"rois": {"V1": np.array([1, 0, 1])}}, DataFormatError, r"rois\['V1'\].*dtype int64\. Expected bool"),
    ({"rois": {"V1": np.array([True, False])}}, DimensionError, r"rois\['V1'\].*shape \(2,\)"),
    ({"rois": {"V 1": np.array([True, False, True])}}, ValueError, r"Invalid ROI name.*'V 1'"),
    ({"split": ["train", "test", "train", "val"]}, DataFormatError, r"'split'.*'val'.*trial\(s\) 3"),
    ({"split": ["test", "train", "train", "train"]}, SplitLeakageError, r"1 stimulus id\(s\) have trials in both.*'a'"),
    ({"split": {"a": "train"}}, StimulusMismatchError, r"no split for 2 stimulus id\(s\) 'b', 'c'"),
    ({"test": ["zz"]}, StimulusMismatchError, r"'test'.*none of its 1 stimulus ids \('zz'\)"),
    ({"test": ["a"], "split": "train"}, ValueError, r"either 'split' or 'test'"),
    ({"session": [1, 1, 2, np.nan]}, DataFormatError, r"'session'.*nan.*position\(s\) 3"),
    ({"trial": [0, 1, 1, 2]}, DataFormatError, r"'trial'.*1 \(trial\) combination"),
    ({"ijk": [[0, 0, 0], [1, 1, 1], [2, 2, 2]]}, ValueError, r"'ijk' needs 'affine'"),
    ({"ijk": [[0, 0, 0], [1, 1, 1], [2, 2, 5]], "affine": np.eye(4), "volume_shape": (3, 3, 3)},
     DataFormatError, r"voxel\(s\) \(2, 2, 5\) lie outside volume_shape \(3, 3, 3\)"),
    ({"ijk": [[0, 0, 0], [1, 1, 1], [0, 0, 0]], "affine": np.eye(4), "volume_shape": (3, 3, 3)},
     DataFormatError, r"'ijk'.*duplicated value\(s\) \(0, 0, 0\)"),
    ({"ijk": [[0, 0, 0], [1, 1, 1], [2, 2, 2]], "affine": np.eye(3), "volume_shape": (3, 3, 3)},
     DataFormatError, r"'affine'.*4x4"),
    ({"sensors": ["Fz", "Fz", "Cz"]}, DataFormatError, r"'sensors'.*duplicated value\(s\) 'Fz'"),
    ({"times": [0.0, 0.1]}, DimensionError, r"'times' given, but 'responses' has no time axis"),
    ({"hemisphere": ["lh", "up", "rh"]}, DataFormatError, r"'hemisphere'.*'up'"),
    ({"vertices": [1, 2, 3]}, ValueError, r"'vertices' needs 'hemisphere'"),
    ({"vertices": [1, -2, 3], "hemisphere": ["lh"] * 3}, DataFormatError, r"'vertices'.*non-negative"),
    ({"vertices": [1, 1, 3], "hemisphere": ["lh", "left", "rh"]}, DataFormatError, r"'vertices'.*'lh_1'"),
    ({"affine": np.eye(4)}, ValueError, r"'affine' and 'volume_shape' need 'ijk'"),
    ({"ijk": np.zeros((3, 3)), "affine": np.eye(4), "volume_shape": (3, 3, 3)}, DataFormatError,
     r"'ijk'.*dtype float64\. Expected integer"),
    ({"ijk": np.zeros((3, 2), int), "affine": np.eye(4), "volume_shape": (3, 3, 3)}, DimensionError,
     r"'ijk'.*shape \(3, 2\)\. Expected \(3, 3\)"),
    ({"ijk": np.eye(3, dtype=int), "affine": np.eye(4), "volume_shape": (3, 3)}, DataFormatError,
     r"'volume_shape'.*\(3, 3\)\. Expected 3 positive"),
    ({"subject": ""}, ValueError, r"'subject' in from_arrays\(\): ''"),
    ({"image_ids": ["a"]}, ValueError, r"'image_ids' and 'write_images' go with 'images'"),
    ({"stimulus_ids": ["a", True, "b", "c"]}, DataFormatError, r"True \(a bool\)"),
    ({"stimulus_ids": ["a", ("x",), "b", "c"]}, DataFormatError, r"\('x',\) \(tuple\)"),
    ({"split": ["train"] * 3}, DimensionError, r"'split'.*3 values\. Expected one per trial \(4\)"),
    ({"session": [1, 1]}, DimensionError, r"'session'.*shape \(2,\)\. Expected one value per trial"),
    ({"neuroid_ids": ["a", "b"]}, DimensionError, r"'neuroid_ids'.*Expected one value per neuroid \(3,\)"),
])
def test_from_arrays_errors(kwargs, exc, match):
    args = {"stimulus_ids": ["a", "b", "c", "a"], **kwargs}
    with pytest.raises(exc, match=match):
        from_arrays(np.zeros((4, 3)), **args)


def test_from_arrays_shape_errors_and_overlap_opt_in():
    with pytest.raises(DimensionError, match=r"'responses'.*shape \(4,\)"):
        from_arrays(np.zeros(4), ["a"] * 4)
    with pytest.raises(ValueError, match=r"pass 'times'"):
        from_arrays(np.zeros((2, 3, 4)), ["a", "b"])
    with pytest.raises(DataFormatError, match=r"'times'.*Expected 4 finite, increasing"):
        from_arrays(np.zeros((2, 3, 4)), ["a", "b"], times=[0, 0.1, 0.1, 0.2])
    with pytest.raises(DataFormatError, match=r"'responses'.*dtype <U1\. Expected numbers"):
        from_arrays(np.array([["x"]]), ["a"])
    store = from_arrays(np.zeros((2, 1)), ["a", "a"], split=["train", "test"], allow_split_overlap=True)
    assert store.attrs["allow_split_overlap"] is True


# -- images --------------------------------------------------------------------------------

def _pngs(root: Path, names, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    pix = {}
    for name in names:
        arr = rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(root / name)
        pix[name.rsplit(".", 1)[0]] = arr
    return pix


def test_images_folder_hdf5_and_array(tmp_path):
    from neuroalign.stimuli import StimulusSet

    pix = _pngs(tmp_path / "stim", ["cat/01.png", "dog.png", "extra.png"])
    ids = ["dog", "cat/01", "dog"]
    store = from_arrays(np.zeros((3, 2)), ids, images=tmp_path / "stim")
    assert store["image_file"].values.tolist() == ["dog.png", "cat/01.png", "dog.png"]
    stim = StimulusSet.from_store(store)
    assert stim.ids == ["dog", "cat/01"]
    for sid in stim.ids:
        np.testing.assert_array_equal(stim[sid], pix[sid])
    with pytest.raises(StimulusMismatchError, match=r"no image file in .*'bird'"):
        from_arrays(np.zeros((2, 2)), ["dog", "bird"], images=tmp_path / "stim")

    brick = np.random.default_rng(3).integers(0, 255, (3, 4, 4, 3), dtype=np.uint8)
    out = tmp_path / "new" / "images.h5"
    with pytest.raises(ValueError, match=r"'images' is an array.*Pass write_images="):
        from_arrays(np.zeros((3, 2)), ["b", "a", "b"], images=brick, image_ids=["a", "b", "c"])
    assert not (tmp_path / "new").exists()  # nothing written unless asked
    with pytest.raises(ValueError, match=r"pass 'image_ids'"):
        from_arrays(np.zeros((3, 2)), ["b", "a", "b"], images=brick, write_images=out)
    store = from_arrays(np.zeros((3, 2)), ["b", "a", "b"], images=brick, image_ids=["a", "b", "c"],
                        write_images=out)
    assert store["image_index"].values.tolist() == [1, 0, 1]
    stim = StimulusSet.from_store(store)
    np.testing.assert_array_equal(np.stack(stim.load()), brick[[1, 0]])
    with pytest.raises(OutputExistsError, match=r"images\.h5 exists; it is left untouched"):
        from_arrays(np.zeros((1, 2)), ["a"], images=brick, image_ids=["a", "b", "c"], write_images=out)
    again = from_arrays(np.zeros((2, 2)), ["c", "a"], images=out, image_ids=["a", "b", "c"])
    np.testing.assert_array_equal(np.stack(StimulusSet.from_store(again).load()), brick[[2, 0]])
    with pytest.raises(DimensionError, match=r"'image_ids'.*2 ids for the HDF5 file images\.h5 of 3"):
        from_arrays(np.zeros((1, 2)), ["a"], images=out, image_ids=["a", "b"])
    with pytest.raises(DataFormatError, match=r"no dataset 'pixels'"):
        from_arrays(np.zeros((1, 2)), ["a"], images=out, image_ids=["a", "b", "c"], images_key="pixels")
    with pytest.raises(DataFormatError, match=r"Expected uint8 images \(N, H, W, 3\)"):
        from_arrays(np.zeros((1, 2)), ["a"], images=brick[..., 0], image_ids=["a", "b", "c"], write_images=out)


def test_images_errors(tmp_path):
    _pngs(tmp_path / "stim", ["a.png", "b.png", "b.jpg"])
    z = np.zeros((1, 2))
    brick = np.zeros((2, 3, 3, 3), np.uint8)
    with pytest.raises(ValueError, match=r"'image_ids' is for an HDF5 file or an array"):
        from_arrays(z, ["a"], images=tmp_path / "stim", image_ids=["a"])
    with pytest.raises(DataFormatError, match=r"several files for stimulus 'b' \('b\.jpg', 'b\.png'\)"):
        from_arrays(z, ["b"], images=tmp_path / "stim")
    assert from_arrays(z, ["a"], images=tmp_path / "stim")["image_file"].item() == "a.png"
    with pytest.raises(ValueError, match=r"'write_images' is for images given as an array"):
        from_arrays(z, ["a"], images=tmp_path / "stim", write_images=tmp_path / "x.h5")
    with pytest.raises(FileNotFoundError, match=r"'images'.*nope: no such folder or file"):
        from_arrays(z, ["a"], images=tmp_path / "nope")
    with pytest.raises(DataFormatError, match=r"'images'.*a\.png\. Expected a folder of image files or an HDF5"):
        from_arrays(z, ["a"], images=tmp_path / "stim" / "a.png")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataFormatError, match=r"bad\.h5: cannot be read as HDF5"):
        from_arrays(z, ["a"], images=tmp_path / "bad.h5", image_ids=["a"])
    with pytest.raises(ValueError, match=r"'write_images'.*x\.png'\. Expected a new file ending in \.h5"):
        from_arrays(z, ["a"], images=brick, image_ids=["a", "b"], write_images=tmp_path / "x.png")
    with pytest.raises(DataFormatError, match=r"'image_ids'.*duplicated id\(s\) 'a'"):
        from_arrays(z, ["a"], images=brick, image_ids=["a", "a"], write_images=tmp_path / "x.h5")
    with pytest.raises(StimulusMismatchError, match=r"no image in 'images': 'q'"):
        from_arrays(z, ["q"], images=brick, image_ids=["a", "b"], write_images=tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


# -- from_nifti ----------------------------------------------------------------------------

def _nifti_case(tmp_path, n_stim=12, n_reps=2, seed=0):
    import nibabel as nib

    rng = np.random.default_rng(seed)
    shape = (6, 7, 5)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-9.0, -12.0, -6.0]
    order = rng.permutation(np.repeat(np.arange(n_stim), n_reps))
    n_vol = len(order) + 1  # one volume with no stimulus (n/a)
    data = rng.standard_normal((*shape, n_vol)).astype(np.float32)
    data[2, 3, 1, 4] = np.nan  # a missing value stays missing
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:5, 1:6, 1:4] = 1
    names = [f"stim{s:02d}" for s in order]
    stim_col = names[:5] + ["n/a"] + names[5:]
    events = pd.DataFrame({"onset": np.arange(n_vol) * 4.0, "duration": 3.0, "trial_type": stim_col,
                           "session": [1] * (n_vol // 2) + [2] * (n_vol - n_vol // 2)})
    events.to_csv(tmp_path / "sub-01_space-MNI152NLin2009cAsym_events.tsv", sep="\t", index=False)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "sub-01_space-MNI152NLin2009cAsym_betas.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    # labels on a grid twice as fine, shifted by 0.3 fine voxels: the centre of coarse voxel
    # (i, j, k) lies at fine (2i, 2j, 2k) - 0.3, so nearest neighbour reads fine (2i, 2j, 2k)
    # and any interpolation would blend labels
    fine_aff = affine.copy()
    fine_aff[:3, :3] /= 2
    fine_aff[:3, 3] += 0.3 * 1.5
    labels = rng.integers(0, 3, tuple(2 * s for s in shape)).astype(np.int16)
    labels[0, 0, 0] = 2
    nib.save(nib.Nifti1Image(labels, fine_aff), tmp_path / "atlas.nii.gz")
    return {"data": data, "mask": mask.astype(bool), "affine": affine, "labels": labels,
            "events": events, "keep": np.array([n != "n/a" for n in stim_col])}


def test_from_nifti_equals_direct_indexing(tmp_path):
    import nibabel as nib
    from nilearn.maskers import NiftiMasker

    case = _nifti_case(tmp_path)
    betas = tmp_path / "sub-01_space-MNI152NLin2009cAsym_betas.nii.gz"
    events = tmp_path / "sub-01_space-MNI152NLin2009cAsym_events.tsv"
    roi = np.zeros(case["mask"].shape, dtype=np.uint8)
    roi[1:3, 1:6, 1:4] = 1
    store = from_nifti(betas, events, mask=tmp_path / "mask.nii.gz", session_column="session",
                       atlases=(tmp_path / "atlas.nii.gz", {1: "early", 2: "late"}),
                       rois={"left": nib.Nifti1Image(roi, case["affine"])}, test=["stim00", "stim01"])
    check_store(store)
    keep, mask = case["keep"], case["mask"]
    ijk = np.argwhere(mask)
    expected = np.moveaxis(case["data"], 3, 0)[:, mask][keep]  # direct indexing of the 4-D array
    np.testing.assert_array_equal(store["responses"].values, expected)
    assert np.isnan(store["responses"].values).sum() == 1  # NaN kept, not made 0
    # nilearn's masker agrees except that it turns NaN into 0
    masker = NiftiMasker(mask_img=tmp_path / "mask.nii.gz", standardize=None).fit()
    via_masker = masker.transform(str(betas))[keep]
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(via_masker[finite], expected[finite])
    assert (via_masker[~finite] == 0).all()
    assert [store[c].values.tolist() for c in "ijk"] == ijk.T.tolist()
    assert store.attrs["affine"] == case["affine"].tolist() and store.attrs["volume_shape"] == [6, 7, 5]
    ids = case["events"]["trial_type"].to_numpy()[keep]
    assert store["stimulus_id"].values.tolist() == ids.tolist()
    assert store["repetition"].values.tolist() == hand_repetition(ids, np.arange(len(ids))).tolist()
    assert store["trial"].values.tolist() == np.flatnonzero(keep).tolist()
    assert store["session"].values.tolist() == case["events"]["session"].to_numpy()[keep].tolist()
    np.testing.assert_array_equal(store["onset"].values, case["events"]["onset"].to_numpy()[keep])
    assert set(store["stimulus_id"].values[store["split"].values == "test"]) == {"stim00", "stim01"}
    fine = case["labels"][2 * ijk[:, 0], 2 * ijk[:, 1], 2 * ijk[:, 2]]
    np.testing.assert_array_equal(store["roi_early"].values, fine == 1)
    np.testing.assert_array_equal(store["roi_late"].values, fine == 2)
    np.testing.assert_array_equal(store["roi_left"].values, roi[mask].astype(bool))
    assert store.attrs["space"] == "MNI152NLin2009cAsym"  # from the BIDS file name
    assert store.attrs["source"]["events"] == str(events)
    # per-trial 3-d images give the same store
    vols = [nib.Nifti1Image(case["data"][..., t], case["affine"]) for t in range(case["data"].shape[3])]
    again = from_nifti(vols, case["events"], mask=tmp_path / "mask.nii.gz", session_column="session",
                       atlases=[(tmp_path / "atlas.nii.gz", {1: "early", 2: "late"})],
                       rois={"left": nib.Nifti1Image(roi, case["affine"])}, test=["stim00", "stim01"],
                       space="MNI152NLin2009cAsym")
    assert_store_equal(again.drop_attrs(), store.drop_attrs())
    save_store(store, tmp_path / "s.zarr")
    assert_store_equal(open_store(tmp_path / "s.zarr").load(), store)


def test_from_nifti_computed_mask(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(5)
    data = np.zeros((8, 8, 6, 6), dtype=np.float32)
    data[2:6, 2:6, 1:5] = rng.standard_normal((4, 4, 4, 6)) + 5
    store = from_nifti(nib.Nifti1Image(data, np.eye(4)), pd.DataFrame({"trial_type": list("abcabc")}))
    assert store.sizes["neuroid"] == 64 and store.attrs["space"] == "volume"
    np.testing.assert_array_equal(store["responses"].values, np.moveaxis(data, 3, 0)[:, 2:6, 2:6, 1:5].reshape(6, -1))


def test_from_nifti_errors(tmp_path):
    import nibabel as nib

    case = _nifti_case(tmp_path)
    betas = tmp_path / "sub-01_space-MNI152NLin2009cAsym_betas.nii.gz"
    ev = case["events"]
    mask = tmp_path / "mask.nii.gz"
    with pytest.raises(DataFormatError, match=r"the events table: 24 rows, but 'imgs' has 25 volumes"):
        from_nifti(betas, ev.iloc[:-1], mask=mask)
    with pytest.raises(DataFormatError, match=r"no column\(s\) 'image'.*Columns present: 'onset'"):
        from_nifti(betas, ev, stimulus_column="image", mask=mask)
    with pytest.raises(FileNotFoundError, match=r"'events' in from_nifti\(\).*nope\.tsv: no such file"):
        from_nifti(betas, tmp_path / "nope.tsv", mask=mask)
    other = nib.Nifti1Image(case["mask"].astype(np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(DataFormatError, match=r"'mask'.*differs from the images'.*resample"):
        from_nifti(betas, ev, mask=other)
    three = nib.Nifti1Image(case["mask"].astype(np.int16) * 3 - 1, case["affine"])
    with pytest.raises(DataFormatError, match=r"'mask'.*values -1, 2.*binary mask"):
        from_nifti(betas, ev, mask=three)
    with pytest.raises(DataFormatError, match=r"atlases\[0\].*label 7 \('MT'\) is not in the atlas"):
        from_nifti(betas, ev, mask=mask, atlases=(tmp_path / "atlas.nii.gz", {7: "MT"}))
    with pytest.raises(DataFormatError, match=r"rois\['p'\].*values 0.0, 0.5.*binary"):
        from_nifti(betas, ev, mask=mask, rois={"p": nib.Nifti1Image(case["mask"] * 0.5, case["affine"])})
    with pytest.raises(DataFormatError, match=r"'imgs'.*a 3-d image.*Expected a 4-d image"):
        from_nifti(mask, ev)
    bad = ev.assign(trial_type="n/a")
    with pytest.raises(DataFormatError, match=r"every row of 'trial_type' is n/a"):
        from_nifti(betas, bad, mask=mask)
    with pytest.raises(SplitLeakageError, match=r"'split' in from_nifti\(\)"):
        from_nifti(betas, ev.assign(part=["test", "train"] * 12 + ["train"]), mask=mask, split_column="part")
    with pytest.raises(DataFormatError, match=r"no column\(s\) 'part'"):
        from_nifti(betas, ev, mask=mask, split_column="part")
    with pytest.raises(ValueError, match=r"pass one of 'split_column', 'split' or 'test'"):
        from_nifti(betas, ev.assign(part="train"), mask=mask, split_column="part", test=["stim00"])
    with pytest.raises(DataFormatError, match=r"'mask'.*no voxel is in the mask"):
        from_nifti(betas, ev, mask=nib.Nifti1Image(np.zeros(case["mask"].shape, np.uint8), case["affine"]))
    with pytest.raises(ValueError, match=r"'atlases'.*entry 0 is str.*\(label image, \{label: roi name\}\)"):
        from_nifti(betas, ev, mask=mask, atlases=[str(tmp_path / "atlas.nii.gz")])
    with pytest.raises(ValueError, match=r"ROI 'early' is given twice"):
        from_nifti(betas, ev, mask=mask, rois={"early": mask}, atlases=(tmp_path / "atlas.nii.gz", {1: "early"}))
    frac = nib.Nifti1Image(case["mask"] * 1.5, case["affine"])
    with pytest.raises(DataFormatError, match=r"atlases\[0\].*non-integer labels"):
        from_nifti(betas, ev, mask=mask, atlases=(frac, {1: "x"}))
    with pytest.raises(DataFormatError, match=r"'imgs' in from_nifti\(\): cannot load the images"):
        from_nifti(tmp_path / "nope.nii.gz", ev, mask=mask)
    (tmp_path / "bad.tsv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataFormatError, match=r"bad\.tsv: cannot be read as a tab-separated events table"):
        from_nifti(betas, tmp_path / "bad.tsv", mask=mask)


def test_events_tsv_keeps_ids_as_text(tmp_path):
    """'0007' stays '0007' and a stimulus called 'NA' stays one; only n/a is missing."""
    import nibabel as nib

    (tmp_path / "ev.tsv").write_text("onset\tduration\tstim\n0\t1\t0007\n4\t1\tNA\n8\t1\tn/a\n12\t1\t0007\n")
    store = from_nifti(nib.Nifti1Image(np.ones((2, 2, 2, 4), np.float32), np.eye(4)), tmp_path / "ev.tsv",
                       stimulus_column="stim", mask=nib.Nifti1Image(np.ones((2, 2, 2), np.uint8), np.eye(4)))
    assert store["stimulus_id"].values.tolist() == ["0007", "NA", "0007"]
    assert store["repetition"].values.tolist() == [0, 0, 1]


# -- from_epochs ---------------------------------------------------------------------------

def _epochs(ids, ch_types="eeg", seed=0, n_times=9):
    import mne

    rng = np.random.default_rng(seed)
    names = ["Fz", "Cz", "Pz", "Oz"]
    types = [ch_types] * 4 if isinstance(ch_types, str) else ch_types
    info = mne.create_info(names, sfreq=100.0, ch_types=types)
    data = rng.standard_normal((len(ids), 4, n_times)) * 1e-6
    md = pd.DataFrame({"image": ids, "part": ["train"] * len(ids), "sess": 1})
    return mne.EpochsArray(data, info, tmin=-0.02, metadata=md, verbose="error"), data


def test_from_epochs_equals_hand_built(tmp_path):
    ids = ["b", "a", None, "b", "a", "c"]
    epochs, data = _epochs(ids)
    epochs.info["bads"] = ["Oz"]
    store = from_epochs(epochs, "image", test=["c"], session_column="sess")
    keep = np.array([0, 1, 3, 4, 5])
    np.testing.assert_array_equal(store["responses"].values, data[keep][:, :3].astype(np.float32))
    assert store["stimulus_id"].values.tolist() == ["b", "a", "b", "a", "c"]
    assert store["repetition"].values.tolist() == [0, 0, 1, 1, 0]
    assert store["epoch"].values.tolist() == keep.tolist()
    assert store["sensor"].values.tolist() == ["Fz", "Cz", "Pz"]  # the bad channel left out
    assert store["sensor_type"].values.tolist() == ["eeg"] * 3
    np.testing.assert_allclose(store["time"].values, epochs.times)
    assert store.attrs["units"] == "V" and store.attrs["space"] == "sensor" and store.attrs["sfreq"] == 100.0
    assert store["split"].values.tolist() == ["train"] * 4 + ["test"]
    check_store(store)
    path = tmp_path / "x-epo.fif"
    epochs.save(path, verbose="error")
    from_file = from_epochs(path, "image", test=["c"], session_column="sess")
    assert from_file.attrs["source"]["files"] == [str(path.resolve())]
    assert_store_equal(from_file.drop_attrs(), store.drop_attrs(), atol=1e-12)
    save_store(store, tmp_path / "s.zarr")
    assert_store_equal(open_store(tmp_path / "s.zarr").load(), store)


def test_from_epochs_units_and_errors(tmp_path):
    epochs, _ = _epochs(["a", "b", "a"], ch_types=["mag", "mag", "grad", "eeg"])
    with pytest.raises(DataFormatError, match=r"mix units T \(mag\), T/m \(grad\), V \(eeg\).*picks='mag'"):
        from_epochs(epochs, "image")
    assert from_epochs(epochs, "image", picks="mag").attrs["units"] == "T"
    assert from_epochs(epochs, "image", picks="eeg").attrs["units"] == "V"
    mixed = from_epochs(epochs, "image", allow_mixed=True)
    assert mixed.attrs["units"] == "mixed"
    assert mixed["sensor_units"].values.tolist() == ["T", "T", "T/m", "V"]
    with pytest.raises(DataFormatError, match=r"epochs\.metadata: no column 'stim'.*'image', 'part'"):
        from_epochs(epochs, "stim")
    bare, _ = _epochs(["a", "b"])
    bare.metadata = None
    with pytest.raises(DataFormatError, match=r"the epochs have no metadata"):
        from_epochs(bare, "image")
    with pytest.raises(ValueError, match=r"'picks' in from_epochs\(\): 'ecog'"):
        from_epochs(epochs, "image", picks="ecog")
    nothing, _ = _epochs([None, np.nan])
    with pytest.raises(DataFormatError, match=r"every value of 'image' is missing"):
        from_epochs(nothing, "image")
    with pytest.raises(ValueError, match=r"pass one of 'split_column', 'split' or 'test'"):
        from_epochs(epochs, "image", picks="eeg", split_column="part", test=["a"])
    with pytest.raises(TypeError, match=r"'epochs' in from_epochs\(\): ndarray"):
        from_epochs(np.zeros((2, 3, 4)), "image")
    with pytest.raises(FileNotFoundError, match=r"nope-epo\.fif: no such file"):
        from_epochs(tmp_path / "nope-epo.fif", "image")
    (tmp_path / "junk-epo.fif").write_bytes(b"not a fif file")
    with pytest.raises(DataFormatError, match=r"junk-epo\.fif: cannot be read as MNE epochs"):
        from_epochs(tmp_path / "junk-epo.fif", "image")


# -- end to end ----------------------------------------------------------------------------

def _fit_cv_r2(features, store):
    from neuroalign.encoders import RidgeEncoder

    enc = RidgeEncoder(alphas=np.logspace(-2, 3, 6), cv=4, device="cpu").fit(features, store)
    return enc.cv_scores_


@pytest.mark.parametrize("builder", ["arrays", "nifti", "epochs"])
def test_end_to_end_ncsnr_and_encoder(builder, tmp_path):
    """Signal driven by known features: ncsnr near the truth and the encoder finds it, on
    a store built by each builder (features joined by stimulus_id, in another order)."""
    import nibabel as nib

    Y, ids, feats = signal_data(noise=0.5)
    feats = feats.isel(stimulus=np.random.default_rng(9).permutation(feats.sizes["stimulus"]))
    if builder == "arrays":
        store = from_arrays(Y, ids)
    elif builder == "nifti":
        mask = nib.Nifti1Image(np.ones((4, 3, 2), np.uint8), np.eye(4))
        vol = np.tile(Y, (1, 3)).T.reshape(4, 3, 2, len(ids)).astype(np.float32)  # 24 voxels, C order
        store = from_nifti(nib.Nifti1Image(vol, np.eye(4)), pd.DataFrame({"trial_type": ids}), mask=mask)
    else:
        import mne

        info = mne.create_info([f"EEG{n:02d}" for n in range(Y.shape[1])], 100.0, "eeg")
        data = np.repeat(Y[:, :, None], 5, axis=2)
        epochs = mne.EpochsArray(data, info, metadata=pd.DataFrame({"img": ids}), verbose="error")
        store = from_epochs(epochs, "img", dtype="float64").isel(time=2)
    check_store(store)
    true_ncsnr = 1 / 0.5  # unit signal variance, noise sd 0.5
    snr = ncsnr(store).values
    assert np.all(np.abs(snr - true_ncsnr) < 0.6), snr
    nc = noise_ceiling(store).values
    assert np.all((nc > 80) & (nc < 100))  # 100 * 4 / (4 + 1/3) = 92 %
    r2 = _fit_cv_r2(feats, store)
    # single-trial ceiling on R² is 1 / (1 + 0.25) = 0.8; a linear readout gets near it
    assert np.all(r2 > 0.6), r2
    shuffled = feats.assign_coords(stimulus_id=("stimulus", np.roll(feats["stimulus_id"].values, 1)))
    assert np.all(_fit_cv_r2(shuffled, store) < 0.3)  # ids, not rows, carry the join


# -- README --------------------------------------------------------------------------------

def readme_block(heading: str) -> str:
    text = README.read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert m, f"README section {heading!r} has no python block"
    return m.group(1)


def test_readme_your_own_data_runs(tmp_path, monkeypatch, capsys):
    """The README's 'Your own data' block, run as written on files it names."""
    code = readme_block("Your own data")
    assert len([ln for ln in code.splitlines() if ln.strip()]) <= 14
    Y, ids, feats = signal_data(n_stim=30, noise=0.5, seed=4)
    np.save(tmp_path / "betas.npy", Y)
    np.savetxt(tmp_path / "trials.txt", ids, fmt="%s")
    np.savez(tmp_path / "features.npz", ids=feats["stimulus_id"].values, X=feats["fc"].values)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    m = re.search(r"median CV R² (-?[0-9.]+), median noise ceiling ([0-9.]+) %", out)
    assert m, out
    r2, nc = float(m.group(1)), float(m.group(2))
    assert r2 > 0.5 and 80 < nc < 100, out
    assert_store_equal(open_store(tmp_path / "my-study.zarr").load(), namespace["store"])
