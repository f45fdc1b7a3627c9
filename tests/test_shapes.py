"""Tests for camlab.shapes: the renderer's ground truth and the tfds builder, offline."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from camlab import shapes

SIZES = {"TRAIN_SIZE": 40, "VALIDATION_SIZE": 20}  # 4 and 2 examples per class


def render_with_background(monkeypatch, seed: int, label: int):
    """Renders an example and also returns the image just before the object was painted."""
    captured = {}
    distractors = shapes._distractors

    def spy(rng, image):
        captured["before"] = distractors(rng, image).copy()
        return captured["before"]

    monkeypatch.setattr(shapes, "_distractors", spy)
    image, mask, bbox = shapes.render_example(np.random.default_rng(seed), label)
    before = np.clip(np.round(captured["before"]), 0, 255).astype(np.uint8)
    return image, mask, bbox, before


def test_render_is_deterministic_and_seed_dependent():
    first = shapes.render_example(np.random.default_rng([7, 0, 3]), 3)
    again = shapes.render_example(np.random.default_rng([7, 0, 3]), 3)
    other = shapes.render_example(np.random.default_rng([7, 0, 4]), 3)
    for a, b in zip(first, again, strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert first[0].tobytes() != other[0].tobytes()
    assert first[1].tobytes() != other[1].tobytes()


@pytest.mark.parametrize("label", range(len(shapes.CLASS_NAMES)))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_is_exactly_the_painted_object(monkeypatch, label, seed):
    image, mask, bbox, before = render_with_background(monkeypatch, seed, label)
    size = shapes.IMAGE_SIZE
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert mask.shape == (size, size, 1) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 1}
    inside = mask[..., 0] == 1
    # One flat colour on the mask, and nothing changed outside it.
    colour = image[inside][0]
    assert np.all(image[inside] == colour)
    np.testing.assert_array_equal(image[~inside], before[~inside])
    # The colour stands out from the background it covers (the target is 90% of the
    # pixels; 0.1% of examples fall a little short, the worst of 3000 at 87%).
    distance = np.linalg.norm(before[inside].astype(float) - colour, axis=-1)
    assert np.mean(distance >= shapes.MIN_CONTRAST) >= 0.85
    # Fully inside the image, with at least one pixel of margin.
    assert not inside[[0, -1], :].any() and not inside[:, [0, -1]].any()
    # A 22-30 px object: between the smallest L (1.0 r^2) and the largest disk (2.8 r^2).
    assert 1.0 * 11**2 - 15 <= inside.sum() <= 2.84 * 15**2 + 15


@pytest.mark.parametrize("seed", [0, 1])
def test_clutter_is_the_same_whatever_the_label(monkeypatch, seed):
    befores = [
        render_with_background(monkeypatch, seed, label)[3]
        for label in range(len(shapes.CLASS_NAMES))
    ]
    for before in befores[1:]:
        np.testing.assert_array_equal(before, befores[0])


@pytest.mark.parametrize("name", shapes.CLASS_NAMES)
def test_every_shape_lies_in_the_unit_circle(name):
    grid = np.linspace(-1.5, 1.5, 601, dtype=np.float32)
    v, u = np.meshgrid(grid, grid, indexing="ij")
    inside = shapes._SHAPES[name](u, v)
    area = inside.mean() * 3.0**2  # in units of radius^2
    assert 0.95 <= area <= 2.84
    assert np.hypot(u, v)[inside].max() <= 1.0


@pytest.mark.parametrize("label", range(len(shapes.CLASS_NAMES)))
def test_bbox_is_the_tight_box_of_the_mask(label):
    image, mask, bbox = shapes.render_example(np.random.default_rng(label), label)
    rows, cols = np.nonzero(mask[..., 0])
    size = shapes.IMAGE_SIZE
    expected = [rows.min() / size, cols.min() / size, rows.max() / size, cols.max() / size]
    assert bbox.dtype == np.float32 and bbox.shape == (4,)
    # Pixel-edge convention: the max edges sit one pixel past the last covered row/col.
    np.testing.assert_allclose(bbox, expected + np.array([0, 0, 1, 1]) / size, atol=1e-6)
    assert np.all((bbox > 0) & (bbox < 1))


def test_tight_bbox_by_hand_on_a_non_square_mask():
    mask = np.zeros((8, 10), bool)
    mask[3, 5] = mask[5, 6] = True
    np.testing.assert_allclose(shapes.tight_bbox(mask), [3 / 8, 5 / 10, 6 / 8, 7 / 10])
    with pytest.raises(ValueError, match="empty"):
        shapes.tight_bbox(np.zeros((4, 4), bool))


def test_render_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="label"):
        shapes.render_example(rng, len(shapes.CLASS_NAMES))
    with pytest.raises(ValueError, match="size"):
        shapes.render_example(rng, 0, size=20)


def test_strokes_match_brute_force_distance():
    rng = np.random.default_rng(0)
    size = 24
    start = rng.uniform(0, size, (12, 2))
    delta = rng.uniform(-15, 15, (12, 2))
    delta[:4] = 0  # dots
    radius = rng.uniform(0.5, 1.0, 12)
    rows, cols, index = shapes._strokes(start, delta, radius, size)
    got = np.zeros((12, size, size), bool)
    got[index, rows, cols] = True
    # Brute force: distance from every pixel centre to every segment.
    centres = np.stack(np.mgrid[0:size, 0:size], -1).reshape(-1, 2) + 0.5
    offset = centres[None] - start[:, None]
    length2 = np.maximum(np.sum(delta**2, -1), 1e-12)[:, None]
    t = np.clip(np.sum(offset * delta[:, None], -1) / length2, 0, 1)
    distance = np.linalg.norm(offset - t[..., None] * delta[:, None], axis=-1)
    np.testing.assert_array_equal(got, (distance <= radius[:, None]).reshape(12, size, size))


@pytest.mark.parametrize("shape", [(5, 7, 3), (6, 4, 1)])
def test_png_round_trips_through_tensorflow(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    decoded = tf.io.decode_png(shapes._png(image), channels=shape[-1]).numpy()
    np.testing.assert_array_equal(decoded, image)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Two small preparations of the dataset in separate data dirs."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SIZES.items():
            patch.setattr(shapes, name, value)
        dirs = [tmp_path_factory.mktemp(f"data{k}") for k in range(2)]
        for data_dir in dirs:
            tfds.builder("cam_shapes", data_dir=data_dir).download_and_prepare()
    return dirs


def test_builder_metadata(prepared):
    builder = tfds.builder("cam_shapes", data_dir=prepared[0])
    assert builder.info.features["label"].names == list(shapes.CLASS_NAMES)
    assert builder.info.supervised_keys == ("image", "label")
    assert builder.info.splits["train"].num_examples == SIZES["TRAIN_SIZE"]
    assert builder.info.splits["validation"].num_examples == SIZES["VALIDATION_SIZE"]


@pytest.mark.parametrize("split", ["train", "validation"])
def test_every_class_appears_equally_often(prepared, split):
    ds = tfds.load("cam_shapes", split=split, data_dir=prepared[0])
    labels = [int(ex["label"]) for ex in tfds.as_numpy(ds)]
    counts = np.bincount(labels, minlength=len(shapes.CLASS_NAMES))
    assert np.all(counts == len(labels) // len(shapes.CLASS_NAMES))


def test_preparations_hold_identical_examples_in_the_same_order(prepared):
    # Compared as parsed tf.train.Examples, i.e. feature by feature (PNG bytes, box floats,
    # label): protobuf writes an Example's feature map in an order that can change from
    # one process to the next, so whole files match only within a process.
    files = [sorted(d.glob("cam_shapes/1.0.0/*.tfrecord*")) for d in prepared]
    assert [f.name for f in files[0]] == [f.name for f in files[1]]
    assert len(files[0]) >= 2  # at least one file per split
    for a, b in zip(*files, strict=True):
        records = [list(tf.data.TFRecordDataset(str(f)).as_numpy_iterator()) for f in (a, b)]
        assert len(records[0]) == len(records[1]) > 0
        for x, y in zip(*records, strict=True):
            assert tf.train.Example.FromString(x) == tf.train.Example.FromString(y)


def test_prepared_examples_match_the_renderer(prepared):
    load = {
        split: list(tfds.as_numpy(tfds.load("cam_shapes", split=split, data_dir=prepared[0])))
        for split in ("train", "validation")
    }
    # Validation example 3 is render_example(default_rng([SEED, 1, 3]), label 3).
    image, mask, bbox = shapes.render_example(np.random.default_rng([shapes.SEED, 1, 3]), 3)
    matches = [ex for ex in load["validation"] if ex["image"].tobytes() == image.tobytes()]
    assert len(matches) == 1
    assert matches[0]["label"] == 3
    np.testing.assert_array_equal(matches[0]["mask"], mask)
    np.testing.assert_array_equal(matches[0]["bbox"], bbox)
    # Train and validation come from different seeds, so no image is shared.
    train_images = {ex["image"].tobytes() for ex in load["train"]}
    assert not any(ex["image"].tobytes() in train_images for ex in load["validation"])
