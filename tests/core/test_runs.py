"""camlab.core.runs: atomic writes, and runs whose files are damaged or do not match."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

import cam_utils
import evaluate_cam
import visualize_cam
from camlab.core import runs
from camlab.maps import methods
from camlab.networks import classifier, models
from camlab.scores import metrics
from helpers import copy_run, edit_config, run_fails


def stamp(run_dir, identity: dict) -> None:
    """Re-stamps a run's weights as an earlier version of the project did."""
    with h5py.File(run_dir / "weights.weights.h5", "a") as weights_file:
        weights_file.attrs["cam_identity"] = json.dumps(identity)


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), runs.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_result_files_are_read_and_written_without_tensorflow(tmp_path):
    """camlab.report.results and camlab.report.plots share runs' atomic writes, history.csv
    reader and machine record; runs imports Keras only in the functions that need it."""
    code = ("import sys; from camlab.core import runs; from camlab.report import plots, results; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "False"], result.stderr
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\n")
    assert runs.cpu_model(cpuinfo) == "AMD EPYC 9R14"
    machine = runs.this_machine()
    assert machine["cpu"] == runs.cpu_model() and machine["cores"] == os.cpu_count()


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "weights.weights.h5").unlink(), "weights.weights.h5 not found"),
    (lambda d: (d / "weights.weights.h5").write_bytes(
        (d / "weights.weights.h5").read_bytes()[:4096]), "is damaged or truncated"),
    (lambda d: (d / "config.json").write_text('{"IMAGE_SIZE": 3'), "is not valid JSON"),
    (lambda d: (d / "config.json").unlink(), "config.json not found"),
    (lambda d: edit_config(d, class_names=list("abcde")), "does not fit the model"),
    (lambda d: edit_config(d, BACKBONE="vgg19"), "does not fit the model"),
    (lambda d: edit_config(d, IMAGE_SIZE=64), "IMAGE_SIZE 32 in the weights, 64 in config"),
    (lambda d: edit_config(d, BACKBONE="resnet"),
     "BACKBONE 'small_vgg' in the weights, 'resnet' in config.json"),
    (lambda d: (d / "model.keras").unlink(), "model.keras not found beside its weights"),
    (lambda d: (d / "model.keras").write_bytes(b"PK"), "model.keras could not be loaded"),
    (lambda d: stamp(d, {"BACKBONE": "vgg19", "IMAGE_SIZE": 32}),
     "was trained by an earlier version of this project, whose models nested the backbone"),
])
@pytest.mark.parametrize("main", [visualize_cam.main, evaluate_cam.main])
def test_damaged_or_mismatched_runs_are_explained(small_run, tmp_path, damage, message,
                                                  main):
    output_dir, run_dir = small_run
    broken = copy_run(run_dir, tmp_path / "broken")
    damage(broken)
    run_fails(main, [f"--OUTPUT_DIR={tmp_path}", "--RUN_NAME=broken"], broken, message)


LOAD_WITH_PLAIN_KERAS = """
import sys
import keras
import numpy as np
model = keras.models.load_model(sys.argv[1])
images = np.random.default_rng(0).uniform(0, 255, (4, *model.input_shape[1:])).astype("float32")
np.save(sys.argv[2], model.predict(images, verbose=0))
"""


@pytest.mark.parametrize("fixture", ["trained_run", "demo_run"])
def test_model_keras_loads_with_plain_keras_and_equals_the_weights(request, fixture, tmp_path):
    """A fresh process that never imports this project (run from an empty folder, no
    project path) loads model.keras and gives the probabilities of the stamped weights."""
    _, run_dir = request.getfixturevalue(fixture)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", LOAD_WITH_PLAIN_KERAS, str(run_dir / "model.keras"),
                    str(tmp_path / "probs.npy")], cwd=tmp_path, env=env, check=True,
                   timeout=120)
    config = runs.read_run_config(run_dir)
    rebuilt = models.build_model(config["BACKBONE"], config["IMAGE_SIZE"],
                                 len(config["class_names"]))
    rebuilt.load_weights(run_dir / "weights.weights.h5")
    size = config["IMAGE_SIZE"]
    images = np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype("float32")
    np.testing.assert_allclose(np.load(tmp_path / "probs.npy"),
                               rebuilt.predict(images, verbose=0), rtol=1e-5, atol=1e-6)
    assert not any(isinstance(layer, keras.Model) for layer in rebuilt.layers)


def test_tf_keras_vis_grad_cam_runs_on_a_trained_flat_model(demo_run):
    """tf-keras-vis fails on a nested backbone ("Output with path 1 is not connected to
    inputs"); on the flat model its Grad-CAM runs and finds what ours finds."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    _, run_dir = demo_run
    model = runs.load_trained_model(run_dir, runs.read_run_config(run_dir))
    images = np.random.default_rng(4).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    classes = [1, 4, 7]
    theirs = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)(
        CategoricalScore(classes), images, penultimate_layer="relu3_2",
        seek_penultimate_conv_layer=False, normalize_cam=False)
    explained = classifier.explain(keras.models.clone_model(model))  # explain() edits a model
    explained.model.set_weights(model.get_weights())
    features, _ = explained.features(images)
    ours = methods.maps_for_classes("gradcam", explained, features,
                                    np.array(classes)[:, None].astype(np.int32))[..., 0]
    assert theirs.shape == (3, 64, 64) and np.isfinite(theirs).all()
    # Both are Grad-CAM of the same layer; tf-keras-vis upsamples (corner-aligned) inside.
    ours_up = cam_utils.upsample(ours[..., None], (64, 64))[..., 0]
    correlation = metrics.rank_correlation(ours_up, theirs).numpy()
    assert correlation.min() > 0.9, correlation
