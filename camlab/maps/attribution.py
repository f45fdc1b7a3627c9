"""Gradient attribution methods: maps of the input pixels, at the images' resolution.

Saliency (Simonyan et al. 2014), SmoothGrad (Smilkov et al. 2017), Integrated Gradients
(Sundararajan et al. 2017), Gradient x Input (Shrikumar et al. 2016), guided
backpropagation (Springenberg et al. 2015) and Guided Grad-CAM (Selvaraju et al. 2017),
each a function of camlab.maps.method_spec's shape returning (batch, H, W, k); such a
method takes no LAYER. Gradients are of the class score (the logit where the model exposes
it, see camlab.networks.classifier) with respect to the model's input,
RGB in [0, 255] before its preprocessing, and every map is reduced over colour as
saliency's is: the maximum over the three channels of |attribution| (Simonyan et al.
Sec. 3.1; xplique's Saliency does the same, its other methods take the channels' mean
of the signed values).

All of them run one compiled computation (`compiled_gradients`): a forward pass of a chunk
of Options.inputs_per_pass inputs, then the backward passes of its k classes at once
(a batch Jacobian). Saliency once ran eagerly, op by op, and there TensorFlow's Conv2D
gradient also computes the gradient of every filter, which nothing needs and nothing
prunes outside a graph: a second backward pass's work (benchmarks/saliency_speed.py
times both). camlab.maps.perturbation has the methods that only run the model forward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import keras
import tensorflow as tf

import cam_utils
from camlab.core import randomness
from camlab.datasets import image_io
from camlab.maps import cam_family
from camlab.maps.method_spec import DEFAULT_OPTIONS, IG_STEPS, NOISE_SAMPLES, Method, Options
from camlab.networks import models
from camlab.networks.classifier import Classifier

IG_BLUR_SIGMA = 0.1  # IG_BASELINE="blur": Gaussian std as a fraction of the side, as
# evaluate_cam.py's default removal baseline (BLUR_SIGMA)
RELU_ACTIVATIONS = ("relu", "relu6")  # the activations guided backpropagation guides


@tf.custom_gradient
def _positive_gradient(tensor: tf.Tensor):
    """The identity, whose backward pass lets only positive gradients through."""
    return tf.identity(tensor), tf.nn.relu


def _is_relu(layer) -> bool:
    """Whether `layer` ends in a ReLU: a ReLU layer (any max_value and threshold, not a
    leaky one), a layer whose activation is relu or relu6 (Conv*, Dense, Activation: Keras
    applies it last), or a keras.ops.relu node of a functional graph."""
    if isinstance(layer, keras.layers.ReLU):
        return not layer.negative_slope
    activation = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Layer) and callable(activation):
        return getattr(activation, "__name__", "") in RELU_ACTIVATIONS
    return type(layer).__name__ in ("Relu", "Relu6")


def _guided(layer) -> Callable | None:
    """`layer` with a guided ReLU (Springenberg et al. 2015): its output goes
    through _positive_gradient, so the backward pass, after the ReLU's own gate by its
    input (x > 0, and x below max_value, 6 for relu6), keeps only positive gradients:
    grad * (x > 0) * (grad > 0). None for a layer that is no ReLU."""
    if not _is_relu(layer):
        return None
    return lambda *args, **kwargs: _positive_gradient(layer(*args, **kwargs))


def no_relu_refusal(model: Classifier) -> str:
    """Why guided backpropagation cannot apply to `model`: it has no ReLU to guide (its
    guided gradient would be the plain one); "" when it has one."""
    if any(_is_relu(operation) for operation in model.model.operations):
        return ""
    return ("guided backpropagation changes the backward pass of ReLUs, and this model "
            "has none (e.g. swish or GELU activations); use METHOD=\"saliency\"")


@functools.lru_cache(maxsize=8)
def compiled_gradients(model: Classifier, guided: bool = False
                       ) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """inputs (n, H, W, 3), classes (n, k) -> d score / d input (n, k, H, W, 3) float32,
    one TensorFlow graph for any n and k (tracing it for VGG19 takes seconds). `guided`:
    the model replayed (models.flat_call) with every ReLU guided, the rest of the network
    as it is; no copy of it is made."""
    def scores(inputs):
        if guided:
            return models.flat_call(model.model, inputs, substitute=_guided)
        return model.model(inputs, training=False)

    @tf.function(input_signature=[tf.TensorSpec([None, *model.model.input.shape[1:]]),
                                  tf.TensorSpec([None, None], tf.int32)])
    def gradients(inputs, classes):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            chosen = tf.gather(tf.cast(scores(inputs), tf.float32), classes, batch_dims=1)
        return tf.cast(tape.batch_jacobian(chosen, inputs), tf.float32)
    return gradients


def summed_gradients(model: Classifier, images: tf.Tensor, classes: tf.Tensor, draws: int,
                     inputs_of: Callable, options: Options, absolute: bool,
                     guided: bool = False) -> tf.Tensor:
    """(batch, k, H, W, 3): for each image and class, the sum over d < `draws` of the class
    score's gradient at the input `inputs_of(images, owners, d)` (rows of (image, draw)
    pairs: the images, their indices in the batch, the draw numbers), |.| first when
    `absolute`. The rows go through the model Options.inputs_per_pass at a time."""
    cap = options.inputs_per_pass(*images.shape[1:3])
    batch, k = classes.shape
    classes, gradients = tf.cast(classes, tf.int32), compiled_gradients(model, guided)
    total = tf.zeros([batch, k, *images.shape[1:]], tf.float32)
    for start in range(0, batch * draws, cap):
        rows = tf.range(start, min(start + cap, batch * draws))
        owners = rows // draws
        inputs = inputs_of(tf.gather(images, owners), owners, rows % draws)
        grads = gradients(inputs, tf.gather(classes, owners))
        total += tf.math.unsorted_segment_sum(tf.abs(grads) if absolute else grads, owners,
                                              batch)
    return total


def colour_reduced(attributions: tf.Tensor) -> tf.Tensor:
    """(batch, k, H, W, 3) -> (batch, H, W, k) maps: max over the channels of |.|."""
    return tf.transpose(tf.reduce_max(tf.abs(attributions), axis=-1), [0, 2, 3, 1])


def _pixels(images) -> tf.Tensor:
    return tf.convert_to_tensor(images, tf.float32)


def saliency_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                  images: tf.Tensor, layer: str = "", options: Options = DEFAULT_OPTIONS,
                  ids=None) -> tf.Tensor:
    """Gradient saliency (Simonyan et al. 2014, Sec. 3) of `classes`: (batch, H, W, k) at
    the images' resolution: max over colour channels of |d score / d image|."""
    grads = summed_gradients(model, _pixels(images), classes, 1,
                             lambda rows, owners, draws: rows, options, absolute=True)
    return colour_reduced(grads)


def smoothgrad_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                    images: tf.Tensor, layer: str = "", options: Options = DEFAULT_OPTIONS,
                    ids=None) -> tf.Tensor:
    """SmoothGrad (Smilkov et al. 2017) of `classes`: (batch, H, W, k), the mean of
    |d score / d image| over `options.noise_samples` copies of the image with Gaussian
    noise of std `options.noise_level` x (its max - its min), then saliency's max over
    colour: tf-keras-vis' Saliency(smooth_samples=N) exactly. Smilkov et al. (and xplique)
    average the signed gradient before any absolute value; xplique's noise std is
    absolute, not a share of the range. Image `ids` key the noise (stream "smoothgrad"),
    each copy its own draw, so an image's map is the same in any batch.
    """
    images, samples = _pixels(images), options.noise_samples
    ids = randomness.image_ids(images.shape[0], ids)
    spread = options.noise_level * (tf.reduce_max(images, axis=[1, 2, 3])
                                    - tf.reduce_min(images, axis=[1, 2, 3]))

    def noisy(rows, owners, draws):
        noise = randomness.normal(options.seed, tf.gather(ids, owners), "smoothgrad",
                                  tuple(images.shape[1:]), draws=draws)
        return rows + tf.gather(spread, owners)[:, None, None, None] * noise

    grads = summed_gradients(model, images, classes, samples, noisy, options, absolute=True)
    return colour_reduced(grads / samples)


def gradient_input_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                        images: tf.Tensor, layer: str = "", options: Options = DEFAULT_OPTIONS,
                        ids=None) -> tf.Tensor:
    """Gradient x Input (Shrikumar et al. 2016; xplique's GradientInput) of `classes`:
    (batch, H, W, k), the max over colour of |image x d score / d image|, the image as the
    model takes it (RGB in [0, 255]). Integrated Gradients from black with one step."""
    images = _pixels(images)
    grads = summed_gradients(model, images, classes, 1,
                             lambda rows, owners, draws: rows, options, absolute=False)
    return colour_reduced(images[:, None] * grads)


def ig_baseline(images: tf.Tensor, baseline: str) -> tf.Tensor:
    """Integrated Gradients' starting images: black (0), or the images blurred."""
    if baseline == "black":
        return tf.zeros_like(images)
    if baseline == "blur":
        return image_io.blurred(images, IG_BLUR_SIGMA * images.shape[1])
    raise ValueError(f"ig_baseline must be 'black' or 'blur', not {baseline!r}")


def integrated_gradients(model: Classifier, images: tf.Tensor, classes: tf.Tensor,
                         options: Options = DEFAULT_OPTIONS) -> tf.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017, eq. 1 and its right Riemann sum) of
    `classes` (batch, k): signed attributions (batch, k, H, W, 3),
    (x - x') x mean over s = 1..m of d score / d x at x' + (s / m)(x - x'), m =
    `options.ig_steps`, x' = ig_baseline(x, `options.ig_baseline`). They sum to
    score(x) - score(x') up to the sum's error (completeness); xplique uses the
    trapezoidal rule on m points from x' to x instead.
    """
    images = _pixels(images)
    start, steps = ig_baseline(images, options.ig_baseline), options.ig_steps

    def on_path(rows, owners, draws):
        origin = tf.gather(start, owners)
        fractions = tf.cast(draws + 1, tf.float32)[:, None, None, None] / steps
        return origin + fractions * (rows - origin)

    grads = summed_gradients(model, images, classes, steps, on_path, options,
                             absolute=False)
    return (images - start)[:, None] * grads / steps


def integrated_gradients_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                              images: tf.Tensor, layer: str = "",
                              options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Integrated Gradients of `classes`: (batch, H, W, k), the max over colour of
    |attribution| (integrated_gradients)."""
    return colour_reduced(integrated_gradients(model, images, classes, options))


def guided_backprop_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                         images: tf.Tensor, layer: str = "",
                         options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Guided backpropagation (Springenberg et al. 2015) of `classes`:
    (batch, H, W, k), the gradient with every ReLU's backward pass guided (_guided),
    reduced as saliency. xplique guides ReLU6 by x > 0 alone, and takes the channels'
    mean of the signed values."""
    grads = summed_gradients(model, _pixels(images), classes, 1,
                             lambda rows, owners, draws: rows, options, absolute=True,
                             guided=True)
    return colour_reduced(grads)


def guided_grad_cam_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                         images: tf.Tensor, layer: str = "",
                         options: Options = DEFAULT_OPTIONS, ids=None) -> tf.Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017) of `classes`: (batch, H, W, k),
    the guided backpropagation map times the default layer's Grad-CAM, upsampled
    bilinearly to the image (cam_utils.upsample), neither normalised. Grad-CAM is >= 0,
    so this is also the colour reduction of the paper's product with the RGB gradient."""
    guided = guided_backprop_maps(model, features, classes, images, options=options)
    grad_cam = cam_family.grad_cam_maps(model, features, classes, images)
    return guided * cam_utils.upsample(grad_cam, guided.shape[1:3])


_GRADIENT_PASSES = "a forward pass and a backward pass per class"
# the README's rows of several methods (Method.group)
GRADIENT = "the score's gradient"
GUIDED = "the gradient through ReLUs that pass only positive gradients"
METHODS = {
    "saliency": Method(
        "Saliency", saliency_maps, on_input=True, needs_images=True,
        passes=f"{_GRADIENT_PASSES} (the classes' backward passes batched)", group=GRADIENT,
        summary="as is", paper="[Simonyan et al. 2014](https://arxiv.org/abs/1312.6034)"),
    "smoothgrad": Method(
        "SmoothGrad", smoothgrad_maps, on_input=True, needs_images=True,
        passes=f"NOISE_SAMPLES ({NOISE_SAMPLES}) x {_GRADIENT_PASSES}", group=GRADIENT,
        summary="its mean over noisy copies",
        paper="[Smilkov et al. 2017](https://arxiv.org/abs/1706.03825)"),
    "integratedgradients": Method(
        "Integrated Gradients", integrated_gradients_maps, on_input=True, needs_images=True,
        passes=f"IG_STEPS ({IG_STEPS}) x {_GRADIENT_PASSES}", group=GRADIENT,
        summary="its path integral from a black or blurred image",
        paper="[Sundararajan et al. 2017](https://arxiv.org/abs/1703.01365)"),
    "gradientinput": Method(
        "Gradient x Input", gradient_input_maps, on_input=True, needs_images=True,
        passes=f"{_GRADIENT_PASSES} (the classes' backward passes batched)", group=GRADIENT,
        summary="times the image",
        paper="[Shrikumar et al. 2016](https://arxiv.org/abs/1605.01713)"),
    "guidedbackprop": Method(
        "Guided Backprop", guided_backprop_maps, on_input=True, needs_images=True,
        passes=_GRADIENT_PASSES, refusal=no_relu_refusal, group=GUIDED, summary="as is",
        paper="[Springenberg et al. 2015](https://arxiv.org/abs/1412.6806)"),
    "guidedgradcam": Method(
        "Guided Grad-CAM", guided_grad_cam_maps, on_input=True, needs_images=True,
        refusal=no_relu_refusal,
        passes=f"{_GRADIENT_PASSES}, and Grad-CAM's backward pass of the head per class",
        group=GUIDED, summary="times Grad-CAM", paper=cam_family.SELVARAJU),
}
