"""cam_utils: CAM arithmetic against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import cam_utils


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("h, w", [(4, 4), (3, 5)])
def test_cams_equal_features_times_weights(batch, h, w):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(batch, h, w, 6)).astype(np.float32)
    weights = rng.normal(size=(6, 4)).astype(np.float32)
    cams = cam_utils.class_activation_maps(features, weights).numpy()
    assert cams.shape == (batch, h, w, 4) and cams.dtype == np.float32
    for i in range(batch):
        for c in range(4):
            np.testing.assert_allclose(cams[i, ..., c], features[i] @ weights[:, c], rtol=1e-5,
                                       atol=1e-6)


def test_each_images_own_classes_are_those_columns_of_all_classes():
    """Weights (batch, k, channels), each image's chosen classes (as METHOD="cam" asks),
    give the same maps as those classes' columns of the maps of every class."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    weights = rng.normal(size=(5, 6)).astype(np.float32)
    chosen = np.array([[4, 1], [0, 0]])
    every = cam_utils.class_activation_maps(features, weights).numpy()
    own = cam_utils.class_activation_maps(features, weights.T[chosen]).numpy()
    np.testing.assert_allclose(own, np.take_along_axis(every, chosen[:, None, None], -1),
                               rtol=1e-5, atol=1e-6)


def test_cam_mean_is_the_class_score():
    """GAP then a linear layer: the spatial mean of CAM_c is the pre-softmax score."""
    rng = np.random.default_rng(1)
    features = rng.uniform(size=(2, 5, 5, 8)).astype(np.float32)
    weights = rng.normal(size=(8, 3)).astype(np.float32)
    cams = cam_utils.class_activation_maps(features, weights).numpy()
    logits = features.mean(axis=(1, 2)) @ weights
    np.testing.assert_allclose(cams.mean(axis=(1, 2)), logits, rtol=1e-5, atol=1e-6)


def test_bfloat16_features_give_float32_maps():
    features = tf.constant(np.full((1, 2, 2, 3), 1.5), dtype=tf.bfloat16)
    cams = cam_utils.class_activation_maps(features, np.ones((3, 2), np.float32))
    assert cams.dtype == tf.float32
    np.testing.assert_array_equal(cams.numpy(), np.full((1, 2, 2, 2), 4.5))


def test_normalisation_divides_by_the_top_class_maximum():
    maps = np.zeros((2, 2, 2, 2), np.float32)
    maps[0, ..., 0] = [[1, 4], [2, 0]]   # top-1 max 4
    maps[0, ..., 1] = [[8, 2], [-4, 0]]  # may exceed 1: it is scaled by the top-1 map
    maps[1, ..., 0] = [[-1, -2], [-3, -1]]  # top-1 max <= 0: the image's maps become 0
    maps[1, ..., 1] = [[5, 5], [5, 5]]
    out = cam_utils.normalize_by_top_class(maps, maps[..., 0]).numpy()
    np.testing.assert_allclose(out[0, ..., 0], [[0.25, 1], [0.5, 0]])
    np.testing.assert_allclose(out[0, ..., 1], [[2, 0.5], [-1, 0]])
    np.testing.assert_array_equal(out[1], np.zeros((2, 2, 2)))
    assert np.isfinite(out).all()


def test_threshold_keeps_values_at_and_above_the_cut():
    maps = np.array([0.0, 0.29, 0.3, 0.7, 1.2], np.float32)
    np.testing.assert_allclose(cam_utils.threshold_maps(maps, 0.3).numpy(),
                               [0, 0, 0.3, 0.7, 1.2])


def test_top_k_classes_orders_by_probability():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], np.float32)
    values, indices = cam_utils.top_k_classes(probs, 2)
    np.testing.assert_array_equal(indices.numpy(), [[1, 2], [0, 2]])
    np.testing.assert_allclose(values.numpy(), [[0.6, 0.3], [0.5, 0.3]])


@pytest.mark.parametrize("shape, size", [((2, 10, 10, 3), (320, 320)), ((1, 3, 5, 2), (7, 12)),
                                         ((3, 4, 4, 1), (4, 4)), ((1, 6, 6, 2), (3, 4))])
def test_upsample_equals_tf_image_resize(shape, size):
    maps = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    expected = tf.image.resize(maps, size, method="bilinear").numpy()
    np.testing.assert_allclose(cam_utils.upsample(maps, size).numpy(), expected, rtol=1e-5,
                               atol=1e-5)


def seed_display(maps: np.ndarray, threshold: float, size: tuple[int, int]) -> np.ndarray:
    """The seed's order of operations on (batch, h, w, k) maps: tf.image.resize, divide by
    the low-resolution top-1 map's maximum, cut; (batch, k, H, W)."""
    peak = maps[..., 0].max(axis=(1, 2))[:, None, None, None]
    shown = tf.image.resize(maps, size, method="bilinear").numpy() / peak
    return np.where(shown < threshold, 0.0, shown).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("shape, size", [
    ((2, 10, 10, 3), (320, 320)),  # VGG19 at 320 px: blocks of 32
    ((1, 7, 7, 2), (224, 224)), ((2, 3, 5, 2), (7, 12)),  # not a whole factor
    ((1, 10, 10, 2), (500, 375)), ((1, 2, 3, 1), (317, 101)),  # prime sizes: blocks of 1
    ((1, 6, 6, 2), (3, 4)),  # downsampling
    ((3, 1, 1, 2), (5, 5)), ((1, 4, 4, 3), (4, 4))])
def test_display_maps_is_the_seeds_resize_normalise_and_cut(shape, size):
    maps = np.random.default_rng(8).normal(size=shape).astype(np.float32)
    maps[..., 0] = np.abs(maps[..., 0]) + 0.1  # a positive top-1 maximum to divide by
    shown = cam_utils.display_maps(maps, 0.3, size).numpy()
    expected = seed_display(maps, 0.3, size)
    assert shown.shape == (shape[0], shape[3], *size) and shown.dtype == np.float32
    on_cut = np.abs(expected - 0.3) < 1e-5  # rounding may move these across the cut
    np.testing.assert_allclose(np.where(on_cut, 0, shown), np.where(on_cut, 0, expected),
                               rtol=1e-5, atol=1e-6)
    assert (shown > 0).any() and (shown == 0).any()  # the cut ran and kept something


def test_display_maps_of_an_image_without_positive_top_1_evidence_are_zero():
    maps = np.ones((2, 3, 3, 2), np.float32)
    maps[1, ..., 0] = -1.0  # top-1 maximum <= 0: that image's maps become 0
    shown = cam_utils.display_maps(maps, 0.3, (6, 6)).numpy()
    np.testing.assert_array_equal(shown[1], 0.0)
    np.testing.assert_allclose(shown[0], 1.0, rtol=1e-6)


@pytest.mark.parametrize("source, target, block, taps", [
    (10, 320, 32, 3), (7, 224, 32, 3), (5, 12, 3, 3), (3, 7, 1, 2), (10, 375, 25, 3),
    (3, 101, 1, 2),
    (6, 3, 1, 2), (1, 5, 5, 1)])
def test_resize_blocks_regroup_the_interpolation_matrix(source, target, block, taps):
    """Each block of output pixels reads `taps` input pixels; putting pick and weights back
    together gives the 1-D resize matrix itself."""
    pick, weights = cam_utils.resize_blocks(source, target)
    assert weights.shape == (target // block, taps, block)
    rebuilt = np.einsum("jns,jnc->jsc", weights,
                        pick.reshape(target // block, taps, source)).reshape(target, source)
    np.testing.assert_allclose(rebuilt, cam_utils.interpolation_matrix(source, target).numpy(),
                               rtol=0, atol=1e-7)


@pytest.mark.parametrize("shape, size, k", [((3, 4, 5, 8), (12, 20), 2),
                                            ((1, 10, 10, 6), (320, 320), 5)])
def test_top_k_cam_maps_are_top_k_then_cams_then_display(shape, size, k):
    """The compiled figure path equals its steps run one by one, including the order of
    tied classes (image 0's probabilities are all equal)."""
    rng = np.random.default_rng(9)
    features = rng.uniform(size=shape).astype(np.float32)
    weights = rng.normal(size=(shape[-1], 7)).astype(np.float32)
    probs = tf.nn.softmax(features.mean(axis=(1, 2)) @ weights).numpy()
    probs[0] = 1 / 7
    shown = cam_utils.top_k_cam_maps(features, weights, probs, k, 0.3, size)
    top_probs, classes = cam_utils.top_k_classes(probs, k)
    low_res = cam_utils.cams_for_classes(features, weights, classes)
    np.testing.assert_array_equal(shown["classes"].numpy(), classes.numpy())
    np.testing.assert_array_equal(shown["classes"].numpy()[0], np.arange(k))
    np.testing.assert_allclose(shown["probs"].numpy(), top_probs.numpy())
    np.testing.assert_allclose(shown["low_res"].numpy(), low_res.numpy(), rtol=1e-5,
                               atol=1e-6)
    expected = cam_utils.display_maps(low_res, 0.3, size).numpy()
    on_cut = np.abs(expected - 0.3) < 1e-5
    np.testing.assert_allclose(np.where(on_cut, 0, shown["maps"].numpy()),
                               np.where(on_cut, 0, expected), rtol=1e-5, atol=1e-6)
    assert shown["maps"].shape == (shape[0], k, *size) and (expected > 0).any()
