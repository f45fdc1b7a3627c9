"""Scores for maps on images whose cause is known: does the map show what the model uses?

Each image of the benchmark holds a small *cause* shape, the label's object, and a larger
*distractor* shape. An intervention proves the roles per image (`verification`): painting
the cause out changes the model's decision, painting the distractor out does not (the
ground truth is checked against the model, as in Zhou et al. 2022, "Do feature attribution
methods correctly attribute features?", AAAI). A map is then graded by whether it shows the
cause rather than the distractor (`cause_scores`), over the verified images only
(intervals.masked_mean_of). The shortcut test plants a marker the model learns to use, and
compares the map's mass on it with that of a control network trained without it
(Adebayo et al. 2022, "Post hoc explanations may be ineffective for detecting unknown
spurious correlation", ICLR; `mass_share`, `beats`). Known causes also rank the methods
truly, so `rank_agreement` says how well another score orders the methods the same way.

Shapes: `maps` (n, H, W) float at input resolution, any range; masks (n, H, W) bool;
probabilities (n, classes). TensorFlow tensors or NumPy arrays in, NumPy arrays out (the
scores in float64), except `edge_maps`, a map set like the lab's others: a tf.Tensor.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy import stats

from camlab.scores import intervals, metrics, registry

# The keys of cause_scores: means over the verified images only.
CAUSE_METRICS = registry.keys(group="cause")
# The keys of verification: per image, bool (n,); a report counts each.
VERIFICATION = ("cause_verified", "cause_matters", "distractor_matters")
PROBABILITY_DROP = 0.5  # a removal matters when the class's probability falls below this share


def _maps_and_masks(maps, *masks) -> tuple[np.ndarray, ...]:
    maps = np.asarray(maps)
    if maps.ndim != 3 or not np.issubdtype(maps.dtype, np.floating):
        raise ValueError(f"maps must be (n, H, W) float, not {maps.shape} {maps.dtype}")
    if not np.isfinite(maps).all():
        raise ValueError("maps must be finite")
    masks = tuple(np.asarray(mask).astype(bool) for mask in masks)
    for mask in masks:
        if mask.shape != maps.shape:
            raise ValueError(f"a mask of shape {mask.shape} for maps of shape {maps.shape}")
    return (maps, *masks)


def pointing(maps, masks) -> np.ndarray:
    """1.0 where the map's maximum lies on the mask, else 0.0: (n,) float64 (Zhang et al.
    2016's pointing game, strict: no tolerance, since the distractor lies near the cause).

    The maximum is metrics.pointing_game's: the first in row-major order, the same for
    every method. A constant map points nowhere and scores 0, so that an all-zero map (a
    method that found nothing) is not rewarded for a cause in the top-left corner.
    """
    maps, masks = _maps_and_masks(maps, masks)
    hit = metrics.pointing_game(maps, masks, tolerance=0).numpy()
    varies = maps.max(axis=(1, 2)) > maps.min(axis=(1, 2))
    return (hit & varies).astype(np.float64)


def mass_share(maps, masks) -> np.ndarray:
    """The share of each map's positive mass on its mask: sum(relu(map) * mask) /
    sum(relu(map)), (n,) float64 in [0, 1]; 0 for a map with no positive value.

    Arras et al. 2022's relevance mass accuracy ("CLEVR-XAI", Information Fusion): the
    cause mass, the distractor mass and the shortcut test's marker mass.
    """
    maps, masks = _maps_and_masks(maps, masks)
    positive = np.maximum(maps.astype(np.float64), 0.0)
    total = positive.sum(axis=(1, 2))
    return np.divide((positive * masks).sum(axis=(1, 2)), total,
                     out=np.zeros(len(maps)), where=total > 0)


marker_mass = mass_share  # the shortcut test's name for it: the mask is the marker's


def cause_auc(maps, cause, distractor) -> np.ndarray:
    """ROC AUC of each map's pixel values separating the cause's pixels (positive) from
    the distractor's (negative), background ignored: (n,) float64 in [0, 1].

    The Mann-Whitney U over n_pos * n_neg (Hanley and McNeil 1982): the share of (cause,
    distractor) pixel pairs where the cause pixel is higher, ties counting one half, so a
    constant map gives 0.5. Ranks are taken over each whole image with the background set
    to +inf, which puts it above every finite value: the cause and distractor pixels then
    hold ranks 1 .. n_pos + n_neg among themselves, ties averaged.
    """
    maps, cause, distractor = _maps_and_masks(maps, cause, distractor)
    if (cause & distractor).any():
        raise ValueError("the cause and distractor masks overlap")
    positives = cause.sum(axis=(1, 2)).astype(np.float64)
    negatives = distractor.sum(axis=(1, 2)).astype(np.float64)
    if not (positives.all() and negatives.all()):
        raise ValueError("every image needs a cause pixel and a distractor pixel; at this "
                         "image size a mask is empty")
    flat = (len(maps), maps.shape[1] * maps.shape[2])
    ranked = np.where((cause | distractor).reshape(flat),
                      maps.reshape(flat).astype(np.float64), np.inf)
    ranks = stats.rankdata(ranked, axis=1)
    u = (ranks * cause.reshape(flat)).sum(axis=1) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def cause_scores(maps, cause, distractor) -> dict[str, np.ndarray]:
    """Every known-cause score of CAUSE_METRICS per image, (n,) float64 each:
    "cause_pointing" (`pointing` on the cause), "cause_mass" and "distractor_mass"
    (`mass_share`; lower is better for the distractor), "cause_auc" (`cause_auc`)."""
    return {"cause_pointing": pointing(maps, cause),
            "cause_mass": mass_share(maps, cause),
            "distractor_mass": mass_share(maps, distractor),
            "cause_auc": cause_auc(maps, cause, distractor)}


def edge_maps(images) -> tf.Tensor:
    """The edge detector baseline: Sobel gradient magnitude of (n, H, W, C) images,
    (n, H, W) float32 >= 0, in the images' units (Adebayo et al. 2018, Clark et al. 2024's
    XAI-TRIS). It never looks at the model: a method should beat it.

    Per channel, then summed over the channels: a shape differing from its background in
    hue only (red on green of equal brightness) vanishes from the mean over RGB, yet the
    network sees it. tf.image.sobel_edges pads by reflection, so borders add no edge.
    """
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    if images.shape.rank != 4:
        raise ValueError(f"images must be (n, H, W, channels), not {images.shape}")
    if images.shape[0] == 0:  # MirrorPad refuses an empty batch
        return tf.zeros(images.shape[:3], tf.float32)
    gradients = tf.image.sobel_edges(images)  # (n, H, W, C, 2): d/dy, d/dx
    return tf.reduce_sum(tf.norm(gradients, axis=-1), axis=-1)


def matters(probs, probs_removed, drop: float = PROBABILITY_DROP) -> np.ndarray:
    """Whether removing a part matters to the decision, per image: (n,) bool.

    The class is the image's prediction, argmax of `probs` (n, classes); with the part
    removed (`probs_removed`, the same shape) either another class wins or that class's
    probability falls below `drop` times its own.
    """
    probs, removed = np.asarray(probs, np.float64), np.asarray(probs_removed, np.float64)
    if probs.ndim != 2 or removed.shape != probs.shape:
        raise ValueError(f"probabilities {probs.shape} and {removed.shape}: both must be "
                         "(n, classes)")
    predicted = np.argmax(probs, axis=1)[:, None]
    changed = np.argmax(removed, axis=1) != predicted[:, 0]
    fell = np.take_along_axis(removed, predicted, 1) < drop * np.take_along_axis(
        probs, predicted, 1)
    return changed | fell[:, 0]


def cause_verified(probs, probs_without_cause, probs_without_distractor,
                   drop: float = PROBABILITY_DROP) -> dict[str, np.ndarray]:
    """The intervention's verdict per image, VERIFICATION's keys, (n,) bool each:
    "cause_matters" (`matters` when the cause is removed), "distractor_matters" (the same
    for the distractor) and "cause_verified": the cause matters and the distractor does
    not. Inputs (n, classes) probabilities of the image and of the image without each."""
    cause = matters(probs, probs_without_cause, drop)
    distractor = matters(probs, probs_without_distractor, drop)
    return {"cause_verified": cause & ~distractor, "cause_matters": cause,
            "distractor_matters": distractor}


def kendall_tau(x, y) -> np.ndarray:
    """Kendall's tau-b (Kendall 1945) of each row of x with the same row of y, (r, m) ->
    (r,) float64: equal to scipy.stats.kendalltau row by row. NaN where a row is all tied
    (the tau is undefined) or holds a NaN."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    first, second = np.triu_indices(x.shape[1], 1)
    sx, sy = np.sign(x[:, first] - x[:, second]), np.sign(y[:, first] - y[:, second])
    # (concordant - discordant) / sqrt(pairs untied in x * pairs untied in y)
    denominator = np.sqrt(np.abs(sx).sum(axis=1) * np.abs(sy).sum(axis=1))
    return np.divide((sx * sy).sum(axis=1), denominator, out=np.full(len(x), np.nan),
                     where=denominator > 0)


# Scores that agree to this many significant digits are ties: the maps' probabilities are
# float32 (7 digits), and methods that leave an image the same class probability differ
# in its last digits only, which would otherwise order them.
TIE_DIGITS = 5


def settled(values) -> np.ndarray:
    """`values` rounded to TIE_DIGITS significant digits (NaN stays NaN), for ranking."""
    values = np.asarray(values, np.float64)
    magnitude = np.floor(np.log10(np.abs(values), out=np.zeros_like(values),
                                  where=np.isfinite(values) & (values != 0)))
    scale = 10.0 ** (magnitude - (TIE_DIGITS - 1))
    return np.round(values / scale) * scale


def _defined_interval(values: np.ndarray) -> list[float]:
    """intervals.interval of the resampled values that are not NaN; [nan, nan] if none."""
    defined = values[~np.isnan(values)]
    return intervals.interval(defined) if len(defined) else [float("nan")] * 2


def resampled_taus(truth: dict[str, intervals.Statistic], other: dict[str, intervals.Statistic],
                   images: int, seed: int, other_higher_is_better: bool,
                   truth_higher_is_better: bool = True,
                   resamples: int = intervals.RESAMPLES) -> np.ndarray:
    """Kendall's tau between the methods' truth and other statistics in each bootstrap
    resample, every statistic on the same resampled images: (resamples,) float64, NaN
    where it is undefined. Signs are flipped so that lower-is-better scores count higher."""
    methods = list(truth)
    taus = []
    for weights in intervals.resample_blocks(images, seed, resamples):
        x = np.stack([truth[m](weights) for m in methods], axis=1)
        y = np.stack([other[m](weights) for m in methods], axis=1)
        x, y = settled(x), settled(y)
        taus.append(kendall_tau(x if truth_higher_is_better else -x,
                                y if other_higher_is_better else -y))
    return np.concatenate(taus)


def rank_agreement(truth: dict[str, intervals.Statistic],
                   other: dict[str, intervals.Statistic], truth_points: dict[str, float],
                   other_points: dict[str, float], images: int, seed: int,
                   other_higher_is_better: bool, truth_higher_is_better: bool = True,
                   resamples: int = intervals.RESAMPLES) -> dict:
    """How well another score orders the methods like a known-cause score: {"tau": Kendall's
    tau-b of the methods' point values (scipy.stats.kendalltau), "ci95": [lo, hi] its
    percentile interval over images (`resampled_taus`), "methods": their count,
    "undefined": resamples without a tau (all methods tied), left out of the interval}.

    `truth` and `other` {method: Statistic} hold the same methods; +1 means the same order
    of better and worse. Values equal to TIE_DIGITS significant digits tie (`settled`). tau
    is NaN when the points are all tied, and the interval [nan, nan] when no resample has
    a tau.
    """
    methods = list(truth)
    if set(other) != set(methods) or set(truth_points) != set(methods) or set(
            other_points) != set(methods):
        raise ValueError("truth, other and their points must name the same methods")
    if len(methods) < 2:
        raise ValueError("ranking methods needs at least two")
    x = settled([truth_points[m] for m in methods])
    y = settled([other_points[m] for m in methods])
    tau = stats.kendalltau(x if truth_higher_is_better else -x,
                           y if other_higher_is_better else -y).statistic
    taus = resampled_taus(truth, other, images, seed, other_higher_is_better,
                          truth_higher_is_better, resamples)
    return {"tau": float(tau), "ci95": _defined_interval(taus), "methods": len(methods),
            "undefined": int(np.isnan(taus).sum())}


def paired_difference(a: intervals.Statistic, b: intervals.Statistic, images: int, seed: int,
                      resamples: int = intervals.RESAMPLES) -> tuple[float, list[float]]:
    """a - b on all images, and its percentile interval [lo, hi] over the same resampled
    images (intervals.resampled). Resamples where either is NaN (a masked mean without
    a kept image) are left out.

    "Does method X beat the edge detector": a = X's statistic, b = the edge baseline's. The
    shortcut test: a = the map's marker mass, b = the control network's on the same
    images."""
    whole = np.ones((1, images))
    point = float(a(whole)[0] - b(whole)[0])
    both = intervals.resampled({"a": a, "b": b}, images, seed, resamples)
    return point, _defined_interval(both["a"] - both["b"])


def beats(a: intervals.Statistic, b: intervals.Statistic, images: int, seed: int,
          higher_is_better: bool = True, resamples: int = intervals.RESAMPLES) -> bool:
    """Whether a is shown better than b: the interval of a - b (`paired_difference`) lies
    above 0, or below it where lower is better. The shortcut test: the map detects the
    shortcut when its marker mass beats the control network's."""
    low, high = paired_difference(a, b, images, seed, resamples)[1]
    return low > 0.0 if higher_is_better else high < 0.0
