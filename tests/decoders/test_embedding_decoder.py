"""EmbeddingDecoder on the simulated brain: retrieval of held-out stimuli above chance."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from neuroalign.decoders import EmbeddingDecoder, retrieve
from neuroalign.exceptions import DimensionError, NotFittedError, StimulusMismatchError


@pytest.fixture(scope="module")
def sim_features(sim_nsd):
    """Target embeddings: pooled layers of the ground-truth network (a features Dataset)."""
    from neuroalign.datasets.simulate import build_network
    from neuroalign.decoders import PooledFeatureExtractor, store_images

    avg = sim_nsd.store().load().na.average_repetitions()
    ext = PooledFeatureExtractor(build_network("resnet18", sim_nsd.truth["model"]["seed"]),
                                 ["layer2", "layer4"], input_size=112)
    feats = ext.extract(store_images(avg))
    ids = avg.coords["stimulus_id"].values
    return xr.Dataset(
        {"pooled": (("stimulus", "pooled_unit"), feats),
         "tokens": (("stimulus", "token", "tok_unit"), feats[:, :128].reshape(-1, 4, 32))},
        coords={"stimulus_id": ("stimulus", ids)},
    )


def test_ridge_decoder_retrieves_held_out_stimuli(sim_nsd, sim_features):
    store = sim_nsd.store().load()
    train, test = store.na.split("train"), store.na.split("test")
    dec = EmbeddingDecoder("ridge", target="pooled").fit(train, sim_features)
    assert dec.alpha_ in dec.alphas
    res = dec.score(test, sim_features)
    n_test = len(np.unique(test.stimulus_id.values))
    assert res["n_way"] == n_test and res["chance"] == pytest.approx(1 / n_test)
    assert res["forward"] > 4 * res["chance"] and res["backward"] > 4 * res["chance"]
    pred = dec.predict(test.na.average_repetitions())
    assert pred.dims == ("stimulus", "pooled_unit")
    np.testing.assert_array_equal(pred.stimulus_id.values, test.na.average_repetitions().stimulus_id.values)


def test_token_targets_keep_their_shape(sim_nsd, sim_features):
    store = sim_nsd.store().load()
    dec = EmbeddingDecoder("ridge", target="tokens", alphas=(100.0,)).fit(store.na.split("train"), sim_features)
    pred = dec.predict(store.na.split("test").na.average_repetitions())
    assert pred.dims == ("stimulus", "token", "tok_unit") and pred.shape[1:] == (4, 32)


def test_mlp_decoder_infonce_retrieves_above_chance(sim_nsd, sim_features):
    store = sim_nsd.store().load()
    train, test = store.na.split("train"), store.na.split("test")
    dec = EmbeddingDecoder("mlp", target="pooled", hidden=64, epochs=60, batch_size=32, lr=3e-3,
                           average=True, random_state=0).fit(train, sim_features)
    assert dec.loss_curve_[-1] < dec.loss_curve_[0]
    res = dec.score(test, sim_features)
    assert res["forward"] > 3 * res["chance"]


@pytest.mark.slow
def test_eeg_window_decoder(sim_eeg):
    store = sim_eeg.store().load()
    avg = store.na.average_repetitions()
    rng = np.random.default_rng(0)
    # a target that the brain encodes: the responses themselves at 0.1-0.2 s, projected
    t = avg.time.values
    sel = (t >= 0.05) & (t <= 0.3)
    base = avg.responses.transpose("stimulus", "neuroid", "time").values[:, :, sel].reshape(len(avg.stimulus), -1)
    target = xr.DataArray(base @ rng.normal(size=(base.shape[1], 16)), dims=("stimulus", "emb"),
                          coords={"stimulus_id": ("stimulus", avg.stimulus_id.values)})
    dec = EmbeddingDecoder("ridge", window=(0.05, 0.3)).fit(store.na.split("train"), target)
    res = dec.score(store.na.split("test"), target)
    assert res["forward"] > 3 * res["chance"]
    with pytest.raises(DimensionError, match=r"Invalid value for 'window': \(5.0, 6.0\)"):
        EmbeddingDecoder("ridge", window=(5.0, 6.0)).fit(store, target)


def test_retrieve_ranks_by_cosine():
    cands = np.array([[1.0, 0], [0, 1], [1, 1]])
    idx = retrieve(np.array([[0.1, 2.0], [3.0, 0.2]]), cands, k=2)
    np.testing.assert_array_equal(idx, [[1, 2], [0, 2]])
    with pytest.raises(DimensionError, match="retrieve\\(\\): predicted embeddings have 3 values"):
        retrieve(np.zeros((1, 3)), cands)


def test_decoder_errors(sim_nsd, sim_features):
    store = sim_nsd.store().load()
    with pytest.raises(ValueError, match="Invalid value for 'kind' in EmbeddingDecoder"):
        EmbeddingDecoder("svm").fit(store, sim_features)
    with pytest.raises(ValueError, match="The target features hold 2 variables"):
        EmbeddingDecoder().fit(store, sim_features)
    with pytest.raises(KeyError, match="Invalid value for 'target' in EmbeddingDecoder: 'clip'"):
        EmbeddingDecoder(target="clip").fit(store, sim_features)
    with pytest.raises(ValueError, match="Invalid value for 'alphas' in EmbeddingDecoder"):
        EmbeddingDecoder(target="pooled", alphas=(-1.0,)).fit(store, sim_features)
    with pytest.raises(StimulusMismatchError, match="stimuli of the store are missing from the target embeddings"):
        EmbeddingDecoder(target="pooled").fit(store, sim_features.isel(stimulus=slice(0, 10)))
    with pytest.raises(DimensionError, match="'features' must be a features Dataset or a DataArray"):
        EmbeddingDecoder().fit(store, np.zeros((3, 3)))
    with pytest.raises(DimensionError, match="the target has no 'stimulus_id' coordinate"):
        EmbeddingDecoder().fit(store, xr.DataArray(np.zeros((3, 2)), dims=("stimulus", "u")))
    with pytest.raises(NotFittedError, match="This EmbeddingDecoder is not fitted yet"):
        EmbeddingDecoder().predict(store)
    dec = EmbeddingDecoder(target="pooled", alphas=(1.0,)).fit(store, sim_features)
    with pytest.raises(DimensionError, match="The store gives 10 brain features per sample"):
        dec.predict(store.isel(neuroid=slice(0, 10)))


def test_store_images_errors_and_hdf5(sim_nsd):
    from neuroalign.decoders import store_images
    from neuroalign.exceptions import DataFormatError

    avg = sim_nsd.store().load().na.average_repetitions()
    imgs = store_images(avg.isel(stimulus=slice(0, 3)))
    assert imgs.shape == (3, 96, 96, 3) and imgs.dtype == np.uint8
    # one image per row, in the rows' order (repeated and permuted rows included)
    rows = avg.isel(stimulus=[2, 0, 2, 1])
    np.testing.assert_array_equal(store_images(rows), imgs[[2, 0, 2, 1]])
    trial = sim_nsd.store().load().isel(presentation=slice(0, 12))
    first = {s: i for i, s in reversed(list(enumerate(avg["stimulus_id"].values)))}
    want = store_images(avg.isel(stimulus=[first[s] for s in trial["stimulus_id"].values]))
    np.testing.assert_array_equal(store_images(trial), want)
    with pytest.raises(DataFormatError, match="store attribute 'stimulus_set' is None; expected a dict"):
        store_images(avg.assign_attrs(stimulus_set=None))
    with pytest.raises(DataFormatError, match="'stimulus_set' has kind 'zip'; expected 'hdf5-brick' or"):
        store_images(avg.assign_attrs(stimulus_set={"kind": "zip"}))


@pytest.mark.slow
def test_store_images_from_image_files(sim_eeg):
    from neuroalign.decoders import store_images

    avg = sim_eeg.store().load().na.average_repetitions()
    imgs = store_images(avg.isel(stimulus=slice(0, 2)))
    assert imgs.ndim == 4 and imgs.shape[0] == 2 and imgs.shape[-1] == 3


def test_fit_store_image_count_error(sim_nsd):
    import torch

    from neuroalign.decoders import DifferentiableRidgeEncoder

    with pytest.raises(DimensionError, match="fit_store\\(\\): 'images' holds 2 images"):
        DifferentiableRidgeEncoder.fit_store(torch.nn.Identity(), sim_nsd.store().load(),
                                             images=np.zeros((2, 8, 8, 3), np.uint8))
