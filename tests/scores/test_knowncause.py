"""camlab.scores.knowncause: cause scores on hand-built maps, the Sobel baseline, the intervention's
verdict, and Kendall's tau between method rankings with its bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from camlab.scores import intervals, knowncause


def boxes(height, width, *corners):
    """(n, H, W) bool masks, one rectangle (top, left, bottom, right) per image."""
    masks = np.zeros((len(corners), height, width), bool)
    for mask, (top, left, bottom, right) in zip(masks, corners, strict=True):
        mask[top:bottom, left:right] = True
    return masks


@pytest.mark.parametrize("height, width", [(8, 8), (8, 11)])
def test_a_map_of_the_cause_scores_best_and_a_map_of_the_distractor_worst(height, width):
    # Masks of different sizes per image; image 1's cause is tiny (one pixel).
    cause = boxes(height, width, (1, 1, 3, 3), (6, 6, 7, 7), (0, 4, 2, 8))
    distractor = boxes(height, width, (4, 0, 8, 5), (0, 0, 4, 5), (3, 0, 8, 4))
    on_cause = knowncause.cause_scores(cause.astype(np.float32), cause, distractor)
    for key, value in {"cause_pointing": 1, "cause_mass": 1, "distractor_mass": 0,
                       "cause_auc": 1}.items():
        np.testing.assert_array_equal(on_cause[key], np.full(3, value, np.float64), key)
    on_distractor = knowncause.cause_scores(tf.constant(distractor, tf.float32),
                                            tf.constant(cause), tf.constant(distractor))
    for key, value in {"cause_pointing": 0, "cause_mass": 0, "distractor_mass": 1,
                       "cause_auc": 0}.items():
        np.testing.assert_array_equal(on_distractor[key], np.full(3, value, np.float64), key)
    assert set(on_cause) == set(knowncause.CAUSE_METRICS)


def test_a_constant_map_points_nowhere_and_ranks_at_chance():
    # The cause holds the top-left pixel, where the first maximum of a constant map is.
    cause = boxes(6, 6, (0, 0, 2, 2), (0, 0, 1, 3))
    distractor = boxes(6, 6, (3, 3, 6, 6), (2, 0, 6, 6))
    for level in (0.0, 0.7, -2.0):
        scores = knowncause.cause_scores(np.full((2, 6, 6), level, np.float32), cause,
                                         distractor)
        np.testing.assert_array_equal(scores["cause_pointing"], [0, 0])
        np.testing.assert_array_equal(scores["cause_auc"], [0.5, 0.5])
    positive = knowncause.cause_scores(np.full((2, 6, 6), 0.7, np.float32), cause, distractor)
    np.testing.assert_allclose(positive["cause_mass"], [4 / 36, 3 / 36])
    np.testing.assert_allclose(positive["distractor_mass"], [9 / 36, 24 / 36])


def test_a_tied_maximum_is_the_first_in_row_major_order():
    cause = boxes(5, 5, (3, 3, 5, 5), (3, 3, 5, 5))
    maps = np.zeros((2, 5, 5), np.float32)
    maps[:, 4, 4] = 1.0  # on the cause in both
    maps[0, 0, 1] = 1.0  # an equal peak before it, off the cause
    maps[1, 0, 1] = 0.9
    np.testing.assert_array_equal(knowncause.pointing(maps, cause), [0.0, 1.0])



def test_an_empty_batch_gives_no_scores():
    # evaluation scores the true class's maps on the misclassified rows, often none.
    empty = np.zeros((0, 6, 5), bool)
    scores = knowncause.cause_scores(np.zeros((0, 6, 5), np.float32), empty, empty)
    assert {key: value.shape for key, value in scores.items()} == {
        key: (0,) for key in knowncause.CAUSE_METRICS}
    assert knowncause.edge_maps(np.zeros((0, 6, 5, 3), np.float32)).shape == (0, 6, 5)

def brute_force_auc(map_, cause, distractor):
    positives, negatives = map_[cause], map_[distractor]
    wins = sum((p > q) + 0.5 * (p == q) for p in positives for q in negatives)
    return wins / (len(positives) * len(negatives))


def test_cause_auc_equals_counting_pixel_pairs():
    rng = np.random.default_rng(0)
    n = 6
    maps = np.round(rng.normal(size=(n, 8, 8)), 1).astype(np.float32)  # rounded: ties
    maps[5] = np.round(maps[5] / 4)  # a few values only: many ties
    labels = rng.integers(0, 3, size=(n, 8, 8))  # 0 background, 1 cause, 2 distractor
    labels[:, 0, 0], labels[:, 0, 1] = 1, 2  # at least one of each
    labels[0] = 2
    labels[0, 4, 4] = 1  # one cause pixel, 63 distractor pixels
    cause, distractor = labels == 1, labels == 2
    auc = knowncause.cause_auc(tf.constant(maps), cause, distractor)
    expected = [brute_force_auc(maps[i], cause[i], distractor[i]) for i in range(n)]
    np.testing.assert_allclose(auc, expected, rtol=1e-12)
    assert len(set(np.round(expected, 6))) == n  # the images differ: the check can fail


def test_cause_auc_refuses_overlapping_or_empty_masks():
    maps = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="overlap"):
        knowncause.cause_auc(maps, boxes(4, 4, (0, 0, 2, 2)), boxes(4, 4, (1, 1, 3, 3)))
    with pytest.raises(ValueError, match="empty"):
        knowncause.cause_auc(maps, boxes(4, 4, (0, 0, 0, 0)), boxes(4, 4, (1, 1, 3, 3)))


def test_mass_share_by_hand_on_a_3x3_map():
    maps = np.array([[[2, -1, 0], [1, 3, -4], [0, 0, 2]],
                     [[-1, -2, -3], [-1, -0.5, -4], [-2, -1, -1]]], np.float32)
    cause = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]], bool)[None].repeat(2, 0)
    distractor = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 1]], bool)[None].repeat(2, 0)
    # Positive mass 2 + 1 + 3 + 2 = 8: the cause holds 2 + 3, the distractor 2 (its -1 and
    # -4 do not count); the all-negative map has no positive mass and scores 0.
    np.testing.assert_allclose(knowncause.mass_share(maps, cause), [5 / 8, 0.0])
    np.testing.assert_allclose(knowncause.mass_share(maps, distractor), [2 / 8, 0.0])
    np.testing.assert_allclose(knowncause.marker_mass(maps, distractor), [2 / 8, 0.0])


def test_edges_of_a_vertical_step_are_the_hand_computed_sobel_value():
    images = np.zeros((3, 6, 7, 3), np.float32)
    images[0, :, 3:, 0] = 10.0  # a step in red only, between columns 2 and 3
    images[1, :, 3:, :] = 10.0  # the same step in every channel
    images[2] = 5.0  # constant
    edges = knowncause.edge_maps(images)
    assert isinstance(edges, tf.Tensor) and edges.dtype == tf.float32
    # d/dx at columns 2 and 3: (1 + 2 + 1) x (10 - 0) = 40, and d/dy = 0: magnitude 40 in
    # the red channel, summed over three channels 120; no edge anywhere else.
    expected = np.zeros((3, 6, 7), np.float32)
    expected[0, :, 2:4] = 40.0
    expected[1, :, 2:4] = 120.0
    np.testing.assert_allclose(edges.numpy(), expected, atol=1e-5)


def test_an_edge_of_hue_alone_is_seen():
    image = np.zeros((1, 5, 6, 3), np.float32)
    image[0, :, :3, 0] = 1.0  # red | green, the same mean over RGB on both sides
    image[0, :, 3:, 1] = 1.0
    edges = knowncause.edge_maps(image).numpy()[0]
    np.testing.assert_allclose(edges[:, 2:4], 8.0, atol=1e-6)  # 4 in red, 4 in green
    np.testing.assert_allclose(edges[:, [0, 1, 4, 5]], 0.0, atol=1e-6)


# Rows: probabilities of the image, without the cause, without the distractor, and the
# verdicts (cause matters, distractor matters, verified).
VERDICTS = [
    ([.8, .1, .1], [.3, .6, .1], [.75, .15, .1], True, False, True),  # cause flips it
    ([.9, .05, .05], [.4, .3, .3], [.9, .05, .05], True, False, True),  # 0.4 < 0.45, kept
    ([.9, .05, .05], [.46, .27, .27], [.9, .05, .05], False, False, False),  # 0.46 >= 0.45
    ([.5, .125, .125, .125, .125], [.25, .1875, .1875, .1875, .1875],
     [.5, .125, .125, .125, .125], False, False, False),  # exactly half is not below it
    ([.8, .1, .1], [.3, .6, .1], [.2, .1, .7], True, True, False),  # the distractor flips
    ([.8, .1, .1], [.3, .6, .1], [.35, .33, .32], True, True, False),  # it halves p
    ([.8, .1, .1], [.7, .2, .1], [.8, .1, .1], False, False, False),  # nothing matters
    ([.1, .1, .8], [.45, .45, .1], [.1, .2, .7], True, False, True),  # class 2 predicted
]


def test_cause_verified_on_a_table_of_probabilities():
    width = max(len(row[0]) for row in VERDICTS)

    def padded(column):  # a zero-probability class changes no decision
        return np.array([row[column] + [0.0] * (width - len(row[column]))
                         for row in VERDICTS])

    verdict = knowncause.cause_verified(padded(0), padded(1), padded(2))
    assert tuple(verdict) == knowncause.VERIFICATION
    for key, column in (("cause_matters", 3), ("distractor_matters", 4),
                        ("cause_verified", 5)):
        np.testing.assert_array_equal(verdict[key], [row[column] for row in VERDICTS], key)


def per_method(values: dict[str, np.ndarray]) -> dict[str, intervals.Statistic]:
    return {name: intervals.mean_of(v) for name, v in values.items()}


def points(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(np.mean(v)) for name, v in values.items()}


def separated_methods(rng, images=40):
    """Four methods whose per-image values never overlap: the same order in every
    resample."""
    return {f"m{k}": k + 0.5 * rng.random(images) for k in range(4)}


def test_identical_orders_agree_fully_and_reversed_ones_not_at_all():
    truth = separated_methods(np.random.default_rng(1))
    same = {name: 3 * v + 1 + 0.01 * np.sin(v) for name, v in truth.items()}
    reversed_ = {name: -v for name, v in same.items()}
    args = (per_method(truth),)
    agreement = knowncause.rank_agreement(*args, per_method(same), points(truth),
                                          points(same), 40, seed=0,
                                          other_higher_is_better=True)
    assert agreement == {"tau": 1.0, "ci95": [1.0, 1.0], "methods": 4, "undefined": 0}
    opposed = knowncause.rank_agreement(*args, per_method(reversed_), points(truth),
                                        points(reversed_), 40, seed=0,
                                        other_higher_is_better=True)
    assert opposed["tau"] == -1.0 and opposed["ci95"] == [-1.0, -1.0]
    # A lower-is-better score that falls as the truth rises orders the methods alike.
    flipped = knowncause.rank_agreement(*args, per_method(reversed_), points(truth),
                                        points(reversed_), 40, seed=0,
                                        other_higher_is_better=False)
    assert flipped["tau"] == 1.0 and flipped["ci95"] == [1.0, 1.0]
    # And a lower-is-better truth (distractor mass) against the same.
    both = knowncause.rank_agreement(per_method(reversed_), per_method(reversed_),
                                     points(reversed_), points(reversed_), 40, seed=0,
                                     other_higher_is_better=False,
                                     truth_higher_is_better=False)
    assert both["tau"] == 1.0


def test_point_tau_with_ties_is_tau_b():
    truth = {"a": 1.0, "b": 2.0, "c": 2.0, "d": 3.0, "e": 5.0}
    other = {"a": 0.1, "b": 0.3, "c": 0.2, "d": 0.3, "e": 0.9}
    # 8 concordant pairs, none discordant, b-c tied in the truth, b-d in the other:
    # tau-b = 8 / sqrt(9 * 9).
    constant = {name: (lambda w, v=v: np.full(len(w), v)) for name, v in truth.items()}
    constant_other = {name: (lambda w, v=v: np.full(len(w), v)) for name, v in other.items()}
    agreement = knowncause.rank_agreement(constant, constant_other, truth, other, 10, 0,
                                          other_higher_is_better=True, resamples=20)
    assert agreement["tau"] == pytest.approx(8 / 9)
    assert agreement["tau"] == pytest.approx(stats.kendalltau(list(truth.values()),
                                                              list(other.values())).statistic)
    assert agreement["ci95"] == pytest.approx([8 / 9, 8 / 9])


def test_vectorised_tau_equals_scipy_row_by_row():
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 4, (50, 6)), rng.integers(0, 3, (50, 6))  # many ties
    x[0] = 2  # all tied: no tau
    taus = knowncause.kendall_tau(x, y)
    expected = [stats.kendalltau(a, b).statistic for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(taus, expected, rtol=1e-12)
    # NaN where scipy has NaN (assert_allclose compares them): row 0, and any row of y
    # that the draw left all tied.
    assert np.isnan(taus[0]) and np.isfinite(taus).sum() >= 45


def test_the_interval_is_over_the_same_resampled_images():
    rng = np.random.default_rng(3)
    truth = {f"m{k}": rng.random(30) + 0.02 * k for k in range(5)}
    other = {name: v + rng.normal(0, 0.3, 30) for name, v in truth.items()}
    taus = knowncause.resampled_taus(per_method(truth), per_method(other), 30, seed=4,
                                     other_higher_is_better=True, resamples=200)
    weights = next(intervals.resample_blocks(30, 4, 200))
    for row in (0, 1, 199):
        w = weights[row]
        x = [w @ truth[m] / w.sum() for m in truth]
        y = [w @ other[m] / w.sum() for m in truth]
        assert taus[row] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert len(set(taus)) > 3  # the resamples disagree: the interval is not a point
    agreement = knowncause.rank_agreement(per_method(truth), per_method(other),
                                          points(truth), points(other), 30, 4,
                                          other_higher_is_better=True, resamples=200)
    assert agreement["ci95"] == intervals.interval(taus)


def test_resamples_without_a_tau_are_left_out():
    # Only image 0 is verified: a resample that misses it has no truth value for any
    # method, so no tau; the interval is that of the others.
    keep = np.array([True, False, False])
    truth = {f"m{k}": intervals.masked_mean_of(np.array([k, 9.0, 9.0]), keep)
             for k in range(3)}
    other = per_method({f"m{k}": np.array([k, k + 1.0, k + 2.0]) for k in range(3)})
    agreement = knowncause.rank_agreement(truth, other, {f"m{k}": k for k in range(3)},
                                          {f"m{k}": k + 1.0 for k in range(3)}, 3, 5,
                                          other_higher_is_better=True)
    missed = np.isnan(intervals.resampled({"t": truth["m0"]}, 3, 5)["t"]).sum()
    assert agreement["undefined"] == missed and 200 < missed < 400  # (2/3)^3 of 1000
    assert agreement["tau"] == 1.0 and agreement["ci95"] == [1.0, 1.0]


def test_a_constant_gap_has_a_point_interval_and_beats():
    b = np.random.default_rng(5).random(50)
    a = b + 0.1
    point, (low, high) = knowncause.paired_difference(intervals.mean_of(a),
                                                      intervals.mean_of(b), 50, seed=0)
    assert point == pytest.approx(0.1)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)
    assert knowncause.beats(intervals.mean_of(a), intervals.mean_of(b), 50, 0)
    assert not knowncause.beats(intervals.mean_of(b), intervals.mean_of(a), 50, 0)
    assert knowncause.beats(intervals.mean_of(b), intervals.mean_of(a), 50, 0,
                            higher_is_better=False)  # e.g. less distractor mass
    assert not knowncause.beats(intervals.mean_of(b), intervals.mean_of(b.copy()), 50, 0)


def test_a_noisy_gap_is_not_shown():
    rng = np.random.default_rng(6)
    b = rng.random(30)
    a = b + rng.normal(0, 0.3, 30)  # no real difference
    point, (low, high) = knowncause.paired_difference(intervals.mean_of(a),
                                                      intervals.mean_of(b), 30, seed=1)
    assert low < 0 < high and low < point < high
    assert not knowncause.beats(intervals.mean_of(a), intervals.mean_of(b), 30, 1)
