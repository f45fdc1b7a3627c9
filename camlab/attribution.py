"""Attribution methods: maps of the input pixels, at the images' resolution.

Gradient saliency (Simonyan et al. 2014), a function of camlab.method_spec's shape
returning (batch, S, S, k); such a method takes no LAYER.
"""

from __future__ import annotations

import tensorflow as tf

from camlab.cam_family import per_class
from camlab.classifier import Classifier
from camlab.method_spec import DEFAULT_OPTIONS, Method, Options


def saliency_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                  images: tf.Tensor, layer: str = "", options: Options = DEFAULT_OPTIONS,
                  ids=None) -> tf.Tensor:
    """Gradient saliency (Simonyan et al. 2014, Sec. 3) of `classes`: (batch, H, W, k) at
    the images' resolution: max over colour channels of |d score / d image|, the gradient
    with respect to the model's input (RGB in [0, 255], before its preprocessing).
    """
    k = classes.shape[1]
    repeated = tf.repeat(tf.convert_to_tensor(images, tf.float32), k, axis=0)
    with tf.GradientTape() as tape:
        tape.watch(repeated)
        scores = tf.gather(tf.cast(model.model(repeated, training=False), tf.float32),
                           tf.reshape(classes, [-1]), batch_dims=1)
    grads = tf.cast(tape.gradient(scores, repeated), tf.float32)
    return per_class(tf.reduce_max(tf.abs(grads), axis=-1), k)


METHODS = {
    "saliency": Method("Saliency", saliency_maps, on_input=True, needs_images=True,
                       passes="a forward and a backward pass of the whole model per class"),
}
