"""Class activation maps (Zhou et al., CVPR 2016) for a whole batch and all classes at once.

The CAM maths the three scripts share: maps from features and classifier weights, and the
seed post's display transform (normalise by the top-1 map, upsample, cut at 30%). Other
map methods, and the choice between them, are in camlab/methods.py.

Shapes: `features` (batch, h, w, channels), `weights` (channels, classes), `probs`
(batch, classes). Maps keep classes (or ranks) on the last axis, so one
`tf.image.resize` upsamples all of them; nothing here loops over images or classes.
"""

from __future__ import annotations

import tensorflow as tf


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

    `maps`: (batch, ...) with 3 more axes, e.g. (batch, h, w, n) or (batch, n, h, w);
    `top_class_map`: (batch, h, w). The seed post does this so
    that weaker classes are drawn at their strength relative to the winner instead of
    each being stretched to full scale. Where the top-1 maximum is <= 0 there is no
    positive evidence to scale by: that image's maps become zero (no NaN, no sign flip).
    """
    peak = tf.reduce_max(top_class_map, axis=[1, 2])[:, None, None, None]
    return tf.math.divide_no_nan(maps, tf.where(peak > 0, peak, 0.0))


def threshold_maps(maps: tf.Tensor, threshold: float) -> tf.Tensor:
    """Sets values below `threshold` to 0, keeping the rest: the seed's 30% cut."""
    return tf.where(maps < threshold, tf.zeros_like(maps), maps)


def interpolation_matrix(source: int, target: int) -> tf.Tensor:
    """(target, source) float32 matrix R with R @ x = 1-D bilinear resize of x.

    Uses the half-pixel-centre convention of `tf.image.resize` (antialias off): output
    pixel i samples the input at (i + 0.5) * source / target - 0.5, clamped to the edges.
    """
    position = (tf.range(target, dtype=tf.float32) + 0.5) * (source / target) - 0.5
    position = tf.clip_by_value(position, 0.0, source - 1.0)
    lower = tf.floor(position)
    frac = position - lower
    upper = tf.minimum(lower + 1, source - 1.0)
    columns = tf.range(source, dtype=tf.float32)[None]
    return (tf.cast(columns == lower[:, None], tf.float32) * (1 - frac[:, None])
            + tf.cast(columns == upper[:, None], tf.float32) * frac[:, None])


def upsample(maps: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Bilinear resize of (batch, h, w, n) maps to (batch, size[0], size[1], n).

    Equal to `tf.image.resize(maps, size)` but done as two small matrix products,
    rows then columns, which is faster for the 32x upsampling of CAMs because bilinear
    interpolation is separable (benchmarks/bench_cam.py measures it).
    """
    maps = tf.convert_to_tensor(maps, tf.float32)
    rows = interpolation_matrix(maps.shape[1], size[0])
    cols = interpolation_matrix(maps.shape[2], size[1])
    tall = tf.einsum("Yh,bhwn->bYwn", rows, maps)
    return tf.linalg.matmul(cols, tall)  # (X, w) @ (b, Y, w, n) -> (b, Y, X, n)


@tf.function(jit_compile=True)  # traced per map shape: XLA needs static shapes
def display_maps(maps: tf.Tensor, threshold: float, size: tuple[int, int]) -> tf.Tensor:
    """The seed's display transform of (batch, h, w, k) maps ranked best class first.

    Normalised by the rank-0 (top-1) map's maximum, upsampled bilinearly to `size`, then
    cut at `threshold`, in that order, as in the seed. Returns (batch, k, H, W) float32:
    one contiguous picture per map. Compiled with XLA, and the upsample-and-cut runs one
    image at a time inside the compiled loop so each image's maps are cut while still in
    cache; benchmarks/bench_cam.py measures this against writing the output once.
    """
    maps = tf.transpose(tf.cast(maps, tf.float32), [0, 3, 1, 2])  # (batch, k, h, w)
    maps = normalize_by_top_class(maps, maps[:, 0])
    rows = interpolation_matrix(maps.shape[2], size[0])
    cols = interpolation_matrix(maps.shape[3], size[1])

    def one_image(image_maps):  # (k, h, w) -> (k, H, W)
        return threshold_maps(rows @ image_maps @ tf.transpose(cols), threshold)

    return tf.map_fn(one_image, maps)


def cams_for_classes(features: tf.Tensor, weights: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """CAMs of chosen classes, (batch, h, w, k) for `classes` (batch, k).

    Only the k needed columns of W are used, so the cost does not grow with the number
    of classes.
    """
    per_image_weights = tf.gather(tf.cast(weights, tf.float32), classes, axis=1)
    return tf.einsum("bhwk,kbn->bhwn", tf.cast(features, tf.float32), per_image_weights)
