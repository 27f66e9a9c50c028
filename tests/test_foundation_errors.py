"""Error messages of the foundation that the other test modules do not already pin."""

import numpy as np
import pytest

from neuroalign._config import resolve_device
from neuroalign.datasets import simulate
from neuroalign.datasets.simulate import ROISpec, build_network, pooled_activations
from neuroalign.exceptions import DimensionError, StimulusMismatchError
from neuroalign.store import repetition_counts
from neuroalign.testing import make_store


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in {"cpu", "cuda"}
    with pytest.raises(ValueError, match=r"Invalid value for 'device': 'tpu'. Expected 'auto', 'cpu', 'cuda'"):
        resolve_device("tpu")


def test_repetition_counts_needs_n_repetitions():
    av = make_store(6, 2).na.average_repetitions()
    assert list(repetition_counts(av, None)) == [3] * 6
    with pytest.raises(DimensionError, match="no 'n_repetitions' coordinate; pass n= explicitly"):
        repetition_counts(av.drop_vars("n_repetitions"), None)


def test_stimulus_mismatch_error_is_a_readable_key_error():
    err = StimulusMismatchError("Stimuli missing from features: 'nsd-00001'.")
    assert isinstance(err, KeyError)
    assert str(err) == "Stimuli missing from features: 'nsd-00001'."


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ncsnr_range": (0.0, 1.0)}, r"Invalid value for 'ncsnr_range' in simulate\(\): \(0.0, 1.0\)"),
        ({"withhold_sessions": 3, "n_sessions": 3}, r"'withhold_sessions' in simulate\(\): 3. Expected 0 <= withhold_sessions < n_sessions=3"),
        ({"n_images": 2}, r"Invalid value for 'n_images' in simulate\(\): 2. Expected an integer >= 4"),
        ({"volume_shape": (6, 6, 6)}, r"Volume \(6, 6, 6\) has \d+ nsdgeneral voxels in lh, fewer than the 120"),
        ({"rois": (ROISpec("V1v", "prf-visualrois", "fc9"),)}, r"Unknown layer\(s\) \['fc9'\] of the ground-truth network"),
        ({"rois": (ROISpec("V1v", "prf-visualrois", "layer1", units=(3, 64)),)}, r"ROI 'V1v': units \[3, 64\] out of range for layer 'layer1' with 64 channels"),
    ],
)
def test_simulate_argument_errors(tmp_path, kwargs, message):
    base = dict(n_images=30, n_test=6, n_sessions=3)
    with pytest.raises(ValueError, match=message):
        simulate(tmp_path / "x", **{**base, **kwargs})
    assert not (tmp_path / "x").exists()


def test_ground_truth_brain_unknown_roi(sim_nsd):
    brain = sim_nsd.brain()
    with pytest.raises(KeyError, match=r"Unknown ROI 'LOC'. Simulated ROIs: \['FFA-1', 'PPA', 'V1v', 'hV4'\]"):
        brain.roi_response(np.zeros((1, 8, 8, 3), np.uint8), "LOC")


def test_named_units_drive_an_roi(tmp_path):
    sim = simulate(tmp_path / "u", n_images=30, n_test=6, n_sessions=3,
                   rois=(ROISpec("FFA-1", "floc-faces", "layer4", n_voxels=5, units=(7, 42)),),
                   volume_shape=(12, 14, 12))
    driven = [n for n in sim.truth["neuroids"] if n["roi"] == "FFA-1"]
    assert len(driven) == 10 and all(n["channels"] == [7, 42] for n in driven)


def test_pooled_activations_shapes():
    net = build_network("resnet18", 0)
    acts = pooled_activations(net, np.zeros((2, 32, 32, 3), np.uint8), ["layer1", "layer4"])
    assert acts["layer1"].shape == (2, 64) and acts["layer4"].shape == (2, 512)
