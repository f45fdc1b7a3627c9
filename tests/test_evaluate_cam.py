"""evaluate_cam.py end to end on the demo data, offline: every documented metric, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import evaluate_cam
from camlab import metrics, settings
from helpers import run_fails


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_evaluate_writes_every_documented_metric(demo_run, method):
    root, run_dir = demo_run
    argv = ["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=40", "--BATCH_SIZE=16",
            "--STEPS=4", f"--METHOD={method}"]
    path = evaluate_cam.main(argv)
    results = json.loads(path.read_text())
    assert results["config"] == settings.resolve(evaluate_cam.__file__, argv)
    assert results["num_images"] == 40 and results["method"] == method
    for target in ("predicted_class", "true_class"):
        for key in ("pointing_game", "pointing_game_strict", "box_localisation",
                    "top1_localisation", "mask_iou", "deletion_auc", "insertion_auc"):
            for suffix in metrics.SOURCES:
                value = results[target][f"{key}{suffix}"]
                assert 0.0 <= value <= 1.0, (target, key, suffix, value)
    assert -1.0 <= results["sanity_rank_correlation"] <= 1.0
    matrix = np.array(results["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 40
    assert np.trace(matrix) / 40 == pytest.approx(results["accuracy"])
    per_class = results["per_class"]
    assert sum(entry["images"] for entry in per_class.values()) == 40
    suffix = "" if method == "cam" else "_gradcam"
    assert (run_dir / f"deletion_insertion{suffix}.png").is_file()
    assert (run_dir / "confusion_matrix.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--METHOD=lime"], "METHOD='lime'"),
    (["--THRESHOLD=2"], "THRESHOLD=2.0 must be between 0 and 1"),
    (["--MAX_IMAGES=-1"], "MAX_IMAGES=-1"),
])
def test_evaluate_rejects_bad_input_without_touching_the_run(trained_run, args, message):
    output_dir, run_dir = trained_run
    run_fails(evaluate_cam.main, [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", *args],
              run_dir, message)
