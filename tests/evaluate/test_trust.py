"""The known-cause benchmark through the lab: a hand-built model whose cause is known, the
verdicts of camlab.evaluate.trust on hand-built scores, and evaluate_cam.py on cam_shapes/cause and
cam_shapes/shortcut end to end."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import evaluate_cam
import train_cam
from camlab.core import settings
from camlab.datasets import shapes
from camlab.errors import CamError
from camlab.evaluate import evaluation, leaderboard, trust
from camlab.networks import classifier
from camlab.report import results
from camlab.scores import removal

SIZE, CLASSES = 32, 3


def colour_model() -> keras.Model:
    """Channel k of a fixed 1x1 convolution fires only on pure colour k (2 x_k - sum x, so
    white and grey give <= 0), then GAP and an identity head: the class of an image is
    the colour of the one pure-coloured shape in it, and nothing else counts."""
    inputs = keras.Input((SIZE, SIZE, 3))
    kernel = (2 * np.eye(3) - 1).astype(np.float32)[None, None]  # (1, 1, 3 in, 3 out)
    features = keras.layers.Conv2D(CLASSES, 1, activation="relu", name="colour",
                                   kernel_initializer=keras.initializers.Constant(kernel),
                                   bias_initializer="zeros")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    scores = keras.layers.Dense(CLASSES, use_bias=False, name="head",
                                kernel_initializer=keras.initializers.Constant(
                                    20 * np.eye(CLASSES, dtype=np.float32)))(pooled)
    return keras.Model(inputs, keras.layers.Softmax()(scores))


def known_cause_batch(n: int = 6) -> dict[str, tf.Tensor]:
    """Black images, each with a small square of a pure colour (the cause, its label) and a
    large white square (the distractor) apart from it, and the two intervention images."""
    rng = np.random.default_rng(0)
    images, cause, distractor = (np.zeros((n, SIZE, SIZE, c), np.float32) for c in (3, 1, 1))
    labels = np.arange(n) % CLASSES
    for i in range(n):
        y, x = rng.integers(1, 6, 2)
        cause[i, y:y + 4, x:x + 4] = 1
        distractor[i, 14:30, 14:30] = 1
    cause, distractor = cause[..., 0] > 0, distractor[..., 0] > 0
    colours = 255 * np.eye(3, dtype=np.float32)[labels]
    without_cause = np.repeat(np.where(distractor[..., None], 255.0, 0.0), 3, axis=-1
                              ).astype(np.float32)
    without_distractor = np.where(cause[..., None], colours[:, None, None], 0.0)
    images = np.where(cause[..., None], colours[:, None, None], without_cause)
    return {"image": tf.constant(images), "label": tf.constant(labels),
            "mask": tf.constant(cause), "distractor_mask": tf.constant(distractor),
            "image_without_cause": tf.constant(without_cause),
            "image_without_distractor": tf.constant(without_distractor.astype(np.float32))}


def test_cam_finds_the_known_cause_of_a_hand_built_model_and_the_edge_map_does_not():
    model = classifier.explain(colour_model(), SIZE)
    batch = known_cause_batch()
    remover = removal.Remover(lambda images: model(images), 16, (SIZE, SIZE))
    scores = evaluation.score_batch(model, model.randomised(0), remover, batch, {"cam": ""},
                                    evaluation.Scoring(steps=4), np.arange(6))["cam"]
    # Every decision depends on the coloured square alone, so every image is verified.
    assert scores["correct"].all() and scores["cause_verified"].all()
    assert not scores["distractor_matters"].any()
    assert np.all(scores["predicted_class/cause_pointing"] == 1.0)
    assert np.all(scores["predicted_class/cause_mass"] == pytest.approx(1.0))
    assert np.all(scores["predicted_class/cause_auc"] == 1.0)
    # The white square's edges are three channels high, the cause's one: edges point there.
    assert np.all(scores["predicted_class/cause_pointing_edge_baseline"] == 0.0)
    assert np.all(scores["predicted_class/distractor_mass_edge_baseline"]
                  > 3 * scores["predicted_class/cause_mass_edge_baseline"])


def test_an_image_whose_cause_does_not_matter_is_left_out_of_the_cause_metrics():
    scores = {"label": np.zeros(4, int), "cause_verified": np.array([1, 1, 0, 0], bool),
              "predicted_class/cause_auc": np.array([1.0, 0.5, 0.0, 0.0])}
    part = evaluation.of_source(scores, "predicted_class", "")
    assert evaluation.points(part, scores["cause_verified"])["cause_auc"] == 0.75
    statistic = evaluation.statistics(part, scores["cause_verified"])["cause_auc"]
    assert statistic(np.array([[2.0, 1, 1, 1]]))[0] == pytest.approx(2.5 / 3)
    assert "cause_auc" not in evaluation.points(part, np.zeros(4, bool))


def per_image(truth: np.ndarray, deletion: np.ndarray, images: int = 40) -> dict:
    """A method's per-image scores: the truth (trust.TRUTH) and deletion, constant over
    images but for a little noise, every image verified."""
    rng = np.random.default_rng(int(1000 * truth))
    out = {"label": np.zeros(images, int), "cause_verified": np.ones(images, bool),
           "sanity_rank_correlation": np.full(images, 0.1)}
    for source in ("", "_edge_baseline"):
        out[f"predicted_class/deletion_auc{source}"] = deletion + rng.normal(0, 0.01, images)
    out[f"predicted_class/{trust.TRUTH}"] = truth + rng.normal(0, 0.01, images)
    out[f"predicted_class/{trust.TRUTH}_edge_baseline"] = np.full(images, 0.6)
    return out


@pytest.mark.parametrize("sign", [1, -1])
def test_a_score_that_orders_methods_like_the_cause_is_positive_and_its_reverse_not(sign):
    truths = [0.9, 0.8, 0.7, 0.5]
    # Deletion is lower-better: a deletion falling as the truth rises orders them alike.
    scores = {f"m{i}": per_image(t, 0.5 - sign * 0.3 * t) for i, t in enumerate(truths)}
    judged = trust.judged(scores, {"deletion_auc": ["m0"]}, seed=0)
    entry = judged["agreement"]["deletion_auc"]
    assert entry["tau"] == sign * 1.0 and entry["tied_with_best"] == 1
    assert leaderboard.verdict(entry) == ("positive" if sign > 0 else "negative")
    # 0.9, 0.8 and 0.7 beat the edge map's 0.6; 0.5 does not.
    assert [v["beats"] for v in judged["beats_edge"].values()] == [True, True, True, False]
    assert judged["beats_edge"]["m0"]["difference"] == pytest.approx(0.3, abs=0.01)
    assert judged["truth"] == {"metric": trust.TRUTH, "images": 40, "of": 40}
    lines = leaderboard.trust_markdown(judged)
    assert any(line.startswith("| deletion_auc |") and ("positive" if sign > 0 else "negative")
               in line for line in lines)


def test_a_score_equal_for_every_method_orders_nothing():
    scores = {f"m{i}": per_image(t, 0.3) for i, t in enumerate([0.9, 0.8, 0.7])}
    for one in scores.values():  # deletion exactly equal everywhere
        one["predicted_class/deletion_auc"] = np.full(40, 0.3)
    entry = trust.judged(scores, {}, seed=0)["agreement"]["deletion_auc"]
    assert np.isnan(entry["tau"]) and entry["undefined"] == 1000
    assert leaderboard.verdict(entry) == "orders nothing"


def test_differences_in_the_last_float32_digits_are_ties():
    """Average Drop of maps that each leave no trace of the class: 1.0 on one image, 0.99999994
    (1 - 2**-24) on another, a difference float32's rounding makes. The methods tie, so the
    score orders nothing, in the point and in every resample alike."""
    scores = {f"m{i}": per_image(t, 0.3) for i, t in enumerate([0.9, 0.8, 0.7])}
    for i, one in enumerate(scores.values()):
        one["predicted_class/average_drop"] = np.full(40, 100.0) - i * 100 * 2.0**-24
    entry = trust.judged(scores, {}, seed=0)["agreement"]["average_drop"]
    assert np.isnan(entry["tau"]) and entry["undefined"] == 1000
    assert leaderboard.verdict(entry) == "orders nothing"
    assert leaderboard.verdict({"tau": float("nan"), "ci95": [-0.5, -0.5]}) == "orders nothing"


def test_no_verified_image_judges_nothing():
    scores = {f"m{i}": {**per_image(t, 0.3), "cause_verified": np.zeros(40, bool)}
              for i, t in enumerate([0.9, 0.8, 0.7])}
    assert trust.judged(scores, {}, seed=0) == {}


@pytest.fixture(scope="module")
def known_cause_runs(tmp_path_factory, demo_run):
    """(root, cause run, shortcut run, control run): one epoch each on 128 training images
    (two batches of 64) and 30 validation and test images, all that the boards below
    score; the control is the session's demo run (300 / 60 images of the same size and
    classes), copied beside them. The demo's network at 64 px rather than the presets'
    tiny_vgg at 48: the control's size, and after one epoch some causes are verified."""
    root = tmp_path_factory.mktemp("known_cause")
    common = ["--EPOCHS=1", f"--DATA_DIR={root / 'data'}", f"--OUTPUT_DIR={root}",
              "--MIXED_PRECISION=float32", "--BACKBONE=small_vgg", "--IMAGE_SIZE=64"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shapes, "TRAIN_SIZE", 128)
        patch.setattr(shapes, "VALIDATION_SIZE", 30)
        runs = [train_cam.main([f"--PRESET={preset}", *common])
                for preset in ("cause", "shortcut")]
    control = shutil.copytree(demo_run[1], root / "demo")
    return root, *runs, control


def test_the_cause_board_has_the_cause_metrics_the_edge_map_and_the_verdicts(
        known_cause_runs):
    root, cause_run, _, _ = known_cause_runs
    path = evaluate_cam.main(["--PRESET=cause", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=30",
                              "--BATCH_SIZE=15", "--STEPS=2", "--METHOD=cam,gradcam,saliency"])
    assert path == cause_run / "leaderboard_first30.json"
    board = json.loads(path.read_text())
    assert set(board["baselines"]) == {"centre", "random", "edge"}
    for row in (*board["methods"].values(), *board["baselines"].values()):
        assert 0.0 <= row["cause_auc"] <= 1.0 and 0.0 <= row["distractor_mass"] <= 1.0
    metrics = json.loads((cause_run / "metrics_first30.json").read_text())
    verified = metrics["cause"]["cause_verified"]
    assert board["cause"] == metrics["cause"] and board["cause"]["images"] == 30
    if verified:  # one epoch may leave no decision that depends on the cause
        assert board["truth"]["images"] == verified
        assert set(board["agreement"]) >= {"deletion_auc", "insertion_auc", "average_drop",
                                           "maxboxacc_v2", leaderboard.SANITY}
        assert set(board["beats_edge"]) == {"cam", "gradcam", "saliency"}
    markdown = (cause_run / "leaderboard_first30.md").read_text()
    assert "edge baseline" in markdown and "verified" in markdown


def test_the_shortcut_board_compares_each_map_with_the_control_s(known_cause_runs):
    root, _, shortcut_run, control_run = known_cause_runs
    path = evaluate_cam.main(["--PRESET=shortcut", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=20",
                              "--BATCH_SIZE=10", "--STEPS=2", "--METHOD=cam,gradcam",
                              f"--CONTROL={control_run.name}"])
    board = json.loads(path.read_text())
    for key in leaderboard.FOLLOWS:
        assert 0.0 <= board[key] <= 1.0
        assert board["ci95"][key][0] <= board[key] <= board["ci95"][key][1]
    assert "the control on" in (shortcut_run / "leaderboard_first20.md").read_text()
    for method in ("cam", "gradcam"):
        metrics = json.loads((shortcut_run / ("metrics_first20.json" if method == "cam" else
                                              f"metrics_{method}_first20.json")).read_text())
        detection = metrics["shortcut_detection"]
        assert detection == pytest.approx(metrics["predicted_class"]["marker_mass"]
                                          - metrics["marker_mass_control"])
        low, high = board["methods"][method]["ci95"][leaderboard.SHORTCUT]
        assert low <= detection <= high
    # The control must see what the model sees: a run on other classes is refused.
    with pytest.raises(CamError, match="CONTROL"):
        evaluate_cam.control_model(
            settings.resolve(evaluate_cam.__file__, ["--PRESET=shortcut", "--CONTROL=cause",
                                                     f"--OUTPUT_DIR={root}"]),
            json.loads((shortcut_run / "config.json").read_text()), {"cam": ""})


def test_the_readme_summary_names_each_answer_with_its_interval():
    nan = float("nan")
    cause = {
        "truth": {"metric": "cause_mass", "images": 40, "of": 50},
        "ties": {"cause_mass": ["b", "a"]},
        "methods": {"b": {"cause_mass": 0.5, "ci95": {"cause_mass": [0.4, 0.6]}}},
        "beats_edge": {"a": {"difference": 0.2, "ci95": [0.1, 0.3], "beats": True},
                       "c": {"difference": 0.01, "ci95": [-0.02, 0.04], "beats": False}},
        "agreement": {"pointing_game": {"tau": 0.6, "ci95": [0.2, 0.9]},
                      "average_drop": {"tau": -0.3, "ci95": [-0.5, -0.1]},
                      "insertion_auc": {"tau": 0.1, "ci95": [-0.2, 0.4]},
                      "increase_in_confidence": {"tau": nan, "ci95": [nan, nan]}},
        "provenance": {"command": "make cause", "machine": {"cpu": "Test CPU", "cores": 2},
                       "written": "2026-12-07T10:00:00"}}
    shortcut = {"methods": {
        "a": {"shortcut_detection": 0.1, "ci95": {"shortcut_detection": [0.05, 0.15]}},
        "b": {"ci95": {}},  # capped: not scored on the control
        "c": {"shortcut_detection": 0.002, "ci95": {"shortcut_detection": [-0.01, 0.01]}}}}
    lines = results.render_known_cause({"cause_leaderboard.json": cause,
                                        "shortcut_leaderboard.json": shortcut})
    assert "`make cause`; Test CPU, 2 cores; 2026-12-07" in lines[0]
    assert "over the 40 verified images of 50" in lines[0]
    rows = dict(line.strip("| ").split(" | ") for line in lines[4:])
    assert rows["most map mass on the proven cause"] == "b 0.500 [0.40, 0.60], tied with a"
    assert rows["beat the edge map on it"] == (
        "1: a +0.200 [+0.100, +0.300]; not: c +0.010 [-0.020, +0.040]")
    assert rows["show the planted shortcut (marker mass minus the control's)"] == (
        "1: a +0.100 [+0.050, +0.150]; not: c +0.002 [-0.010, +0.010]")
    assert rows["lab scores that order the methods like the cause (tau's interval above 0)"] \
        == "pointing_game 0.60 [0.20, 0.90]"
    assert rows["lab scores that reverse the cause's order (interval below 0)"] == (
        "average_drop -0.30 [-0.50, -0.10]")
    assert rows["lab scores that cannot tell (tau's interval holds 0)"] == (
        "insertion_auc 0.10 [-0.20, 0.40]")
    assert rows["lab scores that order nothing (every method has the same value)"] == (
        "increase_in_confidence")
    assert results.render_known_cause({"cause_leaderboard.json": cause})[0].startswith(
        "(No results committed yet")
