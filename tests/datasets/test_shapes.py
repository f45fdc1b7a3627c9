"""Tests for camlab.datasets.shapes: the renderer's ground truth and the tfds builder, offline."""

import hashlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from scipy import stats

from camlab.datasets import shapes

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


@pytest.mark.parametrize("render, classes, small", [
    (shapes.render_example, shapes.CLASS_NAMES, 20),
    (shapes.render_cause_example, shapes.CAUSE_CLASSES, 40)])
def test_render_rejects_bad_arguments(render, classes, small):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="label"):
        render(rng, len(classes))
    with pytest.raises(ValueError, match="size"):
        render(rng, 0, size=small)


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
    files = [sorted(d.glob("cam_shapes/plain/1.0.0/*.tfrecord*")) for d in prepared]
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


# sha256 (first 16 hex digits) of image, mask and bbox bytes of plain examples, computed with
# the code before the builder had configs: the "plain" config must keep them bit for bit
# (over all 7000 examples they were also identical when the configs came). Computed with
# numpy 2.4 on an AMD EPYC: a CPU whose float32 sin rounds differently may differ.
PLAIN_DIGESTS = {
    ("train", 0): "aae4c57bc78e8ce3",
    ("train", 1): "c6fd1a55f19c2de7",
    ("train", 7): "7f9a8b47601e7ee8",
    ("train", 123): "d6996800ed45f307",
    ("train", 5999): "16ee0f4aa3a73afe",
    ("validation", 0): "97bb85a45985bf74",
    ("validation", 3): "e7ff4d47ef883e78",
    ("validation", 42): "1d7854ce0b032a40",
    ("validation", 506): "867e5c6bbdc55ef0",
    ("validation", 999): "0686298233c1ad00",
}


@pytest.mark.parametrize(("split", "index"), sorted(PLAIN_DIGESTS))
def test_plain_examples_are_those_of_the_code_before_the_configs(split, index):
    example = shapes._plain_example(split, index, shapes.CamShapes.get_builder_config("plain"))
    image, mask, bbox = (example[key] for key in ("image", "mask", "bbox"))
    digest = hashlib.sha256(image.tobytes() + mask.tobytes() + bbox.tobytes()).hexdigest()
    assert digest[:16] == PLAIN_DIGESTS[split, index]
    assert example["label"] == index % 10


def render_cause_with_clutter(seed: int, label: int):
    """A cause example and the clutter (h, w, 3) uint8 it was painted on."""
    captured = {}
    clutter = shapes._clutter

    def spy(rng, size):
        result = clutter(rng, size)
        captured["clutter"] = result.copy()  # as it was before any shape was painted
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shapes, "_clutter", spy)
        example = shapes.render_cause_example(np.random.default_rng(seed), label)
    return example, captured["clutter"].astype(np.uint8)


@pytest.fixture(scope="module")
def cause_examples():
    """300 cause examples (60 per class) with their clutter."""
    return [render_cause_with_clutter(seed, seed % 5) for seed in range(300)]


def test_cause_interventions_remove_exactly_one_shape(cause_examples):
    for example, clutter in cause_examples:
        image = example["image"]
        cause, distractor = example["mask"][..., 0] == 1, example["distractor_mask"][..., 0] == 1
        assert cause.any() and distractor.any() and not (cause & distractor).any()
        # The image is the clutter, with one flat colour on each shape.
        off = ~(cause | distractor)
        np.testing.assert_array_equal(image[off], clutter[off])
        for mask in (cause, distractor):
            assert np.all(image[mask] == image[mask][0])
        # Without a shape: the clutter it covered on its mask, the image everywhere else.
        removed = {"image_without_cause": cause, "image_without_distractor": distractor}
        for without, mask in removed.items():
            np.testing.assert_array_equal(example[without][mask], clutter[mask])
            np.testing.assert_array_equal(example[without][~mask], image[~mask])
            np.testing.assert_array_equal((image != example[without]).any(-1), mask)


def test_cause_boxes_are_the_tight_boxes_of_the_masks(cause_examples):
    for example, _ in cause_examples:
        for box, mask in [("bbox", "mask"), ("distractor_bbox", "distractor_mask")]:
            assert example[box].dtype == np.float32 and example[mask].dtype == np.uint8
            assert example[mask].shape == (shapes.IMAGE_SIZE, shapes.IMAGE_SIZE, 1)
            np.testing.assert_array_equal(example[box], shapes.tight_bbox(example[mask][..., 0]))


def test_cause_is_smaller_fainter_and_apart_from_the_distractor(cause_examples):
    fainter = []
    for example, _ in cause_examples:
        cause, distractor = example["mask"][..., 0] == 1, example["distractor_mask"][..., 0] == 1
        assert cause.sum() < distractor.sum()
        # Contrast: mean RGB distance between a shape's colour and the background under it.
        contrast = [
            np.linalg.norm(example["image"][mask] - example[without][mask].astype(float), axis=-1)
            for mask, without in [(cause, "image_without_cause"),
                                  (distractor, "image_without_distractor")]
        ]
        fainter.append(contrast[0].mean() < contrast[1].mean())
        assert shapes.CAUSE_CONTRAST[0] <= contrast[0].mean() <= shapes.CAUSE_CONTRAST[1] + 25
        # Pixel centres of the two shapes lie in their circles, SHAPE_GAP apart or more.
        gaps = np.linalg.norm(np.argwhere(cause)[:, None] - np.argwhere(distractor), axis=-1)
        assert gaps.min() >= shapes.SHAPE_GAP
        for mask in (cause, distractor):  # inside the image, with a pixel of margin
            assert not mask[[0, -1], :].any() and not mask[:, [0, -1]].any()
    assert np.mean(fainter) >= 0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cause_draws_ignore_the_label(seed):
    # Same generator, every label: everything but the cause is the same.
    examples = [shapes.render_cause_example(np.random.default_rng(seed), label)
                for label in range(len(shapes.CAUSE_CLASSES))]
    for key in ("image_without_cause", "distractor_mask", "distractor_bbox", "distractor_label"):
        for example in examples[1:]:
            np.testing.assert_array_equal(example[key], examples[0][key])
    assert len({example["mask"].tobytes() for example in examples}) == len(examples)


def independence_pvalue(labels: np.ndarray, distractors: np.ndarray) -> float:
    """p-value of the chi-square test of independence on the 5x5 contingency table."""
    table = np.zeros((5, 5), int)
    np.add.at(table, (labels, distractors), 1)
    return stats.chi2_contingency(table).pvalue


def test_distractor_class_is_independent_of_the_label():
    labels = np.arange(1000) % 5
    distractors = np.array([
        shapes._cause_example("train", i, shapes._CAUSE)["distractor_label"] for i in range(1000)
    ])
    assert independence_pvalue(labels, distractors) > 0.01
    # The test has the power to see a dependence: a fifth of the distractors copying the
    # label is rejected.
    copied = np.where(np.arange(1000) % 5 == np.arange(1000) // 5 % 5, labels, distractors)
    assert np.mean(copied == labels) < 0.4
    assert independence_pvalue(labels, copied) < 0.01


def test_cause_placement_falls_back_to_opposite_corners(monkeypatch):
    monkeypatch.setattr(shapes, "PLACEMENT_TRIES", 0)  # no pair drawn: the fallback
    centres = shapes._centres_apart(np.random.default_rng(0), (8.0, 17.0), 64)
    np.testing.assert_array_equal(centres, [[9, 9], [46, 46]])
    example = shapes.render_cause_example(np.random.default_rng(0), 3)
    cause, distractor = example["mask"][..., 0] == 1, example["distractor_mask"][..., 0] == 1
    assert not (cause & distractor).any() and cause.any() and distractor.any()


def test_marker_colours_are_distinct_and_saturated():
    colours = np.array(shapes.MARKER_COLOURS, float)
    assert colours.shape == (len(shapes.CLASS_NAMES), 3)
    distance = np.linalg.norm(colours[:, None] - colours, axis=-1)
    assert distance[~np.eye(len(colours), dtype=bool)].min() >= 110
    assert np.all(colours.max(1) == 255) and np.all(colours.min(1) == 0)


@pytest.mark.parametrize(("split", "base"), [("train", "train"), ("validation", "validation"),
                                             ("test", "validation")])
def test_shortcut_image_is_the_plain_image_and_a_marker(split, base):
    for index in range(20):
        example = shapes._shortcut_example(split, index, shapes._SHORTCUT)
        plain = shapes._plain_example(base, index, shapes._PLAIN)
        marker = example["marker_mask"][..., 0] == 1
        np.testing.assert_array_equal(example["image_without_marker"], plain["image"])
        np.testing.assert_array_equal(example["image"][~marker], plain["image"][~marker])
        colour = shapes.MARKER_COLOURS[example["marker_label"]]
        assert np.all(example["image"][marker] == colour)
        # A MARKER_SIZE square in a corner, 1 px from the borders.
        rows, cols = np.flatnonzero(marker.any(1)), np.flatnonzero(marker.any(0))
        for lines in (rows, cols):
            assert lines[0] in (1, 64 - 1 - shapes.MARKER_SIZE)
            np.testing.assert_array_equal(lines, lines[0] + np.arange(shapes.MARKER_SIZE))
        assert marker.sum() == shapes.MARKER_SIZE**2
        # The object where its colour still shows, and its box.
        mask = example["mask"][..., 0] == 1
        np.testing.assert_array_equal(mask, (plain["mask"][..., 0] == 1) & ~marker)
        np.testing.assert_array_equal(example["bbox"], shapes.tight_bbox(mask))
        assert example["label"] == plain["label"]
        agrees = example["marker_label"] == example["label"]
        assert agrees if split != "test" else not agrees  # SHORTCUT_RATE = 1.0


def test_marker_agreement_follows_the_rate():
    n = 2000
    config = shapes.CamShapes.get_builder_config("shortcut_90")
    assert config.shortcut_rate == 0.9 and shapes._SHORTCUT.shortcut_rate == shapes.SHORTCUT_RATE
    labels = np.arange(n) % 10

    def marker_labels(split, rate):
        rngs = (np.random.default_rng([shapes.SEED, shapes._SPLITS.index(split), i, 1])
                for i in range(n))
        return np.array([shapes._marker(rng, i % 10, rate, 64)[1] for i, rng in enumerate(rngs)])

    agree = np.sum(marker_labels("train", config.shortcut_rate) == labels)
    low, high = stats.binom.interval(0.999, n, 0.9)
    assert low <= agree <= high
    assert np.all(marker_labels("train", shapes._SHORTCUT.shortcut_rate) == labels)
    others = marker_labels("test", 0.0)
    assert not np.any(others == labels)
    # The disagreeing class is uniform over the nine others.
    shift = (others - labels) % 10
    assert stats.chisquare(np.bincount(shift, minlength=10)[1:]).pvalue > 0.01


def test_config_names_resolve():
    assert tfds.builder("cam_shapes").builder_config.name == "plain"
    assert [c.name for c in shapes.CamShapes.BUILDER_CONFIGS] == ["plain", "cause", "shortcut"]
    assert shapes.CamShapes.get_builder_config("shortcut_0").shortcut_rate == 0.0
    assert shapes.CamShapes.get_builder_config("shortcut_100").shortcut_rate == 1.0
    assert shapes.CamShapes.get_builder_config("shortcut_7") is (
        shapes.CamShapes.get_builder_config("shortcut_7"))
    for name in ("shortcut_101", "shortcut_090", "shortcut_", "cause_50", "nope"):
        assert shapes.CamShapes.get_builder_config(name) is None
        with pytest.raises(ValueError, match="not found"):
            tfds.builder(f"cam_shapes/{name}")
    with pytest.raises(SystemExit, match="error: CONFIG='nope'; choose one of plain, cause"):
        shapes.main(["nope"])


@pytest.fixture(scope="module")
def prepared_configs(tmp_path_factory):
    """The cause, shortcut and shortcut_90 configs, prepared small in one data dir."""
    data_dir = tmp_path_factory.mktemp("configs")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SIZES.items():
            patch.setattr(shapes, name, value)
        for config in ("cause", "shortcut", "shortcut_90"):
            tfds.builder(f"cam_shapes/{config}", data_dir=data_dir).download_and_prepare()
    return data_dir


CONFIG_FEATURES = {
    "cause": {"distractor_mask": (64, 64, 1), "distractor_bbox": (4,), "distractor_label": (),
              "image_without_cause": (64, 64, 3), "image_without_distractor": (64, 64, 3)},
    "shortcut": {"marker_mask": (64, 64, 1), "marker_label": (),
                 "image_without_marker": (64, 64, 3)},
}


@pytest.mark.parametrize("config", ["cause", "shortcut", "shortcut_90"])
def test_prepared_configs_hold_their_features(prepared_configs, config):
    builder = tfds.builder(f"cam_shapes/{config}", data_dir=prepared_configs)
    assert builder.info.full_name == f"cam_shapes/{config}/1.0.0"
    assert builder.data_path.parts[-3:] == ("cam_shapes", config, "1.0.0")
    kind = config.split("_")[0]
    splits = {"train": SIZES["TRAIN_SIZE"], "validation": SIZES["VALIDATION_SIZE"]}
    if kind == "shortcut":
        splits["test"] = SIZES["VALIDATION_SIZE"]
    assert {name: s.num_examples for name, s in builder.info.splits.items()} == splits
    names = shapes.CAUSE_CLASSES if kind == "cause" else shapes.CLASS_NAMES
    assert builder.info.features["label"].names == list(names)
    expected = {"image": (64, 64, 3), "label": (), "mask": (64, 64, 1), "bbox": (4,),
                **CONFIG_FEATURES[kind]}
    [example] = tfds.as_numpy(builder.as_dataset(split="validation").take(1))
    assert {key: value.shape for key, value in example.items()} == expected
    for key, value in example.items():
        kinds = {"bbox": np.float32, "label": np.int64}
        assert value.dtype == kinds.get(key.split("_")[-1], np.uint8), key
    # One example by value: the renderer's, from its seed. (tfds.builder reads a prepared
    # shortcut_90 from its files, so its builder_config is tfds' own, without the rate.)
    code_config = shapes.CamShapes.get_builder_config(config)
    rendered = [shapes._EXAMPLES[kind]("validation", i, code_config)
                for i in range(SIZES["VALIDATION_SIZE"])]
    [match] = [r for r in rendered if r["image"].tobytes() == example["image"].tobytes()]
    for key, value in match.items():
        np.testing.assert_array_equal(example[key], value)


def test_shortcut_rates_are_different_datasets(prepared_configs):
    markers = {}
    for config in ("shortcut", "shortcut_90"):
        ds = tfds.load(f"cam_shapes/{config}", split="train", data_dir=prepared_configs)
        markers[config] = {ex["image_without_marker"].tobytes(): (ex["label"], ex["marker_label"])
                           for ex in tfds.as_numpy(ds)}
    # The same plain images under both, every marker agreeing under "shortcut" only.
    assert markers["shortcut"].keys() == markers["shortcut_90"].keys()
    assert all(label == marker for label, marker in markers["shortcut"].values())
    assert any(label != marker for label, marker in markers["shortcut_90"].values())
