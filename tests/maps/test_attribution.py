"""The input-resolution methods of camlab/maps/attribution.py and camlab/maps/perturbation.py, each
against tf-keras-vis (SmoothGrad) or a NumPy restatement of its paper's formula."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from camlab.core import randomness, settings
from camlab.errors import CamError
from camlab.maps import attribution, methods
from camlab.networks import classifier, models

ON_INPUT = [name for name, method in methods.REGISTRY.items() if method.on_input]


@pytest.fixture(scope="module")
def small():
    """small_vgg at 16 px with random weights, 4 classes (a N(0, 30^2) head, so that the
    class scores differ), 3 random images and 2 classes of each."""
    keras.utils.set_random_seed(0)
    model = classifier.explain(models.build_model("small_vgg", 16, 4))
    kernel = model.cam_kernel
    kernel.assign(30 * np.random.default_rng(0).normal(size=kernel.shape).astype(np.float32))
    images = np.random.default_rng(1).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    classes = tf.constant([[0, 1], [2, 3], [1, 2]], tf.int32)
    return model, images, model.features(images)[0], classes


@pytest.fixture(autouse=True)
def chunks_of_attribution_batch(monkeypatch):
    """The tests' small images in passes of exactly `attribution_batch` inputs, as 224 px
    ones go, so that their chunking is exercised."""
    monkeypatch.setattr("camlab.maps.method_spec.ATTRIBUTION_PIXELS", 1)


def test_smaller_inputs_go_more_at_a_time(small, monkeypatch):
    """32 inputs of 224 px a pass, 12 x 32 of 64 px, never fewer than 32; the maps do not
    depend on the passes (Score-CAM's SCORECAM_BATCH counts the same way)."""
    monkeypatch.setattr("camlab.maps.method_spec.ATTRIBUTION_PIXELS", 224 * 224)
    options = methods.Options(attribution_batch=32)
    assert [options.inputs_per_pass(side, side) for side in (224, 64, 300)] == [32, 384, 32]
    model, images, _, classes = small
    monkeypatch.setattr("camlab.maps.method_spec.ATTRIBUTION_PIXELS", 2 * 16 * 16)
    assert options.inputs_per_pass(16, 16) == 64
    # Occlusion: a 4 px square in steps of 4 px, 16 places an image (8 passes of 2), not
    # the default 225 (113 passes): the passes are what is compared, not their number.
    few = {"noise_samples": 4, "rise_masks": 24, "occlusion_patch": 0.25,
           "occlusion_stride": 0.25}
    for name in ("smoothgrad", "rise", "occlusion", "scorecam"):
        np.testing.assert_allclose(
            maps_of(name, model, images, classes, attribution_batch=1, scorecam_batch=1,
                    **few),  # 2 inputs of 16 px a pass
            maps_of(name, model, images, classes, attribution_batch=64, scorecam_batch=64,
                    **few), rtol=1e-5, atol=1e-6)


def maps_of(name, model, images, classes, ids=None, **options):
    features, _ = model.features(images)
    return methods.maps_for_classes(name, model, features, classes, images,
                                    options=methods.Options(**options), ids=ids).numpy()


def test_smoothgrad_is_tf_keras_vis_smoothgrad_with_the_same_noise(small, monkeypatch):
    """tf-keras-vis draws its noise with np.random.normal(0, sigma, (samples, batch, H, W,
    3)), sigma = 0.15 x each image's max - min; handed our standard normal draws, its
    Saliency(smooth_samples=N) must give our maps, class by class."""
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    model, images, _, classes = small
    samples, ids = 4, np.array([7, 3, 11])
    draws = randomness.normal(0, np.tile(ids, samples), "smoothgrad", images.shape[1:],
                              draws=np.repeat(np.arange(samples), len(ids)))
    unit = draws.numpy().reshape(samples, *images.shape)
    monkeypatch.setattr(np.random, "normal", lambda loc, scale, size: (
        loc + np.asarray(scale) * unit).astype(np.float32))
    ours = maps_of("smoothgrad", model, images, classes, ids, noise_samples=samples,
                   attribution_batch=5)
    tool = Saliency(model.source, model_modifier=ReplaceToLinear(), clone=True)
    for column in range(classes.shape[1]):
        theirs = np.asarray(tool(CategoricalScore(list(classes.numpy()[:, column])), images,
                                 smooth_samples=samples, smooth_noise=0.15,
                                 normalize_map=False))
        assert theirs.max() > 0
        np.testing.assert_allclose(ours[..., column], theirs, rtol=1e-4,
                                   atol=1e-4 * theirs.max())


def test_smoothgrad_without_noise_is_saliency(small):
    model, images, _, classes = small
    np.testing.assert_allclose(maps_of("smoothgrad", model, images, classes,
                                       noise_samples=3, noise_level=0.0),
                               maps_of("saliency", model, images, classes),
                               rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("name, options", [
    ("smoothgrad", {"noise_samples": 4}), ("rise", {"rise_masks": 24})])
def test_seeded_maps_are_an_images_own_in_any_batch(small, name, options):
    """The same image with the same id gets the same map alone or among others, in any
    chunks; another id (SmoothGrad's noise) or SEED (RISE's masks) changes it."""
    model, images, _, classes = small
    together = maps_of(name, model, images, classes, [10, 11, 12], attribution_batch=5,
                       **options)
    alone = maps_of(name, model, images[1:2], classes[1:2], [11], attribution_batch=64,
                    **options)
    np.testing.assert_allclose(alone[0], together[1], rtol=1e-5, atol=1e-6 * alone.max())
    if name == "smoothgrad":
        other = maps_of(name, model, images[1:2], classes[1:2], [12], **options)
    else:
        other = maps_of(name, model, images[1:2], classes[1:2], [11], seed=1, **options)
    assert np.abs(other - alone).max() > 0.01 * alone.max()


def tanh_model(rng, height=3, width=4):
    """image -> 1x1 Conv2D(2, tanh) -> "gap" -> "classifier" (3 classes): every logit
    mean_p V[:, c] . tanh(x_p W + b) is smooth, with a gradient written by hand below."""
    inputs = keras.Input((height, width, 3), name="image")
    conv = keras.layers.Conv2D(2, 1, activation="tanh", name="conv")
    dense = keras.layers.Dense(3, activation="softmax", use_bias=False, name="classifier")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D(name="gap")(
        conv(inputs))))
    weights = [rng.normal(0, 0.01, (1, 1, 3, 2)), rng.normal(0, 0.5, 2), rng.normal(0, 1, (2, 3))]
    conv.set_weights(weights[:2])
    dense.set_weights(weights[2:])
    return classifier.explain(model), [w.astype(np.float64) for w in weights]


def tanh_gradient(x, weights, c):
    """d logit_c / d x (n, h, w, 3) of tanh_model, by hand."""
    kernel, bias, head = weights
    kernel = kernel[0, 0]
    slope = 1 - np.tanh(x @ kernel + bias) ** 2  # (n, h, w, 2)
    return (slope * head[:, c]) @ kernel.T / (x.shape[1] * x.shape[2])


def test_integrated_gradients_restated_in_numpy():
    """IG_i = x_i / m sum_{s=1..m} d logit / d x_i at (s / m) x, from black (eq. 1 and its
    Riemann sum), with tanh_model's gradient by hand; the map is max over colour |IG|."""
    model, weights = tanh_model(np.random.default_rng(3))
    images = np.random.default_rng(4).uniform(0, 255, (2, 3, 4, 3))
    classes = np.array([[2, 0], [1, 1]])
    steps = 7
    expected = np.stack([
        images / steps * sum(np.stack([tanh_gradient(s / steps * images[b:b + 1], weights, c)[0]
                                       for b, c in enumerate(classes[:, j])])
                             for s in range(1, steps + 1))
        for j in range(2)], axis=1)  # (batch, k, h, w, 3)
    options = methods.Options(ig_steps=steps, attribution_batch=4)
    ours = attribution.integrated_gradients(model, images, tf.constant(classes), options)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-4, atol=1e-4 * abs(expected).max())
    maps = maps_of("integratedgradients", model, images.astype(np.float32),
                   tf.constant(classes), ig_steps=steps)
    np.testing.assert_allclose(maps, np.abs(expected).max(axis=-1).transpose(0, 2, 3, 1),
                               rtol=1e-4, atol=1e-4 * abs(expected).max())


def test_gradient_input_restated_in_numpy():
    """Gradient x Input: x_i d logit / d x_i, with tanh_model's gradient by hand; the map is
    max over colour |.|; and Integrated Gradients from black in one step is the same."""
    model, weights = tanh_model(np.random.default_rng(5))
    images = np.random.default_rng(6).uniform(0, 255, (2, 3, 4, 3))
    classes = np.array([[0, 2], [1, 0]])
    expected = np.stack([np.stack([images[b] * tanh_gradient(images[b:b + 1], weights, c)[0]
                                   for b, c in enumerate(classes[:, j])])
                         for j in range(2)], axis=1)  # (batch, k, h, w, 3)
    maps = maps_of("gradientinput", model, images.astype(np.float32), tf.constant(classes),
                   attribution_batch=3)
    np.testing.assert_allclose(maps, np.abs(expected).max(axis=-1).transpose(0, 2, 3, 1),
                               rtol=1e-4, atol=1e-4 * abs(expected).max())
    one_step = maps_of("integratedgradients", model, images.astype(np.float32),
                       tf.constant(classes), ig_steps=1)
    np.testing.assert_allclose(maps, one_step, rtol=1e-5, atol=1e-6 * abs(expected).max())


def test_integrated_gradients_are_complete_up_to_the_riemann_error(small):
    """Sundararajan et al.'s completeness: the attributions sum to score(x) -
    score(baseline); the right Riemann sum misses by O(1 / steps). From the blurred
    image, on small_vgg (from black it is exact: that network is positively homogeneous)."""
    model, images, _, classes = small
    start = attribution.ig_baseline(tf.constant(images), "blur")
    gap = (tf.gather(model.model(images), classes, batch_dims=1)
           - tf.gather(model.model(start), classes, batch_dims=1)).numpy()
    errors = []
    for steps in (50, 200):
        options = methods.Options(ig_steps=steps, ig_baseline="blur", attribution_batch=64)
        total = attribution.integrated_gradients(model, images, classes, options).numpy()
        errors.append(np.abs(total.sum(axis=(2, 3, 4)) - gap).max() / np.abs(gap).max())
    assert errors[0] < 0.02 and errors[1] < errors[0] / 2, errors


def relu_zoo(rng):
    """Every kind of ReLU guided backpropagation must find, all 1x1 so that the backward
    pass is a few matrix products: Conv2D(activation="relu"), Dense then ReLU(max_value=6),
    Dense(activation="relu"), Conv2D then keras.ops.relu; then GAP and the classifier."""
    inputs = keras.Input((3, 4, 3), name="image")
    layers = [keras.layers.Conv2D(4, 1, activation="relu", name="conv_relu"),
              keras.layers.Dense(4, name="dense"), keras.layers.ReLU(6.0, name="relu6"),
              keras.layers.Dense(4, activation="relu", name="dense_relu"),
              keras.layers.Conv2D(4, 1, name="conv")]
    x = inputs
    for layer in layers:
        x = layer(x)
    head = keras.layers.Dense(3, activation="softmax", use_bias=False, name="classifier")
    probs = head(keras.layers.GlobalAveragePooling2D(name="gap")(keras.ops.relu(x)))
    model = keras.Model(inputs, probs)
    scales = [0.02, 1.0, 0.8, 0.8]
    weights = []
    for layer, scale in zip([layers[0], layers[1], layers[3], layers[4]], scales, strict=True):
        kernel, bias = scale * rng.normal(size=(3 if not weights else 4, 4)), 1 + rng.normal(size=4)
        layer.set_weights([kernel.reshape(layer.kernel.shape), bias])
        weights.append((kernel, bias))
    head.set_weights([rng.normal(size=(4, 3))])
    return classifier.explain(model), weights, head.get_weights()[0].astype(np.float64)


def zoo_gradient(x, weights, head, c, guided: bool):
    """d logit_c / d x (h, w, 3) of relu_zoo at one image x, by hand: each ReLU's
    backward pass gates by its input (0 < z, and z < 6 for ReLU6); a guided one also by
    the gradient's sign. Also returns the inputs of the ReLU6."""
    zs, a = [], x.reshape(-1, 3)
    for index, (kernel, bias) in enumerate(weights):
        zs.append(a @ kernel + bias)
        a = np.clip(zs[-1], 0, 6 if index == 1 else None)
    grad = np.broadcast_to(head[:, c] / len(a), a.shape)
    for index in reversed(range(len(weights))):
        z = zs[index]
        gate = (z > 0) & ((z < 6) if index == 1 else True)
        grad = grad * gate * ((grad > 0) if guided else 1)
        grad = grad @ weights[index][0].T
    return grad.reshape(x.shape), zs[1]


def test_guided_backprop_restated_in_numpy():
    rng = np.random.default_rng(8)
    model, weights, head = relu_zoo(rng)
    images = rng.uniform(0, 255, (2, 3, 4, 3))
    classes = np.array([[0, 2], [1, 0]])
    guided, plain = (np.stack([np.stack([
        np.abs(zoo_gradient(images[b], weights, head, c, flag)[0]).max(axis=-1)
        for c in classes[b]], axis=-1) for b in range(2)]) for flag in (True, False))
    relu6_inputs = zoo_gradient(images[0], weights, head, 0, True)[1]
    assert (relu6_inputs > 6).any() and (relu6_inputs < 0).any()  # both gates matter
    assert np.abs(guided - plain).max() > 0.1 * guided.max()  # guiding changes the map
    ours = maps_of("guidedbackprop", model, images.astype(np.float32), tf.constant(classes))
    np.testing.assert_allclose(ours, guided, rtol=1e-4, atol=1e-5 * guided.max())
    unguided = maps_of("saliency", model, images.astype(np.float32), tf.constant(classes))
    np.testing.assert_allclose(unguided, plain, rtol=1e-4, atol=1e-5 * plain.max())


@tf.custom_gradient
def hand_guided_relu(x):
    return tf.nn.relu(x), lambda grad: grad * tf.cast(x > 0, grad.dtype) * tf.cast(
        grad > 0, grad.dtype)


def test_guided_backprop_of_small_vgg_is_a_hand_built_guided_copys_gradient(small):
    """small_vgg (batch norm, max-pools, ReLU layers) copied by hand with each ReLU layer a
    Lambda of a guided ReLU: its input gradient is the guided map."""
    model, images, _, classes = small
    copy = keras.models.clone_model(model.source, clone_function=lambda layer: (
        keras.layers.Lambda(hand_guided_relu, name=layer.name)
        if isinstance(layer, keras.layers.ReLU) else layer.__class__.from_config(
            layer.get_config())))
    copy.set_weights(model.source.get_weights())
    copy.get_layer("classifier").activation = keras.activations.linear
    pixels = tf.constant(images)
    expected = []
    for column in range(classes.shape[1]):
        with tf.GradientTape() as tape:
            tape.watch(pixels)
            score = tf.gather(copy(pixels), classes[:, column], batch_dims=1)
        expected.append(tf.reduce_max(tf.abs(tape.gradient(score, pixels)), axis=-1))
    expected = tf.stack(expected, axis=-1).numpy()
    ours = maps_of("guidedbackprop", model, images, classes)
    assert expected.max() > 0
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5 * expected.max())
    plain = maps_of("saliency", model, images, classes)
    assert np.abs(plain - ours).max() > 0.1 * ours.max()  # guiding changed the map


def test_guided_grad_cam_is_guided_backprop_times_upsampled_grad_cam(small):
    model, images, _, classes = small
    grad_cam = maps_of("gradcam", model, images, classes)  # (3, 4, 4, 2)
    upsampled = tf.image.resize(grad_cam, (16, 16), "bilinear").numpy()
    expected = maps_of("guidedbackprop", model, images, classes) * upsampled
    ours = maps_of("guidedgradcam", model, images, classes)
    assert expected.max() > 0
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6 * expected.max())


@pytest.mark.parametrize("patch, stride, starts", [(0.25, 0.1875, [0, 3, 6, 9, 12]),
                                                   (0.3125, 0.25, [0, 4, 8, 11])])
def test_occlusion_restated_in_numpy(small, patch, stride, starts):
    """Each pixel: the mean over the grey squares covering it of p(x) - p(x occluded),
    squares of round(patch x 16) px every round(stride x 16) px, the last flush with the
    edge."""
    model, images, _, classes = small
    size = round(patch * 16)
    probs = model(images).numpy()
    total, count = np.zeros((3, 16, 16, 2)), np.zeros((16, 16, 1))
    for top in starts:
        for left in starts:
            occluded = images.copy()
            occluded[:, top:top + size, left:left + size] = 127.5
            drop = np.take_along_axis(probs - model(occluded).numpy(), classes.numpy(), 1)
            total[:, top:top + size, left:left + size] += drop[:, None, None]
            count[top:top + size, left:left + size] += 1
    expected = total / count
    ours = maps_of("occlusion", model, images, classes, occlusion_patch=patch,
                   occlusion_stride=stride, attribution_batch=7)
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_rise_restated_in_numpy(small):
    """sum_i p(x * M_i) M_i / (N p1): 7 x 7 cells kept with p1 = 0.5, resized bilinearly
    to 8 x ceil(16 / 7) = 24 px (tf.image.resize), cropped at a shift in [0, 3) per side,
    all drawn from NumPy's generator seeded [SEED, 3] (randomness's "rise" stream)."""
    model, images, _, classes = small
    count, seed = 20, 4
    generator = np.random.default_rng([seed, 3])
    grids = generator.random((count, 7, 7)) < 0.5
    shifts = generator.integers(0, [3, 3], size=(count, 2))
    expected = np.zeros((3, 16, 16, 2))
    for grid, (top, left) in zip(grids, shifts, strict=True):
        large = tf.image.resize(grid[None, ..., None].astype(np.float32), (24, 24))
        mask = large.numpy()[0, top:top + 16, left:left + 16]  # (16, 16, 1)
        p = np.take_along_axis(model(images * mask).numpy(), classes.numpy(), 1)
        expected += p[:, None, None] * mask
    expected /= count * 0.5
    ours = maps_of("rise", model, images, classes, rise_masks=count, seed=seed,
                   attribution_batch=16)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("options, message", [
    ({"noise_samples": 0}, "NOISE_SAMPLES=0 must be at least 1"),
    ({"noise_level": -0.1}, "NOISE_LEVEL=-0.1 must be 0 or more"),
    ({"ig_steps": 0}, "IG_STEPS=0 must be at least 1"),
    ({"ig_baseline": "grey"}, "IG_BASELINE='grey'; choose one of black, blur"),
    ({"occlusion_patch": 0.0}, "OCCLUSION_PATCH=0.0 must be above 0 and at most 1"),
    ({"occlusion_stride": 1.5}, "OCCLUSION_STRIDE=1.5 must be above 0 and at most 1"),
    ({"rise_masks": 0}, "RISE_MASKS=0 must be at least 1"),
    ({"attribution_batch": 0}, "ATTRIBUTION_BATCH=0 must be at least 1"),
    ({"scorecam_batch": 0}, "SCORECAM_BATCH=0 must be at least 1"),
    ({"ablation_batch": 0}, "ABLATION_BATCH=0 must be at least 1"),
    ({"scorecam_max_channels": -1}, "SCORECAM_MAX_CHANNELS=-1 must be 0")])
def test_options_out_of_range_are_one_line_errors(small, options, message):
    """Options.check is the one check of the methods' settings: the scripts call it through
    methods.check_options, and so does every map the library makes."""
    with pytest.raises(CamError, match=message.replace("(", r"\(")):
        methods.Options(**options).check()
    assert methods.Options().check() == methods.Options()
    model, images, features, classes = small
    with pytest.raises(CamError, match=message.replace("(", r"\(")):
        maps_of("cam", model, images, classes, **options)


@pytest.mark.parametrize("name", ON_INPUT)
def test_input_resolution_methods_take_no_layer(small, name):
    with pytest.raises(CamError, match=f'METHOD="{name}" is a map of the input pixels'):
        methods.check_layer(name, small[0], "relu2_2")


def test_every_input_resolution_method_gives_finite_maps_through_top_k_maps(small):
    """As visualize_cam.py calls them: the top-2 classes' display maps at 16 px."""
    model, images, features, _ = small
    _, probs = model.features(images)
    options = methods.Options(noise_samples=2, ig_steps=2, rise_masks=8)
    for name in ON_INPUT:
        shown = methods.top_k_maps(name, model, features, probs, 2, 0.3, (16, 16), images,
                                   options=options)
        assert shown["maps"].shape == (3, 2, 16, 16) and np.isfinite(shown["maps"]).all()
        assert shown["low_res"].shape == (3, 16, 16, 2) and shown["maps"].numpy().max() > 0


@pytest.mark.parametrize("name", ["guidedbackprop", "guidedgradcam"])
def test_guided_methods_refuse_a_model_without_relu(name):
    model, _ = tanh_model(np.random.default_rng(0))
    with pytest.raises(CamError, match=f'METHOD="{name}" does not apply to this model: '
                                       "guided backpropagation changes the backward pass"):
        methods.check_layer(name, model, "")
    assert methods.check_layer("saliency", model, "") == ""


@pytest.mark.parametrize("script", ["evaluate_cam.py", "visualize_cam.py"])
def test_the_scripts_defaults_are_the_methods_defaults(script):
    """Each script's settings block gives every Options field its method_spec default."""
    config = settings.resolve(Path(__file__).resolve().parents[2] / script, [])
    fields = [field.name for field in dataclasses.fields(methods.Options)]
    assert all(name.upper() in config for name in fields if name != "seed"), script
    assert methods.Options.from_config({**config, "SEED": 0}) == methods.Options()
