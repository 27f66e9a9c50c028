"""Feature cache: hits run no forward pass, killed runs resume, mismatches raise."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from neuroalign.datasets.simulate import build_network
from neuroalign.exceptions import CacheMismatchError, DataFormatError, OutputExistsError
from neuroalign.features import ImageTransform
from neuroalign.features import extract as _extract
from neuroalign.features._extract import RULES
from neuroalign.stimuli import StimulusSet

LAYERS = ["layer1", "layer3"]
SMALL = ImageTransform(size=64, name="small")


def extract(*args, **kwargs):
    kwargs.setdefault("transform", SMALL)
    return _extract(*args, **kwargs)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 255, (10, 24, 24, 3), dtype=np.uint8)


@pytest.fixture
def net():
    return build_network("resnet18", 0)


def _counting(net):
    calls = []
    net.register_forward_pre_hook(lambda mod, inp: calls.append(inp[0].shape[0]))
    return calls


class _Killed(RuntimeError):
    pass


def _dying_set(images, die_at: int | None):
    """A stimulus set whose loader fails when it reaches position ``die_at`` (a killed run)."""
    base = StimulusSet.from_arrays(images)

    def loader(idx):
        if die_at is not None and max(idx) >= die_at:
            raise _Killed("killed")
        return base.load(idx)

    return StimulusSet(base.ids, modality="image", loader=loader,
                       fingerprint={"arrays": base.content_hash()})


def test_cache_hit_runs_no_forward(tmp_path, images, net):
    stim = StimulusSet.from_arrays(images)
    calls = _counting(net)
    first = extract(net, stim, layers=LAYERS, batch_size=4, cache=tmp_path / "f.zarr", device="cpu")
    assert calls == [4, 4, 2]
    again = extract(net, stim, layers=LAYERS, batch_size=4, cache=tmp_path / "f.zarr", device="cpu")
    assert calls == [4, 4, 2]  # no forward at all on a hit
    xr.testing.assert_identical(first.load(), again.load())
    plain = extract(net, stim, layers=LAYERS, batch_size=4, device="cpu", channels_last=False)
    np.testing.assert_allclose(first["layer3"].values, plain["layer3"].values, atol=1e-5)
    # channels-last CPU extraction leaves the user's module in its own memory format
    assert net.conv1.weight.is_contiguous()
    assert list(first["stimulus_id"].values) == stim.ids
    assert first.attrs["stimulus_set_hash"] == stim.content_hash()
    assert "cache_key" in first.attrs


def test_killed_run_resumes_without_recomputing(tmp_path, images, net):
    cache = tmp_path / "f.zarr"
    calls = _counting(net)
    with pytest.raises(_Killed):
        extract(net, _dying_set(images, die_at=8), layers=LAYERS, batch_size=4, cache=cache,
                device="cpu")
    assert calls == [4, 4]
    assert not cache.exists()  # nothing that opens as complete
    calls.clear()
    done = extract(net, _dying_set(images, None), layers=LAYERS, batch_size=4, cache=cache,
                   device="cpu")
    assert calls == [2]  # only the batch that was not written
    ref = extract(net, StimulusSet.from_arrays(images), layers=LAYERS, batch_size=4, device="cpu")
    np.testing.assert_allclose(done["layer1"].values, ref["layer1"].values, atol=1e-6)
    np.testing.assert_allclose(done["layer3"].values, ref["layer3"].values, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".f.zarr")] == [".f.zarr.lock"]


def test_mismatched_cache_raises_and_names_field(tmp_path, images, net):
    stim = StimulusSet.from_arrays(images)
    cache = tmp_path / "f.zarr"
    extract(net, stim, layers=LAYERS, batch_size=4, cache=cache, device="cpu")
    with pytest.raises(CacheMismatchError, match="layers: cached \\['layer1', 'layer3'\\], requested \\['layer2'\\]"):
        extract(net, stim, layers=["layer2"], batch_size=4, cache=cache, device="cpu")
    other = StimulusSet.from_arrays(images[::-1].copy())
    with pytest.raises(CacheMismatchError, match="the cache was written for other settings.*stimuli"):
        extract(net, other, layers=LAYERS, batch_size=4, cache=cache, device="cpu")
    new = extract(net, stim, layers=["layer2"], batch_size=4, cache=cache, device="cpu",
                  overwrite=True)
    assert list(new.data_vars) == ["layer2"]


def test_cache_written_under_earlier_rules_is_not_a_hit(tmp_path, images, net):
    # caches written before the extraction rules of their key (a reused module's first
    # call, torchvision ViTs without their class token, shortest-side resizes rounded) hold
    # other features for the same settings: such a cache is never returned
    import json

    from neuroalign.features._cache import cache_key

    stim = StimulusSet.from_arrays(images)
    cache = tmp_path / "f.zarr"
    first = extract(net, stim, layers=["layer1.0.relu"], batch_size=4, cache=cache, device="cpu")
    fields = json.loads(first.attrs["cache_fields"])
    assert fields["rules"] == RULES
    attrs_file = cache / ".zattrs"
    attrs = json.loads(attrs_file.read_text())
    del fields["rules"]  # the key as written before the rules were part of it
    attrs["cache_fields"], attrs["cache_key"] = json.dumps(fields), cache_key(fields)
    attrs_file.write_text(json.dumps(attrs))
    with pytest.raises(CacheMismatchError, match=f"rules: cached None, requested {RULES}"):
        extract(net, stim, layers=["layer1.0.relu"], batch_size=4, cache=cache, device="cpu")
    new = extract(net, stim, layers=["layer1.0.relu"], batch_size=4, cache=cache, device="cpu",
                  overwrite=True)
    np.testing.assert_allclose(new["layer1.0.relu"].values, first["layer1.0.relu"].values)
    # stop_early is not in the key: the features do not depend on it
    calls = _counting(net)
    again = extract(net, stim, layers=["layer1.0.relu"], batch_size=4, cache=cache, device="cpu",
                    stop_early=False)
    assert calls == []
    np.testing.assert_array_equal(again["layer1.0.relu"].values, new["layer1.0.relu"].values)


def test_mismatched_interrupted_run_raises(tmp_path, images, net):
    cache = tmp_path / "f.zarr"
    with pytest.raises(_Killed):
        extract(net, _dying_set(images, 4), layers=LAYERS, batch_size=4, cache=cache, device="cpu")
    with pytest.raises(CacheMismatchError, match="an interrupted extraction was written for other settings.*pooling"):
        extract(net, _dying_set(images, None), layers=LAYERS, batch_size=4, cache=cache,
                pooling=None, device="cpu")


def test_cache_path_that_is_not_a_cache(tmp_path, images, net):
    stim = StimulusSet.from_arrays(images)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_bytes(b"precious")
    afile = tmp_path / "f.txt"
    afile.write_bytes(b"mine too")
    for target in (user, afile):
        for overwrite in (False, True):
            with pytest.raises(OutputExistsError, match="neuroalign did not write|not a folder neuroalign wrote"):
                extract(net, stim, layers=LAYERS, cache=target, overwrite=overwrite, device="cpu")
    assert [p.name for p in user.iterdir()] == ["notes.txt"]
    assert (user / "notes.txt").read_bytes() == b"precious" and afile.read_bytes() == b"mine too"
    # a cache of neuroalign's that lost its completion marker: named, replaced on overwrite
    extract(net, stim, layers=LAYERS, cache=tmp_path / "f.zarr", device="cpu")
    (tmp_path / "f.zarr" / ".neuroalign-complete").unlink()
    with pytest.raises(DataFormatError, match="not a complete neuroalign feature cache"):
        extract(net, stim, layers=LAYERS, cache=tmp_path / "f.zarr", device="cpu")
    extract(net, stim, layers=LAYERS, cache=tmp_path / "f.zarr", device="cpu", overwrite=True)
    # an empty folder holds nothing to lose: it becomes the cache
    (tmp_path / "empty.zarr").mkdir()
    extract(net, stim, layers=LAYERS, cache=tmp_path / "empty.zarr", device="cpu")
    assert (tmp_path / "empty.zarr" / ".neuroalign-complete").is_file()


def test_float16_storage_and_token_level_cache(tmp_path, images, net):
    stim = StimulusSet.from_arrays(images)
    f = extract(net, stim, layers=["layer4"], pooling=None, dtype="float16", batch_size=3,
                cache=tmp_path / "t.zarr", device="cpu")
    assert f["layer4"].dtype == np.float16 and f["layer4"].shape == (10, 4, 512)
    assert f["layer4"].attrs["token_grid"] == [2, 2]
    ref = extract(net, stim, layers=["layer4"], pooling=None, device="cpu")
    np.testing.assert_allclose(f["layer4"].values.astype(np.float32), ref["layer4"].values, rtol=2e-3, atol=2e-3)
    with pytest.raises(ValueError, match="Invalid value for 'dtype' in extract\\(\\): 'int8'"):
        extract(net, stim, layers=["layer4"], dtype="int8")


def test_resume_keeps_the_batch_size_on_disk(tmp_path, images, net):
    cache = tmp_path / "f.zarr"
    calls = _counting(net)
    with pytest.raises(_Killed):
        extract(net, _dying_set(images, die_at=4), layers=["layer1"], batch_size=4, cache=cache,
                device="cpu")
    calls.clear()
    done = extract(net, _dying_set(images, None), layers=["layer1"], batch_size=3, cache=cache,
                   device="cpu")
    assert calls == [4, 2]  # the chunks on disk decide the batches
    ref = extract(net, StimulusSet.from_arrays(images), layers=["layer1"], device="cpu")
    np.testing.assert_allclose(done["layer1"].values, ref["layer1"].values, atol=1e-5)


def test_empty_stimulus_set(net):
    with pytest.raises(ValueError, match="an empty stimulus set"):
        extract(net, StimulusSet.from_texts({}), layers=["layer1"])


_CHILD = """
import sys, time
import numpy as np
from neuroalign.datasets.simulate import build_network
from neuroalign.features import ImageTransform, extract
from neuroalign.stimuli import StimulusSet

images = np.random.default_rng(0).integers(0, 255, (10, 24, 24, 3), dtype=np.uint8)
base = StimulusSet.from_arrays(images)

def loader(idx):
    if min(idx) >= 4:
        time.sleep(600)  # killed here, after two batches are on disk
    return base.load(idx)

stim = StimulusSet(base.ids, modality="image", loader=loader,
                   fingerprint={"arrays": base.content_hash()})
extract(build_network("resnet18", 0), stim, layers=["layer1", "layer3"], batch_size=2,
        cache=sys.argv[1], transform=ImageTransform(size=64, name="small"), device="cpu")
"""


@pytest.mark.slow
def test_sigkilled_process_resumes(tmp_path, images, net):
    import json
    import signal
    import subprocess
    import sys
    import time

    cache = tmp_path / "f.zarr"
    state = tmp_path / ".f.zarr.partial-state.json"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(cache)], cwd=str(tmp_path),
                            env={**__import__("os").environ,
                                 "PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])})
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if state.exists() and len(json.loads(state.read_text())["done"]) == 2:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the child never wrote two batches")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not cache.exists()
    calls = _counting(net)
    done = extract(net, _dying_set(images, None), layers=["layer1", "layer3"],
                   batch_size=2, cache=cache, device="cpu")
    assert calls == [2, 2, 2]  # batches 0 and 2 came from the killed run
    ref = extract(net, StimulusSet.from_arrays(images), layers=["layer1", "layer3"], device="cpu")
    np.testing.assert_allclose(done["layer3"].values, ref["layer3"].values, atol=1e-5)


def test_a_feature_model_changed_after_a_cached_run_is_not_a_hit(tmp_path, images):
    """A FeatureModel passed as is was keyed by its name and weights label only: its
    weights edited in place, or its class-token count changed, returned the stale cache."""
    import torch

    from neuroalign.features import load_model

    stim = StimulusSet.from_arrays(images)
    fm = load_model("torchvision:resnet18", weights=None, seed=0, transform=SMALL)
    cache = tmp_path / "c.zarr"
    first = extract(fm, stim, layers=LAYERS, cache=cache)
    np.testing.assert_array_equal(extract(fm, stim, layers=LAYERS, cache=cache)["layer3"].values,
                                  first["layer3"].values)  # unchanged: a hit
    with torch.no_grad():
        fm.module.layer1[0].conv1.weight.mul_(2.0)
    with pytest.raises(CacheMismatchError, match="values"):
        extract(fm, stim, layers=LAYERS, cache=cache)
    fresh = extract(fm, stim, layers=LAYERS, cache=cache, overwrite=True)
    assert not np.allclose(fresh["layer3"].values, first["layer3"].values)
    fm.n_prefix_tokens = 1
    with pytest.raises(CacheMismatchError, match="tokens"):
        extract(fm, stim, layers=LAYERS, cache=cache)


def test_the_stimuli_are_hashed_once_per_extraction(tmp_path, images, net, monkeypatch):
    """content_hash() reads the stimuli's content (a file set's every byte): extract() keys
    its cache and labels its output with one hash, not two."""
    calls = []
    real = StimulusSet.content_hash
    monkeypatch.setattr(StimulusSet, "content_hash", lambda self: calls.append(1) or real(self))
    stim = StimulusSet.from_arrays(images)
    out = extract(net, stim, layers=LAYERS, cache=tmp_path / "c.zarr")
    assert len(calls) == 1 and out.attrs["stimulus_set_hash"] == real(stim)
    extract(net, stim, layers=LAYERS)
    assert len(calls) == 2
