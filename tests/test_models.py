"""camlab.models: the GAP classifiers, without any downloaded weights."""

from __future__ import annotations

import keras
import numpy as np

import cam_utils
from camlab import models


def test_vgg19_gap_structure_at_320():
    model = models.build_model("vgg19", 320, 10)
    assert isinstance(model.get_layer("vgg19"), keras.Model)  # nested, as in the seed
    assert isinstance(model.get_layer("gap"), keras.layers.GlobalAveragePooling2D)
    head = model.get_layer("classifier")
    assert head.use_bias is False and head.activation is keras.activations.softmax
    assert tuple(head.kernel.shape) == (512, 10)
    features, probs = models.feature_model(model).outputs
    assert tuple(features.shape[1:]) == (10, 10, 512) and tuple(probs.shape[1:]) == (10,)


def test_small_vgg_keeps_a_16x16_map_at_64_px():
    model = models.build_model("small_vgg", 64, 10)
    features, _ = models.feature_model(model).outputs
    assert tuple(features.shape[1:]) == (16, 16, models.SMALL_VGG_WIDTHS[-1])
    assert any(isinstance(layer, keras.layers.BatchNormalization)
               for layer in model.get_layer("small_vgg").layers)


def test_vgg19_preprocessing_is_inside_the_model():
    """RGB [0, 255] in, BGR minus the ImageNet means into the backbone (Keras' vgg19)."""
    model = models.build_model("vgg19", 32, 3)
    pixel = np.array([[[[200.0, 100.0, 50.0]]]], np.float32)
    out = model.get_layer("preprocess")(pixel).numpy().ravel()
    np.testing.assert_allclose(out, [50 - 103.939, 100 - 116.779, 200 - 123.68], rtol=1e-5)


def test_feature_model_reproduces_probabilities_from_cams():
    model = models.build_model("small_vgg", 32, 4)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    features, probs = models.feature_model(model)(images)
    logits = np.mean(features.numpy(), axis=(1, 2)) @ models.class_weights(model).numpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_mixed_precision_keeps_softmax_and_cams_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.build_model("small_vgg", 32, 4)
        images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
        features, probs = models.feature_model(model)(images)
        cams = cam_utils.class_activation_maps(features, models.class_weights(model))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert features.dtype == "bfloat16"
    assert probs.dtype == "float32" and cams.dtype == "float32"
    assert np.isfinite(cams.numpy()).all()
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-6)
