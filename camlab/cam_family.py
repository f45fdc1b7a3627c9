"""The CAM family: maps made of a layer's activations A, weighted per channel or position.

CAM (Zhou et al. 2016), Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al.
2018), Score-CAM (Wang et al. 2020), LayerCAM (Jiang et al. 2021) and Eigen-CAM (Muhammad
and Yeasin 2020), each a function of camlab.method_spec's shape returning (batch, h, w, k)
at the layer's resolution. Gradients are of the class score (the pre-softmax logit where
the model exposes it, see camlab.classifier), and Score-CAM scores with the
probabilities, as tf-keras-vis does after `ReplaceToLinear`. Nothing loops over images or
classes; Score-CAM loops over chunks of its masked images only to cap their memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import tensorflow as tf

import cam_utils
from camlab.classifier import Classifier
from camlab.method_spec import DEFAULT_OPTIONS, Method, Options

# The min-max epsilon of tf-keras-vis' Score-CAM masks (keras.backend.epsilon()).
MASK_EPSILON = 1e-7


def cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
             images: tf.Tensor | None = None, layer: str = "",
             options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """CAM (Zhou et al. 2016, Sec. 2) of `classes`: (batch, h, w, k), F @ W[:, c] on the
    features that feed GAP (methods.check_layer allows no other layer)."""
    return cam_utils.cams_for_classes(features, model.cam_kernel, classes)


def per_class(maps: tf.Tensor, k: int) -> tf.Tensor:
    """(batch * k, h, w) maps of (image, class) pairs, image-major -> (batch, h, w, k)."""
    return tf.transpose(tf.reshape(maps, [-1, k, *maps.shape[1:]]), [0, 2, 3, 1])


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


def grad_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                  images: tf.Tensor | None = None, layer: str = "",
                  options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2) of `classes` (batch, k): (batch, h, w, k).

    ReLU(sum_c mean_ij(g) A_c), g = d logit / d A. For a GAP + linear head this equals
    ReLU(CAM) / (h * w), a check the tests make.
    """
    maps, grads, _ = logit_gradients(model, features, classes, images, layer)
    alphas = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
    return per_class(tf.nn.relu(tf.reduce_sum(alphas * maps, axis=-1)), classes.shape[1])


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
    maps, grads, _ = logit_gradients(model, features, classes, images, layer)
    squared = tf.square(grads)
    denominator = 2.0 * squared + squared * grads * tf.reduce_sum(maps, axis=[1, 2],
                                                                  keepdims=True)
    alphas = squared / tf.where(squared == 0.0, denominator + 1.0, denominator)
    total = tf.reduce_sum(alphas, axis=[1, 2], keepdims=True)
    alphas /= tf.where(total == 0.0, 1.0, total)
    weights = tf.reduce_sum(alphas * tf.nn.relu(grads), axis=[1, 2], keepdims=True)
    return per_class(tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)), classes.shape[1])


def layer_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                   images: tf.Tensor | None = None, layer: str = "",
                   options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """LayerCAM (Jiang et al. 2021) of `classes`: (batch, h, w, k).

    ReLU(sum_c ReLU(g_c) * A_c), weighted per position, one layer (no multi-layer fusion).
    On the GAP input of a linear head g = W / (h * w), so this is the CAM of the kernel
    with its negative weights clipped to 0, over h * w: a check the tests make.
    """
    maps, grads, _ = logit_gradients(model, features, classes, images, layer)
    return per_class(tf.nn.relu(tf.reduce_sum(tf.nn.relu(grads) * maps, axis=-1)),
                      classes.shape[1])


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
    """`model(images)`, the probabilities, as one TensorFlow graph traced per batch shape.

    Score-CAM runs the model once per chunk of masked images; run op by op (eagerly), a
    small network like small_vgg spends about half of each pass dispatching its layers
    (benchmarks/bench_cam.py, vs_tf_keras_vis).
    """
    return tf.function(lambda images: model(images), reduce_retracing=True)


def score_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                   images: tf.Tensor, layer: str = "", options: Options = DEFAULT_OPTIONS,
                   ids=None) -> tf.Tensor:
    """Score-CAM (Wang et al. 2020) of `classes`: (batch, h, w, k), from the `images`.

    Each channel A_c of each image, upsampled to the image (corner-aligned linear) and
    min-max normalised to [0, 1] (+1e-7), masks that image; w_c is the softmax probability
    of the class for the masked image (softmax of the logits), as tf-keras-vis scores it
    after ReplaceToLinear (no baseline subtracted, no softmax over channels, constant
    channels kept as all-zero masks). map = ReLU(sum_c w_c A_c) on the low-resolution A.
    Costs batch * channels forward passes (512 per image on VGG19), run
    `options.scorecam_batch` masked images at a time; every class of an image comes from
    the same passes.
    """
    scorecam_batch = options.scorecam_batch
    if scorecam_batch < 1:
        raise ValueError(f"scorecam_batch must be a positive number of images, not "
                         f"{scorecam_batch!r}")
    images = tf.convert_to_tensor(images, tf.float32)
    maps = layer_activations(model, features, images, layer)  # (batch, h, w, c)
    channels = maps.shape[-1]
    rows = corner_aligned_matrix(maps.shape[1], images.shape[1])
    cols = corner_aligned_matrix(maps.shape[2], images.shape[2])
    flat = tf.reshape(tf.transpose(maps, [0, 3, 1, 2]), [-1, *maps.shape[1:3]])
    forward, weights = compiled_probabilities(model), []
    for start in range(0, flat.shape[0], scorecam_batch):
        upsampled = rows @ flat[start:start + scorecam_batch] @ tf.transpose(cols)
        low = tf.reduce_min(upsampled, axis=[1, 2], keepdims=True)
        high = tf.reduce_max(upsampled, axis=[1, 2], keepdims=True)
        masks = (upsampled - low) / (high - low + MASK_EPSILON)  # (n, H, W)
        owners = tf.range(start, start + masks.shape[0]) // channels
        probs = forward(tf.gather(images, owners) * masks[..., None])
        weights.append(tf.gather(probs, tf.gather(classes, owners), batch_dims=1))
    weights = tf.reshape(tf.concat(weights, axis=0), [-1, channels, classes.shape[1]])
    return tf.nn.relu(tf.einsum("bhwc,bck->bhwk", maps, weights))


def eigen_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                   images: tf.Tensor | None = None, layer: str = "",
                   options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Eigen-CAM (Muhammad and Yeasin 2020): (batch, h, w, k), the same map for every class.

    The activations, centred per channel over the positions as pytorch-grad-cam centres
    them, projected on their first principal component, then ReLU as pytorch-grad-cam's
    BaseCAM does. It ignores the class: the k maps of an image are equal. An SVD's sign
    is arbitrary (pytorch-grad-cam leaves it to LAPACK); here the component is turned so
    its channel loadings sum to >= 0, i.e. the map correlates positively with the summed
    activations, so a map of post-ReLU features points at where they are strong.
    """
    maps = layer_activations(model, features, images, layer)
    batch, height, width, channels = maps.shape
    centred = tf.reshape(maps, [-1, height * width, channels])
    centred -= tf.reduce_mean(centred, axis=1, keepdims=True)
    _, _, right = tf.linalg.svd(centred)  # right: (batch, c, min(h * w, c))
    component = right[..., 0]
    component *= tf.where(tf.reduce_sum(component, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    projection = tf.nn.relu(tf.einsum("bpc,bc->bp", centred, component))
    projection = tf.reshape(projection, [-1, height, width, 1])
    return tf.repeat(projection, classes.shape[1], axis=-1)


METHODS = {
    "cam": Method("CAM", cam_maps, passes="none beyond the forward pass"),
    "gradcam": Method("Grad-CAM", grad_cam_maps,
                      passes="a backward pass of the head per class"),
    "gradcam++": Method("Grad-CAM++", grad_cam_plus_plus_maps,
                        passes="a backward pass of the head per class"),
    "scorecam": Method("Score-CAM", score_cam_maps, needs_images=True,
                       passes="a forward pass per channel of the layer (512 on VGG19)"),
    "layercam": Method("LayerCAM", layer_cam_maps,
                       passes="a backward pass of the head per class"),
    "eigencam": Method("Eigen-CAM", eigen_cam_maps, class_specific=False,
                       passes="an SVD of the layer's activations"),
}
