"""camlab.methods: each method against tf-keras-vis (the same layer, the same resolution),
the exact identities of a GAP + linear head, and the figure's top-k maps against the seed
post's loop (camlab.reference)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from camlab import methods, metrics, models, reference
from camlab.errors import CamError


def model_with_head(weights: np.ndarray) -> keras.Model:
    """A small_vgg GAP model whose classifier kernel is `weights` (64, classes)."""
    model = models.build_model("small_vgg", 16, weights.shape[1])
    models.class_weights(model).assign(weights)
    return model


@pytest.fixture(scope="module")
def random_vgg():
    """small_vgg at 32 px with random weights, 5 classes, and 3 random images with their
    top-2 classes. The head is N(0, 30^2): the untrained features are ~0.02, and a
    Glorot head would give a flat softmax, where Score-CAM's weights barely differ."""
    keras.utils.set_random_seed(0)
    model = models.build_model("small_vgg", 32, 5)
    kernel = models.class_weights(model)
    kernel.assign(30 * np.random.default_rng(0).normal(size=kernel.shape).astype(np.float32))
    images = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    features, probs = models.feature_model(model)(images)
    classes = np.argsort(-probs.numpy(), axis=1)[:, :2].astype(np.int32)
    logits = (model.get_layer("gap")(features) @ kernel).numpy()
    return model, images, features, classes, logits


def agreement(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """(min rank correlation, max |ours - theirs| / max |theirs|) over paired maps (n, h, w)."""
    correlation = metrics.rank_correlation(ours, theirs).numpy().min()
    difference = np.abs(ours - theirs).max(axis=(1, 2)) / np.abs(theirs).max(axis=(1, 2))
    return float(correlation), float(difference.max())


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
def test_gradient_maps_of_a_gap_linear_head_are_cams(backbone, size):
    """On GAP's input with a linear head, d logit_c / d A_ijk = W[k, c] / (h w) everywhere:
    Grad-CAM = ReLU(A @ W) / (h w). LayerCAM = ReLU(A @ ReLU(W)) / (h w), and since A >= 0
    after a ReLU, = (A @ ReLU(W)) / (h w). Grad-CAM++'s alphas are then constant over the
    positions, so normalised they are 1 / (h w) and w_k = ReLU(W[k, c]) / (h w): the same
    map as LayerCAM."""
    keras.utils.set_random_seed(0)
    model = models.build_model(backbone, size, 4)
    images = np.random.default_rng(5).uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    classes = tf.constant([[0, 2], [3, 3], [1, 0]])
    features, _ = models.feature_model(model)(images)
    kernel = models.class_weights(model).numpy()
    cam = methods.maps_for_classes("cam", model, features, classes).numpy()
    positive_cam = methods.cam_utils.cams_for_classes(features, np.maximum(kernel, 0),
                                                      classes).numpy()
    area = cam.shape[1] * cam.shape[2]
    assert np.abs(cam).max() > 0 and features.numpy().min() >= 0
    assert not np.allclose(np.maximum(cam, 0), positive_cam, rtol=0.05)
    for method, expected in (("gradcam", np.maximum(cam, 0) / area),
                             ("layercam", positive_cam / area),
                             ("gradcam++", positive_cam / area)):
        maps = methods.maps_for_classes(method, model, features, classes).numpy()
        np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-7, err_msg=method)


def test_maps_of_different_classes_differ():
    keras.utils.set_random_seed(1)
    model = models.build_model("small_vgg", 32, 4)
    image = np.random.default_rng(6).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    features, _ = models.feature_model(model)(image)
    for method in methods.METHODS:
        maps = methods.maps_for_classes(method, model, features, tf.constant([[0, 1]]), image)
        assert not np.allclose(maps[..., 0], maps[..., 1], rtol=0.05), method


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


@pytest.mark.parametrize("method", ["gradcam++", "layercam"])
def test_the_layer_feeding_gap_by_name_is_the_default_path(method, random_vgg):
    model, images, features, classes, _ = random_vgg
    default = methods.maps_for_classes(method, model, features, classes, images).numpy()
    named = methods.layer_activations(model, None, images, "relu3_2")
    by_name = methods.maps_for_classes(method, model, named, classes, images,
                                       "relu3_2").numpy()
    assert default.max() > 0
    np.testing.assert_allclose(by_name, default, rtol=1e-5, atol=1e-8)


def tf_keras_vis_maps(method, model, images, classes, layer):
    """tf-keras-vis' low-resolution, unnormalised maps of `classes` (batch,) on `layer`,
    logits as scores (ReplaceToLinear), no layer seeking; saliency at input resolution."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    tools = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "layercam": Layercam,
             "scorecam": Scorecam, "saliency": Saliency}
    tool = tools[method](model, model_modifier=ReplaceToLinear(), clone=True)
    score = CategoricalScore(list(classes))
    if method == "saliency":
        return np.asarray(tool(score, images, normalize_map=False))
    return np.asarray(tool(score, images, penultimate_layer=layer,
                           seek_penultimate_conv_layer=False, expand_cam=False,
                           normalize_cam=False))


@pytest.mark.parametrize("method, layer", [
    ("gradcam", ""), ("gradcam", "relu2_2"), ("gradcam++", ""), ("gradcam++", "relu2_2"),
    ("layercam", ""), ("layercam", "conv2_1")])
def test_maps_agree_with_tf_keras_vis(method, layer, random_vgg):
    """Both libraries on the same layer at its own resolution (tf-keras-vis' expand_cam=False)
    for each of the top-2 classes of 3 images. Deliberate difference: tf-keras-vis'
    Grad-CAM++ weights carry a factor exp(logit) that ours leave out, so ours times
    exp(logit) must equal theirs."""
    model, images, features, classes, logits = random_vgg
    ours = methods.maps_for_classes(method, model, features, classes, images,
                                    layer).numpy()
    for column in range(classes.shape[1]):
        theirs = tf_keras_vis_maps(method, model, images, classes[:, column],
                                   methods.layer_name(model, layer))
        mine = ours[..., column]
        if method == "gradcam++":
            mine = mine * np.exp(np.take_along_axis(logits, classes[:, column:column + 1],
                                                    axis=1))[:, :, None]
        assert mine.shape == theirs.shape and theirs.max() > 0
        correlation, difference = agreement(mine, theirs)
        assert correlation >= 0.999 and difference <= 1e-4, (column, correlation, difference)


def test_every_method_runs_on_vgg19_at_a_shallow_layer_and_by_default():
    keras.utils.set_random_seed(3)
    model = models.build_model("vgg19", 32, 3)
    images = np.random.default_rng(11).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    features, _ = models.feature_model(model)(images)
    classes = tf.constant([[0, 1], [2, 0]])
    for method in methods.METHODS:
        maps = methods.maps_for_classes(method, model, features, classes, images)
        assert tuple(maps.shape) == (2, 1, 1, 2) and np.isfinite(maps).all(), method
        if method != "cam":
            maps = methods.maps_for_classes(method, model, features, classes, images,
                                            "block1_pool")
            assert tuple(maps.shape) == (2, 16, 16, 2) and np.isfinite(maps).all(), method
            assert maps.numpy().max() > 0, method


@pytest.mark.parametrize("method, layer", [("gradcam", "relu2_2"), ("layercam", "relu2_2")])
def test_methods_that_need_the_images_say_so(method, layer, random_vgg):
    model, _, features, classes, _ = random_vgg
    with pytest.raises(ValueError, match="needs the images"):
        methods.maps_for_classes(method, model, features, classes, None, layer)


def test_cam_refuses_other_layers(random_vgg):
    model = random_vgg[0]
    with pytest.raises(CamError, match='METHOD="cam" works only on the feature maps'):
        methods.check_layer("cam", model, "relu2_2")
    assert methods.check_layer("layercam", model, "relu2_2") == "relu2_2"
