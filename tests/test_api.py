"""camlab as a library (camlab.api): installable, imported without TensorFlow, maps of the
shapes its docstrings state, and the same maps as visualize_cam.py saves."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import keras
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
from packaging.requirements import Requirement
from setuptools import find_packages

import camlab
import visualize_cam
from camlab import api
from camlab.errors import CamError
from camlab.report import plots
from camlab.scores import localisation, registry
from helpers import write_png

ROOT = Path(__file__).resolve().parents[1]
SIDE = 24


def small_nested(height: int = SIDE, width: int = SIDE, classes: int = 4) -> keras.Model:
    """A functional model nesting a functional trunk: preprocessing, trunk, GAP, softmax."""
    keras.utils.set_random_seed(7)
    inner_in = keras.Input((height, width, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inner_in)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="c2")(x)
    trunk = keras.Model(inner_in, x, name="trunk")
    inputs = keras.Input((height, width, 3))
    x = trunk(keras.layers.Rescaling(1 / 127.5, offset=-1, name="scale")(inputs))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs, name="small_nested")


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return small_nested()


@pytest.fixture(scope="module")
def explainer(model) -> api.Explainer:
    return camlab.explain(model)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (3, SIDE, SIDE, 3)).astype(np.float32)


def hand_cams(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """F @ W by hand: the trunk's maps (batch, 12, 12, 12) times the Dense kernel."""
    features = model.get_layer("trunk")(images / 127.5 - 1.0).numpy()
    return np.einsum("bhwc,ck->bhwk", features, model.get_layer("out").kernel.numpy())


# ---- installable, and light to import ----

def test_import_camlab_does_not_import_tensorflow():
    code = ("import camlab, sys; error = camlab.CamError('x'); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr
    assert camlab.explain is api.explain and camlab.CamError is CamError
    assert set(camlab.__all__) <= set(dir(camlab))
    with pytest.raises(AttributeError, match="no attribute 'explian'"):
        camlab.explian  # noqa: B018


def requirement_lines(path: Path) -> list[str]:
    """A requirements file's requirements, comments dropped (as setuptools reads it)."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_the_package_takes_its_dependencies_from_the_requirements_files():
    """pyproject.toml holds no second list: setuptools reads requirements.txt (and the dev
    extra requirements-dev.txt), whose every line is a requirement it can parse; the
    package is camlab with its layers plus cam_utils, versioned by camlab.__version__."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project, setuptools = config["project"], config["tool"]["setuptools"]
    assert "dependencies" not in project and "optional-dependencies" not in project
    assert set(project["dynamic"]) == {"version", "dependencies", "optional-dependencies"}
    assert setuptools["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
    assert setuptools["dynamic"]["optional-dependencies"] == {
        "dev": {"file": ["requirements-dev.txt"]}}
    assert setuptools["dynamic"]["version"] == {"attr": "camlab.__version__"}
    assert setuptools["py-modules"] == ["cam_utils"]
    # every folder of camlab/ that holds code is a package pip installs: its layers
    found = find_packages(ROOT, **setuptools["packages"]["find"])
    folders = {path.parent.relative_to(ROOT).as_posix().replace("/", ".")
               for path in (ROOT / "camlab").rglob("*.py")}
    assert sorted(found) == sorted(folders) and len(folders) > 1
    names = {Requirement(line).name for name in ("requirements.txt", "requirements-dev.txt")
             for line in requirement_lines(ROOT / name)}
    assert {"tensorflow", "numpy", "nbclient"} <= names
    assert re.fullmatch(r"\d+\.\d+\.\d+", camlab.__version__)


def test_the_package_imports_only_itself_and_its_requirements():
    """What `pip install .` installs must run alone: camlab imports no script, no test
    helper, nothing requirements.txt does not bring (keras comes with tensorflow)."""
    allowed = {"camlab", "cam_utils", "tensorflow", "tensorflow_datasets", "keras", "numpy",
               "matplotlib", "PIL", "h5py", "scipy", "threadpoolctl"}
    found = set()
    for path in [*(ROOT / "camlab").rglob("*.py"), ROOT / "cam_utils.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    assert found - sys.stdlib_module_names - allowed == set()


# ---- explain and Explainer ----

def test_explain_works_on_a_copy_and_predicts_the_models_probabilities(model, explainer,
                                                                       images):
    assert explainer.layers == ["scale", "trunk/c1", "trunk/p1", "trunk/c2"]
    assert explainer.default_layer == "trunk/c2" and explainer.num_classes == 4
    own = model(images).numpy()
    np.testing.assert_allclose(own.sum(axis=1), 1.0, rtol=1e-6)  # still a softmax
    np.testing.assert_allclose(explainer.predict(images), own, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("classes, chosen", [
    ("top1", None), ("top2", None), ("all", [0, 1, 2, 3]), (2, [2]),
    (np.array([3, 0, 1]), None), (np.array([[1, 2], [0, 3], [3, 3]]), None)])
def test_maps_are_the_classes_cams_at_the_size_asked(model, explainer, images, classes,
                                                     chosen):
    cams = hand_cams(model, images)
    if isinstance(classes, str) and classes.startswith("top"):
        wanted = np.argsort(-model(images).numpy(), axis=1, kind="stable")[
            :, :int(classes[3:])]
    elif chosen is not None:
        wanted = np.tile(chosen, (3, 1))
    else:
        wanted = classes.reshape(3, -1)
    expected = np.take_along_axis(cams, wanted[:, None, None, :], axis=3)
    one = classes in ("top1", 2) if isinstance(classes, str | int) else classes.ndim == 1
    features = explainer.maps(images, "cam", classes, size="features")
    upsampled = explainer.maps(images, "cam", classes)
    squeeze = (lambda maps: maps[..., 0]) if one else (lambda maps: maps)
    assert features.dtype == upsampled.dtype == np.float32
    np.testing.assert_allclose(features, squeeze(expected), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(upsampled, squeeze(tf.image.resize(expected, (SIDE, SIDE))
                                                  .numpy()), rtol=1e-4, atol=1e-5)
    # Grad-CAM on a GAP + linear head is ReLU(CAM) / (h * w).
    np.testing.assert_allclose(explainer.maps(images, "gradcam", classes, size="features"),
                               squeeze(np.maximum(expected, 0) / 144), rtol=1e-4, atol=1e-7)


def test_a_single_image_files_and_pil_images_are_read_as_images_reads_them(
        explainer, images, tmp_path):
    """A 40 x 30 photo is centre-cropped to 30 x 30 and resized to the model's 24 px, from
    a file path, a glob, a PIL image or an array; one (H, W, 3) image is a batch of one,
    and a tensor of the model's size is taken as it is."""
    photo = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    path = write_png(tmp_path / "portrait.png", photo)
    fitted = tf.image.resize(photo[5:35].astype(np.float32), (SIDE, SIDE)).numpy()
    expected = explainer.maps(fitted, "gradcam")
    assert expected.shape == (1, SIDE, SIDE)
    for given in ([path], [str(tmp_path / "*.png")], str(path), PIL.Image.fromarray(photo),
                  [photo], tf.constant(fitted[None]), photo[None]):
        np.testing.assert_allclose(explainer.maps(given, "gradcam"), expected, rtol=1e-5,
                                   atol=1e-8)
    pad = camlab.explain(small_nested(), resize="pad")
    padded = np.zeros((40, 40, 3), np.float32)
    padded[:, 5:35] = photo
    np.testing.assert_allclose(pad.images([path]),
                               tf.image.resize(padded, (SIDE, SIDE)).numpy()[None], atol=1e-3)


def test_every_method_gives_maps_at_the_input_or_the_layer(explainer, images):
    for method in api.methods.METHODS:
        maps = explainer.maps(images, method, "top2", size="features", scorecam_batch=5)
        side = SIDE if api.methods.REGISTRY[method].on_input else 12
        assert maps.shape == (3, side, side, 2) and np.isfinite(maps).all(), method
    assert explainer.maps(images, "gradcam", layer="c1", size=(5, 7)).shape == (3, 5, 7)


def test_a_model_of_another_shape_takes_images_of_its_own_size():
    wide = camlab.explain(small_nested(16, 24))
    assert wide.maps(np.zeros((2, 16, 24, 3)), "gradcam").shape == (2, 16, 24)
    with pytest.raises(CamError, match="the model takes 16x24 images: give arrays of that"):
        wide.maps(np.zeros((2, 20, 20, 3)))


def test_top_k_is_the_figures_data(model, explainer, images):
    top = explainer.top_k(images, "cam", 3, 0.3)
    probs = model(images).numpy()
    np.testing.assert_array_equal(top["classes"], np.argsort(-probs, axis=1)[:, :3])
    np.testing.assert_allclose(top["probs"], np.sort(probs, axis=1)[:, ::-1][:, :3],
                               rtol=1e-5)
    np.testing.assert_allclose(top["all_probs"], probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(top["maps"], np.take_along_axis(
        hand_cams(model, images), top["classes"][:, None, None, :], axis=3), rtol=1e-4,
        atol=1e-5)
    # Divided by the top-1 map's maximum, upsampled as tf.image.resize, cut below 0.3.
    peak = top["maps"][..., 0].max(axis=(1, 2))[:, None, None, None]
    expected = tf.image.resize(top["maps"] / peak, (SIDE, SIDE)).numpy()
    expected = np.where(expected < 0.3, 0.0, expected).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(top["shown"], expected, rtol=1e-4, atol=1e-6)


def test_the_default_k_is_three_or_every_class_of_a_smaller_model(explainer, images):
    """k=None: the top 3 of the 4-class model; both classes of a one-unit sigmoid model."""
    assert explainer.top_k(images)["classes"].shape == (len(images), 3)
    keras.utils.set_random_seed(6)
    binary = keras.Sequential([keras.Input((SIDE, SIDE, 3)), keras.layers.Conv2D(4, 3),
                               keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(1, activation="sigmoid")])
    top = camlab.explain(binary).top_k(images)
    p = binary(images).numpy()[:, 0]
    np.testing.assert_array_equal(top["classes"], np.where(p[:, None] > 0.5, [[1, 0]], [[0, 1]]))
    np.testing.assert_allclose(top["probs"][:, 0], np.maximum(p, 1 - p), rtol=1e-5)
    assert camlab.figure(camlab.explain(binary), images[:1]).axes[1].get_title().endswith("%")


def test_overlay_blends_the_shown_map_as_the_style_draws_it():
    """The map divided by its maximum, cut below the threshold, coloured and blended:
    post = 0.7 photo + 0.3 magma_r; contrast = grey photo under turbo faded in above the
    cut (0 at 0.3, 0.6 from 0.5)."""
    image = np.random.default_rng(2).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    cam_map = np.arange(16, dtype=np.float32).reshape(4, 4) / 7.5  # maximum 2
    shown = np.where(cam_map / 2 < 0.3, 0.0, cam_map / 2)
    post = 0.7 * image + 0.3 * 255 * matplotlib.colormaps["magma_r"](shown)[..., :3]
    np.testing.assert_array_equal(camlab.overlay(image, cam_map), np.round(post))
    opacity = 0.6 * np.clip((shown - 0.3) / 0.2, 0, 1)[..., None]
    grey = plots.grey(image).astype(np.float64)
    contrast = grey * (1 - opacity) + 255 * matplotlib.colormaps["turbo"](shown)[..., :3] * opacity
    np.testing.assert_allclose(camlab.overlay(image, cam_map, style="contrast"),
                               np.round(contrast), atol=1)
    # A low-resolution map is upsampled to the image, as tf.image.resize does.
    small = np.array([[0.0, 1.0], [2.0, 4.0]], np.float32)
    up = tf.image.resize(small[None, ..., None] / 4, (4, 4)).numpy()[0, ..., 0]
    up = np.where(up < 0.3, 0.0, up)
    expected = 0.7 * image + 0.3 * 255 * matplotlib.colormaps["magma_r"](up)[..., :3]
    np.testing.assert_allclose(camlab.overlay(image, small), np.round(expected), atol=1)


def test_figure_is_the_seed_grid_left_closed(model, explainer, images):
    before = plt.get_fignums()
    fig = camlab.figure(explainer, images[:2], "gradcam", 2, class_names=list("abcd"))
    assert plt.get_fignums() == before and len(fig.axes) == 2 * 2 + 1  # + the colorbar
    probs = model(images[:2]).numpy()
    best = int(np.argmax(probs[1]))
    assert fig.axes[2].get_title() == f"{'abcd'[best]} - {100 * probs[1, best]:.1f}%"
    assert fig._suptitle.get_text() == "Grad-CAM, layer trunk/c2"


def box_maps(boxes: np.ndarray, side: int) -> np.ndarray:
    """Maps that are 1 exactly inside each normalised box, 0 elsewhere."""
    edges = np.rint(boxes * side).astype(int)
    maps = np.zeros((len(boxes), side, side), np.float32)
    for index, (y0, x0, y1, x1) in enumerate(edges):
        maps[index, y0:y1, x0:x1] = 1.0
    return maps


def test_score_of_perfect_maps_is_one_and_of_a_distant_peak_zero():
    boxes = np.array([[0.25, 0.25, 0.75, 0.5], [0.0, 0.5, 0.5, 1.0]], np.float32)
    perfect = box_maps(boxes, 32)
    scores = camlab.score(perfect, boxes=boxes, masks=perfect)
    intervals = scores.pop("ci95")
    # every localisation score of the registry; top-1 localisation needs the classes
    assert scores == {"num_images": 2, **{key: 1.0 for key in registry.keys(group="localisation")
                                          if key != "top1_localisation"}}
    assert "maxboxacc_v2" in scores and "pxap" in scores
    # Every resample of perfect maps is perfect: each interval is the single value.
    assert intervals == {key: [1.0, 1.0] for key in scores if key != "num_images"}
    away = np.zeros((2, 32, 32), np.float32)
    away[:, 31, 0] = 1.0  # a peak in the bottom-left corner, far from both boxes
    away_scores = camlab.score(away, boxes=boxes)
    assert away_scores["pointing_game"] == 0.0 and "pxap" not in away_scores
    top1 = camlab.score(perfect, boxes=boxes, labels=[3, 1], predicted=[3, 2])
    assert top1["top1_localisation"] == 0.5 and top1["box_localisation"] == 1.0


def test_score_pools_over_all_images_whatever_the_chunks(monkeypatch):
    """MaxBoxAccV2 picks one threshold for all images: chunks of 2 give the score of the
    whole set (localisation.box_hits of all images at once), not a mean of chunks."""
    rng = np.random.default_rng(3)
    maps = rng.uniform(size=(5, 16, 16)).astype(np.float32)
    corner = rng.uniform(0, 0.5, (5, 2))
    boxes = np.concatenate([corner, corner + 0.4], axis=1).astype(np.float32)
    masks = box_maps(boxes, 16) > 0
    whole = camlab.score(maps, boxes=boxes, masks=masks)
    monkeypatch.setattr(api, "SCORE_CHUNK", 2)
    chunked = camlab.score(maps, boxes=boxes, masks=masks)
    assert chunked.pop("ci95") == whole.pop("ci95")  # the same bits for the same seed
    assert chunked == pytest.approx(whole)
    assert whole["maxboxacc_v2"] == pytest.approx(
        localisation.max_box_acc_v2(localisation.box_hits(maps, boxes)))
    object_hist, background_hist = localisation.pixel_counts(maps, masks)
    assert whole["pxap"] == pytest.approx(localisation.pxap(object_hist, background_hist))


@pytest.mark.parametrize("call, message", [
    (lambda e, x: e.maps(x, classes="top9"), 'classes=\'top9\'; give "top1" to "top4"'),
    (lambda e, x: e.maps(x, classes=np.array([0, 5, 1])),
     "classes hold 0 to 5; the model's classes are 0 to 3"),
    (lambda e, x: e.maps(x, classes=np.array([0, 1])), "shape (2,) for 3 images"),
    (lambda e, x: e.maps(x, classes=1.5), "classes of type float64"),
    (lambda e, x: e.maps(x, size="full"), 'size=\'full\'; choose "input", "features"'),
    (lambda e, x: e.maps(x, method="lime"), "METHOD='lime'; choose one of cam, gradcam"),
    (lambda e, x: e.maps(x, layer="c1"), 'METHOD="cam" works only on the feature maps'),
    (lambda e, x: e.maps(x, "saliency", layer="c1"), "is a map of the input pixels"),
    (lambda e, x: e.maps(x, layer="c9", method="gradcam"), "LAYER='c9' is not a layer"),
    (lambda e, x: e.maps(x[..., 0]), "images of shape (3, 24, 24): give (batch, H, W, 3)"),
    (lambda e, x: e.maps([]), "no images given"),
    (lambda e, x: e.maps(["a.png", x[0]]), "a list of file paths, or a list of arrays"),
    (lambda e, x: e.maps(["nowhere.png"]), "image file 'nowhere.png' not found"),
    (lambda e, x: e.maps(x, foo=1), "foo: not a method option; choose from scorecam_batch"),
    (lambda e, x: e.top_k(x, k=0), "k=0 must be between 1 and the number of classes, 4"),
    (lambda e, x: e.top_k(x, threshold=2), "threshold=2 must be between 0 and 1"),
    (lambda e, x: camlab.figure(e, x, class_names=["a"]), "1 class names for a model of 4"),
    (lambda e, x: camlab.figure(e, x, style="neon"), "STYLE='neon'; choose one of post"),
    (lambda e, x: camlab.overlay(x, x[0, ..., 0]), "overlay takes one image (H, W, 3)"),
    (lambda e, x: camlab.score(x[..., 0]), "score needs ground truth: boxes="),
    (lambda e, x: camlab.score(x, boxes=np.zeros((3, 4))), "score takes one map per image"),
    (lambda e, x: camlab.score(x[..., 0], boxes=np.zeros((2, 4))), "give one box per map"),
    (lambda e, x: camlab.score(x[..., 0], boxes=np.full((3, 4), 2.0)), "must be normalised"),
    (lambda e, x: camlab.score(x[..., 0], masks=np.ones((3, 8, 8))), "give one per map"),
    (lambda e, x: camlab.score(x[..., 0], boxes=np.zeros((3, 4)), labels=[0, 1, 2]),
     "needs both labels= and predicted="),
    (lambda e, x: camlab.explain(42), "explain takes a keras.Model or the path"),
    (lambda e, x: camlab.explain("missing.keras"), "MODEL file 'missing.keras' not found"),
    (lambda e, x: camlab.explain(e.classifier.source, preprocess="inception"),
     "PREPROCESS='inception'; choose one of none, caffe"),
    (lambda e, x: camlab.explain(e.classifier.source, custom_code="layers.py"),
     "custom_code applies to a model file"),
])
def test_a_bad_argument_is_one_camerror(explainer, images, call, message):
    with pytest.raises(CamError) as error:
        call(explainer, images)
    assert message in str(error.value) and "\n" not in str(error.value)


# ---- the same maps as the script ----

def nested_mobilenet(size: int = 96) -> keras.Model:
    """The issue's check: a functional model nesting MobileNetV2 (random weights), which
    expects PREPROCESS="tf" inputs, with a GAP -> softmax head."""
    keras.utils.set_random_seed(11)
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None,
                                              input_shape=(size, size, 3))
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="out")(x))


def test_explain_gives_the_maps_visualize_cam_saves(tmp_path):
    """camlab.explain(model, preprocess="tf").maps(files, method="gradcam") equals the
    `maps` visualize_cam.py --MODEL saves for the same files: at the layer's resolution,
    and upsampled as tf.image.resize does for size="input"."""
    model = nested_mobilenet()
    model.save(tmp_path / "mobile.keras")
    rng = np.random.default_rng(4)
    files = [write_png(tmp_path / f"photo{i}.png",
                       rng.integers(0, 256, (120, 100 + 10 * i, 3), dtype=np.uint8))
             for i in range(2)]
    visualize_cam.main([f"--MODEL={tmp_path / 'mobile.keras'}", "--PREPROCESS=tf",
                        f"--IMAGES={','.join(map(str, files))}", "--METHOD=gradcam",
                        "--TOP_K=1", "--DPI=10", f"--OUTPUT_DIR={tmp_path}"])
    saved = np.load(tmp_path / "mobile" / "cams_images_gradcam.npz")
    explainer = camlab.explain(model, preprocess="tf")
    low = explainer.maps(files, method="gradcam", size="features")
    assert low.shape == (2, 3, 3) and low.dtype == np.float32
    np.testing.assert_allclose(low, saved["maps"][..., 0], rtol=1e-5, atol=1e-7)
    maps = explainer.maps(files, method="gradcam")
    assert maps.shape == (2, 96, 96) and maps.dtype == np.float32
    np.testing.assert_allclose(maps, tf.image.resize(saved["maps"], (96, 96)).numpy()[..., 0],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(saved["classes"][:, 0], explainer.predict(files).argmax(1))


# ---- the documentation's examples ----

def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), re.S | re.M)


def test_every_python_block_of_the_readme_and_the_api_page_runs():
    """The blocks run in one namespace, the one that makes `model` and `images` first
    (the README's example names them as the user's), and every `name = ...  # (a, b)`
    comment states the shape the name gets."""
    blocks = python_blocks(ROOT / "docs" / "api.md") + python_blocks(ROOT / "README.md")
    blocks.sort(key=lambda block: "model = keras.Model(" not in block)  # stable
    assert len(blocks) >= 8 and "model = keras.Model(" in blocks[0]
    namespace: dict = {}
    shapes_checked = 0
    for block in blocks:
        exec(compile(block, "a python block of the docs", "exec"), namespace)  # noqa: S102
        for name, shape in re.findall(r"^(\w+) = .*# \(([\d, ]+)\)", block, re.M):
            stated = tuple(int(side) for side in shape.split(",") if side.strip())
            assert np.shape(namespace[name]) == stated, name
            shapes_checked += 1
    assert shapes_checked >= 6
    assert namespace["maps"].dtype == np.float32 and namespace["picture"].dtype == np.uint8
    assert namespace["scores"]["num_images"] == 4 and "maxboxacc_v2" in namespace["scores"]
    assert isinstance(namespace["fig"], matplotlib.figure.Figure)
