"""95% intervals over images, and which methods cannot be told apart from the best.

Every score of the lab is a statistic of per-image results: a mean (pointing, deletion
AUC), or a dataset-level score that picks its threshold over all images (MaxBoxAccV2,
PxAP). A percentile bootstrap over images (Efron and Tibshirani 1993, ch. 13) resamples
whole images with replacement, RESAMPLES times, and recomputes the statistic on each
resample, the threshold choice included. A resample is a row of counts (how often each
image was drawn), so a statistic is a function of weights (resamples, images) -> values
(resamples,), and a paired comparison evaluates two methods on the same resamples.

The resamples are drawn from (SEED, images) alone, so the same SEED gives the same bits,
and every method, baseline and metric of a run is resampled identically (paired).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
_STREAM = 5  # = randomness.STREAMS["bootstrap"], by number: randomness imports TensorFlow
_BLOCK_CELLS = 2**24  # weights drawn per block: resamples x images, ~128 MB of float64

Statistic = Callable[[np.ndarray], np.ndarray]  # weights (r, n) -> (r,)


def resample_blocks(images: int, seed: int, resamples: int = RESAMPLES
                    ) -> Iterator[np.ndarray]:
    """The bootstrap's weights, in blocks of rows: (r, images) float64 counts summing to
    `images` per row, RESAMPLES rows in all, the same for the same (seed, images)."""
    if images < 1:
        raise ValueError("a bootstrap needs at least one image")
    rng = np.random.default_rng([seed, _STREAM, images])
    rows = max(1, _BLOCK_CELLS // images)
    for start in range(0, resamples, rows):
        drawn = rng.integers(0, images, size=(min(rows, resamples - start), images))
        offsets = np.arange(len(drawn))[:, None] * images
        yield np.bincount((drawn + offsets).ravel(),
                          minlength=len(drawn) * images).reshape(len(drawn), images).astype(
            np.float64)


def resampled(statistics: dict[str, Statistic], images: int, seed: int,
              resamples: int = RESAMPLES) -> dict[str, np.ndarray]:
    """Each statistic on the same resamples of the images: {name: (resamples,) float64}."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    for weights in resample_blocks(images, seed, resamples):
        for name, statistic in statistics.items():
            parts[name].append(np.asarray(statistic(weights), np.float64))
    return {name: np.concatenate(values) for name, values in parts.items()}


def interval(values: np.ndarray, level: float = LEVEL) -> list[float]:
    """The percentile interval [lo, hi] of resampled values (resamples,)."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def mean_of(values) -> Statistic:
    """The weighted mean of per-image values (images,): the statistic of a mean score."""
    values = np.asarray(values, np.float64)
    return lambda weights: weights @ values / weights.sum(axis=1)


def max_box_acc_v2_of(hits) -> Statistic:
    """MaxBoxAccV2 of per-image box hits (images, T, levels) bool (localisation.box_hits):
    the threshold is picked again, per IoU level, in every resample."""
    hits = np.asarray(hits)
    flat = hits.reshape(len(hits), -1).astype(np.float64)

    def statistic(weights):
        accuracy = (weights @ flat / weights.sum(axis=1, keepdims=True)).reshape(
            len(weights), *hits.shape[1:])
        return accuracy.max(axis=1).mean(axis=1)

    return statistic


def pxap_of(object_hist, background_hist) -> Statistic:
    """PxAP of per-image pixel histograms (images, bins) (localisation.pixel_counts with
    per_image=True), pooled with the resample's weights."""
    from camlab.scores.localisation import pxap_of_pooled  # NumPy and SciPy only

    objects = np.asarray(object_hist, np.float64)
    background = np.asarray(background_hist, np.float64)
    return lambda weights: pxap_of_pooled(weights @ objects, weights @ background)


def ties(statistics: dict[str, np.ndarray], points: dict[str, float], higher_is_better: bool,
         level: float = LEVEL) -> list[str]:
    """The entries that cannot be told apart from the best: the best by its point value,
    and every other whose paired difference from it has an interval holding 0.

    `statistics` {name: (resamples,)} on the same resamples; `points` {name: value}.
    """
    best = (max if higher_is_better else min)(points, key=points.get)
    tied = []
    for name, values in statistics.items():
        low, high = interval(values - statistics[best], level)
        if low <= 0.0 <= high:
            tied.append(name)
    return tied


def not_worse(values: np.ndarray, best: np.ndarray, higher_is_better: bool,
              level: float = LEVEL) -> bool:
    """Whether an entry cannot be shown worse than `best` (both (resamples,) on the same
    resamples): the paired difference's interval reaches 0 or the better side."""
    low, high = interval(values - best, level)
    return high >= 0.0 if higher_is_better else low <= 0.0


def masked_mean_of(values, keep) -> Statistic:
    """The weighted mean of per-image values (images,) over the images where `keep`
    (images,) bool is True: sum(w * keep * v) / sum(w * keep), per resample.

    The known-cause metrics are means over the "cause verified" images only. A resample
    that draws no kept image has no mean: its value is NaN. The values of the images left
    out are never read, so they may be NaN.
    """
    keep, values = np.asarray(keep, bool), np.asarray(values, np.float64)
    if keep.shape != values.shape or values.ndim != 1:
        raise ValueError(f"values {values.shape} and keep {keep.shape} must be (images,)")
    values = np.where(keep, values, 0.0)
    kept = keep.astype(np.float64)

    def statistic(weights):
        total = weights @ kept
        return np.divide(weights @ values, total, out=np.full(len(weights), np.nan),
                         where=total > 0)

    return statistic
