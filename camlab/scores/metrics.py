"""Scores for saliency maps: localisation against ground truth, and faithfulness to the model.

The score functions take a batch and return one value per image, vectorized in TensorFlow.
Shapes: `maps` (batch, H, W) float at input resolution; `masks` (batch, H, W) bool;
boxes (batch, 4) normalised (ymin, xmin, ymax, xmax) as in tfds. camlab.evaluate.evaluation applies
them all to a run's maps, batch by batch; camlab.scores.removal holds deletion and insertion.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy import ndimage

from camlab.scores import localisation, registry

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


def rank_accuracy(maps, masks) -> np.ndarray:
    """Relevance rank accuracy (Arras et al. 2022, CLEVR-XAI; Quantus' RelevanceRankAccuracy):
    the share of the object's K pixels among the map's K highest, K the object's size,
    (batch,) float64; ties go to the first in row order; 0 for an image without object."""
    maps = np.asarray(maps, np.float64).reshape(len(masks), -1)
    masks = np.asarray(masks, bool).reshape(len(maps), -1)
    order = np.argsort(-maps, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(order.shape[1]), order.shape),
                      axis=1)
    sizes = masks.sum(axis=1)
    hits = (masks & (ranks < sizes[:, None])).sum(axis=1)
    return np.divide(hits, sizes, out=np.zeros(len(maps)), where=sizes > 0)


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


# Each pixel is connected to its 8 neighbours in its own map, to none of another map.
_MAP_8 = np.zeros((3, 3, 3), bool)
_MAP_8[1] = True


def largest_region_box(maps, relative_threshold: float = CAM_BOX_THRESHOLD) -> np.ndarray:
    """The CAM paper's box: around the largest 8-connected region above a fraction of the max.

    Returns (batch, 4) float32 normalised (ymin, xmin, ymax, xmax); an all-zero box where
    the map has no positive value. Of equally large regions, the one whose last pixel
    (row-major) comes first wins.
    """
    maps = np.asarray(maps, np.float32)
    peak = maps.max(axis=(1, 2), keepdims=True)
    labels, count = ndimage.label((maps >= relative_threshold * peak) & (peak > 0), _MAP_8)
    if not count:
        return np.zeros((len(maps), 4), np.float32)
    regions = np.arange(1, count + 1)
    image, pixel = np.divmod(np.arange(labels.size).reshape(labels.shape), labels[0].size)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    last = ndimage.maximum(pixel, labels, regions)
    image = ndimage.minimum(image, labels, regions).astype(np.intp)  # a region's one map
    order = np.lexsort((last, -sizes, image))  # by image, largest first, then earliest
    first = order[np.r_[True, image[order][1:] != image[order][:-1]]]
    chosen = np.zeros(len(maps), np.intp)
    chosen[image[first]] = regions[first]
    region = (labels == chosen[:, None, None]) & (chosen[:, None, None] > 0)
    return mask_box(region).numpy()


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


def centre_gaussian_maps(batch: int, height: int, width: int, sigma: float = 0.25
                         ) -> tf.Tensor:
    """The centre-prior baseline: one Gaussian bump (std `sigma` x side) per image."""
    y = (tf.range(height, dtype=tf.float32) + 0.5) / height - 0.5
    x = (tf.range(width, dtype=tf.float32) + 0.5) / width - 0.5
    bump = tf.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return tf.tile(bump[None], [batch, 1, 1])


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


def box_masks(boxes: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """(batch, H, W) bool: the pixels inside each normalised (ymin, xmin, ymax, xmax) box
    of (batch, 4), its edges rounded to the nearest pixel edge as in camlab.scores.localisation."""
    edges = tf.round(tf.cast(boxes, tf.float32) * [height, width, height, width])
    rows = tf.range(height, dtype=tf.float32)[None]
    cols = tf.range(width, dtype=tf.float32)[None]
    in_rows = (rows >= edges[:, 0:1]) & (rows < edges[:, 2:3])
    in_cols = (cols >= edges[:, 1:2]) & (cols < edges[:, 3:4])
    return in_rows[:, :, None] & in_cols[:, None, :]


# Every localisation key of metrics.json, by the ground truth it needs.
BOX_METRICS = registry.keys(needs="box")
MASK_METRICS = registry.keys(needs="mask")
POINTING_METRICS = registry.keys(needs="box or mask")  # on the mask, else the box


def localisation_scores(maps: tf.Tensor, batch: dict, correct: np.ndarray,
                        threshold: float, box_protocol: str = "lab") -> dict[str, np.ndarray]:
    """Per-image localisation scores against the ground truth `batch` has; {} if none.

    With a box ("bbox"): the CAM paper's box and top-1 localisation, and the per-threshold
    hits of MaxBoxAccV2. With a mask ("mask"): mask IoU and the pixel histograms of PxAP.
    The pointing game (with the paper's tolerance, and strict: on the object) uses the
    mask, else the pixels inside the box. Neither is made from the other for the box or
    mask scores: wsolevaluation scores CUB and ImageNet by boxes, OpenImages by masks.
    `box_protocol` (localisation.BOX_PROTOCOLS) is the box geometry of MaxBoxAccV2's hits.
    """
    scores = {}
    if "bbox" in batch:
        box_hit = (box_iou(largest_region_box(maps), batch["bbox"]) >= 0.5).numpy()
        scores.update(box_localisation=box_hit, top1_localisation=box_hit & correct,
                      # Choe et al. 2020 choose thresholds over the whole split: per-image
                      # hits at every threshold (and below, pixel histograms), pooled in
                      # summarise.
                      box_hits=localisation.box_hits(maps, batch["bbox"].numpy(),
                                                     protocol=box_protocol))
    if "mask" in batch:
        object_hist, background_hist = localisation.pixel_counts(maps, batch["mask"].numpy(),
                                                                 per_image=True)
        scores.update(mask_iou=mask_iou(maps, batch["mask"], threshold).numpy(),
                      pixel_hist_object=object_hist, pixel_hist_background=background_hist)
        target = batch["mask"]
    elif "bbox" in batch:
        target = box_masks(batch["bbox"], maps.shape[1], maps.shape[2])
    else:
        return scores
    scores.update(pointing_game=pointing_game(maps, target).numpy(),
                  pointing_game_strict=pointing_game(maps, target, 0).numpy(),
                  rank_accuracy=rank_accuracy(maps, target))
    return scores


def pooled(scores: dict[str, np.ndarray]) -> dict[str, float]:
    """One number per localisation score from the per-image scores of all batches (the
    keys of localisation_scores, each concatenated over batches): the mean of a per-image
    value (batch,); MaxBoxAccV2 from all images' box_hits, one threshold for the whole
    set; PxAP from the summed pixel histograms, left out without object pixels."""
    out = {key: float(np.mean(value)) for key, value in scores.items() if value.ndim == 1}
    if "box_hits" in scores:
        out["maxboxacc_v2"] = localisation.max_box_acc_v2(scores["box_hits"])
    if "pixel_hist_object" in scores and scores["pixel_hist_object"].sum() > 0:
        out["pxap"] = localisation.pxap(scores["pixel_hist_object"].sum(axis=0),
                                        scores["pixel_hist_background"].sum(axis=0))
    return out
