"""The CAM papers' faithfulness scores: Average Drop / Increase in Confidence, and ROAD.

Both take what camlab.scores.metrics' deletion / insertion takes: `predict` maps (n, H, W, 3) RGB
images in [0, 255] to (n, classes) probabilities (metrics.chunked_predict), `images`
(batch, H, W, 3), `maps` (batch, H, W) at the images' resolution and `classes` (batch,) int;
both return one value per image. `probabilities` (batch,), the probability of `classes` on
the unchanged images, may be passed where the caller has it, saving that forward pass.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf
from scipy.linalg import lapack
from threadpoolctl import ThreadpoolController

from camlab.core import randomness
from camlab.errors import CamError

# Percent of the pixels removed at each point of a ROAD curve: pytorch-grad-cam's list.
ROAD_PERCENTILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ROAD_NOISE = 0.01  # std of the imputation noise, a fraction of the 0-255 range
# Rong et al. 2022's neighbour weights: 1/6 for the four direct neighbours, 1/12 for the
# four diagonal ones. Each neighbour pair once, the later one in row-major order second.
_LATER_NEIGHBOURS = (((0, 1), 1 / 6), ((1, -1), 1 / 12), ((1, 0), 1 / 6), ((1, 1), 1 / 12))
_ALL_NEIGHBOURS = _LATER_NEIGHBOURS + tuple(((-dy, -dx), w) for (dy, dx), w in
                                            _LATER_NEIGHBOURS)


def normalised_maps(maps) -> tf.Tensor:
    """(batch, H, W) maps min-max scaled to [0, 1] per image: (batch, H, W) float32.

    A constant map has no range: a positive one becomes all ones (it keeps the whole
    image), a zero or negative one all zeros. pytorch-grad-cam's scale_cam_image divides
    by (max - min + 1e-7) instead, which makes every constant map zeros.
    """
    maps = tf.convert_to_tensor(maps, tf.float32)
    low = tf.reduce_min(maps, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(maps, axis=[1, 2], keepdims=True)
    spread = high - low
    scaled = (maps - low) / tf.where(spread > 0, spread, 1.0)
    constant = tf.broadcast_to(tf.cast(high > 0, tf.float32), tf.shape(maps))
    return tf.where(spread > 0, scaled, constant)


def class_probability(predict: Callable, images, classes) -> tf.Tensor:
    """(batch,) float32: the probability `predict` gives `classes` (batch,) on `images`."""
    probs = tf.cast(predict(tf.convert_to_tensor(images, tf.float32)), tf.float32)
    return tf.gather(probs, tf.convert_to_tensor(classes, tf.int32), batch_dims=1)


def average_drop_increase(predict: Callable, images, maps, classes,
                          probabilities=None) -> dict[str, np.ndarray]:
    """Average Drop and Increase in Confidence (Chattopadhay et al. 2018, "Grad-CAM++";
    also reported by the Score-CAM paper, Wang et al. 2020), per image.

    O_c is the probability of the class on the image multiplied pixel-wise by the min-max
    normalised map (normalised_maps; RGB in [0, 255], so a zero map gives a black image),
    Y_c the probability on the image (`probabilities`, else one more forward pass).
    Returns (batch,) float32 arrays: "average_drop" = max(0, Y_c - O_c) / Y_c x 100 (0 where
    Y_c = 0), "increase_in_confidence" = 100 where O_c > Y_c else 0, so that either mean over
    images is the paper's percentage, and "explanation_probability" = O_c.
    pytorch-grad-cam's DropInConfidence differs: it multiplies the preprocessed input (a
    zero map gives the mean image, not black), reports max(0, Y_c - O_c) unscaled, and
    scores the logit unless given ClassifierOutputSoftmaxTarget.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    _check_maps(images.shape, np.shape(maps))
    explained = images * normalised_maps(maps)[..., None]
    kept = class_probability(predict, explained, classes)
    full = (class_probability(predict, images, classes) if probabilities is None
            else tf.convert_to_tensor(probabilities, tf.float32))
    return {**drop_and_increase(full.numpy(), kept.numpy()),
            "explanation_probability": kept.numpy()}


def drop_and_increase(full: np.ndarray, kept: np.ndarray) -> dict[str, np.ndarray]:
    """Per image, from Y_c `full` and O_c `kept` (batch,): "average_drop" = max(0, Y_c -
    O_c) / Y_c x 100 (0 where Y_c = 0) and "increase_in_confidence" = 100 where O_c > Y_c,
    else 0 (average_drop_increase)."""
    full, kept = np.asarray(full, np.float32), np.asarray(kept, np.float32)
    drop = 100 * np.divide(np.maximum(full - kept, 0), full, out=np.zeros_like(full),
                           where=full != 0)
    return {"average_drop": drop.astype(np.float32),
            "increase_in_confidence": (100 * (kept > full)).astype(np.float32)}


def _check_maps(image_shape, map_shape) -> None:
    if len(image_shape) != 4 or tuple(map_shape) != tuple(image_shape[:3]):
        raise CamError(f"maps {tuple(map_shape)} must be (batch, H, W) of images "
                       f"{tuple(image_shape)}; upsample them to the images' size first")


def _check_percentiles(percentiles: Sequence[float]) -> np.ndarray:
    values = np.asarray(percentiles, np.float64).reshape(-1)
    if values.size == 0 or not np.all((values > 0) & (values < 100)):
        raise CamError(f"ROAD percentiles={list(percentiles)}; give percents of pixels "
                       "removed, each strictly between 0 and 100, e.g. 10, 20, ..., 90")
    return values


def removed_masks(maps, percentiles: Sequence[float], tie_keys) -> np.ndarray:
    """The pixels ROAD removes: (batch, 2, len(percentiles), H, W) bool, most relevant
    first (index 0 of axis 1) and least relevant first (index 1).

    Pixels are ranked by `maps` (batch, H, W), highest first; equal values are ranked by
    `tie_keys` (batch, H, W), as the ROAD authors break ties with a small random
    perturbation. p percent removes floor(p x H x W / 100) pixels (the authors'
    `int(width * height * th_p)`). pytorch-grad-cam instead removes every pixel at or
    above the map's (100 - p)th percentile: for distinct values at most one pixel more, and
    every tied pixel at the threshold. Its percentile q keeps q percent, so its curve is
    ours reversed; the mean over 10, ..., 90 is the same.
    """
    maps = np.asarray(maps, np.float32)
    batch, height, width = maps.shape
    pixels = height * width
    keys = (np.reshape(tie_keys, (batch, pixels)), -maps.reshape(batch, pixels))
    order = np.lexsort(keys, axis=-1)  # the last key sorts first
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(pixels)[None].repeat(batch, 0), axis=1)
    counts = np.floor(_check_percentiles(percentiles) * pixels / 100).astype(np.int64)
    most = position[:, None, :] < counts[None, :, None]
    least = position[:, None, :] >= pixels - counts[None, :, None]
    return np.stack([most, least], axis=1).reshape(batch, 2, len(counts), height, width)


def impute(images, removed, noise=None) -> np.ndarray:
    """Noisy linear imputation (Rong et al. 2022, "ROAD"): (n, H, W, C) float32 images
    whose `removed` (n, H, W) bool pixels are replaced, all other pixels unchanged.

    Each removed pixel becomes the weighted mean of its in-image neighbours (weights 1/6
    direct, 1/12 diagonal, renormalised at the border), the known ones taken from the
    image: one sparse symmetric positive-definite system per image, solved exactly.
    `noise` (n, H, W, C), when given, is then added to the removed pixels (ROAD uses
    Gaussian noise; see `road`). Every image must keep at least one pixel.
    """
    images, removed = np.asarray(images), np.asarray(removed, bool)
    if images.ndim != 4 or removed.shape != images.shape[:3]:
        raise CamError(f"removed {removed.shape} must be (n, H, W) of images "
                       f"{images.shape} (n, H, W, C)")
    if removed.all(axis=(1, 2)).any():
        raise CamError("imputation needs at least one kept pixel per image; remove fewer "
                       "than all H x W pixels")
    weight_sums = _neighbour_sum(np.ones(images.shape[1:3] + (1,)))[..., 0]
    filled = images.astype(np.float32)
    # One LAPACK call per image: scipy solves one banded system at a time, and each
    # solve (milliseconds) dwarfs the loop.
    with _one_blas_thread():
        for index in np.flatnonzero(removed.any(axis=(1, 2))):
            unknown = removed[index]
            image = images[index].astype(np.float64)
            known_sum = _neighbour_sum(np.where(unknown[..., None], 0.0, image))
            solution = _harmonic_fill(unknown, known_sum, weight_sums)
            filled[index][unknown] = solution[unknown]
    if noise is not None:
        filled += np.where(removed[..., None], np.asarray(noise, np.float32), 0)
    return filled


def _neighbour_sum(grid: np.ndarray) -> np.ndarray:
    """(H, W, C): each pixel's weighted sum of its 8 neighbours' values, 0 outside."""
    height, width = grid.shape[:2]
    padded = np.pad(grid, ((1, 1), (1, 1), (0, 0)))
    total = np.zeros_like(grid)
    for (dy, dx), weight in _ALL_NEIGHBOURS:
        total += weight * padded[1 + dy:1 + dy + height, 1 + dx:1 + dx + width]
    return total


def _harmonic_fill(unknown: np.ndarray, known_sum: np.ndarray, weight_sums: np.ndarray
                   ) -> np.ndarray:
    """(H, W, C): the system's solution at the `unknown` (H, W) pixels, 0 elsewhere.

    Pixel i's equation: weight_sums_i x_i - sum_j w_ij x_j (j unknown neighbours) =
    known_sum_i (the known neighbours' weighted values). Numbered row by row, unknowns
    couple only within a band as wide as about one row of unknowns; the system is solved
    by banded Cholesky, column by column when that band is narrower.
    """
    if unknown.sum(axis=1).max() > unknown.sum(axis=0).max():
        return _harmonic_fill(unknown.T, known_sum.transpose(1, 0, 2), weight_sums.T
                              ).transpose(1, 0, 2)
    height, width = unknown.shape
    rank = np.cumsum(unknown).reshape(height, width) - 1  # row-major index among unknowns
    padded_unknown, padded_rank = np.pad(unknown, 1), np.pad(rank, 1)
    couplings = []
    for (dy, dx), weight in _LATER_NEIGHBOURS:
        window = (slice(1 + dy, 1 + dy + height), slice(1 + dx, 1 + dx + width))
        both = unknown & padded_unknown[window]
        later = padded_rank[window][both]
        couplings.append((later, later - rank[both], weight))
    band = max([int(gap.max()) for _, gap, _ in couplings if gap.size] + [0])
    # LAPACK's upper band storage: A[i, j] (i <= j) at banded[band + i - j, j].
    banded = np.zeros((band + 1, int(rank[-1, -1]) + 1))
    banded[band] = weight_sums[unknown]
    for later, gap, weight in couplings:
        banded[band - gap, later] = -weight
    _, solution, info = lapack.dpbsv(banded, known_sum[unknown])
    if info != 0:
        raise RuntimeError(f"banded Cholesky failed (LAPACK info {info})")
    filled = np.zeros_like(known_sum)
    filled[unknown] = solution
    return filled


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """threadpoolctl's view of the BLAS libraries loaded here (scipy's among them, imported
    above). Made once: looking the libraries up costs ~3 ms, a limit from it ~0.03 ms."""
    return ThreadpoolController()


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Every loaded BLAS (scipy's LAPACK among them) on one thread, restored afterwards.

    Each banded solve is a few milliseconds of small blocks: on a shared machine,
    OpenBLAS's threads spent more than 100x that waiting for each other (1.9 s against
    14 ms for one 64 px system, measured here under load). The limit holds for the whole
    process, not this thread alone: ROAD runs on its caller's thread, and no other BLAS
    work of the lab runs beside it.
    """
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def road(predict: Callable, images, maps, classes, *, seed: int = 0, ids=None,
         percentiles: Sequence[float] = ROAD_PERCENTILES, noise: float = ROAD_NOISE,
         probabilities=None) -> dict[str, np.ndarray]:
    """ROAD, Remove And Debias (Rong et al. 2022), most and least relevant first, per image.

    At each percent p of `percentiles` the top (MoRF) or bottom (LeRF) p percent of the
    pixels by map value (removed_masks) are imputed (impute) with Gaussian noise of std
    `noise` x 255 (the authors' 0.01 on [0, 1] images), and the probability of `classes`
    is taken: 2 x len(percentiles) forward passes per image, in one `predict` call. Noise
    and tie-breaking come from randomness stream "road", keyed by (`seed`, `ids`), so an
    image gets the same numbers in any batch.
    Returns "road_morf_curve", "road_lerf_curve": (batch, len(percentiles)) probabilities;
    "road_morf", "road_lerf": (batch,) the curve's mean minus Y_c (the probability on the
    image), as pytorch-grad-cam's ROAD*Average report them (MoRF: lower is more
    faithful; LeRF: higher); "road_combined" = (road_lerf - road_morf) / 2, its
    ROADCombined (higher is more faithful).
    """
    images = np.asarray(images, np.float32)
    _check_maps(images.shape, np.shape(maps))
    batch, height, width, channels = images.shape
    count = len(_check_percentiles(percentiles))
    draws = randomness.normal(seed, randomness.image_ids(batch, ids), "road",
                              (2 * count * channels + 1, height, width)).numpy()
    removed = removed_masks(maps, percentiles, draws[:, -1])
    field = (noise * 255 * draws[:, :-1]).reshape(batch, 2, count, channels, height, width)
    imputed = impute(np.repeat(images, 2 * count, axis=0),
                     removed.reshape(-1, height, width),
                     field.transpose(0, 1, 2, 4, 5, 3).reshape(-1, height, width, channels))
    classes = np.asarray(classes, np.int32)
    curves = class_probability(predict, imputed, np.repeat(classes, 2 * count)).numpy()
    curves = curves.reshape(batch, 2, count)
    full = (class_probability(predict, images, classes) if probabilities is None
            else tf.convert_to_tensor(probabilities, tf.float32)).numpy()
    most, least = curves[:, 0].mean(axis=1) - full, curves[:, 1].mean(axis=1) - full
    return {"road_morf_curve": curves[:, 0], "road_lerf_curve": curves[:, 1],
            "road_morf": most, "road_lerf": least, "road_combined": (least - most) / 2}
