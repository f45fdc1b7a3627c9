"""camlab.networks.models: the GAP classifiers, without any downloaded weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import cam_utils
from camlab.core import runs
from camlab.errors import CamError
from camlab.networks import classifier, models
from helpers import KERAS_VGG19_MD5, register_for_vgg19


def test_vgg19_gap_structure_at_320():
    model = models.build_model("vgg19", 320, 10)
    # One flat graph, Keras' own layer names: the feature maps are block5_conv4's output.
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    assert model.get_layer("gap").input is model.get_layer("block5_pool").output
    assert isinstance(model.get_layer("gap"), keras.layers.GlobalAveragePooling2D)
    head = model.get_layer("classifier")
    assert head.use_bias is False and head.activation is keras.activations.softmax
    assert tuple(head.kernel.shape) == (512, 10)
    explained = classifier.explain(model)
    assert explained.default_layer == "block5_pool" and explained.num_classes == 10
    assert tuple(explained.layers["block5_pool"].shape[1:]) == (10, 10, 512)


@pytest.mark.parametrize(("name", "channels"), [("small_vgg", 64), ("tiny_vgg", 32)])
def test_small_vgg_keeps_a_16x16_map_at_64_px(name, channels):
    """tiny_vgg is small_vgg's design at half the channels: 8, 16, 32."""
    model = models.build_model(name, 64, 10)
    features = model.get_layer("gap").input
    assert tuple(features.shape[1:]) == (16, 16, channels)
    assert [layer.filters for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D)] == [channels // 4] * 2 + [
                channels // 2] * 2 + [channels] * 2
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)


def test_vgg19_preprocessing_is_inside_the_model():
    """RGB [0, 255] in, BGR minus the ImageNet means into the backbone (Keras' vgg19)."""
    model = models.build_model("vgg19", 32, 3)
    into_backbone = keras.Model(model.input, model.get_layer("preprocess").output)
    pixel = np.full((1, 32, 32, 3), [200.0, 100.0, 50.0], np.float32)
    out = into_backbone(pixel).numpy()[0, 0, 0]
    np.testing.assert_allclose(out, [50 - 103.939, 100 - 116.779, 200 - 123.68], rtol=1e-5)
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(into_backbone(images).numpy(),
                               keras.applications.vgg19.preprocess_input(images.copy()),
                               rtol=1e-5, atol=1e-4)


def test_features_reproduce_the_models_probabilities_from_cams():
    model = models.build_model("small_vgg", 32, 4)
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    expected_probs = model(images).numpy()
    explained = classifier.explain(model)
    features, probs = explained.features(images)
    np.testing.assert_allclose(probs.numpy(), expected_probs, rtol=1e-5, atol=1e-7)
    logits = np.mean(features.numpy(), axis=(1, 2)) @ explained.cam_kernel.numpy()
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_mixed_precision_keeps_softmax_and_cams_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.build_model("small_vgg", 32, 4)
        images = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
        explained = classifier.explain(model)
        features, probs = explained.features(images)
        cams = cam_utils.class_activation_maps(features, explained.cam_kernel)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert features.dtype == "bfloat16"
    assert probs.dtype == "float32" and cams.dtype == "float32"
    assert np.isfinite(cams.numpy()).all()
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1.0, rtol=1e-6)


def test_keras_cache_is_keras_home_models(keras_home):
    assert models.keras_cache_dir() == keras_home


def test_vgg19_imagenet_weights_load_from_the_keras_cache_offline(
        keras_home, weight_files, monkeypatch, network_calls):
    source, source_model = weight_files["vgg19"]
    cached = keras_home / models.BACKBONES["vgg19"].weights_file
    cached.write_bytes(source.read_bytes())
    checked = register_for_vgg19(monkeypatch, cached)
    model = models.build_model("vgg19", 32, 10, weights="imagenet")
    assert checked == [KERAS_VGG19_MD5]  # Keras verified the cached file, then loaded it
    loaded = [w for layer in source_model.layers if layer.weights
              for w in model.get_layer(layer.name).get_weights()]
    expected = source_model.get_weights()
    assert len(loaded) == len(expected) == 32
    for got, want in zip(loaded, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert network_calls == []


@pytest.mark.parametrize("kind", ["vgg16", "truncated"])
def test_a_wrong_cached_vgg19_file_is_refused_and_kept(keras_home, weight_files, kind,
                                                       network_calls):
    cached = keras_home / models.BACKBONES["vgg19"].weights_file
    cached.write_bytes(weight_files[kind][0].read_bytes())
    size = cached.stat().st_size
    with pytest.raises(CamError) as error:
        models.build_model("vgg19", 32, 10, weights="imagenet")
    message = str(error.value)
    assert "\n" not in message and str(cached) in message
    assert f"is {size:,} bytes, but Keras expects 80,134,624 bytes" in message
    assert cached.is_file() and network_calls == []  # Keras would have deleted it


@pytest.mark.parametrize("how", ["WEIGHTS=path", "imagenet, hash registered"])
@pytest.mark.parametrize("kind, detail", [("vgg16", "Layer count mismatch"),
                                          ("truncated", "truncated file")])
def test_weights_of_the_wrong_model_or_truncated_give_one_line(
        keras_home, weight_files, monkeypatch, network_calls, how, kind, detail):
    path = weight_files[kind][0]
    if how == "WEIGHTS=path":
        weights = str(path)
    else:  # a wrong file that passes the hash checks: what load_weights then says
        weights, cached = "imagenet", keras_home / models.BACKBONES["vgg19"].weights_file
        cached.write_bytes(path.read_bytes())
        register_for_vgg19(monkeypatch, cached)
        path = cached
    with pytest.raises(CamError) as error:
        models.build_model("vgg19", 32, 10, weights=weights)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path} could not be loaded as vgg19 no-top weights")
    assert detail in message
    assert network_calls == []


def test_no_cached_vgg19_file_offline_says_where_to_put_it(keras_home, network_calls):
    with pytest.raises(CamError) as error:
        models.build_model("vgg19", 32, 10, weights="imagenet")
    message = str(error.value)
    assert network_calls  # Keras tried to download, and the guard refused
    assert "could not download the ImageNet vgg19 weights" in message
    assert ("(80,134,624 bytes, from the keras-applications release on "
            f"storage.googleapis.com) into {keras_home}/") in message
    assert not any(keras_home.iterdir())


def test_a_runs_model_file_starts_the_backbone_and_a_fresh_head(tmp_path):
    """WEIGHTS=<run>/model.keras: every backbone weight (batch norm's statistics too) from
    the file, at another image size and class count; the head starts afresh."""
    keras.utils.set_random_seed(0)
    trained = models.build_model("small_vgg", 32, 4)
    rng = np.random.default_rng(0)
    for weight in trained.weights:
        weight.assign(rng.normal(size=weight.shape).astype(np.float32))
    runs.inference_copy(trained).save(tmp_path / "model.keras")
    started = models.build_model("small_vgg", 48, 3, str(tmp_path / "model.keras"))
    pairs = list(zip(models.backbone_layers(trained), models.backbone_layers(started),
                     strict=True))
    assert sum(len(layer.weights) for layer, _ in pairs) == 30  # 6 convs, 6 batch norms x 4
    for source, layer in pairs:
        for theirs, ours in zip(source.weights, layer.weights, strict=True):
            assert theirs.numpy().tobytes() == ours.numpy().tobytes()
    assert started.get_layer("classifier").kernel.shape == (64, 3)
    with pytest.raises(CamError, match=r"is not a vgg19 GAP model as train_cam.py saves it "
                                       r"\(its layer 2 is conv1_1 \('Conv2D'"):
        models.build_model("vgg19", 32, 3, str(tmp_path / "model.keras"))
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(CamError, match="could not be loaded as a Keras model"):
        models.build_model("small_vgg", 32, 3, str(tmp_path / "broken.keras"))


def test_missing_weights_file_is_named():
    with pytest.raises(CamError, match="WEIGHTS file '/nonexistent/w.h5' not found"):
        models.build_model("vgg19", 32, 10, weights="/nonexistent/w.h5")


APPLICATIONS = [name for name, spec in models.BACKBONES.items() if spec.application]
PREPROCESS_INPUT = {"vgg16": keras.applications.vgg16.preprocess_input,
                    "vgg19": keras.applications.vgg19.preprocess_input,
                    "resnet50": keras.applications.resnet50.preprocess_input,
                    "mobilenet_v2": keras.applications.mobilenet_v2.preprocess_input}


@pytest.fixture(scope="module")
def backbone_models():
    """Each Keras application as a 3-class CAM model at 64 px (2x2 maps), random weights."""
    keras.utils.set_random_seed(0)
    return {name: models.build_model(name, 64, 3) for name in APPLICATIONS}


@pytest.mark.parametrize("name", APPLICATIONS)
def test_every_backbone_is_flat_and_its_cam_averages_to_the_logit(backbone_models, name):
    model = backbone_models[name]
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    probs = model(images)
    explained = classifier.explain(keras.models.clone_model(model))  # explain() edits a model
    explained.model.set_weights(model.get_weights())
    features, _ = explained.features(images)
    assert tuple(features.shape[1:3]) == (2, 2)
    cams = cam_utils.class_activation_maps(features, explained.cam_kernel).numpy()
    logits = cams.mean(axis=(1, 2))
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True), probs.numpy(),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", APPLICATIONS)
def test_every_backbone_trains_one_step(backbone_models, name):
    model = backbone_models[name]
    images = np.random.default_rng(2).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[[0, 2]]
    before = [weight.numpy().copy() for weight in model.trainable_weights]
    optimizer = keras.optimizers.Adam(1e-3)
    with tf.GradientTape() as tape:
        loss = keras.losses.categorical_crossentropy(labels, model(images, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))
    assert np.isfinite(loss.numpy()).all()
    moved = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights,
                                                                strict=True)]
    assert all(moved[:1]) and all(moved[-1:]) and np.mean(moved) > 0.5


@pytest.mark.parametrize("name", sorted(PREPROCESS_INPUT))
def test_preprocessing_is_the_one_the_imagenet_weights_expect(backbone_models, name):
    model = backbone_models[name]
    into_backbone = keras.Model(model.input, model.get_layer("preprocess").output)
    images = np.random.default_rng(3).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(into_backbone(images).numpy(),
                               PREPROCESS_INPUT[name](images.copy()), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", APPLICATIONS)
def test_every_backbone_names_its_weights_file_and_size_offline(name, monkeypatch, keras_home):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid: offline")

    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    spec = models.BACKBONES[name]
    with pytest.raises(CamError) as error:
        models.build_model(name, 32, 3, weights="imagenet")
    assert (f"Put {spec.weights_file} ({spec.weights_size:,} bytes, from the "
            f"keras-applications release on storage.googleapis.com) into {keras_home}/") \
        in str(error.value)
    with pytest.raises(CamError, match=f"IMAGE_SIZE=31 is below {name}'s minimum of 32"):
        models.build_model(name, 31, 3)


def test_flat_call_opens_nested_models_and_keeps_weights_and_names():
    """A functional model holding a Sequential inside a functional model: replayed on a
    new input, every layer joins one flat graph, unchanged."""
    inner = keras.Sequential([keras.layers.Conv2D(4, 3, name="inner_conv"),
                              keras.layers.ReLU(name="inner_relu")], name="inner")
    middle_input = keras.Input((8, 8, 3))
    middle = keras.Model(middle_input, keras.layers.Conv2D(2, 1, name="mid_conv")(
        inner(middle_input)), name="middle")
    outer_input = keras.Input((8, 8, 3))
    nested = keras.Model(outer_input, keras.layers.Flatten(name="flat")(middle(outer_input)))
    images = np.random.default_rng(5).normal(size=(2, 8, 8, 3)).astype(np.float32)
    fresh_input = keras.Input((8, 8, 3))
    flat = keras.Model(fresh_input, models.flat_call(nested, fresh_input))
    assert [layer.name for layer in flat.layers[1:]] == ["inner_conv", "inner_relu",
                                                         "mid_conv", "flat"]
    np.testing.assert_array_equal(flat(images).numpy(), nested(images).numpy())
