"""The shared scoring pass: several methods at once give each the numbers it gets alone."""

from __future__ import annotations

import json

import numpy as np
import pytest

import evaluate_cam
from camlab.evaluate import evaluation
from helpers import run_fails

TIMING = {"seconds", "ms_per_image"}  # the only fields allowed to differ


def without_timing(results: dict) -> dict:
    return {key: value for key, value in results.items() if key not in TIMING}


def flat(value, prefix: str = "") -> dict:
    """A nested result as {"a/b/0": leaf}, so that numbers can be compared one by one."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}/{key}")
                .items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}/{i}")
                .items()}
    return {prefix: value}


def assert_same_numbers(alone: dict, together: dict) -> None:
    """Equal leaves, floats to float32 rounding: a perturbed image's probability can differ
    in its last bit with the other images of its forward pass (measured: 1.5e-8 on a
    true-class deletion AUC), and every score is a mean of such probabilities."""
    alone, together = flat(without_timing(alone)), flat(without_timing(together))
    assert alone.keys() == together.keys()
    for key, value in alone.items():
        if isinstance(value, float):
            assert together[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
        else:
            assert together[key] == value, key


def test_several_methods_score_each_as_it_scores_alone(demo_run):
    root, run_dir = demo_run
    # 7 images in batches of 5: a short last batch; one epoch of training leaves many
    # images misclassified, so the true class's own maps and curves are exercised. Five
    # evaluations run here: every image more is scored five times.
    common = ["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=7", "--BATCH_SIZE=5",
              "--STEPS=4", "--PREDICT_BATCH_SIZE=32"]
    chosen = ["cam", "gradcam", "eigencam", "saliency"]
    evaluate_cam.main([*common, f"--METHOD={','.join(chosen)}"])
    path = lambda m: run_dir / ("metrics_first7.json" if m == "cam"  # noqa: E731
                                else f"metrics_{m}_first7.json")
    together = {m: json.loads(path(m).read_text()) for m in chosen}
    assert together["cam"]["accuracy"] < 0.95  # some true-class maps of their own
    for method in chosen:
        evaluate_cam.main([*common, f"--METHOD={method}"])
        alone = json.loads(path(method).read_text())
        assert_same_numbers(alone, together[method])


def test_identical_maps_share_every_perturbed_image():
    from camlab.scores import removal

    rng = np.random.default_rng(0)
    maps = rng.random((3, 6, 5)).astype(np.float32)
    positions = removal.pixel_positions(maps).numpy()
    plan = removal.Plan(3, 4, 30)
    plan.add(0, np.arange(3), positions)
    alone = plan.size
    plan.add(1, np.arange(3), positions)  # the same maps again: nothing new to run
    assert plan.size == alone and plan.shared == alone - 6
    reversed_positions = removal.pixel_positions(-maps).numpy()
    plan.add(2, np.arange(3), reversed_positions)
    # A map and its reverse have different top sets at every step between none and all.
    assert plan.size == 2 * alone - 6


def test_curves_of_a_shared_plan_equal_those_planned_alone():
    from camlab.scores import removal

    rng = np.random.default_rng(1)
    images = rng.random((4, 6, 6, 3)).astype(np.float32) * 255
    baselines = rng.random((4, 6, 6, 3)).astype(np.float32) * 255
    weights = rng.random((6, 6, 3)).astype(np.float32)

    def predict(batch):
        import tensorflow as tf
        evidence = tf.reduce_mean(batch * weights, axis=[1, 2, 3]) / 255.0
        return tf.stack([evidence, 1 - evidence], axis=1)

    base = rng.random((4, 6, 6)).astype(np.float32)
    relu_like = np.maximum(base - 0.5, 0)  # the same top pixels as `base` where it is > 0.5
    alone = removal.deletion_insertion_auc(predict, images, baselines, relu_like, [0] * 4,
                                           steps=6, chunk=8)
    plan = removal.Plan(4, 6, 36)
    maps = np.stack([base, relu_like])
    positions = np.stack([removal.pixel_positions(m).numpy() for m in maps])
    for source in range(2):
        plan.add(source, np.arange(4), positions[source])
    assert plan.shared > 0
    probs = removal.Remover(predict, 8).probabilities(plan, images, baselines, positions)
    shared = plan.curves(probs, 1, np.zeros(4, int))
    for key, value in alone.items():
        np.testing.assert_array_equal(shared[key], value)
    # By hand: deleting the top third of relu_like's pixels of image 0.
    third = positions[1][0] < 12
    mixed = np.where(third[..., None], baselines[0], images[0])
    expected = np.mean(mixed * weights) / 255.0
    assert shared["deletion_curve"][0, 2] == pytest.approx(expected, rel=1e-5)


def test_statistics_cover_every_pooled_score_of_each_source():
    scores = {"label": np.zeros(3, int),
              "predicted_class/pointing_game": np.array([1.0, 0, 1]),
              "predicted_class/pointing_game_random_baseline": np.array([0.0, 0, 1]),
              "predicted_class/box_hits": np.ones((3, 100, 3), bool),
              "predicted_class/deletion_curve": np.zeros((3, 5))}
    ours = evaluation.of_source(scores, "predicted_class", "")
    assert set(ours) == {"pointing_game", "box_hits", "deletion_curve"}
    stats = evaluation.statistics(ours)
    assert set(stats) == {"pointing_game", "maxboxacc_v2"}
    np.testing.assert_allclose(stats["pointing_game"](np.ones((1, 3))), [2 / 3])
    np.testing.assert_allclose(stats["maxboxacc_v2"](np.array([[0.0, 3, 0]])), [1.0])
    chance = evaluation.of_source(scores, "predicted_class", "_random_baseline")
    assert list(chance) == ["pointing_game"] and chance["pointing_game"].sum() == 1


def test_three_shards_merge_to_the_numbers_of_one_run(demo_run):
    root, run_dir = demo_run
    common = ["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=14", "--BATCH_SIZE=4",
              "--STEPS=2", "--PREDICT_BATCH_SIZE=16", "--METHOD=cam,gradcam"]
    whole = evaluate_cam.main(common)  # the leaderboard, and metrics_*_first14.json
    expected = {m: json.loads((run_dir / name).read_text()) for m, name in
                (("cam", "metrics_first14.json"), ("gradcam", "metrics_gradcam_first14.json"))}
    board = json.loads(whole.read_text())
    for index in range(3):  # 4 batches (4, 4, 4, 2): shards of 2, 1 and 1 batches
        path = evaluate_cam.main([*common, f"--SHARD={index}/3"])
        assert path == run_dir / "shards" / f"shard_{index}_of_3.npz"
    merged = json.loads(evaluate_cam.main([*common, "--MERGE_SHARDS=3"]).read_text())
    for entry in (board, merged):  # times: the fields that may differ
        entry.pop("seconds")
        for row in entry["methods"].values():
            row.pop("ms_per_image")
    assert merged == board
    for method, name in (("cam", "metrics_first14.json"),
                         ("gradcam", "metrics_gradcam_first14.json")):
        again = json.loads((run_dir / name).read_text())
        assert again["config"]["MERGE_SHARDS"] == 3
        again["config"]["MERGE_SHARDS"] = 0
        assert without_timing(again) == without_timing(expected[method]), method


def test_a_missing_or_mismatched_shard_is_refused(demo_run):
    root, run_dir = demo_run
    common = ["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--MAX_IMAGES=12", "--BATCH_SIZE=6",
              "--STEPS=2", "--METHOD=cam"]
    shards = run_dir / "shards"
    for path in shards.glob("shard_*_of_2.npz"):
        path.unlink()
    evaluate_cam.main([*common, "--SHARD=0/2"])
    run_fails(evaluate_cam.main, [*common, "--MERGE_SHARDS=2"], run_dir,
              "shard 1 of 2 is missing")
    evaluate_cam.main([*common, "--SHARD=1/2", "--SEED=5"])
    message = run_fails(evaluate_cam.main, [*common, "--MERGE_SHARDS=2"], run_dir,
                        "shard 1 of 2")
    assert "was scored with other settings (SEED)" in message


@pytest.mark.parametrize("args, message", [
    (["--SHARD=3/3"], "SHARD='3/3' must be \"i/n\" with 0 <= i < n"),
    (["--SHARD=a"], "SHARD='a' must be"),
    (["--MERGE_SHARDS=1"], "MERGE_SHARDS=1 must be 0 (no merge) or the number of shards"),
    (["--SHARD=0/2", "--MERGE_SHARDS=2"], "set one of the two"),
])
def test_bad_shard_settings_get_one_line(demo_run, args, message):
    root, run_dir = demo_run
    run_fails(evaluate_cam.main, ["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", *args], run_dir,
              message)


def test_a_capped_method_scores_as_it_does_alone_on_its_first_images(demo_run):
    """CAPS=gradcam:10 beside CAM on 16 images: Grad-CAM's file is, number for number, that
    of Grad-CAM alone with MAX_IMAGES=10 (10 is no whole number of batches of 8: its second
    batch is cut short), and the leaderboard says on how many images it was scored; shards
    merge to the same board (two shards, one batch each, the cut one in the second)."""
    root, run_dir = demo_run
    common = ["--RUN_NAME=demo", f"--OUTPUT_DIR={root}", "--BATCH_SIZE=8", "--STEPS=2",
              "--PREDICT_BATCH_SIZE=32", "--CAPS=gradcam:10"]
    board_path = evaluate_cam.main([*common, "--MAX_IMAGES=16", "--METHOD=cam,gradcam"])
    board = json.loads(board_path.read_text())
    together = json.loads((run_dir / "metrics_gradcam_first10.json").read_text())
    assert together["num_images"] == 10 and together["config"]["MAX_IMAGES"] == 10
    assert json.loads((run_dir / "metrics_first16.json").read_text())["num_images"] == 16
    evaluate_cam.main([*common, "--MAX_IMAGES=10", "--METHOD=gradcam"])  # alone: no cap
    alone = json.loads((run_dir / "metrics_gradcam_first10.json").read_text())
    assert without_timing(alone) == without_timing(together)
    assert board["num_images"] == 16 and board["methods"]["gradcam"]["num_images"] == 10
    assert "num_images" not in board["methods"]["cam"]
    text = (run_dir / "leaderboard_first16.md").read_text()
    assert "| gradcam (first 10 images) |" in text and "cannot be shown worse" in text
    for index in range(2):
        evaluate_cam.main([*common, "--MAX_IMAGES=16", "--METHOD=cam,gradcam",
                           f"--SHARD={index}/2"])
    merged = json.loads(evaluate_cam.main([*common, "--MAX_IMAGES=16", "--METHOD=cam,gradcam",
                                           "--MERGE_SHARDS=2"]).read_text())
    for entry in (board, merged):
        entry.pop("seconds")
        for row in entry["methods"].values():
            row.pop("ms_per_image")
    assert merged == board


def test_a_capped_method_is_tied_when_it_cannot_be_shown_worse_on_its_images():
    """Hand-built pointing hits: "a" hits every image, "b" none (all 100 images); of the
    first 20 only, "c" hits all, "d" none, "e" half. The best is "a", among the
    full-length methods; "c" ties it on its 20 images, "d" and "e" are worse there."""
    def scores(hits):
        return {"label": np.zeros(len(hits), int), "index": np.arange(len(hits)),
                "predicted_class/pointing_game": np.asarray(hits, float)}

    per_method = {"a": scores(np.ones(100)), "b": scores(np.zeros(100)),
                  "c": scores(np.ones(20)), "d": scores(np.zeros(20)),
                  "e": scores(np.arange(20) % 2)}
    points = {m: {"pointing_game": float(s["predicted_class/pointing_game"].mean())}
              for m, s in per_method.items()}
    assert evaluation.method_ties(per_method, points, ["pointing_game"]) == {
        "pointing_game": ["a", "c"]}
    # Where the best misses the first 20 images, no method of those 20 is shown worse,
    # and one better there ("c", "e") is not worse either.
    per_method["a"]["predicted_class/pointing_game"][:20] = 0.0
    points = {m: {"pointing_game": float(s["predicted_class/pointing_game"].mean())}
              for m, s in per_method.items()}
    assert evaluation.method_ties(per_method, points, ["pointing_game"])["pointing_game"] == [
        "a", "c", "d", "e"]


def test_planned_images_are_the_image_and_its_baseline_pixel_by_pixel():
    """Every planned image, read back whole through a `forward` that returns its pixels:
    deletion puts the baseline at the top `moved` pixels of the image, insertion the
    image's pixels into the baseline; exactly, for every job and both endpoints."""
    import tensorflow as tf

    from camlab.scores import removal

    rng = np.random.default_rng(4)
    images = (rng.random((3, 5, 4, 3)) * 255).astype(np.float32)
    baselines = (rng.random((3, 5, 4, 3)) * 255).astype(np.float32)
    maps = rng.random((2, 3, 5, 4)).astype(np.float32)
    positions = np.stack([removal.pixel_positions(m).numpy() for m in maps])
    plan = removal.Plan(3, 4, 20)
    plan.add(0, np.arange(3), positions[0])
    plan.add(1, np.array([2]), positions[1])
    pixels = removal.Remover(lambda batch: tf.reshape(batch, (batch.shape[0], -1)), 7,
                             (5, 4)).probabilities(plan, images, baselines, positions)
    rows, sources, moved, inserting = plan.jobs()
    assert len(pixels) == plan.size == len(rows) > 2 * 3
    for job in range(plan.size):
        top = (positions[sources[job], rows[job]] < moved[job])[..., None]
        first, second = images[rows[job]], baselines[rows[job]]
        if inserting[job]:
            first, second = second, first
        np.testing.assert_array_equal(pixels[job].reshape(5, 4, 3),
                                      np.where(top, second, first))
    assert inserting[3:6].all() and not moved[3:6].any()  # the baselines themselves
