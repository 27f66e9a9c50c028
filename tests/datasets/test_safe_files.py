"""No code runs from a data file: the restricted unpickler and the h5py reader of THINGS-fMRI.

Crafted payloads (a ``__reduce__`` that runs ``touch SENTINEL``) must raise
UnsafeFileError naming the file and the refused global, and the sentinel must never
appear. The real formats, written by the repository's own writers, must load exactly
what a trusting reader (``np.load(allow_pickle=True)``, ``pandas.read_hdf``) loads.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from adapter_fixtures import write_things_fmri
from damage import Evil

from neuroalign.datasets._formats import (
    load_npy_array,
    load_npy_dict,
    load_pickle_file,
    unpickle_restricted,
)
from neuroalign.datasets._things_fmri import _ResponseTable
from neuroalign.exceptions import DataFormatError, UnsafeFileError


def _real_content():
    """Everything the published pickles hold (and a bit more, as third parties save it)."""
    rng = np.random.default_rng(0)
    return {
        "preprocessed_eeg_data": rng.standard_normal((3, 2, 4, 5)),
        "ch_names": ["Pz", "P3", "P7", "O1"],
        "times": np.linspace(-0.2, 0.79, 5),
        "train_img_files": np.array(["aardvark_01b.jpg", "abacus_02s.jpg"]),
        "object_array": np.array(["a", 1, 2.5, None], dtype=object),
        "f32": rng.standard_normal((2, 3)).astype(np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4))),
        "ints": np.arange(6, dtype=np.int16).reshape(2, 3),
        "bools": np.array([True, False]),
        "structured": np.zeros(2, dtype=[("a", "<i4"), ("b", "<f8")]),
        "scalars": [np.int64(3), np.float32(2.5), np.bool_(True), np.str_("x"), 7, 1.5, 1 + 2j, None],
        "containers": ({1, 2}, frozenset({3}), (1, "a"), b"bytes", bytearray(b"ba")),
        0: "Unknown",
        1: "V1v",
    }


def _assert_same(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype == object:
            assert a.tolist() == b.tolist()
        else:
            np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b or (a != a and b != b)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_real_content_loads_identically_every_protocol(tmp_path, protocol):
    obj = _real_content()
    p = tmp_path / "x.pkl"
    p.write_bytes(pickle.dumps(obj, protocol=protocol))
    _assert_same(load_pickle_file(p, "a dict"), pickle.loads(p.read_bytes()))


def test_np_saved_dict_loads_identically(tmp_path):
    obj = _real_content()
    p = tmp_path / "x.npy"
    np.save(p, obj, allow_pickle=True)
    trusted = np.load(p, allow_pickle=True).item()
    _assert_same(load_npy_dict(p, ["times"], "a dict"), trusted)
    # an np.saved object array (not 0-d) comes back as the array
    np.save(p, np.array([{"a": 1}, "b"], dtype=object), allow_pickle=True)
    got = load_pickle_file(p, "an object array")
    assert got.dtype == object and got.tolist() == [{"a": 1}, "b"]
    # a plain array through the same door is read without unpickling
    np.save(p, np.arange(5.0))
    np.testing.assert_array_equal(load_pickle_file(p, "an array"), np.arange(5.0))


def _payloads(sentinel, name):
    evil = Evil(sentinel)
    system = "posix.system" if os.name == "posix" else "nt.system"
    return {
        "reduce-os-system": lambda: (pickle.dumps({"a": evil}), system),
        "nested-in-list": lambda: (pickle.dumps({"a": [1, [evil]]}, protocol=2), system),
        "subprocess": lambda: (pickle.dumps(_Reduce(subprocess.call, (["touch", str(sentinel)],))),
                               "subprocess.call"),
        "builtins-eval": lambda: (pickle.dumps(_Reduce(eval, (f"open({str(sentinel)!r}, 'w')",))),
                                  "builtins.eval"),
        "numpy-other-function": lambda: (pickle.dumps(_Reduce(np.save, (str(sentinel), np.zeros(1)))),
                                         "numpy.save"),
        "getattr-chain": lambda: (pickle.dumps(_Reduce(getattr, ("x", "upper"))), "builtins.getattr"),
    }[name]()


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("name", ["reduce-os-system", "nested-in-list", "subprocess", "builtins-eval",
                                  "numpy-other-function", "getattr-chain"])
@pytest.mark.parametrize("container", ["pickle", "npy-object-array"])
def test_crafted_payload_is_refused_and_never_runs(tmp_path, name, container):
    sentinel = tmp_path / "SENTINEL"
    blob, glob = _payloads(sentinel, name)
    p = tmp_path / "data.npy"
    if container == "pickle":
        p.write_bytes(blob)
    else:  # what np.save writes for an object array: a .npy header, then a pickle
        with open(p, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
            f.write(blob)
    with pytest.raises(UnsafeFileError, match=rf"data.npy: refused to load: its pickle names \S*{glob}"):
        load_pickle_file(p, "THINGS-EEG2 preprocessed data")
    assert not sentinel.exists()


def test_other_refusals(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.array([1, None], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeFileError, match=r"x.npy: refused to load: it holds pickled Python objects "
                       r"\(dtype object\) where the format is a plain array \(a mask\)"):
        load_npy_array(p, "a mask")
    with pytest.raises(UnsafeFileError, match=r"labels: refused to load: its pickle uses persistent ids"):
        unpickle_restricted(b"\x80\x02X\x01\x00\x00\x00aQ.", "labels", "column labels")  # BINPERSID
    # _codecs.encode is admitted only as protocol 2 uses it for bytes (latin-1)
    crafted = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(DataFormatError, match=r"x: cannot be read as a pickle \(UnpicklingError: "
                       r"_codecs.encode with encoding 'rot13'\)"):
        unpickle_restricted(crafted, "x", "labels")
    with pytest.raises(DataFormatError, match=r"x: cannot be read as a pickle .*truncated or corrupt"):
        unpickle_restricted(pickle.dumps({"a": np.zeros(3)})[:-7], "x", "labels")


# -- THINGS-fMRI: the pandas HDFStore read with h5py ---------------------------------------------

def _write(path, df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df.to_hdf(path, key="ResponseData", format="fixed", **kw)


@pytest.mark.parametrize("variant", ["published", "compressed", "mixed-float-blocks", "string-labels",
                                     "voxel-id-last"])
def test_response_table_reads_what_pandas_reads(tmp_path, variant):
    rng = np.random.default_rng(1)
    values = rng.standard_normal((11, 6))
    df = pd.DataFrame(values, columns=list(range(6)))
    df.insert(0, "voxel_id", np.arange(11) * 5 + 3)
    kw = {}
    if variant == "compressed":
        kw = {"complevel": 9, "complib": "zlib"}
    elif variant == "mixed-float-blocks":
        df[2] = df[2].astype(np.float32)  # a second float block
    elif variant == "string-labels":
        df.columns = ["voxel_id", *map(str, range(6))]
    elif variant == "voxel-id-last":
        df = df[[*range(6), "voxel_id"]]
    p = tmp_path / "r.h5"
    _write(p, df, **kw)
    trusted = pd.read_hdf(p, "ResponseData")
    table = _ResponseTable(p)
    labels = list(range(6))
    got = table.read(labels)
    expected = trusted[[c for c in trusted.columns if c != "voxel_id"]].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(table.read(["voxel_id"])[:, 0], trusted.voxel_id.to_numpy())
    np.testing.assert_array_equal(table.read([4, 1]), expected[:, [4, 1]])  # any order


def test_things_fmri_store_identical_to_pandas_reference(tmp_path):
    """The store built through h5py equals one built from pandas.read_hdf of the same file."""
    from neuroalign.datasets import load_things_fmri

    w = write_things_fmri(tmp_path / "tf", n_vox=9, n_trials=12, seed=5)
    ds = load_things_fmri(w["root"], 1)
    table = pd.read_hdf(w["dir"] / "sub-01_ResponseData.h5", "ResponseData").set_index("voxel_id")
    st = w["stim"]
    ref = table.loc[w["voxels"].voxel_id, list(st.trial_id)].to_numpy(dtype=np.float32).T
    np.testing.assert_array_equal(ds.responses.values, ref)
    np.testing.assert_array_equal(ds.trial.values, st.trial_id)
    np.testing.assert_array_equal(ds.session.values, st.session)
