"""camlab.networks.classifier: a user's Keras model, saved and loaded, gives the maps of a flat
model built here by hand from the same layers, for each shape a researcher's model takes.

The reference maps are computed here, independently of camlab.maps.methods: one forward pass
of the hand-built flat graph under a tape, the class score taken by hand from the Dense
kernel and bias, Grad-CAM = ReLU(sum_c mean_ij(g) A_c) and CAM = A @ W.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from camlab.errors import CamError
from camlab.maps import methods
from camlab.networks import classifier, models, subject
from helpers import nested_vgg16, sequential_cnn, two_outputs

SIZE = 32  # nested_vgg16 (helpers) takes this size too


def images(count: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, SIZE, SIZE, 3)).astype(
        np.float32)


def saved_and_loaded(model: keras.Model, tmp_path, name: str = "model.keras") -> keras.Model:
    path = tmp_path / name
    model.save(path)
    return subject.load_model_file(path)


def reference_maps(to_maps, to_scores, batch: np.ndarray, classes: np.ndarray):
    """Grad-CAM of `classes` (batch,) and the activations: `to_maps` images -> A,
    `to_scores` A -> class scores, both hand-built from the model's layers."""
    with tf.GradientTape() as tape:
        activations = to_maps(tf.constant(batch))
        tape.watch(activations)
        scores = to_scores(activations)
        chosen = tf.gather(scores, classes, batch_dims=1)
    grads = tape.gradient(chosen, activations)
    weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1)).numpy(), activations


def our_maps(explained, method: str, batch: np.ndarray, classes: np.ndarray) -> np.ndarray:
    features, _ = explained.features(batch)
    return methods.maps_for_classes(method, explained, features,
                                    tf.constant(classes[:, None], tf.int32), batch)[..., 0].numpy()


def dense_logits(dense):
    """A -> pooled -> the Dense layer's own kernel and bias, whatever its activation."""
    def logits(pooled):
        out = pooled @ dense.kernel
        return out + dense.bias if dense.use_bias else out
    return logits


def chain(*steps):
    """Keras layers (called for inference) and plain functions, one after another."""
    def call(x):
        for step in steps:
            x = step(x, training=False) if isinstance(step, keras.layers.Layer) else step(x)
        return x
    return call


def test_a_nested_vgg16_gives_the_maps_of_its_flat_equivalent(tmp_path):
    loaded = saved_and_loaded(nested_vgg16(), tmp_path)
    vgg = loaded.get_layer("vgg16")
    dense = loaded.get_layer("predictions")
    explained = classifier.explain(loaded)
    assert explained.default_layer == "vgg16/block5_pool"
    assert explained.score == "logit" and explained.probability == "softmax"
    batch, classes = images(), np.array([0, 3, 1])
    flat = chain(loaded.get_layer("scale"), *vgg.layers[1:])
    head = chain(loaded.get_layer("pool"), dense_logits(dense))
    expected, activations = reference_maps(flat, head, batch, classes)
    assert expected.max() > 0
    np.testing.assert_allclose(our_maps(explained, "gradcam", batch, classes), expected,
                               rtol=1e-5, atol=1e-6)
    # CAM applies (GAP -> Dropout -> Dense): A @ W[:, c], bias left out.
    cams = np.einsum("bhwc,cb->bhw", activations.numpy(), dense.kernel.numpy()[:, classes])
    np.testing.assert_allclose(our_maps(explained, "cam", batch, classes), cams,
                               rtol=1e-5, atol=1e-5)
    # A layer inside the nested model, by its path or by its name alone.
    assert explained.layer("block4_conv3") == "vgg16/block4_conv3"
    by_path = methods.maps_for_classes("gradcam", explained, None,
                                       tf.constant(classes[:, None]), batch,
                                       "vgg16/block4_conv3")[..., 0].numpy()
    index = [layer.name for layer in vgg.layers].index("block4_conv3")
    deep, _ = reference_maps(chain(loaded.get_layer("scale"), *vgg.layers[1:index + 1]),
                             chain(*vgg.layers[index + 1:], loaded.get_layer("pool"),
                                   dense_logits(dense)), batch, classes)
    np.testing.assert_allclose(by_path, deep, rtol=1e-5, atol=1e-6)


def test_probabilities_are_the_saved_models_own(tmp_path):
    model = nested_vgg16()
    batch = images()
    expected = model(batch).numpy()
    explained = classifier.explain(saved_and_loaded(model, tmp_path))
    np.testing.assert_allclose(explained(batch).numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(explained.features(batch)[1].numpy(), expected, rtol=1e-5,
                               atol=1e-7)


@pytest.mark.parametrize("file_name", ["seq.keras", "seq.h5"])
def test_a_sequential_cnn_saved_either_way(tmp_path, file_name):
    loaded = saved_and_loaded(sequential_cnn(), tmp_path, file_name)
    explained = classifier.explain(loaded)
    assert list(explained.layers) == ["scale", "c1", "p1", "c2"]
    batch, classes = images(seed=1), np.array([4, 0, 2])
    layers = loaded.layers
    expected, activations = reference_maps(chain(*layers[:4]), chain(
        layers[4], dense_logits(layers[5])), batch, classes)
    np.testing.assert_allclose(our_maps(explained, "gradcam", batch, classes), expected,
                               rtol=1e-5, atol=1e-6)
    # With a bias, the spatial mean of CAM is the logit minus the bias.
    cams = our_maps(explained, "cam", batch, classes)
    logits = dense_logits(layers[5])(tf.reduce_mean(activations, axis=[1, 2])).numpy()
    np.testing.assert_allclose(cams.mean(axis=(1, 2)),
                               logits[np.arange(3), classes] - layers[5].bias.numpy()[classes],
                               rtol=1e-4, atol=1e-5)


def test_rescaling_and_normalization_inside_the_model(tmp_path):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = keras.layers.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.04, 0.05, 0.06],
                                   name="norm")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    loaded = saved_and_loaded(keras.Model(inputs, outputs), tmp_path)
    explained = classifier.explain(loaded)
    assert explained.default_layer == "conv"
    batch, classes = images(seed=2), np.array([2, 1, 0])
    by_hand = chain(loaded.get_layer("rescale"), loaded.get_layer("norm"),
                    loaded.get_layer("conv"))
    # Normalization by hand: (x - mean) / sqrt(variance).
    scaled = batch / 255
    normalised = (scaled - [0.5, 0.4, 0.3]) / np.sqrt([0.04, 0.05, 0.06])
    np.testing.assert_allclose(loaded.get_layer("norm")(scaled).numpy(), normalised,
                               rtol=1e-5, atol=1e-5)
    expected, _ = reference_maps(by_hand, chain(loaded.get_layer("gap"),
                                                dense_logits(loaded.get_layer("out"))),
                                 batch, classes)
    np.testing.assert_allclose(our_maps(explained, "gradcam", batch, classes), expected,
                               rtol=1e-5, atol=1e-6)


def test_a_sigmoid_unit_explains_the_positive_class_by_its_logit(tmp_path):
    """One sigmoid unit z: class 1 is scored by z, class 0 by -z (its own log-odds); the
    probabilities are 1 - sigmoid(z) and sigmoid(z)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="out")(x)
    model = keras.Model(inputs, outputs)
    batch = images(seed=3)
    positive = model(batch).numpy()[:, 0]
    loaded = saved_and_loaded(model, tmp_path)
    explained = classifier.explain(loaded)
    assert explained.num_classes == 2 and explained.probability == "sigmoid"
    np.testing.assert_allclose(explained(batch).numpy(),
                               np.stack([1 - positive, positive], axis=1), rtol=1e-5,
                               atol=1e-6)
    dense = loaded.get_layer("out")
    to_maps = loaded.get_layer("conv")
    for sign, column in ((1, 1), (-1, 0)):
        expected, activations = reference_maps(
            to_maps, chain(loaded.get_layer("gap"), lambda p, s=sign: s * dense_logits(dense)(p)),
            batch, np.zeros(3, np.int32))
        np.testing.assert_allclose(our_maps(explained, "gradcam", batch,
                                            np.full(3, column)), expected, rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(
            our_maps(explained, "cam", batch, np.full(3, column)),
            sign * np.einsum("bhwc,c->bhw", activations.numpy(), dense.kernel.numpy()[:, 0]),
            rtol=1e-5, atol=1e-5)


def test_a_flatten_dense_head_refuses_cam_and_gives_grad_cam(tmp_path):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    loaded = saved_and_loaded(keras.Model(inputs, outputs), tmp_path)
    explained = classifier.explain(loaded)
    with pytest.raises(CamError, match="CAM needs the head to be exactly "
                                       "GlobalAveragePooling2D -> Dense.*reads Dense"):
        methods.check_layer("cam", explained, "")
    batch, classes = images(seed=4), np.array([0, 1, 2])
    expected, _ = reference_maps(loaded.get_layer("conv"), chain(
        loaded.get_layer("flat"), loaded.get_layer("hidden"),
        dense_logits(loaded.get_layer("out"))), batch, classes)
    assert expected.max() > 0
    np.testing.assert_allclose(our_maps(explained, "gradcam", batch, classes), expected,
                               rtol=1e-5, atol=1e-6)


def test_two_outputs_one_chosen_by_output(tmp_path):
    loaded = saved_and_loaded(two_outputs(), tmp_path)
    with pytest.raises(CamError, match="the model has 2 outputs; choose the one to explain "
                                       "with OUTPUT, one of kind, size"):
        classifier.explain(loaded)
    with pytest.raises(CamError, match="OUTPUT='colour' is not an output of the model"):
        classifier.explain(loaded, output="colour")
    explained = classifier.explain(loaded, output="size")
    assert explained.output_name == "size" and explained.num_classes == 2
    assert list(explained.layers) == ["shared", "size_conv"]  # only the path to "size"
    batch, classes = images(seed=5), np.array([1, 0, 1])
    expected, _ = reference_maps(chain(loaded.get_layer("shared"),
                                       loaded.get_layer("size_conv")),
                                 chain(loaded.get_layer("size_gap"),
                                       dense_logits(loaded.get_layer("size"))), batch, classes)
    np.testing.assert_allclose(our_maps(explained, "gradcam", batch, classes), expected,
                               rtol=1e-5, atol=1e-6)
    assert classifier.explain(loaded, output="1").output_name == "size"


@keras.saving.register_keras_serializable(package="camlab_tests")
class SoftmaxOfItsOwn(keras.layers.Layer):
    """A softmax the graph does not expose as one: its scores are log-probabilities."""

    def call(self, x):
        return keras.ops.softmax(x)


def test_scores_are_logits_where_exposed_else_log_probabilities(tmp_path):
    keras.utils.set_random_seed(6)
    inputs = keras.Input((SIZE, SIZE, 3))
    # Pixels scaled to [0, 1]: the softmax must not saturate, where log p has no gradient.
    features = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(
        keras.layers.Rescaling(1 / 255, name="scale")(inputs))
    logits = keras.layers.Dense(3, name="logits")(
        keras.layers.GlobalAveragePooling2D(name="gap")(features))
    batch, classes = images(seed=6), np.array([0, 2, 1])
    exposed = classifier.explain(saved_and_loaded(
        keras.Model(inputs, keras.layers.Softmax(name="probs")(logits)), tmp_path, "a.keras"))
    hidden = classifier.explain(saved_and_loaded(
        keras.Model(inputs, SoftmaxOfItsOwn(name="probs")(logits)), tmp_path, "b.keras"))
    assert exposed.score == "logit" and hidden.score == "log-probability"
    assert exposed.cam_kernel is not None and hidden.cam_kernel is None
    source = exposed.source
    to_maps = chain(source.get_layer("scale"), source.get_layer("conv"))
    gap = source.get_layer("gap")
    as_logits = chain(gap, dense_logits(source.get_layer("logits")))
    expected, _ = reference_maps(to_maps, as_logits, batch, classes)
    np.testing.assert_allclose(our_maps(exposed, "gradcam", batch, classes), expected,
                               rtol=1e-5, atol=1e-6)
    expected_log, _ = reference_maps(to_maps, lambda a: tf.nn.log_softmax(as_logits(a)),
                                     batch, classes)
    assert not np.allclose(expected, expected_log, rtol=0.01)
    np.testing.assert_allclose(our_maps(hidden, "gradcam", batch, classes), expected_log,
                               rtol=1e-4, atol=1e-6)


def test_models_that_are_not_image_classifiers_are_refused():
    inputs = keras.Input((SIZE, SIZE, 3))
    mlp = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(inputs)))
    with pytest.raises(CamError, match="no convolutional layer"):
        classifier.explain(mlp)
    segmenter = keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(
        keras.layers.Conv2D(4, 3)(inputs)))
    with pytest.raises(CamError, match=r"output has shape \(None, 30, 30, 2\); a classifier's "
                                       r"is \(batch, classes\)"):
        classifier.explain(segmenter)
    grey_input = keras.Input((SIZE, SIZE, 1))
    grey = keras.Model(grey_input, keras.layers.Dense(2)(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(grey_input))))
    with pytest.raises(CamError, match="takes 1-channel images"):
        classifier.explain(grey)


def test_a_dynamic_input_takes_the_image_size_setting():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    explained = classifier.explain(keras.Model(inputs, keras.layers.Dense(2)(x)), 48)
    assert explained.image_size == 48
    assert tuple(explained.layers["conv"].shape[1:3]) == (46, 46)


@pytest.mark.parametrize("mode, expected", [
    ("caffe", lambda x: keras.applications.vgg16.preprocess_input(x.copy())),
    ("tf", lambda x: keras.applications.mobilenet_v2.preprocess_input(x.copy())),
    ("torch", lambda x: keras.applications.imagenet_utils.preprocess_input(x.copy(),
                                                                           mode="torch")),
    ("unit", lambda x: x / 255), ("none", lambda x: x)])
def test_preprocess_is_keras_applications_own(mode, expected):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = models.preprocessing(mode, inputs)
    batch = images(2, seed=7)
    np.testing.assert_allclose(keras.Model(inputs, x)(batch).numpy(), expected(batch),
                               rtol=1e-5, atol=1e-4)
