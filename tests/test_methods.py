"""camlab.methods: each method against tf-keras-vis (the same layer, the same resolution)
or pytorch-grad-cam's definition, the exact identities of a GAP + linear head, and the
figure's top-k maps against the seed post's loop (camlab.reference)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from camlab import cam_family, classifier, methods, metrics, models, reference
from camlab.errors import CamError


def built(backbone: str, size: int, num_classes: int) -> classifier.Classifier:
    """A GAP model of models.build_model, as the methods take it."""
    return classifier.explain(models.build_model(backbone, size, num_classes))


def model_with_head(weights: np.ndarray) -> classifier.Classifier:
    """A small_vgg GAP model whose classifier kernel is `weights` (64, classes)."""
    model = built("small_vgg", 16, weights.shape[1])
    model.cam_kernel.assign(weights)
    return model


@pytest.fixture(scope="module")
def random_vgg():
    """small_vgg at 32 px with random weights, 5 classes, and 3 random images with their
    top-2 classes. The head is N(0, 30^2): the untrained features are ~0.02, and a
    Glorot head would give a flat softmax, where Score-CAM's weights barely differ."""
    keras.utils.set_random_seed(0)
    model = built("small_vgg", 32, 5)
    kernel = model.cam_kernel
    kernel.assign(30 * np.random.default_rng(0).normal(size=kernel.shape).astype(np.float32))
    images = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    features, probs = model.features(images)
    classes = np.argsort(-probs.numpy(), axis=1)[:, :2].astype(np.int32)
    logits = features.numpy().mean(axis=(1, 2)) @ kernel.numpy()
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
    model = built(backbone, size, 4)
    images = np.random.default_rng(5).uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    classes = tf.constant([[0, 2], [3, 3], [1, 0]])
    features, _ = model.features(images)
    kernel = model.cam_kernel.numpy()
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


def test_maps_of_different_classes_differ_except_eigen_cam():
    keras.utils.set_random_seed(1)
    model = built("small_vgg", 32, 4)
    image = np.random.default_rng(6).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    features, _ = model.features(image)
    for method in methods.METHODS:
        maps = methods.maps_for_classes(method, model, features, tf.constant([[0, 1]]), image)
        if method == "eigencam":  # class-independent by definition
            np.testing.assert_array_equal(maps[..., 0], maps[..., 1])
        else:  # on the maps' own scale: Guided Grad-CAM's values here are ~1e-10
            scaled = maps.numpy() / np.abs(maps.numpy()).max()
            assert not np.allclose(scaled[..., 0], scaled[..., 1], rtol=0.05), method


def test_grad_cam_of_the_layer_feeding_gap_is_the_default_path():
    """grad_cam_maps of a named layer (a forward pass per class under a tape) on GAP's own
    input gives
    the cheap default (the head re-applied to the features), exactly as it should."""
    keras.utils.set_random_seed(2)
    model = built("small_vgg", 32, 4)
    images = np.random.default_rng(7).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    classes = tf.constant([[0, 2], [3, 3], [1, 0]])
    features, _ = model.features(images)
    default = methods.maps_for_classes("gradcam", model, features, classes).numpy()
    at_layer = cam_family.grad_cam_maps(model, None, classes, images, "relu3_2").numpy()
    assert np.abs(default).max() > 0
    np.testing.assert_allclose(at_layer, default, rtol=1e-4, atol=1e-7)
    assert methods.check_layer("gradcam", model, "relu3_2") == ""  # named, still the default
    assert methods.layer_name(model, "") == "relu3_2"
    earlier = methods.maps_for_classes("gradcam", model, features, classes, images, "conv2_1")
    assert tuple(earlier.shape) == (3, 16, 16, 2)


@pytest.mark.parametrize("method", ["gradcam++", "scorecam", "layercam", "eigencam"])
def test_the_layer_feeding_gap_by_name_is_the_default_path(method, random_vgg):
    model, images, features, classes, _ = random_vgg
    default = methods.maps_for_classes(method, model, features, classes, images).numpy()
    named = cam_family.layer_activations(model, None, images, "relu3_2")
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
    tool = tools[method](model.source, model_modifier=ReplaceToLinear(), clone=True)
    score = CategoricalScore(list(classes))
    if method == "saliency":
        return np.asarray(tool(score, images, normalize_map=False))
    return np.asarray(tool(score, images, penultimate_layer=layer,
                           seek_penultimate_conv_layer=False, expand_cam=False,
                           normalize_cam=False))


@pytest.mark.parametrize("method, layer", [
    ("gradcam", ""), ("gradcam", "relu2_2"), ("gradcam++", ""), ("gradcam++", "relu2_2"),
    ("layercam", ""), ("layercam", "conv2_1"), ("scorecam", ""), ("scorecam", "relu2_2"),
    ("saliency", "")])
def test_maps_agree_with_tf_keras_vis(method, layer, random_vgg):
    """Both libraries on the same layer at its own resolution (tf-keras-vis' expand_cam=False)
    for each of the top-2 classes of 3 images. Deliberate difference: tf-keras-vis'
    Grad-CAM++ weights carry a factor exp(logit) that ours leave out, so ours times
    exp(logit) must equal theirs."""
    model, images, features, classes, logits = random_vgg
    ours = methods.maps_for_classes(method, model, features, classes, images, layer,
                                    methods.Options(scorecam_batch=50)).numpy()
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


def test_score_cam_is_the_same_in_any_chunks_and_keeps_to_its_cap(random_vgg, monkeypatch):
    """Score-CAM masks each image once per channel (3 images x 64 channels = 192 masked
    images); `scorecam_batch` caps how many go through one forward pass."""
    model, images, features, classes, _ = random_vgg
    sizes = []
    compiled = cam_family.compiled_probabilities

    def counted(model):
        def forward(masked):
            sizes.append(masked.shape[0])
            return compiled(model)(masked)
        return forward

    monkeypatch.setattr(cam_family, "compiled_probabilities", counted)
    maps = {}
    for cap in (5, 64, 1000):
        sizes.clear()
        maps[cap] = cam_family.score_cam_maps(model, features, classes, images,
                                              options=methods.Options(scorecam_batch=cap)
                                              ).numpy()
        assert sum(sizes) == 3 * 64 and max(sizes) <= cap
        assert len(sizes) == math.ceil(3 * 64 / cap)
    np.testing.assert_allclose(maps[5], maps[1000], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(maps[64], maps[1000], rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="scorecam_batch"):
        cam_family.score_cam_maps(model, features, classes, images,
                                  options=methods.Options(scorecam_batch=0))


@pytest.mark.parametrize("source, target", [(8, 32), (3, 12), (5, 20), (7, 32), (1, 4)])
def test_score_cam_masks_upsample_as_scipy_zoom_does(source, target):
    """tf-keras-vis upsamples the masks with scipy.ndimage.zoom(order=1): corner-aligned."""
    low = np.random.default_rng(8).normal(size=(2, source, source + 2)).astype(np.float32)
    rows = cam_family.corner_aligned_matrix(source, target)
    cols = cam_family.corner_aligned_matrix(source + 2, target + 3)
    ours = (rows @ low @ tf.transpose(cols)).numpy()
    theirs = scipy.ndimage.zoom(low, (1, target / source, (target + 3) / (source + 2)),
                                order=1, mode="nearest")
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def pytorch_grad_cam_projection(activations: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's utils/svd_on_activations.get_2d_projection (@084273b) for
    channels-last activations (batch, h, w, c): centred, then projected on VT[0]."""
    projections = []
    for image in activations:
        flat = image.reshape(-1, image.shape[-1]).astype(np.float64)
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=True)
        projections.append((flat @ vt[0]).reshape(image.shape[:2]))
    return np.float32(projections)


@pytest.mark.parametrize("batch, h, w", [(1, 4, 4), (3, 3, 5)])
@pytest.mark.parametrize("signs", ["positive", "mixed"])
def test_eigen_cam_of_a_rank_one_activation_is_its_centred_pattern(batch, h, w, signs):
    """A = p (x) v: centred, p - mean(p) times v; its first component is +-v/|v|, so the
    map is ReLU(s (p - mean(p))) |v| with s = sign(sum v), the sign rule of Eigen-CAM here
    (pytorch-grad-cam leaves s to LAPACK). Post-ReLU features have v >= 0: s = 1."""
    rng = np.random.default_rng(9)
    pattern = rng.uniform(size=(batch, h, w)).astype(np.float32)
    loadings = rng.uniform(0.1, 1, size=(batch, 64)).astype(np.float32)
    if signs == "mixed":
        loadings *= rng.choice([-1, 1], size=(batch, 64))
    features = pattern[..., None] * loadings[:, None, None, :]
    model = model_with_head(np.zeros((64, 3), np.float32))
    maps = methods.maps_for_classes("eigencam", model, features, tf.zeros((batch, 2), tf.int32))
    sign = np.sign(loadings.sum(axis=1))[:, None, None]
    centred = pattern - pattern.mean(axis=(1, 2), keepdims=True)
    expected = np.maximum(sign * centred, 0) * np.linalg.norm(loadings, axis=1)[:, None, None]
    for column in range(2):
        np.testing.assert_allclose(maps[..., column], expected, rtol=1e-4, atol=1e-5)


def test_eigen_cam_is_pytorch_grad_cams_projection_with_a_fixed_sign(random_vgg):
    """On real activations, ours is ReLU of pytorch-grad-cam's projection or of its negative:
    the one that correlates positively with the activations summed over channels."""
    model, images, features, classes, _ = random_vgg
    for layer in ("", "relu2_2"):
        activations = cam_family.layer_activations(model, features, images, layer).numpy()
        ours = methods.maps_for_classes("eigencam", model, features, classes, images,
                                        layer).numpy()[..., 0]
        theirs = pytorch_grad_cam_projection(activations)
        summed = activations.sum(axis=-1)
        summed -= summed.mean(axis=(1, 2), keepdims=True)
        sign = np.sign((theirs * summed).sum(axis=(1, 2)))[:, None, None]
        assert (sign != 0).all() and ours.max() > 0
        correlation, difference = agreement(ours, np.maximum(sign * theirs, 0))
        assert correlation >= 0.999 and difference <= 1e-4, (layer, correlation, difference)


def linear_model(height: int, width: int, kernel: np.ndarray,
                 head: np.ndarray) -> classifier.Classifier:
    """image -> one valid conv whose kernel covers the image (linear, no bias) -> 1x1 maps
    -> "gap" -> "classifier": each logit is a linear function of the pixels."""
    inputs = keras.Input((height, width, 3), name="image")
    conv = keras.layers.Conv2D(kernel.shape[-1], (height, width), use_bias=False,
                               name="linear")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(conv(inputs))
    dense = keras.layers.Dense(head.shape[1], activation="softmax", use_bias=False,
                               name="classifier")
    model = keras.Model(inputs, dense(pooled))
    conv.kernel.assign(kernel)
    dense.kernel.assign(head)
    return classifier.explain(model)


@pytest.mark.parametrize("batch, height, width", [(1, 8, 8), (3, 6, 10)])
def test_saliency_of_a_model_linear_in_its_input_is_its_weight_pattern(batch, height, width):
    """logit_c = sum_ijl x_ijl (K @ W)[i, j, l, c], so the saliency of class c is
    max_l |(K @ W)[i, j, l, c]| at every pixel, whatever the image."""
    rng = np.random.default_rng(10)
    kernel = rng.normal(size=(height, width, 3, 4)).astype(np.float32)
    head = rng.normal(size=(4, 3)).astype(np.float32)
    model = linear_model(height, width, kernel, head)
    images = rng.uniform(0, 255, (batch, height, width, 3)).astype(np.float32)
    classes = tf.constant([[2, 0]] * batch)
    features, _ = model.features(images)
    maps = methods.maps_for_classes("saliency", model, features, classes, images).numpy()
    pattern = np.abs(np.einsum("ijlk,kc->ijlc", kernel, head)).max(axis=2)  # (h, w, classes)
    np.testing.assert_allclose(maps, np.broadcast_to(pattern[..., [2, 0]], maps.shape),
                               rtol=1e-5, atol=1e-7)


def test_every_method_runs_on_vgg19_at_a_shallow_layer_and_by_default():
    keras.utils.set_random_seed(3)
    model = built("vgg19", 32, 3)
    images = np.random.default_rng(11).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    features, _ = model.features(images)
    classes = tf.constant([[0, 1], [2, 0]])
    # On the 1 x 1 map feeding GAP the values are known: the CAM is F . W[:, c], Grad-CAM
    # its ReLU, LayerCAM and Grad-CAM++ F . ReLU(W[:, c]) (F >= 0 after the pool), and
    # Eigen-CAM 0 (a single position has nothing left once centred).
    weights = np.take(model.cam_kernel.numpy(), classes.numpy(), axis=1)
    vectors = features.numpy()[:, 0, 0]  # (2, 512)
    cam = np.einsum("bk,kbn->bn", vectors, weights)
    expected = {"cam": cam, "gradcam": np.maximum(cam, 0), "eigencam": np.zeros_like(cam),
                "layercam": np.einsum("bk,kbn->bn", vectors, np.maximum(weights, 0))}
    expected["gradcam++"] = expected["layercam"]
    few = methods.Options(noise_samples=2, ig_steps=2, rise_masks=4, occlusion_patch=0.5,
                          occlusion_stride=0.5)  # few passes per image
    for method in methods.METHODS:
        on_input = methods.REGISTRY[method].on_input
        if method != "scorecam":  # by default: 2 x 512 forward passes, too slow for a test
            shape = (2, 32, 32, 2) if on_input else (2, 1, 1, 2)
            maps = methods.maps_for_classes(method, model, features, classes, images,
                                            options=few)
            assert tuple(maps.shape) == shape and np.isfinite(maps).all(), method
            if method in expected:
                np.testing.assert_allclose(maps.numpy()[:, 0, 0], expected[method],
                                           rtol=1e-4, atol=1e-6, err_msg=method)
        if method != "cam" and not on_input:
            maps = methods.maps_for_classes(method, model, features, classes, images,
                                            "block1_pool", methods.Options(scorecam_batch=32))
            assert tuple(maps.shape) == (2, 16, 16, 2) and np.isfinite(maps).all(), method
            assert maps.numpy().max() > 0, method


@pytest.mark.parametrize("method, layer", [("scorecam", ""), ("saliency", ""),
                                           ("gradcam", "relu2_2"), ("eigencam", "relu2_2")])
def test_methods_that_need_the_images_say_so(method, layer, random_vgg):
    model, _, features, classes, _ = random_vgg
    with pytest.raises(ValueError, match="needs the images"):
        methods.maps_for_classes(method, model, features, classes, None, layer)


def test_cam_and_saliency_refuse_other_layers(random_vgg):
    model = random_vgg[0]
    with pytest.raises(CamError, match='METHOD="cam" works only on the feature maps'):
        methods.check_layer("cam", model, "relu2_2")
    with pytest.raises(CamError, match='METHOD="saliency" is a map of the input pixels'):
        methods.check_layer("saliency", model, "relu2_2")
    assert methods.check_layer("saliency", model, "relu3_2") == ""
    assert methods.check_layer("scorecam", model, "relu2_2") == "relu2_2"


@pytest.mark.parametrize("text, expected", [
    ("all", methods.METHODS), ("cam", ("cam",)), ("gradcam, scorecam", ("gradcam", "scorecam")),
    ("eigencam,cam,eigencam", ("eigencam", "cam")), (" all ", methods.METHODS)])
def test_parse_methods(text, expected):
    assert methods.parse_methods(text) == expected


@pytest.mark.parametrize("text, message", [
    ("lime", "METHOD='lime': 'lime' is not a method; choose one or more of cam, gradcam,"),
    ("lime,gradcam,grad-cam", "'lime', 'grad-cam' are not a method"),
    ("", "'' is not a method"), ("cam,,gradcam", "'' is not a method"),
    ("cam,all", "'all' is not a method")])
def test_parse_methods_names_every_unknown_name_once(text, message):
    with pytest.raises(CamError) as error:
        methods.parse_methods(text)
    assert message in str(error.value) and "separated by commas, or \"all\"" in str(error.value)
