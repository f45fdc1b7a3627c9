"""camlab.datasets.groundtruth and the localisation it feeds: which features hold boxes and masks,
how they follow the image's resize, and evaluate_cam.py on CUB and Oxford pets (tfds mock
data of hand-built examples, offline), and on a dataset without ground truth."""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from scipy import ndimage

import evaluate_cam
from camlab.datasets import data, groundtruth, shapes  # noqa: F401
from camlab.errors import CamError
from camlab.evaluate import evaluation, leaderboard  # noqa: F401
from camlab.report import plots  # noqa: F401
from camlab.scores import metrics, registry  # noqa: F401
from helpers import QUICK_TRAINING

NUM_EXAMPLES = 12
# Every mock object fills this normalised (ymin, xmin, ymax, xmax) box of its image, which
# holds the image's centre: the centre baseline's maximum lies on it.
OBJECT = (0.3, 0.25, 0.75, 0.7)


def object_pixels(height: int, width: int) -> np.ndarray:
    """(h, w) bool: the pixels of OBJECT in an image of that size (edges rounded)."""
    y0, x0, y1, x1 = np.rint(np.array(OBJECT) * [height, width, height, width]).astype(int)
    inside = np.zeros((height, width), bool)
    inside[y0:y1, x0:x1] = True
    return inside


def cub_example(rng, index: int) -> dict:
    """An example as tfds' caltech_birds2011 yields it: the bird's box, and an 8-bit
    segmentation whose 1-pixel ring around the bird (102: two of five annotators) is not
    the bird."""
    height, width = rng.integers(24, 49, size=2)
    bird = object_pixels(height, width)
    ring = ndimage.binary_dilation(bird) & ~bird
    image = rng.integers(0, 90, (height, width, 3)).astype(np.uint8)
    image[bird] = (40, 90 + 40 * (index % 3), 220)
    rows, cols = np.flatnonzero(bird.any(1)), np.flatnonzero(bird.any(0))
    box = np.array([rows[0] / height, cols[0] / width, (rows[-1] + 1) / height,
                    (cols[-1] + 1) / width], np.float32)
    segmentation = np.where(bird, 255, np.where(ring, 102, 0)).astype(np.uint8)
    return {"image": image, "image/filename": f"{index}.jpg", "label": index % 3,
            "label_name": "bird", "bbox": box, "segmentation_mask": segmentation[..., None]}


def pet_example(rng, index: int) -> dict:
    """An example as tfds' oxford_iiit_pet yields it: a trimap, 1 pet, 2 background, 3 the
    band along the pet's outline (one pixel either side), and a head box of zeros."""
    height, width = rng.integers(24, 49, size=2)
    pet = object_pixels(height, width)
    band = ndimage.binary_dilation(pet) & ~ndimage.binary_erosion(pet)
    image = rng.integers(0, 90, (height, width, 3)).astype(np.uint8)
    image[pet] = (200, 60 + 50 * (index % 3), 30)
    trimap = np.where(band, 3, np.where(pet, 1, 2)).astype(np.uint8)
    return {"image": image, "label": index % 3, "species": index % 2,
            "file_name": f"{index}.jpg", "segmentation_mask": trimap[..., None],
            "head_bbox": np.zeros(4, np.float32)}


def hand_built(make):
    """A tfds.testing.mock_data as_dataset_fn giving NUM_EXAMPLES examples of `make`."""
    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        del self, split, decoders, read_config, shuffle_files
        examples = [make(np.random.default_rng(index), index) for index in range(NUM_EXAMPLES)]
        signature = {key: tf.TensorSpec([None] * np.ndim(value) if np.ndim(value) == 3
                                        else np.shape(value), tf.constant(value).dtype)
                     for key, value in examples[0].items()}
        return tf.data.Dataset.from_generator(lambda: iter(examples),
                                              output_signature=signature).apply(
            tf.data.experimental.assert_cardinality(NUM_EXAMPLES))
    return as_dataset


def mocked(make):
    """mock_data with hand-built examples; the download-host probe answered offline."""
    stack = mock.patch.object(data, "host_reachable", lambda *args, **kwargs: True)
    return stack, tfds.testing.mock_data(as_dataset_fn=hand_built(make))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{dataset: output_dir}: a quick small_vgg run on each dataset's mock, named after it."""
    import train_cam

    output_dir = tmp_path_factory.mktemp("groundtruth")
    trained = {}
    for dataset, make in (("caltech_birds2011", cub_example), ("oxford_iiit_pet", pet_example)):
        probe, mocked_data = mocked(make)
        with probe, mocked_data:
            train_cam.main([*QUICK_TRAINING, "--BACKBONE=small_vgg", f"--DATASET={dataset}",
                            "--VALIDATION_SPLIT=test", f"--OUTPUT_DIR={output_dir}",
                            f"--RUN_NAME={dataset}"])
        trained[dataset] = output_dir
    return trained


def evaluate(dataset, make, output_dir, *args):
    probe, mocked_data = mocked(make)
    with probe, mocked_data:
        path = evaluate_cam.main([f"--RUN_NAME={dataset}", f"--OUTPUT_DIR={output_dir}",
                                  "--SPLIT=test", "--MAX_IMAGES=8", "--BATCH_SIZE=4",
                                  "--STEPS=2", *args])
    return path


def object_share(make, size: int) -> float:
    """Share of object pixels over the first 8 mock examples once resized to `size`."""
    probe, mocked_data = mocked(make)
    with probe, mocked_data:
        name = "oxford_iiit_pet" if make is pet_example else "caltech_birds2011"
        batches = data.evaluation_batches(data.load_split(tfds.builder(name), "test"),
                                          size, 8, 8)
        return float(np.mean(next(iter(batches))["mask"]))


def test_known_datasets_name_their_features():
    birds = groundtruth.find(tfds.builder("caltech_birds2011"))
    assert (birds.box, birds.mask, min(birds.object_values)) == ("bbox", "segmentation_mask",
                                                                 128)
    pets = groundtruth.find(tfds.builder("oxford_iiit_pet"))
    assert (pets.box, pets.mask, pets.object_values) == ("", "segmentation_mask", (1, 3))
    assert "head_bbox" in tfds.builder("oxford_iiit_pet").info.features  # left out on purpose
    demo = groundtruth.find(tfds.builder("cam_shapes"))  # the "bbox" / "mask" convention
    assert (demo.box, demo.mask, demo.object_values) == ("bbox", "mask", groundtruth.NONZERO)
    assert groundtruth.find(tfds.builder("imagenette/320px")) == groundtruth.GroundTruth()
    assert "ground truth: none" in groundtruth.GroundTruth().describe()
    assert "object = values 128-255" in birds.describe()
    assert "object = values 1, 3); no box: MaxBoxAccV2" in pets.describe()


def test_a_wrong_table_entry_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(groundtruth.GROUND_TRUTH, "oxford_iiit_pet",
                        groundtruth.GroundTruth(box="bbox", mask="segmentation_mask"))
    with pytest.raises(CamError, match="oxford_iiit_pet has no BBoxFeature feature 'bbox'"):
        groundtruth.find(tfds.builder("oxford_iiit_pet"))


@pytest.mark.parametrize("make, object_values", [(cub_example, [255]),
                                                 (pet_example, [1, 3])])
def test_standardise_keeps_the_object_pixels_and_drops_the_rest(make, object_values):
    name = "oxford_iiit_pet" if make is pet_example else "caltech_birds2011"
    raw = make(np.random.default_rng(0), 0)
    examples = tf.data.Dataset.from_tensors(raw)
    out = next(iter(groundtruth.standardise(examples, groundtruth.find(tfds.builder(name)))))
    expected = np.isin(raw["segmentation_mask"], object_values)
    np.testing.assert_array_equal(out["mask"].numpy(), expected.astype(np.uint8))
    assert set(out) == {"image", "label", "mask"} | ({"bbox"} if make is cub_example else set())
    if make is cub_example:  # the bird's box is the box of its mask, not of the ring
        np.testing.assert_allclose(metrics.mask_box(out["mask"].numpy()[None, ..., 0]),
                                   raw["bbox"][None], atol=1e-6)


@pytest.mark.parametrize("height, width", [(40, 80), (80, 40)])
def test_mask_and_box_follow_the_image_through_the_resize(height, width):
    """The model sees tfds images squashed to a square (as in training), never cropped or
    padded: an object filling rows 10-29 and the right half of a 40x80 image fills rows
    4-11 and columns 8-15 at 16 px, in the image, in its mask and in its box alike."""
    inside = np.zeros((height, width), bool)
    inside[height // 4:3 * height // 4, width // 2:] = True
    image = np.where(inside[..., None], 250, 0).astype(np.uint8).repeat(3, axis=2)
    box = np.array([0.25, 0.5, 0.75, 1.0], np.float32)
    example = {"image": image, "label": np.int64(0), "bbox": box,
               "mask": inside[..., None].astype(np.uint8)}
    out = data.resized_example(example, 16)
    expected = np.zeros((16, 16), bool)
    expected[4:12, 8:] = True
    np.testing.assert_array_equal(out["mask"].numpy(), expected)
    np.testing.assert_array_equal(out["image"].numpy()[..., 0] > 125, expected)
    np.testing.assert_array_equal(metrics.box_masks(out["bbox"][None], 16, 16)[0], expected)
    picked = data.pick_examples(tf.data.Dataset.from_tensors(example), 1, 0, 16)
    np.testing.assert_array_equal(picked["mask"][0], expected)  # visualize_cam's path


def test_evaluate_on_birds_scores_boxes_and_masks(runs, saved_figures, draft_figures):
    path = evaluate("caltech_birds2011", cub_example, runs["caltech_birds2011"])
    # 200 classes: a confusion matrix of colours only, the size of one of 40 classes.
    matrix = saved_figures[0]
    assert matrix.get_size_inches()[0] == pytest.approx(2.0 + 0.55 * plots.LABELLED_CLASSES)
    assert not matrix.axes[0].texts
    results = json.loads(path.read_text())
    assert results["ground_truth"] == {"box": True, "mask": True}
    assert results["not_computed"] == [] and results["num_images"] == 8
    for target in ("predicted_class", "true_class"):
        for key in (*metrics.BOX_METRICS, *metrics.MASK_METRICS, *metrics.POINTING_METRICS):
            for suffix in evaluation.SOURCES:
                assert 0.0 <= results[target][f"{key}{suffix}"] <= 1.0, (target, key, suffix)
    # Every bird covers the image centre after the resize: the centre baseline points at it.
    assert results["predicted_class"]["pointing_game_strict_center_baseline"] == 1.0


def test_evaluate_on_pets_scores_masks_only(runs, capsys, draft_figures):
    output_dir = runs["oxford_iiit_pet"]
    path = evaluate("oxford_iiit_pet", pet_example, output_dir, "--METHOD=cam,gradcam")
    assert "mask from feature 'segmentation_mask' (object = values 1, 3); no box" in (
        capsys.readouterr().out)
    results = json.loads((path.parent / "metrics_first8.json").read_text())
    assert results["ground_truth"] == {"box": False, "mask": True}
    assert results["not_computed"] == list(metrics.BOX_METRICS)
    for target in ("predicted_class", "true_class"):
        assert not [key for key in results[target] if key.startswith(metrics.BOX_METRICS)]
        for key in (*metrics.MASK_METRICS, *metrics.POINTING_METRICS):
            assert 0.0 <= results[target][key] <= 1.0
    scores = results["predicted_class"]
    # The pet and its outline band are the object: the centre lies on it, and a random
    # map's pixel precision is the object's share of the pixels at every threshold.
    assert scores["pointing_game_strict_center_baseline"] == 1.0
    assert scores["pxap_random_baseline"] == pytest.approx(object_share(pet_example, 32),
                                                           abs=0.05)
    board = json.loads(path.read_text())
    assert board["not_computed"] == list(metrics.BOX_METRICS)
    table = (path.with_suffix(".md")).read_text().splitlines()
    # the registry's board columns the masks give, none of a box's, with their titles
    shown = [key for key in (*leaderboard.KEYS, *leaderboard.CHECKS, "ms_per_image")
             if key in next(iter(board["methods"].values()))]
    assert "pxap" in shown and not set(shown) & set(metrics.BOX_METRICS)
    titles = leaderboard.TITLES
    assert table[0] == "| method | " + " | ".join(titles[key] for key in shown) + " |"
    ranked = [line.split("|")[1].strip() for line in table[2:4]]
    assert ranked == sorted(board["methods"], key=lambda m: -board["methods"][m]["pxap"])


def test_a_dataset_without_ground_truth_still_gets_deletion_and_insertion(
        small_run, mock_imagenette, capsys):
    output_dir, run_dir = small_run
    path = evaluate_cam.main(["--RUN_NAME=mock", f"--OUTPUT_DIR={output_dir}",
                              "--MAX_IMAGES=4", "--BATCH_SIZE=4", "--STEPS=2"])
    assert "ground truth: none" in capsys.readouterr().out
    results = json.loads(path.read_text())
    assert results["ground_truth"] == {"box": False, "mask": False}
    assert results["not_computed"] == [*metrics.BOX_METRICS, *metrics.MASK_METRICS,
                                       *metrics.POINTING_METRICS]
    for target in ("predicted_class", "true_class"):
        assert sorted(key for key in results[target] if not key.endswith("baseline")) == [
            "average_drop", "ci95", "deletion_auc", "increase_in_confidence", "insertion_auc"]
        assert 0.0 <= results[target]["deletion_auc"] <= 1.0
    assert (run_dir / "deletion_insertion_first4.png").is_file()
