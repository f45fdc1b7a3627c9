"""camlab.methods: Grad-CAM against its CAM identity, and the figure's top-k maps against
the seed post's loop (camlab.reference)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from camlab import methods, models, reference


def model_with_head(weights: np.ndarray) -> keras.Model:
    """A small_vgg GAP model whose classifier kernel is `weights` (64, classes)."""
    model = models.build_model("small_vgg", 16, weights.shape[1])
    models.class_weights(model).assign(weights)
    return model


def test_all_zero_features_give_zero_maps():
    features = np.zeros((2, 3, 3, 64), np.float32)
    model = model_with_head(np.random.default_rng(2).normal(size=(64, 5)).astype(np.float32))
    probs = np.full((2, 5), 0.2, np.float32)
    shown = methods.top_k_maps("cam", model, features, probs, 3, 0.3, (6, 6))
    np.testing.assert_array_equal(shown["maps"].numpy(), np.zeros((2, 3, 6, 6)))


@pytest.mark.parametrize("batch, h, w, size", [(1, 4, 4, (16, 16)), (4, 3, 5, (12, 20))])
def test_top_k_maps_match_the_seed_loop(batch, h, w, size):
    rng = np.random.default_rng(3)
    features = rng.uniform(size=(batch, h, w, 64)).astype(np.float32)
    weights = rng.normal(size=(64, 6)).astype(np.float32) / 4
    logits = features.mean(axis=(1, 2)) @ weights
    probs = tf.nn.softmax(logits).numpy()
    shown = methods.top_k_maps("cam", model_with_head(weights), features, probs, 3, 0.3, size)
    expected = reference.seed_loop_maps(features, weights, probs, 3, 0.3, size)
    np.testing.assert_allclose(shown["maps"].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(shown["classes"].numpy(), np.argsort(-probs)[:, :3])
    # Bilinear upsampling interpolates between samples, so the top-1 map stays within 1.
    assert shown["maps"].numpy()[:, 0].max() <= 1.0 + 1e-6


@pytest.mark.parametrize("backbone, size", [("vgg19", 64), ("small_vgg", 32)])
def test_grad_cam_equals_relu_cam_over_area_on_a_nested_backbone(backbone, size):
    keras.utils.set_random_seed(0)
    model = models.build_model(backbone, size, 4)
    images = np.random.default_rng(5).uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    classes = tf.constant([[0, 2], [3, 3], [1, 0]])
    features, _ = models.feature_model(model)(images)
    gradcam = methods.maps_for_classes("gradcam", model, features, classes).numpy()
    cam = methods.maps_for_classes("cam", model, features, classes).numpy()
    height, width = cam.shape[1:3]
    assert np.abs(cam).max() > 0
    np.testing.assert_allclose(gradcam, np.maximum(cam, 0) / (height * width), rtol=1e-4,
                               atol=1e-7)


def test_maps_of_different_classes_differ():
    keras.utils.set_random_seed(1)
    model = models.build_model("small_vgg", 32, 4)
    image = np.random.default_rng(6).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    features, _ = models.feature_model(model)(image)
    for method in methods.METHODS:
        maps = methods.maps_for_classes(method, model, features, tf.constant([[0, 1]]))
        assert not np.allclose(maps[..., 0], maps[..., 1], rtol=0.05)


def test_grad_cam_of_the_layer_feeding_gap_is_the_default_path():
    """grad_cams_at_layer (a forward pass per class under a tape) on GAP's own input gives
    the cheap default (the head re-applied to the features), exactly as it should."""
    keras.utils.set_random_seed(2)
    model = models.build_model("small_vgg", 32, 4)
    images = np.random.default_rng(7).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    classes = tf.constant([[0, 2], [3, 3], [1, 0]])
    features, _ = models.feature_model(model)(images)
    default = methods.maps_for_classes("gradcam", model, features, classes).numpy()
    at_layer = methods.grad_cams_at_layer(model, "relu3_2", images, classes).numpy()
    assert np.abs(default).max() > 0
    np.testing.assert_allclose(at_layer, default, rtol=1e-4, atol=1e-7)
    assert methods.check_layer("gradcam", model, "relu3_2") == ""  # named, still the default
    assert methods.layer_name(model, "") == "relu3_2"
    earlier = methods.maps_for_classes("gradcam", model, features, classes, images, "conv2_1")
    assert tuple(earlier.shape) == (3, 16, 16, 2)
