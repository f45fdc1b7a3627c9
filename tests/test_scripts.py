"""train_cam.py and visualize_cam.py end to end on tfds mock data, offline."""

from __future__ import annotations

import csv
import json

import matplotlib.image
import numpy as np
import pytest

import train_cam
import visualize_cam
from conftest import QUICK_TRAINING


def test_one_epoch_writes_weights_config_and_history(trained_run):
    _, run_dir = trained_run
    assert (run_dir / "weights.weights.h5").stat().st_size > 1_000_000
    config = json.loads((run_dir / "config.json").read_text())
    assert config["IMAGE_SIZE"] == 32 and config["BACKBONE"] == "vgg19"
    assert config["class_names"][:2] == ["tench", "English springer"]
    assert config["feature_shape"] == [1, 1, 512]
    assert config["versions"]["keras"].startswith("3.")
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert len(rows) == 1 and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])


def test_visualize_draws_the_grid_from_the_run_alone(trained_run, saved_figures):
    output_dir, run_dir = trained_run
    path = visualize_cam.main([f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock",
                               "--NUM_IMAGES=4", "--TOP_K=2", "--DPI=50"])
    assert path == run_dir / "heatmaps.png"
    assert matplotlib.image.imread(path).ndim == 3
    (fig,) = saved_figures
    axes = np.array(fig.axes).reshape(4, 2)
    saved = np.load(run_dir / "cams.npz")
    names = list(saved["class_names"])
    for row in range(4):
        order = np.argsort(-saved["probs"][row])
        for rank in range(2):
            c = order[rank]
            expected = f"{names[c]} - {100 * saved['probs'][row, c]:.1f}%"
            assert axes[row, rank].get_title() == expected
    assert saved["images"].shape == (4, 32, 32, 3) and saved["images"].dtype == np.uint8
    assert saved["cams"].shape == (4, 1, 1, 10)
    # The maps are the run's own: their means are the logits behind the saved softmax.
    logits = saved["cams"].mean(axis=(1, 2))
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True), saved["probs"],
                               rtol=1e-4, atol=1e-6)


def test_visualize_same_seed_same_images(trained_run):
    output_dir, run_dir = trained_run
    args = [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", "--NUM_IMAGES=3", "--DPI=20"]
    visualize_cam.main([*args, "--SEED=5"])
    first = np.load(run_dir / "cams.npz")["images"]
    visualize_cam.main([*args, "--SEED=5"])
    np.testing.assert_array_equal(np.load(run_dir / "cams.npz")["images"], first)
    visualize_cam.main([*args, "--SEED=6"])
    assert not np.array_equal(np.load(run_dir / "cams.npz")["images"], first)


@pytest.mark.parametrize("arg, message", [
    ("--TOP_K=11", "TOP_K=11 must be between 1 and the number of classes, 10"),
    ("--TOP_K=0", "TOP_K=0 must be between 1"),
    ("--THRESHOLD=1.5", "THRESHOLD=1.5 must be between 0 and 1"),
    ("--NUM_IMAGES=13", "NUM_IMAGES=13 must be between 1 and the split's size, 12"),
    ("--RUN_NAME=nothere", "config.json not found"),
])
def test_visualize_rejects_bad_settings(trained_run, arg, message):
    output_dir, _ = trained_run
    with pytest.raises(SystemExit) as exit_info:
        visualize_cam.main([f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", arg])
    assert message in str(exit_info.value.code)


def test_unknown_dataset_and_split_are_named(tmp_path, mock_imagenette):
    with pytest.raises(SystemExit, match="unknown dataset 'imagenet_typo'"):
        train_cam.main([*QUICK_TRAINING, "--DATASET=imagenet_typo", f"--OUTPUT_DIR={tmp_path}"])
