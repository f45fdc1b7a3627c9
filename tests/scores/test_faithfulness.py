"""camlab.scores.faithfulness: Average Drop / Increase in Confidence and ROAD on hand-built cases,
and the imputer against pytorch-grad-cam's NoisyLinearImputer restated in NumPy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import threadpoolctl

from camlab.errors import CamError
from camlab.scores import faithfulness

# pytorch-grad-cam's metrics/road.py `neighbors_weights`: ((row, column) offset, weight).
PGC_WEIGHTS = [((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
               ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6)]


def pgc_imputation(image: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's NoisyLinearImputer with noise 0, one equation per missing pixel
    as its setup_sparse_system writes it, solved densely: (H, W, C)."""
    height, width = kept.shape
    flat_kept, flat = kept.reshape(-1), image.reshape(height * width, -1)
    missing = np.flatnonzero(flat_kept == 0)
    variable = {pixel: index for index, pixel in enumerate(missing)}
    system = np.zeros((len(missing), len(missing)))
    rhs = np.zeros((len(missing), flat.shape[1]))
    for index, pixel in enumerate(missing):
        row, col = divmod(pixel, width)
        weight_sum = 1.0  # "sum_neighbors", less each neighbour outside the image
        for (dy, dx), weight in PGC_WEIGHTS:
            r, c = row + dy, col + dx
            if not (0 <= r < height and 0 <= c < width):
                weight_sum -= weight
            elif flat_kept[r * width + c] > 0.5:
                rhs[index] -= weight * flat[r * width + c]
            else:
                system[index, variable[r * width + c]] = weight
        system[index, index] = -weight_sum
    out = flat.copy()
    out[missing] = np.linalg.solve(system, rhs)
    return out.reshape(image.shape)


def softmax_model(weights: np.ndarray, bias: np.ndarray):
    """probabilities = softmax(flattened image / 255 @ weights + bias)."""
    weights, bias = tf.constant(weights, tf.float32), tf.constant(bias, tf.float32)

    def predict(images):
        flat = tf.reshape(tf.cast(images, tf.float32), [tf.shape(images)[0], -1]) / 255
        return tf.nn.softmax(flat @ weights + bias)

    return predict


RNG = np.random.default_rng(21)


def strip(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


@pytest.mark.parametrize("removed", [
    RNG.random((6, 6)) < 0.5,
    strip((6, 6), slice(0, 1), slice(0, 6)),  # a border row: wider than tall
    strip((6, 6), slice(1, 6), slice(4, 5)),  # a column reaching the border
    ~strip((6, 6), slice(5, 6), slice(5, 6)),  # all but one corner pixel
    RNG.random((5, 7)) < 0.6,  # not square
], ids=["random", "row", "column", "one_kept", "5x7"])
def test_imputation_equals_pytorch_grad_cams(removed):
    image = RNG.random(removed.shape + (3,)) * 255
    expected = pgc_imputation(image, (~removed).astype(np.float32))
    imputed = faithfulness.impute(image[None], removed[None])[0]
    np.testing.assert_allclose(imputed, expected, rtol=1e-5, atol=1e-3)


def test_a_linear_ramp_is_imputed_exactly_inside_the_image():
    # The neighbours' weighted mean of a linear function is its centre value wherever all
    # eight neighbours exist, so a hole away from the border is filled exactly.
    rows, cols = np.mgrid[:12, :10].astype(np.float64)
    image = np.stack([3 * rows + 5 * cols, 200 - 7 * rows + 2 * cols,
                      np.full_like(rows, 40.0)], axis=-1)
    removed = strip((12, 10), slice(2, 10), slice(2, 8)) & (RNG.random((12, 10)) < 0.8)
    removed[4:7, 3:6] = True
    imputed = faithfulness.impute(image[None], removed[None])[0]
    np.testing.assert_allclose(imputed, image, atol=2e-4)
    # At the border, the renormalised one-sided mean is not exact: the ramp shows it.
    border = faithfulness.impute(image[None], strip((12, 10), 0, slice(None))[None])[0]
    assert np.abs(border[0] - image[0]).max() > 1


def test_imputation_keeps_every_other_pixel_and_adds_noise_to_removed_ones():
    images = RNG.random((3, 8, 9, 3)).astype(np.float32) * 255
    removed = RNG.random((3, 8, 9)) < 0.4
    removed[2] = False  # an image with nothing removed is returned as it is
    noise = RNG.normal(size=images.shape).astype(np.float32)
    plain = faithfulness.impute(images, removed)
    noisy = faithfulness.impute(images, removed, noise)
    np.testing.assert_array_equal(noisy[~removed], images[~removed])
    np.testing.assert_allclose(noisy[removed] - plain[removed], noise[removed], atol=1e-4)
    for image, mask, out in zip(images, removed, plain, strict=True):
        np.testing.assert_allclose(out, pgc_imputation(image, (~mask).astype(float)),
                                   rtol=1e-5, atol=1e-3)


def test_imputation_needs_one_kept_pixel():
    with pytest.raises(CamError, match="at least one kept pixel"):
        faithfulness.impute(np.ones((1, 4, 4, 3)), np.ones((1, 4, 4), bool))


# Average Drop / Increase in Confidence

def test_the_solves_run_on_one_blas_thread_and_the_threads_come_back(monkeypatch):
    def blas_threads() -> dict[str, int]:
        return {lib["filepath"]: lib["num_threads"]
                for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}

    during = []

    def harmonic_fill(*args):
        during.append(blas_threads())
        return solve(*args)

    solve = faithfulness._harmonic_fill
    monkeypatch.setattr(faithfulness, "_harmonic_fill", harmonic_fill)
    removed = np.zeros((2, 6, 6), bool)
    removed[:, 2:4, 1:5] = True
    # Two threads before, so that one thread inside is the limit's doing on any machine.
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        faithfulness.impute(np.arange(2 * 6 * 6 * 3.0).reshape(2, 6, 6, 3), removed)
        assert blas_threads() == before
    assert any("scipy" in path for path in before)  # scipy's LAPACK is among them
    assert set(before.values()) == {2}
    assert len(during) >= 2  # one solve per image at least
    assert all(threads == dict.fromkeys(before, 1) for threads in during)


def test_a_map_that_keeps_the_whole_image_has_average_drop_0():
    predict = softmax_model(RNG.normal(size=(8 * 8 * 3, 4)), RNG.normal(size=4))
    images = RNG.random((2, 8, 8, 3)) * 255
    # All ones, and a positive constant: a constant map has no range; it keeps it all.
    maps = np.stack([np.ones((8, 8)), np.full((8, 8), 3.0)])
    scores = faithfulness.average_drop_increase(predict, images, maps, [0, 2])
    np.testing.assert_allclose(scores["average_drop"], 0, atol=1e-4)
    np.testing.assert_array_equal(scores["increase_in_confidence"], 0)
    full = predict(images).numpy()[[0, 1], [0, 2]]
    np.testing.assert_allclose(scores["explanation_probability"], full, rtol=1e-5)


def test_a_zero_map_scores_the_black_image():
    weights, bias = RNG.normal(size=(6 * 5 * 3, 3)), np.array([0.5, -1.0, 2.0])
    predict = softmax_model(weights, bias)
    images = RNG.random((2, 6, 5, 3)) * 255
    classes = np.array([1, 2])
    scores = faithfulness.average_drop_increase(predict, images, np.zeros((2, 6, 5)),
                                                classes)
    black = np.exp(bias) / np.exp(bias).sum()  # the black image's logits are the bias
    logits = images.reshape(2, -1) / 255 @ weights + bias
    full = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))[[0, 1], classes]
    np.testing.assert_allclose(scores["explanation_probability"], black[classes], rtol=1e-5)
    expected = np.maximum(full - black[classes], 0) / full * 100
    np.testing.assert_allclose(scores["average_drop"], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(scores["increase_in_confidence"],
                                  100.0 * (black[classes] > full))


def test_maps_are_min_max_normalised_per_image():
    predict = softmax_model(RNG.normal(size=(4 * 4 * 3, 2)), np.zeros(2))
    images = RNG.random((2, 4, 4, 3)) * 255
    maps = RNG.random((2, 4, 4)) * [[[4.0]], [[0.1]]] + [[[2.0]], [[-7.0]]]
    scores = faithfulness.average_drop_increase(predict, images, maps, [1, 0])
    low, high = maps.min(axis=(1, 2), keepdims=True), maps.max(axis=(1, 2), keepdims=True)
    explained = images * ((maps - low) / (high - low))[..., None]
    np.testing.assert_allclose(scores["explanation_probability"],
                               predict(explained).numpy()[[0, 1], [1, 0]], rtol=1e-5)
    np.testing.assert_array_equal(faithfulness.normalised_maps(-np.ones((1, 3, 3))), 0)


def test_increase_in_confidence_when_masking_raises_the_score():
    # Class 0's logit is minus the mean brightness: darkening the image raises it.
    def predict(images):
        brightness = tf.reduce_mean(tf.cast(images, tf.float32), axis=[1, 2, 3]) / 255
        return tf.nn.softmax(tf.stack([-4 * brightness, tf.zeros_like(brightness)], 1))

    images = np.full((2, 6, 6, 3), 200.0)
    maps = np.zeros((2, 6, 6))
    maps[:, :3] = 1.0  # keeps the top half, blackens the bottom
    scores = faithfulness.average_drop_increase(predict, images, maps, [0, 1])
    np.testing.assert_array_equal(scores["increase_in_confidence"], [100, 0])
    assert scores["average_drop"][0] == 0 and scores["average_drop"][1] > 0
    p1 = 1 / (1 + np.exp(-4 * 200 / 255))  # class 1 before: softmax of (-4 b, 0)
    q1 = 1 / (1 + np.exp(-4 * 100 / 255))  # after: half the brightness
    np.testing.assert_allclose(scores["average_drop"][1], (p1 - q1) / p1 * 100, rtol=1e-4)


def test_given_probabilities_save_the_forward_pass_of_the_image():
    model = softmax_model(RNG.normal(size=(5 * 5 * 3, 3)), np.zeros(3))
    calls = []

    def predict(images):
        calls.append(len(images))
        return model(images)

    images, maps = RNG.random((2, 5, 5, 3)) * 255, RNG.random((2, 5, 5))
    full = faithfulness.average_drop_increase(predict, images, maps, [2, 1])
    assert calls == [2, 2]
    probabilities = model(images).numpy()[[0, 1], [2, 1]]
    given = faithfulness.average_drop_increase(predict, images, maps, [2, 1], probabilities)
    assert calls == [2, 2, 2]
    for key, value in full.items():
        np.testing.assert_allclose(given[key], value, rtol=1e-6)


def test_maps_must_match_the_images():
    with pytest.raises(CamError, match="upsample them"):
        faithfulness.average_drop_increase(None, np.zeros((2, 8, 8, 3)), np.zeros((2, 4, 4)),
                                           [0, 0])


# ROAD

def region_model(region: np.ndarray):
    """Class 0's probability is the mean of `region` (H, W) bool over the image / 255."""
    weight = tf.constant(region / region.sum() / 255 / 3, tf.float32)

    def predict(images):
        score = tf.reduce_sum(tf.cast(images, tf.float32) * weight[None, :, :, None],
                              axis=[1, 2, 3])
        return tf.stack([score, 1 - score], axis=1)

    return predict


def test_road_on_a_model_that_reads_one_region():
    region = strip((10, 10), slice(4, 6), slice(3, 8))  # 10 pixels: 10% of the image
    images = np.where(region[None, ..., None], 255.0, 0.0) * np.ones((2, 1, 1, 3))
    maps = RNG.random((2, 10, 10)) * 0.5
    maps[0][region] = 1.0  # image 0's map ranks the region first, image 1's last
    maps[1][region] = -1.0
    scores = faithfulness.road(region_model(region), images, maps, [0, 0], noise=0.0)
    # MoRF removes the region at 10% already and imputes it from black: score 0. LeRF
    # keeps it up to 90%: score 1. Image 1's map is the opposite.
    np.testing.assert_allclose(scores["road_morf_curve"][0], 0, atol=1e-5)
    np.testing.assert_allclose(scores["road_lerf_curve"][0], 1, atol=1e-5)
    np.testing.assert_allclose(scores["road_morf_curve"][1], 1, atol=1e-5)
    np.testing.assert_allclose(scores["road_lerf_curve"][1], 0, atol=1e-5)
    np.testing.assert_allclose(scores["road_morf"], [-1, 0], atol=1e-5)
    np.testing.assert_allclose(scores["road_lerf"], [0, -1], atol=1e-5)
    np.testing.assert_allclose(scores["road_combined"], [0.5, -0.5], atol=1e-5)


def test_road_equals_pytorch_grad_cams_restated():
    # 10 x 10 pixels and distinct map values: pytorch-grad-cam's percentile threshold
    # removes exactly floor(p x 100 / 100) pixels, as ours does.
    images = RNG.random((2, 10, 10, 3)) * 255
    cams = RNG.random((2, 10, 10))
    classes = np.array([1, 0])
    predict = softmax_model(RNG.normal(size=(300, 2)) * 3, np.zeros(2))
    scores = faithfulness.road(predict, images, cams, classes, noise=0.0)
    full = predict(images).numpy()[[0, 1], classes]
    curves = {"morf": [], "lerf": []}
    for q in faithfulness.ROAD_PERCENTILES:  # pytorch-grad-cam's percentile: percent kept
        for name, cam in (("morf", cams), ("lerf", 1 - cams)):
            imputed = [pgc_imputation(image, (one < np.percentile(one, q)).astype(float))
                       for image, one in zip(images, cam, strict=True)]
            curves[name].append(predict(np.stack(imputed)).numpy()[[0, 1], classes])
    for name in ("morf", "lerf"):
        theirs = np.stack(curves[name], axis=1)  # (batch, percentiles), percent kept
        np.testing.assert_allclose(scores[f"road_{name}_curve"], theirs[:, ::-1], atol=1e-5)
        np.testing.assert_allclose(scores[f"road_{name}"], theirs.mean(axis=1) - full,
                                   atol=1e-5)
    morf, lerf = (np.mean(curves[name], axis=0) - full for name in ("morf", "lerf"))
    np.testing.assert_allclose(scores["road_combined"], (lerf - morf) / 2, atol=1e-5)


def test_road_noise_and_ties_are_keyed_by_image_id():
    seen = []
    # Its own generator: with the module's RNG the data depended on which tests ran before
    # it in the same process (pytest-xdist splits a file between workers). Weights of std
    # 1/16 keep the softmax away from 0 and 1, where two curves would agree to float32's
    # last bit (probabilities of 1e-15 on both sides) whatever the noise.
    rng = np.random.default_rng(22)
    model = softmax_model(rng.normal(size=(16 * 16 * 3, 2)) / 16, np.zeros(2))

    def predict(images):
        seen.append(np.array(images))
        return model(images)

    images = rng.random((2, 16, 16, 3)) * 255
    maps = np.zeros((2, 16, 16))  # all tied: the order is the stream's
    pair = faithfulness.road(predict, images, maps, [0, 1], seed=5, ids=[7, 3])
    alone = faithfulness.road(predict, images[1:], maps[1:], [1], seed=5, ids=[3])
    for key, value in pair.items():
        np.testing.assert_allclose(value[1], alone[key][0], rtol=1e-5, atol=1e-6)
    other = faithfulness.road(predict, images[1:], maps[1:], [1], seed=5, ids=[4])
    assert not np.allclose(other["road_morf_curve"], alone["road_morf_curve"])
    # Image 3's MoRF at 50% against the same pixels imputed without noise: the noise has
    # the ROAD authors' std, 0.01 of the range.
    imputed = seen[2][4]  # image 3 alone: (MoRF, LeRF) x (10, ..., 90%); 4 is MoRF 50%
    removed = np.any(imputed != images[1].astype(np.float32), axis=-1)
    assert removed.sum() == 128
    plain = faithfulness.impute(images[1:], removed[None])[0]
    np.testing.assert_allclose(np.std(imputed[removed] - plain[removed]), 2.55, rtol=0.15)


def test_removed_masks_count_and_rank_pixels():
    maps = RNG.random((2, 7, 9))
    removed = faithfulness.removed_masks(maps, [10, 50, 90], np.zeros((2, 7, 9)))
    assert removed.shape == (2, 2, 3, 7, 9)
    np.testing.assert_array_equal(removed.sum(axis=(3, 4)), [[[6, 31, 56]] * 2] * 2)
    for image, masks in zip(maps, removed, strict=True):
        for most, least in zip(*masks, strict=True):
            assert image[most].min() > image[~most].max()
            assert image[least].max() < image[~least].min()


@pytest.mark.parametrize("percentiles", [[0, 50], [100], []])
def test_road_percentiles_lie_strictly_between_0_and_100(percentiles):
    with pytest.raises(CamError, match="strictly between 0 and 100"):
        faithfulness.road(None, np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 4)), [0],
                          percentiles=percentiles)
