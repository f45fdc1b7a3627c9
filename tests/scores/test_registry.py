"""camlab/scores/registry.py: one record per score. Which way each score is better is
checked on maps whose right answer is known by construction: the map on the evidence
against the map everywhere else, through the lab's own score functions."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from camlab.evaluate import leaderboard, trust
from camlab.scores import faithfulness, knowncause, metrics, registry, removal

SIDE = 8


def quarter_model(images):
    """Two classes on SIDE x SIDE images: class 1's logit grows with the brightness of the
    top-left quarter (the evidence), class 0's with the rest's."""
    images = tf.cast(images, tf.float32) / 255
    quarter = tf.reduce_mean(images[:, :SIDE // 2, :SIDE // 2], axis=[1, 2, 3])
    whole = tf.reduce_mean(images, axis=[1, 2, 3])
    rest = (4 * whole - quarter) / 3
    return tf.nn.softmax(tf.stack([16 * rest - 4, 16 * quarter - 8], axis=1))


@pytest.fixture(scope="module")
def scored():
    """Every score of the registry for two maps of the same 4 images, class 1: `right` is
    high on the quarter (with a little noise, so that ranks have no ties), `wrong` high
    everywhere else; the quarter is also the object (box and mask) and the cause, the
    bottom-right quarter the distractor."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 30, (4, SIDE, SIDE, 3)).astype(np.float32)  # dark
    images[:, :SIDE // 2, :SIDE // 2] += 200  # a bright quarter
    quarter = np.zeros((4, SIDE, SIDE), bool)
    quarter[:, :SIDE // 2, :SIDE // 2] = True
    distractor = np.zeros_like(quarter)
    distractor[:, SIDE // 2:, SIDE // 2:] = True
    noise = rng.uniform(0, 0.1, (2, 4, SIDE, SIDE)).astype(np.float32)
    maps = {"right": quarter + noise[0], "wrong": (~quarter) + noise[1]}
    classes = np.ones(4, np.int64)
    batch = {"bbox": tf.constant([[0.0, 0.0, 0.5, 0.5]] * 4), "mask": tf.constant(quarter)}
    out = {}
    for name, values in maps.items():
        maps_tensor = tf.constant(values)
        per_image = metrics.localisation_scores(maps_tensor, batch, np.ones(4, bool), 0.5)
        scores = metrics.pooled(per_image)
        aucs = removal.deletion_insertion_auc(quarter_model, images, np.zeros_like(images),
                                              values, classes, steps=8)
        confidence = faithfulness.average_drop_increase(quarter_model, images, values, classes)
        road = faithfulness.road(quarter_model, images, values, classes, seed=0)
        cause = knowncause.cause_scores(values, quarter, distractor)
        for part in (aucs, confidence, road, cause):
            scores.update({key: float(np.mean(value)) for key, value in part.items()
                           if np.ndim(value) == 1})
        out[name] = scores
    return out


def test_every_ranked_score_is_better_for_the_map_on_the_evidence(scored):
    """For each ranked score of the registry, the right map beats the wrong one in the
    direction its record says; every ranked score is checked here."""
    right, wrong = scored["right"], scored["wrong"]
    ranked = registry.keys(ranked=True)
    assert sorted(key for key in ranked if key in right) == sorted(ranked)
    for key in ranked:
        lower = registry.METRICS[key].lower_is_better
        assert (right[key] < wrong[key]) if lower else (right[key] > wrong[key]), (
            key, right[key], wrong[key])


def test_each_list_of_scores_is_read_from_the_registry():
    """The lists other modules keep are the registry's, in its order."""
    metric = registry.METRICS
    assert leaderboard.KEYS == tuple(k for k, m in metric.items() if m.board and m.ranked)
    assert leaderboard.CHECKS == (leaderboard.SANITY, leaderboard.SHORTCUT)
    assert leaderboard.LOWER_IS_BETTER == {"deletion_auc", "average_drop", "road_morf",
                                           "distractor_mass"}
    assert knowncause.CAUSE_METRICS == ("cause_mass", "cause_auc", "cause_pointing",
                                        "distractor_mass")
    assert metrics.BOX_METRICS == ("maxboxacc_v2", "box_localisation", "top1_localisation")
    assert set(trust.COMPARED) == {k for k, m in metric.items() if m.board} - set(
        knowncause.CAUSE_METRICS)
    titles = leaderboard.TITLES
    assert titles["deletion_auc"] == "deletion (lower better)"
    assert titles["ms_per_image"] == "ms / image" and "mask_iou" not in titles


def test_a_record_names_a_known_group_and_need_and_says_how_it_is_pooled():
    for metric in registry.METRICS.values():
        assert metric.group in registry.GROUPS and metric.needs in registry.NEEDS
        assert metric.ranked == (metric.group != "check")
    assert registry.METRICS["pxap"].statistic == "pooled over the split"
    assert registry.METRICS["cause_mass"].statistic == "mean over the verified images"
    assert registry.METRICS["deletion_auc"].statistic == "mean over images"


def test_the_docs_table_has_a_row_per_chosen_score():
    rows = registry.table(("pxap", "road_morf"))
    assert len(rows) == 4 and rows[2].startswith("| `pxap` | PxAP |")
    assert "| lower |" in rows[3] and "with ROAD=True" in rows[3]
