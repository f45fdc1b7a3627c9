"""camlab.scores.localisation: MaxBoxAccV2 and PxAP on hand-built cases, and against per-image
loops."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from camlab.errors import CamError
from camlab.scores import localisation
from camlab.scores.localisation import (
    IOU_LEVELS,
    THRESHOLDS,
    box_hits,
    max_box_acc,
    max_box_acc_v2,
    normalise,
    pixel_counts,
    pxap,
)


def blob_map(height, width, *rects, value=1.0):
    """A (height, width) float map, `value` on each half-open (y0, x0, y1, x1) rectangle."""
    out = np.zeros((height, width))
    for y0, x0, y1, x1 in rects:
        out[y0:y1, x0:x1] = value
    return out


def reference_hits(maps, boxes, thresholds):
    """wsolevaluation's BoxEvaluator loop, one image and one threshold at a time, with the
    module's documented geometry: half-open boxes, ground truth rounded to pixel edges."""
    out = []
    for scoremap, truth in zip(maps, np.asarray(boxes, np.float64).reshape(len(maps), -1, 4),
                               strict=True):
        cam = np.array(scoremap, np.float64)
        if cam.min() == cam.max():
            cam[:] = 0
        else:
            cam -= cam.min()
            cam /= cam.max()
        image8 = (cam * 255).astype(np.uint8)
        h, w = cam.shape
        scale = (h, w, h, w)
        edges = [[round(float(v) * s) for v, s in zip(box, scale, strict=True)] for box in truth]
        rows = []
        for tau in thresholds:
            labels, _ = ndimage.label(image8 > int(tau * image8.max()), np.ones((3, 3)))
            best = 0.0
            for ys, xs in ndimage.find_objects(labels):
                for y0, x0, y1, x1 in edges:
                    inter = (max(0, min(ys.stop, y1) - max(ys.start, y0))
                             * max(0, min(xs.stop, x1) - max(xs.start, x0)))
                    union = ((ys.stop - ys.start) * (xs.stop - xs.start)
                             + (y1 - y0) * (x1 - x0) - inter)
                    best = max(best, inter / union)
            rows.append([best >= level for level in (0.3, 0.5, 0.7)])
        out.append(rows)
    return np.array(out)


def reference_pxap(maps, masks, thresholds):
    """The paper's PxAP as a loop over thresholds, highest first: pixels >= tau are predicted
    object. Returns AP and the true / false positive counts at each threshold."""
    scores, objects = normalise(maps).ravel(), np.asarray(masks).ravel()
    ap, last_recall, counts = 0.0, 0.0, []
    for tau in [3.0, 2.0, 1.0, *thresholds[::-1]]:
        tp = int(np.sum((scores >= tau) & objects))
        fp = int(np.sum((scores >= tau) & ~objects))
        recall = tp / objects.sum()
        if tau < 3.0 and tp + fp:
            ap += tp / (tp + fp) * (recall - last_recall)
        last_recall = recall
        counts.append((tp, fp))
    return ap, np.array(counts[1:])


def random_case(rng, batch, height, width):
    """Smooth maps with a little noise (one constant map when batch > 2) and up to three
    ground-truth boxes per image, zero rows padding: a random box, then boxes around the
    map's pixels above a random level, moved by up to a pixel and a half, so that IoUs
    spread over [0, 1] and pixel edges get rounded."""
    low = rng.random((batch, 4, 5))
    maps = ndimage.zoom(low, (1, height / 4, width / 5), order=1)[:, :height, :width]
    maps = maps + 0.05 * rng.random(maps.shape)
    if batch > 2:
        maps[2] = 0.3
    boxes = np.zeros((batch, 3, 4), np.float32)
    size = np.array([height, width, height, width])
    for i in range(batch):
        y, x = np.sort(rng.random((2, 2)), axis=1)
        boxes[i, 0] = [y[0], x[0], y[1], x[1]]
        for j in range(1, rng.integers(1, 4)):
            rows, cols = np.nonzero(maps[i] >= np.quantile(maps[i], rng.uniform(0.3, 0.95)))
            edges = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
            y0, x0, y1, x1 = np.clip(edges + rng.uniform(-1.5, 1.5, 4), 0, size)
            boxes[i, j] = [min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1)] / size
    return maps, boxes


def test_one_perfect_image_and_one_at_iou_04():
    maps = np.stack([blob_map(10, 10, (2, 2, 6, 8)), blob_map(10, 10, (0, 0, 4, 4))])
    # Image 1's only region is the 4x4 block; its box is 4x10: IoU 16 / 40 = 0.4.
    boxes = np.array([[0.2, 0.2, 0.6, 0.8], [0.0, 0.0, 0.4, 1.0]])
    hits = box_hits(maps, boxes)
    assert hits.shape == (2, len(THRESHOLDS), 3)
    np.testing.assert_array_equal(max_box_acc(hits), [1.0, 0.5, 0.5])
    assert max_box_acc_v2(hits) == pytest.approx((1 + 0.5 + 0.5) / 3)


def test_one_threshold_serves_all_images():
    # A 1.0 core [3, 7)^2 in a 0.5 ring up to [1, 9)^2. The ring's 8-bit level is
    # int(0.5 * 255) = 127, above the cut int(255 tau) only for tau <= 0.49.
    maps = np.repeat(blob_map(10, 10, (1, 1, 9, 9), value=0.5)[None], 2, axis=0)
    maps[:, 3:7, 3:7] = 1.0
    boxes = np.array([[0.1, 0.1, 0.9, 0.9], [0.3, 0.3, 0.7, 0.7]])  # the ring's, the core's
    hits = box_hits(maps, boxes)
    low = THRESHOLDS < 0.495  # the other box gives IoU 16 / 64 = 0.25: a miss at every level
    assert hits[0, low].all() and not hits[0, ~low].any()
    assert hits[1, ~low].all() and not hits[1, low].any()
    # Each image's own best threshold would give 1; one threshold for both gives 0.5.
    np.testing.assert_array_equal(max_box_acc(hits), [0.5, 0.5, 0.5])


def test_each_iou_level_picks_its_own_threshold():
    hits = np.zeros((2, 2, 3), bool)
    hits[:, 0, 0] = True  # threshold 0: both images at IoU 0.3 only
    hits[0, 1] = True  # threshold 1: image 0 at every level
    np.testing.assert_array_equal(max_box_acc(hits), [1.0, 0.5, 0.5])
    assert max_box_acc_v2(hits) == pytest.approx(2 / 3)  # a single threshold would give 1/2


@pytest.mark.parametrize("batch", [1, 3])
def test_a_map_equal_to_the_mask_scores_one_on_both(batch):
    rects = [(1, 2, 5, 9), (6, 0, 12, 4), (0, 15, 2, 20)]
    masks = np.stack([blob_map(12, 20, rect) > 0 for rect in rects[:batch]])
    masks[0, 4, 2:5] = False  # not a rectangle: the box is still the region's
    boxes = np.array([[y0 / 12, x0 / 20, y1 / 12, x1 / 20] for y0, x0, y1, x1 in rects[:batch]])
    maps = masks.astype(np.float32)
    assert max_box_acc_v2(box_hits(maps, boxes)) == 1.0
    assert pxap(*pixel_counts(maps, masks)) == 1.0


def test_a_constant_map():
    # Min-max normalisation makes a constant map 0 everywhere, so its 8-bit levels are 0 and
    # no pixel is above any cut int(255 tau) >= 0: no region, never correct, MaxBoxAccV2 0.
    # wsolevaluation has no contour either and falls back to [0, 0, 0, 0], the top-left
    # pixel, which does not touch these boxes: 0 there too. For PxAP every pixel sits in the
    # lowest bin: one threshold predicts all pixels, precision P / (P + N) at recall 1.
    maps = np.full((2, 6, 8), 0.7)
    masks = np.stack([blob_map(6, 8, (1, 1, 3, 3)), blob_map(6, 8, (2, 2, 5, 6))]) > 0
    boxes = np.array([[1 / 6, 1 / 8, 3 / 6, 3 / 8], [2 / 6, 2 / 8, 5 / 6, 6 / 8]])
    assert max_box_acc_v2(box_hits(maps, boxes)) == 0.0
    assert pxap(*pixel_counts(maps, masks)) == pytest.approx(16 / 96)


def test_pxap_pools_pixels_over_images_and_batches():
    masks = np.stack([blob_map(6, 8, (1, 1, 3, 3)), blob_map(6, 8, (2, 2, 5, 6))]) > 0
    maps = np.stack([masks[0].astype(float), np.zeros((6, 8))])  # perfect, constant
    # At >= 1: image 0's 4 object pixels, precision 1, recall 4/16. At >= 0: all 96 pixels,
    # precision 16/96, recall +12/16. AP = 4/16 + 16/96 * 12/16 = 0.375 (the mean of the
    # per-image APs would be (1 + 12/48) / 2 = 0.625).
    assert pxap(*pixel_counts(maps, masks)) == pytest.approx(0.375)
    first, second = pixel_counts(maps[:1], masks[:1]), pixel_counts(maps[1:], masks[1:])
    assert pxap(first[0] + second[0], first[1] + second[1]) == pytest.approx(0.375)


def test_pxap_by_hand():
    maps = np.array([[[0.0, 0.25, 0.5, 1.0]]])  # one 1 x 4 image, already normalised
    masks = np.array([[[False, True, False, True]]])
    # Highest first: 1.0 object (P 1, R 1/2), 0.5 background (R unchanged), 0.25 object
    # (P 2/3, R 1): AP = 1 * 1/2 + 2/3 * 1/2 = 5/6.
    object_hist, background_hist = pixel_counts(maps, masks)
    assert object_hist.sum() == 2 and background_hist.sum() == 2
    assert object_hist[-2] == 1  # the maximum falls in the bin [1, 2)
    assert pxap(object_hist, background_hist) == pytest.approx(5 / 6)


def test_every_region_counts_not_only_the_largest():
    maps = blob_map(12, 12, (0, 0, 5, 5), (8, 8, 11, 11))  # 25 pixels and 9 pixels
    boxes = np.array([[8 / 12, 8 / 12, 11 / 12, 11 / 12]])  # the smaller blob's box
    # The CAM paper's largest region (Zhou et al. 2016) is the 5x5 block: IoU 0 here.
    assert max_box_acc_v2(box_hits(maps[None], boxes)) == 1.0


def test_diagonal_neighbours_are_one_region():
    maps = blob_map(8, 8, (2, 2, 4, 4), (4, 4, 6, 6))  # two squares meeting at a corner
    boxes = np.array([[2 / 8, 2 / 8, 6 / 8, 6 / 8]])
    # 4-connected, each square's box would give IoU 4 / 16 = 0.25: a miss at every level.
    assert box_hits(maps[None], boxes).all()


@pytest.mark.parametrize("protocol, expected", [("lab", [True, False, False]),
                                               ("wsolevaluation", [True, True, True])])
def test_a_hole_gives_a_box_only_under_wsolevaluation(protocol, expected):
    maps = blob_map(10, 10, (0, 0, 10, 10))
    maps[3:7, 3:7] = 0  # a ring around the hole [3, 7)^2
    boxes = np.array([[0.2, 0.2, 0.8, 0.8]])
    # "lab": only the ring's box, the whole image: IoU 36 / 100, a hit at 0.3 only.
    # "wsolevaluation": the ring's box (0, 0, 9, 9), 10 x 10 pixels, against the ground truth
    # (2, 2, 8, 8), 7 x 7: 49 / 100. The hole's contour runs on the ring pixels around it,
    # rows and columns 2 .. 7: box (2, 2, 8, 8) after x + w, the ground truth's: IoU 1.
    assert box_hits(maps[None], boxes, protocol=protocol)[0].tolist() == [expected] * len(
        THRESHOLDS)


def test_several_ground_truth_boxes_and_padding_rows():
    maps = np.stack([blob_map(9, 6, (5, 3, 9, 6)), blob_map(9, 6, (0, 0, 3, 3)),
                     blob_map(9, 6, (0, 0, 3, 3))])
    boxes = np.zeros((3, 2, 4))
    boxes[0] = [[0, 0, 3 / 9, 3 / 6], [5 / 9, 3 / 6, 1, 1]]  # the map matches the second
    boxes[1, 0] = [0, 0, 3 / 9, 3 / 6]  # one box, then a padding row
    boxes[2, 0] = [6 / 9, 0, 1, 3 / 6]  # one box the map misses
    hits = box_hits(maps, boxes)
    assert hits[:2].all() and not hits[2].any()
    np.testing.assert_array_equal(hits[1:], box_hits(maps[1:], boxes[1:, 0]))  # (batch, 4)


def test_a_tie_with_a_float32_box_reaches_the_level():
    # float32(0.6) is a little above 0.6: unrounded, the union would exceed 60 pixels and
    # IoU 30 / 60 would fall just short of 0.5.
    maps = blob_map(10, 10, (0, 0, 10, 3))
    boxes = np.array([[0.0, 0.0, 1.0, 0.6]], np.float32)
    assert box_hits(maps[None], boxes)[0, 0].tolist() == [True, True, False]


@pytest.mark.parametrize("batch, height, width, thresholds, label_pixels", [
    (1, 16, 16, THRESHOLDS, localisation.LABEL_PIXELS),
    (3, 12, 20, THRESHOLDS, 1),  # one image per ndimage.label call
    (2, 9, 7, np.arange(0, 1, 0.001), localisation.LABEL_PIXELS),  # repeated 8-bit cuts
])
def test_box_hits_match_a_per_image_loop(monkeypatch, batch, height, width, thresholds,
                                         label_pixels):
    monkeypatch.setattr(localisation, "LABEL_PIXELS", label_pixels)
    maps, boxes = random_case(np.random.default_rng([batch, height, width]), batch, height, width)
    hits = box_hits(maps.astype(np.float32), boxes, thresholds)
    expected = reference_hits(maps.astype(np.float32), boxes, thresholds)
    assert hits.any() and not hits.all()  # a comparison that can tell them apart
    np.testing.assert_array_equal(hits, expected)


def test_box_hits_of_pure_noise_match_a_per_image_loop():
    """Noise has a run for about every other pixel and many regions at each cut: the
    case furthest from the smooth maps the run-based labelling is fast on."""
    rng = np.random.default_rng(12)
    maps = rng.random((3, 14, 17)).astype(np.float32)
    maps[1] = rng.random((14, 17)) < 0.5
    _, boxes = random_case(rng, 3, 14, 17)
    hits = box_hits(maps, boxes)
    assert hits.any() and not hits.all()
    np.testing.assert_array_equal(hits, reference_hits(maps, boxes, THRESHOLDS))


@pytest.mark.parametrize("batch, height, width", [(1, 16, 16), (3, 12, 20)])
def test_pxap_matches_a_per_threshold_loop(batch, height, width):
    rng = np.random.default_rng([7, batch])
    maps, _ = random_case(rng, batch, height, width)
    masks = maps + 0.3 * rng.random(maps.shape) > 0.6
    object_hist, background_hist = pixel_counts(maps, masks)
    expected, counts = reference_pxap(maps, masks, THRESHOLDS)
    np.testing.assert_array_equal(object_hist[::-1].cumsum(), counts[:, 0])
    np.testing.assert_array_equal(background_hist[::-1].cumsum(), counts[:, 1])
    # Summed in another order: equal to rounding.
    assert pxap(object_hist, background_hist) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: box_hits(np.zeros((4, 4)), np.zeros((1, 4))), "batch, H, W"),
    (lambda: box_hits(np.full((1, 4, 4), np.nan), np.zeros((1, 4))), "NaN"),
    (lambda: box_hits(np.zeros((2, 4, 4)), np.zeros((1, 4))), "with batch 2"),
    (lambda: box_hits(np.zeros((1, 4, 4)), [[0, 0, 1.5, 1]]), "normalised"),
    (lambda: box_hits(np.zeros((1, 4, 4)), [[0.5, 0, 0.2, 1]]), "min <= max"),
    (lambda: box_hits(np.zeros((1, 4, 4)), [[0, 0, 1, 1]], [0.1, 0.5]), "from 0"),
    (lambda: pixel_counts(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), np.uint8)), "bool"),
    (lambda: pixel_counts(np.zeros((1, 4, 4)), np.zeros((1, 4, 5), bool)), "shape"),
    (lambda: max_box_acc(np.zeros((2, 100, 2), bool)), "(images, T, 3)"),
    (lambda: pxap(np.zeros(102, int), np.ones(102, int)), "no object pixels"),
])
def test_bad_inputs_raise(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_an_unknown_box_protocol_names_the_choices():
    with pytest.raises(CamError, match="BOX_PROTOCOL='cv2'; choose one of lab, wsolevaluation"):
        box_hits(np.zeros((1, 4, 4)), np.zeros((1, 4)), protocol="cv2")


# protocol="wsolevaluation": clovaai/wsolevaluation's box geometry, by hand, against their own
# unit tests' answers, and against their algorithm run through OpenCV.


def wsol_hits(maps, boxes, thresholds=THRESHOLDS):
    return box_hits(maps, boxes, thresholds, protocol="wsolevaluation")


def test_wsolevaluation_boxes_grow_by_a_pixel_except_at_the_border():
    # One on-pixel; the ground truth is the 2 x 2 pixels from it down and right.
    maps = np.stack([blob_map(6, 6, (2, 2, 3, 3)), blob_map(6, 6, (5, 5, 6, 6))])
    boxes = np.array([[2 / 6, 2 / 6, 4 / 6, 4 / 6], [4 / 6, 4 / 6, 1, 1]])
    # "lab": IoU 1 / 4 for both, a miss at every level.
    assert not box_hits(maps, boxes).any()
    # wsolevaluation: the pixel's box (2, 2, 3, 3), 2 x 2 pixels with their + 1, against the
    # ground truth (2, 2, 4, 4), 3 x 3: IoU 4 / 9. At the border, (5, 5, min(6, 5), 5) is
    # one pixel against 3 x 3: IoU 1 / 9.
    hits = wsol_hits(maps, boxes)
    assert hits[0].tolist() == [[True, False, False]] * len(THRESHOLDS)
    assert not hits[1].any()


def test_wsolevaluation_truncates_ground_truth_edges():
    # Edges at 2.9 and 5.9 pixels: "lab" rounds them to 3 and 6, wsolevaluation's int() to
    # 2 and 5.
    maps = blob_map(10, 10, (2, 2, 5, 5))[None]
    boxes = np.array([[0.29, 0.29, 0.59, 0.59]])
    assert not box_hits(maps, boxes).any()  # [2, 5)^2 against [3, 6)^2: IoU 4 / 14
    assert wsol_hits(maps, boxes).all()  # the region's box (2, 2, 5, 5) is the ground truth's
    # float32(0.7) * 10 is just below 7: the edge is still pixel 7, as the integer it stored.
    edges, real = localisation._box_edges(np.float32([[0.3, 0, 0.7, 1], [0, 0, 0, 0]]), 2, 10,
                                          10, "wsolevaluation")
    np.testing.assert_array_equal(edges[:, 0], [[3, 0, 7, 10], [0, 0, 0, 0]])
    assert real.tolist() == [[True], [False]]


def test_wsolevaluation_scores_every_region():
    maps = blob_map(12, 12, (0, 0, 5, 5), (8, 8, 11, 11))[None]
    # The smaller blob's box (8, 8, min(11, 11), 11) is the ground truth's int edges.
    assert wsol_hits(maps, np.array([[8 / 12, 8 / 12, 11 / 12, 11 / 12]])).all()


def test_wsolevaluation_scores_a_map_with_no_region_by_the_top_left_pixel():
    maps = np.full((3, 6, 8), 0.7)  # constant: normalised to 0, no pixel above any cut
    boxes = np.zeros((3, 2, 4))  # the second row of each image is padding
    boxes[0, 0] = [0, 0, 0, 1 / 8]  # (0, 0, 0, 1): 1 x 2 pixels with [0, 0, 0, 0]'s: IoU 1 / 2
    boxes[1, 0] = [0, 0, 1 / 6, 1 / 8]  # 2 x 2 pixels: IoU 1 / 4
    boxes[2, 0] = [0.5, 0.5, 1, 1]  # away from the corner, and the padding row is no box
    hits = wsol_hits(maps, boxes)
    assert hits[0].tolist() == [[True, True, False]] * len(THRESHOLDS)
    assert not hits[1:].any()
    assert not box_hits(maps, boxes).any()  # "lab": no region, no box
    # A padding row is no box against a region's either: in a 1 x 4 map, the top-left
    # pixel's box (0, 0, 1, min(1, 0)) would meet [0, 0, 0, 0] at IoU 1 / 2.
    top_left = np.array([[[1.0, 0.0, 0.0, 0.0]]])
    assert not wsol_hits(top_left, np.array([[[0, 0.5, 1, 1], [0, 0, 0, 0]]])).any()


@pytest.mark.parametrize("scoremap, expected, regions", [
    # wsolevaluation's evaluation_test.py, compute_bboxes_from_scoremaps at thresholds 0,
    # 0.2, ..., 0.8: the largest contour's box (x0, y0, x1, y1), which must be among ours,
    # and the number of 8-connected regions at each threshold, by hand (no holes here).
    ([[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.4, 0.4, 0.4, 0.6], [0.0, 0.4, 1.0, 0.8, 0.6],
      [0.0, 0.4, 0.4, 0.4, 0.6]],
     [[1, 1, 4, 3], [1, 1, 4, 3], [2, 1, 4, 3], [2, 2, 4, 3], [2, 2, 3, 3]], [1, 1, 1, 1, 1]),
    ([[0.4, 0.0, 0.2, 0.2, 0.2], [0.4, 0.4, 0.0, 0.4, 0.0], [0.0, 0.0, 0.0, 0.4, 0.0],
      [1.0, 0.6, 0.8, 0.2, 0.2]],
     [[0, 0, 4, 3], [0, 0, 2, 2], [0, 3, 3, 3], [2, 3, 3, 3], [0, 3, 1, 3]], [1, 2, 1, 2, 1]),
])
def test_wsolevaluation_boxes_include_their_unit_tests_answers(scoremap, expected, regions):
    thresholds = np.arange(0, 1, 0.2)
    levels = (normalise([scoremap]) * 255).astype(np.uint8)
    owner, boxes = localisation._estimated_boxes(levels, (thresholds * 255).astype(np.int64),
                                                 "wsolevaluation")
    for plane, box in enumerate(expected):
        ours = [[x0, y0, x1, y1] for y0, x0, y1, x1 in boxes[owner == plane].tolist()]
        assert box in ours
    assert np.bincount(owner).tolist() == regions


def wsolevaluation_reference_hits(cv2, maps, pixel_boxes, image_sizes, thresholds):
    """clovaai/wsolevaluation's BoxEvaluator.accumulate with multi_contour_eval=True, one
    image and threshold at a time through OpenCV: `pixel_boxes` integer (y0, x0, y1, x1) on
    an image of `image_sizes` (h, w), resized to the map as their resize_bbox does."""
    out = []
    for scoremap, pixels, (h0, w0) in zip(normalise(maps), pixel_boxes, image_sizes,
                                          strict=True):
        h, w = scoremap.shape
        truth = np.array([[int(x0 * w / w0), int(y0 * h / h0), int(x1 * w / w0),
                           int(y1 * h / h0)] for y0, x0, y1, x1 in pixels])
        image = (scoremap * 255).astype(np.uint8)[:, :, None]
        best = []
        for tau in thresholds:
            _, on = cv2.threshold(image, int(tau * np.max(image)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(on, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
            estimates = [[x, y, min(x + bw, w - 1), min(y + bh, h - 1)]
                         for x, y, bw, bh in map(cv2.boundingRect, contours)]
            a, b = np.array(estimates or [[0, 0, 0, 0]])[:, None], truth[None]
            inter = (np.maximum(0, np.minimum(a[..., 2], b[..., 2])
                                - np.maximum(a[..., 0], b[..., 0]) + 1)
                     * np.maximum(0, np.minimum(a[..., 3], b[..., 3])
                                  - np.maximum(a[..., 1], b[..., 1]) + 1))
            area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
            area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
            best.append((inter / (area_a + area_b - inter)).max())
        out.append(np.array(best)[:, None] >= np.array(IOU_LEVELS))
    return np.array(out)


@pytest.mark.parametrize("batch, height, width", [(8, 16, 16), (6, 23, 31)])
def test_wsolevaluation_hits_match_their_algorithm_through_opencv(batch, height, width):
    cv2 = pytest.importorskip("cv2", reason="opencv-python-headless (requirements-dev.txt)")
    rng = np.random.default_rng([11, batch, height, width])
    # Smoothed noise, from none (many holes at every cut) to a few pixels; a 0/1 noise map;
    # a constant map, whose no-contour box [0, 0, 0, 0] meets a ground truth at the corner.
    maps = np.stack([ndimage.gaussian_filter(rng.random((height, width)), blur)
                     for blur in rng.choice([0, 0.7, 1.5, 3], batch)])
    maps[1] = rng.random((height, width)) < 0.5
    maps[0] = 0.3
    pixel_boxes, sizes = [], []
    boxes = np.zeros((batch, 3, 4), np.float32)  # tfds' float32 fractions, zero rows padding
    for i in range(batch):
        # Every other image is at the map's size, so that edges land on whole pixels.
        h0, w0 = (height, width) if i % 2 else tuple(int(v) for v in rng.integers(20, 400, 2))
        pixels = [(*np.sort(rng.integers(0, h0 + 1, 2)), *np.sort(rng.integers(0, w0 + 1, 2)))
                  for _ in range(rng.integers(1, 4))]
        pixels = [(y0, x0, y1, x1) for y0, y1, x0, x1 in pixels]
        if i == 0:
            pixels[0] = (0, 0, 0, w0 // width)
        pixel_boxes.append(pixels)
        sizes.append((h0, w0))
        boxes[i, :len(pixels)] = np.array(pixels) / [h0, w0, h0, w0]
    hits = wsol_hits(maps, boxes)
    expected = wsolevaluation_reference_hits(cv2, maps, pixel_boxes, sizes, THRESHOLDS)
    assert hits.any() and not hits.all() and expected[0].any()
    np.testing.assert_array_equal(hits, expected)
    assert (hits != box_hits(maps, boxes)).any()  # a comparison that tells the protocols apart
