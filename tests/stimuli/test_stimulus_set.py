"""StimulusSet: constructors, lazy loading, ids, hashing and errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import xarray as xr
from PIL import Image

from neuroalign.exceptions import DataFormatError, StimulusMismatchError
from neuroalign.stimuli import StimulusSet


def _brick(tmp_path, n=6, size=8):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    path = tmp_path / "brick.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("imgBrick", data=images)
    return path, images


def test_from_texts_list_and_mapping():
    s = StimulusSet.from_texts(["a dog", "a cat"])
    assert s.ids == ["text-00000", "text-00001"]
    assert s.modality == "text" and len(s) == 2
    assert s.load([1, 0]) == ["a cat", "a dog"]
    m = StimulusSet.from_texts({"x": "one", "y": "two"})
    assert m["y"] == "two"
    assert m.to_dataframe().index.name == "stimulus_id"


def test_content_hash_depends_on_content_and_ids():
    a = StimulusSet.from_texts(["a dog", "a cat"])
    assert a.content_hash() == StimulusSet.from_texts(["a dog", "a cat"]).content_hash()
    assert a.content_hash() != StimulusSet.from_texts(["a dog", "a cow"]).content_hash()
    assert a.content_hash() != StimulusSet.from_texts(["a dog", "a cat"], prefix="s").content_hash()


def test_texts_errors():
    with pytest.raises(TypeError, match="Expected a mapping of stimulus id to text"):
        StimulusSet.from_texts("just one string")
    with pytest.raises(TypeError, match="are not str"):
        StimulusSet.from_texts({"a": 3})


def test_duplicate_ids_raise():
    with pytest.raises(ValueError, match="duplicated stimulus ids 'a'"):
        StimulusSet(["a", "a"], modality="text", loader=lambda i: [])


def test_invalid_modality_and_source_length():
    with pytest.raises(ValueError, match="Invalid value for 'modality'"):
        StimulusSet(["a"], modality="audio", loader=lambda i: [])
    with pytest.raises(ValueError, match="'nsd_id' has 2 values"):
        StimulusSet(["a"], modality="text", loader=lambda i: [], source={"nsd_id": [1, 2]})


def test_from_hdf5_unsorted_and_repeated_indices(tmp_path):
    path, images = _brick(tmp_path)
    s = StimulusSet.from_hdf5(path, indices=[4, 1, 3])
    assert s.ids == ["nsd-00004", "nsd-00001", "nsd-00003"]
    assert s.source["nsd_id"] == [4, 1, 3]
    got = s.load([2, 0, 0, 1])
    for g, row in zip(got, [3, 4, 4, 1], strict=True):
        np.testing.assert_array_equal(g, images[row])
    np.testing.assert_array_equal(s.load([1])[0], images[1])


def test_from_hdf5_errors(tmp_path):
    path, _ = _brick(tmp_path)
    with pytest.raises(DataFormatError, match="no dataset 'stimuli'"):
        StimulusSet.from_hdf5(path, "stimuli")
    with pytest.raises(IndexError, match="values outside"):
        StimulusSet.from_hdf5(path, indices=[10])
    bad = tmp_path / "bad.hdf5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("imgBrick", data=np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(DataFormatError, match="expected uint8 \\(N, H, W, 3\\)"):
        StimulusSet.from_hdf5(bad)
    with pytest.raises(FileNotFoundError, match="no such HDF5 file"):
        StimulusSet.from_hdf5(tmp_path / "nope.hdf5")


def test_from_folder(tmp_path):
    (tmp_path / "cat").mkdir()
    rng = np.random.default_rng(1)
    arrays = {}
    for name in ["cat/b.png", "cat/a.png", "dog.jpg"]:
        arr = rng.integers(0, 255, (6, 7, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / name)
        arrays[name] = arr
    (tmp_path / "notes.txt").write_text("not an image")
    s = StimulusSet.from_folder(tmp_path)
    assert s.ids == ["cat/a", "cat/b", "dog"]
    assert s.source["image_file"] == ["cat/a.png", "cat/b.png", "dog.jpg"]
    np.testing.assert_array_equal(s["cat/b"], arrays["cat/b.png"])
    assert s.load([2])[0].shape == (6, 7, 3)


def test_from_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        StimulusSet.from_folder(tmp_path / "missing")
    with pytest.raises(DataFormatError, match="no image files"):
        StimulusSet.from_folder(tmp_path)


def test_lazy_loading_reads_nothing_until_load():
    calls = []

    def loader(idx):
        calls.append(list(idx))
        return [str(i) for i in idx]

    s = StimulusSet(["a", "b", "c"], modality="text", loader=loader)
    sub = s.subset(["c", "a"])
    assert calls == []
    assert sub.load() == ["2", "0"]
    assert calls == [[2, 0]]


def test_subset_unknown_ids_named():
    s = StimulusSet.from_texts({"a": "x", "b": "y"})
    with pytest.raises(StimulusMismatchError, match="'zz'"):
        s.subset(["a", "zz"])
    with pytest.raises(IndexError, match="Expected positions in"):
        s.load([5])


def test_from_arrays_and_story():
    imgs = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    s = StimulusSet.from_arrays(imgs)
    assert s.modality == "image" and s.ids == ["image-00000", "image-00001"]
    with pytest.raises(DataFormatError, match="Expected uint8 \\(N, H, W, 3\\)"):
        StimulusSet.from_arrays(imgs.astype(float))
    story = StimulusSet.from_story("the old man sat", story="s1")
    assert story.ids[0] == "s1-w00000" and story.source["word_index"] == [0, 1, 2, 3]
    assert story.load([2]) == ["man"]
    with pytest.raises(ValueError, match="an empty story"):
        StimulusSet.from_story("")


def test_from_store_hdf5_brick(tmp_path):
    path, images = _brick(tmp_path)
    ds = xr.Dataset(coords={
        "stimulus_id": ("presentation", ["nsd-00003", "nsd-00001", "nsd-00003", "nsd-00005"]),
        "nsd_id": ("presentation", [3, 1, 3, 5]),
    }, attrs={"stimulus_set": {"kind": "hdf5-brick", "path": str(path), "key": "imgBrick",
                               "id_coord": "nsd_id"}})
    s = StimulusSet.from_store(ds)
    assert s.ids == ["nsd-00003", "nsd-00001", "nsd-00005"]
    np.testing.assert_array_equal(s["nsd-00005"], images[5])
    assert StimulusSet.from_store(ds, stimulus_ids=["nsd-00001"]).ids == ["nsd-00001"]


def test_from_store_image_files(tmp_path):
    arr = np.full((5, 5, 3), 7, dtype=np.uint8)
    (tmp_path / "img").mkdir()
    Image.fromarray(arr).save(tmp_path / "img" / "x.png")
    ds = xr.Dataset(coords={"stimulus_id": ("presentation", ["things-x", "things-x"]),
                            "image_file": ("presentation", ["img/x.png", "img/x.png"])},
                    attrs={"stimulus_set": {"kind": "image-files", "root": str(tmp_path),
                                            "file_coord": "image_file"}})
    s = StimulusSet.from_store(ds)
    assert s.ids == ["things-x"]
    np.testing.assert_array_equal(s.load()[0], arr)


def test_from_store_errors(tmp_path):
    ds = xr.Dataset(coords={"stimulus_id": ("presentation", ["a"])})
    with pytest.raises(DataFormatError, match="store attribute 'stimulus_set' is None"):
        StimulusSet.from_store(ds)
    ds.attrs["stimulus_set"] = {"kind": "hdf5-brick", "path": "x", "id_coord": "nsd_id"}
    with pytest.raises(DataFormatError, match="names id_coord 'nsd_id'"):
        StimulusSet.from_store(ds)
    ds.attrs["stimulus_set"] = {"kind": "image-files", "root": "x", "file_coord": "f"}
    with pytest.raises(DataFormatError, match="names file_coord 'f'"):
        StimulusSet.from_store(ds)
    ds.attrs["stimulus_set"] = {"kind": "video"}
    with pytest.raises(DataFormatError, match="has kind 'video'"):
        StimulusSet.from_store(ds)
    with pytest.raises(DataFormatError, match="no 'stimulus_id' coordinate"):
        StimulusSet.from_store(xr.Dataset(attrs={"stimulus_set": {"kind": "video"}}))
    ds = xr.Dataset(coords={"stimulus_id": ("presentation", ["a"]),
                            "image_file": ("presentation", ["gone.png"])},
                    attrs={"stimulus_set": {"kind": "image-files", "root": str(tmp_path)}})
    with pytest.raises(FileNotFoundError, match="gone.png: image file of stimulus set is missing"):
        StimulusSet.from_store(ds)


def _save_wide(path, values, mode):
    """Save a one-channel image of more than 8 bits in Pillow's ``mode``."""
    h, w = values.shape
    if mode == "I;16B":
        img = Image.frombytes(mode, (w, h), values.astype(">u2").tobytes())
    else:
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        img = Image.fromarray(values.astype(dtype))
    img.save(path)
    assert Image.open(path).mode == mode  # what Pillow hands back for this file


@pytest.mark.parametrize("mode,suffix", [("I;16", "png"), ("I;16", "tif"), ("I;16B", "tif"),
                                         ("I", "tif"), ("F", "tif")])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_images_of_more_than_8_bits_are_scaled_not_clipped(tmp_path, mode, suffix, seed):
    rng = np.random.default_rng(seed)
    if mode == "F":
        values = np.concatenate([[0.0, 1 / 256 - 1e-6, 1 / 256, 0.5, 1.0], rng.random(15)])
        expected = np.minimum(np.floor(values.astype(np.float32) * 256), 255)
    else:
        values = np.concatenate([[0, 255, 256, 32768, 65535], rng.integers(0, 65536, 15)])
        expected = values >> 8
    values, expected = values.reshape(4, 5), expected.reshape(4, 5).astype(np.uint8)
    _save_wide(tmp_path / f"wide.{suffix}", values, mode)
    got = StimulusSet.from_folder(tmp_path)["wide"]
    assert got.dtype == np.uint8 and got.shape == (4, 5, 3)
    np.testing.assert_array_equal(got, np.repeat(expected[..., None], 3, axis=-1))


@pytest.mark.parametrize("mode,bad,found", [("I", -1, "-1 to 65535"), ("I", 70000, "0 to 70000"),
                                            ("F", 1.5, "0 to 1.5"), ("F", np.nan, "NaN")])
def test_wide_images_without_a_known_scale_are_named(tmp_path, mode, bad, found):
    values = np.array([[0, 65535 if mode == "I" else 1.0, bad]])
    _save_wide(tmp_path / "odd.tif", values, mode)
    with pytest.raises(DataFormatError, match=f"odd.tif: .*mode {mode!r}.*{found}"):
        StimulusSet.from_folder(tmp_path)["odd"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_from_arrays_hash_covers_shape_dtype_and_the_pixels_served(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (2, 4, 6, 3), dtype=np.uint8)
    sa = StimulusSet.from_arrays(a, ["a", "b"])
    sb = StimulusSet.from_arrays(a.reshape(2, 6, 4, 3), ["a", "b"])  # same bytes, other images
    assert sa[0].shape != sb[0].shape and sa.content_hash() != sb.content_hash()
    before = sa.content_hash()
    i, y, x, c = (int(v) for v in rng.integers(0, (2, 4, 6, 3)))
    a[i, y, x, c] ^= 0xFF  # the caller edits its array after building the set
    assert sa[i][y, x, c] == a[i, y, x, c]  # the set serves the new pixel ...
    assert sa.content_hash() != before  # ... and its hash (the feature-cache key) says so
    a[i, y, x, c] ^= 0xFF
    assert sa.content_hash() == before
    served = sa[i]
    served[...] = 0  # an image handed out is the caller's: the set is unchanged
    assert sa.content_hash() == before and sa[i].any()


@pytest.mark.parametrize("n_ids", [0, 1, 3])
def test_from_arrays_needs_one_id_per_image(n_ids):
    imgs = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=(
            f"Invalid value for 'ids' in StimulusSet.from_arrays\\(\\): {n_ids} ids for 2 "
            "images \\(shape \\(2, 4, 4, 3\\)\\). Expected one id per image.")):
        StimulusSet.from_arrays(imgs, [f"s{i}" for i in range(n_ids)])


def _rewrite_keeping_stat(path, write):
    """Rewrite ``path`` with ``write(path)`` and put back its modification time, as
    ``cp -p``, ``rsync -a`` or ``tar x`` do; the size must not change."""
    import os

    st = path.stat()
    write(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_file_backed_hash_is_keyed_on_content_not_modification_time(tmp_path, seed):
    import os
    import shutil

    rng = np.random.default_rng(seed)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.bmp")
    target = folder / f"{int(rng.integers(3))}.bmp"
    h0 = StimulusSet.from_folder(folder).content_hash()
    new = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    _rewrite_keeping_stat(target, lambda p: Image.fromarray(new).save(p))  # same size (BMP)
    s = StimulusSet.from_folder(folder)
    np.testing.assert_array_equal(s[target.stem], new)
    h1 = s.content_hash()
    assert h1 != h0  # other pixels, same size and mtime: another hash
    assert s.content_hash() == h1  # ... and the hash of a set follows its files
    os.utime(target)  # a touch: same bytes, new mtime
    assert StimulusSet.from_folder(folder).content_hash() == h1
    shutil.copytree(folder, tmp_path / "moved")  # same files elsewhere, new mtimes
    assert StimulusSet.from_folder(tmp_path / "moved").content_hash() == h1

    path, images = _brick(tmp_path, n=6)
    rows = rng.permutation(6)[:4]
    b0 = StimulusSet.from_hdf5(path, indices=rows).content_hash()
    row = int(rows[int(rng.integers(4))])

    def edit(p):
        with h5py.File(p, "r+") as f:
            f["imgBrick"][row] = 255 - images[row]

    _rewrite_keeping_stat(path, edit)
    b1 = StimulusSet.from_hdf5(path, indices=rows).content_hash()
    assert b1 != b0
    os.utime(path)
    assert StimulusSet.from_hdf5(path, indices=rows).content_hash() == b1
    other = int(np.setdiff1d(np.arange(6), rows)[0])  # a row the set does not use

    def edit_other(p):
        with h5py.File(p, "r+") as f:
            f["imgBrick"][other] = 0

    _rewrite_keeping_stat(path, edit_other)
    assert StimulusSet.from_hdf5(path, indices=rows).content_hash() == b1


def test_file_backed_hash_names_a_file_removed_since(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    s = StimulusSet.from_folder(tmp_path)
    (tmp_path / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match="a.png: image file of stimulus set is missing"):
        s.content_hash()
