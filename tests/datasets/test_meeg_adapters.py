"""THINGS-EEG2, MNE epochs, THINGS-MEG and BIDS events adapters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from adapter_fixtures import EEG_CHANNELS, write_epochs, write_things_eeg2

from neuroalign.datasets import (
    load_mne_epochs,
    load_things_eeg2,
    load_things_meg,
    read_bids_events,
    things_eeg2_plan,
)
from neuroalign.exceptions import DataFormatError
from neuroalign.store import check_store, open_store

pytestmark = pytest.mark.filterwarnings("ignore::neuroalign.datasets.PublishedCountWarning")


@pytest.mark.parametrize("pickled", [False, True])
def test_eeg2_values_unrolled_repetitions(tmp_path, pickled):
    w = write_things_eeg2(tmp_path / "eeg", pickled=pickled)
    ds = load_things_eeg2(w["root"], 1)
    check_store(ds)
    assert ds.responses.dims == ("presentation", "neuroid", "time")
    tr, te = w["data"]["training"], w["data"]["test"]
    n_tr = tr.shape[0] * tr.shape[1]
    assert ds.sizes["presentation"] == n_tr + te.shape[0] * te.shape[1]
    for i, r in ((0, 0), (2, 3), (5, 1)):
        np.testing.assert_array_equal(ds.responses.values[i * 4 + r], tr[i, r].astype(np.float32))
        assert ds.repetition.values[i * 4 + r] == r
        assert ds.stimulus_id.values[i * 4 + r] == "things-" + w["meta"]["train_img_files"][i][:-4]
    np.testing.assert_array_equal(ds.responses.values[n_tr + 2 * 5 + 4], te[2, 4].astype(np.float32))
    assert ds.split.values[n_tr] == "test" and ds.split.values[n_tr - 1] == "train"
    assert ds.image_file.values[0] == f"training_images/{w['meta']['train_img_concepts'][0]}/{w['meta']['train_img_files'][0]}"
    assert ds.image_file.values[n_tr].startswith("test_images/")
    np.testing.assert_array_equal(ds.sensor.values, EEG_CHANNELS)
    np.testing.assert_allclose(ds.time.values, np.round(w["times"], 2), atol=1e-12)
    assert np.isfinite(ds.sensor_x.values).all()  # 10-20 positions for topographic maps
    assert ds.attrs["stimulus_set"]["root"] == str((w["root"] / "image_set").resolve())


def test_eeg2_simulation_round_trip(adapter_sim_eeg, tmp_path):
    sim = adapter_sim_eeg
    ref = sim.store().load()
    ds = load_things_eeg2(sim.root, 1)
    for name in ("responses", "stimulus_id", "repetition", "split", "image_file", "neuroid_id",
                 "subject", "sensor"):
        np.testing.assert_array_equal(ds[name].values, ref[name].values, err_msg=name)
    np.testing.assert_allclose(ds.time.values, ref.time.values, atol=1e-9)
    assert ds.attrs["stimulus_set"] == ref.attrs["stimulus_set"]
    for key in ("dataset", "space", "units", "subject"):
        assert ds.attrs[key] == ref.attrs[key]
    out = things_eeg2_plan(sim.root, "sub-01").write(tmp_path / "e.zarr")
    xr.testing.assert_identical(open_store(out).load(), ds)


def test_eeg2_bad_input(tmp_path):
    w = write_things_eeg2(tmp_path / "eeg")
    p = w["dir"] / "preprocessed_eeg_test.npy"
    np.save(p, {"ch_names": EEG_CHANNELS, "times": w["times"]}, allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_test.npy: missing key\(s\) 'preprocessed_eeg_data'"):
        load_things_eeg2(w["root"], 1)
    np.save(p, {"preprocessed_eeg_data": np.zeros((3, 17, 7)), "ch_names": EEG_CHANNELS, "times": w["times"]}, allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_test.npy: 'preprocessed_eeg_data' has shape \(3, 17, 7\).*expected a float array of 4 dims"):
        load_things_eeg2(w["root"], 1)
    np.save(p, {"preprocessed_eeg_data": np.zeros((4, 2, 17, 7)), "ch_names": EEG_CHANNELS, "times": w["times"]}, allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_test.npy: 4 image conditions, but image_metadata.npy lists 3"):
        load_things_eeg2(w["root"], 1)
    np.save(p, {"preprocessed_eeg_data": np.zeros((3, 2, 16, 7)), "ch_names": EEG_CHANNELS, "times": w["times"]}, allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"has shape \(3, 2, 16, 7\), but 'ch_names' has 17"):
        load_things_eeg2(w["root"], 1)
    np.save(p, np.zeros(5))
    with pytest.raises(DataFormatError, match=r"preprocessed_eeg_test.npy: holds an array of shape \(5,\), expected a dict"):
        load_things_eeg2(w["root"], 1)
    with pytest.raises(FileNotFoundError, match=r"no folder for sub-02.*Subjects present: 'sub-01'"):
        load_things_eeg2(w["root"], 2)


def test_eeg2_published_shape_warning(tmp_path):
    from neuroalign.datasets import PublishedCountWarning

    w = write_things_eeg2(tmp_path / "eeg")
    with pytest.warns(PublishedCountWarning, match=r"preprocessed_eeg_training.npy: the data shape is \[6, 4, 17, 7\], but the published value for sub-01 is \[16540, 4, 17, 100\]"):
        load_things_eeg2(w["root"], 1)


def test_mne_epochs_split_files_and_positions(tmp_path):
    w = write_epochs(tmp_path / "meg" / "x-epo.fif", n_epochs=300, n_times=141, split_size="2MB")
    assert (tmp_path / "meg" / "x-epo-1.fif").exists()
    md = w["metadata"]
    ds = load_mne_epochs(w["path"], stimulus_column="image_path", stem=True, stimulus_prefix="things-",
                         split_column="trial_type", drop={"trial_type": ["catch"]},
                         session_column="session_nr", run_column="run_nr")
    check_store(ds)
    keep = np.flatnonzero(md.trial_type.to_numpy() != "catch")
    assert ds.sizes["presentation"] == len(keep)
    np.testing.assert_array_equal(ds.epoch.values, keep)
    np.testing.assert_allclose(ds.responses.values, w["data"][keep].astype(np.float32), rtol=1e-6)
    assert ds.stimulus_id.values[0] == "things-" + md.image_path[keep[0]].split("/")[-1][:-4]
    np.testing.assert_array_equal(ds.split.values == "test", md.trial_type.to_numpy()[keep] == "test")
    np.testing.assert_array_equal(ds.session.values, md.session_nr.to_numpy()[keep])
    np.testing.assert_allclose(np.c_[ds.sensor_x, ds.sensor_y, ds.sensor_z], w["locs"])
    np.testing.assert_array_equal(ds.sensor.values, w["names"])  # stim channel excluded
    assert ds.attrs["units"] == "T"
    # repetition: 0-based order of each stimulus's showings
    first = {}
    for sid, rep in zip(ds.stimulus_id.values, ds.repetition.values, strict=True):
        assert rep == first.get(sid, 0)
        first[sid] = rep + 1


def test_things_meg_with_sample_attributes(tmp_path):
    root = tmp_path / "ds004212"
    w = write_epochs(root / "derivatives/preprocessed/preprocessed_P2-epo.fif", metadata=False)
    (root / "sourcedata").mkdir()
    w["metadata"].to_csv(root / "sourcedata/sample_attributes_P2.csv", index=False)
    ds = load_things_meg(root, 2)
    keep = np.flatnonzero(w["metadata"].trial_type.to_numpy() != "catch")
    np.testing.assert_allclose(ds.responses.values, w["data"][keep].astype(np.float32), rtol=1e-6)
    assert ds.attrs["dataset"] == "things-meg" and ds.subject.values[0] == "P2"
    (root / "sourcedata/sample_attributes_P2.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"sample_attributes_P2.csv: no such file"):
        load_things_meg(root, 2)


def test_bids_events_keep_columns(tmp_path):
    p = tmp_path / "sub-BIGMEG1_ses-01_task-main_run-01_events.tsv"
    p.write_text(
        "onset\tduration\ttrial_type\tfile_path\tthings_image_nr\tRT\n"
        "1.0\t500\texp\timages_meg/dog/dog_12s.jpg\t42\tn/a\n"
        "2.5\t500\tcatch\timages_catch_meg/catch001.jpg\tn/a\t0.4\n"
    )
    df = read_bids_events(p)
    assert list(df.columns) == ["onset", "duration", "trial_type", "file_path", "things_image_nr", "RT"]
    assert np.isnan(df.RT[0]) and df.things_image_nr[0] == 42 and np.isnan(df.things_image_nr[1])
    # used as epochs metadata
    w = write_epochs(tmp_path / "e-epo.fif", n_epochs=2, metadata=False)
    ds = load_mne_epochs(w["path"], stimulus_column="file_path", metadata=p, stem=True,
                         drop={"trial_type": ["catch"]})
    assert ds.stimulus_id.values.tolist() == ["dog_12s"]
    bad = tmp_path / "bad_events.tsv"
    bad.write_text("time\tvalue\n1\t2\n")
    with pytest.raises(DataFormatError, match=r"bad_events.tsv: missing column\(s\) 'onset', 'duration'"):
        read_bids_events(bad)


def test_mne_bad_input(tmp_path):
    w = write_epochs(tmp_path / "e-epo.fif", n_epochs=5)
    with pytest.raises(DataFormatError, match=r"e-epo.fif: no column 'stim' for stimulus_column. Columns present: 'trial_type'"):
        load_mne_epochs(w["path"], stimulus_column="stim")
    with pytest.raises(DataFormatError, match=r"metadata: 3 rows, but e-epo.fif has 5 epochs"):
        load_mne_epochs(w["path"], stimulus_column="image_path", metadata=w["metadata"].iloc[:3])
    w2 = write_epochs(tmp_path / "n-epo.fif", n_epochs=5, metadata=False)
    with pytest.raises(DataFormatError, match=r"n-epo.fif: the epochs have no metadata"):
        load_mne_epochs(w2["path"], stimulus_column="image_path")
    corrupt = tmp_path / "c-epo.fif"
    corrupt.write_bytes(w["path"].read_bytes()[:500])
    with pytest.raises(DataFormatError, match=r"c-epo.fif: cannot be read as MNE epochs"):
        load_mne_epochs(corrupt, stimulus_column="image_path")
    with pytest.raises(FileNotFoundError, match=r"missing-epo.fif: no such file"):
        load_mne_epochs(tmp_path / "missing-epo.fif", stimulus_column="image_path")


def test_mne_mixed_units_recorded_per_sensor_and_said(tmp_path):
    """MEG in tesla and EEG in volts are never mixed silently: units 'mixed', a per-sensor
    unit coordinate, and a warning naming the counts."""
    import mne

    rng = np.random.default_rng(0)
    info = mne.create_info(["MEG0001", "MEG0002", "Fz", "Cz", "Pz"], 200.0,
                           ["mag", "mag", "eeg", "eeg", "eeg"])
    data = rng.standard_normal((12, 5, 7)) * np.array([1e-13, 1e-13, 1e-5, 1e-5, 1e-5])[:, None]
    md = pd.DataFrame({"image": [f"im{i % 4}" for i in range(12)]})
    path = tmp_path / "mixed-epo.fif"
    mne.EpochsArray(data, info, metadata=md, verbose="error").save(path, verbose="error")
    with pytest.warns(UserWarning, match=r"different units \('T', 'V': 2 in T, 3 in V\)"):
        ds = load_mne_epochs(path, stimulus_column="image")
    assert ds.attrs["units"] == "mixed"
    np.testing.assert_array_equal(ds.sensor_units.values, ["T", "T", "V", "V", "V"])
    np.testing.assert_allclose(ds.responses.values, data.astype(np.float32), rtol=1e-6)


def _mark_bad(path, bads):
    import mne

    ep = mne.read_epochs(path, preload=True, verbose="error")
    ep.info["bads"] = list(bads)
    ep.save(path, overwrite=True, verbose="error")


def test_bad_channels_are_left_out_as_from_epochs_does(tmp_path):
    """Channels in ``info['bads']`` used to enter the store as ordinary sensors (no flag),
    while from_epochs on the same file left them out: both now leave them out and give
    the same sensors, values and ids (so do THINGS-MEG and the streamed ingest)."""
    from neuroalign.datasets import mne_epochs_plan
    from neuroalign.store import from_epochs

    w = write_epochs(tmp_path / "derivatives/preprocessed/preprocessed_P1-epo.fif", n_epochs=20, n_ch=4)
    _mark_bad(w["path"], ["MEG0001"])
    good = ["MEG0000", "MEG0002", "MEG0003"]
    ds = load_mne_epochs(w["path"], stimulus_column="image_path")
    ref = from_epochs(w["path"], "image_path")
    assert ds.sensor.values.tolist() == good == ref.sensor.values.tolist()
    np.testing.assert_array_equal(ds.responses.values, ref.responses.values)
    np.testing.assert_array_equal(ds.stimulus_id.values, ref.stimulus_id.values)
    np.testing.assert_allclose(ds.responses.values, w["data"][:, [0, 2, 3]].astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(np.c_[ds.sensor_x, ds.sensor_y, ds.sensor_z], w["locs"][[0, 2, 3]])
    assert load_things_meg(tmp_path, 1).sensor.values.tolist() == good
    out = mne_epochs_plan(w["path"], stimulus_column="image_path").write(tmp_path / "e.zarr")
    assert open_store(out).sensor.values.tolist() == good
    _mark_bad(w["path"], ["MEG0000", "MEG0001", "MEG0002", "MEG0003"])
    with pytest.raises(DataFormatError, match=r"preprocessed_P1-epo.fif: no MEG/EEG data channels but "
                       r"the bad ones \('MEG0000', 'MEG0001', 'MEG0002', 'MEG0003'"):
        load_mne_epochs(w["path"], stimulus_column="image_path")


def _ids_fixture(tmp_path):
    """Epochs whose metadata hold an integer column with n/a on catch rows, zero-padded
    codes and stimuli literally named 'NA', 'null' and 'None'; the same table as a CSV and
    as a BIDS events.tsv (missing values written 'n/a')."""
    import mne

    w = write_epochs(tmp_path / "x-epo.fif", n_epochs=12, n_ch=3)
    md = w["metadata"].copy()
    md["things_image_nr"] = md["things_image_nr"].astype(float)
    md.loc[md.trial_type == "catch", "things_image_nr"] = np.nan  # catch: n/a, as in events.tsv
    md["code"] = [f"{i:04d}" for i in range(12)]
    md["name"] = ["NA", "null", "None"] + [f"img{i}" for i in range(3, 12)]
    ep = mne.read_epochs(w["path"], preload=True, verbose="error")
    ep.metadata = md
    ep.save(w["path"], overwrite=True, verbose="error")
    as_written = md.assign(things_image_nr=md.things_image_nr.astype("Int64"))  # 11, not 11.0
    as_written.to_csv(tmp_path / "md.csv", index=False)  # n/a: an empty cell
    as_written.assign(onset=np.arange(12) * 1.5, duration=0.5).to_csv(
        tmp_path / "events.tsv", sep="\t", index=False, na_rep="n/a")
    return w["path"], md


def test_stimulus_ids_are_read_as_from_epochs_and_from_nifti_read_them(tmp_path):
    """Ids were made with str(v): an integer column with n/a on catch rows gave '11.0'
    (from_epochs: '11'); metadata files were read with pandas' default missing values and
    no text type, so '0001' became '1' and a stimulus named 'NA', 'null' or 'None' was
    dropped as missing. Now the ids are made as from_epochs / from_nifti make them."""
    from neuroalign.store import from_epochs

    path, md = _ids_fixture(tmp_path)
    catch = md.trial_type.to_numpy() == "catch"
    expect = [str(int(v)) for v in md.things_image_nr[~catch]]
    ds = load_mne_epochs(path, stimulus_column="things_image_nr")
    assert ds.stimulus_id.values.tolist() == expect
    assert ds.stimulus_id.values.tolist() == from_epochs(path, "things_image_nr").stimulus_id.values.tolist()
    assert ds.things_image_nr.values.tolist() == expect
    np.testing.assert_array_equal(ds.epoch.values, np.flatnonzero(~catch))
    for meta in (None, tmp_path / "md.csv", tmp_path / "events.tsv"):
        kw = {} if meta is None else {"metadata": meta}
        assert load_mne_epochs(path, stimulus_column="code", **kw).stimulus_id.values.tolist() == list(md.code), meta
        names = load_mne_epochs(path, stimulus_column="name", **kw).stimulus_id.values.tolist()
        assert names == list(md.name), meta  # 'NA', 'null', 'None' kept
        ids = load_mne_epochs(path, stimulus_column="things_image_nr", **kw).stimulus_id.values.tolist()
        assert ids == expect, meta  # n/a rows left out, the others '11', not '11.0'
    # numbers that are not whole are refused, as from_epochs refuses them (a file's text is text)
    with pytest.raises(DataFormatError, match=r"^metadata: Invalid value for 'frac' in load_mne_epochs\(\): "
                       r"0.5, a non-integer number"):
        load_mne_epochs(path, stimulus_column="frac", metadata=md.assign(frac=np.linspace(0.5, 6.0, 12)))


def test_things_meg_units_are_baseline_z_scores(tmp_path):
    """The published THINGS-MEG epochs are z-scored per channel against the baseline
    (THINGS-data MEG/step1_preprocessing.py: mne.baseline.rescale(mode='zscore')), so the
    values are unitless although the FIFF channels still say tesla; the store said 'T'.
    A generic MNE file keeps its FIFF units."""
    import mne

    w = write_epochs(tmp_path / "derivatives/preprocessed/preprocessed_P1-epo.fif", n_epochs=20, n_ch=4)
    ep = mne.read_epochs(w["path"], preload=True, verbose="error")
    z = mne.baseline.rescale(ep.get_data(), ep.times, baseline=(None, 0), mode="zscore", copy=True,
                             verbose="error")
    mne.EpochsArray(z, ep.info, ep.events, ep.tmin, metadata=ep.metadata, verbose="error").save(
        w["path"], overwrite=True, verbose="error")
    ds = load_things_meg(tmp_path, 1)
    assert ds.attrs["units"] == "z-score (per channel, against the baseline)"
    assert 0.1 < float(np.median(np.abs(ds.responses.values))) < 10  # unitless, ~N(0, 1)
    assert "sensor_units" not in ds.coords
    from neuroalign.datasets import things_meg_plan

    out = things_meg_plan(tmp_path, 1).write(tmp_path / "m.zarr")  # what `ingest things-meg` writes
    assert open_store(out).attrs["units"] == ds.attrs["units"]
    assert load_mne_epochs(w["path"], stimulus_column="image_path").attrs["units"] == "T"
