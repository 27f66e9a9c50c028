"""Contracts of the decoders that plausible one-line bugs would break: ties, row order, the
join by stimulus_id, chance levels, the sign of guidance, and the reconstruction verdict."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from neuroalign.decoders import EmbeddingDecoder, check_reconstructions
from neuroalign.decoders import metrics as M
from neuroalign.exceptions import StimulusMismatchError
from neuroalign.testing import make_store


# -- retrieval and identification: hand-computed values, ties, candidate order -------------
def test_retrieval_with_ties_hand_computed_and_order_free():
    img = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])  # images 0 and 1 identical
    brain = np.array([[1.0, 0.0, 0], [1.0, 0.0, 0], [0.2, 1.0, 0], [0, 0.6, 1.0]])
    # cosines: brain0/brain1 tie between images 0 and 1 -> misses; brain2 -> image2 (0.98 vs
    # 0.196) hit; brain3 -> image3 (0.857 vs 0.514) hit: forward 2/4
    # backward: image0/image1 tie between brains 0 and 1 -> misses; image2 -> brain2 (0.98 vs
    # 0.514) hit; image3 -> brain3 hit: backward 2/4
    out = M.retrieval_top1(brain, img)
    assert out["forward"] == 0.5 and out["backward"] == 0.5 and out["chance"] == 0.25
    for seed in range(5):  # any order of the test samples (rows of both, together)
        perm = np.random.default_rng(seed).permutation(4)
        again = M.retrieval_top1(brain[perm], img[perm])
        assert (again["forward"], again["backward"]) == (0.5, 0.5), perm


def test_retrieval_is_cosine_not_dot_product():
    img = np.array([[1.0, 0.0], [0.0, 1.0]])
    brain = np.array([[10.0, 9.0], [0.1, 0.2]])
    # cosines: brain0 (.743, .669), brain1 (.447, .894): every row and column peaks on its
    # own; a dot product would send image 1 to brain 0 (9 vs 0.2): backward 0.5
    out = M.retrieval_top1(brain, img)
    assert out["forward"] == 1.0 and out["backward"] == 1.0


def test_two_way_identification_with_ties_hand_computed_and_order_free():
    # rec0 equals gt0 and gt1 (identical): r[1, 0] == r[0, 0] is a tie -> not a success
    gt = np.array([[1.0, 2, 3, 4], [1.0, 2, 3, 4], [4.0, 1, 0, 2], [0.0, 3, 1, 1]])
    rec = np.array([[1.0, 2, 3, 4], [0.0, 3, 1, 1.5], [4.0, 1, 0, 2], [1.0, 2, 3, 4.5]])
    n = 4
    r = np.corrcoef(gt, rec)[:n, n:]
    counts = [sum(r[i, j] < r[j, j] for i in range(n) if i != j) for j in range(n)]
    expected = np.mean(np.array(counts) / (n - 1))
    assert counts[0] == 2  # gt2 and gt3 below; gt1 ties (r = 1): a failure (strict <)
    assert M.two_way_identification(gt, rec) == pytest.approx(expected, abs=1e-12)
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(n)
        assert M.two_way_identification(gt[perm], rec[perm]) == pytest.approx(expected, abs=1e-12)


def test_two_way_identification_chance_is_one_half():
    """Unrelated features: mean 0.5 exactly in expectation; with N = 5 a denominator of N
    instead of N - 1 would give 0.4 and counting the diagonal 0.6."""
    rng = np.random.default_rng(0)
    scores = [M.two_way_identification(rng.normal(size=(5, 12)), rng.normal(size=(5, 12)))
              for _ in range(3000)]
    assert np.mean(scores) == pytest.approx(0.5, abs=0.012)
    # and on unrelated embeddings of more images, each score stays near one half
    big = [M.two_way_identification(rng.normal(size=(60, 40)), rng.normal(size=(60, 40)))
           for _ in range(20)]
    assert abs(np.mean(big) - 0.5) < 0.02 and max(abs(np.array(big) - 0.5)) < 0.12


# -- EmbeddingDecoder joins by stimulus_id ------------------------------------------------
@pytest.fixture(scope="module")
def planted():
    """A store and embeddings that depend linearly on its signal (known answer)."""
    store, signal = make_store(50, 20, n_repetitions=2, n_test=10, ncsnr=3.0, seed=1,
                               return_signal=True)
    W = np.random.default_rng(2).normal(size=(20, 6))
    emb = xr.DataArray(signal.values @ W, dims=("stimulus", "embedding"),
                       coords={"stimulus_id": ("stimulus", signal.stimulus_id.values)})
    return store, emb


def test_embedding_decoder_joins_features_by_stimulus_id(planted):
    store, emb = planted
    train, test = store.na.split("train"), store.na.split("test").na.average_repetitions()
    ref = EmbeddingDecoder("ridge", alphas=(1.0, 10.0)).fit(train, emb)
    rng = np.random.default_rng(3)
    shuffled = emb.isel(stimulus=rng.permutation(emb.sizes["stimulus"]))
    dec = EmbeddingDecoder("ridge", alphas=(1.0, 10.0)).fit(train, shuffled)
    assert dec.alpha_ == ref.alpha_
    np.testing.assert_allclose(dec.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dec.predict(test).values, ref.predict(test).values, atol=1e-10)
    # extra feature rows (a larger stimulus set) change nothing
    extra = xr.concat([emb, emb.isel(stimulus=slice(0, 3)).assign_coords(
        stimulus_id=("stimulus", ["x1", "x2", "x3"]))], dim="stimulus")
    dec2 = EmbeddingDecoder("ridge", alphas=(1.0, 10.0)).fit(train, extra)
    np.testing.assert_allclose(dec2.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    # the planted map is recovered: held-out predictions track the true embeddings
    true = emb.sel(stimulus=emb.stimulus_id.isin(test.stimulus_id.values))
    true = true.isel(stimulus=[list(true.stimulus_id.values).index(s) for s in test.stimulus_id.values])
    r = np.corrcoef(ref.predict(test).values.ravel(), true.values.ravel())[0, 1]
    assert r > 0.9
    # score() too: the same retrieval whatever the order of the feature rows
    assert dec.score(store.na.split("test"), shuffled) == ref.score(store.na.split("test"), emb)
    missing = emb.isel(stimulus=slice(1, None))
    with pytest.raises(StimulusMismatchError, match="1 stimuli of the store are missing from the target embeddings"):
        EmbeddingDecoder("ridge").fit(store, missing)


# -- the sign of guidance ---------------------------------------------------------------
@pytest.fixture(scope="module")
def pixel_pipe():
    """An untrained pixel-space pipeline: guidance acts through its gradient all the same."""
    import torch
    from diffusers import DDIMScheduler

    from neuroalign.decoders import EmbeddingDiffusionPipeline
    from neuroalign.decoders._tiny import _build_unet

    torch.manual_seed(0)
    unet = _build_unet(16, (8, 16))
    proj = torch.nn.Linear(4, unet.time_embedding.linear_2.out_features)
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True)
    return EmbeddingDiffusionPipeline(unet, proj, sched, np.zeros(4), np.ones(4))


def _rgb(images):
    """'Neuroids' = mean red, green, blue."""
    return images.mean(dim=(2, 3))


def test_guidance_sign(pixel_pipe):
    """Scale +s raises the target, -s lowers it; a contrast and a negative read-out weight
    turn the direction as they should. Unguided images (scale 0) do not depend on the
    target, so one unguided run serves as the reference for all."""
    import torch

    from neuroalign.decoders import BrainGuidedGenerator, DifferentiableRidgeEncoder

    rois = {"red": np.array([True, False, False]), "blue": np.array([False, False, True])}

    def gen(target, encoder=_rgb):
        return BrainGuidedGenerator(encoder, target, pixel_pipe, scale=60.0, num_inference_steps=3,
                                    rois=rois, device="cpu")

    plain = gen("red").generate(2, seed=0, scale=0.0).images.astype(float) / 255
    red0, blue0 = plain[..., 0].mean(axis=(1, 2)), plain[..., 2].mean(axis=(1, 2))
    up = gen("red").generate(2, seed=0).final_activation
    down = gen("red").generate(2, seed=0, scale=-60.0).final_activation
    assert np.all(up > red0 + 0.02) and np.all(down < red0 - 0.02), (down, red0, up)
    contrast = gen("blue - red").generate(2, seed=0).final_activation
    assert np.all(contrast > (blue0 - red0) + 0.02), (contrast, blue0 - red0)
    # an ROI read out with a negative weight on red: climbing the ROI lowers red
    enc = DifferentiableRidgeEncoder(_rgb, np.array([[-1.0, 0.0, 0.0]]), rois={"neg-red": [0]})
    res = BrainGuidedGenerator(enc, "neg-red", pixel_pipe, scale=60.0, num_inference_steps=3,
                               device="cpu").generate(2, seed=0)
    red = res.images[..., 0].mean(axis=(1, 2)) / 255
    assert np.all(red < red0 - 0.02) and np.all(res.final_activation > -red0), (red, red0)
    assert torch.is_tensor(enc.coef)


# -- the reconstruction verdict ---------------------------------------------------------
def _imgs(n, seed, size=16):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_check_reconstructions_against_baseline_and_chance():
    gt = _imgs(8, 0)
    noise = _imgs(8, 1)
    good = np.clip(gt.astype(float) * 0.8 + noise * 0.2, 0, 255).astype(np.uint8)
    worse = np.clip(gt.astype(float) * 0.4 + noise * 0.6, 0, 255).astype(np.uint8)
    # a refinement that makes its input worse is reported as such
    res = check_reconstructions(worse, gt, baseline=good, baseline_name="low-level input")
    assert res.beats_baseline == {"PixCorr": False, "SSIM": False}
    assert res.improves_on_baseline is False and all(res.above_chance.values())
    assert res.below_baseline == {"PixCorr": True, "SSIM": True}
    assert "better than the low-level input on 0/2 and worse on 2/2" in res.summary()
    assert res.summary().endswith("the refinement makes its input worse.")
    assert "," not in res.summary()  # fits a CSV cell
    # ... and one that improves it, as such
    res2 = check_reconstructions(good, gt, baseline=worse)
    assert res2.improves_on_baseline is True and res2.summary().endswith("improves on its input.")
    # chance: the same metric on mismatched pairs, hand-computed
    shifted = np.mean([M.pixcorr(good, np.roll(gt, k, 0), size=64) for k in (1, 2, 3, 4, 5)])
    assert res2.chance["PixCorr"] == pytest.approx(shifted, abs=1e-12)
    # unrelated images: at chance (the test is paired over images, so its level holds)
    hits = [sum(check_reconstructions(_imgs(8, 100 + s), gt).above_chance.values()) for s in range(20)]
    assert sum(hits) <= 6, hits  # 40 tests at level 0.05: about 2 expected
    # a difference no larger than chance's own spread is not "above chance": a reconstruction
    # that is the ground truth of the NEXT image scores at chance on PixCorr
    shifted_rec = check_reconstructions(np.roll(gt, 1, axis=0), gt)
    assert shifted_rec.above_chance["PixCorr"] is False
    table = res.to_dict()
    assert table["PixCorr low-level input"] == pytest.approx(res.baseline["PixCorr"])
    assert table["PixCorr p worse than low-level input"] < 0.05
    assert table["verdict"] == res.summary()


def test_check_reconstructions_networks_and_distance():
    gt = _imgs(6, 2)
    feats = lambda x: x.reshape(len(x), -1)[:, :64].astype(float)  # noqa: E731
    res = check_reconstructions(gt, gt, baseline=_imgs(6, 3), networks={"pix": feats},
                                distance_networks={"pix": feats})
    assert res.scores["pix 2-way"] == 1.0 and res.chance["pix 2-way"] == 0.5
    assert res.scores["pix corr-dist"] == pytest.approx(0.0, abs=1e-12)
    assert res.higher_is_better["pix corr-dist"] is False
    assert res.beats_baseline["pix corr-dist"] and res.above_chance["pix corr-dist"]
    from neuroalign.exceptions import DimensionError

    with pytest.raises(DimensionError, match="'recons' holds 2 images and 'targets' 6"):
        check_reconstructions(gt[:2], gt)
    with pytest.raises(DimensionError, match="at least 2 images"):
        check_reconstructions(gt[:1], gt[:1])


def test_embedding_decoder_ridge_is_sklearn_ridgecv(planted):
    """The decoder's ridge is the ridge core: one alpha for every embedding dimension, the
    one scikit-learn's RidgeCV picks on the same stimulus-grouped folds by mean squared
    error; weights in the (n_features, n_targets) orientation."""
    from sklearn.base import clone
    from sklearn.linear_model import RidgeCV

    from neuroalign.decoders._embedding import _align, brain_matrix, target_matrix
    from neuroalign.store import cv_folds

    store, emb = planted
    train = store.na.split("train")
    alphas = (0.3, 3.0, 30.0, 300.0)
    dec = EmbeddingDecoder("ridge", alphas=alphas, cv=4, random_state=5).fit(train, emb)
    X, ids = brain_matrix(train)
    T, tids, _, _ = target_matrix(emb, None)
    Y = T[_align(ids, tids)]
    Z = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    folds = cv_folds(ids, 4, random_state=5)
    ref = RidgeCV(alphas=alphas, cv=folds, scoring="neg_mean_squared_error").fit(Z, Y)
    assert dec.alpha_ == ref.alpha_
    assert dec.coef_.shape == (Z.shape[1], Y.shape[1])
    scale = np.abs(ref.coef_).max()
    np.testing.assert_allclose(dec.coef_, ref.coef_.T, rtol=1e-7, atol=1e-9 * scale)
    np.testing.assert_allclose(dec.intercept_, ref.intercept_, rtol=1e-7, atol=1e-9)
    # scikit-learn's conventions: clone, random_state (seed: deprecated alias)
    assert clone(dec).get_params()["random_state"] == 5
    with pytest.warns(FutureWarning, match="EmbeddingDecoder: 'seed' is deprecated"):
        old = EmbeddingDecoder("ridge", alphas=alphas, cv=4, seed=5).fit(train, emb)
    np.testing.assert_array_equal(old.coef_, dec.coef_)
