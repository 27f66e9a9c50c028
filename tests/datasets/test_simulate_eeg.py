"""The simulated THINGS-EEG2 tree matches the published format (the card datasets/things-eeg2.toml)."""

import numpy as np
from PIL import Image

from neuroalign.datasets.simulate import CHANNELS, SENSOR_GROUPS


def _load(p):
    obj = np.load(p, allow_pickle=True)
    return obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj


def test_preprocessed_files(sim_eeg):
    d = sim_eeg.truth["design"]
    root = sim_eeg.root / "preprocessed_data" / "sub-01"
    train = _load(root / "preprocessed_eeg_training.npy")
    test = _load(root / "preprocessed_eeg_test.npy")
    assert set(train) == {"preprocessed_eeg_data", "ch_names", "times"}
    assert train["preprocessed_eeg_data"].dtype == np.float64
    assert train["preprocessed_eeg_data"].shape == (d["n_train"], 4, 17, 100)
    assert test["preprocessed_eeg_data"].shape == (d["n_test"], d["n_test_repetitions"], 17, 100)
    assert list(train["ch_names"]) == CHANNELS == ["Pz", "P3", "P7", "O1", "Oz", "O2", "P4", "P8", "P1",
                                                 "P5", "PO7", "PO3", "POz", "PO4", "PO8", "P6", "P2"]
    t = np.round(train["times"], 2)
    assert t.shape == (100,) and t[0] == -0.2 and t[-1] == 0.79


def test_image_metadata_and_files(sim_eeg):
    meta = _load(sim_eeg.root / "image_set" / "image_metadata.npy")
    assert {"train_img_files", "train_img_concepts", "train_img_concepts_THINGS", "test_img_files",
            "test_img_concepts", "test_img_concepts_THINGS"} <= set(meta)
    f, c = meta["train_img_files"][0], meta["train_img_concepts"][0]
    assert c.startswith("00001_") and f.endswith("b.jpg")
    assert meta["test_img_files"][0].endswith("s.jpg")
    img = Image.open(sim_eeg.root / "image_set" / "training_images" / c / f)
    assert img.format == "JPEG" and img.mode == "RGB"


def test_store_matches_files_and_latencies(sim_eeg):
    store = sim_eeg.store().load()
    train = _load(sim_eeg.root / "preprocessed_data" / "sub-01" / "preprocessed_eeg_training.npy")
    data = train["preprocessed_eeg_data"]
    n, r = data.shape[:2]
    np.testing.assert_array_equal(store.responses.values[: n * r], data.reshape(n * r, 17, 100).astype(np.float32))
    meta = _load(sim_eeg.root / "image_set" / "image_metadata.npy")
    assert store.stimulus_id.values[0] == "things-" + meta["train_img_files"][0][:-4]
    assert list(store.sensor.values) == CHANNELS
    # each sensor group peaks at its own latency in the averaged evoked signal variance
    av = store.na.average_repetitions()
    times = store.time.values
    for group, g in SENSOR_GROUPS.items():
        var_t = av.na.roi(group).responses.var("stimulus").mean("neuroid").values
        assert abs(times[np.argmax(var_t)] - g["latency"]) <= 0.03
    # split-half noise ceiling peaks where the signal is
    nc = store.na.noise_ceiling(split=None)
    occ = nc.sel(neuroid=store["roi_occipital"].values).mean("neuroid")
    peak = float(occ.sel(time=0.1, method="nearest"))
    base = float(occ.sel(time=slice(-0.2, 0.0)).mean())
    # before stimulus onset there is only noise: a split-half r over n = 60 images, clipped
    # at 0 and Spearman-Brown corrected, averages ~100 * 0.8 / sqrt(60) = 10 % (6-11 % over
    # seeds 0-15); the signal window is far above it (63-90 %)
    assert peak > 30 and base < 20 and peak > 3 * base, (peak, base)
