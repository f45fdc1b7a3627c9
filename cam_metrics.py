"""Scores for saliency maps: localisation against ground truth, and faithfulness to the model.

All functions take a batch and return one value per image, vectorized in TensorFlow.
Shapes: `maps` (batch, H, W) float at input resolution; `masks` (batch, H, W) bool;
boxes (batch, 4) normalised (ymin, xmin, ymax, xmax) as in tfds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

CAM_BOX_THRESHOLD = 0.2  # Zhou et al. 2016, Sec. 3.2: keep regions above 20% of the max
# Zhang et al. 2016 count a hit within 15 px of the object on 224 px images: the same share.
POINTING_TOLERANCE = 15 / 224


def dilate(masks: tf.Tensor, radius: float) -> tf.Tensor:
    """(batch, H, W) bool masks grown by every pixel within `radius` pixels (Euclidean)."""
    reach = int(radius)
    if reach < 1:
        return tf.cast(masks, tf.bool)
    offsets = tf.range(-reach, reach + 1, dtype=tf.float32)
    disk = tf.cast(offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2, tf.float32)
    hits = tf.nn.conv2d(tf.cast(masks, tf.float32)[..., None], disk[:, :, None, None], 1,
                        "SAME")
    return hits[..., 0] > 0


def pointing_game(maps: tf.Tensor, masks: tf.Tensor,
                  tolerance: float = POINTING_TOLERANCE) -> tf.Tensor:
    """Hit when the map's maximum lies on the object (Zhang et al. 2016): (batch,) bool.

    As in the paper, a maximum within a small tolerance of the object counts:
    `tolerance` is a fraction of the image side (15 px at 224 px); 0 demands the object
    itself. Ties go to the first maximum in row-major order, the same for every method.
    """
    masks = dilate(masks, tolerance * masks.shape[1])
    flat_maps = tf.reshape(maps, [tf.shape(maps)[0], -1])
    peak = tf.argmax(flat_maps, axis=1, output_type=tf.int32)
    flat_masks = tf.reshape(masks, [tf.shape(masks)[0], -1])
    return tf.gather(flat_masks, peak, batch_dims=1)


@tf.function(reduce_retracing=True)
def connected_components(binary: tf.Tensor) -> tf.Tensor:
    """Labels 8-connected regions of (batch, H, W) bool maps: (batch, H, W) int32, 0 = off.

    Each pixel starts with its own index and repeatedly takes the largest label among its
    neighbours (a 3x3 max-pool) until nothing changes, so a region ends with one label.
    A tf.function, so the loop runs in the graph rather than as Python steps.
    """
    shape = tf.shape(binary)
    ids = tf.reshape(tf.range(1, shape[1] * shape[2] + 1, dtype=tf.float32), shape[1:])
    on = tf.cast(binary, tf.float32)
    labels = on * ids[None]

    def spread(labels, _):
        grown = tf.nn.max_pool2d(labels[..., None], 3, 1, "SAME")[..., 0] * on
        return grown, tf.reduce_any(grown != labels)

    labels, _ = tf.while_loop(lambda _, changed: changed, spread, (labels, tf.constant(True)))
    return tf.cast(labels, tf.int32)


def largest_region_box(maps: tf.Tensor, relative_threshold: float = CAM_BOX_THRESHOLD,
                       ) -> tf.Tensor:
    """The CAM paper's box: around the largest connected region above a fraction of the max.

    Returns (batch, 4) normalised (ymin, xmin, ymax, xmax); an all-zero box where the map
    has no positive value.
    """
    maps = tf.convert_to_tensor(maps, tf.float32)
    peak = tf.reduce_max(maps, axis=[1, 2], keepdims=True)
    labels = connected_components((maps >= relative_threshold * peak) & (peak > 0))
    batch, height, width = tf.unstack(tf.shape(maps))
    flat = tf.reshape(labels, [batch, -1])
    sizes = tf.math.bincount(flat, minlength=height * width + 1, axis=-1)
    sizes = tf.concat([tf.zeros_like(sizes[:, :1]), sizes[:, 1:]], axis=1)  # ignore 0 = off
    biggest = tf.cast(tf.argmax(sizes, axis=1, output_type=tf.int32), tf.int32)
    region = (labels == biggest[:, None, None]) & (labels > 0)
    return mask_box(region)


def mask_box(masks: tf.Tensor) -> tf.Tensor:
    """Tight normalised box (ymin, xmin, ymax, xmax) around each (H, W) mask; 0s if empty."""
    masks = tf.cast(masks, tf.bool)
    height, width = masks.shape[1], masks.shape[2]
    rows, cols = tf.reduce_any(masks, axis=2), tf.reduce_any(masks, axis=1)

    def span(hits, size):
        index = tf.range(size, dtype=tf.float32)[None]
        first = tf.reduce_min(tf.where(hits, index, float(size)), axis=1)
        last = tf.reduce_max(tf.where(hits, index + 1, 0.0), axis=1)
        empty = ~tf.reduce_any(hits, axis=1)
        return (tf.where(empty, 0.0, first) / size, tf.where(empty, 0.0, last) / size)

    (ymin, ymax), (xmin, xmax) = span(rows, height), span(cols, width)
    return tf.stack([ymin, xmin, ymax, xmax], axis=1)


def box_iou(boxes_a: tf.Tensor, boxes_b: tf.Tensor) -> tf.Tensor:
    """Intersection over union of paired (batch, 4) boxes: (batch,) float32."""
    a, b = tf.cast(boxes_a, tf.float32), tf.cast(boxes_b, tf.float32)
    top_left = tf.maximum(a[:, :2], b[:, :2])
    bottom_right = tf.minimum(a[:, 2:], b[:, 2:])
    inter = tf.reduce_prod(tf.maximum(bottom_right - top_left, 0.0), axis=1)
    area = lambda box: (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])  # noqa: E731
    return tf.math.divide_no_nan(inter, area(a) + area(b) - inter)


def mask_iou(maps: tf.Tensor, masks: tf.Tensor, relative_threshold: float) -> tf.Tensor:
    """IoU of {map >= threshold * map max} with the object mask: (batch,) float32."""
    maps = tf.convert_to_tensor(maps, tf.float32)
    peak = tf.reduce_max(maps, axis=[1, 2], keepdims=True)
    predicted = (maps >= relative_threshold * peak) & (peak > 0)
    truth = tf.cast(masks, tf.bool)
    inter = tf.reduce_sum(tf.cast(predicted & truth, tf.float32), axis=[1, 2])
    union = tf.reduce_sum(tf.cast(predicted | truth, tf.float32), axis=[1, 2])
    return tf.math.divide_no_nan(inter, union)


def blurred(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """Gaussian blur of (batch, H, W, 3) images, the removal baseline of Petsiuk et al. 2018."""
    radius = max(1, int(3 * sigma))
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * (x / sigma) ** 2)
    kernel /= tf.reduce_sum(kernel)
    kernel = tf.tile(kernel[:, None, None, None], [1, 1, 3, 1])
    images = tf.cast(images, tf.float32)
    rows = tf.nn.depthwise_conv2d(
        tf.pad(images, [[0, 0], [radius, radius], [0, 0], [0, 0]], "SYMMETRIC"),
        kernel, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(
        tf.pad(rows, [[0, 0], [0, 0], [radius, radius], [0, 0]], "SYMMETRIC"),
        tf.transpose(kernel, [1, 0, 2, 3]), [1, 1, 1, 1], "VALID")


def deletion_insertion_auc(predict: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor,
                           baselines: tf.Tensor, maps: tf.Tensor, classes: tf.Tensor,
                           steps: int = 16) -> dict[str, np.ndarray]:
    """Deletion and insertion AUC (Petsiuk et al. 2018, "RISE", Sec. 4.1).

    Pixels are ranked by map value, highest first. Deletion replaces the top fraction
    t = 0, 1/steps, ..., 1 of the pixels with `baselines`; insertion starts from
    `baselines` and puts the top pixels back. The probability of `classes` is tracked
    and its curve integrated with the trapezoid rule over t in [0, 1]. A faithful map
    gives a low deletion AUC and a high insertion AUC. `predict` maps (n, H, W, 3) images
    to (n, classes) probabilities; all batch x (steps + 1) images go through it at once.
    Returns {"deletion_auc", "insertion_auc": (batch,), "deletion_curve",
    "insertion_curve": (batch, steps + 1)}.
    """
    images, baselines = tf.cast(images, tf.float32), tf.cast(baselines, tf.float32)
    batch, height, width = maps.shape[0], images.shape[1], images.shape[2]
    order = tf.argsort(tf.reshape(maps, [batch, -1]), axis=1, direction="DESCENDING",
                       stable=True)
    position = tf.reshape(tf.argsort(order, axis=1, stable=True), [batch, 1, height, width])
    counts = tf.cast(tf.round(tf.linspace(0.0, float(height * width), steps + 1)), tf.int32)
    revealed = tf.cast(position < counts[None, :, None, None], tf.float32)[..., None]
    curves = {}
    for name, start, end in (("deletion", images, baselines), ("insertion", baselines, images)):
        mixed = start[:, None] * (1 - revealed) + end[:, None] * revealed
        probs = predict(tf.reshape(mixed, [-1, height, width, 3]))
        probs = tf.reshape(probs, [batch, steps + 1, -1])
        curve = tf.gather(probs, tf.repeat(classes[:, None], steps + 1, axis=1),
                          batch_dims=2).numpy()
        curves[f"{name}_curve"] = curve
        curves[f"{name}_auc"] = np.trapezoid(curve, dx=1.0 / steps, axis=1)
    return curves


def centre_gaussian_maps(batch: int, height: int, width: int, sigma: float = 0.25
                         ) -> tf.Tensor:
    """The centre-prior baseline: one Gaussian bump (std `sigma` x side) per image."""
    y = (tf.range(height, dtype=tf.float32) + 0.5) / height - 0.5
    x = (tf.range(width, dtype=tf.float32) + 0.5) / width - 0.5
    bump = tf.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return tf.tile(bump[None], [batch, 1, 1])


def random_maps(batch: int, height: int, width: int, seed: int) -> tf.Tensor:
    """The chance baseline: i.i.d. uniform values per pixel, seeded."""
    return tf.random.stateless_uniform([batch, height, width], seed=[seed, 0])


def rank_correlation(maps_a: tf.Tensor, maps_b: tf.Tensor) -> tf.Tensor:
    """Spearman rank correlation between paired maps, per image: (batch,) float32.

    Used for the model-randomisation sanity check (Adebayo et al. 2018): maps that barely
    change when the weights are randomised do not explain the trained model. A map of
    a single pixel has no ranking: its correlation is reported as 0.
    """
    def ranks(maps):
        flat = tf.reshape(maps, [tf.shape(maps)[0], -1])
        return tf.cast(tf.argsort(tf.argsort(flat, axis=1, stable=True), axis=1), tf.float32)

    a, b = ranks(maps_a), ranks(maps_b)
    a -= tf.reduce_mean(a, axis=1, keepdims=True)
    b -= tf.reduce_mean(b, axis=1, keepdims=True)
    return tf.math.divide_no_nan(tf.reduce_sum(a * b, axis=1), tf.sqrt(
        tf.reduce_sum(a * a, axis=1) * tf.reduce_sum(b * b, axis=1)))
