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
