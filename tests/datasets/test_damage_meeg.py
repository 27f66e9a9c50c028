"""Damage matrix of the M/EEG adapters: THINGS-EEG2 dicts and image metadata, any MNE
epochs file with its metadata CSV or BIDS events.tsv, and THINGS-MEG.

The pristine files are written by ``adapter_fixtures`` (``np.save`` of the published dicts,
``mne.EpochsArray.save``, pandas CSV/TSV); each case damages one file.
"""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
from adapter_fixtures import EEG_CHANNELS, write_epochs, write_things_eeg2
from damage import Evil, check_case, copy_tree, empty, evil_pickle, latin1, truncate

from neuroalign.datasets import (
    TextEncodingWarning,
    load_mne_epochs,
    load_things_eeg2,
    load_things_meg,
)
from neuroalign.exceptions import DataFormatError, UnsafeFileError

pytestmark = pytest.mark.filterwarnings("ignore::neuroalign.datasets.PublishedCountWarning")
E = DataFormatError


# -- THINGS-EEG2 -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def eeg(tmp_path_factory):
    return write_things_eeg2(tmp_path_factory.mktemp("pristine") / "eeg")


def eegf(r, split="training"):
    return r / f"preprocessed_data/sub-01/preprocessed_eeg_{split}.npy"


def meta(r):
    return r / "image_set/image_metadata.npy"


def _load_dict(p):
    obj = np.load(p, allow_pickle=True)  # the test's own, trusted fixture
    return obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj


def _edit(p, **changes):
    obj = _load_dict(p)
    obj.update(changes)
    np.save(p, {k: v for k, v in obj.items() if v is not None}, allow_pickle=True)


def _data(r, split="training"):
    return _load_dict(eegf(r, split))["preprocessed_eeg_data"]


def _times(r, fn):
    t = np.array(_load_dict(eegf(r))["times"])
    _edit(eegf(r), times=fn(t))


def _swap(a, i, j):
    a = np.array(a)
    a[[i, j]] = a[[j, i]]
    return a


def _meta_edit(r, key, fn):
    m = _load_dict(meta(r))
    m[key] = fn(list(m[key]))
    np.save(meta(r), m, allow_pickle=True)


def _set(seq, i, v):
    seq = list(seq)
    seq[i] = v
    return seq


def _dump(p, protocol):
    obj = _load_dict(p)
    with open(p, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _evil_in_dict(p, sentinel):
    obj = _load_dict(p)
    obj["ch_names"] = np.array([Evil(sentinel)], dtype=object)
    np.save(p, obj, allow_pickle=True)


def _check_eeg(w):
    def check(ds):
        tr = w["data"]["training"]
        np.testing.assert_array_equal(ds.responses.values[: tr.shape[0] * tr.shape[1]],
                                      tr.reshape(-1, *tr.shape[2:]).astype(np.float32))
    return check


EEG = [
    ("eeg-missing", lambda r, s: eegf(r).unlink(), FileNotFoundError,
     r"preprocessed_eeg_training.npy: no such file"),
    ("eeg-empty", lambda r, s: empty(eegf(r)), E, r"preprocessed_eeg_training.npy: is empty \(0 bytes\)"),
    ("eeg-truncated", lambda r, s: truncate(eegf(r), 0.5), E,
     r"preprocessed_eeg_training.npy: cannot be read as a pickle \(.*\); the file is truncated or corrupt"),
    ("eeg-truncated-header", lambda r, s: eegf(r).write_bytes(eegf(r).read_bytes()[:40]), E,
     r"preprocessed_eeg_training.npy: has a broken .npy header"),
    ("eeg-not-pickle", lambda r, s: eegf(r).write_text("hello, world"), E,
     r"preprocessed_eeg_training.npy: cannot be read as a pickle"),
    ("eeg-not-dict", lambda r, s: np.save(eegf(r), np.zeros(5)), E,
     r"preprocessed_eeg_training.npy: holds an array of shape \(5,\), expected a dict"),
    ("eeg-missing-key", lambda r, s: _edit(eegf(r), times=None), E,
     r"preprocessed_eeg_training.npy: missing key\(s\) 'times'"),
    ("eeg-3d", lambda r, s: _edit(eegf(r), preprocessed_eeg_data=np.zeros((6, 17, 7))), E,
     r"preprocessed_eeg_training.npy: 'preprocessed_eeg_data' has shape \(6, 17, 7\) dtype float64, "
     r"expected a float array of 4 dims"),
    ("eeg-int", lambda r, s: _edit(eegf(r), preprocessed_eeg_data=np.zeros((6, 4, 17, 7), int)), E,
     r"'preprocessed_eeg_data' has shape \(6, 4, 17, 7\) dtype int64, expected a float array"),
    ("eeg-object", lambda r, s: _edit(eegf(r), preprocessed_eeg_data=np.zeros((6, 4, 17, 7), object)), E,
     r"'preprocessed_eeg_data' has shape \(6, 4, 17, 7\) dtype object, expected a float array"),
    ("eeg-list", lambda r, s: _edit(eegf(r), preprocessed_eeg_data=[[1.0]]), E,
     r"'preprocessed_eeg_data' has shape None dtype list, expected a float array"),
    ("eeg-channel-count", lambda r, s: _edit(eegf(r), preprocessed_eeg_data=np.zeros((6, 4, 16, 7))), E,
     r"preprocessed_eeg_training.npy: 'preprocessed_eeg_data' has shape \(6, 4, 16, 7\), but 'ch_names' has 17"),
    ("eeg-axes-swapped", lambda r, s: _edit(eegf(r), preprocessed_eeg_data=_data(r).transpose(0, 2, 1, 3)), E,
     r"'preprocessed_eeg_data' has shape \(6, 17, 4, 7\), but 'ch_names' has 17 and 'times' 7 entries"),
    ("eeg-duplicate-channel", lambda r, s: _edit(eegf(r), ch_names=_set(EEG_CHANNELS, 1, "Pz")), E,
     r"preprocessed_eeg_training.npy: 'ch_names' repeats 'Pz'; expected distinct channel names"),
    ("eeg-channel-not-str", lambda r, s: _edit(eegf(r), ch_names=list(range(17))), E,
     r"preprocessed_eeg_training.npy: 'ch_names' holds 0 \(int\), expected channel names \(str\)"),
    ("eeg-times-unordered", lambda r, s: _times(r, lambda t: _swap(t, 2, 3)), E,
     r"preprocessed_eeg_training.npy: 'times' is not strictly increasing \(at index 3\)"),
    ("eeg-times-nan", lambda r, s: _times(r, lambda t: np.where(np.arange(len(t)) == 4, np.nan, t)), E,
     r"preprocessed_eeg_training.npy: 'times' holds non-finite values"),
    ("eeg-times-2d", lambda r, s: _times(r, lambda t: t[None]), E,
     r"preprocessed_eeg_training.npy: 'times' has shape \(1, 7\) dtype float64, expected \(n_times,\)"),
    ("eeg-channels-differ", lambda r, s: _edit(eegf(r, "test"), ch_names=EEG_CHANNELS[::-1]), E,
     r"preprocessed_eeg_test.npy: channels or times differ from the first split's file"),
    ("eeg-conditions-mismatch", lambda r, s: _edit(eegf(r), preprocessed_eeg_data=np.zeros((5, 4, 17, 7))), E,
     r"preprocessed_eeg_training.npy: 5 image conditions, but image_metadata.npy lists 6"),
    ("eeg-pickle-dump", lambda r, s: _dump(eegf(r), 4), None, None),
    ("eeg-pickle-protocol-2", lambda r, s: _dump(eegf(r), 2), None, None),
    ("eeg-crafted-pickle", lambda r, s: eegf(r).write_bytes(evil_pickle(s)), UnsafeFileError,
     r"preprocessed_eeg_training.npy: refused to load: its pickle names posix.system"),
    ("eeg-crafted-npy", lambda r, s: np.save(eegf(r), {"x": Evil(s)}, allow_pickle=True), UnsafeFileError,
     r"preprocessed_eeg_training.npy: refused to load: its pickle names posix.system"),
    ("eeg-crafted-in-array", lambda r, s: _evil_in_dict(eegf(r, "test"), s), UnsafeFileError,
     r"preprocessed_eeg_test.npy: refused to load: its pickle names posix.system"),
    # -- image_metadata.npy ----------------------------------------------------------------
    ("meta-missing", lambda r, s: meta(r).unlink(), FileNotFoundError, r"image_metadata.npy: no such file"),
    ("meta-empty", lambda r, s: empty(meta(r)), E, r"image_metadata.npy: is empty \(0 bytes\)"),
    ("meta-truncated", lambda r, s: truncate(meta(r), 0.6), E, r"image_metadata.npy: cannot be read as a pickle"),
    ("meta-not-dict", lambda r, s: np.save(meta(r), np.array([["a"]], dtype=object), allow_pickle=True), E,
     r"image_metadata.npy: holds an array of shape \(1, 1\), expected a dict"),
    ("meta-missing-key", lambda r, s: _edit(meta(r), test_img_concepts=None),
     E, r"image_metadata.npy: missing key\(s\) 'test_img_concepts'"),
    ("meta-length-mismatch", lambda r, s: _meta_edit(r, "train_img_concepts", lambda v: v[:5]), E,
     r"image_metadata.npy: 'train_img_files' has 6 entries but 'train_img_concepts' 5"),
    ("meta-duplicate-stimulus", lambda r, s: _meta_edit(r, "train_img_files", lambda v: _set(v, 1, v[0])), E,
     r"image_metadata.npy: 'train_img_files' entries 1 and 2 \('thing0_01b.jpg', 'thing0_01b.jpg'\) give the "
     r"same stimulus id 'things-thing0_01b'"),
    ("meta-stem-collision", lambda r, s: _meta_edit(r, "train_img_files", lambda v: _set(v, 1, "thing0_01b.png")), E,
     r"'train_img_files' entries 1 and 2 \('thing0_01b.jpg', 'thing0_01b.png'\) give the same stimulus id"),
    ("meta-train-test-overlap", lambda r, s: _meta_edit(r, "test_img_files", lambda v: _set(v, 0, "thing0_01b.jpg")), E,
     r"image_metadata.npy: 'thing0_01b.jpg' is both a train and a test image \(stimulus id 'things-thing0_01b'\)"),
    ("meta-non-str", lambda r, s: _meta_edit(r, "train_img_files", lambda v: list(range(len(v)))), E,
     r"image_metadata.npy: 'train_img_files' holds 0 \(int\), expected file names \(str\)"),
    ("eeg-two-subject-folders", lambda r, s: shutil.copytree(eegf(r).parent, r / "sub-01"), E,
     r"preprocessed_data/sub-01 and .*/eeg/sub-01: two folders for the preprocessed data of sub-01; expected one"),
    ("meta-two-copies", lambda r, s: shutil.copy(meta(r), r / "image_metadata.npy"), E,
     r"image_set/image_metadata.npy and .*/eeg/image_metadata.npy: two files for THINGS-EEG2 image_metadata.npy"),
    ("meta-crafted", lambda r, s: meta(r).write_bytes(evil_pickle(s)), UnsafeFileError,
     r"image_metadata.npy: refused to load: its pickle names posix.system"),
]


@pytest.mark.parametrize(("damage", "error", "match"), [pytest.param(*c[1:], id=c[0]) for c in EEG])
def test_eeg2_damage(eeg, tmp_path, damage, error, match):
    root = copy_tree(eeg["root"], tmp_path / "eeg")
    sentinel = tmp_path / "SENTINEL"
    damage(root, sentinel)
    check_case(lambda: load_things_eeg2(root, 1), error, match, None if error else _check_eeg(eeg))
    assert not sentinel.exists()  # no code ran from a data file


# -- MNE epochs, metadata CSV, BIDS events.tsv, THINGS-MEG -------------------------------------

@pytest.fixture(scope="module")
def meg(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine") / "meg"
    w = write_epochs(root / "e-epo.fif", n_epochs=20)
    write_epochs(root / "n-epo.fif", n_epochs=20, metadata=False)
    md = w["metadata"]
    md.to_csv(root / "meta.csv", index=False)
    ev = md.assign(onset=np.arange(20) * 1.5, duration=0.5)
    ev.to_csv(root / "events.tsv", sep="\t", index=False, na_rep="n/a")
    write_epochs(root / "derivatives/preprocessed/preprocessed_P1-epo.fif", n_epochs=20, metadata=False)
    (root / "sourcedata").mkdir()
    md.to_csv(root / "sourcedata/sample_attributes_P1.csv", index=False)
    write_epochs(root / "s-epo.fif", n_epochs=300, n_times=141, split_size="2MB")
    return w


def _csv_edit(p, fn, sep=","):
    df = pd.read_csv(p, sep=sep, keep_default_na=False)
    fn(df)
    df.to_csv(p, sep=sep, index=False)


def _cell(df, row, col, value):
    df[col] = df[col].astype(object)
    df.loc[row, col] = value


def _ragged(p):
    lines = p.read_text().splitlines()
    lines[3] += ",extra,fields"
    p.write_text("\n".join(lines) + "\n")


def _latin1_csv(p, sep=","):
    latin1(p, "dog_", "d\u00e9j\u00e0_")


def _mne(r, name="e-epo.fif", **kw):
    kw.setdefault("stimulus_column", "image_path")
    return lambda: load_mne_epochs(r / name, stem=True, **kw)


def _session(r, **kw):
    return _mne(r, session_column="session_nr", run_column="run_nr", **kw)


def _check_latin1(ds):
    assert any("d\u00e9j\u00e0_" in s for s in ds.stimulus_id.values)


MNE = [
    ("epo-missing", lambda r: (r / "e-epo.fif").unlink(), _mne, FileNotFoundError, r"e-epo.fif: no such file"),
    ("epo-empty", lambda r: empty(r / "e-epo.fif"), _mne, E, r"e-epo.fif: cannot be read as MNE epochs"),
    ("epo-not-fif", lambda r: (r / "e-epo.fif").write_text("not a fif file\n"), _mne, E,
     r"e-epo.fif: cannot be read as MNE epochs"),
    ("epo-truncated-10", lambda r: truncate(r / "e-epo.fif", 0.1), _mne, E,
     r"e-epo.fif: (cannot be read as MNE epochs|cannot read the epochs data)"),
    ("epo-truncated-50", lambda r: truncate(r / "e-epo.fif", 0.5), _mne, E,
     r"e-epo.fif: (cannot be read as MNE epochs|cannot read the epochs data)"),
    ("epo-truncated-95", lambda r: truncate(r / "e-epo.fif", 0.95), _mne, E,
     r"e-epo.fif: (cannot be read as MNE epochs|cannot read the epochs data)"),
    ("epo-no-metadata", lambda r: None, lambda r: _mne(r, "n-epo.fif"), E,
     r"n-epo.fif: the epochs have no metadata"),
    ("epo-split-part-missing", lambda r: (r / "s-epo-1.fif").unlink(), lambda r: _mne(r, "s-epo.fif"), E,
     r"s-epo.fif: cannot be read as MNE epochs"),
    ("epo-metadata-na-session", None, None, E, r"e-epo.fif: column 'session_nr' holds nan at epoch\(s\) 2; expected whole numbers"),
    ("csv-empty", lambda r: empty(r / "meta.csv"), lambda r: _mne(r, "n-epo.fif", metadata=r / "meta.csv"), E,
     r"meta.csv: is empty; expected an epochs metadata table"),
    ("csv-header-only", lambda r: (r / "meta.csv").write_text("trial_type,image_path\n"),
     lambda r: _mne(r, "n-epo.fif", metadata=r / "meta.csv"), E, r"meta.csv: 0 rows, but n-epo.fif has 20 epochs"),
    ("csv-rows-mismatch", lambda r: _csv_edit(r / "meta.csv", lambda df: df.drop(index=3, inplace=True)),
     lambda r: _mne(r, "n-epo.fif", metadata=r / "meta.csv"), E, r"meta.csv: 19 rows, but n-epo.fif has 20 epochs"),
    ("csv-ragged", lambda r: _ragged(r / "meta.csv"), lambda r: _mne(r, "n-epo.fif", metadata=r / "meta.csv"), E,
     r"meta.csv: cannot be read as a comma-separated table"),
    ("csv-na-session", lambda r: _csv_edit(r / "meta.csv", lambda df: _cell(df, 1, "session_nr", "n/a")),
     lambda r: _session(r, name="n-epo.fif", metadata=r / "meta.csv"), E,
     r"meta.csv: column 'session_nr' holds nan on line\(s\) 3 \(header = line 1\); expected whole numbers"),
    ("csv-float-run", lambda r: _csv_edit(r / "meta.csv", lambda df: _cell(df, 0, "run_nr", 1.5)),
     lambda r: _session(r, name="n-epo.fif", metadata=r / "meta.csv"), E,
     r"meta.csv: column 'run_nr' holds 1.5 on line\(s\) 2"),
    ("csv-no-stimulus-column", lambda r: _csv_edit(r / "meta.csv", lambda df: df.drop(columns="image_path", inplace=True)),
     lambda r: _mne(r, "n-epo.fif", metadata=r / "meta.csv"), E, r"meta.csv: no column 'image_path' for stimulus_column"),
    ("csv-latin1", lambda r: _latin1_csv(r / "meta.csv"), lambda r: _mne(r, "n-epo.fif", metadata=r / "meta.csv"),
     None, r"meta.csv: is not UTF-8 \(byte 0xe9 at offset \d+\); read it as latin-1"),
    ("tsv-empty", lambda r: empty(r / "events.tsv"), lambda r: _mne(r, "n-epo.fif", metadata=r / "events.tsv"), E,
     r"events.tsv: is empty; expected a BIDS events.tsv"),
    ("tsv-missing-onset", lambda r: _csv_edit(r / "events.tsv", lambda df: df.drop(columns="onset", inplace=True), "\t"),
     lambda r: _mne(r, "n-epo.fif", metadata=r / "events.tsv"), E, r"events.tsv: missing column\(s\) 'onset'"),
    ("tsv-na-session", lambda r: _csv_edit(r / "events.tsv", lambda df: _cell(df, 4, "session_nr", "n/a"), "\t"),
     lambda r: _session(r, name="n-epo.fif", metadata=r / "events.tsv"), E,
     r"events.tsv: column 'session_nr' holds nan on line\(s\) 6"),
    ("tsv-latin1", lambda r: _latin1_csv(r / "events.tsv"), lambda r: _mne(r, "n-epo.fif", metadata=r / "events.tsv"),
     None, r"events.tsv: is not UTF-8"),
    ("tsv-comma-separated", lambda r: (r / "events.tsv").write_text((r / "meta.csv").read_text()),
     lambda r: _mne(r, "n-epo.fif", metadata=r / "events.tsv"), E,
     r"events.tsv: missing column\(s\) 'onset', 'duration'. Columns present: 'trial_type,image_path,"),
    # -- THINGS-MEG: derivatives/preprocessed epochs + sourcedata/sample_attributes -----------------
    ("meg-epochs-missing", lambda r: (r / "derivatives/preprocessed/preprocessed_P1-epo.fif").unlink(),
     lambda r: lambda: load_things_meg(r, 1), FileNotFoundError, r"preprocessed_P1-epo.fif: no such file"),
    ("meg-epochs-truncated", lambda r: truncate(r / "derivatives/preprocessed/preprocessed_P1-epo.fif", 0.5),
     lambda r: lambda: load_things_meg(r, 1), E,
     r"preprocessed_P1-epo.fif: (cannot be read as MNE epochs|cannot read the epochs data)"),
    ("meg-attributes-missing", lambda r: (r / "sourcedata/sample_attributes_P1.csv").unlink(),
     lambda r: lambda: load_things_meg(r, 1), FileNotFoundError, r"sample_attributes_P1.csv: no such file"),
    ("meg-attributes-empty", lambda r: empty(r / "sourcedata/sample_attributes_P1.csv"),
     lambda r: lambda: load_things_meg(r, 1), E, r"sample_attributes_P1.csv: is empty"),
    ("meg-attributes-na-session",
     lambda r: _csv_edit(r / "sourcedata/sample_attributes_P1.csv", lambda df: _cell(df, 7, "session_nr", "n/a")),
     lambda r: lambda: load_things_meg(r, 1), E,
     r"sample_attributes_P1.csv: column 'session_nr' holds nan on line\(s\) 9"),
    ("meg-attributes-two-copies", lambda r: shutil.copy(r / "sourcedata/sample_attributes_P1.csv", r),
     lambda r: lambda: load_things_meg(r, 1), E,
     r"sourcedata/sample_attributes_P1.csv and .*/sample_attributes_P1.csv: two files for the THINGS-MEG sample "
     r"attributes of P1"),
    ("meg-attributes-latin1", lambda r: _latin1_csv(r / "sourcedata/sample_attributes_P1.csv"),
     lambda r: lambda: load_things_meg(r, 1), None, r"sample_attributes_P1.csv: is not UTF-8"),
]


def _na_in_fif(r):
    import mne

    ep = mne.read_epochs(r / "e-epo.fif", verbose="error")
    md = ep.metadata.copy()
    md["session_nr"] = md["session_nr"].astype(float)
    md.loc[2, "session_nr"] = np.nan
    ep.metadata = md
    ep.save(r / "e-epo.fif", overwrite=True, verbose="error")


@pytest.mark.parametrize(("damage", "load", "error", "match"), [pytest.param(*c[1:], id=c[0]) for c in MNE])
def test_mne_damage(meg, tmp_path, damage, load, error, match):
    root = copy_tree(meg["path"].parent, tmp_path / "meg")
    if damage is None:  # NaN in an integer column of the epochs' own metadata
        damage, load = _na_in_fif, _session
    damage(root)
    check_case(load(root), error, match, _check_latin1 if error is None else None,
               warns=TextEncodingWarning if error is None else None)
