"""Dataset-level localisation scores of weakly-supervised object localisation: MaxBoxAccV2, PxAP.

Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right", CVPR 2020
(MaxBoxAcc, PxAP; MaxBoxAccV2 is the authors' improved box score), with the definitions of
their code, clovaai/wsolevaluation: evaluation.py (compute_bboxes_from_scoremaps,
calculate_multiple_iou, BoxEvaluator, MaskEvaluator) and inference.py (normalize_scoremap).

Both scores pick thresholds over the whole dataset, so each has a per-batch function whose
results are accumulated and a final function:

    hits = np.concatenate([box_hits(maps, boxes) for maps, boxes in batches])
    max_box_acc_v2(hits)
    counts = [pixel_counts(maps, masks) for maps, masks in batches]
    pxap(sum(c[0] for c in counts), sum(c[1] for c in counts))

Shapes: `maps` (batch, H, W) float at input resolution, any range (each map is min-max
normalised here); `masks` (batch, H, W) bool; `boxes` (batch, 4) or (batch, max_boxes, 4)
normalised (ymin, xmin, ymax, xmax) pixel edges as in tfds, all-zero rows padding images
with fewer boxes. NumPy and SciPy on the CPU: TensorFlow has no region labelling (an
iterated 3x3 max-pool does it, several times slower than scipy.ndimage.label).

Kept from wsolevaluation: per-map min-max normalisation (a constant map becomes 0); boxes
from the 8-bit map, int(255 * map), keeping the pixels strictly above int(255 * tau); the
best IoU over all estimated x all ground-truth boxes; IoU >= level; one threshold for all
images, chosen per IoU level; PxAP's histogram bins (value >= tau) pooled over all pixels,
and its right Riemann sum without interpolation.

Box geometry: two protocols (BOX_PROTOCOLS, box_hits' `protocol`, the BOX_PROTOCOL setting).
The 8-bit maps and cuts, hence the regions at each threshold, are the same in both.

"lab", the default: the project's half-open pixel edges. A region's box is metrics.mask_box
of it in pixels, ground-truth edges are rounded to the nearest pixel edge, and an area is
(y1 - y0) * (x1 - x0). So a box-shaped map scores IoU 1 wherever the box lies, and IoUs are
ratios of integers, so a tie at a level counts (>=) even for boxes stored as float32
fractions. It differs from wsolevaluation's in three ways, each with its reason:
- The extra pixel. wsolevaluation's estimated box is [x, min(x + w, W - 1)] for a contour
  covering columns x .. x + w - 1, its ground-truth boxes are truncated with int(), and its
  IoU counts x1 - x0 + 1 pixels: boxes grow by a pixel on the right and bottom, except
  estimated boxes at the image border. That pixel raises the IoU of small boxes: "lab"
  scores can be lower, more so on small maps.
- Regions, not contours. cv2.findContours(RETR_TREE) also gives the inner border of every
  hole, a box one pixel larger than the hole on each side, lying inside its region's box.
  "lab" leaves hole boxes out: they come from the contour tracer, not from a region of the
  map. They can only add matches.
- No region, no box. At a threshold with no region (a constant map only: the maximum of a
  normalised map exceeds every cut) wsolevaluation falls back to [0, 0, 0, 0], the top-left
  pixel under its convention; "lab" has no box and the image is wrong. The two differ only
  for a ground-truth box of at most 3 pixels touching that corner.

"wsolevaluation": their geometry with multi_contour_eval=True (MaxBoxAccV2's setting),
restated without OpenCV (_contour_boxes): a box for every 8-connected region and for every
hole, (x0, y0, x1, y1) = (x, y, min(x + w, W - 1), min(y + h, H - 1)) from the contour's
cv2.boundingRect x, y, w, h; ground-truth edges int(edge in pixels) as resize_bbox's; IoU
sides x1 - x0 + 1 as calculate_multiple_iou's; [0, 0, 0, 0] at a threshold with no contour.
tests/scores/test_localisation.py checks the hits equal to their algorithm run through OpenCV.
Only the input differs: tfds stores box edges as float32 fractions where wsolevaluation
reads integer pixels, so an edge is raised by _FLOAT32_SLACK of the side before int(), lest
float32 rounding put a whole pixel just below itself; all-zero rows are padding, not boxes.

Deliberate differences under both protocols:
- Only multi_contour_eval=True: the largest contour alone (their original MaxBoxAcc) is not
  offered.
- A map holding NaN or inf raises ValueError; wsolevaluation scores it as a constant map.
- Masks have no "ignore" pixels (wsolevaluation's OpenImages masks do): every pixel is
  object or background.
- Scores are fractions in [0, 1], not percentages; maps are scored at their own size
  rather than resized to 224 x 224.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from camlab.errors import check_choice

# wsolevaluation's command line and README sweep thresholds in steps of 0.01 (its training
# code uses 0.001). Boxes come from 8-bit maps, which have only 255 distinct cuts: 0.001 visits
# each about 4 times for 10 times the work, 0.01 visits 100 of them.
THRESHOLD_STEP = 0.01  # of the normalised map's range
THRESHOLDS = np.arange(0, 1, THRESHOLD_STEP)  # float64 0, step, ..., below 1, as wsolevaluation
IOU_LEVELS = (0.3, 0.5, 0.7)  # MaxBoxAccV2 averages MaxBoxAcc over these
# box_hits labels the images of at most this many pixels x cuts (images x cuts x H x W) at
# once: as many runs at most (noise has about one for every other pixel), which bounds its
# memory whatever the batch size: a few hundred MB at most.
LABEL_PIXELS = 2**24
# The box geometry of box_hits (the BOX_PROTOCOL setting): the project's own, the default, or
# wsolevaluation's, to compare with published tables. The module docstring says how they differ.
BOX_PROTOCOLS = ("lab", "wsolevaluation")

# wsolevaluation truncates box edges in pixels with int(). tfds stores them as float32
# fractions, whose rounding (relative 2**-24) can put an edge that is a whole pixel just below
# it: the edge in pixels is raised by this share of the image side before truncating.
_FLOAT32_SLACK = 2.0**-20


def normalise(maps) -> np.ndarray:
    """(batch, H, W) maps min-max normalised per image to [0, 1]: float64, same shape.

    As wsolevaluation's normalize_scoremap: subtract the minimum, divide by the new maximum;
    a constant map becomes all zeros.
    """
    maps = np.array(maps, np.float64)
    if maps.ndim != 3 or 0 in maps.shape:
        raise ValueError(f"maps must be (batch, H, W) with no empty axis, got {maps.shape}")
    if not np.isfinite(maps).all():
        raise ValueError("maps hold NaN or inf values")
    maps -= maps.min(axis=(1, 2), keepdims=True)
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def _check_thresholds(thresholds) -> np.ndarray:
    thresholds = np.asarray(thresholds, np.float64)
    if (thresholds.ndim != 1 or thresholds.size == 0 or thresholds[0] != 0
            or thresholds[-1] >= 1 or (np.diff(thresholds) <= 0).any()):
        raise ValueError("thresholds must increase from 0 and stay below 1, like THRESHOLDS")
    return thresholds


def _box_edges(boxes, batch: int, height: int, width: int,
               protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalised boxes as pixel edges (y0, x0, y1, x1): (batch, max_boxes, 4) int64, and
    which rows are boxes rather than all-zero padding: (batch, max_boxes) bool.

    "lab" rounds each edge to the nearest pixel edge; "wsolevaluation" truncates it, as
    their resize_bbox's int(), after _FLOAT32_SLACK.
    """
    boxes = np.asarray(boxes, np.float64)
    if boxes.ndim == 2:
        boxes = boxes[:, None]
    if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[1] == 0 or boxes.shape[2] != 4:
        raise ValueError(f"boxes must be (batch, 4) or (batch, max_boxes, 4) with batch "
                         f"{batch}, got {np.shape(boxes)}")
    if not ((boxes >= 0) & (boxes <= 1)).all() or (boxes[..., 2:] < boxes[..., :2]).any():
        raise ValueError("boxes must be normalised (ymin, xmin, ymax, xmax) with min <= max")
    size = np.array([height, width, height, width])
    pixels = boxes * size
    edges = np.rint(pixels) if protocol == "lab" else np.floor(pixels + _FLOAT32_SLACK * size)
    return edges.astype(np.int64), boxes.any(axis=-1)


def _runs(levels: np.ndarray, cuts: np.ndarray, above: bool
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every maximal run of pixels along a row that are above a cut (`above`), or at or below
    it, in each (image, cut) plane of (batch, H, W) uint8 `levels`: (line, first, last) int64
    arrays, last inclusive, sorted by line and first, where line = (cut x batch + image) x H
    + row (cut-major: the order a radix sort by cut gives).

    Found without a (batch, cuts, H, W) volume: pixel x starts a run of pixels above cut c
    when level[x - 1] <= c < level[x], so each pixel starts runs for an interval of cuts (and
    ends them likewise, from level[x + 1]). Smooth maps have about 50x fewer runs than pixels.
    """
    batch, height, width = levels.shape
    level = levels.astype(np.int16)
    border = np.full((batch, height, 1), -1 if above else 256, np.int16)  # off beyond the edge
    before = np.concatenate([border, level[:, :, :-1]], axis=2)
    after = np.concatenate([level[:, :, 1:], border], axis=2)
    below = np.searchsorted(cuts, np.arange(-1, 257), side="left")  # cuts below v: below[v + 1]

    def sorted_keys(low, high):
        """(cut, image, row, column) as one sorted key, for each cut c with low <= c < high."""
        first, count = below[low + 1].ravel(), np.maximum(below[high + 1] - below[low + 1],
                                                          0).ravel()
        pixel = np.repeat(np.arange(count.size), count)  # (image, row, column) order
        cut = (np.repeat(first - np.cumsum(count) + count, count)
               + np.arange(pixel.size)).astype(np.uint8)
        order = np.argsort(cut, kind="stable")  # a radix sort: by cut, then as they were
        return cut[order].astype(np.int64) * levels.size + pixel[order]

    bounds = ((before, level), (after, level)) if above else ((level, before), (level, after))
    starts, ends = (sorted_keys(*pair) for pair in bounds)
    line, first = np.divmod(starts, width)  # the k-th start and end of a line are one run
    return line, first, ends % width


def _component_boxes(levels: np.ndarray, cuts: np.ndarray, above: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Every connected component of the pixels above each cut (8-connected), or with
    `above=False` at or below it (4-connected, the background), in each (image, cut) plane
    of (batch, H, W) uint8 `levels`, and its box.

    Returns the plane (image x cuts + cut) of each component (components,) and its pixel
    edges (components, 4) int (y0, x0, y1, x1), half-open: the component's rows are y0 ..
    y1 - 1. Runs of pixels along rows (_runs) are joined to the runs they touch in the row
    above, and a component is a connected set of runs (scipy.sparse.csgraph).
    """
    line, first, last = _runs(levels, cuts, above)
    batch, height, width = levels.shape
    cut_image, row = np.divmod(line, height)
    cut, image = np.divmod(cut_image, batch)
    reach = int(above)  # 8-connected: a diagonal neighbour touches
    up = np.flatnonzero(row > 0)
    # The runs of the row above that overlap run j (widened by `reach`) are contiguous.
    low = np.searchsorted(line * width + last,
                          (line[up] - 1) * width + np.maximum(first[up] - reach, 0), "left")
    high = np.searchsorted(line * width + first,
                           (line[up] - 1) * width + np.minimum(last[up] + reach, width - 1),
                           "right")
    count = np.maximum(high - low, 0)
    touching = np.repeat(low - np.cumsum(count) + count, count) + np.arange(count.sum())
    runs = len(line)
    graph = sparse.coo_matrix((np.ones(len(touching), bool), (np.repeat(up, count), touching)),
                              shape=(runs, runs))
    total, component = csgraph.connected_components(graph, directed=False)
    owner = np.empty(total, np.intp)
    owner[component] = image * len(cuts) + cut  # all runs of a component: the same plane

    def reduce(ufunc, initial, values):
        out = np.full(total, initial, np.intp)
        ufunc.at(out, component, values)
        return out

    return owner, np.stack([reduce(np.minimum, height, row), reduce(np.minimum, width, first),
                            reduce(np.maximum, -1, row) + 1, reduce(np.maximum, -1, last) + 1],
                           axis=1)


def _contour_boxes(levels: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The boxes of cv2.findContours(RETR_TREE) on each (image, cut) plane of (batch, H, W)
    uint8 `levels` above each of `cuts`: (contours,) plane and (contours, 4) half-open pixel
    edges, as _component_boxes.

    Suzuki and Abe's border following, which OpenCV implements, gives one outer border per
    8-connected component of on-pixels, whose points include the component's extreme pixels:
    its box is the component's. It gives one hole border per 4-connected component of
    off-pixels that does not touch the image edge (OpenCV pads the image with off-pixels),
    traced along the on-pixels next to the hole: the hole's box grown by a pixel on each
    side. tests/scores/test_localisation.py compares with OpenCV (4.10, 4.14 and 5.1 agree).
    """
    owner, boxes = _component_boxes(levels, cuts)
    hole_owner, holes = _component_boxes(levels, cuts, above=False)
    height, width = levels.shape[1:]
    inside = ((holes[:, 0] > 0) & (holes[:, 1] > 0)
              & (holes[:, 2] < height) & (holes[:, 3] < width))
    return (np.concatenate([owner, hole_owner[inside]]),
            np.concatenate([boxes, holes[inside] + [-1, -1, 1, 1]]))


def _estimated_boxes(levels: np.ndarray, cuts: np.ndarray, protocol: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The estimated boxes of each (image, cut) plane of (batch, H, W) uint8 `levels` above
    each of `cuts`: (boxes,) plane (image x cuts + cut) and (boxes, 4) int (y0, x0, y1, x1).

    "lab": each 8-connected region's half-open box. "wsolevaluation": each contour's box as
    compute_bboxes_from_scoremaps makes it, x1 = min(x + w, W - 1) (and so y1), whose sides
    calculate_multiple_iou counts as x1 - x0 + 1; no box for a plane with no contour.
    """
    if protocol == "lab":
        return _component_boxes(levels, cuts)
    owner, boxes = _contour_boxes(levels, cuts)
    boxes[:, 2:] = np.minimum(boxes[:, 2:], np.array(levels.shape[1:]) - 1)
    return owner, boxes


def _iou(boxes: np.ndarray, truth: np.ndarray, grow: int) -> np.ndarray:
    """IoU of (..., 4) boxes (y0, x0, y1, x1), broadcast; a side is y1 - y0 + grow pixels."""
    sides = (np.minimum(boxes[..., 2:], truth[..., 2:])
             - np.maximum(boxes[..., :2], truth[..., :2]) + grow)
    inter = np.prod(np.maximum(sides, 0), axis=-1)

    def area(box):
        return (box[..., 2] - box[..., 0] + grow) * (box[..., 3] - box[..., 1] + grow)

    # An estimated box has area >= 1 under either geometry: no 0 / 0.
    return inter / (area(boxes) + area(truth) - inter)


def _best_ious(levels: np.ndarray, cuts: np.ndarray, truth: np.ndarray, real: np.ndarray,
               protocol: str) -> np.ndarray:
    """Best IoU over all estimated boxes x all ground-truth boxes: (batch, cuts) float64.

    `levels`: (batch, H, W) uint8 maps, on at cut c where > c; `cuts`: (cuts,) int;
    `truth`: (batch, max_boxes, 4) pixel edges of _box_edges, `real` its non-padding rows.
    0 where no estimated box overlaps a ground-truth box.
    """
    planes = len(levels) * len(cuts)
    owner, boxes = _estimated_boxes(levels, cuts, protocol)
    grow = int(protocol == "wsolevaluation")  # calculate_multiple_iou: sides x1 - x0 + 1
    image = owner // len(cuts)
    iou = np.where(real[image], _iou(boxes[:, None], truth[image], grow), 0)
    best = np.zeros(planes)
    np.maximum.at(best, owner, iou.max(axis=1))
    if protocol == "wsolevaluation":
        # No contour (a constant map only): their box [0, 0, 0, 0], the top-left pixel.
        empty = np.flatnonzero(np.bincount(owner, minlength=planes) == 0)
        corner = np.where(real, _iou(np.zeros(4, np.int64), truth, grow), 0).max(axis=1)
        best[empty] = corner[empty // len(cuts)]
    return best.reshape(len(levels), len(cuts))


def box_hits(maps, boxes, thresholds=THRESHOLDS, protocol: str = "lab") -> np.ndarray:
    """Whether each image is localised, per threshold and IoU level: (batch, T, 3) bool.

    `maps` (batch, H, W); `boxes` (batch, 4) or (batch, max_boxes, 4) normalised
    (ymin, xmin, ymax, xmax), zero rows padding; `thresholds` (T,) increasing from 0, below 1;
    `protocol` one of BOX_PROTOCOLS, the box geometry (module docstring). At threshold tau
    the box of every 8-connected region of the 8-bit normalised map above int(255 * tau) is
    an estimate ("wsolevaluation": also every hole's contour box, or [0, 0, 0, 0] if there
    is no region); the image is correct at IoU level delta (IOU_LEVELS) when the best IoU
    over its estimated x ground-truth boxes is >= delta. Concatenate over batches for
    max_box_acc / max_box_acc_v2.
    """
    check_choice("BOX_PROTOCOL", protocol, BOX_PROTOCOLS)
    thresholds = _check_thresholds(thresholds)
    # (scoremap * 255).astype(uint8) truncates, as wsolevaluation does.
    levels = (normalise(maps) * 255).astype(np.uint8)
    truth, real = _box_edges(boxes, *levels.shape, protocol)
    # Thresholds with the same 8-bit cut give the same regions: label each cut once. The cut
    # is wsolevaluation's int(tau * max level): the maximum is 255 but for a constant map,
    # whose levels are all 0 and above no cut either way.
    cuts, which = np.unique((thresholds * 255).astype(np.int64), return_inverse=True)
    step = max(1, LABEL_PIXELS // (cuts.size * levels[0].size))
    best = np.concatenate([_best_ious(levels[i:i + step], cuts, truth[i:i + step],
                                      real[i:i + step], protocol)
                           for i in range(0, len(levels), step)])
    return best[:, which, None] >= np.array(IOU_LEVELS)


def max_box_acc(hits) -> np.ndarray:
    """MaxBoxAcc at each IoU level of IOU_LEVELS: (3,) float64 in [0, 1].

    `hits`: (images, T, 3) bool, box_hits of all batches. BoxAcc(tau, delta) is the share of
    images correct at threshold tau; MaxBoxAcc(delta) is its maximum over tau: one threshold
    for the whole dataset, chosen separately for each level.
    """
    hits = np.asarray(hits)
    if hits.dtype != bool or hits.ndim != 3 or hits.shape[0] == 0 or hits.shape[2] != len(
            IOU_LEVELS):
        raise ValueError(f"hits must be box_hits' (images, T, 3) bool, got {hits.shape}")
    return hits.mean(axis=0).max(axis=0)


def max_box_acc_v2(hits) -> float:
    """MaxBoxAccV2: the mean of MaxBoxAcc at IoU 0.3, 0.5 and 0.7, in [0, 1]."""
    return float(np.mean(max_box_acc(hits)))


def pixel_counts(maps, masks, thresholds=THRESHOLDS, per_image: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of normalised map values on object and on background pixels: 2 x (T + 2,),
    or 2 x (batch, T + 2) per image with `per_image` (for the bootstrap of PxAP).

    `maps` (batch, H, W); `masks` (batch, H, W) bool, True on the object. Bins as
    wsolevaluation's MaskEvaluator: [t_0, t_1), ..., [t_last, 1), [1, 2), [2, 3], so the
    maximum 1 falls in [1, 2). int64 counts; sum them over batches (and images) for pxap.
    """
    thresholds = _check_thresholds(thresholds)
    scores = normalise(maps)
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.shape != scores.shape:
        raise ValueError(f"masks must be bool of the maps' shape {scores.shape}, got "
                         f"{masks.dtype} {masks.shape}")
    edges = np.append(thresholds, [1.0, 2.0, 3.0])
    # np.histogram's bins: [e_i, e_i+1), the last one closed; scores lie in [0, 1].
    bins = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    bins = bins.reshape(len(bins), -1) + (len(edges) - 1) * np.arange(len(bins))[:, None]
    flat = masks.reshape(len(masks), -1)
    size = len(masks) * (len(edges) - 1)
    counts = [np.bincount(bins[where], minlength=size).reshape(len(masks), -1)
              for where in (flat, ~flat)]
    return tuple(counts) if per_image else (counts[0].sum(axis=0), counts[1].sum(axis=0))


def pxap(object_hist, background_hist) -> float:
    """Pixel average precision (Choe et al. 2020, PxAP) of pooled pixel_counts: in [0, 1].

    Pixels in a bin at or above threshold tau are predicted object; from the highest
    threshold down, AP = sum_l precision(tau_l) * (recall(tau_l) - recall(tau_l-1)), a right
    Riemann sum without interpolation, skipping thresholds that predict no pixel (as
    wsolevaluation's MaskEvaluator.compute).
    """
    hists = [np.asarray(h) for h in (object_hist, background_hist)]
    if hists[0].ndim != 1 or hists[0].shape != hists[1].shape:
        raise ValueError("object_hist and background_hist must be pixel_counts' two (T + 2,)")
    if hists[0].sum() <= 0:
        raise ValueError("no object pixels: PxAP is undefined")
    return float(pxap_of_pooled(hists[0][None], hists[1][None])[0])


def pxap_of_pooled(object_hists: np.ndarray, background_hists: np.ndarray) -> np.ndarray:
    """pxap of several pooled histogram pairs at once, (r, T + 2) each -> (r,) float64 (the
    bootstrap's resamples); a row without object pixels gives NaN."""
    true_pos = np.cumsum(object_hists[:, ::-1], axis=1)
    false_pos = np.cumsum(background_hists[:, ::-1], axis=1)
    predicted = true_pos + false_pos
    precision = np.divide(true_pos, predicted, out=np.zeros(predicted.shape),
                          where=predicted > 0)
    total = true_pos[:, -1:]
    recall = np.divide(true_pos, total, out=np.full(true_pos.shape, np.nan), where=total > 0)
    terms = precision[:, 1:] * np.diff(recall, axis=1)
    return np.where(predicted[:, 1:] > 0, terms, 0.0).sum(axis=1)
