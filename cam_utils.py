"""Class activation maps (Zhou et al., CVPR 2016) for a whole batch and all classes at once.

Shapes: `features` (batch, h, w, channels), `weights` (channels, classes), `probs`
(batch, classes). Maps keep classes (or ranks) on the last axis, so one
`tf.image.resize` upsamples all of them; nothing here loops over images or classes.
"""

from __future__ import annotations

import keras
import tensorflow as tf

import cam_models


def class_activation_maps(features: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """M_c(x, y) = sum_k w_k^c f_k(x, y) (Zhou et al. 2016, Sec. 2), in float32.

    `features`: (batch, h, w, channels), any float dtype; `weights`: (channels, classes).
    Returns (batch, h, w, classes) float32. Because the head is GAP then a linear layer,
    the spatial mean of M_c is exactly the pre-softmax score of class c.
    """
    return tf.einsum("bhwk,kc->bhwc", tf.cast(features, tf.float32),
                     tf.cast(weights, tf.float32))


def top_k_classes(probs: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The k most probable classes per image: (probabilities, indices), each (batch, k)."""
    result = tf.math.top_k(tf.cast(probs, tf.float32), k=k)
    return result.values, result.indices


def normalize_by_top_class(maps: tf.Tensor, top_class_map: tf.Tensor) -> tf.Tensor:
    """Divides every map of an image by the maximum of that image's top-1 class map.

    `maps`: (batch, h, w, n); `top_class_map`: (batch, h, w). The seed post does this so
    that weaker classes are drawn at their strength relative to the winner instead of
    each being stretched to full scale. Where the top-1 maximum is <= 0 there is no
    positive evidence to scale by: that image's maps become zero (no NaN, no sign flip).
    """
    peak = tf.reduce_max(top_class_map, axis=[1, 2])[:, None, None, None]
    return tf.math.divide_no_nan(maps, tf.where(peak > 0, peak, 0.0))


def threshold_maps(maps: tf.Tensor, threshold: float) -> tf.Tensor:
    """Sets values below `threshold` to 0, keeping the rest: the seed's 30% cut."""
    return tf.where(maps < threshold, tf.zeros_like(maps), maps)


def upsample(maps: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Bilinear resize of (batch, h, w, n) maps to (batch, size[0], size[1], n)."""
    return tf.image.resize(maps, size, method="bilinear")


def top_k_maps(features: tf.Tensor, weights: tf.Tensor, probs: tf.Tensor, k: int,
               threshold: float, size: tuple[int, int]) -> dict[str, tf.Tensor]:
    """The seed's figure data: for each image its k best classes and their display maps.

    Each map is CAM_c normalised by the top-1 map's maximum, upsampled bilinearly to
    `size` and cut at `threshold`, in that order, as in the seed. Only the k needed
    columns of W are used, so the cost does not grow with the number of classes.
    Returns {"maps": (batch, H, W, k) float32, "probs": (batch, k), "classes": (batch, k)}.
    """
    top_probs, top_classes = top_k_classes(probs, k)
    per_image_weights = tf.gather(tf.cast(weights, tf.float32), top_classes, axis=1)
    maps = tf.einsum("bhwk,kbn->bhwn", tf.cast(features, tf.float32), per_image_weights)
    maps = normalize_by_top_class(maps, maps[..., 0])
    maps = threshold_maps(upsample(maps, size), threshold)
    return {"maps": maps, "probs": top_probs, "classes": top_classes}


def grad_cam(model: keras.Model, images: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2) of `classes` (batch,) at the GAP input.

    The pre-softmax class score is differentiated with `tf.GradientTape` with respect to
    the last feature maps, for the whole batch in one tape. Works with the backbone nested
    as a single layer, because the features come from `cam_models.feature_model`.
    For a GAP + linear head it equals ReLU(CAM) / (h * w), a check the tests make.
    Returns (batch, h, w) float32.
    """
    features, _ = cam_models.feature_model(model)(images, training=False)
    features = tf.cast(features, tf.float32)
    kernel = tf.cast(cam_models.class_weights(model), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(features)
        logits = model.get_layer("gap")(features) @ kernel
        scores = tf.gather(logits, classes, batch_dims=1)
    grads = tape.gradient(scores, features)
    alphas = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
    return tf.nn.relu(tf.reduce_sum(alphas * features, axis=-1))


def class_maps(method: str, model: keras.Model, images: tf.Tensor,
               classes: tf.Tensor) -> tf.Tensor:
    """Low-resolution maps (batch, h, w) of one class per image by METHOD ("cam", "gradcam")."""
    if method == "gradcam":
        return grad_cam(model, images, classes)
    if method != "cam":
        raise ValueError(f"unknown METHOD {method!r}; choose 'cam' or 'gradcam'")
    features, _ = cam_models.feature_model(model)(images, training=False)
    weights = tf.gather(tf.cast(cam_models.class_weights(model), tf.float32), classes, axis=1)
    return tf.einsum("bhwk,kb->bhw", tf.cast(features, tf.float32), weights)
