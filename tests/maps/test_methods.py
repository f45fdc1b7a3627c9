"""camlab.maps.methods: each method against tf-keras-vis (the same layer, the same resolution)
or pytorch-grad-cam's definition, the exact identities of a GAP + linear head, and the
figure's top-k maps against the seed post's loop (camlab.maps.reference)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import scipy.ndimage
import tensorflow as tf

from camlab.errors import CamError
from camlab.maps import cam_family, methods, reference
from camlab.networks import classifier, models
from camlab.scores import metrics


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
def test_top_k_maps_match_the_posts_loop(batch, h, w, size):
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


def tf_keras_vis_maps(method, model, images, classes, layer, **options):
    """tf-keras-vis' low-resolution, unnormalised maps of `classes` (batch,) on `layer`,
    logits as scores (ReplaceToLinear), no layer seeking; saliency at input resolution.
    `options` go to the call (Score-CAM's max_N)."""
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
                           normalize_cam=False, **options))


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
    """Score-CAM masks each image once per channel that is not all zero (3 images x 64
    channels, less the fixture's dead ones); `scorecam_batch` caps how many go through
    one forward pass. That the skipped channels change nothing is test_maps_agree_with_
    tf_keras_vis[scorecam-]: tf-keras-vis masks with every channel."""
    model, images, features, classes, _ = random_vgg
    busy = int((np.abs(features.numpy()).max(axis=(1, 2)) > 0).sum())
    assert 3 * 64 - 10 < busy < 3 * 64  # a few dead channels, each the blank image's pass
    sizes = []
    compiled = cam_family.compiled_probabilities

    def counted(model):
        def forward(masked):
            sizes.append(masked.shape[0])
            return compiled(model)(masked)
        return forward

    monkeypatch.setattr(cam_family, "compiled_probabilities", counted)
    monkeypatch.setattr("camlab.maps.method_spec.ATTRIBUTION_PIXELS", 1)  # the cap at 224 px
    maps = {}
    for cap in (5, 64, 1000):
        sizes.clear()
        maps[cap] = cam_family.score_cam_maps(model, features, classes, images,
                                              options=methods.Options(scorecam_batch=cap)
                                              ).numpy()
        assert sum(sizes) == busy and max(sizes) <= cap
        assert len(sizes) == math.ceil(busy / cap)
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
    # HiResCAM is Grad-CAM there, element-wise LayerCAM, XGrad-CAM weighs A_k by
    # W_k A_k / (A_k + 1e-7), Eigen-Grad-CAM is 0, and Ablation-CAM's drops are A_k W_k of
    # the logit y = CAM: ReLU(sum_k A_k^2 W_k / CAM).
    expected = {"cam": cam, "gradcam": np.maximum(cam, 0), "eigencam": np.zeros_like(cam),
                "layercam": np.einsum("bk,kbn->bn", vectors, np.maximum(weights, 0)),
                "eigengradcam": np.zeros_like(cam), "hirescam": np.maximum(cam, 0),
                "xgradcam": np.maximum(np.einsum("bk,kbn->bn", vectors ** 2 / (vectors + 1e-7),
                                                 weights), 0),
                "ablationcam": np.maximum(np.einsum("bk,kbn->bn", vectors ** 2, weights) / cam,
                                          0)}
    expected["gradcam++"] = expected["gradcamelementwise"] = expected["layercam"]
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
        if method not in ("cam", "ablationcam") and not on_input:  # ablation: 2 x 64 passes
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


def tiny_model(kernel: np.ndarray, mix: np.ndarray, head: np.ndarray) -> classifier.Classifier:
    """image (4 x 5 x 3) -> "maps": a linear 1x1 conv, A = X @ K (both signs) -> "mix": a
    1x1 conv with ReLU, M = ReLU(A @ V) -> GAP -> Dense W: logits = mean_ij(M) @ W."""
    inputs = keras.Input((4, 5, 3), name="image")
    maps = keras.layers.Conv2D(kernel.shape[1], 1, use_bias=False, name="maps")
    mixed = keras.layers.Conv2D(mix.shape[1], 1, use_bias=False, activation="relu", name="mix")
    dense = keras.layers.Dense(head.shape[1], activation="softmax", use_bias=False,
                               name="classifier")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(mixed(maps(inputs)))
    model = keras.Model(inputs, dense(pooled))
    maps.kernel.assign(kernel[None, None])
    mixed.kernel.assign(mix[None, None])
    dense.kernel.assign(head)
    return classifier.explain(model)


@pytest.fixture(scope="module")
def tiny():
    """tiny_model with random K (3 x 3), V (3 x 4), W (4 x 3), and 2 images."""
    rng = np.random.default_rng(12)
    kernel, mix, head = (rng.normal(size=shape).astype(np.float32)
                         for shape in ((3, 3), (3, 4), (4, 3)))
    images = rng.uniform(0, 1, (2, 4, 5, 3)).astype(np.float32)
    return tiny_model(kernel, mix, head), images, kernel, mix, head


def tiny_logits(maps: np.ndarray, mix: np.ndarray, head: np.ndarray) -> np.ndarray:
    """The logits (n, classes) of tiny_model from activations A (n, h, w, 3) of "maps"."""
    return np.maximum(maps @ mix, 0).mean(axis=(1, 2)) @ head


def tiny_gradients(maps: np.ndarray, mix: np.ndarray, head: np.ndarray, c: int) -> np.ndarray:
    """d logit_c / d A_ijk = sum_m V[k, m] [(A @ V)_ijm > 0] W[m, c] / (h w): (n, h, w, 3)."""
    area = maps.shape[1] * maps.shape[2]
    return ((maps @ mix > 0) * head[:, c]) @ mix.T / area


def signed_projection(weighted: np.ndarray) -> np.ndarray:
    """(h, w, c) -> (h, w): pytorch-grad-cam's projection on the first principal component,
    signed to correlate positively with the channel sum (Eigen-CAM's sign rule here)."""
    projection = pytorch_grad_cam_projection(weighted[None])[0]
    summed = weighted.sum(axis=-1)
    return projection * np.sign((projection * (summed - summed.mean())).sum())


def paper_weighted(method: str, maps: np.ndarray, grads: np.ndarray,
                   drops: np.ndarray) -> np.ndarray:
    """One image's and class's weighted activations (h, w, c), as each paper writes them:
    A the activations, g = d y / d A, drops[k] = (y - y_k) / y."""
    if method == "hirescam":  # Draelos and Carin 2020, eq. 4 before its channel sum
        return grads * maps
    if method == "gradcamelementwise":  # pytorch-grad-cam's GradCAMElementWise
        return np.maximum(grads * maps, 0)
    if method == "xgradcam":  # Fu et al. 2020, eq. 8, with pytorch-grad-cam's 1e-7
        return (grads * maps).sum(axis=(0, 1)) / (maps.sum(axis=(0, 1)) + 1e-7) * maps
    if method == "ablationcam":  # Desai and Ramaswamy 2020, eq. 2-3
        return drops * maps
    if method == "gradcam":  # Selvaraju et al. 2017, eq. 1
        return grads.mean(axis=(0, 1)) * maps
    return grads * maps  # eigengradcam, whose map is this product's first component


@pytest.mark.parametrize("eigen_smooth", [False, True])
@pytest.mark.parametrize("method", ["hirescam", "gradcamelementwise", "xgradcam",
                                    "eigengradcam", "ablationcam", "gradcam"])
def test_new_cam_methods_restate_their_papers_in_numpy(method, eigen_smooth, tiny):
    """On tiny_model's linear layer "maps" (activations of both signs, a ReLU after them),
    every (image, class) pair's map is ReLU of the channel sum of paper_weighted, or with
    EIGEN_SMOOTH (and for Eigen-Grad-CAM always) ReLU of its signed principal component;
    the gradients and the ablated logits (channel k set to 0) are worked out in NumPy."""
    model, images, kernel, mix, head = tiny
    classes = np.array([[0, 2], [1, 1]], np.int32)
    activations = images @ kernel  # "maps": (2, 4, 5, 3)
    assert activations.min() < 0 < activations.max()
    features, _ = model.features(images)
    ours = methods.maps_for_classes(method, model, features, classes, images, "maps",
                                    methods.Options(eigen_smooth=eigen_smooth)).numpy()
    assert ours.shape == (2, 4, 5, 2) and ours.max() > 0
    for b, maps in enumerate(activations):
        ablated = maps * (np.arange(3)[:, None, None, None] != np.arange(3))  # (3, h, w, 3)
        for column, c in enumerate(classes[b]):
            score = tiny_logits(maps[None], mix, head)[0, c]
            drops = (score - tiny_logits(ablated, mix, head)[:, c]) / score
            weighted = paper_weighted(method, maps, tiny_gradients(maps[None], mix, head, c)[0],
                                      drops)
            principal = eigen_smooth or method == "eigengradcam"
            expected = signed_projection(weighted) if principal else weighted.sum(axis=-1)
            np.testing.assert_allclose(ours[b, ..., column], np.maximum(expected, 0),
                                       rtol=1e-4, atol=1e-6, err_msg=f"{b} {c}")


def test_ablation_cam_after_a_relu_is_pytorch_grad_cams(tiny):
    """pytorch-grad-cam (ablation_layer.py @084273b) sets the ablated channel to 0 when the
    image's smallest activation is 0, else to that minimum - 1e7; ours always to 0 (the
    paper's). After a ReLU ("mix", the default layer) the minimum is 0 and they agree."""
    model, images, kernel, mix, head = tiny
    classes = np.array([[2, 0], [1, 2]], np.int32)
    features, _ = model.features(images)
    ours = methods.maps_for_classes("ablationcam", model, features, classes).numpy()
    for b, maps in enumerate(np.maximum(images @ kernel @ mix, 0)):  # "mix": (4, 5, 4)
        assert maps.min() == 0
        logits = maps.mean(axis=(0, 1)) @ head
        for column, c in enumerate(classes[b]):
            ablated = [maps.mean(axis=(0, 1)) * (np.arange(4) != k) @ head[:, c]
                       for k in range(4)]
            weights = (logits[c] - np.array(ablated)) / logits[c]
            np.testing.assert_allclose(ours[b, ..., column], np.maximum(maps @ weights, 0),
                                       rtol=1e-4, atol=1e-6)


def test_ablation_cam_is_the_same_in_any_chunks_and_skips_dead_channels(random_vgg,
                                                                       monkeypatch):
    """On GAP's input of a linear head, zeroing channel k lowers the logit by mean(A_k) W_kc,
    so the map is ReLU(sum_k mean(A_k) W_kc A_k / y). The head runs once on the images and
    once per channel not all zero (an all-zero channel's ablation changes nothing: w_k = 0),
    `ablation_batch` copies at a time."""
    model, images, features, classes, logits = random_vgg
    sizes = []
    compiled = cam_family.compiled_head

    def counted(model, layer):
        def forward(maps):
            sizes.append(maps.shape[0])
            return compiled(model, layer)(maps)
        return forward

    monkeypatch.setattr(cam_family, "compiled_head", counted)
    activations, kernel = features.numpy(), model.cam_kernel.numpy()
    busy = int((np.abs(activations).max(axis=(1, 2)) > 0).sum())
    weights = (activations.mean(axis=(1, 2))[:, :, None] * kernel[:, classes].transpose(1, 0, 2)
               / np.take_along_axis(logits, classes, axis=1)[:, None, :])  # (batch, c, k)
    expected = np.maximum(np.einsum("bhwc,bck->bhwk", activations, weights), 0)
    for cap in (7, 1000):
        sizes.clear()
        maps = cam_family.ablation_cam_maps(model, features, classes,
                                            options=methods.Options(ablation_batch=cap))
        assert sizes[0] == 3 and sum(sizes[1:]) == busy and max(sizes[1:]) <= cap
        np.testing.assert_allclose(maps.numpy(), expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="ablation_batch"):
        cam_family.ablation_cam_maps(model, features, classes,
                                     options=methods.Options(ablation_batch=0))


def test_ablation_cam_refuses_a_layer_that_a_skip_connection_bypasses():
    inputs = keras.Input((8, 8, 3), name="image")
    stem = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    inner = keras.layers.Conv2D(4, 3, padding="same", name="inner")(stem)
    added = keras.layers.Add(name="add")([stem, inner])
    pooled = keras.layers.GlobalAveragePooling2D()(added)
    model = classifier.explain(keras.Model(inputs, keras.layers.Dense(2)(pooled)))
    assert model.head("inner") is None
    with pytest.raises(CamError, match="a skip connection bypasses 'inner'; choose with LAYER"):
        methods.check_layer("ablationcam", model, "inner")
    assert methods.check_layer("ablationcam", model, "add") == ""  # the default layer
    assert methods.check_layer("gradcam", model, "inner") == "inner"  # needs no head


@pytest.mark.parametrize("mean_zero", [False, True])
def test_eigen_smooth_of_a_rank_one_weighted_activation(mean_zero):
    """Weighted activations p (x) v (a pattern over the positions times channel loadings),
    centred, are (p - mean p) (x) v, whose first principal component is +-v / |v|; so
    EIGEN_SMOOTH gives ReLU(s (p - mean p)) |v| with s = sign(sum v) (the sign rule), where
    the channel sum gives ReLU(p sum v). What is kept is the map before its ReLU, up to its
    mean and the positive factor |v| / |sum v|: for a pattern of mean 0, exactly the
    unsmoothed map times |v| / |sum v|. On GAP's input of a linear head g = W / (h w), and
    A = p (x) u weights into rank 1 for each method: v = u W_c (CAM, no ReLU), u W_c / (h w)
    (Grad-CAM, HiResCAM, XGrad-CAM), u ReLU(W_c) / (h w) (LayerCAM, Grad-CAM++, and for
    p, u >= 0 element-wise), u^2 W_c / (u . W_c) (Ablation-CAM: (y - y_k) / y). Eigen-CAM
    and Eigen-Grad-CAM are principal components already: EIGEN_SMOOTH leaves them be."""
    rng = np.random.default_rng(13)
    pattern = rng.uniform(0.1, 1, (2, 4, 4)).astype(np.float32)
    if mean_zero:
        pattern -= pattern.mean(axis=(1, 2), keepdims=True)
    loadings = rng.uniform(0.1, 1, (2, 1, 64)).astype(np.float32)
    kernel = rng.normal(size=(64, 3)).astype(np.float32)
    model = model_with_head(kernel)
    features = pattern[..., None] * loadings[:, :, None, :]
    classes = tf.constant([[0, 2], [1, 0]])
    columns = kernel[:, classes.numpy()].transpose(1, 2, 0) / 16  # (2, k, 64): W_c / (h w)
    loads = {"cam": 16 * loadings * columns, "gradcam": loadings * columns,
             "layercam": loadings * np.maximum(columns, 0)}
    loads["hirescam"] = loads["gradcam"]
    loads["gradcam++"] = loads["layercam"]
    if not mean_zero:  # sum(A) = 0 would put XGrad-CAM's and Ablation-CAM's at 0 / 0
        loads["xgradcam"], loads["gradcamelementwise"] = loads["gradcam"], loads["layercam"]
        loads["ablationcam"] = (loadings ** 2 * columns
                                / (loadings * columns).sum(axis=-1, keepdims=True))
    smooth = methods.Options(eigen_smooth=True)
    centred = (pattern - pattern.mean(axis=(1, 2), keepdims=True))[..., None]
    for method, loading in loads.items():
        smoothed = methods.maps_for_classes(method, model, features, classes,
                                            options=smooth).numpy()
        plain = methods.maps_for_classes(method, model, features, classes).numpy()
        total, norm = loading.sum(axis=-1)[:, None, None], np.linalg.norm(loading, axis=-1)
        expected = np.sign(total) * centred * norm[:, None, None]
        expected = expected if method == "cam" else np.maximum(expected, 0)
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(smoothed, expected, rtol=1e-4, atol=1e-6, err_msg=method)
        if mean_zero:
            np.testing.assert_allclose(smoothed, plain * norm[:, None, None] / np.abs(total),
                                       rtol=1e-4, atol=1e-6, err_msg=method)
    for method in ("eigencam", "eigengradcam"):
        np.testing.assert_array_equal(
            methods.maps_for_classes(method, model, features, classes, options=smooth),
            methods.maps_for_classes(method, model, features, classes))


@pytest.mark.parametrize("scale, flip", [(0.9, False), (1.1, True), (1.0, True), (1.0, False)])
def test_zoom_magnifies_about_the_centre_and_mirrors(scale, flip):
    """On a ramp x_ij = i + 10 j (linear: bilinear sampling is exact) the zoomed map at (i, j)
    samples c + (i - c) / scale down and, mirrored, c - (j - c) / scale across; 0 outside."""
    rows, cols = np.meshgrid(np.arange(5.0), np.arange(8.0), indexing="ij")
    ramp = (rows + 10 * cols).astype(np.float32)[None, ..., None]
    down = 2 + (rows - 2) / scale
    across = 3.5 + (-1 if flip else 1) * (cols - 3.5) / scale
    inside = (down >= 0) & (down <= 4) & (across >= 0) & (across <= 7)
    zoomed = cam_family.zoom(ramp, scale, flip, (5, 8)).numpy()[0, ..., 0]
    np.testing.assert_allclose(zoomed, np.where(inside, down + 10 * across, 0), atol=1e-4)
    assert inside.all() == (scale >= 1)


def test_aug_smooth_maps_every_view_back_to_the_original_frame(random_vgg):
    """A "method" whose map is the image itself, on a ramp (linear, so bilinear resampling
    is exact): each of the 6 views, zoomed and mirrored back, is the ramp again, so their
    mean is the ramp; only on the outermost pixels does the 0.9 view's sample reach into
    the black border it uncovered. A 1.1 view's unseen border is left out of the mean."""
    model = random_vgg[0]

    def image_itself(model, features, classes, images, layer="", options=None, ids=None):
        return tf.repeat(images[..., :1], classes.shape[1], axis=-1)

    rows, cols = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")
    ramp = np.repeat((2 * rows + 5 * cols)[None, ..., None], 3, axis=-1).astype(np.float32)
    smoothed = cam_family.augmentation_smoothed(image_itself)(
        model, None, tf.constant([[0, 1]]), ramp, "", methods.Options(aug_smooth=True)).numpy()
    assert smoothed.shape == (1, 32, 32, 2)
    np.testing.assert_allclose(smoothed[0, 1:-1, 1:-1],
                               np.repeat(ramp[0, 1:-1, 1:-1, :1], 2, axis=-1), rtol=1e-5)
    assert not np.allclose(smoothed[0, 0, :, 0], ramp[0, 0, :, 0], rtol=1e-3)


def mirror_symmetric(model: classifier.Classifier) -> classifier.Classifier:
    """`model` with every conv kernel replaced by its mean with its mirror image, so that the
    network commutes with a left-right flip (its 2 x 2 pools on even sides do too)."""
    for layer in model.source.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel.numpy()
            layer.kernel.assign((kernel + kernel[:, ::-1]) / 2)
    return model


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_aug_smooth_flips_leave_a_flip_symmetric_map_unchanged(method, monkeypatch):
    """Without the scales (AUG_SCALES = (1.0,)) AUG_SMOOTH is the mean of a map and the map
    of the mirrored image, mirrored back. On a network that commutes with the flip that is
    the map itself: for a mirror-symmetric image (a symmetric map) and for any image (the
    flip is undone, not averaged in). On one that does not, it is that mean, by NumPy."""
    monkeypatch.setattr(cam_family, "AUG_SCALES", (1.0,))
    rng = np.random.default_rng(14)
    half = rng.uniform(0, 255, (2, 16, 8, 3)).astype(np.float32)
    symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)
    asymmetric = rng.uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    classes = tf.constant([[0, 1], [2, 0]])

    def maps(model, images, aug_smooth=False):
        features, _ = model.features(images)
        return methods.maps_for_classes(method, model, features, classes, images,
                                        options=methods.Options(aug_smooth=aug_smooth)).numpy()

    keras.utils.set_random_seed(4)
    plain_model = built("small_vgg", 16, 3)
    keras.utils.set_random_seed(4)
    mirrored = mirror_symmetric(built("small_vgg", 16, 3))
    shown = maps(mirrored, symmetric)
    np.testing.assert_allclose(shown, shown[:, :, ::-1], rtol=1e-4, atol=1e-6 * abs(shown).max())
    for images in (symmetric, asymmetric):
        plain = maps(mirrored, images)
        assert np.abs(plain).max() > 0
        np.testing.assert_allclose(maps(mirrored, images, True), plain, rtol=1e-4,
                                   atol=1e-5 * np.abs(plain).max())
    expected = (maps(plain_model, asymmetric)
                + maps(plain_model, asymmetric[:, :, ::-1])[:, :, ::-1]) / 2
    assert not np.allclose(expected, maps(plain_model, asymmetric), rtol=0.05)
    np.testing.assert_allclose(maps(plain_model, asymmetric, True), expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())


def test_score_cam_max_channels_is_tf_keras_vis_max_n(random_vgg):
    """SCORECAM_MAX_CHANNELS=N keeps each image's N channels of highest variance (Faster
    Score-CAM). tf-keras-vis' max_N keeps the union of its batch's top N, so it is given
    one image at a time (twice, for the image's two classes)."""
    model, images, features, classes, _ = random_vgg
    layer = "relu2_2"
    ours = methods.maps_for_classes("scorecam", model, features, classes, images, layer,
                                    methods.Options(scorecam_max_channels=8)).numpy()
    every = methods.maps_for_classes("scorecam", model, features, classes, images, layer,
                                     methods.Options(scorecam_max_channels=1000)).numpy()
    assert not np.allclose(ours, every, rtol=0.05)  # the cap matters; above the channels: all
    np.testing.assert_array_equal(every, methods.maps_for_classes(
        "scorecam", model, features, classes, images, layer).numpy())
    for b in range(len(images)):
        theirs = tf_keras_vis_maps("scorecam", model, images[[b, b]], classes[b],
                                   methods.layer_name(model, layer), max_N=8)
        correlation, difference = agreement(np.moveaxis(ours[b], -1, 0), theirs)
        assert correlation >= 0.999 and difference <= 1e-4, (b, correlation, difference)
    with pytest.raises(CamError, match="SCORECAM_MAX_CHANNELS=-1"):  # Options.check's
        methods.maps_for_classes("scorecam", model, features, classes, images, layer,
                                 methods.Options(scorecam_max_channels=-1))


def test_smoothing_is_refused_outside_the_cam_family(random_vgg):
    model, images, features, classes, _ = random_vgg
    with pytest.raises(CamError, match='AUG_SMOOTH=True: smoothing applies to the CAM '
                                       'family\'s maps only, not to METHOD="saliency"; '
                                       'choose METHOD among cam,'):
        methods.maps_for_classes("saliency", model, features, classes, images,
                                 options=methods.Options(aug_smooth=True))
    with pytest.raises(ValueError, match="AUG_SMOOTH needs the images"):
        methods.maps_for_classes("gradcam", model, features, classes,
                                 options=methods.Options(aug_smooth=True))


def test_the_method_table_is_every_method_once_each_with_its_paper():
    """The README's table (rendered from the registry by `make results`): each method in
    one row, once; the "input pixels" rows hold exactly the methods of the pixels; every
    method says what its map is and where it is defined."""
    rows = [line.split(" | ") for line in methods.method_table()[2:]]
    names, pixel_names, family = [], [], ""
    for row in rows:
        family = row[0].strip("| ") or family
        row_names = [name.strip("`") for name in row[1].split(", ")]
        names += row_names
        pixel_names += row_names if family == "input pixels" else []
        for name in row_names:
            method = methods.REGISTRY[name]
            assert f"{method.summary} ({method.paper})" in row[2] and method.paper, name
    assert sorted(names) == sorted(methods.METHODS) and len(names) == len(set(names))
    assert sorted(pixel_names) == sorted(name for name, method in methods.REGISTRY.items()
                                         if method.on_input)
    assert len(rows) == len({method.group or name for name, method in
                             methods.REGISTRY.items()})
