"""The CAM family: maps made of a layer's activations A, weighted per channel or position.

CAM (Zhou et al. 2016), Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al.
2018), HiResCAM (Draelos and Carin 2020), Grad-CAM element-wise (pytorch-grad-cam's),
XGrad-CAM (Fu et al. 2020), Ablation-CAM (Desai and Ramaswamy 2020), Score-CAM (Wang et
al. 2020), LayerCAM (Jiang et al. 2021), Eigen-CAM (Muhammad and Yeasin 2020) and
Eigen-Grad-CAM (pytorch-grad-cam's), each a function of camlab.maps.method_spec's shape
returning (batch, h, w, k) at the layer's resolution. Gradients, and Ablation-CAM's score
drops, are of the class score (the pre-softmax logit where the model exposes it, see
camlab.networks.classifier); Score-CAM scores with the probabilities, as tf-keras-vis does after
`ReplaceToLinear`.

Each method computes its weighted activations (w_c * A_c, or an element-wise product);
one function (class_maps) sums them over the channels, or with EIGEN_SMOOTH takes their
first principal component, then applies ReLU as every method but CAM does (so do
pytorch-grad-cam's BaseCAM and tf-keras-vis). One wrapper (augmentation_smoothed) gives
every method AUG_SMOOTH. Nothing loops over images or classes; Score-CAM and Ablation-CAM
loop over chunks of their per-channel passes only to cap their memory.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import keras
import tensorflow as tf

import cam_utils
from camlab.errors import CamError
from camlab.maps.method_spec import DEFAULT_OPTIONS, Method, Options, per_pass
from camlab.networks.classifier import Classifier
from camlab.networks.frozen import Frozen

# The min-max epsilon of tf-keras-vis' Score-CAM masks (keras.backend.epsilon()).
MASK_EPSILON = 1e-7
# XGrad-CAM's guard against a channel that sums to 0, as pytorch-grad-cam adds it.
XGRADCAM_EPSILON = 1e-7
# AUG_SMOOTH's views: each flip with each magnification about the image's centre.
AUG_FLIPS = (False, True)
AUG_SCALES = (0.9, 1.0, 1.1)


def per_class(maps: tf.Tensor, k: int) -> tf.Tensor:
    """(batch * k, h, w) maps of (image, class) pairs, image-major -> (batch, h, w, k)."""
    return tf.transpose(tf.reshape(maps, [-1, k, *maps.shape[1:]]), [0, 2, 3, 1])


def principal_maps(weighted: tf.Tensor) -> tf.Tensor:
    """(n, q, h, w, c) -> (n, q, h, w): each (h * w, c) matrix, centred per channel over
    the positions as pytorch-grad-cam's get_2d_projection centres it, projected on its
    first principal component. An SVD's sign is arbitrary (pytorch-grad-cam leaves it to
    LAPACK); here the component is turned so its channel loadings sum to >= 0. The
    projection's covariance with the channel sum is sigma_1^2 times that loading sum, so
    the map correlates positively with the summed (weighted) activations."""
    n, q, height, width, channels = weighted.shape
    centred = tf.reshape(weighted, [-1, height * width, channels])
    centred -= tf.reduce_mean(centred, axis=1, keepdims=True)
    _, _, right = tf.linalg.svd(centred)  # right: (n * q, c, min(h * w, c))
    component = right[..., 0]
    component *= tf.where(tf.reduce_sum(component, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    return tf.reshape(tf.einsum("npc,nc->np", centred, component), [-1, q, height, width])


def class_maps(activations: tf.Tensor, weights: tf.Tensor | None, options: Options,
               relu: bool = True, principal: bool = False) -> tf.Tensor:
    """The maps (batch, h, w, k) of weighted activations, summed over the channels, or
    their first principal component (principal_maps) when `principal` or
    `options.eigen_smooth`; then ReLU unless `relu` is False (CAM keeps its sign).

    `activations` (batch, q, h, w, c), q = 1 (shared by the k classes) or k; `weights`
    (batch, k, c) per channel, (batch, k, h, w, c) per position, or None when the
    activations are already weighted.
    """
    if weights is not None and weights.shape.rank == 3:
        if principal or options.eigen_smooth:
            reduced = principal_maps(activations * weights[:, :, None, None, :])
        elif activations.shape[1] == 1:
            reduced = tf.einsum("bhwc,bkc->bkhw", activations[:, 0], weights)
        else:
            reduced = tf.einsum("bkhwc,bkc->bkhw", activations, weights)
    else:
        weighted = activations if weights is None else activations * weights
        reduced = (principal_maps(weighted) if principal or options.eigen_smooth
                   else tf.reduce_sum(weighted, axis=-1))
    return tf.transpose(tf.nn.relu(reduced) if relu else reduced, [0, 2, 3, 1])


def zoom(maps: tf.Tensor, scale: float, flip: bool, size: tuple[int, int]) -> tf.Tensor:
    """(n, h, w, ch) float32 -> (n, size[0], size[1], ch): magnified `scale` times about
    the centre, then mirrored left-right if `flip`, bilinear with corners aligned: output
    index i (of `size`) samples the input at c + (i * (h - 1) / (size - 1) - c) / scale,
    c = (h - 1) / 2; a sample outside the input is 0."""
    half = 0.5 / scale
    left, right = (0.5 + half, 0.5 - half) if flip else (0.5 - half, 0.5 + half)
    n = tf.shape(maps)[0]
    boxes = tf.tile([[0.5 - half, left, 0.5 + half, right]], [n, 1])
    return tf.image.crop_and_resize(tf.cast(maps, tf.float32), boxes, tf.range(n), size)


def augmentation_smoothed(method: Callable[..., tf.Tensor]) -> Callable[..., tf.Tensor]:
    """`method` with AUG_SMOOTH: when `options.aug_smooth`, the mean of its maps over the
    views AUG_FLIPS x AUG_SCALES of the images (each flip with magnifications 0.9, 1.0 and
    1.1 about the centre; the border that a 0.9 view uncovers is black), each view's map
    zoomed and flipped back to the original frame. A position that a 1.1 view does not
    see (its outer 4.5% on each side) is the mean of the views that see it. All views go
    through the method in one batch of 6 x batch images.

    pytorch-grad-cam's aug_smooth (ttach HorizontalFlip x Multiply(0.9, 1, 1.1)) scales
    the input's values, not its size, and min-max normalises each view's map before the
    mean; here the scales are spatial, as issue 21 asks, and the raw maps are averaged.
    """
    @functools.wraps(method)
    def maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
             images: tf.Tensor | None = None, layer: str = "",
             options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
        if not options.aug_smooth:
            return method(model, features, classes, images, layer, options, ids)
        if images is None:
            raise ValueError("AUG_SMOOTH needs the images, not only the features: pass images=")
        images = tf.convert_to_tensor(images, tf.float32)
        views = [(flip, scale) for flip in AUG_FLIPS for scale in AUG_SCALES]
        augmented = tf.concat([zoom(images, scale, flip, images.shape[1:3])
                               for flip, scale in views], axis=0)
        view_features = None if layer else model.features(augmented)[0]
        out = method(model, view_features, tf.tile(tf.convert_to_tensor(classes), [len(views), 1]),
                     augmented, layer, dataclasses.replace(options, aug_smooth=False),
                     None if ids is None else tf.tile(tf.convert_to_tensor(ids), [len(views)]))
        size, total, seen = out.shape[1:3], 0.0, 0.0
        for (flip, scale), part in zip(views, tf.split(out, len(views)), strict=True):
            total += zoom(part, 1.0 / scale, flip, size)
            seen += zoom(tf.ones([1, *size, 1]), 1.0 / scale, flip, size)
        return total / seen
    return maps


def layer_activations(model: Classifier, features: tf.Tensor, images: tf.Tensor | None,
                      layer: str) -> tf.Tensor:
    """The explained activations (batch, h, w, channels) float32: `features` when `layer`
    is "", else `layer`'s output for the `images`."""
    if not layer:
        return tf.cast(features, tf.float32)
    return tf.cast(model.trunk(layer)(images, training=False), tf.float32)


def logit_gradients(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                    images: tf.Tensor | None = None, layer: str = ""
                    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """For every (image, class) pair, image-major: the activations A (batch * k, h, w, c),
    the gradient of the class score with respect to them (same shape), and the score
    (batch * k,), all float32.

    Each pair gets its own copy of the activations, so one tape gives all the gradients
    at once: the model's head (the layers after A) runs on the copies, after one pass of
    the images up to A. When a skip connection bypasses the layer, there is no such head
    and the copies are of the images, through the whole model.
    """
    k, explained = classes.shape[1], layer or model.default_layer
    head = model.head(explained)
    with tf.GradientTape() as tape:
        if head is None:
            repeated = tf.repeat(tf.convert_to_tensor(images, tf.float32), k, axis=0)
            maps, scores = model.layer_model(explained)(repeated, training=False)
        else:
            maps = tf.repeat(layer_activations(model, features, images, layer), k, axis=0)
            tape.watch(maps)
            scores = head(maps, training=False)
        scores = tf.gather(tf.cast(scores, tf.float32), tf.reshape(classes, [-1]),
                           batch_dims=1)
    grads = tape.gradient(scores, maps)
    return tf.cast(maps, tf.float32), tf.cast(grads, tf.float32), scores


def class_gradients(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                    images: tf.Tensor | None, layer: str) -> tuple[tf.Tensor, tf.Tensor]:
    """logit_gradients' activations A and gradients g, as (batch, k, h, w, c) each."""
    maps, grads, _ = logit_gradients(model, features, classes, images, layer)
    shape = [-1, classes.shape[1], *maps.shape[1:]]
    return tf.reshape(maps, shape), tf.reshape(grads, shape)


@augmentation_smoothed
def cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
             images: tf.Tensor | None = None, layer: str = "",
             options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """CAM (Zhou et al. 2016, Sec. 2) of `classes`: (batch, h, w, k), F @ W[:, c] on the
    features that feed GAP (methods.check_layer allows no other layer), without ReLU:
    cam_utils.class_activation_maps; EIGEN_SMOOTH's principal component instead."""
    kernel = tf.cast(model.cam_kernel, tf.float32)
    weights = tf.gather(tf.transpose(kernel), classes)  # (batch, k, c)
    if options.eigen_smooth:
        return class_maps(tf.cast(features, tf.float32)[:, None], weights, options, relu=False)
    return cam_utils.class_activation_maps(features, weights)


@augmentation_smoothed
def grad_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                  images: tf.Tensor | None = None, layer: str = "",
                  options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2) of `classes` (batch, k): (batch, h, w, k).

    ReLU(sum_c mean_ij(g) A_c), g = d logit / d A. For a GAP + linear head this equals
    ReLU(CAM) / (h * w), a check the tests make.
    """
    maps, grads = class_gradients(model, features, classes, images, layer)
    return class_maps(maps, tf.reduce_mean(grads, axis=[2, 3]), options)


@augmentation_smoothed
def grad_cam_plus_plus_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                            images: tf.Tensor | None = None, layer: str = "",
                            options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018) of `classes`: (batch, h, w, k).

    The closed form for Y = exp(logit), as tf-keras-vis and the authors' code compute it:
    alpha = g^2 / (2 g^2 + sum_ab(A) g^3) (0 where g = 0), normalised to sum 1 over the
    positions of each channel, w_c = sum_ij alpha ReLU(g), map = ReLU(sum_c w_c A_c).
    tf-keras-vis keeps a factor exp(logit) in w_c; it is left out here on purpose: it
    overflows float32 above a logit of 88, and it would scale each class's map by its
    exp(logit), so a figure of k classes normalised by the top one would hide the others.
    The map is tf-keras-vis' divided by exp(logit), which the tests check.
    """
    maps, grads = class_gradients(model, features, classes, images, layer)
    squared = tf.square(grads)
    denominator = 2.0 * squared + squared * grads * tf.reduce_sum(maps, axis=[2, 3],
                                                                  keepdims=True)
    alphas = squared / tf.where(squared == 0.0, denominator + 1.0, denominator)
    total = tf.reduce_sum(alphas, axis=[2, 3], keepdims=True)
    alphas /= tf.where(total == 0.0, 1.0, total)
    return class_maps(maps, tf.reduce_sum(alphas * tf.nn.relu(grads), axis=[2, 3]), options)


@augmentation_smoothed
def hires_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                   images: tf.Tensor | None = None, layer: str = "",
                   options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """HiResCAM (Draelos and Carin 2020, eq. 4) of `classes`: (batch, h, w, k).

    ReLU(sum_c g_c * A_c): Grad-CAM without the averaging of the gradients over the
    positions. The paper's map keeps its sign; the ReLU here is pytorch-grad-cam's (its
    BaseCAM clips every map) and this module's. On GAP's input of a linear head
    g = W / (h * w) everywhere, so it is ReLU(CAM) / (h * w), as the paper proves.
    """
    maps, grads = class_gradients(model, features, classes, images, layer)
    return class_maps(maps, grads, options)


@augmentation_smoothed
def grad_cam_elementwise_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                              images: tf.Tensor | None = None, layer: str = "",
                              options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Grad-CAM element-wise (pytorch-grad-cam's GradCAMElementWise) of `classes`:
    (batch, h, w, k), sum_c ReLU(g_c * A_c). It differs from LayerCAM's
    sum_c ReLU(g_c) A_c only where activations are negative (before a ReLU)."""
    maps, grads = class_gradients(model, features, classes, images, layer)
    return class_maps(tf.nn.relu(grads * maps), None, options)


@augmentation_smoothed
def xgrad_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                   images: tf.Tensor | None = None, layer: str = "",
                   options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """XGrad-CAM (Fu et al. 2020, eq. 8) of `classes`: (batch, h, w, k).

    w_c = sum_ij(g_c * A_c) / (sum_ij A_c + 1e-7), map = ReLU(sum_c w_c A_c); the 1e-7 is
    pytorch-grad-cam's (XGRADCAM_EPSILON). A channel of activations summing to about
    -1e-7 (possible only before a ReLU) gets a huge weight there too.
    """
    maps, grads = class_gradients(model, features, classes, images, layer)
    weights = (tf.reduce_sum(grads * maps, axis=[2, 3])
               / (tf.reduce_sum(maps, axis=[2, 3]) + XGRADCAM_EPSILON))
    return class_maps(maps, weights, options)


@augmentation_smoothed
def layer_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                   images: tf.Tensor | None = None, layer: str = "",
                   options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """LayerCAM (Jiang et al. 2021) of `classes`: (batch, h, w, k).

    ReLU(sum_c ReLU(g_c) * A_c), weighted per position, one layer (no multi-layer fusion).
    On the GAP input of a linear head g = W / (h * w), so this is the CAM of the kernel
    with its negative weights clipped to 0, over h * w: a check the tests make.
    """
    maps, grads = class_gradients(model, features, classes, images, layer)
    return class_maps(maps, tf.nn.relu(grads), options)


def corner_aligned_matrix(source: int, target: int) -> tf.Tensor:
    """(target, source) float32 matrix R with R @ x = 1-D linear resize of x, corners aligned:
    output i samples the input at i * (source - 1) / (target - 1), as scipy.ndimage.zoom
    (order=1, grid_mode=False) and tf-keras-vis do, computed in float64 like scipy."""
    position = tf.range(target, dtype=tf.float64) * ((source - 1) / max(target - 1, 1))
    lower = tf.minimum(tf.floor(position), source - 1.0)
    frac = position - lower
    upper = tf.minimum(lower + 1.0, source - 1.0)
    columns = tf.range(source, dtype=tf.float64)[None]
    matrix = (tf.cast(columns == lower[:, None], tf.float64) * (1.0 - frac[:, None])
              + tf.cast(columns == upper[:, None], tf.float64) * frac[:, None])
    return tf.cast(matrix, tf.float32)


@functools.lru_cache(maxsize=8)
def compiled_probabilities(model: Classifier) -> Callable[[tf.Tensor], tf.Tensor]:
    """`model(images)`, the probabilities, as one frozen TensorFlow graph for any batch
    size (camlab.networks.frozen: the weights constants, batch normalisation folded).

    Score-CAM runs the model once per chunk of masked images; run op by op (eagerly), a
    small network like small_vgg spends about half of each pass dispatching its layers
    (benchmarks/bench_cam.py, vs_tf_keras_vis). Cached per model; Frozen follows later
    changes of the weights.
    """
    return Frozen(lambda images: model(images),
                  tf.TensorSpec([None, *model.model.input.shape[1:]], tf.float32))


@functools.lru_cache(maxsize=8)
def compiled_head(model: Classifier, layer: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """`layer`'s activations -> the class scores, one frozen graph for any batch size."""
    head = require_head(model, layer, "ablationcam")
    return Frozen(lambda maps: head(maps, training=False),
                  tf.TensorSpec([None, *head.input.shape[1:]], head.input.dtype))


def require_head(model: Classifier, layer: str, method: str) -> keras.Model:
    """The layers after `layer` (Classifier.head); one CamError when a skip connection
    bypasses it, since a method that reruns them alone would then miss that path."""
    head = model.head(layer)
    if head is None:
        raise CamError(f"METHOD=\"{method}\" reruns the layers after the explained layer on "
                       f"changed copies of its activations, but a skip connection bypasses "
                       f"{layer!r}; choose with LAYER a layer every path to the scores goes "
                       "through (a block's output), or another method")
    return head


def busy_channels(maps: tf.Tensor, max_channels: int = 0) -> tf.Tensor:
    """(batch, c) bool: the channels of `maps` (batch, h, w, c) that are not all zero and,
    when 0 < max_channels < c, among each image's `max_channels` of highest standard
    deviation over the positions (tf-keras-vis' max_N; ties go to the lower channel, as
    tf.math.top_k gives them)."""
    busy = tf.reduce_any(maps != 0.0, axis=[1, 2])
    if 0 < max_channels < maps.shape[-1]:
        top = tf.math.top_k(tf.math.reduce_std(maps, axis=[1, 2]), max_channels).indices
        busy &= tf.reduce_any(tf.one_hot(top, maps.shape[-1]) > 0, axis=1)
    return busy


def pair_scores(pairs: tf.Tensor, batch: int, inputs: Callable[[tf.Tensor], tf.Tensor],
                forward: Callable[[tf.Tensor], tf.Tensor], classes: tf.Tensor) -> tf.Tensor:
    """(n, k) float32: for each (image, channel) row of `pairs` (n, 2), the scores of its
    image's `classes` (batch, k) in `forward(inputs(rows))`, `batch` rows a pass."""
    classes = tf.convert_to_tensor(classes)
    parts = [tf.zeros([0, classes.shape[1]])]
    for start in range(0, pairs.shape[0], batch):
        rows = pairs[start:start + batch]
        scores = tf.cast(forward(inputs(rows)), tf.float32)
        parts.append(tf.gather(scores, tf.gather(classes, rows[:, 0]), batch_dims=1))
    return tf.concat(parts, axis=0)


def check_batch(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be a positive number of images, not {value!r}")


@augmentation_smoothed
def score_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                   images: tf.Tensor, layer: str = "", options: Options = DEFAULT_OPTIONS,
                   ids=None) -> tf.Tensor:
    """Score-CAM (Wang et al. 2020) of `classes`: (batch, h, w, k), from the `images`.

    Each channel A_c of each image, upsampled to the image (corner-aligned linear) and
    min-max normalised to [0, 1] (+1e-7), masks that image; w_c is the softmax probability
    of the class for the masked image (softmax of the logits), as tf-keras-vis scores it
    after ReplaceToLinear (no baseline subtracted, no softmax over channels).
    map = ReLU(sum_c w_c A_c) on the low-resolution A. Every class of an image comes from
    the same passes, `options.scorecam_batch` masked images of 224 px at a time
    (method_spec.per_pass: more of smaller ones).

    A channel that is all zero is skipped, exactly: its mask (0 - 0) / (0 + 1e-7) is 0,
    the blank image, the same for every such channel, and its weight multiplies A_c = 0,
    so not even the blank image's score is needed (w_c = 0 here). With
    `options.scorecam_max_channels` N > 0, only each image's N channels of highest
    variance count (Faster Score-CAM, tf-keras-vis' max_N); the others are dropped from
    the sum (w_c = 0). tf-keras-vis takes the union of the images' top N over its batch,
    so it equals this one image at a time. An N above the layer's channels keeps them all.
    Costs a forward pass per channel left (up to 512 per image on VGG19).
    """
    check_batch("scorecam_batch", options.scorecam_batch)
    if options.scorecam_max_channels < 0:
        raise ValueError(f"scorecam_max_channels must be 0 (all) or more, not "
                         f"{options.scorecam_max_channels!r}")
    images = tf.convert_to_tensor(images, tf.float32)
    maps = layer_activations(model, features, images, layer)  # (batch, h, w, c)
    pairs = tf.where(busy_channels(maps, options.scorecam_max_channels))  # (n, 2)
    rows = corner_aligned_matrix(maps.shape[1], images.shape[1])
    cols = corner_aligned_matrix(maps.shape[2], images.shape[2])
    by_channel = tf.transpose(maps, [0, 3, 1, 2])  # (batch, c, h, w)

    def masked(part: tf.Tensor) -> tf.Tensor:
        upsampled = rows @ tf.gather_nd(by_channel, part) @ tf.transpose(cols)
        low = tf.reduce_min(upsampled, axis=[1, 2], keepdims=True)
        high = tf.reduce_max(upsampled, axis=[1, 2], keepdims=True)
        masks = (upsampled - low) / (high - low + MASK_EPSILON)  # (n, H, W)
        return tf.gather(images, part[:, 0]) * masks[..., None]

    scores = pair_scores(pairs, per_pass("scorecam_batch", options.scorecam_batch,
                                         *images.shape[1:3]),
                         masked, compiled_probabilities(model), classes)
    shape = tf.constant([maps.shape[0], maps.shape[-1], classes.shape[1]], tf.int64)
    weights = tf.scatter_nd(pairs, scores, shape)
    return class_maps(maps[:, None], tf.transpose(weights, [0, 2, 1]), options)


@augmentation_smoothed
def ablation_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                      images: tf.Tensor | None = None, layer: str = "",
                      options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Ablation-CAM (Desai and Ramaswamy 2020, eq. 2-3) of `classes`: (batch, h, w, k).

    w_c = (y - y_c) / y, y the class score (the logit), y_c the score with channel c of
    the layer set to 0 in every position; map = ReLU(sum_c w_c A_c). The layers after
    the explained one (Classifier.head) run on the ablated copies, `options.ablation_batch`
    copies a pass; a layer that a skip connection bypasses has no such head and is one
    CamError (require_head). A channel that is all zero is skipped: ablating it changes
    nothing, w_c = 0 exactly.

    Differences from pytorch-grad-cam's AblationCAM: it sets the channel to 0 only when
    the image's smallest activation is 0, else to that minimum - 1e7; here it is always 0,
    the paper's ablation (the same on a layer after a ReLU). A score y = 0 would divide by
    0 there; here that image and class keep the undivided drops y - y_c. A negative y
    (a logit below 0) flips the map's sign in both, as the formula does.
    """
    check_batch("ablation_batch", options.ablation_batch)
    explained = layer or model.default_layer
    require_head(model, explained, "ablationcam")
    maps = layer_activations(model, features, images, layer)  # (batch, h, w, c)
    batch, channels, k = maps.shape[0], maps.shape[-1], classes.shape[1]
    forward = compiled_head(model, explained)
    scores = tf.gather(tf.cast(forward(maps), tf.float32), classes, batch_dims=1)  # (b, k)
    pairs = tf.where(busy_channels(maps))

    def ablated(part: tf.Tensor) -> tf.Tensor:
        kept = 1.0 - tf.one_hot(part[:, 1], channels)
        return tf.gather(maps, part[:, 0]) * kept[:, None, None, :]

    dropped = pair_scores(pairs, options.ablation_batch, ablated, forward, classes)
    drops = tf.scatter_nd(pairs, tf.gather(scores, pairs[:, 0]) - dropped,
                          tf.constant([batch, channels, k], tf.int64))
    weights = drops / tf.where(scores == 0.0, 1.0, scores)[:, None, :]
    return class_maps(maps[:, None], tf.transpose(weights, [0, 2, 1]), options)


@augmentation_smoothed
def eigen_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                   images: tf.Tensor | None = None, layer: str = "",
                   options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Eigen-CAM (Muhammad and Yeasin 2020): (batch, h, w, k), the same map for every class.

    ReLU of the activations' first principal component over the positions (centred, with
    the sign rule of principal_maps: the map correlates positively with the summed
    activations, so a map of post-ReLU features points at where they are strong); the
    ReLU is pytorch-grad-cam's BaseCAM's. It ignores the class: the k maps of an image are
    equal. EIGEN_SMOOTH changes nothing: the map already is that component.
    """
    maps = layer_activations(model, features, images, layer)[:, None]
    component = class_maps(maps, None, options, principal=True)
    return tf.repeat(component, classes.shape[1], axis=-1)


@augmentation_smoothed
def eigen_grad_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                        images: tf.Tensor | None = None, layer: str = "",
                        options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Eigen-Grad-CAM (pytorch-grad-cam's EigenGradCAM) of `classes`: (batch, h, w, k).

    ReLU of the first principal component of g * A per (image, class), with Eigen-CAM's
    sign rule (principal_maps), where pytorch-grad-cam leaves the sign to LAPACK.
    EIGEN_SMOOTH changes nothing: the map already is that component.
    """
    maps, grads = class_gradients(model, features, classes, images, layer)
    return class_maps(maps, grads, options, principal=True)


def cam_method(title: str, maps: Callable[..., tf.Tensor], **fields) -> Method:
    """A CAM-family Method: it takes AUG_SMOOTH and EIGEN_SMOOTH."""
    return Method(title, maps, smoothing=True, **fields)


GRADIENT_PASSES = "a backward pass of the head per class"
PYTORCH_GRAD_CAM = "[pytorch-grad-cam](https://github.com/jacobgil/pytorch-grad-cam)"
SELVARAJU = "[Selvaraju et al. 2017](https://arxiv.org/abs/1610.02391)"  # Grad-CAM's paper
# the README's rows of several methods (Method.group)
CHANNEL_WEIGHTS = "ReLU of channel weights from dy/dA x A"
PRODUCTS = "dy/dA x A summed over channels"
CHANNEL_SCORES = "channel weights from the model's score"
COMPONENT = "the first principal component"
METHODS = {
    "cam": cam_method(
        "CAM", cam_maps, passes="none beyond the forward pass",
        summary="the class's Dense weights x A, exact on GAP's input",
        paper="[Zhou et al. 2016](https://arxiv.org/abs/1512.04150)"),
    "gradcam": cam_method(
        "Grad-CAM", grad_cam_maps, passes=GRADIENT_PASSES, group=CHANNEL_WEIGHTS,
        summary="mean gradient", paper=SELVARAJU),
    "gradcam++": cam_method(
        "Grad-CAM++", grad_cam_plus_plus_maps, passes=GRADIENT_PASSES, group=CHANNEL_WEIGHTS,
        summary="second-order weights",
        paper="[Chattopadhay et al. 2018](https://arxiv.org/abs/1710.11063)"),
    "scorecam": cam_method(
        "Score-CAM", score_cam_maps, needs_images=True,
        passes="a forward pass per channel of the layer not all zero (up to 512 on VGG19; "
               "SCORECAM_MAX_CHANNELS caps them)",
        group=CHANNEL_SCORES, summary="with each channel as a mask",
        paper="[Wang et al. 2020](https://arxiv.org/abs/1910.01279)"),
    "layercam": cam_method(
        "LayerCAM", layer_cam_maps, passes=GRADIENT_PASSES, group=PRODUCTS,
        summary="positive gradients only",
        paper="[Jiang et al. 2021](https://ieeexplore.ieee.org/document/9462463)"),
    "eigencam": cam_method(
        "Eigen-CAM", eigen_cam_maps, class_specific=False,
        passes="an SVD of the layer's activations", group=COMPONENT, summary="of A",
        paper="[Muhammad and Yeasin 2020](https://arxiv.org/abs/2008.00299)"),
    "hirescam": cam_method(
        "HiResCAM", hires_cam_maps, passes=GRADIENT_PASSES, group=PRODUCTS, summary="as is",
        paper="[Draelos and Carin 2020](https://arxiv.org/abs/2011.08891)"),
    "gradcamelementwise": cam_method(
        "Grad-CAM element-wise", grad_cam_elementwise_maps, passes=GRADIENT_PASSES,
        group=PRODUCTS, summary="each product's ReLU", paper=PYTORCH_GRAD_CAM),
    "xgradcam": cam_method(
        "XGrad-CAM", xgrad_cam_maps, passes=GRADIENT_PASSES, group=CHANNEL_WEIGHTS,
        summary="sum(dy/dA x A) / sum(A)",
        paper="[Fu et al. 2020](https://arxiv.org/abs/2008.02312)"),
    "ablationcam": cam_method(
        "Ablation-CAM", ablation_cam_maps, needs_head=True,
        passes="a forward pass of the head per channel of the layer not all zero (up to 512 "
               "on VGG19)",
        group=CHANNEL_SCORES, summary="with each channel zeroed",
        paper="Desai and Ramaswamy, WACV 2020"),
    "eigengradcam": cam_method(
        "Eigen-Grad-CAM", eigen_grad_cam_maps, passes=f"{GRADIENT_PASSES} and an SVD per class",
        group=COMPONENT, summary="of dy/dA x A", paper=PYTORCH_GRAD_CAM),
}
