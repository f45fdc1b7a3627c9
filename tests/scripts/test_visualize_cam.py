"""visualize_cam.py end to end, offline: the grid from a run alone, own images, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf

import camlab
import evaluate_cam
import visualize_cam
from camlab.core import settings
from camlab.datasets import image_io
from camlab.maps import methods
from helpers import run_fails, sequential_cnn, write_png


def test_visualize_draws_the_grid_from_the_run_alone(trained_run, mock_imagenette,
                                                     saved_figures):
    output_dir, run_dir = trained_run
    path = visualize_cam.main([f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock",
                               "--NUM_IMAGES=4", "--TOP_K=2", "--DPI=50"])
    assert path == run_dir / "heatmaps.png"
    assert matplotlib.image.imread(path).ndim == 3
    (fig,) = saved_figures
    axes = np.array(fig.axes[:8]).reshape(4, 2)  # the colorbar comes last
    saved = np.load(run_dir / "cams.npz")
    names = list(saved["class_names"])
    for row in range(4):
        order = np.argsort(-saved["probs"][row])
        for rank in range(2):
            c = order[rank]
            mark = "✓ " if c == saved["labels"][row] else "✗ " if rank == 0 else ""
            expected = f"{mark}{names[c]} - {100 * saved['probs'][row, c]:.1f}%"
            assert axes[row, rank].get_title() == expected
    assert saved["images"].shape == (4, 32, 32, 3) and saved["images"].dtype == np.uint8
    assert saved["cam_all_classes"].shape == (4, 1, 1, 10)
    # The maps are the run's own: their means are the logits behind the saved softmax.
    logits = saved["cam_all_classes"].mean(axis=(1, 2))
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(1, keepdims=True), saved["probs"],
                               rtol=1e-4, atol=1e-6)


def test_visualize_same_seed_same_images(trained_run, mock_imagenette):
    output_dir, run_dir = trained_run
    args = [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", "--NUM_IMAGES=3", "--DPI=20"]
    visualize_cam.main([*args, "--SEED=5"])
    first = np.load(run_dir / "cams.npz")["images"]
    visualize_cam.main([*args, "--SEED=5"])
    np.testing.assert_array_equal(np.load(run_dir / "cams.npz")["images"], first)
    visualize_cam.main([*args, "--SEED=6"])
    assert not np.array_equal(np.load(run_dir / "cams.npz")["images"], first)


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
def test_visualize_names_a_bad_image_without_touching_the_run(small_run, image_files, name,
                                                             message):
    output_dir, run_dir = small_run
    code = run_fails(visualize_cam.main, [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock",
                                          f"--IMAGES={image_files['rgb']},{image_files[name]}"],
                     run_dir, message)
    assert str(image_files[name]) in code


@pytest.mark.parametrize("args, message", [
    (["--IMAGES=nope/*.png"], "no file matches 'nope/*.png'"),
    (["--TOP_K=0"], "TOP_K=0 must be between 1"),
    (["--TOP_K=11"], "TOP_K=11 must be between 1 and the number of classes, 10"),
    (["--THRESHOLD=-0.1"], "THRESHOLD=-0.1 must be between 0 and 1"),
    (["--THRESHOLD=1.5"], "THRESHOLD=1.5 must be between 0 and 1"),
    (["--NUM_IMAGES=0"], "NUM_IMAGES=0 must be between 1"),
    (["--NUM_IMAGES=13"], "NUM_IMAGES=13 must be between 1 and the split's size, 12"),
    (["--METHOD=lime"], "METHOD='lime': 'lime' is not a method; choose one or more of cam, "
                        "gradcam, gradcam++, scorecam, layercam, eigencam, hirescam,"),
    (["--EIGEN_SMOOTH=True", "--METHOD=saliency"],
     'EIGEN_SMOOTH=True: smoothing applies to the CAM family\'s maps only, not to '
     'METHOD="saliency"'),
    (["--TOP_K=three"], "--TOP_K='three': expected int"),
    (["--TOPK=3"], "unknown constant 'TOPK'"),
    (["--RUN_NAME=nothere"], "config.json not found"),
    (["--LAYER=block9"], "LAYER='block9' is not a layer of this model with a 4-D output"),
    (["--LAYER=conv2_2"], 'METHOD="cam" works only on the feature maps that feed GAP'),
    (["--IG_BASELINE=grey"], "IG_BASELINE='grey'; choose one of black, blur"),
    (["--OCCLUSION_STRIDE=0"], "OCCLUSION_STRIDE=0.0 must be above 0 and at most 1"),
])
def test_visualize_rejects_bad_input_without_touching_the_run(small_run, mock_imagenette,
                                                              args, message):
    output_dir, run_dir = small_run
    run_fails(visualize_cam.main, [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", *args],
              run_dir, message)


def test_gradcam_of_another_layer_gets_its_own_files(demo_run, capsys):
    root, run_dir = demo_run
    path = visualize_cam.main(["--PRESET=demo", f"--OUTPUT_DIR={root}", "--DPI=20",
                               "--METHOD=gradcam", "--LAYER=conv2_2"])
    assert path == run_dir / "heatmaps_gradcam_conv2_2.png"
    assert "maps of layer conv2_2" in capsys.readouterr().out
    assert json.loads(str(np.load(run_dir / "cams_gradcam_conv2_2.npz")["settings"]))[
        "LAYER"] == "conv2_2"


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
    run_fails(visualize_cam.main, ["--PRESET=demo", f"--OUTPUT_DIR={root}", "--SPLIT=tset"],
              run_dir, "SPLIT='tset'; choose one of train, validation (the splits of cam_shapes)")


def test_an_error_after_tensorflow_loads_is_still_one_line(tmp_path):
    """TensorFlow's C++ start-up lines are held back, so stderr is the message alone."""
    script = Path(visualize_cam.__file__)
    result = subprocess.run([sys.executable, script.name, f"--OUTPUT_DIR={tmp_path}"],
                            cwd=script.parent, capture_output=True, text=True, timeout=120,
                            env={k: v for k, v in os.environ.items()
                                 if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"visualize_cam.py: error: {tmp_path}/imagenette/config.json not found: train first "
        "with `python train_cam.py` (RUN_NAME must match) or pick an existing run folder"]


def test_every_setting_arrives_in_the_run(trained_run, mock_imagenette):
    """Every setting changed on the command line is what the figure was drawn with."""
    output_dir, run_dir = trained_run
    argv = [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", "--NUM_IMAGES=2", "--TOP_K=4",
            "--THRESHOLD=0.5", "--ALPHA=0.6", "--CMAP=viridis", "--DPI=20", "--SEED=3",
            "--METHOD=gradcam", "--SPLIT=train", "--TENSORFLOW_LOG"]
    path = visualize_cam.main(argv)
    assert path == run_dir / "heatmaps_gradcam.png"
    saved = np.load(run_dir / "cams_gradcam.npz")
    recorded = json.loads(str(saved["settings"]))
    contents = recorded.pop("arrays")
    assert recorded == {**settings.resolve(visualize_cam.__file__, argv), "IMAGES": []}
    assert set(contents) == {"maps", "classes", "probs", "images", "cam_all_classes"}
    assert saved["images"].shape[0] == 2 and recorded["TOP_K"] == 4


@pytest.mark.parametrize("full_resolution", [False, True])
def test_own_photos_keep_their_names_shape_and_resolution(trained_run, image_files,
                                                          saved_figures, full_resolution):
    output_dir, run_dir = trained_run
    files = [image_files["rgb"], image_files["jpeg"]]  # both 40 x 30 (portrait)
    visualize_cam.main([f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", "--DPI=20",
                        "--TOP_K=2", f"--IMAGES={','.join(map(str, files))}",
                        f"--FULL_RESOLUTION={full_resolution}"])
    saved = np.load(run_dir / "cams_images.npz")
    np.testing.assert_array_equal(saved["files"], ["rgb.png", "photo.jpg"])
    axes = np.array(saved_figures[-1].axes[:4]).reshape(2, 2)
    assert [axes[row, 0].get_ylabel() for row in range(2)] == ["rgb.png", "photo.jpg"]
    # Centre-cropped to 30 x 30, then drawn at 32 px, or at the photo's own 30 px.
    side = 30 if full_resolution else 32
    for ax in axes.ravel():
        photo, heatmap = ax.get_images()
        assert photo.get_array().shape[:2] == heatmap.get_array().shape == (side, side)


def test_several_methods_draw_one_grid_each(demo_run):
    root, run_dir = demo_run
    # One image: the files of every method are the point (the maps of each are compared
    # with their references in maps/, and on two images by the every_method fixture below).
    path = visualize_cam.main(["--PRESET=demo", f"--OUTPUT_DIR={root}", "--DPI=10",
                               "--NUM_IMAGES=1", "--METHOD=all", "--SCORECAM_BATCH=16",
                               "--NOISE_SAMPLES=2", "--IG_STEPS=2", "--RISE_MASKS=8"])
    assert path == run_dir / "heatmaps_rise.png"
    for method in methods.METHODS[1:]:  # CAM's file is cams.npz
        saved = np.load(run_dir / f"cams_{method}.npz")
        assert json.loads(str(saved["settings"]))["METHOD"] == "all"
        assert (run_dir / f"heatmaps_{method}.png").is_file()


@pytest.fixture(scope="module")
def every_method(tmp_path_factory):
    """(saved arrays by method, the model's probabilities, its CAMs by hand, its Classifier,
    the images it saw): visualize_cam.py --METHOD=all
    on two photos through MODEL, a Sequential GAP CNN (13 x 13 maps, 5 classes)."""
    folder = tmp_path_factory.mktemp("every_method")
    model = sequential_cnn()
    model.save(folder / "seq.keras")
    rng = np.random.default_rng(8)
    files = [write_png(folder / f"p{i}.png", rng.integers(0, 256, (32, 40, 3), np.uint8))
             for i in range(2)]
    visualize_cam.main([f"--MODEL={folder / 'seq.keras'}", f"--OUTPUT_DIR={folder}",
                        f"--IMAGES={','.join(map(str, files))}", "--METHOD=all",
                        "--TOP_K=2", "--DPI=10", "--SCORECAM_BATCH=8", "--NOISE_SAMPLES=2",
                        "--IG_STEPS=2", "--RISE_MASKS=8"])
    saved = {method: np.load(folder / "seq" / ("cams_images.npz" if method == "cam" else
                                               f"cams_images_{method}.npz"))
             for method in methods.METHODS}
    images = image_io.read_images(files, 32)[0]
    probs = model(images).numpy()
    trunk = keras.Model(model.inputs[0], model.get_layer("c2").output)
    cams = np.einsum("bhwc,ck->bhwk", trunk(images).numpy(),
                     model.get_layer("out").kernel.numpy())  # F @ W by hand, all classes
    # camlab.explain works on a copy: the model here keeps its softmax.
    return saved, probs, cams, camlab.explain(model).classifier, images


@pytest.mark.parametrize("method", methods.METHODS)
def test_the_npz_holds_the_maps_of_its_method(every_method, method):
    """cams_<method>.npz: `maps` are METHOD's maps of the top-2 classes in `classes`, as the
    method computes them; the CAMs of all classes are `cam_all_classes`; `settings` say
    which is which."""
    saved, probs, cams, explained, images = every_method
    arrays = saved[method]
    np.testing.assert_array_equal(arrays["classes"], np.argsort(-probs, axis=1)[:, :2])
    np.testing.assert_allclose(arrays["probs"], probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(arrays["cam_all_classes"], cams, rtol=1e-4, atol=1e-5)
    top_cams = np.take_along_axis(cams, arrays["classes"][:, None, None, :], axis=3)
    features, _ = explained.features(images)
    direct = methods.REGISTRY[method].maps(explained, features, tf.constant(arrays["classes"]),
                                           tf.constant(images), "",
                                           methods.Options(scorecam_batch=8, noise_samples=2,
                                                           ig_steps=2, rise_masks=8))
    side = 32 if methods.REGISTRY[method].on_input else 13
    assert arrays["maps"].shape == (2, side, side, 2) and arrays["maps"].dtype == np.float32
    np.testing.assert_allclose(arrays["maps"], direct, rtol=1e-4, atol=1e-6)
    if method == "cam":
        np.testing.assert_allclose(arrays["maps"], top_cams, rtol=1e-4, atol=1e-5)
    if method == "gradcam":  # on a GAP + linear head: ReLU(CAM) / (h * w)
        np.testing.assert_allclose(arrays["maps"], np.maximum(top_cams, 0) / 169, rtol=1e-4,
                                   atol=1e-7)
    if method != "cam" and not methods.REGISTRY[method].on_input:  # the defect: CAMs always
        assert not np.allclose(arrays["maps"], top_cams, rtol=1e-2)
    contents = json.loads(str(arrays["settings"]))["arrays"]
    assert contents["maps"].startswith(f"{methods.TITLES[method]} maps (METHOD={method!r})")
    assert "CAM (F @ W, no bias) of every class on layer c2" in contents["cam_all_classes"]


def test_a_model_without_cam_saves_its_methods_maps_and_no_cams(tmp_path, image_files):
    keras.utils.set_random_seed(2)
    model = keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(8, activation="relu"),
        keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "deep_head.keras")
    visualize_cam.main([f"--MODEL={tmp_path / 'deep_head.keras'}", f"--OUTPUT_DIR={tmp_path}",
                        f"--IMAGES={image_files['rgb']}", "--METHOD=gradcam", "--TOP_K=2",
                        "--DPI=10"])
    saved = np.load(tmp_path / "deep_head" / "cams_images_gradcam.npz")
    assert "cam_all_classes" not in saved and saved["maps"].shape == (1, 30, 30, 2)
    assert set(json.loads(str(saved["settings"]))["arrays"]) == {"maps", "classes", "probs",
                                                                 "images"}


@pytest.fixture(scope="module")
def two_class_models(tmp_path_factory):
    """{"sigmoid": a one-unit sigmoid classifier, "softmax": a two-unit softmax one}, saved,
    and two photos: the models a binary task gives, which the defaults (TOP_K=3) outgrow."""
    folder = tmp_path_factory.mktemp("two_classes")
    paths = {}
    for kind, units in (("sigmoid", 1), ("softmax", 2)):
        keras.utils.set_random_seed(4)
        model = keras.Sequential([
            keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(6, 3, activation="relu", name="conv"),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(units, activation=kind)])
        model.save(folder / f"{kind}.keras")
        paths[kind] = folder / f"{kind}.keras"
    rng = np.random.default_rng(3)
    photos = [write_png(folder / f"photo{i}.png", rng.integers(0, 256, (40, 36, 3), np.uint8))
              for i in range(2)]
    return folder, paths, photos


@pytest.mark.parametrize("kind", ["sigmoid", "softmax"])
def test_a_two_class_model_works_with_the_defaults(two_class_models, kind, capsys):
    """TOP_K, which the user did not set, becomes the 2 classes, and the run says so."""
    folder, paths, photos = two_class_models
    visualize_cam.main([f"--MODEL={paths[kind]}", f"--IMAGES={folder / 'photo*.png'}",
                        f"--OUTPUT_DIR={folder / kind}"])
    assert ("TOP_K: 3 -> 2, as the model has 2 classes (TOP_K given on the command line or "
            "in a preset is used as given)") in capsys.readouterr().out
    saved = np.load(folder / kind / kind / "cams_images.npz")
    assert saved["maps"].shape == (2, 30, 30, 2) and saved["classes"].shape == (2, 2)
    assert json.loads(str(saved["settings"]))["TOP_K"] == 2
    np.testing.assert_array_equal(np.sort(saved["classes"], axis=1), [[0, 1], [0, 1]])
    output = keras.models.load_model(paths[kind])(image_io.read_images(photos, 32)[0]).numpy()
    expected = np.concatenate([1 - output, output], 1) if kind == "sigmoid" else output
    np.testing.assert_allclose(saved["probs"], expected, rtol=1e-5, atol=1e-6)


def test_a_top_k_the_user_gave_is_still_refused(two_class_models, tmp_path, monkeypatch):
    folder, paths, _ = two_class_models
    args = [f"--MODEL={paths['sigmoid']}", f"--IMAGES={folder / 'photo0.png'}",
            f"--OUTPUT_DIR={tmp_path}"]
    run_fails(visualize_cam.main, [*args, "--TOP_K=3"], tmp_path,
              "TOP_K=3 must be between 1 and the number of classes, 2")
    (tmp_path / "three.json").write_text(json.dumps({"TOP_K": 3}))
    monkeypatch.setattr(settings, "PRESETS_DIR", tmp_path)
    run_fails(visualize_cam.main, [*args, "--PRESET=three"], tmp_path,
              "TOP_K=3 must be between 1 and the number of classes, 2")


def test_a_split_of_two_photos_draws_both_unless_num_images_was_given(two_class_models,
                                                                      tmp_path, capsys):
    """NUM_IMAGES=5 on a split of 2: both rows; a flat folder of 2 photos validates on 1."""
    _, paths, photos = two_class_models
    for where in ("split/train", "split/validation", "flat"):  # a photo in class a, one in b
        for name, photo in zip("ab", photos, strict=True):
            (tmp_path / where / name).mkdir(parents=True)
            (tmp_path / where / name / photo.name).write_bytes(photo.read_bytes())
    args = [f"--MODEL={paths['softmax']}", f"--OUTPUT_DIR={tmp_path / 'out'}", "--DPI=20"]
    visualize_cam.main([*args, f"--DATASET={tmp_path / 'split'}"])
    assert "NUM_IMAGES: 5 -> 2, as split 'validation' has only 2 images" in (
        capsys.readouterr().out)
    assert np.load(tmp_path / "out" / "softmax" / "cams.npz")["maps"].shape[0] == 2
    run_fails(visualize_cam.main, [*args, f"--DATASET={tmp_path / 'split'}", "--NUM_IMAGES=5"],
              tmp_path, "NUM_IMAGES=5 must be between 1 and the split's size, 2")
    visualize_cam.main([*args, f"--DATASET={tmp_path / 'flat'}"])
    printed = capsys.readouterr().out
    assert "0.2 of its 2 images is none, so its validation split is 1 image" in printed
    assert "NUM_IMAGES: 5 -> 1, as split 'validation' has only 1 image " in printed
    assert np.load(tmp_path / "out" / "softmax" / "cams.npz")["maps"].shape[0] == 1
    # evaluate_cam.py's defaults on the same split: BATCH_SIZE 50 and SCORECAM_BATCH 64 (of a
    # 6-channel layer) are caps, not sizes, so 2 images score as they are.
    evaluate_cam.main([*args[:2], f"--DATASET={tmp_path / 'split'}", "--METHOD=scorecam"])
    scored = json.loads((tmp_path / "out" / "softmax" / "metrics_scorecam.json").read_text())
    assert scored["num_images"] == 2 and len(scored["per_class"]) == 2
