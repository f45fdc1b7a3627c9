"""Frozen graphs: the numbers of the unfrozen model to rounding, and never stale weights."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from camlab.networks.frozen import Frozen


def small_model() -> keras.Model:
    """conv -> batch norm (non-trivial statistics) -> ReLU -> GAP -> dense softmax."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, use_bias=False),
                              keras.layers.BatchNormalization(), keras.layers.ReLU(),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    norm = model.layers[1]
    rng = np.random.default_rng(0)
    norm.moving_mean.assign(rng.normal(size=4).astype(np.float32))
    norm.moving_variance.assign(rng.uniform(0.5, 2, size=4).astype(np.float32))
    norm.gamma.assign(rng.uniform(0.5, 2, size=4).astype(np.float32))
    return model


def test_frozen_gives_the_models_probabilities_for_any_batch_size():
    model = small_model()
    forward = Frozen(lambda images: model(images, training=False),
                     tf.TensorSpec([None, 8, 8, 3], tf.float32))
    images = tf.constant(np.random.default_rng(1).random((5, 8, 8, 3)), tf.float32)
    for count in (5, 2):  # one trace serves both
        expected = model(images[:count], training=False).numpy()
        got = forward(images[:count]).numpy()
        assert got.shape == (count, 3)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_frozen_follows_weights_changed_after_freezing():
    model = small_model()
    forward = Frozen(lambda images: model(images, training=False),
                     tf.TensorSpec([None, 8, 8, 3], tf.float32))
    images = tf.constant(np.random.default_rng(2).random((4, 8, 8, 3)), tf.float32)
    before = forward(images).numpy()
    dense = model.layers[-1]
    dense.kernel.assign(dense.kernel.numpy() * -3.0)  # e.g. a notebook trains on
    after = forward(images).numpy()
    assert np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(after, model(images, training=False).numpy(), rtol=1e-5,
                               atol=1e-7)


def test_a_graph_that_cannot_be_frozen_runs_traced(monkeypatch):
    """Where TensorFlow cannot make the weights constants, the traced function runs as
    it is: the same numbers, no error."""
    import camlab.networks.frozen

    def refuse(function):
        raise ValueError("cannot convert a lookup table")

    monkeypatch.setattr(camlab.networks.frozen, "convert_variables_to_constants_v2", refuse)
    model = small_model()
    forward = Frozen(lambda images: model(images, training=False),
                     tf.TensorSpec([None, 8, 8, 3], tf.float32))
    images = tf.constant(np.random.default_rng(3).random((3, 8, 8, 3)), tf.float32)
    np.testing.assert_allclose(forward(images).numpy(), model(images, training=False).numpy(),
                               rtol=1e-6, atol=1e-7)


def test_a_call_never_formats_its_inputs(monkeypatch):
    """Calling a frozen function as f(*args) fails to bind, writes every input into an
    error message and retries: 8 ms a call on 8 small images. Frozen calls it flat."""
    model = small_model()
    forward = Frozen(lambda images: model(images, training=False),
                     tf.TensorSpec([None, 8, 8, 3], tf.float32))
    images = tf.constant(np.random.default_rng(4).random((2, 8, 8, 3)), tf.float32)
    expected = forward(images).numpy()

    def refuse(self):
        raise AssertionError("an input was formatted as text")

    monkeypatch.setattr(type(images), "__repr__", refuse)
    np.testing.assert_array_equal(forward(images).numpy(), expected)
    monkeypatch.undo()
    with_numpy = forward(np.asarray(images))  # NumPy arrays are converted, as before
    np.testing.assert_array_equal(with_numpy.numpy(), expected)
