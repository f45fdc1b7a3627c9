"""camlab.networks.subject and MODEL in the scripts: a user's saved Keras classifier explained and
scored as it is, and every way its file can be wrong gets one line."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import evaluate_cam
import visualize_cam
from camlab.errors import CamError
from camlab.networks import subject
from helpers import nested_vgg16, run_fails, sequential_cnn, two_outputs


@pytest.fixture(scope="module")
def nested_file(tmp_path_factory) -> Path:
    """helpers.nested_vgg16 (tensorflow#44462's pattern), saved as a .keras file."""
    path = tmp_path_factory.mktemp("models") / "nested_vgg16.keras"
    nested_vgg16().save(path)
    return path


def flatten_head_file(folder: Path) -> Path:
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(inputs)
    x = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x))
    keras.Model(inputs, x).save(folder / "flat_head.keras")
    return folder / "flat_head.keras"


def test_visualize_explains_a_nested_model_on_own_images(nested_file, image_files, tmp_path,
                                                        capsys):
    photos = ",".join(str(image_files[name]) for name in ("rgb", "jpeg"))
    path = visualize_cam.main([f"--MODEL={nested_file}", f"--IMAGES={photos}",
                               f"--OUTPUT_DIR={tmp_path}", "--TOP_K=2", "--DPI=30",
                               "--CLASS_NAMES=cat,dog,fox,owl", "--METHOD=cam,gradcam"])
    run_dir = tmp_path / "nested_vgg16"  # the model file's stem
    assert path == run_dir / "heatmaps_images_gradcam.png" and path.is_file()
    assert (run_dir / "heatmaps_images.png").is_file()
    out = capsys.readouterr().out
    assert "nested_vgg16.keras: 4 classes at 32 px; gradients of the logits of output " \
           "'predictions'" in out
    assert "cam: maps of layer vgg16/block5_pool" in out
    saved = np.load(run_dir / "cams_images.npz")
    assert list(saved["class_names"]) == ["cat", "dog", "fox", "owl"]
    assert saved["cam_all_classes"].shape == (2, 1, 1, 4) and saved["probs"].shape == (2, 4)
    # CAM leaves the Dense bias out: softmax(mean CAM + bias) is the model's probability.
    bias = keras.models.load_model(nested_file).get_layer("predictions").bias.numpy()
    logits = saved["cam_all_classes"].mean(axis=(1, 2)) + bias
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(saved["probs"], softmax / softmax.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-6)


def sigmoid_cnn() -> keras.Model:
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(
        keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(1, activation="sigmoid", name="out")(
        keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("build, args, layer, column", [
    (sequential_cnn, [], "c2", None), (two_outputs, ["--OUTPUT=size"], "size_conv", 1),
    (sigmoid_cnn, [], "conv", None)])
def test_each_model_shape_goes_through_model(tmp_path, image_files, capsys, build, args,
                                             layer, column):
    """Through the MODEL setting: the layer found, and the probabilities saved beside the
    figure equal the model's own (one sigmoid unit p: the two classes 1 - p and p)."""
    model = build()
    model.save(tmp_path / "shape.keras")
    photo = image_files["rgb"]
    visualize_cam.main([f"--MODEL={tmp_path / 'shape.keras'}", f"--IMAGES={photo}",
                        f"--OUTPUT_DIR={tmp_path}", "--METHOD=gradcam", "--TOP_K=1",
                        "--DPI=20", *args])
    assert f"gradcam: maps of layer {layer}" in capsys.readouterr().out
    saved = np.load(tmp_path / "shape" / "cams_images_gradcam.npz")
    own = model(saved["images"].astype(np.float32))
    own = np.asarray(own[column] if column is not None else own)
    if own.shape[1] == 1:
        own = np.concatenate([1 - own, own], axis=1)
    np.testing.assert_allclose(saved["probs"], own, rtol=1e-4, atol=1e-6)


def test_a_model_is_scored_the_same_as_the_run_that_saved_it(demo_run):
    """evaluate_cam.py on the demo run's model.keras through MODEL and DATASET gives the
    numbers of the same run through RUN_NAME."""
    root, run_dir = demo_run
    common = [f"--OUTPUT_DIR={root}", "--MAX_IMAGES=16", "--BATCH_SIZE=16", "--STEPS=2",
              "--METHOD=gradcam"]
    by_run = json.loads(evaluate_cam.main(["--RUN_NAME=demo", *common]).read_text())
    path = evaluate_cam.main([f"--MODEL={run_dir / 'model.keras'}", "--DATASET=cam_shapes",
                              f"--DATA_DIR={root / 'data'}", *common])
    assert path == root / "model" / "metrics_gradcam_first16.json"
    by_model = json.loads(path.read_text())
    assert by_model["model"] == str(run_dir / "model.keras") and by_model["score"] == "logit"
    assert by_model["layer"] == by_run["layer"] == "relu3_2"
    for target in ("predicted_class", "true_class"):
        for key, value in by_run[target].items():
            if key == "ci95":  # intervals of the same per-image scores: within 1e-6 too
                for name, (low, high) in value.items():
                    assert by_model[target][key][name] == pytest.approx([low, high],
                                                                        abs=1e-6), name
            else:
                assert by_model[target][key] == pytest.approx(value, abs=1e-6), key
    assert by_model["accuracy"] == by_run["accuracy"]


@pytest.mark.parametrize("args, message", [
    (["--METHOD=cam"], "METHOD=\"cam\" does not apply to this model: CAM needs the head to be "
                       "exactly GlobalAveragePooling2D -> Dense"),
    (["--LAYER=conv9", "--METHOD=gradcam"],
     "LAYER='conv9' is not a layer of this model with a 4-D output; choose one of conv"),
    (["--IMAGES=", "--METHOD=gradcam"],
     "MODEL needs images to explain: set IMAGES (your files) or DATASET"),
    (["--CLASS_NAMES=a,b"], "CLASS_NAMES gives 2 class names and the model has 3 classes"),
    (["--OUTPUT=probs"], "OUTPUT='probs' is not an output of the model"),
    (["--PREPROCESS=imagenet"], "PREPROCESS='imagenet'; choose one of none, caffe, tf"),
])
def test_visualize_refuses_what_the_model_cannot_do(tmp_path, image_files, args, message):
    model = flatten_head_file(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    run_fails(visualize_cam.main, [f"--MODEL={model}", f"--IMAGES={image_files['rgb']}",
                                   f"--OUTPUT_DIR={out}", *args], out, message)
    assert not any(out.iterdir())


def test_gradient_methods_work_where_cam_is_refused(tmp_path, image_files):
    path = visualize_cam.main([f"--MODEL={flatten_head_file(tmp_path)}", "--TOP_K=1",
                               f"--IMAGES={image_files['rgb']}", f"--OUTPUT_DIR={tmp_path}",
                               "--METHOD=gradcam,scorecam", "--DPI=30"])
    assert path.name == "heatmaps_images_scorecam.png"
    assert "cams" not in np.load(tmp_path / "flat_head" / "cams_images_gradcam.npz")


def test_bad_model_files_get_one_line(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"\x80\x02torch")
    with pytest.raises(CamError, match="is not a Keras model file: give a .keras file"):
        subject.load_model_file(tmp_path / "weights.pt")
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(CamError, match="could not be loaded as a Keras model"):
        subject.load_model_file(tmp_path / "broken.keras")
    with pytest.raises(CamError, match="not found"):
        subject.load_model_file(tmp_path / "missing.keras")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    model.save_weights(tmp_path / "only.weights.h5")
    with pytest.raises(CamError, match="holds weights only; save the whole model"):
        subject.load_model_file(tmp_path / "only.weights.h5")


CUSTOM_LAYER = '''
import keras


@keras.saving.register_keras_serializable(package="mine")
class Doubled(keras.layers.Layer):
    def call(self, x):
        return 2 * x
'''


def test_a_custom_layer_is_named_and_loads_with_custom_code(tmp_path):
    code = tmp_path / "layers.py"
    code.write_text(CUSTOM_LAYER)
    doubled = subject.custom_objects(str(code))["Doubled"]
    inputs = keras.Input((16, 16, 3))
    x = doubled()(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    outputs = keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(tmp_path / "custom.keras")
    del keras.saving.get_custom_objects()["mine>Doubled"]  # a new process knows nothing of it
    with pytest.raises(CamError, match="uses the custom class 'Doubled', which Keras "
                                       "cannot find: put its class in a .py file, decorated "
                                       "with @keras.saving.register_keras_serializable"):
        subject.load_model_file(tmp_path / "custom.keras")
    loaded = subject.load_model_file(tmp_path / "custom.keras", str(code))
    assert type(loaded.layers[2]).__name__ == "Doubled"
    with pytest.raises(CamError, match="CUSTOM_CODE='layers.txt' is not a Python file"):
        subject.custom_objects("layers.txt")


@pytest.mark.parametrize("setting", ["--CLASS_NAMES=a,b", "--PREPROCESS=caffe",
                                     "--OUTPUT=kind", "--CUSTOM_CODE=x.py"])
def test_model_settings_are_refused_for_a_run(small_run, setting):
    output_dir, run_dir = small_run
    name = setting[2:].split("=")[0]
    run_fails(visualize_cam.main, [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock", setting],
              run_dir, f"{name} applies to a MODEL file only")


def test_a_run_is_explained_on_its_own_dataset(small_run):
    output_dir, run_dir = small_run
    run_fails(evaluate_cam.main, [f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock",
                                  "--DATASET=cam_shapes"], run_dir,
              "DATASET='cam_shapes', but run 'mock' was trained on")


def test_class_names_from_a_file_or_a_list(tmp_path):
    names_file = tmp_path / "names.txt"
    names_file.write_text("tabby cat\n\nred fox\n")
    description = {"DATASET": ""}
    assert subject.class_names({"CLASS_NAMES": str(names_file)}, description, 2) == [
        "tabby cat", "red fox"]
    assert subject.class_names({"CLASS_NAMES": " a, b ,c"}, description, 3) == ["a", "b", "c"]
    assert subject.class_names({"CLASS_NAMES": ""}, description, 2) == ["class 0", "class 1"]
