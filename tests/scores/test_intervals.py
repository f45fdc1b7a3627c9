"""Bootstrap intervals over images and paired ties (camlab/scores/intervals.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from camlab.core import randomness
from camlab.scores import intervals, localisation

ROOT = Path(__file__).resolve().parents[2]


def test_interval_of_a_mean_has_the_textbook_width():
    values = np.random.default_rng(0).normal(0.6, 0.2, 2000)
    resampled = intervals.resampled({"m": intervals.mean_of(values)}, len(values), seed=0)
    low, high = intervals.interval(resampled["m"])
    textbook = 2 * 1.959964 * values.std(ddof=1) / np.sqrt(len(values))
    assert high - low == pytest.approx(textbook, rel=0.10)
    assert low < values.mean() < high


def test_same_seed_same_bits_other_seed_other_interval():
    values = np.random.default_rng(1).random(300)
    stats = {"m": intervals.mean_of(values)}
    first = intervals.resampled(stats, 300, seed=7)["m"]
    np.testing.assert_array_equal(first, intervals.resampled(stats, 300, seed=7)["m"])
    assert not np.array_equal(first, intervals.resampled(stats, 300, seed=8)["m"])
    assert len(first) == intervals.RESAMPLES


def test_blocks_of_weights_are_resamples_of_all_images():
    blocks = list(intervals.resample_blocks(50, seed=0, resamples=30))
    weights = np.concatenate(blocks)
    assert weights.shape == (30, 50) and (weights.sum(axis=1) == 50).all()
    assert (weights >= 0).all() and len({row.tobytes() for row in weights}) == 30


def test_the_bootstrap_draws_from_its_named_stream_without_tensorflow():
    """intervals names its stream by number so as to import NumPy alone: the number is
    randomness.STREAMS["bootstrap"], shared with no other use, and stays 5 (every
    committed interval was drawn with it)."""
    assert intervals._STREAM == randomness.STREAMS["bootstrap"] == 5
    assert len(set(randomness.STREAMS.values())) == len(randomness.STREAMS)
    code = "import camlab.scores.intervals, sys; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["False"], result.stderr


def test_identical_methods_are_tied_and_a_better_one_is_not():
    rng = np.random.default_rng(2)
    scores = rng.random(400)
    better = scores + 0.01 + 0.01 * rng.random(400)  # every image better
    stats = {"a": intervals.mean_of(scores), "copy": intervals.mean_of(scores.copy()),
             "better": intervals.mean_of(better)}
    resampled = intervals.resampled(stats, 400, seed=0)
    points = {name: float(np.mean(v)) for name, v in
              (("a", scores), ("copy", scores), ("better", better))}
    assert intervals.ties(resampled, points, higher_is_better=True) == ["better"]
    resampled.pop("better")
    points.pop("better")
    assert intervals.ties(resampled, points, higher_is_better=True) == ["a", "copy"]
    # Lower is better (deletion AUC): the worse-scoring copy pair is now the best.
    assert intervals.ties(intervals.resampled(stats, 400, 0), {**points, "better": 1.0},
                          higher_is_better=False) == ["a", "copy"]


def test_max_box_acc_v2_is_picked_again_in_each_resample():
    rng = np.random.default_rng(3)
    hits = rng.random((60, 100, 3)) < np.linspace(0.2, 0.8, 100)[None, :, None]
    statistic = intervals.max_box_acc_v2_of(hits)
    assert statistic(np.ones((1, 60)))[0] == pytest.approx(localisation.max_box_acc_v2(hits))
    # A resample of one image: its own best threshold, not the split's.
    only = np.zeros((1, 60))
    only[0, 5] = 60
    assert statistic(only)[0] == pytest.approx(hits[5].max(axis=0).mean())


def test_pxap_of_per_image_histograms_pools_them():
    rng = np.random.default_rng(4)
    maps = rng.random((5, 12, 12))
    masks = rng.random((5, 12, 12)) < 0.3
    pooled = localisation.pixel_counts(maps, masks)
    objects, background = localisation.pixel_counts(maps, masks, per_image=True)
    np.testing.assert_array_equal(objects.sum(axis=0), pooled[0])
    np.testing.assert_array_equal(background.sum(axis=0), pooled[1])
    for image in range(5):  # each row is np.histogram of that image alone
        np.testing.assert_array_equal(
            objects[image], localisation.pixel_counts(maps[image:image + 1],
                                                      masks[image:image + 1])[0])
    statistic = intervals.pxap_of(objects, background)
    assert statistic(np.ones((1, 5)))[0] == pytest.approx(localisation.pxap(*pooled))


def test_masked_mean_is_the_weighted_mean_of_the_kept_images():
    values = np.array([1.0, 2.0, 4.0, np.nan])  # the NaN is left out, never read
    keep = np.array([True, False, True, False])
    weights = np.array([[1.0, 1, 1, 1], [2, 0, 1, 1], [0, 3, 0, 1]])
    # (1 + 4) / 2; (2 * 1 + 1 * 4) / 3; no kept image drawn: NaN.
    np.testing.assert_allclose(intervals.masked_mean_of(values, keep)(weights),
                               [2.5, 2.0, np.nan])
    everything = np.array([1.0, 2.0, 4.0, 8.0])
    np.testing.assert_allclose(intervals.masked_mean_of(everything, np.ones(4, bool))(weights),
                               intervals.mean_of(everything)(weights))
    with pytest.raises(ValueError, match="must be"):
        intervals.masked_mean_of(values, keep[:3])
