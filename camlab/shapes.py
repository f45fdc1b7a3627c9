"""Synthetic shapes with localisation ground truth, as a TensorFlow Datasets builder.

Each 64x64 RGB image holds exactly one of ten shapes at a random position, scale,
rotation and colour, drawn over a cluttered background (smooth colour noise, stripes,
grain, thin line segments and speckles) that carries no information about the class.
Every example also stores the object's pixel mask and its tight bounding box, so that
class activation maps can be scored against where the object really is.

    from camlab import shapes  # noqa: F401  (importing registers the "cam_shapes" builder)
    ds = tfds.load("cam_shapes", split="train", data_dir=DATA_DIR)

The dataset is generated locally on first use, without any download: about 7 s for the
7000 examples on 2 CPU cores, plus ~3 s to import TensorFlow. `python -m camlab.shapes`
prepares it in the default data_dir and saves `outputs/cam_shapes_preview.png`.

What keeps the clutter uninformative: every distractor is a line or dot at most
DISTRACTOR_MAX_WIDTH px wide, while the objects are solid shapes whose bars and rims are
at least 4.8 px thick; and the number, place and colour of distractors, like the colour
of the object, are drawn without looking at the label.
"""

import functools
import math
import struct
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
VALIDATION_SIZE = 1000  # examples; labels cycle as in train
SEED = 1234  # example i of split s is drawn from np.random.default_rng([SEED, s, i])
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
DISTRACTOR_MAX_WIDTH = 2.0  # pixels, at most 2; object bars are >= 2.4x thicker
PREVIEW_PER_CLASS = 4  # examples per class in the preview grid
PREVIEW_PATH = Path(__file__).resolve().parents[1] / "outputs" / "cam_shapes_preview.png"

_SPLITS = ("train", "validation")  # a split's position here is its index in the seed


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


def _object_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random colour (3,) float32 that stands out from the pixels `under` (n, 3).

    Candidates are drawn uniformly from the RGB cube, independently of the label; the
    first that is at least MIN_CONTRAST away from 90% of the covered pixels wins, else
    the candidate that comes closest to that.
    """
    candidates = rng.uniform(0.0, 255.0, (16, 3)).astype(np.float32)
    # Squared distances (16, n) expanded as |c|^2 - 2 c.u + |u|^2: one matrix product.
    distance2 = np.sum(candidates**2, 1)[:, None] - 2 * candidates @ under.T + np.sum(under**2, 1)
    contrasting = np.mean(distance2 >= MIN_CONTRAST**2, axis=1)
    ok = np.flatnonzero(contrasting >= 0.9)
    return candidates[ok[0] if ok.size else np.argmax(contrasting)]


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
    image = _distractors(rng, _background(rng, size))
    image = np.clip(np.round(image), 0, 255)
    radius = rng.uniform(*OBJECT_RADIUS)
    # One pixel of margin keeps the object off the border.
    cy, cx = (float(c) for c in rng.uniform(radius + 1, size - radius - 1, 2))
    angle = rng.uniform(0.0, 2 * math.pi)
    cos, sin = math.cos(angle), math.sin(angle)
    y, x = _pixel_centres(size)
    u = ((x - cx) * cos + (y - cy) * sin) / radius
    v = ((y - cy) * cos - (x - cx) * sin) / radius
    mask = _SHAPES[CLASS_NAMES[label]](u, v)
    image[mask] = np.round(_object_colour(rng, image[mask]))
    return image.astype(np.uint8), mask[..., None].astype(np.uint8), tight_bbox(mask)


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


class CamShapes(tfds.core.GeneratorBasedBuilder):
    """Ten rotated shapes on cluttered backgrounds, with object masks and boxes."""

    VERSION = tfds.core.Version("1.0.0")

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
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
                    "label": tfds.features.ClassLabel(names=CLASS_NAMES),
                    "mask": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1)),
                    "bbox": tfds.features.BBoxFeature(),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        # Nothing to download. The sizes are read here, not at import, so that tests
        # can shrink them.
        del dl_manager
        sizes = {"train": TRAIN_SIZE, "validation": VALIDATION_SIZE}
        return {name: self._generate_examples(name, sizes[name]) for name in _SPLITS}

    def _generate_examples(self, split: str, num_examples: int):
        # One generator per example, seeded by (SEED, split, index): example i has the
        # same bytes whatever the generation order, and the splits never share one.
        split_index = _SPLITS.index(split)
        for i in range(num_examples):
            label = i % len(CLASS_NAMES)
            image, mask, bbox = render_example(np.random.default_rng([SEED, split_index, i]), label)
            example = {"image": _png(image), "mask": _png(mask), "bbox": bbox}
            yield i, {**example, "label": label}


def save_preview(examples: list[dict], path: Path) -> None:
    """Saves a grid of examples (dicts of numpy image, label, bbox), a class per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_class = [[e for e in examples if e["label"] == c] for c in range(len(CLASS_NAMES))]
    cols = max(len(row) for row in by_class)
    fig, axes = plt.subplots(
        len(CLASS_NAMES), cols, figsize=(1.6 * cols, 1.6 * len(CLASS_NAMES)), squeeze=False
    )
    for c, row in enumerate(by_class):
        for j, ax in enumerate(axes[c]):
            ax.set_axis_off()
            if j >= len(row):
                continue
            size = row[j]["image"].shape[0]
            ymin, xmin, ymax, xmax = row[j]["bbox"] * size
            ax.imshow(row[j]["image"], extent=(0, size, size, 0), interpolation="nearest")
            box = plt.Rectangle(
                (xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor="lime"
            )
            ax.add_patch(box)
            ax.set_title(CLASS_NAMES[c], fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")


def main() -> None:
    start = time.perf_counter()
    builder = CamShapes()
    builder.download_and_prepare()
    print(
        f"{builder.info.full_name} ready in {builder.data_dir} after "
        f"{time.perf_counter() - start:.1f} s"
    )
    # tfds stores examples in hashed-key order, so collect the first few of each class.
    chosen = {label: [] for label in range(len(CLASS_NAMES))}
    for example in tfds.as_numpy(builder.as_dataset(split="train")):
        row = chosen[int(example["label"])]
        row.extend([example] if len(row) < PREVIEW_PER_CLASS else [])
        if all(len(row) == PREVIEW_PER_CLASS for row in chosen.values()):
            break
    save_preview([e for row in chosen.values() for e in row], PREVIEW_PATH)


if __name__ == "__main__":
    main()
