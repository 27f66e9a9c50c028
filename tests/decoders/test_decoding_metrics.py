"""Decoding metrics against hand computations on small arrays (as MindEye, Scotti et al. 2023, reports them)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import correlation as scipy_correlation
from skimage.color import rgb2gray
from skimage.metrics import structural_similarity

from neuroalign.decoders import metrics as M
from neuroalign.exceptions import DimensionError


def _images(n=3, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_pixcorr_matches_hand_computation():
    rec, gt = _images(seed=1), _images(seed=2)
    expected = np.mean([
        np.corrcoef(gt[i].reshape(-1) / 255.0, rec[i].reshape(-1) / 255.0)[0, 1] for i in range(3)
    ])
    assert M.pixcorr(rec, gt, size=None) == pytest.approx(expected, abs=1e-12)
    assert M.pixcorr(gt, gt, size=None) == pytest.approx(1.0)
    # resizing to the same size is a no-op
    assert M.pixcorr(rec, gt, size=8) == pytest.approx(expected, abs=1e-12)


def test_pixcorr_two_pixel_example():
    # one image, pixels (0, 1, ...) vs reversed: r = -1
    gt = np.zeros((1, 1, 2, 3))
    gt[0, 0, 1] = 1.0
    rec = 1.0 - gt
    assert M.pixcorr(rec, gt, size=None) == pytest.approx(-1.0)


def test_ssim_matches_skimage_reference_settings():
    rec, gt = _images(2, 16, 3), _images(2, 16, 4)
    expected = np.mean([
        structural_similarity(rgb2gray(r / 255.0), rgb2gray(g / 255.0), gaussian_weights=True,
                              sigma=1.5, use_sample_covariance=False, data_range=1.0)
        for r, g in zip(rec, gt, strict=True)
    ])
    assert M.ssim(rec, gt, size=None) == pytest.approx(expected, abs=1e-12)
    assert M.ssim(gt, gt, size=None) == pytest.approx(1.0)


def test_two_way_identification_hand_example():
    # r[i, j] = corr(gt_i, rec_j); constructed so rec0 ~ gt0, rec1 ~ gt2, rec2 ~ gt2
    gt = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    rec = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
    n = 3
    r = np.corrcoef(gt, rec)[:n, n:]
    counts = [sum(r[i, j] < r[j, j] for i in range(n) if i != j) for j in range(n)]
    expected = np.mean(np.array(counts) / (n - 1))
    assert expected == pytest.approx((2 / 2 + 0 / 2 + 2 / 2) / 3)
    assert M.two_way_identification(gt, rec) == pytest.approx(expected)


def test_two_way_identification_perfect_and_chance():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(20, 30))
    assert M.two_way_identification(f, f) == 1.0
    scores = [M.two_way_identification(f, rng.normal(size=(20, 30))) for _ in range(30)]
    assert 0.4 < np.mean(scores) < 0.6


def test_correlation_distance_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    expected = np.mean([scipy_correlation(a[i], b[i]) for i in range(4)])
    assert M.correlation_distance(a, b) == pytest.approx(expected)
    assert M.correlation_distance(a, a) == pytest.approx(0.0, abs=1e-12)


def test_retrieval_top1_hand_example():
    img = np.eye(3)
    brain = np.array([[1.0, 0.1, 0], [0.9, 0.2, 0], [0, 0, 1]])
    # forward: row0 -> img0 ok, row1 -> img0 wrong, row2 -> img2 ok = 2/3
    # backward: img0 -> brain0 (1.0 vs .9 normalised: brain0 cos=0.995, brain1 cos=0.976) ok;
    # img1 -> brain1 ok (0.216 vs 0.0995); img2 -> brain2 ok
    out = M.retrieval_top1(brain, img, n_way=300)
    assert out["n_way"] == 3 and out["n_draws"] == 1
    assert out["forward"] == pytest.approx(2 / 3)
    assert out["backward"] == pytest.approx(1.0)
    assert out["chance"] == pytest.approx(1 / 3)


def test_retrieval_draws_subsample():
    rng = np.random.default_rng(2)
    e = rng.normal(size=(40, 5))
    out = M.retrieval_top1(e, e, n_way=10, n_draws=30)
    assert out["forward"] == 1.0 and out["backward"] == 1.0 and out["n_draws"] == 30
    noise = M.retrieval_top1(rng.normal(size=(40, 5)), e, n_way=10, n_draws=30)
    assert noise["forward"] < 0.5


def test_feature_network_random_weights_and_table():
    net = M.feature_network("alexnet2", weights=None)
    imgs = _images(4, 32, 5)
    feats = net(imgs)
    assert feats.shape[0] == 4 and feats.ndim == 2
    table = M.evaluate_reconstructions(imgs, imgs, networks={"alex2": net}, distance_networks={"alex2": net})
    assert table["PixCorr"] == pytest.approx(1.0)
    assert table["alex2 2-way"] == 1.0
    assert table["alex2 corr-dist"] == pytest.approx(0.0, abs=1e-9)


def test_metric_errors():
    with pytest.raises(DimensionError, match="'recons' holds 2 images and 'targets' 3"):
        M.pixcorr(_images(2), _images(3))
    with pytest.raises(DimensionError, match="Invalid shape for 'recons'"):
        M.ssim(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(DimensionError, match="'feat_gt' has shape"):
        M.two_way_identification(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(DimensionError, match="at least 2 images"):
        M.two_way_identification(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="Invalid value for 'n_way' in retrieval_top1"):
        M.retrieval_top1(np.zeros((3, 2)), np.zeros((3, 2)), n_way=1)
    with pytest.raises(ValueError, match="Invalid value for 'name' in feature_network"):
        M.feature_network("vgg")
    with pytest.raises(ValueError, match="Invalid value for 'preset' in evaluate_reconstructions"):
        M.evaluate_reconstructions(_images(2), _images(2), preset="nope")
    net = M.FeatureNetwork(M.feature_network("alexnet2", weights=None).model, "nope", resize=16,
                           mean=(0, 0, 0), std=(1, 1, 1), name="alex")
    with pytest.raises(KeyError, match="Unknown node 'nope' of network 'alex'"):
        net(_images(2, 16))


def test_retrieval_seed_is_a_deprecated_alias():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    new = M.retrieval_top1(a, b, n_way=10, n_draws=5, random_state=7)
    with pytest.warns(FutureWarning, match="retrieval_top1\\(\\): 'seed' is deprecated.*random_state=7"):
        assert M.retrieval_top1(a, b, n_way=10, n_draws=5, seed=7) == new


@pytest.mark.parametrize(("sides", "tile"), [((32,), 64), ((32, 64), 128), ((200,), 256),
                                             ((300,), 300), ((512, 256), 512)])
def test_grid_enlarges_small_images_only(tmp_path, sides, tile):
    """Tiles are the largest image enlarged twice, up to 256 px; larger images (unCLIP's
    512 px samples) keep their size instead of a grid of 1024 px tiles. Each image lands
    in its own tile, rows in order."""
    from PIL import Image

    from neuroalign.decoders import save_grid

    colours = np.arange(1, 1 + 3 * len(sides)).reshape(len(sides), 3) * 20
    rows = [np.broadcast_to(colours[i][:, None, None, None].repeat(3, -1), (3, s, s, 3))
            .astype(np.uint8) for i, s in enumerate(sides)]
    with Image.open(save_grid(rows, tmp_path / "g.png")) as im:
        canvas = np.asarray(im)
    assert canvas.shape == (len(sides) * (tile + 2), 3 * (tile + 2), 3)
    for i in range(len(sides)):
        for j in range(3):
            block = canvas[i * (tile + 2):i * (tile + 2) + tile, j * (tile + 2):j * (tile + 2) + tile]
            assert (block == colours[i][j]).all(), (i, j)
