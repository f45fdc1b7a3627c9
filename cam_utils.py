"""Class activation maps (Zhou et al., CVPR 2016) for a whole batch and all classes at once.

The CAM maths the three scripts share: maps from features and classifier weights, and the
seed post's display transform (normalise by the top-1 map, upsample, cut at 30%). Other
map methods, and the choice between them, are in camlab/maps/methods.py.

Shapes: `features` (batch, h, w, channels), `weights` (channels, classes), `probs`
(batch, classes). Maps keep classes (or ranks) on the last axis, so one resize
upsamples all of them; nothing here loops over images or classes. The figure's display
transform writes its (batch, k, H, W) output once, in one XLA loop (display_maps).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf


def class_activation_maps(features: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """M_c(x, y) = sum_k w_k^c f_k(x, y) (Zhou et al. 2016, Sec. 2), in float32: the one
    CAM computation of the lab (METHOD="cam" is this, camlab.maps.cam_family.cam_maps).

    `features`: (batch, h, w, channels), any float dtype; `weights`: (channels, classes),
    the same classes for every image, or (batch, classes, channels), each image's own.
    Returns (batch, h, w, classes) float32. Because the head is GAP then a linear layer,
    the spatial mean of M_c is exactly the pre-softmax score of class c.
    """
    features, weights = tf.cast(features, tf.float32), tf.cast(weights, tf.float32)
    if weights.shape.rank == 3:
        return tf.einsum("bhwk,bck->bhwc", features, weights)
    return tf.einsum("bhwk,kc->bhwc", features, weights)


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
    """Sets values below `threshold` to 0, keeping the rest: the post's 30% cut."""
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


def _block_size(source: int, target: int) -> int:
    """Output pixels per block in `resize_blocks`: the largest divisor of `target` not
    above target / source rounded up (32 for 10 -> 320), so that a block spans about one
    input pixel and reads at most three."""
    limit = max(1, -(-target // source))
    return max(size for size in range(1, limit + 1) if target % size == 0)


@functools.lru_cache(maxsize=32)
def resize_blocks(source: int, target: int) -> tuple[np.ndarray, np.ndarray]:
    """`interpolation_matrix(source, target)` regrouped by blocks of s output pixels.

    Block j (output pixels j * s .. j * s + s - 1) reads only the m input pixels
    base_j .. base_j + m - 1, so (R @ x)[j * s + t] = sum_n x[base_j + n] weights[j, n, t]:
    a blend of m values per pixel with weights that repeat along the axis, and no index
    arithmetic per pixel. Returns (pick (blocks * m, source) float32 of 0 and 1, row
    j * m + n selecting input pixel base_j + n, clamped to the last; weights
    (blocks, m, s) float32, 0 for a clamped tap). Exact: the weights are R's entries.
    """
    matrix = interpolation_matrix(source, target).numpy()
    size = _block_size(source, target)
    blocks = matrix.reshape(target // size, size, source)  # (j, t, input pixel)
    used = blocks.any(axis=1)  # (j, input pixel): read by some pixel of block j
    base = used.argmax(axis=1)
    last = source - 1 - used[:, ::-1].argmax(axis=1)
    index = base[:, None] + np.arange((last - base).max() + 1)  # (j, n): tap n's pixel
    clamped = np.minimum(index, source - 1)
    weights = np.take_along_axis(blocks, clamped[:, None, :], axis=2)  # (j, t, n)
    weights = np.where(index[:, None, :] < source, weights, 0.0).transpose(0, 2, 1)
    pick = np.eye(source, dtype=np.float32)[clamped.reshape(-1)]
    return pick, np.ascontiguousarray(weights, np.float32)


def _shown_by_blocks(maps: tf.Tensor, threshold: float, row_pick: tf.Tensor,
                     row_weights: tf.Tensor, col_pick: tf.Tensor,
                     col_weights: tf.Tensor) -> tf.Tensor:
    """display_maps by blocks: (batch, h, w, k) -> (batch, k, I, u, J, t), the output
    (batch, k, H, W) with its rows cut in I blocks of u and its columns in J blocks of t
    (resize_blocks' tables for each axis). Meant to run inside an XLA computation.

    The taps each block reads are gathered at low resolution by two small matrix
    products, (batch, k, I, m_y, J, m_x); then each output value is the blend of its
    m_y x m_x taps, cut at `threshold`. XLA makes that one loop, which writes every
    output value once; its innermost axis (t) is contiguous and the weights along it
    are a short vector, so it vectorizes with no index arithmetic per pixel.
    """
    maps = tf.transpose(tf.cast(maps, tf.float32), [0, 3, 1, 2])  # (batch, k, h, w)
    maps = normalize_by_top_class(maps, maps[:, 0])
    taps = row_pick @ maps @ tf.transpose(col_pick)  # (batch, k, I * m_y, J * m_x)
    taps = tf.reshape(taps, [*taps.shape[:2], *row_weights.shape[:2], *col_weights.shape[:2]])
    shown = 0.0
    for row_tap in range(row_weights.shape[1]):  # <= 3 each when upsampling: a stencil
        across = 0.0
        for col_tap in range(col_weights.shape[1]):
            across += taps[:, :, :, row_tap, None, :, col_tap, None] * col_weights[:, col_tap]
        shown += across * row_weights[:, row_tap, :, None, None]
    return threshold_maps(shown, threshold)


@tf.function(jit_compile=True)  # traced per shape: XLA needs static shapes
def _display_blocks(maps, threshold, *tables) -> tf.Tensor:
    return _shown_by_blocks(maps, threshold, *tables)


@tf.function(jit_compile=True)
def _top_k_cams_by_blocks(features, weights, probs, k, threshold, *tables):
    top_probs, top_classes = top_k_classes(probs, k)
    maps = cams_for_classes(features, weights, top_classes)
    return maps, _shown_by_blocks(maps, threshold, *tables), top_probs, top_classes


def _tables(shape: tuple[int, int], size: tuple[int, int]) -> tuple[tf.Tensor, ...]:
    """resize_blocks' tables for the rows, then the columns, as tensors."""
    return (*_block_tables(shape[0], int(size[0])), *_block_tables(shape[1], int(size[1])))


@functools.lru_cache(maxsize=32)
def _block_tables(source: int, target: int) -> tuple[tf.Tensor, tf.Tensor]:
    """resize_blocks(source, target) as tensors, made once rather than on every call."""
    return tuple(tf.constant(table) for table in resize_blocks(source, target))


def display_maps(maps: tf.Tensor, threshold: float, size: tuple[int, int]) -> tf.Tensor:
    """The seed's display transform of (batch, h, w, k) maps ranked best class first.

    Normalised by the rank-0 (top-1) map's maximum, upsampled bilinearly to `size`
    (`tf.image.resize`'s half-pixel bilinear, the same weights), then cut at `threshold`,
    as in the post. Returns (batch, k, H, W) float32: one contiguous picture per map.

    Dividing by a positive number commutes with the linear resize, so the maps are
    normalised at low resolution; the cut does not commute with it, so it is applied to
    the upsampled values, in the compiled loop that makes them (_shown_by_blocks): the
    output is written once, and nothing else of its size is. benchmarks/bench_cam.py
    times this against writing the output alone (cam_floor_ratio).
    """
    maps = tf.convert_to_tensor(maps)
    shown = _display_blocks(maps, threshold, *_tables(maps.shape[1:3], size))
    return tf.reshape(shown, [maps.shape[0], maps.shape[3], int(size[0]), int(size[1])])


def top_k_cam_maps(features: tf.Tensor, weights: tf.Tensor, probs: tf.Tensor, k: int,
                   threshold: float, size: tuple[int, int]) -> dict[str, tf.Tensor]:
    """The figure's CAMs: each image's k most probable classes, their CAMs and
    display_maps of them, as one XLA computation (the steps' own dispatch would cost
    about a fifth of the whole at 320 px).

    `features` (batch, h, w, channels), `weights` (channels, classes), `probs` (batch,
    classes). Returns {"maps": (batch, k, H, W), "low_res": (batch, h, w, k), "probs" and
    "classes": (batch, k)}, as methods.top_k_maps.
    """
    low_res, shown, top_probs, top_classes = _top_k_cams_by_blocks(
        features, weights, probs, k, threshold, *_tables(features.shape[1:3], size))
    shown = tf.reshape(shown, [features.shape[0], k, int(size[0]), int(size[1])])
    return {"maps": shown, "low_res": low_res, "probs": top_probs, "classes": top_classes}


def cams_for_classes(features: tf.Tensor, weights: tf.Tensor, classes: tf.Tensor) -> tf.Tensor:
    """CAMs of chosen classes, (batch, h, w, k) for `classes` (batch, k).

    Only the k needed columns of W are used, so the cost does not grow with the number
    of classes.
    """
    per_image_weights = tf.gather(tf.cast(weights, tf.float32), classes, axis=1)
    return tf.einsum("bhwk,kbn->bhwn", tf.cast(features, tf.float32), per_image_weights)
