"""Map methods for chosen classes: CAM (cam_utils) and Grad-CAM, and the figure's top-k maps.

Every method has the same shape: a model, its last feature maps `features` (batch, h, w,
channels) from `models.feature_model`, and `classes` (batch, k) -> low-resolution maps
(batch, h, w, k) float32. Nothing loops over images or classes.
"""

from __future__ import annotations

import keras
import tensorflow as tf

import cam_utils
from camlab import models
from camlab.errors import check_choice

METHODS = ("cam", "gradcam")


def grad_cams_for_classes(model: keras.Model, features: tf.Tensor,
                          classes: tf.Tensor) -> tf.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, eq. 1-2) of `classes` (batch, k): (batch, h, w, k).

    The pre-softmax score of each (image, class) pair is differentiated with one
    `tf.GradientTape` with respect to the last feature maps, tiled k times so each pair
    has its own copy. The head is the model's own GAP and classifier kernel, and the
    features come from `models.feature_model`, so a backbone nested as one layer
    works. For a GAP + linear head this equals ReLU(CAM) / (h * w), a check the tests make.
    """
    k = classes.shape[1]
    features = tf.repeat(tf.cast(features, tf.float32), k, axis=0)  # (batch * k, h, w, c)
    kernel = tf.cast(models.class_weights(model), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(features)
        logits = model.get_layer("gap")(features) @ kernel
        scores = tf.gather(logits, tf.reshape(classes, [-1]), batch_dims=1)
    grads = tape.gradient(scores, features)
    alphas = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(alphas * features, axis=-1))  # (batch * k, h, w)
    return tf.transpose(tf.reshape(maps, [-1, k, *maps.shape[1:]]), [0, 2, 3, 1])


def maps_for_classes(method: str, model: keras.Model, features: tf.Tensor,
                     classes: tf.Tensor) -> tf.Tensor:
    """Low-resolution maps (batch, h, w, k) of `classes` (batch, k) by METHOD."""
    check_choice("METHOD", method, METHODS)
    if method == "cam":
        return cam_utils.cams_for_classes(features, models.class_weights(model), classes)
    return grad_cams_for_classes(model, features, classes)


def top_k_maps(method: str, model: keras.Model, features: tf.Tensor, probs: tf.Tensor,
               k: int, threshold: float, size: tuple[int, int]) -> dict[str, tf.Tensor]:
    """The seed's figure data: each image's k most probable classes and their display maps.

    `features` (batch, h, w, channels) and `probs` (batch, classes) come from one forward
    pass of `models.feature_model(model)`. Returns {"maps": (batch, k, H, W) float32 as
    `cam_utils.display_maps` draws them, "probs": (batch, k), "classes": (batch, k)}.
    """
    top_probs, top_classes = cam_utils.top_k_classes(probs, k)
    maps = maps_for_classes(method, model, features, top_classes)
    return {"maps": cam_utils.display_maps(maps, threshold, size), "probs": top_probs,
            "classes": top_classes}
