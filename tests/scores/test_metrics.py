"""camlab.scores.metrics: scores on cases whose answers are known by hand, and the sanity check."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from camlab.core import runs
from camlab.evaluate import evaluation
from camlab.maps import methods
from camlab.networks import classifier, models
from camlab.scores import localisation, metrics, registry, removal


def square_mask(size, top, left, side):
    mask = np.zeros((size, size), bool)
    mask[top:top + side, left:left + side] = True
    return mask


def test_a_map_equal_to_the_mask_scores_perfectly():
    masks = np.stack([square_mask(16, 2, 3, 5), square_mask(16, 9, 8, 6)])
    maps = masks.astype(np.float32)
    boxes = metrics.mask_box(masks).numpy()
    np.testing.assert_allclose(boxes[0], [2 / 16, 3 / 16, 7 / 16, 8 / 16])
    assert metrics.pointing_game(maps, masks).numpy().all()
    predicted = metrics.largest_region_box(maps)
    np.testing.assert_allclose(metrics.box_iou(predicted, boxes).numpy(), [1, 1])
    np.testing.assert_allclose(metrics.mask_iou(maps, masks, 0.3).numpy(), [1, 1])


def test_pointing_game_misses_when_the_peak_is_off_the_object():
    masks = square_mask(8, 0, 0, 3)[None]
    maps = np.zeros((1, 8, 8), np.float32)
    maps[0, 6, 6] = 1.0
    maps[0, 1, 1] = 0.9
    assert not metrics.pointing_game(maps, masks, tolerance=0).numpy()[0]


def test_pointing_game_tolerance_is_euclidean_in_pixels():
    masks = square_mask(32, 10, 10, 4)[None]  # rows and columns 10..13
    maps = np.zeros((4, 32, 32), np.float32)
    for i, (row, col) in enumerate([(13, 16), (13, 17), (16, 16), (12, 12)]):
        maps[i, row, col] = 1.0
    hits = metrics.pointing_game(maps, np.repeat(masks, 4, 0), tolerance=3 / 32)
    # 3 px right of the edge hits, 4 px misses, (3, 3) diagonal is 4.2 px away, inside hits.
    np.testing.assert_array_equal(hits.numpy(), [True, False, False, True])


def test_largest_region_wins_and_weak_regions_are_cut():
    maps = np.zeros((1, 12, 12), np.float32)
    maps[0, 0:2, 0:2] = 1.0            # small but strongest region
    maps[0, 5:10, 4:11] = 0.5          # largest region above 20% of the max
    maps[0, 11, 0:12] = 0.1            # below 20%: not a region
    box = metrics.largest_region_box(maps)[0]
    np.testing.assert_allclose(box, [5 / 12, 4 / 12, 10 / 12, 11 / 12])


def test_diagonal_pixels_are_one_region_and_empty_maps_give_empty_boxes():
    maps = np.zeros((2, 5, 5), np.float32)
    maps[0] = np.eye(5)
    maps[0, 0, 4] = 1.0  # a lone pixel: the diagonal, 8-connected, is the larger region
    np.testing.assert_array_equal(metrics.largest_region_box(maps), [[0, 0, 1, 1], [0] * 4])


def test_of_equally_large_regions_the_one_ending_first_wins():
    maps = np.zeros((2, 6, 6), np.float32)
    maps[:, 4, 0:3] = 1.0  # three pixels, the last at (4, 2)
    maps[:, 0:3, 5] = 1.0  # three pixels, the last at (2, 5): first in row-major order
    maps[1, 5, 0] = 1.0  # joins the row into four pixels: now the larger
    np.testing.assert_allclose(metrics.largest_region_box(maps),
                               [[0, 5 / 6, 3 / 6, 1], [4 / 6, 0, 1, 3 / 6]])


def test_box_iou_of_half_overlapping_boxes():
    a = np.array([[0.0, 0.0, 0.5, 0.5]])
    b = np.array([[0.0, 0.25, 0.5, 0.75]])
    np.testing.assert_allclose(metrics.box_iou(a, b).numpy(), [1 / 3])


def bright_pixel_model(weight_map):
    """A hand-built 'model' whose class-0 probability is the share of weighted brightness."""
    weight_map = tf.constant(weight_map, tf.float32)

    def predict(images):
        evidence = tf.reduce_sum(images[..., 0] * weight_map, axis=[1, 2]) / (
            255.0 * tf.reduce_sum(weight_map))
        return tf.stack([evidence, 1 - evidence], axis=1)
    return predict


def test_perfect_explanation_has_deletion_auc_near_zero():
    weight_map = square_mask(16, 4, 4, 4).astype(np.float32)
    images = np.full((2, 16, 16, 3), 255.0, np.float32)
    baselines = np.zeros_like(images)
    perfect = np.stack([weight_map, weight_map]) + 1e-3 * np.random.default_rng(0).random(
        (2, 16, 16))
    reversed_map = 1.0 - perfect
    predict = bright_pixel_model(weight_map)
    good = removal.deletion_insertion_auc(predict, images, baselines, perfect,
                                              np.array([0, 0]), steps=16)
    bad = removal.deletion_insertion_auc(predict, images, baselines, reversed_map,
                                             np.array([0, 0]), steps=16)
    # The 16 evidence pixels are gone after the first step (1/16 of 256 pixels = 16).
    np.testing.assert_allclose(good["deletion_curve"][0, :3], [1, 0, 0], atol=1e-6)
    assert good["deletion_auc"].max() == pytest.approx(1 / 32, abs=1e-6)
    assert good["insertion_auc"].min() == pytest.approx(1 - 1 / 32, abs=1e-6)
    assert bad["deletion_auc"].min() > 0.9 and bad["insertion_auc"].max() < 0.1


def test_baseline_maps():
    centre = metrics.centre_gaussian_maps(2, 8, 8).numpy()
    assert np.unravel_index(centre[0].argmax(), (8, 8)) in {(3, 3), (3, 4), (4, 3), (4, 4)}
    first = evaluation.random_maps(1, [0, 1], 8, 8).numpy()
    np.testing.assert_array_equal(first, evaluation.random_maps(1, [0, 1], 8, 8).numpy())
    assert not np.array_equal(first, evaluation.random_maps(2, [0, 1], 8, 8).numpy())
    # An image's map is keyed by its index in the split, not its place in the batch.
    np.testing.assert_array_equal(evaluation.random_maps(1, [5, 1], 8, 8).numpy()[1],
                                  first[1])
    assert not np.array_equal(first[0], first[1])


def test_rank_correlation_of_same_reversed_and_monotone_maps():
    maps = np.random.default_rng(4).random((3, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(metrics.rank_correlation(maps, maps).numpy(), 1, atol=1e-6)
    np.testing.assert_allclose(metrics.rank_correlation(maps, -maps).numpy(), -1, atol=1e-6)
    np.testing.assert_allclose(metrics.rank_correlation(maps, maps**3 + 2).numpy(), 1,
                               atol=1e-6)


def test_randomised_weights_change_the_maps(demo_run):
    """Adebayo et al. (2018): maps that explain a model must depend on its weights."""
    _, run_dir = demo_run
    model = classifier.explain(runs.load_trained_model(run_dir, runs.read_run_config(run_dir)))
    keras.utils.set_random_seed(3)
    random_model = classifier.explain(models.build_model("small_vgg", 64, 10))
    images = np.random.default_rng(8).uniform(0, 255, (6, 64, 64, 3)).astype(np.float32)
    classes = np.tile(np.arange(6)[:, None], (1, 2)).astype(np.int32)
    features, _ = model.features(images)
    random_features, _ = random_model.features(images)
    for method in ("cam", "gradcam"):
        trained_maps = methods.maps_for_classes(method, model, features, classes)[..., 0]
        same = metrics.rank_correlation(trained_maps, methods.maps_for_classes(
            method, model, features, classes)[..., 0]).numpy()
        np.testing.assert_allclose(same, 1.0, atol=1e-5)
        randomised = metrics.rank_correlation(trained_maps, methods.maps_for_classes(
            method, random_model, random_features, classes)[..., 0]).numpy()
        assert randomised.mean() < 0.8, (method, randomised)


def test_summarise_pools_box_hits_and_pixel_histograms_over_batches():
    """MaxBoxAccV2 and PxAP choose thresholds over the whole split: the per-batch pieces
    score_batch returns are pooled, which differs from averaging per batch."""
    masks = np.stack([square_mask(8, 1, 1, 4), square_mask(8, 3, 3, 4)])
    perfect, blank = masks.astype(np.float32), np.zeros((2, 8, 8), np.float32)
    boxes = metrics.mask_box(masks).numpy()
    parts = [metrics.localisation_scores(tf.constant(maps), {"mask": tf.constant(masks),
                                                             "bbox": tf.constant(boxes)},
                                         np.ones(2, bool), 0.3) for maps in (perfect, blank)]
    scores = {"label": np.zeros(4, int), "predicted": np.zeros(4, int),
              "correct": np.ones(4, bool), "sanity_rank_correlation": np.zeros(4)}
    for key in ("box_hits", "pixel_hist_object", "pixel_hist_background", "pointing_game"):
        for target in ("predicted_class", "true_class"):
            scores[f"{target}/{key}"] = np.concatenate([part[key] for part in parts])
    summary = evaluation.summarise(scores, ["a", "b"])["predicted_class"]
    # Two perfect maps, two blank ones (no box at any threshold): half the images.
    assert summary["maxboxacc_v2"] == pytest.approx(0.5)
    expected = localisation.pxap(parts[0]["pixel_hist_object"].sum(axis=0)
                                 + parts[1]["pixel_hist_object"].sum(axis=0),
                                 parts[0]["pixel_hist_background"].sum(axis=0)
                                 + parts[1]["pixel_hist_background"].sum(axis=0))
    assert summary["pxap"] == pytest.approx(expected) and 0 < expected < 1


def test_box_masks_are_the_pixels_inside_the_rounded_box_edges():
    # Edges 0.26 * 10 = 2.6 -> 3 and 0.74 * 10 = 7.4 -> 7: rows 3..6; columns 0..4.
    inside = metrics.box_masks(tf.constant([[0.26, 0.0, 0.74, 0.5]]), 10, 10).numpy()[0]
    expected = np.zeros((10, 10), bool)
    expected[3:7, 0:5] = True
    np.testing.assert_array_equal(inside, expected)
    np.testing.assert_allclose(metrics.mask_box(inside[None]).numpy(),
                               [[0.3, 0.0, 0.7, 0.5]], atol=1e-6)


@pytest.mark.parametrize("truth", ["bbox", "mask", "both", "none"])
def test_localisation_scores_only_what_the_ground_truth_allows(truth):
    """A box alone gives the box scores and the pointing game on the box's pixels; a mask
    alone gives PxAP's histograms, mask IoU and the pointing game on the mask."""
    masks = np.stack([square_mask(16, 2, 2, 6), square_mask(16, 8, 8, 6)])
    boxes = metrics.mask_box(masks).numpy()
    maps = np.zeros((2, 16, 16), np.float32)
    maps[0, 4, 4] = 1.0  # on the first object
    maps[1, 15, 0] = 1.0  # far from the second
    batch = {"bbox": tf.constant(boxes), "mask": tf.constant(masks)}
    if truth in ("bbox", "mask"):
        batch = {truth: batch[truth]}
    elif truth == "none":
        batch = {}
    scores = metrics.localisation_scores(tf.constant(maps), batch, np.ones(2, bool), 0.3)
    # The registry's per-image scores of what the data holds; the pooled ones' raw data.
    def needing(*needs):
        return {key for key in registry.keys(group="localisation")
                if registry.METRICS[key].needs in needs and not registry.METRICS[key].pooled}
    box_keys = needing("box") | {"box_hits"}
    mask_keys = needing("mask") | {"pixel_hist_object", "pixel_hist_background"}
    pointing = needing("box or mask")
    expected = {"bbox": box_keys | pointing, "mask": mask_keys | pointing,
                "both": box_keys | mask_keys | pointing, "none": set()}[truth]
    assert set(scores) == expected
    assert "mask_iou" in mask_keys and {"pointing_game", "pointing_game_strict"} <= pointing
    if pointing <= expected:  # the same hits whether the target is the mask or its box
        np.testing.assert_array_equal(scores["pointing_game_strict"], [True, False])


def test_summarise_lists_what_the_ground_truth_could_not_give():
    masks = np.stack([square_mask(8, 1, 1, 4), square_mask(8, 3, 3, 4)])
    maps = tf.constant(masks.astype(np.float32))
    part = metrics.localisation_scores(maps, {"mask": tf.constant(masks)}, np.ones(2, bool),
                                       0.3)
    scores = {"label": np.zeros(2, int), "predicted": np.zeros(2, int),
              "correct": np.ones(2, bool), "sanity_rank_correlation": np.zeros(2)}
    for key, value in part.items():
        for target in ("predicted_class", "true_class"):
            scores[f"{target}/{key}"] = value
    summary = evaluation.summarise(scores, ["a", "b"])
    assert summary["ground_truth"] == {"box": False, "mask": True}
    assert summary["not_computed"] == list(metrics.BOX_METRICS)
    assert summary["predicted_class"]["pxap"] == pytest.approx(1.0)  # the map is the mask
    empty = {**scores, **{f"{target}/pixel_hist_object": np.zeros_like(part[
        "pixel_hist_object"]) for target in ("predicted_class", "true_class")}}
    summary = evaluation.summarise(empty, ["a", "b"])  # no object pixel: PxAP is undefined
    assert "pxap" not in summary["predicted_class"] and "pxap" in summary["not_computed"]


@pytest.mark.parametrize("box_protocol, expected", [("lab", [False] * 3),
                                                    ("wsolevaluation", [True, False, False])])
def test_localisation_scores_pass_the_box_protocol(box_protocol, expected):
    # One on-pixel against the 2 x 2 pixels from it: IoU 1 / 4 in the lab's half-open
    # geometry, 4 / 9 in wsolevaluation's, which grows both boxes by a pixel.
    maps = np.zeros((1, 6, 6), np.float32)
    maps[0, 2, 2] = 1.0
    batch = {"bbox": tf.constant([[2 / 6, 2 / 6, 4 / 6, 4 / 6]], tf.float32)}
    scores = metrics.localisation_scores(tf.constant(maps), batch, np.ones(1, bool), 0.3,
                                         box_protocol=box_protocol)
    assert scores["box_hits"][0].tolist() == [expected] * len(localisation.THRESHOLDS)


def test_rank_accuracy_counts_the_objects_pixels_among_the_maps_top_k():
    """K = 3 object pixels; the map's three highest hold two of them (2/3), ties go to the
    first in row order; no object pixel gives 0."""
    maps = np.zeros((3, 3, 3), np.float32)
    maps[0] = [[9, 8, 0], [0, 7, 0], [0, 0, 0]]
    maps[1] = [[5, 5, 5], [5, 5, 5], [5, 5, 5]]  # all tied: the first row is the top 3
    masks = np.zeros((3, 3, 3), bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 2, 2] = True
    masks[1, 0, 1] = masks[1, 1, 1] = masks[1, 2, 1] = True
    np.testing.assert_allclose(metrics.rank_accuracy(maps, masks), [2 / 3, 1 / 3, 0])
