"""Random numbers keyed by image, so that an image gets the same numbers wherever it is.

Every random draw that belongs to one image (the random baseline map, SmoothGrad's noise)
is keyed by (SEED, the image's index in its split, the stream: what the numbers are for).
A batch of 50, a batch of 7, a shard of the split or the whole split therefore give each
image the same numbers, and two uses of randomness never share them.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# One stream per use, fixed forever: changing a number changes every result drawn with it.
# "bootstrap" is camlab.scores.intervals' resamples, which name it by number (intervals._STREAM)
# so as to import NumPy alone; tests/scores/test_intervals.py checks that the two agree.
STREAMS = {"random_baseline": 1, "smoothgrad": 2, "rise": 3, "road": 4, "bootstrap": 5}
_ID_BITS = 40  # up to 2**40 images in a split; the stream sits above them


def image_ids(batch: int, ids=None) -> tf.Tensor:
    """(batch,) int64: `ids` as given, or 0, 1, ..., batch - 1 for a batch on its own."""
    if ids is None:
        return tf.range(batch, dtype=tf.int64)
    ids = tf.cast(tf.convert_to_tensor(ids), tf.int64)
    if ids.shape != (batch,):
        raise ValueError(f"ids must be (batch,) = ({batch},) image indices, got {ids.shape}")
    return ids


def image_seeds(seed: int, ids, stream: str) -> tf.Tensor:
    """(batch, 2) int64 stateless seeds, one per image of `ids` (batch,), for `stream`."""
    ids = tf.cast(ids, tf.int64)
    key = tf.constant(STREAMS[stream] << _ID_BITS, tf.int64) + ids
    return tf.stack([tf.fill(tf.shape(ids), tf.constant(seed, tf.int64)), key], axis=1)


@tf.function(reduce_retracing=True)
def _draw(seeds: tf.Tensor, shape: tf.Tensor, normal: bool) -> tf.Tensor:
    draw = tf.random.stateless_normal if normal else tf.random.stateless_uniform
    return tf.map_fn(lambda one: draw(shape, one), seeds, fn_output_signature=tf.float32)


def _with_draws(seeds: tf.Tensor, draws) -> tf.Tensor:
    """`seeds` (batch, 2) with each row's draw number folded in (tf.random's fold_in): a
    key per (image, draw), the same whatever other rows come with it."""
    if draws is None:
        return seeds
    draws = tf.cast(tf.convert_to_tensor(draws), tf.int64)
    return tf.map_fn(lambda pair: tf.random.experimental.stateless_fold_in(pair[0], pair[1]),
                     (seeds, draws), fn_output_signature=tf.int64)


def uniform(seed: int, ids, stream: str, shape: tuple[int, ...], draws=None) -> tf.Tensor:
    """(batch, *shape) float32, uniform in [0, 1), each image's from its own key. `draws`
    (batch,) int, when given, numbers several draws of one image (SmoothGrad's noisy
    copies): rows of the same image and draw number get the same numbers."""
    seeds = _with_draws(image_seeds(seed, ids, stream), draws)
    return _draw(seeds, tf.constant(shape, tf.int32), False)


def normal(seed: int, ids, stream: str, shape: tuple[int, ...], draws=None) -> tf.Tensor:
    """(batch, *shape) float32, standard normal, each image's from its own key; `draws`
    as in `uniform`."""
    seeds = _with_draws(image_seeds(seed, ids, stream), draws)
    return _draw(seeds, tf.constant(shape, tf.int32), True)


def global_generator(seed: int, stream: str) -> np.random.Generator:
    """A NumPy generator for draws shared by all images (RISE's masks), seeded by
    (SEED, stream) alone."""
    return np.random.default_rng([seed, STREAMS[stream]])
