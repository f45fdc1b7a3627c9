"""CAM arithmetic against hand-computed values and a per-image, per-class reference loop."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import cam_models
import cam_utils


def seed_loop_maps(features, weights, probs, k, threshold, size):
    """The seed post's loop, in numpy and TF: one image and one class at a time."""
    rows = []
    for i in range(features.shape[0]):
        order = np.argsort(probs[i])[::-1][:k]
        best = features[i] @ weights[:, order[0]]
        row = []
        for c in order:
            cam = (features[i] @ weights[:, c])[..., None]
            up = tf.image.resize(cam, size).numpy()[..., 0] / best.max()
            up[up < threshold] = 0.0
            row.append(up)
        rows.append(np.stack(row))
    return np.stack(rows)


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


def test_all_zero_features_give_zero_maps():
    features = np.zeros((2, 3, 3, 4), np.float32)
    weights = np.random.default_rng(2).normal(size=(4, 5)).astype(np.float32)
    probs = np.full((2, 5), 0.2, np.float32)
    shown = cam_utils.top_k_maps(features, weights, probs, 3, 0.3, (6, 6))
    np.testing.assert_array_equal(shown["maps"].numpy(), np.zeros((2, 3, 6, 6)))


def test_threshold_keeps_values_at_and_above_the_cut():
    maps = np.array([0.0, 0.29, 0.3, 0.7, 1.2], np.float32)
    np.testing.assert_allclose(cam_utils.threshold_maps(maps, 0.3).numpy(),
                               [0, 0, 0.3, 0.7, 1.2])


def test_top_k_classes_orders_by_probability():
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], np.float32)
    values, indices = cam_utils.top_k_classes(probs, 2)
    np.testing.assert_array_equal(indices.numpy(), [[1, 2], [0, 2]])
    np.testing.assert_allclose(values.numpy(), [[0.6, 0.3], [0.5, 0.3]])


@pytest.mark.parametrize("batch, h, w, size", [(1, 4, 4, (16, 16)), (4, 3, 5, (12, 20))])
def test_top_k_maps_match_the_seed_loop(batch, h, w, size):
    rng = np.random.default_rng(3)
    features = rng.uniform(size=(batch, h, w, 8)).astype(np.float32)
    weights = rng.normal(size=(8, 6)).astype(np.float32)
    logits = features.mean(axis=(1, 2)) @ weights
    probs = tf.nn.softmax(logits).numpy()
    shown = cam_utils.top_k_maps(features, weights, probs, 3, 0.3, size)
    expected = seed_loop_maps(features, weights, probs, 3, 0.3, size)
    np.testing.assert_allclose(shown["maps"].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(shown["classes"].numpy(), np.argsort(-probs)[:, :3])
    # Bilinear upsampling interpolates between samples, so the top-1 map stays within 1.
    assert shown["maps"].numpy()[:, 0].max() <= 1.0 + 1e-6


@pytest.mark.parametrize("backbone, size", [("vgg19", 64), ("small_vgg", 32)])
def test_grad_cam_equals_relu_cam_over_area_on_a_nested_backbone(backbone, size):
    keras.utils.set_random_seed(0)
    model = cam_models.build_model(backbone, size, 4)
    images = np.random.default_rng(5).uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    classes = tf.constant([[0, 2], [3, 3], [1, 0]])
    features, _ = cam_models.feature_model(model)(images)
    gradcam = cam_utils.maps_for_classes("gradcam", model, features, classes).numpy()
    cam = cam_utils.maps_for_classes("cam", model, features, classes).numpy()
    height, width = cam.shape[1:3]
    assert np.abs(cam).max() > 0
    np.testing.assert_allclose(gradcam, np.maximum(cam, 0) / (height * width), rtol=1e-4,
                               atol=1e-7)


def test_maps_of_different_classes_differ():
    keras.utils.set_random_seed(1)
    model = cam_models.build_model("small_vgg", 32, 4)
    image = np.random.default_rng(6).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    features, _ = cam_models.feature_model(model)(image)
    for method in cam_utils.METHODS:
        maps = cam_utils.maps_for_classes(method, model, features, tf.constant([[0, 1]]))
        assert not np.allclose(maps[..., 0], maps[..., 1], rtol=0.05)


@pytest.mark.parametrize("shape, size", [((2, 10, 10, 3), (320, 320)), ((1, 3, 5, 2), (7, 12)),
                                         ((3, 4, 4, 1), (4, 4)), ((1, 6, 6, 2), (3, 4))])
def test_upsample_equals_tf_image_resize(shape, size):
    maps = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    expected = tf.image.resize(maps, size, method="bilinear").numpy()
    np.testing.assert_allclose(cam_utils.upsample(maps, size).numpy(), expected, rtol=1e-5,
                               atol=1e-5)
