"""Concept labels and image rankings recover a planted concept direction."""

import numpy as np
import pytest
import xarray as xr

from neuroalign.exceptions import DimensionError
from neuroalign.mapping import concept_labels, rank_images, roi_concept_labels

CONCEPTS = ["face", "house", "car", "dog", "tree", "word", "food", "body"]


def space(seed=0, dim=32):
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((len(CONCEPTS), dim))
    text = xr.DataArray(text, dims=("concept", "embed"), coords={"concept": CONCEPTS})
    # voxels 0-9 ("FFA") weight along "face", 10-19 ("PPA") along "house", plus noise
    w = np.zeros((20, dim))
    w[:10] = 3 * text.sel(concept="face").values
    w[10:] = 3 * text.sel(concept="house").values
    w += rng.standard_normal(w.shape)
    weights = xr.DataArray(
        w, dims=("neuroid", "embed"),
        coords={"neuroid_id": ("neuroid", [f"v{i}" for i in range(20)]),
                "roi_FFA": ("neuroid", np.arange(20) < 10), "roi_PPA": ("neuroid", np.arange(20) >= 10)},
    )
    return weights, text


def test_top_concept_per_voxel_and_roi():
    weights, text = space()
    lab = concept_labels(weights, text, top=3)
    assert lab["top_concept"].dims == ("neuroid", "rank") and lab.sizes["rank"] == 3
    assert (lab["top_concept"].values[:10, 0] == "face").all()
    assert (lab["top_concept"].values[10:, 0] == "house").all()
    assert np.all(np.diff(lab["top_similarity"].values, axis=1) <= 0)
    assert np.abs(lab["similarity"].values).max() <= 1 + 1e-12
    roi = roi_concept_labels(lab)
    assert roi["top_concept"].sel(roi="FFA").values[0] == "face"
    assert roi["top_concept"].sel(roi="PPA").values[0] == "house"


def test_rank_images_by_predicted_response():
    weights, text = space()
    rng = np.random.default_rng(1)
    imgs = rng.standard_normal((30, 32)) * 0.3
    imgs[7] += text.sel(concept="face").values  # a face image
    imgs[21] += text.sel(concept="house").values  # a house image
    feats = xr.DataArray(imgs, dims=("stimulus", "embed"),
                         coords={"stimulus_id": ("stimulus", [f"img{i:02d}" for i in range(30)])})
    ranked = rank_images(weights, feats, top=5, intercept=np.ones(20))
    assert (ranked["top_stimulus"].values[:10, 0] == "img07").all()
    assert (ranked["top_stimulus"].values[10:, 0] == "img21").all()
    np.testing.assert_allclose(ranked["predicted"].values, weights.values @ imgs.T + 1)


def test_errors():
    weights, text = space()
    with pytest.raises(DimensionError, match="expected the same joint space"):
        concept_labels(weights, text.isel(embed=slice(0, 5)))
    with pytest.raises(DimensionError, match="'text_embeddings' has dims"):
        concept_labels(weights, text.rename(concept="word"))
    with pytest.raises(DimensionError, match="expected the same feature space"):
        rank_images(weights, xr.DataArray(np.zeros((3, 4)), dims=("stimulus", "embed")))


def test_voxel_weights_from_a_store_recover_the_planted_concept():
    from neuroalign.mapping import voxel_weights
    from neuroalign.testing import make_store

    weights, text = space()
    rng = np.random.default_rng(3)
    n_stim = 120
    emb = rng.standard_normal((n_stim, 32))  # image embeddings in the joint space
    rois = {"FFA": np.arange(20) < 10, "PPA": np.arange(20) >= 10}
    store = make_store(n_stim, 20, n_repetitions=2, rois=rois, seed=2)
    ids = np.array([f"stim-{i:04d}" for i in range(n_stim)])
    codes = np.searchsorted(ids, store["stimulus_id"].values)
    signal = emb @ weights.values.T / 10
    noisy = signal[codes] + 0.3 * rng.standard_normal((len(codes), 20))
    store = store.copy(data={"responses": noisy.astype(np.float32), "true_ncsnr": store["true_ncsnr"].values})
    feats = xr.DataArray(emb, dims=("stimulus", "embed"), coords={"stimulus_id": ("stimulus", ids)})
    fitted = voxel_weights(feats, store, split="train")
    assert fitted["weights"].dims == ("neuroid", "embed")
    lab = concept_labels(fitted["weights"], text)
    assert (lab["top_concept"].values[:10, 0] == "face").all()
    assert (lab["top_concept"].values[10:, 0] == "house").all()
    roi = roi_concept_labels(lab, store)
    assert list(roi["top_concept"].values[:, 0]) == ["face", "house"]
    with pytest.raises(ValueError, match="Invalid value for 'split' in voxel_weights"):
        voxel_weights(feats, store, split="val")
    eeg = make_store(10, 4, n_times=3)
    with pytest.raises(DimensionError, match="time-resolved"):
        voxel_weights(feats.isel(stimulus=slice(0, 10)), eeg)


@pytest.mark.parametrize("seed", [0, 1])
def test_voxel_weights_is_sklearn_ridgecv_per_neuroid(seed):
    """Mapping's ridge is the ridge core: scikit-learn's leave-one-out RidgeCV with an alpha
    per target, on the same rows (also with more features than stimuli)."""
    from sklearn.linear_model import RidgeCV

    from neuroalign.mapping import voxel_weights
    from neuroalign.mapping._units import DEFAULT_ALPHAS
    from neuroalign.testing import make_store

    rng = np.random.default_rng(seed)
    store = make_store(n_stimuli=30, n_neuroids=6, n_repetitions=1, seed=seed)
    avg = store.na.average_repetitions()
    p = 45  # p > n
    X = rng.standard_normal((30, p)) * 1e-3 + 5.0  # small units, large mean
    feats = xr.Dataset({"emb": (("stimulus", "embed"), X[::-1])},
                       coords={"stimulus_id": ("stimulus", avg["stimulus_id"].values[::-1])})
    fitted = voxel_weights(feats, store)
    Y = avg["responses"].transpose("stimulus", "neuroid").values
    ref = RidgeCV(alphas=DEFAULT_ALPHAS, alpha_per_target=True).fit(X, Y)
    np.testing.assert_allclose(fitted["alpha"].values, ref.alpha_)
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(fitted["weights"].values, ref.coef_, rtol=1e-6, atol=1e-8 * scale)
    np.testing.assert_allclose(fitted["intercept"].values, ref.intercept_, rtol=1e-6, atol=1e-8)
