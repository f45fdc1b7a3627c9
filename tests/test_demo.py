"""The demo preset end to end on a small copy of the embedded dataset: train, draw, score."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import cam_models
import cam_shapes
import cam_utils
import evaluate_cam
import train_cam
import visualize_cam
from cam_config import read_run_config
from conftest import snapshot


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One short epoch of the demo preset on 300 / 60 generated images."""
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cam_shapes, "TRAIN_SIZE", 300)
        patch.setattr(cam_shapes, "VALIDATION_SIZE", 60)
        run_dir = train_cam.main(["--PRESET=demo", "--EPOCHS=1", f"--DATA_DIR={root / 'data'}",
                                  f"--OUTPUT_DIR={root}", "--MIXED_PRECISION=float32"])
    return root, run_dir


def test_demo_preset_trains_the_small_backbone_on_cam_shapes(demo_run):
    _, run_dir = demo_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["DATASET"] == "cam_shapes" and config["BACKBONE"] == "small_vgg"
    assert config["class_names"] == list(cam_shapes.CLASS_NAMES)
    assert config["feature_shape"][:2] == [16, 16]
    assert (run_dir / "weights.weights.h5").is_file()


def test_demo_grid_outlines_the_true_boxes(demo_run, saved_figures):
    root, run_dir = demo_run
    visualize_cam.main(["--PRESET=demo", f"--OUTPUT_DIR={root}", "--DPI=40"])
    saved = np.load(run_dir / "cams.npz")
    boxes = saved["bboxes"]
    assert boxes.shape == (5, 4) and (boxes[:, 2:] > boxes[:, :2]).all()
    first = saved_figures[0].axes[0]
    (rectangle,) = first.patches
    ymin, xmin, ymax, xmax = boxes[0] * 64
    assert rectangle.get_x() == pytest.approx(xmin - 0.5)
    assert rectangle.get_y() == pytest.approx(ymin - 0.5)
    assert rectangle.get_width() == pytest.approx(xmax - xmin)


def test_visualize_names_a_split_the_data_lacks(demo_run):
    root, run_dir = demo_run
    before = snapshot(run_dir)
    with pytest.raises(SystemExit, match="has no split 'tset'; choose one of"):
        visualize_cam.main(["--PRESET=demo", f"--OUTPUT_DIR={root}", "--SPLIT=tset"])
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_evaluate_writes_every_documented_metric(demo_run, method):
    root, run_dir = demo_run
    path = evaluate_cam.main(["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=40",
                              "--BATCH_SIZE=16", "--STEPS=4", f"--METHOD={method}"])
    metrics = json.loads(path.read_text())
    assert metrics["num_images"] == 40 and metrics["method"] == method
    for target in ("predicted_class", "true_class"):
        for key in ("pointing_game", "pointing_game_strict", "box_localisation",
                    "top1_localisation", "mask_iou", "deletion_auc", "insertion_auc"):
            for suffix in evaluate_cam.SOURCES:
                value = metrics[target][f"{key}{suffix}"]
                assert 0.0 <= value <= 1.0, (target, key, suffix, value)
    assert -1.0 <= metrics["sanity_rank_correlation"] <= 1.0
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 40
    assert np.trace(matrix) / 40 == pytest.approx(metrics["accuracy"])
    per_class = metrics["per_class"]
    assert sum(entry["images"] for entry in per_class.values()) == 40
    suffix = "" if method == "cam" else "_gradcam"
    assert (run_dir / f"deletion_insertion{suffix}.png").is_file()
    assert (run_dir / "confusion_matrix.png").is_file()


def test_randomised_weights_change_the_maps(demo_run):
    """Adebayo et al. (2018): maps that explain a model must depend on its weights."""
    _, run_dir = demo_run
    trained = read_run_config(run_dir)
    model = cam_models.load_trained_model(run_dir, trained)
    keras.utils.set_random_seed(3)
    random_model = cam_models.build_model("small_vgg", 64, 10)
    images = np.random.default_rng(8).uniform(0, 255, (6, 64, 64, 3)).astype(np.float32)
    classes = np.tile(np.arange(6)[:, None], (1, 2)).astype(np.int32)
    features, _ = cam_models.feature_model(model)(images)
    for method in ("cam", "gradcam"):
        trained_maps = cam_utils.maps_for_classes(method, model, features, classes)[..., 0]
        same = evaluate_cam.sanity_correlation(method, trained_maps, model, images, classes)
        np.testing.assert_allclose(same, 1.0, atol=1e-5)
        randomised = evaluate_cam.sanity_correlation(method, trained_maps, random_model,
                                                     images, classes)
        assert randomised.mean() < 0.8, (method, randomised)
