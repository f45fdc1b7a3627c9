"""camlab.train.probe through train_cam.py --TRAIN_LAYERS=head, on the demo's small generated data
(300 / 60 images), starting from the session's trained demo run (its model.keras)."""

from __future__ import annotations

import contextlib
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import train_cam
from camlab.core import runs, settings
from camlab.datasets import data, shapes
from camlab.errors import CamError
from camlab.networks import models
from camlab.train import probe

EPOCHS, BATCH, FEATURE_BATCH = 2, 64, 50  # FEATURE_BATCH x 2 = 100 images a cache file


def probe_training(demo_run, output_dir, *args):
    """The demo preset's head alone, from the demo run's backbone, without shuffling (so
    that a test can restate the batches), three cache files for the 300 training images."""
    root, demo_dir = demo_run
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shapes, "TRAIN_SIZE", 300)
        patch.setattr(shapes, "VALIDATION_SIZE", 60)
        patch.setattr(probe, "CHUNK_IMAGES", 2 * FEATURE_BATCH)
        return train_cam.main([
            "--PRESET=demo", "--TRAIN_LAYERS=head", f"--WEIGHTS={demo_dir / 'model.keras'}",
            f"--EPOCHS={EPOCHS}", f"--BATCH_SIZE={BATCH}",
            f"--VALIDATION_BATCH_SIZE={FEATURE_BATCH}", "--SHUFFLE_BUFFER=0",
            "--MIXED_PRECISION=float32", f"--DATA_DIR={root / 'data'}",
            f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=probe", *args])


@pytest.fixture(scope="module")
def probe_run(demo_run, tmp_path_factory):
    return probe_training(demo_run, tmp_path_factory.mktemp("probe"))


def split_images(demo_run, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 64, 64, 3) float32, labels (n,)) of a demo split, in file order."""
    builder = data.get_builder("cam_shapes", str(demo_run[0] / "data"))
    examples = data.load_split(builder, split, str(demo_run[0] / "data"))
    pairs = [(data.resize_image(e["image"], 64).numpy(), int(e["label"])) for e in examples]
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def gap_features(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Mean over the feature map of the layer feeding GAP, batch norm in inference mode."""
    maps = keras.Model(model.input, model.get_layer("gap").input)
    return np.concatenate([maps(images[i:i + 50], training=False).numpy().mean(axis=(1, 2))
                           for i in range(0, len(images), 50)])


def backbone_arrays(model: keras.Model) -> list[np.ndarray]:
    return [weight.numpy() for layer in models.backbone_layers(model) for weight in layer.weights]


def test_the_head_learns_on_the_frozen_backbones_features_as_a_dense_trained_directly(
        demo_run, probe_run):
    assert sorted(path.name for path in probe_run.iterdir()) == [
        "config.json", "curves.png", "history.csv", "model.keras", "weights.weights.h5"]
    config = json.loads((probe_run / "config.json").read_text())
    assert config["TRAIN_LAYERS"] == "head" and config["cached"] is True  # held in memory
    start = keras.models.load_model(demo_run[1] / "model.keras", compile=False)
    trained = runs.load_trained_model(probe_run, config)  # as visualize/evaluate load it
    before, after = backbone_arrays(start), backbone_arrays(trained)
    assert len(before) == len(after) > 20  # batch norm's moving statistics among them
    for start_array, end_array in zip(before, after, strict=True):
        assert start_array.tobytes() == end_array.tobytes()

    # The same optimiser on the same features: Adam with the demo's cosine schedule over
    # EPOCHS x 5 steps, from the head a seeded build_model starts with, batches in order.
    keras.utils.set_random_seed(config["SEED"])
    initial = models.build_model("small_vgg", 64, 10).get_layer("classifier").kernel.numpy()
    images, labels = split_images(demo_run, "train")
    features, onehot = gap_features(start, images), np.eye(10, dtype=np.float32)[labels]
    steps = math.ceil(len(labels) / BATCH)
    adam = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
        config["LEARNING_RATE"], EPOCHS * steps))
    kernel = keras.Variable(initial)
    for _ in range(EPOCHS):
        for at in range(0, len(labels), BATCH):
            with tf.GradientTape() as tape:
                probs = tf.nn.softmax(tf.matmul(features[at:at + BATCH], kernel))
                loss = -tf.reduce_mean(tf.reduce_sum(onehot[at:at + BATCH] * tf.math.log(probs),
                                                     axis=1))
            adam.apply([tape.gradient(loss, kernel)], [kernel])
    head = trained.get_layer("classifier").kernel.numpy()
    assert np.abs(kernel.numpy() - initial).max() > 1e-3  # it did move
    np.testing.assert_allclose(head, kernel.numpy(), rtol=1e-4, atol=1e-6)
    # model.keras is the whole classifier: softmax(GAP features @ the trained head).
    expected = tf.nn.softmax(features[:8] @ head).numpy()
    np.testing.assert_allclose(trained(images[:8]).numpy(), expected, rtol=1e-4, atol=1e-6)


@contextlib.contextmanager
def killed_in_second_file(original):
    """runs.atomic_path as if the process died while writing the second cache file: the
    first is complete, the second a partial temporary file that nothing cleans up."""
    written = []

    @contextlib.contextmanager
    def atomic_path(path, suffix=""):
        if path.suffix != ".npz":
            with original(path, suffix) as tmp:
                yield tmp
            return
        written.append(path)
        if len(written) == 2:
            (path.parent / f".{path.name}.killed.npz").write_bytes(b"PK\x03\x04 partial")
            raise RuntimeError("killed")
        with original(path, suffix) as tmp:
            yield tmp

    yield atomic_path


def test_an_interrupted_probe_resumes_from_its_complete_cache_files_then_removes_them(
        demo_run, probe_run, tmp_path, monkeypatch, capsys):
    with killed_in_second_file(runs.atomic_path) as dying:
        monkeypatch.setattr(runs, "atomic_path", dying)
        with pytest.raises(RuntimeError, match="killed"):
            probe_training(demo_run, tmp_path, "--CACHE=no")
    monkeypatch.undo()
    cache = tmp_path / "probe" / probe.CACHE_FOLDER
    complete = [path for path in cache.iterdir() if not path.name.startswith(".")]
    assert len(complete) == 1 and complete[0].name.endswith("_000000000-000000100.npz")
    with np.load(complete[0]) as chunk:  # the first 100 training images' GAP features
        start = keras.models.load_model(demo_run[1] / "model.keras", compile=False)
        images, labels = split_images(demo_run, "train")
        np.testing.assert_allclose(chunk["features"], gap_features(start, images[:100]),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(chunk["labels"], labels[:100])
    capsys.readouterr()

    resumed = probe_training(demo_run, tmp_path, "--CACHE=no", "--RESUME=True")
    out = capsys.readouterr().out
    assert "features of train: 100 of 300 images kept from" in out
    assert "features of train: 200 of 300 images (" in out  # computed: the rest only
    assert "features of validation: 60 of 60 images (" in out
    assert not cache.exists()
    assert json.loads((resumed / "config.json").read_text())["cached"] is False  # streamed
    # Streamed from the files after a resume, or held in memory in one go: the same bits.
    streamed, in_memory = (runs.load_trained_model(run, runs.read_run_config(run))
                           for run in (resumed, probe_run))
    for ours, theirs in zip(streamed.weights, in_memory.weights, strict=True):
        assert ours.numpy().tobytes() == theirs.numpy().tobytes()


def test_the_cache_key_names_what_the_features_depend_on(demo_run):
    builder = data.get_builder("cam_shapes", str(demo_run[0] / "data"))
    keras.utils.set_random_seed(0)
    model = models.build_model("small_vgg", 64, 10)
    key = probe.cache_key(builder, "train", 64, "small_vgg", model)
    assert key == probe.cache_key(builder, "train", 64, "small_vgg", model)
    assert len({key, probe.cache_key(builder, "validation", 64, "small_vgg", model),
                probe.cache_key(builder, "train", 96, "small_vgg", model)}) == 3
    model.get_layer("bn1_1").moving_mean.assign(np.ones(16, np.float32))  # a frozen weight
    other_weights = probe.cache_key(builder, "train", 64, "small_vgg", model)
    assert other_weights != key
    model.get_layer("classifier").kernel.assign(np.zeros((64, 10), np.float32))  # not in it
    assert probe.cache_key(builder, "train", 64, "small_vgg", model) == other_weights


@pytest.mark.parametrize("args, message", [
    (["--TRAIN_LAYERS=head", "--STRATEGY=multiworker", "--MIXED_PRECISION=float32"],
     'TRAIN_LAYERS="head" trains on one machine'),
    (["--WEIGHTS=out/probe/model.keras"], "is in this run's own folder, which the run replaces; "
                                          "train into another folder, e.g. --RUN_NAME=probe_all"),
])
def test_settings_a_probe_cannot_use_are_one_line(args, message):
    config = settings.resolve(train_cam.__file__, ["--OUTPUT_DIR=out", "--RUN_NAME=probe",
                                                   *args])
    with pytest.raises(CamError, match=message):
        train_cam.check_config(config)


def test_a_run_interrupted_before_train_layers_existed_resumes_as_a_fine_tune(tmp_path):
    config = settings.resolve(train_cam.__file__, [f"--OUTPUT_DIR={tmp_path}", "--RESUME"])
    run_dir = tmp_path / config["RUN_NAME"]
    (run_dir / "backup").mkdir(parents=True)
    older = {name: value for name, value in config.items() if name != "TRAIN_LAYERS"}
    runs.write_json(run_dir / "config.json", older)
    assert train_cam.check_resume(config) == run_dir
    with pytest.raises(CamError, match="TRAIN_LAYERS: 'all' -> 'head'"):
        train_cam.check_resume({**config, "TRAIN_LAYERS": "head"})
