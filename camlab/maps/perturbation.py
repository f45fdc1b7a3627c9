"""Perturbation methods: maps of the input pixels from forward passes of changed images.

Occlusion (Zeiler and Fergus 2014) and RISE (Petsiuk et al. 2018), each a function of
camlab.maps.method_spec's shape returning (batch, H, W, k) at the images' resolution; such a
method takes no LAYER. Both score with the class probability, as both papers do (and as
Score-CAM does here), through one compiled forward pass (cam_family.compiled_probabilities)
of Options.inputs_per_pass changed images at a time; every class of an image comes
from the same passes.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

import cam_utils
from camlab.core import randomness
from camlab.maps.cam_family import compiled_probabilities
from camlab.maps.method_spec import (
    DEFAULT_OPTIONS,
    OCCLUSION_PATCH,
    OCCLUSION_STRIDE,
    RISE_MASKS,
    Method,
    Options,
)
from camlab.networks.classifier import Classifier

GREY = 127.5  # the occluding square's value in every channel of RGB [0, 255]
RISE_GRID = 7  # RISE: cells per side of the random low-resolution masks (their s)
RISE_KEEP = 0.5  # RISE: the probability that a cell is kept (their p1)
RISE_BLOCK = 256  # RISE: masks made at a time (256 x 224 x 224 float32 is 51 MB)


def _square(side: int, patch: float, stride: float) -> tuple[int, int]:
    """The occluding square's side and step in pixels along an image side of `side`."""
    return max(1, round(patch * side)), max(1, round(stride * side))


def _anchors(side: int, patch: int, stride: int) -> list[int]:
    """Where the square starts along one side: every `stride` pixels, and flush with the
    far edge, so that every pixel is covered at least once."""
    anchors = list(range(0, side - patch + 1, stride))
    return anchors if anchors[-1] == side - patch else [*anchors, side - patch]


def occlusion_masks(height: int, width: int, patch: float, stride: float) -> tf.Tensor:
    """(positions, H, W) float32, 1 inside each position of the square: side
    round(`patch` x the image's side) pixels, moved round(`stride` x side) pixels at a
    time (at least 1 each), row by row."""
    spans = []
    for side in (height, width):
        size, step = _square(side, patch, stride)
        starts = np.array(_anchors(side, size, step))[:, None]
        pixels = np.arange(side)[None]
        spans.append((pixels >= starts) & (pixels < starts + size))  # (positions, side)
    masks = spans[0][:, None, :, None] & spans[1][None, :, None, :]
    return tf.constant(masks.reshape(-1, height, width), tf.float32)


def occlusion_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
                   images: tf.Tensor, layer: str = "", options: Options = DEFAULT_OPTIONS,
                   ids=None) -> tf.Tensor:
    """Occlusion (Zeiler and Fergus 2014, Sec. 4.2) of `classes`: (batch, H, W, k), at each
    pixel the mean, over the positions of a grey square (GREY) that cover it, of the drop
    in the class probability when the square hides that part of the image: p(x) -
    p(x occluded). Square and step from `options.occlusion_patch` and
    `options.occlusion_stride` (occlusion_masks). xplique sums the drops instead of
    averaging them, so pixels under more positions weigh more, and its squares never
    reach the far edge when the step does not divide the side; its default value is 0.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    batch, height, width, _ = images.shape
    cap = options.inputs_per_pass(height, width)
    masks = occlusion_masks(height, width, options.occlusion_patch, options.occlusion_stride)
    positions, forward = masks.shape[0], compiled_probabilities(model)
    clean = tf.gather(forward(images), classes, batch_dims=1)  # (batch, k)
    drops = []
    for start in range(0, batch * positions, cap):
        rows = tf.range(start, min(start + cap, batch * positions))
        owners, square = rows // positions, tf.gather(masks, rows % positions)[..., None]
        occluded = tf.gather(images, owners) * (1.0 - square) + GREY * square
        probs = tf.gather(forward(occluded), tf.gather(classes, owners), batch_dims=1)
        drops.append(tf.gather(clean, owners) - probs)
    drops = tf.reshape(tf.concat(drops, axis=0), [batch, positions, -1])
    coverage = tf.reduce_sum(masks, axis=0)[..., None]  # (H, W, 1), at least 1
    return tf.einsum("bpk,phw->bhwk", drops, masks) / coverage


def rise_grids(count: int, height: int, width: int, seed: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """RISE's random masks before upsampling, the same for every image: (count, s, s)
    float32 cells, each 1 with probability RISE_KEEP, and (count, 2) int shifts in
    [0, cell size) per side; drawn from randomness.global_generator(seed, "rise")."""
    generator = randomness.global_generator(seed, "rise")
    grids = generator.random((count, RISE_GRID, RISE_GRID)) < RISE_KEEP
    cells = [math.ceil(side / RISE_GRID) for side in (height, width)]
    shifts = generator.integers(0, cells, size=(count, 2))
    return grids.astype(np.float32), shifts


def rise_masks(grids: np.ndarray, shifts: np.ndarray, height: int, width: int) -> tf.Tensor:
    """(n, H, W) float32 masks in [0, 1] (Petsiuk et al. 2018): each (s, s) grid
    upsampled bilinearly (cam_utils.interpolation_matrix, tf.image.resize's half-pixel
    convention, edges clamped; the authors' code mirrors them, which changes only the
    outer half cell) to (s + 1) x the cell size, ceil(side / s), then cropped to the image
    at its shift. Resize and crop are one matrix per side: its crop's rows."""
    crops = []
    for axis, side in enumerate((height, width)):
        cell = math.ceil(side / RISE_GRID)
        resize = cam_utils.interpolation_matrix(RISE_GRID, (RISE_GRID + 1) * cell)
        crops.append(tf.gather(resize, shifts[:, axis:axis + 1] + np.arange(side)[None]))
    return crops[0] @ tf.constant(grids) @ tf.transpose(crops[1], [0, 2, 1])


def rise_maps(model: Classifier, features: tf.Tensor, classes: tf.Tensor,
              images: tf.Tensor, layer: str = "", options: Options = DEFAULT_OPTIONS,
              ids=None) -> tf.Tensor:
    """RISE (Petsiuk et al. 2018) of `classes`: (batch, H, W, k), the sum over
    N = `options.rise_masks` random masks M_i (rise_masks, seeded by `options.seed` and
    shared by all images) of p(image x M_i) M_i, over N x RISE_KEEP. A masked pixel is
    black (0). xplique divides by each pixel's sum of masks instead of N x p1, and crops
    all masks of a batch at one shift (tf.image.random_crop of the batch).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    if options.rise_masks < 1:
        raise ValueError(f"rise_masks must be at least 1, not {options.rise_masks!r}")
    batch, height, width, _ = images.shape
    cap = options.inputs_per_pass(height, width)
    count = options.rise_masks
    grids, shifts = rise_grids(count, height, width, options.seed)
    forward = compiled_probabilities(model)
    # Masks are made RISE_BLOCK at a time; their scores (masks, batch, k) come from passes
    # of at most `cap` masked images, and each block's weighted sum is one product.
    total = tf.zeros([batch, height, width, classes.shape[1]], tf.float32)
    for block in range(0, count, RISE_BLOCK):
        masks = rise_masks(grids[block:block + RISE_BLOCK], shifts[block:block + RISE_BLOCK],
                           height, width)  # (m, H, W)
        rows = masks.shape[0] * batch  # (mask, image), mask-major
        scores = []
        for start in range(0, rows, cap):
            chosen = tf.range(start, min(start + cap, rows))
            owners = chosen % batch
            masked = tf.gather(images, owners) * tf.gather(masks, chosen // batch)[..., None]
            scores.append(tf.gather(forward(masked), tf.gather(classes, owners), batch_dims=1))
        scores = tf.reshape(tf.concat(scores, axis=0), [masks.shape[0], batch, -1])
        total += tf.einsum("mbk,mhw->bhwk", scores, masks)
    return total / (count * RISE_KEEP)


def _positions(side: int = 224) -> int:
    """The square's positions on a `side` x `side` image at the default settings."""
    return len(_anchors(side, *_square(side, OCCLUSION_PATCH, OCCLUSION_STRIDE))) ** 2


CHANGED = "the score of changed images"  # the README's row of both (Method.group)
METHODS = {
    "occlusion": Method(
        "Occlusion", occlusion_maps, on_input=True, needs_images=True,
        passes=f"a forward pass per position of the square ({_positions()} at the default "
               "OCCLUSION_PATCH and OCCLUSION_STRIDE, 224 px), and one of the image; all "
               "classes from the same passes",
        group=CHANGED, summary="its drop under a sliding grey square",
        paper="[Zeiler and Fergus 2014](https://arxiv.org/abs/1311.2901)"),
    "rise": Method(
        "RISE", rise_maps, on_input=True, needs_images=True,
        passes=f"RISE_MASKS ({RISE_MASKS}) forward passes; all classes from the same passes",
        group=CHANGED, summary="its mean over random masks, each weighted by its score",
        paper="[Petsiuk et al. 2018](https://arxiv.org/abs/1806.07421)"),
}
