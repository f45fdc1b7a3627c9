"""Model structure and the training loss, without any downloaded weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cam_models
import cam_utils
import train_cam
from cam_config import CamError


def test_vgg19_gap_structure_at_320():
    model = cam_models.build_model("vgg19", 320, 10)
    assert isinstance(model.get_layer("vgg19"), keras.Model)  # nested, as in the seed
    assert isinstance(model.get_layer("gap"), keras.layers.GlobalAveragePooling2D)
    head = model.get_layer("classifier")
    assert head.use_bias is False and head.activation is keras.activations.softmax
    assert tuple(head.kernel.shape) == (512, 10)
    features, probs = cam_models.feature_model(model).outputs
    assert tuple(features.shape[1:]) == (10, 10, 512) and tuple(probs.shape[1:]) == (10,)


def test_small_vgg_keeps_a_16x16_map_at_64_px():
    model = cam_models.build_model("small_vgg", 64, 10)
    features, _ = cam_models.feature_model(model).outputs
    assert tuple(features.shape[1:]) == (16, 16, cam_models.SMALL_VGG_WIDTHS[-1])
    assert any(isinstance(layer, keras.layers.BatchNormalization)
               for layer in model.get_layer("small_vgg").layers)


def test_vgg19_preprocessing_is_inside_the_model():
    """RGB [0, 255] in, BGR minus the ImageNet means into the backbone (Keras' vgg19)."""
    model = cam_models.build_model("vgg19", 32, 3)
    pixel = np.array([[[[200.0, 100.0, 50.0]]]], np.float32)
    out = model.get_layer("preprocess")(pixel).numpy().ravel()
    np.testing.assert_allclose(out, [50 - 103.939, 100 - 116.779, 200 - 123.68], rtol=1e-5)


def test_feature_model_reproduces_probabilities_from_cams():
    model = cam_models.build_model("small_vgg", 32, 4)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    features, probs = cam_models.feature_model(model)(images)
    logits = np.mean(features.numpy(), axis=(1, 2)) @ cam_models.class_weights(model).numpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_training_loss_is_cross_entropy_of_true_labels():
    """Guards the seed's cce(pred, labels) swap: Keras' loss must be -sum(y log p)."""
    keras.utils.set_random_seed(0)
    model = cam_models.build_model("small_vgg", 32, 5)
    train_cam.compile_model(model, 1e-3)
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    labels = np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 0]]
    probs = model.predict(images, verbose=0)
    expected = -np.mean(np.sum(labels * np.log(probs), axis=1))
    swapped = -np.mean(np.sum(probs * np.log(np.clip(labels, 1e-7, 1)), axis=1))
    result = model.evaluate(images, labels, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-4)
    assert abs(result["loss"] - swapped) > 0.5
    assert result["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == labels.argmax(1)))


def test_bad_backbone_and_size_are_rejected():
    with pytest.raises(CamError, match="unknown BACKBONE 'resnet'"):
        cam_models.build_model("resnet", 64, 10)
    with pytest.raises(CamError, match="IMAGE_SIZE=16 is below vgg19's minimum of 32"):
        cam_models.build_model("vgg19", 16, 10)


def test_missing_imagenet_weights_name_the_file_and_folder(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid: None -- offline")

    monkeypatch.setattr("keras.src.applications.vgg19.file_utils.get_file", offline)
    with pytest.raises(CamError) as error:
        cam_models.build_model("vgg19", 32, 10, weights="imagenet")
    assert cam_models.VGG19_WEIGHTS_FILE in str(error.value)
    assert "~/.keras/models/" in str(error.value)


@pytest.mark.parametrize("gpus, bf16, expected", [
    (["GPU:0"], True, "mixed_float16"), ([], True, "mixed_bfloat16"), ([], False, "float32")])
def test_auto_precision_follows_the_hardware(monkeypatch, gpus, bf16, expected):
    monkeypatch.setattr(train_cam.tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(train_cam, "cpu_has_bfloat16", lambda: bf16)
    assert train_cam.precision_policy("auto") == expected
    assert train_cam.precision_policy("float32") == "float32"
    with pytest.raises(CamError, match="MIXED_PRECISION='half'"):
        train_cam.precision_policy("half")


def test_mixed_precision_keeps_softmax_and_cams_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = cam_models.build_model("small_vgg", 32, 4)
        images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
        features, probs = cam_models.feature_model(model)(images)
        cams = cam_utils.class_activation_maps(features, cam_models.class_weights(model))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert features.dtype == "bfloat16"
    assert probs.dtype == "float32" and cams.dtype == "float32"
    assert np.isfinite(cams.numpy()).all()
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-6)
