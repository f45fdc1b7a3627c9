"""Map methods for chosen classes: CAM (cam_utils) and Grad-CAM, and the figure's top-k maps.

Every method has the same shape: a model, its last feature maps `features` (batch, h, w,
channels) from `models.feature_model`, and `classes` (batch, k) -> low-resolution maps
(batch, h, w, k) float32. With a `layer` (LAYER), gradient methods explain that layer's
activations instead, from the `images`. Nothing loops over images or classes.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

import cam_utils
from camlab import models
from camlab.errors import CamError, check_choice

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


def map_layers(model: keras.Model) -> list[str]:
    """Names of the layers whose output is a 4-D map (batch, h, w, channels): LAYER's choices."""
    return [layer.name for layer in model.layers[1:]
            if len(getattr(layer, "output", ()).shape or ()) == 4]


def check_layer(method: str, model: keras.Model, layer: str) -> str:
    """The layer whose activations METHOD explains: LAYER, or "" for the map feeding GAP.

    CAM is exact only on GAP's input, so any other layer is refused for it; a name the
    model lacks gets the list of valid ones.
    """
    check_choice("METHOD", method, METHODS)
    if not layer:
        return ""
    if layer not in map_layers(model):
        raise CamError(f"LAYER={layer!r} is not a layer of this model with a 4-D output; "
                       f"choose one of {', '.join(map_layers(model))}")
    if model.get_layer(layer).output is model.get_layer("gap").input:
        return ""  # GAP's own input, named: the default path
    if method == "cam":
        raise CamError(f"METHOD=\"cam\" works only on the feature maps that feed GAP (CAM "
                       f"= F @ W is the class score only there), not on LAYER={layer!r}; use "
                       "METHOD=\"gradcam\" for other layers, or LAYER=\"\"")
    return layer


def layer_name(model: keras.Model, layer: str) -> str:
    """The name of the layer explained: `layer`, or the one whose output feeds GAP."""
    gap_input = model.get_layer("gap").input
    return layer or next(candidate.name for candidate in model.layers[1:]
                         if getattr(candidate, "output", None) is gap_input)


@functools.lru_cache(maxsize=8)
def _layer_model(model: keras.Model, layer: str) -> keras.Model:
    """The model with two outputs: `layer`'s activations and the pooled features."""
    return keras.Model(model.input, [model.get_layer(layer).output,
                                     model.get_layer("gap").output])


def grad_cams_at_layer(model: keras.Model, layer: str, images: tf.Tensor,
                       classes: tf.Tensor) -> tf.Tensor:
    """Grad-CAM of `classes` (batch, k) on any `layer`'s activations: (batch, h, w, k).

    The images are repeated k times so that every (image, class) pair has its own copy in
    one forward pass under one tape; the score is the pre-softmax logit.
    """
    k = classes.shape[1]
    images = tf.repeat(tf.convert_to_tensor(images, tf.float32), k, axis=0)
    kernel = tf.cast(models.class_weights(model), tf.float32)
    with tf.GradientTape() as tape:
        activations, pooled = _layer_model(model, layer)(images, training=False)
        logits = tf.cast(pooled, tf.float32) @ kernel
        scores = tf.gather(logits, tf.reshape(classes, [-1]), batch_dims=1)
    activations = tf.cast(activations, tf.float32)
    grads = tf.cast(tape.gradient(scores, activations), tf.float32)
    alphas = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
    maps = tf.nn.relu(tf.reduce_sum(alphas * activations, axis=-1))  # (batch * k, h, w)
    return tf.transpose(tf.reshape(maps, [-1, k, *maps.shape[1:]]), [0, 2, 3, 1])


def maps_for_classes(method: str, model: keras.Model, features: tf.Tensor,
                     classes: tf.Tensor, images: tf.Tensor | None = None,
                     layer: str = "") -> tf.Tensor:
    """Low-resolution maps (batch, h, w, k) of `classes` (batch, k) by METHOD.

    `layer` (checked by check_layer) other than "" needs the `images`: the maps are then
    of that layer's activations, at its resolution.
    """
    check_choice("METHOD", method, METHODS)
    if layer:
        return grad_cams_at_layer(model, layer, images, classes)
    if method == "cam":
        return cam_utils.cams_for_classes(features, models.class_weights(model), classes)
    return grad_cams_for_classes(model, features, classes)


def top_k_maps(method: str, model: keras.Model, features: tf.Tensor, probs: tf.Tensor,
               k: int, threshold: float, size: tuple[int, int],
               images: tf.Tensor | None = None, layer: str = "") -> dict[str, tf.Tensor]:
    """The seed's figure data: each image's k most probable classes and their display maps.

    `features` (batch, h, w, channels) and `probs` (batch, classes) come from one forward
    pass of `models.feature_model(model)`; `images` and `layer` as in maps_for_classes.
    Returns {"maps": (batch, k, H, W) float32 as `cam_utils.display_maps` draws them,
    "low_res": (batch, h, w, k) before that, "probs": (batch, k), "classes": (batch, k)}.
    """
    top_probs, top_classes = cam_utils.top_k_classes(probs, k)
    maps = maps_for_classes(method, model, features, top_classes, images, layer)
    return {"maps": cam_utils.display_maps(maps, threshold, size), "low_res": maps,
            "probs": top_probs, "classes": top_classes}
