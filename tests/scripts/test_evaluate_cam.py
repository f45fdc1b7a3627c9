"""evaluate_cam.py end to end on the demo data, offline: every documented metric, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import evaluate_cam
from camlab.core import settings
from camlab.evaluate import evaluation, leaderboard
from camlab.scores import knowncause, registry
from helpers import run_fails


@pytest.mark.parametrize("method", ["cam", "gradcam"])
def test_evaluate_writes_every_documented_metric(demo_run, method):
    root, run_dir = demo_run
    # 20 images, two of each class, in a batch of 16 and a short one of 4.
    argv = ["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=20", "--BATCH_SIZE=16",
            "--STEPS=4", f"--METHOD={method}"]
    path = evaluate_cam.main(argv)
    results = json.loads(path.read_text())
    # as JSON keeps them: a tuple setting (CAPS) as a list
    assert results["config"] == json.loads(json.dumps(settings.resolve(evaluate_cam.__file__,
                                                                       argv)))
    assert results["num_images"] == 20 and results["method"] == method
    # Every ranked score of the registry that boxes and masks give, with each baseline's.
    given = {key for key, metric in registry.METRICS.items()
             if metric.ranked and metric.needs in ("", "box", "mask", "box or mask")
             and not metric.setting}
    assert {key for key in results["predicted_class"] if key != "ci95"} == {
        f"{key}{suffix}" for key in given for suffix in evaluation.SOURCES}
    for target in ("predicted_class", "true_class"):
        for key in ("maxboxacc_v2", "pxap", "pointing_game", "pointing_game_strict",
                    "box_localisation", "top1_localisation", "mask_iou", "deletion_auc",
                    "insertion_auc"):
            for suffix in evaluation.SOURCES:
                value = results[target][f"{key}{suffix}"]
                assert 0.0 <= value <= 1.0, (target, key, suffix, value)
        for key in ("average_drop", "increase_in_confidence"):  # percentages
            for suffix in evaluation.SOURCES:
                assert 0.0 <= results[target][f"{key}{suffix}"] <= 100.0, (target, key)
    for target in ("predicted_class", "true_class"):
        for suffix in evaluation.SOURCES:  # a hit on the object is a hit within the tolerance
            assert (results[target][f"pointing_game_strict{suffix}"]
                    <= results[target][f"pointing_game{suffix}"])
    # The centre baseline ignores the model: the same on both targets.
    assert (results["predicted_class"]["maxboxacc_v2_center_baseline"]
            == results["true_class"]["maxboxacc_v2_center_baseline"])
    assert -1.0 <= results["sanity_rank_correlation"] <= 1.0
    matrix = np.array(results["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 20
    assert np.trace(matrix) / 20 == pytest.approx(results["accuracy"])
    per_class = results["per_class"]
    assert sum(entry["images"] for entry in per_class.values()) == 20
    # A subset has its own files, so it never replaces those of the full split.
    suffix = ("" if method == "cam" else "_gradcam") + "_first20"
    assert path == run_dir / f"metrics{suffix}.json"
    assert (run_dir / f"deletion_insertion{suffix}.png").is_file()
    assert (run_dir / "confusion_matrix_first20.png").is_file()


def test_steps_0_scores_everything_but_deletion_and_insertion(demo_run):
    """STEPS=0 skips the removal passes only: the board has no deletion or insertion column
    and no curves figure, and every other score is the one a run with curves gives."""
    root, run_dir = demo_run
    argv = ["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=8", "--BATCH_SIZE=8",
            "--PREDICT_BATCH_SIZE=32", "--METHOD=cam,saliency"]
    with_curves = json.loads(evaluate_cam.main([*argv, "--STEPS=2"]).read_text())
    (run_dir / "deletion_insertion_first8.png").unlink()
    path = evaluate_cam.main([*argv, "--STEPS=0"])
    board = json.loads(path.read_text())
    removal = {"deletion_auc", "insertion_auc"}
    for name, row in [*board["methods"].items(), *board["baselines"].items()]:
        other = (with_curves["methods"] | with_curves["baselines"])[name]
        assert removal <= set(other) and not removal & set(row)
        assert {key: row[key] for key in row if key not in ("ms_per_image", "ci95")} == {
            key: other[key] for key in row if key not in ("ms_per_image", "ci95")}
    assert "deletion" not in (run_dir / "leaderboard_first8.md").read_text()
    assert not (run_dir / "deletion_insertion_first8.png").exists()


def test_gradcam_of_another_layer_is_scored_into_its_own_file(demo_run, capsys):
    root, run_dir = demo_run
    path = evaluate_cam.main(["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=16",
                              "--BATCH_SIZE=16", "--STEPS=2", "--METHOD=gradcam",
                              "--LAYER=conv3_1", "--BOX_PROTOCOL=wsolevaluation"])
    assert path == run_dir / "metrics_gradcam_conv3_1_first16.json"
    results = json.loads(path.read_text())
    assert results["box_protocol"] == "wsolevaluation"  # which geometry made MaxBoxAccV2
    assert results["layer"] == "conv3_1" and results["num_images"] == 16
    assert 0 <= results["predicted_class"]["pointing_game"] <= 1
    assert "maps of layer conv3_1" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--METHOD=lime"], "METHOD='lime'"),
    (["--THRESHOLD=2"], "THRESHOLD=2.0 must be between 0 and 1"),
    (["--BOX_PROTOCOL=voc"], "BOX_PROTOCOL='voc'"),
    (["--MAX_IMAGES=-1"], "MAX_IMAGES=-1"),
    (["--STEPS=-1"], "STEPS=-1 must be 0 (no deletion / insertion) or more"),
    (["--SCORECAM_MAX_CHANNELS=-1"], "SCORECAM_MAX_CHANNELS=-1 must be 0 (all channels) or more"),
    (["--ABLATION_BATCH=0"], "ABLATION_BATCH=0 must be at least 1"),
    (["--AUG_SMOOTH=True", "--METHOD=all"],
     'AUG_SMOOTH=True: smoothing applies to the CAM family\'s maps only, not to '
     'METHOD="saliency"'),
    (["--LAYER=nope"], "LAYER='nope' is not a layer of this model with a 4-D output; choose one "
                       "of preprocess, conv1_1, bn1_1"),
    (["--LAYER=conv2_2"], 'METHOD="cam" works only on the feature maps that feed GAP'),
    (["--IG_BASELINE=grey"], "IG_BASELINE='grey'; choose one of black, blur"),
    (["--OCCLUSION_STRIDE=0"], "OCCLUSION_STRIDE=0.0 must be above 0 and at most 1"),
    (["--CAPS=rise"], "CAPS entry 'rise' must be \"<method>:<images>\""),
    (["--CAPS=lime:5"], "CAPS entry 'lime:5' must be"),
    (["--CAPS=rise:0"], "CAPS entry 'rise:0' must be"),
])
def test_evaluate_rejects_bad_input_without_touching_the_run(small_run, args, message):
    output_dir, run_dir = small_run
    run_fails(evaluate_cam.main, [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", *args],
              run_dir, message)


def test_several_methods_make_a_leaderboard(demo_run, saved_figures):
    root, run_dir = demo_run
    path = evaluate_cam.main(["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=8",
                              "--BATCH_SIZE=8", "--STEPS=2", "--PREDICT_BATCH_SIZE=32",
                              "--METHOD=cam,gradcam,layercam", "--ROAD=True"])
    assert path == run_dir / "leaderboard_first8.json"
    board = json.loads(path.read_text())
    assert list(board["methods"]) == ["cam", "gradcam", "layercam"]
    assert board["num_images"] == 8 and set(board["baselines"]) == {"centre", "random", "edge"}
    # Every score but the known-cause ones, which need cam_shapes/cause (evaluate/test_trust.py).
    keys = [key for key in leaderboard.KEYS if key not in knowncause.CAUSE_METRICS]
    for method, row in board["methods"].items():
        assert set(keys) <= set(row) and row["ms_per_image"] > 0
        # ROADCombined per image is (LeRF - MoRF) / 2, so its mean over images is too.
        assert row["road_combined"] == pytest.approx((row["road_lerf"] - row["road_morf"]) / 2,
                                                     abs=1e-6)
        single = json.loads((run_dir / ("metrics_first8.json" if method == "cam" else
                                        f"metrics_{method}_first8.json")).read_text())
        assert row["maxboxacc_v2"] == single["predicted_class"]["maxboxacc_v2"]
    table = [line for line in (run_dir / "leaderboard_first8.md").read_text().splitlines()
             if line.startswith("|")]
    ranked = [line.split("|")[1].strip() for line in table[2:5]]
    assert ranked == sorted(board["methods"], key=lambda m: -board["methods"][m][
        "maxboxacc_v2"])
    assert [line.split("|")[1].strip() for line in table[-3:]] == [
        "centre baseline", "random baseline", "edge baseline"]
    # Every number with its interval; the best of a column is always among its ties.
    for name, row in [*board["methods"].items(), *board["baselines"].items()]:
        for key in keys:
            low, high = row["ci95"][key]
            assert low <= row[key] + 1e-12 and row[key] <= high + 1e-12 or key in (
                "maxboxacc_v2", "pxap"), (name, key)  # a max over thresholds may lie outside
    for key, tied in board["ties"].items():
        values = {m: board["methods"][m][key] for m in board["methods"]}
        best = (min if key in leaderboard.LOWER_IS_BETTER else max)(values.values())
        assert any(values[m] == best for m in tied) and set(tied) <= set(board["methods"])
    first_row = table[2].split("|")[2].strip()
    row = board["methods"][ranked[0]]
    low, high = row["ci95"]["maxboxacc_v2"]
    assert first_row.strip("*") == f"{row['maxboxacc_v2']:.3f} [{low:.2f}, {high:.2f}]"
    assert (run_dir / "comparison_first8.png").is_file()
    comparison = saved_figures[-1]
    axes = np.array(comparison.axes).reshape(evaluate_cam.COMPARISON_IMAGES, 4)
    assert [ax.get_title() for ax in axes[0]] == ["image", "cam", "gradcam", "layercam"]
    assert all(len(ax.patches) == 1 for ax in axes.ravel())  # the true box in every panel
    names = json.loads((run_dir / "config.json").read_text())["class_names"]
    assert all(ax.get_ylabel() in names for ax in axes[:, 0])
