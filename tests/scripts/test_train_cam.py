"""train_cam.py end to end on tfds mock data and the demo data, offline: what a run
writes, bad input, an offline start, and resuming an interrupted run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import checksums

import evaluate_cam
import train_cam
import visualize_cam
from camlab.core import settings
from camlab.datasets import data, shapes
from camlab.networks import models
from camlab.train import precision
from helpers import QUICK_TRAINING, register_for_imagenette, register_for_vgg19, run_fails


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
    assert rows[0]["epoch"] == "1"
    # Every setting arrives in config.json as resolved from the command line.
    resolved = settings.resolve(train_cam.__file__, [*QUICK_TRAINING, "--OUTPUT_DIR=x",
                                                     "--RUN_NAME=mock"])
    assert {name: config[name] for name in resolved if name != "OUTPUT_DIR"} == {
        name: value for name, value in resolved.items() if name != "OUTPUT_DIR"}
    assert (config["trained_on"], config["measured_on"]) == ("train", "validation")


def test_demo_preset_trains_the_small_backbone_on_cam_shapes(demo_run):
    _, run_dir = demo_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["DATASET"] == "cam_shapes" and config["BACKBONE"] == "small_vgg"
    assert config["class_names"] == list(shapes.CLASS_NAMES)
    assert config["feature_shape"][:2] == [16, 16]
    assert (run_dir / "weights.weights.h5").is_file()


def demo_training(data_dir, output_dir, *args, sizes=(300, 60)):
    """The demo preset for one epoch on a small generated split (`sizes`: train and
    validation images, if data_dir has none yet; demo_run's are 300 / 60)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shapes, "TRAIN_SIZE", sizes[0])
        patch.setattr(shapes, "VALIDATION_SIZE", sizes[1])
        return train_cam.main(["--PRESET=demo", "--EPOCHS=1", "--MIXED_PRECISION=float32",
                               f"--DATA_DIR={data_dir}", f"--OUTPUT_DIR={output_dir}", *args])


def weight_arrays(path) -> dict:
    """Every array in a weights file, by its path inside the file."""
    arrays = {}

    def collect(name, item):
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]

    with h5py.File(path, "r") as weights_file:
        weights_file.visititems(collect)
    return arrays


def test_a_fresh_run_removes_the_earlier_models_figures_and_scores(tmp_path, demo_run):
    root, _ = demo_run
    run_dir = tmp_path / "demo"
    run_dir.mkdir()
    for name in ("heatmaps.png", "cams_gradcam.npz", "metrics_first50.json", "leaderboard.md",
                 "comparison.png", "confusion_matrix.png", "deletion_insertion.png"):
        (run_dir / name).write_text("from the earlier model")
    (run_dir / "notes.txt").write_text("the user's own")
    # One batch to train on and a few images to validate: what is written is the point.
    demo_training(root / "data", tmp_path, "--TRAIN_SPLIT=train[:64]",
                  "--VALIDATION_SPLIT=validation[:20]")
    assert sorted(path.name for path in run_dir.iterdir()) == [
        "config.json", "curves.png", "history.csv", "model.keras", "notes.txt",
        "weights.weights.h5"]


def test_the_first_run_on_a_machine_gives_the_same_bits_as_later_ones(tmp_path):
    """Preparing the dataset used to advance the seeded random state, so the run that
    generated the data trained differently from every run after it. 128 / 20 images: the
    data are generated here, and any size shows the drift (two batches of 64 to train on)."""
    first = demo_training(tmp_path / "data", tmp_path / "first",  # generates the data
                          sizes=(128, 20))
    again = demo_training(tmp_path / "data", tmp_path / "again",  # finds it prepared
                          sizes=(128, 20))
    assert (first / "history.csv").read_bytes() == (again / "history.csv").read_bytes()
    first_weights, again_weights = (weight_arrays(run / "weights.weights.h5")
                                    for run in (first, again))
    assert len(first_weights) > 20 and first_weights.keys() == again_weights.keys()
    for name, array in first_weights.items():
        assert array.tobytes() == again_weights[name].tobytes(), name


def test_auto_precision_records_its_timing_and_trains_the_same_bits_cached_or_not(
        mock_imagenette, bfloat16_cpu, tmp_path):
    """The first run times both policies (real steps, no cache yet), the second reads the
    cache: config.json says which, and the seeded training is the same to the bit."""
    args = [*QUICK_TRAINING, "--BACKBONE=small_vgg", "--BATCH_SIZE=12",  # 12 examples: 1 step
            "--MIXED_PRECISION=auto", f"--OUTPUT_DIR={tmp_path}"]
    run_dirs = [train_cam.main([*args, f"--RUN_NAME={name}"]) for name in ("timed", "cached")]
    timed, cached = (json.loads((run / "config.json").read_text()) for run in run_dirs)
    choice = timed["precision_choice"]
    speeds = {policy: choice[f"{policy}_images_per_s"]
              for policy in ("float32", "mixed_bfloat16")}
    assert all(speed > 0 for speed in speeds.values())
    assert choice["policy"] == precision.faster_policy(speeds) == timed["precision_policy"]
    assert (choice["decided_by"], choice["from_cache"]) == ("measurement", False)
    assert choice["cache_file"] == str(bfloat16_cpu)
    assert choice["cache_key"].startswith("Test CPU 9000 | ")
    assert " | small_vgg | 32 px | batch 12 | " in choice["cache_key"]
    assert cached["precision_choice"] == {**choice, "from_cache": True}
    histories = [(run / "history.csv").read_bytes() for run in run_dirs]
    assert histories[0] == histories[1]
    timed_weights, cached_weights = (weight_arrays(run / "weights.weights.h5")
                                     for run in run_dirs)
    assert len(timed_weights) > 20 and timed_weights.keys() == cached_weights.keys()
    for name, array in timed_weights.items():
        assert array.tobytes() == cached_weights[name].tobytes(), name


def test_a_resumed_run_keeps_the_precision_it_started_in(tmp_path, bfloat16_cpu, fake_timing):
    calls = fake_timing(float32=10.0, mixed_bfloat16=5.0)  # a timing now would pick float32
    started = {"policy": "mixed_bfloat16", "decided_by": "measurement",
               "float32_images_per_s": 4.7, "mixed_bfloat16_images_per_s": 9.4}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(
        {"precision_policy": "mixed_bfloat16", "precision_choice": started}))
    config = {"MIXED_PRECISION": "auto", "BACKBONE": "vgg19", "IMAGE_SIZE": 320,
              "BATCH_SIZE": 16, "OUTPUT_DIR": str(tmp_path), "RUN_NAME": "run", "RESUME": True}
    kept = train_cam.precision_choice(config, 10)
    assert kept == {**started, "kept_on_resume": True} and calls == []
    assert train_cam.precision_choice({**config, "RESUME": False}, 10)["policy"] == "float32"
    assert len(calls) == 2
    # A run from before precision_choice existed recorded only its policy.
    (tmp_path / "run" / "config.json").write_text('{"precision_policy": "mixed_bfloat16"}')
    assert train_cam.precision_choice(config, 10) == {"policy": "mixed_bfloat16",
                                                      "kept_on_resume": True}


def test_keep_best_chooses_on_a_slice_held_out_of_training(demo_run, tmp_path, capsys):
    root, _ = demo_run
    run_dir = demo_training(root / "data", tmp_path, "--KEEP=best", "--HOLDOUT=0.1",
                            "--EPOCHS=2")
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["trained_on"], config["measured_on"]) == ("train[30:]", "train[:30]")
    assert config["KEEP"] == "best" and config["HOLDOUT"] == 0.1
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    best = max(rows, key=lambda row: float(row["val_accuracy"]))
    out = capsys.readouterr().out
    assert (f"kept epoch {best['epoch']} of 2 (best on train[:30]): accuracy "
            f"{100 * float(best['val_accuracy']):.1f}% on train[:30]") in out
    assert (f"run folder {run_dir}/: model.keras, weights.weights.h5, config.json, "
            "history.csv") in out
    assert f"next: python visualize_cam.py --PRESET=demo --OUTPUT_DIR={tmp_path}" in out


@pytest.mark.parametrize("args, message", [
    (["--IMAGE_SIZE=16"], "IMAGE_SIZE=16 is below vgg19's minimum of 32"),
    (["--EPOCHS=0"], "EPOCHS=0 must be at least 1"),
    (["--LEARNING_RATE=-1"], "LEARNING_RATE=-1.0 must be positive"),
    (["--DATASET=no_such_set"], "unknown dataset 'no_such_set'"),
    (["--BACKBONE=vgg"], "BACKBONE='vgg'; choose one of vgg19, vgg16, resnet50, mobilenet_v2, "
                         "efficientnet_b0, convnext_tiny, small_vgg, tiny_vgg"),
    (["--MIXED_PRECISION=fp8"], "MIXED_PRECISION='fp8'"),
    (["--MIXED_PRECISION=auto", "--STRATEGY=multiworker"], "workers could disagree"),
    (["--CACHE=maybe"], "CACHE='maybe'"),
    (["--KEEP=first"], "KEEP='first'; choose one of last, best"),
    (["--KEEP=best", "--HOLDOUT=1.5"], "HOLDOUT=1.5 must be between 0 and 1"),
    (["--KEEP=best", "--TRAIN_SPLIT=train[:50%]"], "must then be a plain split name"),
    (["--KEEP=best", "--HOLDOUT=0.01"], "HOLDOUT=0.01 of 12 examples leaves no examples"),
    (["--TRAIN_LAYERS=last"], "TRAIN_LAYERS='last'; choose one of all, head"),
])
def test_train_rejects_bad_input_without_touching_the_run(small_run, mock_imagenette, args,
                                                          message):
    output_dir, run_dir = small_run
    run_fails(train_cam.main, [*QUICK_TRAINING, f"--OUTPUT_DIR={output_dir}",
                               "--RUN_NAME=mock", *args], run_dir, message)


def test_offline_imagenet_weights_stop_training_without_touching_the_run(
        small_run, mock_imagenette, monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid: offline")

    monkeypatch.setattr("keras.src.applications.vgg19.file_utils.get_file", offline)
    output_dir, run_dir = small_run
    message = run_fails(train_cam.main, [*QUICK_TRAINING, "--WEIGHTS=imagenet",
                                         f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock"],
                        run_dir, "could not download the ImageNet vgg19 weights")
    assert models.BACKBONES["vgg19"].weights_file in message
    assert "~/.keras/models/" in message


def test_offline_dataset_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "host_reachable", lambda *args, **kwargs: False)
    with pytest.raises(SystemExit) as exit_info:
        train_cam.main([*QUICK_TRAINING, f"--DATA_DIR={tmp_path}", f"--OUTPUT_DIR={tmp_path}"])
    message = str(exit_info.value.code)
    assert "s3.amazonaws.com unreachable" in message
    assert "imagenette-320.tgz (341,289,752 bytes)" in message
    assert f"{tmp_path}/downloads/manual/" in message
    assert not (tmp_path / "imagenette").exists()


TRAIN_ON_MOCK_DATA = Path(__file__).with_name("train_on_mock_data.py")


# The default run (imagenette/320px, VGG19 ImageNet weights) with both files supplied by
# hand as the README says: small stand-ins whose size and hash the tests register with
# tfds and Keras, so that both libraries' own checks still run.
SMALL = ["--IMAGE_SIZE=32", "--EPOCHS=1", "--BATCH_SIZE=4", "--VALIDATION_BATCH_SIZE=4",
         "--MIXED_PRECISION=float32"]


def test_the_default_run_from_files_supplied_by_hand(tmp_path, manual_archive, keras_home,
                                                     weight_files, monkeypatch, network_calls,
                                                     probes):
    data_dir, archive = manual_archive
    register_for_imagenette(monkeypatch, checksums.compute_url_info(archive))
    cached = keras_home / models.BACKBONES["vgg19"].weights_file
    cached.write_bytes(weight_files["vgg19"][0].read_bytes())
    checked = register_for_vgg19(monkeypatch, cached)
    outputs = tmp_path / "outputs"
    run_dir = train_cam.main([*SMALL, f"--DATA_DIR={data_dir}", f"--OUTPUT_DIR={outputs}"])

    assert run_dir == outputs / "imagenette" and len(checked) == 1
    builder = tfds.builder("imagenette/320px", data_dir=str(data_dir))
    assert {split: info.num_examples for split, info in builder.info.splits.items()} == {
        "train": 10, "validation": 10}
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["DATASET"], config["WEIGHTS"]) == ("imagenette/320px", "imagenet")
    assert config["class_names"] == list(data.IMAGENETTE_NAMES.values())
    visualize_cam.main([f"--OUTPUT_DIR={outputs}", "--NUM_IMAGES=1", "--DPI=20"])
    assert (run_dir / "heatmaps.png").is_file()
    path = evaluate_cam.main([f"--OUTPUT_DIR={outputs}", "--BATCH_SIZE=5", "--STEPS=2",
                              "--PREDICT_BATCH_SIZE=16"])
    assert json.loads(path.read_text())["num_images"] == 10
    assert probes == [] and network_calls == []


@pytest.mark.parametrize("registered_size", ["real", "same"])
def test_a_wrong_manual_archive_is_one_line_naming_file_and_sizes(
        tmp_path, manual_archive, monkeypatch, network_calls, probes, registered_size):
    data_dir, archive = manual_archive
    size = archive.stat().st_size
    if registered_size == "same":  # the right size, other bytes: only the sha256 differs
        register_for_imagenette(monkeypatch, checksums.UrlInfo(
            size=tfds.core.utils.Size(size), checksum="0" * 64, filename=archive.name))
    with pytest.raises(SystemExit) as exit_info:
        train_cam.main([*SMALL, "--WEIGHTS=", f"--DATA_DIR={data_dir}",
                        f"--OUTPUT_DIR={tmp_path / 'outputs'}"])
    message = str(exit_info.value.code)
    assert "\n" not in message and str(archive) in message
    if registered_size == "real":
        assert (f"is {size:,} bytes, but tfds expects imagenette-320.tgz to be 341,289,752 "
                "bytes") in message
    else:
        assert f"has the right size ({size:,} bytes) but not the sha256" in message
    assert probes == [] and network_calls == []
    assert archive.is_file()  # the user's file is left alone
    assert not tfds.builder("imagenette/320px", data_dir=str(data_dir)).is_prepared()
    assert not any((data_dir / "downloads" / "extracted").iterdir())  # refused before extracting
    assert not (tmp_path / "outputs").exists()


def history_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "history.csv").open(newline="") as rows:
        return list(csv.DictReader(rows))


def epoch_lines(output: str) -> list[str]:
    """Keras' "Epoch i/n" lines: the epochs a process began."""
    return [line for line in output.splitlines() if line.startswith("Epoch ")]


def start(args, output_dir, env=()):
    """train_cam.py in a process of its own: small_vgg (the resume is not about VGG19),
    32 mock images in 4 batches, 6 epochs."""
    argv = [sys.executable, str(TRAIN_ON_MOCK_DATA), "32", *QUICK_TRAINING,
            "--BACKBONE=small_vgg", "--EPOCHS=6", "--BATCH_SIZE=8",
            "--VALIDATION_BATCH_SIZE=16", f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=resume",
            *args]
    return subprocess.run(argv, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **dict(env)},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)


def test_killed_training_resumes_and_finishes_all_epochs(tmp_path):
    run_dir = tmp_path / "resume"
    # SIGKILLed by itself as epoch 3 starts: no chance to clean up, like a lost machine.
    first = start([], tmp_path, {"KILL_AT_EPOCH": "3"})
    assert first.returncode == -signal.SIGKILL, first.stdout
    assert epoch_lines(first.stdout) == ["Epoch 1/6", "Epoch 2/6", "Epoch 3/6"]
    done_before = history_rows(run_dir)
    assert [row["epoch"] for row in done_before] == ["1", "2"]
    assert (run_dir / "backup").is_dir()

    second = start(["--RESUME=True"], tmp_path)
    assert second.returncode == 0, second.stdout
    assert epoch_lines(second.stdout) == ["Epoch 3/6", "Epoch 4/6", "Epoch 5/6", "Epoch 6/6"]
    rows = history_rows(run_dir)
    # Numbered from 1 as on screen; the epoch that was running when killed is run again,
    # the finished ones are kept as they were, so every epoch has exactly one row.
    assert [row["epoch"] for row in rows] == [str(epoch) for epoch in range(1, 7)]
    assert rows[:2] == done_before
    assert not (run_dir / "backup").exists()  # a finished run leaves no backup behind


def test_resume_refuses_a_changed_configuration(tmp_path, mock_imagenette):
    run_dir = tmp_path / "resume"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "config.json").write_text('{"EPOCHS": 6, "IMAGE_SIZE": 64}')
    with pytest.raises(SystemExit) as exit_info:
        train_cam.main([*QUICK_TRAINING, "--EPOCHS=6", f"--OUTPUT_DIR={tmp_path}",
                        "--RUN_NAME=resume", "--RESUME=True"])
    assert "cannot resume" in str(exit_info.value.code)
    assert "IMAGE_SIZE: 64 -> 32" in str(exit_info.value.code)


def test_resume_without_an_interrupted_run_says_so(tmp_path, mock_imagenette):
    with pytest.raises(SystemExit, match="nothing to resume"):
        train_cam.main([*QUICK_TRAINING, f"--OUTPUT_DIR={tmp_path}", "--RESUME=True"])


def test_a_piped_log_has_one_line_per_epoch_and_a_closing_summary(tmp_path):
    result = subprocess.run(
        [sys.executable, str(TRAIN_ON_MOCK_DATA), "16", *QUICK_TRAINING, "--EPOCHS=2",
         "--BACKBONE=small_vgg", f"--OUTPUT_DIR={tmp_path}", "--RUN_NAME=piped"],
        capture_output=True, text=True, timeout=300, env={**os.environ,
                                                          "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "\r" not in result.stdout and "\x1b" not in result.stdout  # no bar redraws
    epochs = [line for line in lines if line.startswith("4/4 - ")]
    assert len(epochs) == 2 and all("val_accuracy" in line for line in epochs)
    assert lines[-3].startswith("kept epoch 2 of 2 (the last): accuracy ")
    assert lines[-2] == (f"run folder {tmp_path / 'piped'}/: model.keras, weights.weights.h5, "
                         "config.json, history.csv")
    assert lines[-1] == f"next: python visualize_cam.py --RUN_NAME=piped --OUTPUT_DIR={tmp_path}"


def test_resume_is_refused_before_any_data_is_looked_at(tmp_path, probes):
    """No download host is probed and no model built: the refusal comes first."""
    with pytest.raises(SystemExit, match="nothing to resume"):
        train_cam.main([*QUICK_TRAINING, f"--DATA_DIR={tmp_path}", f"--OUTPUT_DIR={tmp_path}",
                        "--RESUME"])
    assert probes == []
