"""Bad input gets a short message and a non-zero exit, and leaves the run folder untouched."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

import cam_data
import evaluate_cam
import train_cam
import visualize_cam
from conftest import QUICK_TRAINING, snapshot


def write_png(path, array):
    path.write_bytes(tf.io.encode_png(array).numpy())
    return path


@pytest.fixture
def image_files(tmp_path):
    files = {}
    rgb = np.zeros((40, 30, 3), np.uint8)
    rgb[..., 0] = 200
    files["rgb"] = write_png(tmp_path / "rgb.png", rgb)
    files["gray"] = write_png(tmp_path / "gray.png", np.full((20, 20, 1), 128, np.uint8))
    rgba = np.zeros((20, 20, 4), np.uint8)  # black but fully transparent: white over white
    files["rgba"] = write_png(tmp_path / "rgba.png", rgba)
    files["deep"] = write_png(tmp_path / "deep.png", np.full((20, 20, 3), 65535, np.uint16))
    PIL.Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)
    files["jpeg"] = tmp_path / "photo.jpg"
    files["text"] = tmp_path / "notes.png"
    files["text"].write_text("not an image")
    files["truncated"] = tmp_path / "truncated.png"
    files["truncated"].write_bytes(files["rgb"].read_bytes()[:60])
    return files


@pytest.mark.parametrize("name, expected", [
    ("rgb", (200, 0, 0)), ("jpeg", (200, 0, 0)), ("gray", (128, 128, 128)),
    ("rgba", (255, 255, 255)), ("deep", (255, 255, 255))])
def test_image_files_are_converted_to_rgb_0_255(image_files, name, expected):
    image = cam_data.read_image_file(image_files[name], 16).numpy()
    assert image.shape == (16, 16, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image[8, 8], expected, atol=3)


@pytest.mark.parametrize("name, message", [
    ("text", "is not an image file"), ("truncated", "is corrupt or truncated")])
def test_unreadable_image_files_are_named(image_files, name, message):
    with pytest.raises(cam_data.CamError, match=message) as error:
        cam_data.read_image_file(image_files[name], 16)
    assert str(image_files[name]) in str(error.value)


def test_very_large_images_are_refused_before_decoding(image_files, monkeypatch):
    monkeypatch.setattr(cam_data, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(cam_data.CamError, match="is 30x40 pixels, more than 1,000"):
        cam_data.read_image_file(image_files["rgb"], 16)


def test_paths_and_globs(image_files, tmp_path):
    paths = cam_data.expand_image_paths((str(tmp_path / "g*.png"), str(image_files["rgb"])))
    assert paths == [image_files["gray"], image_files["rgb"]]
    with pytest.raises(cam_data.CamError, match="no file matches"):
        cam_data.expand_image_paths((str(tmp_path / "*.gif"),))
    with pytest.raises(cam_data.CamError, match="image file 'missing.jpg' not found"):
        cam_data.expand_image_paths(("missing.jpg",))


def test_visualize_draws_own_images(trained_run, image_files):
    output_dir, run_dir = trained_run
    files = ",".join(str(image_files[name]) for name in ("rgb", "gray", "rgba", "deep"))
    path = visualize_cam.main([f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", "--DPI=30",
                               f"--IMAGES={files}"])
    assert path == run_dir / "heatmaps_images.png"
    saved = np.load(run_dir / "cams_images.npz")
    assert saved["images"].shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(saved["labels"], [-1, -1, -1, -1])
    np.testing.assert_array_equal(saved["images"][1, 5, 5], [128, 128, 128])


@pytest.mark.parametrize("name, message", [
    ("text", "is not an image file this script can read"),
    ("truncated", "is corrupt or truncated")])
def test_visualize_names_a_bad_image_without_touching_the_run(trained_run, image_files, name,
                                                             message):
    output_dir, run_dir = trained_run
    code = run_fails(visualize_cam.main, [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock",
                                          f"--IMAGES={image_files['rgb']},{image_files[name]}"],
                     run_dir, message)
    assert str(image_files[name]) in code


def run_fails(main, args, run_dir, message):
    """Runs a script that must fail: checks exit, message and an unchanged run folder."""
    before = snapshot(run_dir)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert isinstance(exit_info.value.code, str) and message in exit_info.value.code
    assert snapshot(run_dir) == before
    return exit_info.value.code


@pytest.mark.parametrize("main, args, message", [
    (visualize_cam.main, ["--IMAGES=nope/*.png"], "no file matches 'nope/*.png'"),
    (visualize_cam.main, ["--TOP_K=0"], "TOP_K=0 must be between 1"),
    (visualize_cam.main, ["--THRESHOLD=-0.1"], "THRESHOLD=-0.1 must be between 0 and 1"),
    (visualize_cam.main, ["--NUM_IMAGES=0"], "NUM_IMAGES=0 must be between 1"),
    (visualize_cam.main, ["--METHOD=lime"], "METHOD='lime'; choose one of cam, gradcam"),
    (visualize_cam.main, ["--TOP_K=three"], "--TOP_K='three': expected int"),
    (visualize_cam.main, ["--TOPK=3"], "unknown constant 'TOPK'"),
    (evaluate_cam.main, ["--METHOD=lime"], "METHOD='lime'"),
    (evaluate_cam.main, ["--THRESHOLD=2"], "THRESHOLD=2.0 must be between 0 and 1"),
    (evaluate_cam.main, ["--MAX_IMAGES=-1"], "MAX_IMAGES=-1"),
])
def test_scripts_reject_bad_input_without_touching_the_run(trained_run, main, args, message):
    output_dir, run_dir = trained_run
    run_fails(main, [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", *args], run_dir, message)


def copy_run(run_dir, target):
    target.mkdir()
    for path in run_dir.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "weights.weights.h5").unlink(), "weights.weights.h5 not found"),
    (lambda d: (d / "weights.weights.h5").write_bytes(
        (d / "weights.weights.h5").read_bytes()[:4096]), "is damaged or truncated"),
    (lambda d: (d / "config.json").write_text('{"IMAGE_SIZE": 3'), "is not valid JSON"),
    (lambda d: (d / "config.json").unlink(), "config.json not found"),
    (lambda d: edit_config(d, class_names=list("abcde")), "does not fit the model"),
    (lambda d: edit_config(d, BACKBONE="small_vgg"), "does not fit the model"),
    (lambda d: edit_config(d, IMAGE_SIZE=64), "IMAGE_SIZE 32 in the weights, 64 in config"),
    (lambda d: edit_config(d, BACKBONE="resnet"),
     "BACKBONE 'vgg19' in the weights, 'resnet' in config.json"),
])
@pytest.mark.parametrize("main", [visualize_cam.main, evaluate_cam.main])
def test_damaged_or_mismatched_runs_are_explained(trained_run, tmp_path, damage, message,
                                                  main):
    output_dir, run_dir = trained_run
    broken = copy_run(run_dir, tmp_path / "broken")
    damage(broken)
    run_fails(main, [f"--OUTPUT_DIR={tmp_path}", "--RUN_NAME=broken"], broken, message)


def edit_config(run_dir, **changes):
    config = json.loads((run_dir / "config.json").read_text())
    config.update(changes)
    (run_dir / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("args, message", [
    (["--IMAGE_SIZE=16"], "IMAGE_SIZE=16 is below vgg19's minimum of 32"),
    (["--EPOCHS=0"], "EPOCHS=0 must be at least 1"),
    (["--LEARNING_RATE=-1"], "LEARNING_RATE=-1.0 must be positive"),
    (["--DATASET=no_such_set"], "unknown dataset 'no_such_set'"),
    (["--BACKBONE=vgg"], "unknown BACKBONE 'vgg'"),
    (["--MIXED_PRECISION=fp8"], "MIXED_PRECISION='fp8'"),
    (["--CACHE=maybe"], "CACHE='maybe'"),
])
def test_train_rejects_bad_input_without_touching_the_run(trained_run, args, message):
    output_dir, run_dir = trained_run
    run_fails(train_cam.main, [*QUICK_TRAINING, f"--OUTPUT_DIR={output_dir}",
                               "--RUN_NAME=mock", *args], run_dir, message)


def test_offline_imagenet_weights_stop_training_without_touching_the_run(trained_run,
                                                                         monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid: offline")

    monkeypatch.setattr("keras.src.applications.vgg19.file_utils.get_file", offline)
    output_dir, run_dir = trained_run
    message = run_fails(train_cam.main, [*QUICK_TRAINING, "--WEIGHTS=imagenet",
                                         f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock"],
                        run_dir, "could not download the ImageNet VGG19 weights")
    assert "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
