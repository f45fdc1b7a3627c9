"""Synthetic shapes with localisation ground truth, as a TensorFlow Datasets builder.

Each 64x64 RGB image holds exactly one of ten shapes at a random position, scale,
rotation and colour, drawn over a cluttered background (smooth colour noise, stripes,
grain, thin line segments and speckles) that carries no information about the class.
Every example also stores the object's pixel mask and its tight bounding box, so that
class activation maps can be scored against where the object really is.

    from camlab.datasets import shapes  # noqa: F401
    ds = tfds.load("cam_shapes", split="train", data_dir=DATA_DIR)

The builder has three configs, each at version 1.0.0 in its own folder
(DATA_DIR/cam_shapes/<config>/1.0.0):

- "plain", the default ("cam_shapes" is "cam_shapes/plain"): the images above.
- "cause", a benchmark whose cause is known by construction: two shapes that never touch
  over the same clutter. The cause, a small low-contrast shape of one of CAUSE_CLASSES, is
  the label ("mask" and "bbox" are its own); the distractor, a larger high-contrast shape of
  one of DISTRACTOR_CLASSES, is drawn without looking at the label. Every draw is made
  before any painting, so each example also stores the same image without the cause and
  without the distractor: each differs from the image exactly on that shape's mask, where
  it shows the background the shape covered. Both shapes must fit in 64 px, so the larger
  distractor tends to sit near the middle and the cause towards the edges.
- "shortcut" and "shortcut_<percent>" (e.g. "cam_shapes/shortcut_90"): a planted spurious
  signal (Adebayo et al. 2022, "Post hoc explanations may be ineffective for detecting
  unknown spurious correlation"). The plain images, each with a MARKER_SIZE px square in a
  random corner whose colour (MARKER_COLOURS) names a class: the label's in a share
  SHORTCUT_RATE (shortcut) or percent/100 of the train and validation images, another
  class otherwise. An extra "test" split marks the plain validation images with markers
  that always disagree, so that a network trained on the shortcut can be compared with a
  control on images neither trained on. "shortcut_10" is that control's data: with ten
  classes its marker's colour is independent of the label.

The dataset is generated locally on first use, without any download: plain in about 7 s
for its 7000 examples on 2 CPU cores, plus ~3 s to import TensorFlow. An example of cause
costs 2.0x one of plain (two shapes, five PNGs), one of shortcut 1.35x (rendering and
encoding, measured side by side: best of 6 x 300 examples, 1.42 ms a plain one on a busy
AMD EPYC). `python -m camlab.datasets.shapes [CONFIG]` prepares a config (plain by default) in the
default data_dir and saves a preview under outputs/ (cam_shapes_preview.png for plain,
cam_shapes_<config>_preview.png otherwise), the object boxed in lime, the cause config's
distractor in red, the shortcut's marker in white.

What keeps the clutter uninformative: its distractors are lines or dots at most
DISTRACTOR_MAX_WIDTH px wide, while the objects are solid shapes whose bars and rims are
at least 4.8 px thick (2.9 px for the cause config's small shapes); and the number, place
and colour of these distractors, like the colour of the object, are drawn without looking
at the label.
"""

import dataclasses
import functools
import math
import re
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

IMAGE_SIZE = 64  # pixels, square
# Label i is CLASS_NAMES[i]; ell, tee and aitch are the letters L, T and H, made of bars.
CLASS_NAMES = (
    "disk",
    "ring",
    "square",
    "triangle",
    "plus",
    "star",
    "crescent",
    "ell",
    "tee",
    "aitch",
)
TRAIN_SIZE = 6000  # examples; labels cycle, so each class gets TRAIN_SIZE / 10
VALIDATION_SIZE = 1000  # examples; labels cycle as in train; also the shortcut's "test"
# Example i of split s is drawn from np.random.default_rng([SEED, s, i]); the cause config's
# from [SEED, s, i, 2]; the shortcut's marker from [SEED, s, i, 1], its image is plain's.
SEED = 1234
OBJECT_RADIUS = (11.0, 15.0)  # pixels, of the circle around the shape: 22-30 px across
MIN_CONTRAST = 120.0  # RGB distance the object keeps from 90% of the pixels it covers
BACKGROUND_GRID = 4  # coarse noise cells per side, upsampled to a smooth colour field
BACKGROUND_RANGE = (40.0, 215.0)  # grey levels spanned by the smooth colour field
STRIPE_PERIOD = (4.0, 12.0)  # pixels per stripe cycle
STRIPE_AMPLITUDE = (10.0, 30.0)  # grey levels added and subtracted by the stripes
GRAIN_AMPLITUDE = 10.0  # grey levels, per-pixel uniform noise in [-a, a]
NUM_LINES = (3, 8)  # distractor line segments per image, inclusive range
LINE_LENGTH = (8.0, 40.0)  # pixels
NUM_SPECKLES = (15, 40)  # distractor dots per image, inclusive range
SPECKLE_RADIUS = (0.6, 1.0)  # pixels, at most 1
DISTRACTOR_MAX_WIDTH = 2.0  # pixels, at most 2; object bars are >= 2.4x thicker (cause 1.4x)
# The "cause" config: label i is CAUSE_CLASSES[i]; the distractor, a shape (not the thin
# lines and dots above), is one of the other five. The causes are compact shapes and the
# distractors bars and a crescent: with plus and H among the causes beside L and T
# distractors (bar pieces alike), the demo network stayed at chance for 3 epochs.
CAUSE_CLASSES = ("disk", "ring", "triangle", "square", "star")
DISTRACTOR_CLASSES = ("plus", "crescent", "ell", "tee", "aitch")
# The radii keep every cause smaller than every distractor: the largest cause, a disk
# (2.84 r^2 px), at 10 px covers at most ~284 px, the smallest distractor, an L (0.99 r^2),
# at 17 px at least ~286 px. Smaller or fainter causes (radius 6.5-8.5 px, contrast 60-120)
# left the demo network at chance after 3 epochs: nothing to explain.
CAUSE_RADIUS = (8.5, 10.0)  # pixels, of the circle around the cause: 17-20 px across
DISTRACTOR_RADIUS = (17.0, 19.0)  # pixels, of the circle around the distractor: 34-38 px
CAUSE_CONTRAST = (110.0, 140.0)  # mean RGB distance of the cause from the pixels it covers
DISTRACTOR_CONTRAST = 170.0  # RGB distance the distractor keeps from 90% of its pixels
SHAPE_GAP = 2.0  # pixels, at least, between the circles around the cause and distractor
PLACEMENT_TRIES = 32  # centre pairs drawn per image; a third are far enough apart
# The "shortcut" configs: the marker is a solid square painted last in a random corner.
SHORTCUT_RATE = 1.0  # share of train and validation markers naming the label, "shortcut"
MARKER_SIZE = 6  # pixels, side of the marker square, 1 px from the image's borders
# RGB, the marker colour of class i: ten hues 36 degrees apart at full saturation, at least
# 114 apart in RGB distance.
MARKER_COLOURS = (
    (255, 0, 0),
    (255, 153, 0),
    (204, 255, 0),
    (51, 255, 0),
    (0, 255, 102),
    (0, 255, 255),
    (0, 102, 255),
    (51, 0, 255),
    (204, 0, 255),
    (255, 0, 153),
)
PREVIEW_PER_CLASS = 4  # examples per class in the preview grid
PREVIEW_PATH = Path(__file__).resolve().parents[2] / "outputs" / "cam_shapes_preview.png"

# A split's position here is its index in the seed; only the shortcut configs have "test".
_SPLITS = ("train", "validation", "test")


def _polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd inside test of points (u, v) against a closed polygon (n, 2)."""
    u0, v0 = vertices[:, 0, None, None], vertices[:, 1, None, None]
    u1, v1 = np.roll(vertices, -1, axis=0).T[..., None, None]
    # An edge is crossed by the ray to +u if it straddles v and meets the ray right of u;
    # horizontal edges divide by zero but never straddle, so their value is ignored.
    straddles = (v0 > v) != (v1 > v)
    with np.errstate(divide="ignore", invalid="ignore"):
        u_cross = u0 + (v - v0) * (u1 - u0) / (v1 - v0)
    return np.logical_xor.reduce(straddles & (u < u_cross), axis=0)


def _regular(n: int, radii: tuple[float, ...]) -> np.ndarray:
    """Vertices (n * len(radii), 2) float32 of a polygon cycling through the radii."""
    k = n * len(radii)
    angle = np.pi / 2 + 2 * np.pi * np.arange(k) / k
    radius = np.resize(np.asarray(radii), k)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1).astype(np.float32)


def _bars(u: np.ndarray, v: np.ndarray, boxes: tuple) -> np.ndarray:
    """Inside test for a union of axis-aligned boxes (k, 4), each (u0, u1, v0, v1)."""
    u0, u1, v0, v1 = np.asarray(boxes, np.float32).T[..., None, None]  # each (k, 1, 1)
    return np.any((u >= u0) & (u <= u1) & (v >= v0) & (v <= v1), axis=0)


_TRIANGLE = _regular(3, (1.0,))
_STAR = _regular(5, (1.0, 0.48))
# Bars are 0.44 radii thick (4.8-6.6 px). The letters are kept open (the H's gap is 0.46
# radii) so that at 22 px they still read as letters rather than blobs.
_PLUS = ((-0.97, 0.97, -0.22, 0.22), (-0.22, 0.22, -0.97, 0.97))
_ELL = ((-0.55, -0.11, -0.8, 0.8), (-0.55, 0.55, 0.36, 0.8))
_TEE = ((-0.75, 0.75, -0.62, -0.18), (-0.22, 0.22, -0.62, 0.9))  # wide, unlike the L
_AITCH = ((-0.65, -0.23, -0.75, 0.75), (0.23, 0.65, -0.75, 0.75), (-0.65, 0.65, -0.21, 0.21))

# Each shape maps unit coordinates (u, v), rotated and divided by the object radius, to a
# boolean inside mask. Every shape lies inside the unit circle, so an object of radius R
# centred at least R from the border is fully inside the image.
_SHAPES = {
    "disk": lambda u, v: np.hypot(u, v) <= 0.95,
    "ring": lambda u, v: (np.hypot(u, v) <= 1.0) & (np.hypot(u, v) >= 0.55),
    "square": lambda u, v: np.maximum(np.abs(u), np.abs(v)) <= 0.7,
    "triangle": lambda u, v: _polygon(u, v, _TRIANGLE),
    "plus": lambda u, v: _bars(u, v, _PLUS),
    "star": lambda u, v: _polygon(u, v, _STAR),
    "crescent": lambda u, v: (np.hypot(u, v) <= 1.0) & (np.hypot(u - 0.45, v) > 0.82),
    "ell": lambda u, v: _bars(u, v, _ELL),
    "tee": lambda u, v: _bars(u, v, _TEE),
    "aitch": lambda u, v: _bars(u, v, _AITCH),
}


@functools.cache
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates y, x (size, size) float32 of the pixel centres."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    y.flags.writeable = x.flags.writeable = False  # cached, so shared by every call
    return y, x


@functools.cache
def _upsampling_weights(size: int, cells: int) -> np.ndarray:
    """Bilinear weights (size, cells) float32: row i interpolates pixel i from the cells."""
    position = (np.arange(size) + 0.5) / size * (cells - 1)
    weights = np.maximum(0.0, 1.0 - np.abs(position[:, None] - np.arange(cells)))
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Textured background (size, size, 3) float32: colour noise, stripes and grain."""
    y, x = _pixel_centres(size)
    coarse = rng.uniform(*BACKGROUND_RANGE, (3, BACKGROUND_GRID, BACKGROUND_GRID))
    weights = _upsampling_weights(size, BACKGROUND_GRID)
    field = np.moveaxis(weights @ coarse.astype(np.float32) @ weights.T, 0, -1)
    # Scalars stay Python floats so that the (size, size) arithmetic stays float32.
    angle = rng.uniform(0.0, math.pi)
    wavenumber = 2 * math.pi / rng.uniform(*STRIPE_PERIOD)  # radians per pixel
    phase = rng.uniform(0.0, 2 * math.pi)
    ky, kx = wavenumber * math.sin(angle), wavenumber * math.cos(angle)
    stripes = np.sin(y * ky + x * kx + phase)
    # A random colour direction per image, so that stripes tint rather than only darken.
    tint = rng.uniform(*STRIPE_AMPLITUDE) * rng.uniform(0.3, 1.0, 3).astype(np.float32)
    # Uniform rather than Gaussian grain: it looks the same and is 4x cheaper to draw.
    grain = GRAIN_AMPLITUDE * (2 * rng.random((size, size), dtype=np.float32) - 1)
    return field + stripes[..., None] * tint + grain[..., None]


# Row and column offsets (9,) of a pixel's 3x3 neighbourhood, which holds every pixel
# whose centre is within 1.5 px (per axis) of a point inside the middle pixel.
_NEIGHBOUR_ROWS, _NEIGHBOUR_COLS = np.divmod(np.arange(9), 3) - np.array(1)


def _strokes(start: np.ndarray, delta: np.ndarray, radius: np.ndarray, size: int):
    """Pixels within `radius` (n,) <= 1 px of n segments from `start` to `start + delta`.

    start, delta: (n, 2) as (y, x) in pixels; a segment with delta 0 is a dot.
    Returns rows (m,), cols (m,) and the segment index (m,) of each covered pixel, in
    segment order, so that painting them in order puts later segments on top.
    Only the 3x3 neighbourhoods of points one pixel apart along each segment are tested
    (a pixel within 1 px of the segment is within sqrt(1 + 0.5^2) < 1.5 px of one), which
    costs a few thousand distances instead of n * size^2.
    """
    if np.any(radius > 1.0):
        raise ValueError(f"stroke radius must be <= 1 px, got {radius.max():.2f}")
    (y0, x0), (dy, dx) = start.T[..., None], delta.T[..., None]  # each (n, 1)
    samples = math.ceil(np.max(np.hypot(dy, dx), initial=0.0)) + 1
    along = np.linspace(0.0, 1.0, samples)
    rows = np.floor(y0 + along * dy).astype(int)[..., None] + _NEIGHBOUR_ROWS
    cols = np.floor(x0 + along * dx).astype(int)[..., None] + _NEIGHBOUR_COLS
    rows, cols = rows.reshape(len(start), -1), cols.reshape(len(start), -1)
    # Distance from each candidate pixel centre to the closest point of its segment.
    oy, ox = rows + 0.5 - y0, cols + 0.5 - x0  # (n, samples * 9)
    t = np.clip((oy * dy + ox * dx) / np.maximum(dy * dy + dx * dx, 1e-12), 0.0, 1.0)
    near = (oy - t * dy) ** 2 + (ox - t * dx) ** 2 <= radius[:, None] ** 2
    keep = near & (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    index = np.broadcast_to(np.arange(len(start))[:, None], keep.shape)
    return rows[keep], cols[keep], index[keep]


def _distractors(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Paints thin lines, then speckles, each in a random colour, on `image` (h, w, 3)."""
    size = image.shape[0]
    n_lines = rng.integers(NUM_LINES[0], NUM_LINES[1] + 1)
    n_dots = rng.integers(NUM_SPECKLES[0], NUM_SPECKLES[1] + 1)
    angle = rng.uniform(0.0, 2 * np.pi, n_lines)
    length = rng.uniform(*LINE_LENGTH, n_lines)[:, None]
    line = _strokes(
        start=rng.uniform(0.0, size, (n_lines, 2)),
        delta=length * np.stack([np.sin(angle), np.cos(angle)], 1),
        radius=rng.uniform(0.5, DISTRACTOR_MAX_WIDTH / 2, n_lines),
        size=size,
    )
    dot = _strokes(
        start=rng.uniform(0.0, size, (n_dots, 2)),
        delta=np.zeros((n_dots, 2)),
        radius=rng.uniform(*SPECKLE_RADIUS, n_dots),
        size=size,
    )
    colours = rng.uniform(0.0, 255.0, (n_lines + n_dots, 3)).astype(np.float32)
    rows, cols = np.concatenate([line[0], dot[0]]), np.concatenate([line[1], dot[1]])
    image[rows, cols] = colours[np.concatenate([line[2], dot[2] + n_lines])]
    return image


def _object_colour(rng: np.random.Generator, under: np.ndarray, contrast: float) -> np.ndarray:
    """A random colour (3,) float32 that stands out from the pixels `under` (n, 3).

    Candidates are drawn uniformly from the RGB cube, independently of the label; the
    first that is at least `contrast` away from 90% of the covered pixels wins, else the
    candidate that comes closest to that.
    """
    candidates = rng.uniform(0.0, 255.0, (16, 3)).astype(np.float32)
    # Squared distances (16, n) expanded as |c|^2 - 2 c.u + |u|^2: one matrix product.
    distance2 = np.sum(candidates**2, 1)[:, None] - 2 * candidates @ under.T + np.sum(under**2, 1)
    contrasting = np.mean(distance2 >= contrast**2, axis=1)
    ok = np.flatnonzero(contrasting >= 0.9)
    return candidates[ok[0] if ok.size else np.argmax(contrasting)]


def _clutter(rng: np.random.Generator, size: int) -> np.ndarray:
    """The background and its thin distractors (size, size, 3) float32, integers in [0, 255]."""
    return np.clip(np.round(_distractors(rng, _background(rng, size))), 0, 255)


def _shape_mask(
    name: str, centre: np.ndarray, radius: float, angle: float, size: int
) -> np.ndarray:
    """Inside mask (size, size) bool of shape `name` centred at `centre` (y, x) px, scaled
    to a circle of `radius` px and rotated by `angle` radians."""
    # Python floats, so that the (size, size) arithmetic stays float32.
    (cy, cx), radius = (float(c) for c in centre), float(radius)
    cos, sin = math.cos(angle), math.sin(angle)
    y, x = _pixel_centres(size)
    u = ((x - cx) * cos + (y - cy) * sin) / radius
    v = ((y - cy) * cos - (x - cx) * sin) / radius
    return _SHAPES[name](u, v)


def _painted(image: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """A copy of `image` (h, w, 3) with `colour` (3,) on the pixels of `mask` (h, w) bool."""
    image = image.copy()
    image[mask] = colour
    return image


def render_example(
    rng: np.random.Generator, label: int, size: int = IMAGE_SIZE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws one cluttered image with a single object of class `label`.

    Returns `image` (size, size, 3) uint8; `mask` (size, size, 1) uint8, 1 exactly on the
    pixels painted with the object colour; and `bbox` (4,) float32, the tight box of the
    mask as normalised (ymin, xmin, ymax, xmax) pixel edges in [0, 1], as tfds expects.
    The object is painted last, so nothing occludes it.
    """
    if not 0 <= label < len(CLASS_NAMES):
        raise ValueError(f"label must be in [0, {len(CLASS_NAMES)}), got {label}")
    if size < 2 * OBJECT_RADIUS[1] + 4:
        raise ValueError(f"size must be >= {2 * OBJECT_RADIUS[1] + 4:.0f} px, got {size}")
    image = _clutter(rng, size)
    radius = rng.uniform(*OBJECT_RADIUS)
    # One pixel of margin keeps the object off the border.
    centre = rng.uniform(radius + 1, size - radius - 1, 2)
    mask = _shape_mask(CLASS_NAMES[label], centre, radius, rng.uniform(0.0, 2 * math.pi), size)
    image[mask] = np.round(_object_colour(rng, image[mask], MIN_CONTRAST))
    return image.astype(np.uint8), mask[..., None].astype(np.uint8), tight_bbox(mask)


def _centres_apart(rng: np.random.Generator, radii: tuple[float, float], size: int) -> np.ndarray:
    """Centres (2, 2), each (y, x) px, of two circles of `radii` px, 1 px inside the image
    and at least SHAPE_GAP px apart.

    PLACEMENT_TRIES pairs are drawn uniformly, always as many so that the draws after them
    do not depend on which pair wins; the first far enough apart wins. Should none be
    (about once in 500,000 images), the circles go to opposite corners, which
    render_cause_example's size check leaves far enough apart.
    """
    low = np.asarray(radii)[:, None] + 1  # (2, 1): circle, then y and x alike
    centres = rng.uniform(low, size - low, (PLACEMENT_TRIES, 2, 2))
    gaps = np.linalg.norm(centres[:, 0] - centres[:, 1], axis=-1) - sum(radii)
    apart = np.flatnonzero(gaps >= SHAPE_GAP)
    if apart.size:
        return centres[apart[0]]
    return np.array([[radii[0] + 1] * 2, [size - radii[1] - 1] * 2])


def _faint_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A colour (3,) float32, integer-valued, whose mean RGB distance from the pixels `under`
    (n, 3) lies in CAUSE_CONTRAST, and that equals none of them (unless all candidates do).

    16 candidates sit at a distance drawn from CAUSE_CONTRAST from the pixels' mean colour,
    in uniform random directions, independently of the label. Their mean distance from the
    pixels is at least that (Jensen's inequality), more where the pixels vary. The first
    candidate that qualifies wins, else the one whose mean distance comes closest.
    """
    direction = rng.normal(size=(16, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    step = rng.uniform(*CAUSE_CONTRAST, (16, 1))
    candidates = np.clip(np.round(under.mean(0) + step * direction), 0, 255).astype(np.float32)
    distance = np.linalg.norm(candidates[:, None] - under, axis=-1)  # (16, n)
    low, high = CAUSE_CONTRAST
    contrast = distance.mean(1)
    miss = np.maximum(low - contrast, 0) + np.maximum(contrast - high, 0)
    miss[distance.min(1) == 0] = np.inf  # a pixel the cause would leave unchanged
    return candidates[np.argmin(miss)]


def render_cause_example(rng: np.random.Generator, label: int, size: int = IMAGE_SIZE) -> dict:
    """Draws one cluttered image with a small, faint cause of class CAUSE_CLASSES[label] and
    a larger, salient distractor whose class, place, size, angle and colour ignore `label`.

    Returns "image", "image_without_cause", "image_without_distractor" (size, size, 3)
    uint8, the same draws painted with both shapes, without the cause, without the
    distractor; "mask", "distractor_mask" (size, size, 1) uint8, 1 exactly on each shape's
    painted pixels (disjoint); "bbox", "distractor_bbox" (4,) float32, their tight boxes as
    in render_example; and "distractor_label", an int indexing DISTRACTOR_CLASSES.
    """
    if not 0 <= label < len(CAUSE_CLASSES):
        raise ValueError(f"label must be in [0, {len(CAUSE_CLASSES)}), got {label}")
    minimum = 2 * (CAUSE_RADIUS[1] + DISTRACTOR_RADIUS[1]) + SHAPE_GAP + 2
    if size < minimum:
        raise ValueError(f"size must be >= {minimum:.0f} px, got {size}")
    # Every draw for the two shapes comes before either is painted, and their number never
    # depends on the label, so the three images share them.
    clutter = _clutter(rng, size)
    radii = rng.uniform(*CAUSE_RADIUS), rng.uniform(*DISTRACTOR_RADIUS)
    angles = rng.uniform(0.0, 2 * math.pi, 2)
    distractor_label = int(rng.integers(len(DISTRACTOR_CLASSES)))
    centres = _centres_apart(rng, radii, size)
    cause = _shape_mask(CAUSE_CLASSES[label], centres[0], radii[0], angles[0], size)
    name = DISTRACTOR_CLASSES[distractor_label]
    distractor = _shape_mask(name, centres[1], radii[1], angles[1], size)
    distractor_colour = np.round(_object_colour(rng, clutter[distractor], DISTRACTOR_CONTRAST))
    cause_colour = _faint_colour(rng, clutter[cause])
    without_cause = _painted(clutter, distractor, distractor_colour)
    without_distractor = _painted(clutter, cause, cause_colour)
    image = _painted(without_cause, cause, cause_colour)
    return {
        "image": image.astype(np.uint8),
        "image_without_cause": without_cause.astype(np.uint8),
        "image_without_distractor": without_distractor.astype(np.uint8),
        "mask": cause[..., None].astype(np.uint8),
        "bbox": tight_bbox(cause),
        "distractor_mask": distractor[..., None].astype(np.uint8),
        "distractor_bbox": tight_bbox(distractor),
        "distractor_label": distractor_label,
    }


def _marker(rng: np.random.Generator, label: int, rate: float, size: int) -> tuple[np.ndarray, int]:
    """The marker's square (size, size) bool, MARKER_SIZE px in a random corner 1 px from
    the borders, and its class: `label` with probability `rate`, else uniform over the
    other nine."""
    corner = rng.integers(2, size=2)  # (row, column), each 0 for top / left, 1 bottom / right
    agrees = rng.random() < rate
    other = (label + 1 + int(rng.integers(len(CLASS_NAMES) - 1))) % len(CLASS_NAMES)
    top, left = 1 + corner * (size - MARKER_SIZE - 2)
    square = np.zeros((size, size), bool)
    square[top : top + MARKER_SIZE, left : left + MARKER_SIZE] = True
    return square, label if agrees else other


def render_shortcut_example(
    rng: np.random.Generator,
    marker_rng: np.random.Generator,
    label: int,
    rate: float,
    size: int = IMAGE_SIZE,
) -> dict:
    """The image render_example(rng, label, size) draws, with a marker from `marker_rng`
    painted on top: a solid square in a random corner coloured MARKER_COLOURS[marker_label],
    marker_label being `label` with probability `rate` in [0, 1], else one of the nine others.

    Returns "image", "image_without_marker" (the plain image) (size, size, 3) uint8;
    "mask" (size, size, 1) uint8, 1 exactly where the object's colour shows (the plain mask
    less the marker), "bbox" (4,) float32, its tight box; "marker_mask" (size, size, 1)
    uint8, 1 on the square; and "marker_label", an int indexing CLASS_NAMES.
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    plain, mask, _ = render_example(rng, label, size)
    square, marker_label = _marker(marker_rng, label, rate, size)
    image = plain.copy()
    image[square] = MARKER_COLOURS[marker_label]
    mask = mask[..., 0].astype(bool) & ~square
    return {
        "image": image,
        "image_without_marker": plain,
        "mask": mask[..., None].astype(np.uint8),
        "bbox": tight_bbox(mask),
        "marker_mask": square[..., None].astype(np.uint8),
        "marker_label": marker_label,
    }


def tight_bbox(mask: np.ndarray) -> np.ndarray:
    """Tight box (4,) float32 of a non-empty (h, w) mask: normalised ymin, xmin, ymax, xmax.

    Coordinates are pixel edges, so a mask holding only pixel (0, 0) of a 64x64 image
    gives (0, 0, 1/64, 1/64).
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("mask is empty")
    h, w = mask.shape[:2]
    return np.array([rows[0] / h, cols[0] / w, (rows[-1] + 1) / h, (cols[-1] + 1) / w], np.float32)


def _png(image: np.ndarray) -> bytes:
    """Encodes an (h, w, 1 or 3) uint8 array as a lossless PNG file.

    tfds would encode arrays itself, but through TensorFlow at ~0.45 ms an image, which
    made encoding the larger part of preparing the dataset. This plain encoder (no row
    filters, fastest zlib level) takes ~0.17 ms; the grain leaves little to compress.
    """
    h, w, channels = image.shape
    colour_type = {1: 0, 3: 2}[channels]  # PNG greyscale or RGB, 8 bits a sample
    # Every row starts with its filter type, 0 = none.
    rows = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * channels)], 1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)),
            chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
            chunk(b"IEND", b""),
        ]
    )


@dataclasses.dataclass(eq=False)
class CamShapesConfig(tfds.core.BuilderConfig):
    """A variant of cam_shapes, named as in "cam_shapes/<name>"."""

    kind: str = "plain"  # what the examples are: "plain", "cause" or "shortcut"
    shortcut_rate: float = SHORTCUT_RATE  # a shortcut's share of agreeing markers


def _shortcut_description(rate: float) -> str:
    return (
        f"The plain images with a marker: a {MARKER_SIZE} px square in a random corner whose "
        f"colour names the label in {rate:.0%} of the train and validation images and "
        "another class otherwise; the test split marks the plain validation images with "
        "markers that never name the label."
    )


_PLAIN = CamShapesConfig(
    name="plain",
    version="1.0.0",
    description="One shape per image, with its mask and box.",
)
_CAUSE = CamShapesConfig(
    name="cause",
    version="1.0.0",
    kind="cause",
    description=(
        "A small, faint shape that is the label and a larger, salient distractor shape drawn "
        "without looking at the label; with both masks and boxes, and the image without "
        "each of them."
    ),
)
_SHORTCUT = CamShapesConfig(
    name="shortcut",
    version="1.0.0",
    kind="shortcut",
    shortcut_rate=SHORTCUT_RATE,
    description=_shortcut_description(SHORTCUT_RATE),
)
_SHORTCUT_NAME = re.compile(r"shortcut_(100|[1-9]?[0-9])")  # a percent without leading zeros


@functools.cache
def _shortcut_config(name: str) -> CamShapesConfig | None:
    """The config "shortcut_<percent>" names, percent an integer in [0, 100]; else None."""
    match = _SHORTCUT_NAME.fullmatch(name)
    if match is None:
        return None
    rate = int(match[1]) / 100
    return CamShapesConfig(
        name=name,
        version="1.0.0",
        kind="shortcut",
        shortcut_rate=rate,
        description=_shortcut_description(rate),
    )


def _features(kind: str) -> dict:
    """The features of a config's examples, by name."""

    def image(channels: int) -> tfds.features.Image:
        return tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, channels))

    box, labels = tfds.features.BBoxFeature, tfds.features.ClassLabel
    features = {
        "image": image(3),
        "label": labels(names=CAUSE_CLASSES if kind == "cause" else CLASS_NAMES),
        "mask": image(1),
        "bbox": box(),
    }
    if kind == "cause":
        features |= {
            "distractor_mask": image(1),
            "distractor_bbox": box(),
            "distractor_label": labels(names=DISTRACTOR_CLASSES),
            "image_without_cause": image(3),
            "image_without_distractor": image(3),
        }
    if kind == "shortcut":
        features |= {
            "marker_mask": image(1),
            "marker_label": labels(names=CLASS_NAMES),
            "image_without_marker": image(3),
        }
    return features


def _example_rng(split: str, index: int, *stream: int) -> np.random.Generator:
    """The generator of example `index` of `split`, or of one of its other streams."""
    return np.random.default_rng([SEED, _SPLITS.index(split), index, *stream])


# Example `index` of `split` under each kind of config: numpy arrays and ints, which
# _encoded turns into what tfds stores.
def _plain_example(split: str, index: int, config: CamShapesConfig) -> dict:
    label = index % len(CLASS_NAMES)
    image, mask, bbox = render_example(_example_rng(split, index), label)
    return {"image": image, "mask": mask, "bbox": bbox, "label": label}


def _cause_example(split: str, index: int, config: CamShapesConfig) -> dict:
    label = index % len(CAUSE_CLASSES)
    return {**render_cause_example(_example_rng(split, index, 2), label), "label": label}


def _shortcut_example(split: str, index: int, config: CamShapesConfig) -> dict:
    # "test" marks plain's validation images again, with markers that never agree.
    label = index % len(CLASS_NAMES)
    plain_rng = _example_rng("validation" if split == "test" else split, index)
    rate = 0.0 if split == "test" else config.shortcut_rate
    example = render_shortcut_example(plain_rng, _example_rng(split, index, 1), label, rate)
    return {**example, "label": label}


_EXAMPLES = {"plain": _plain_example, "cause": _cause_example, "shortcut": _shortcut_example}


def _encoded(example: dict) -> dict:
    """`example` with its (h, w, c) uint8 arrays as PNG bytes, the way tfds stores them."""
    return {key: _png(value) if np.ndim(value) == 3 else value for key, value in example.items()}


class CamShapes(tfds.core.GeneratorBasedBuilder):
    """Ten rotated shapes on cluttered backgrounds, with object masks and boxes.

    Configs (see the module's docstring): "plain" (the default), "cause" (a small faint
    cause beside a large salient distractor, with the images without either), "shortcut"
    and "shortcut_<percent>" (a corner marker whose colour names the label in that share
    of the train and validation images, never in the "test" split).
    """

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [_PLAIN, _CAUSE, _SHORTCUT]  # the first is the default

    @classmethod
    def get_builder_config(cls, name: str, version=None) -> tfds.core.BuilderConfig | None:
        """The config called `name`: one of BUILDER_CONFIGS, or a "shortcut_<percent>"."""
        # tfds finds configs only here, from a name and from a config object alike. Listing
        # the 101 shortcut rates in BUILDER_CONFIGS would fill every listing of the configs,
        # so they are made on demand, cached so that tfds finds the same object each time.
        # (tfds.builder reads a prepared shortcut_<percent> from its files; same examples.)
        return super().get_builder_config(name, version) or _shortcut_config(name)

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly, not dataset_info_from_configs: that would take the
        # description from any README.md next to this module, i.e. the repo's.
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "One of ten shapes (disk, ring, square, triangle, plus, star, crescent "
                "and the letters L, T, H) at a random position, scale, rotation and "
                "colour on a cluttered background, with the object's pixel mask and "
                "tight bounding box."
            ),
            features=tfds.features.FeaturesDict(_features(self.builder_config.kind)),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        # Nothing to download. The sizes are read here, not at import, so that tests
        # can shrink them.
        del dl_manager
        sizes = {"train": TRAIN_SIZE, "validation": VALIDATION_SIZE, "test": VALIDATION_SIZE}
        names = _SPLITS if self.builder_config.kind == "shortcut" else _SPLITS[:2]
        return {name: self._generate_examples(name, sizes[name]) for name in names}

    def _generate_examples(self, split: str, num_examples: int):
        # One generator per example, seeded by (SEED, split, index, ...): example i has the
        # same bytes whatever the generation order, and the splits never share one (the
        # shortcut's validation and test splits share plain's validation images, by design).
        make = _EXAMPLES[self.builder_config.kind]
        for i in range(num_examples):
            yield i, _encoded(make(split, i, self.builder_config))


def _preview_boxes(example: dict) -> list[tuple[np.ndarray, str]]:
    """(box (4,), colour) to outline: the object in lime, a distractor red, a marker white."""
    boxes = [(example["bbox"], "lime")]
    if "distractor_bbox" in example:
        boxes.append((example["distractor_bbox"], "red"))
    if "marker_mask" in example:
        boxes.append((tight_bbox(example["marker_mask"][..., 0]), "white"))
    return boxes


def save_preview(examples: list[dict], class_names: list[str], path: Path) -> None:
    """Saves a grid of examples (dicts of numpy arrays from tfds), a class per row, with
    their boxes outlined (_preview_boxes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(class_names)
    by_class = [[e for e in examples if e["label"] == c] for c in range(rows)]
    cols = max(len(row) for row in by_class)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows), squeeze=False)
    for c, row in enumerate(by_class):
        for j, ax in enumerate(axes[c]):
            ax.set_axis_off()
            if j >= len(row):
                continue
            size = row[j]["image"].shape[0]
            ax.imshow(row[j]["image"], extent=(0, size, size, 0), interpolation="nearest")
            for box, colour in _preview_boxes(row[j]):
                ymin, xmin, ymax, xmax = box * size
                ax.add_patch(
                    plt.Rectangle(
                        (xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=colour
                    )
                )
            ax.set_title(class_names[c], fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")


def _first_of_each_class(builder: tfds.core.DatasetBuilder, num_classes: int) -> list[dict]:
    """PREVIEW_PER_CLASS training examples of each class, as numpy dicts."""
    # tfds stores examples in hashed-key order, so collect the first few of each class.
    chosen = {label: [] for label in range(num_classes)}
    for example in tfds.as_numpy(builder.as_dataset(split="train")):
        row = chosen[int(example["label"])]
        row.extend([example] if len(row) < PREVIEW_PER_CLASS else [])
        if all(len(row) == PREVIEW_PER_CLASS for row in chosen.values()):
            break
    return [e for row in chosen.values() for e in row]


def main(argv: list[str] | None = None) -> None:
    """`python -m camlab.datasets.shapes [CONFIG]`: prepares the config (plain by default) in tfds'
    default data_dir and saves a preview of its training images under outputs/."""
    args = sys.argv[1:] if argv is None else argv
    config = args[0] if args else "plain"
    if len(args) > 1 or CamShapes.get_builder_config(config) is None:
        raise SystemExit(
            f"error: CONFIG={' '.join(args)!r}; choose one of plain, cause, shortcut, "
            "shortcut_<percent 0-100> (python -m camlab.datasets.shapes [CONFIG])"
        )
    start = time.perf_counter()
    builder = CamShapes(config=config)
    builder.download_and_prepare()
    print(
        f"{builder.info.full_name} ready in {builder.data_dir} after "
        f"{time.perf_counter() - start:.1f} s"
    )
    names = builder.info.features["label"].names
    path = PREVIEW_PATH
    if config != "plain":
        path = PREVIEW_PATH.with_name(f"cam_shapes_{config}_preview.png")
    save_preview(_first_of_each_class(builder, len(names)), names, path)


if __name__ == "__main__":
    main()
