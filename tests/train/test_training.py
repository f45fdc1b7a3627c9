"""camlab.train.training: the loss, tf.distribute on two devices, the kept weights, history."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from camlab.core import runs
from camlab.errors import CamError
from camlab.networks import models
from camlab.train import training

ONE_STEP = Path(__file__).with_name("one_training_step.py")


def test_training_loss_is_cross_entropy_of_true_labels():
    """Guards the seed's cce(pred, labels) swap: Keras' loss must be -sum(y log p)."""
    keras.utils.set_random_seed(0)
    model = models.build_model("small_vgg", 32, 5)
    training.compile_model(model, 1e-3)
    rng = np.random.default_rng(1)
    images = rng.uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    labels = np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 0]]
    probs = model.predict(images, verbose=0)
    expected = -np.mean(np.sum(labels * np.log(probs), axis=1))
    swapped = -np.mean(np.sum(probs * np.log(np.clip(labels, 1e-7, 1)), axis=1))
    result = model.evaluate(images, labels, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(expected, rel=1e-4)
    assert abs(result["loss"] - swapped) > 0.5
    assert result["accuracy"] == pytest.approx(np.mean(probs.argmax(1) == labels.argmax(1)))


def one_step(tmp_path, devices, strategy):
    out = tmp_path / f"{devices}_{strategy}.npz"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, str(ONE_STEP), str(devices), strategy, str(out)],
                   check=True, env=env, timeout=300)
    return np.load(out)


def test_mirrored_over_two_devices_equals_one_device(tmp_path):
    single = one_step(tmp_path, 1, "default")
    mirrored = one_step(tmp_path, 2, "mirrored")
    assert int(single["replicas"]) == 1 and int(mirrored["replicas"]) == 2
    assert float(mirrored["loss"]) == pytest.approx(float(single["loss"]), rel=1e-5)
    names = [key for key in single.files if key.startswith("w")]
    assert len(names) > 30
    for name in names:
        np.testing.assert_allclose(mirrored[name], single[name], rtol=1e-4, atol=1e-6)
    # The step really moved the weights, so agreeing is not agreeing on the start.
    np.testing.assert_array_equal(single["initial"], mirrored["initial"])
    assert np.abs(single["w0"] - single["initial"]).max() > 1e-4


def test_a_single_process_is_its_own_chief_and_shards_nothing_away():
    """Outside a multi-worker cluster the process writes the run and has no worker name;
    sharding by example only takes effect across workers, so the batches stay the same."""
    strategy = training.distribution_strategy("default")
    assert training.is_chief(strategy) and training.worker_name(strategy) == ""
    batches = tf.data.Dataset.range(10).batch(4)
    sharded = training.shard_by_example(batches)
    assert (sharded.options().experimental_distribute.auto_shard_policy
            == tf.data.experimental.AutoShardPolicy.DATA)
    assert [list(b.numpy()) for b in sharded] == [list(b.numpy()) for b in batches]


def test_unknown_strategy_is_rejected():
    with pytest.raises(CamError, match="STRATEGY='tpu'; choose one of auto, default, mirrored"):
        training.distribution_strategy("tpu")


IDENTITY = {"BACKBONE": "small_vgg", "IMAGE_SIZE": 16, "class_names": ["a", "b", "c"]}


@pytest.mark.parametrize("keep, kept_after", [("last", [0, 1, 2]), ("best", [0, 0, 2])])
def test_kept_weights_are_the_last_or_the_best_epoch(tmp_path, keep, kept_after):
    model = models.build_model("small_vgg", 16, 3)
    kept = training.KeptWeights(tmp_path, IDENTITY, keep)
    kept.set_model(model)
    for epoch, accuracy in enumerate([0.5, 0.4, 0.7]):
        model.get_layer("classifier").kernel.assign(np.full((64, 3), epoch, np.float32))
        kept.on_epoch_end(epoch, {"val_accuracy": accuracy, "loss": 1.0})
        in_file = runs.load_trained_model(tmp_path, IDENTITY)
        assert in_file.get_layer("classifier").kernel.numpy()[0, 0] == kept_after[epoch]
        assert kept.kept["epoch"] == kept_after[epoch] + 1


def test_a_resumed_best_run_must_beat_the_best_of_its_history(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,accuracy,val_accuracy\n1,0.5,0.6\n2,0.6,0.8\n3,0.7,0.7\n")
    previous = training.best_epoch(history)
    assert previous == {"epoch": 2, "accuracy": 0.6, "val_accuracy": 0.8}
    kept = training.KeptWeights(tmp_path, IDENTITY, "best", previous)
    kept.set_model(models.build_model("small_vgg", 16, 3))
    kept.on_epoch_end(3, {"val_accuracy": 0.75})
    assert not (tmp_path / "weights.weights.h5").exists() and kept.kept["epoch"] == 2
    assert training.best_epoch(tmp_path / "missing.csv") == {}


def test_history_rows_are_numbered_from_one_and_a_rerun_epoch_replaces_its_row(tmp_path):
    path = tmp_path / "history.csv"
    logger = training.EpochHistory(path, keep_rows=False)
    for epoch in range(2):
        logger.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5})
    assert path.read_text().splitlines() == ["epoch,accuracy,loss", "1,0.5,1.0", "2,0.5,0.5"]
    resumed = training.EpochHistory(path, keep_rows=True)
    resumed.on_epoch_end(1, {"loss": 0.25, "accuracy": 0.75})  # epoch 2 run again
    resumed.on_epoch_end(2, {"loss": 0.2, "accuracy": 0.8})
    assert path.read_text().splitlines() == ["epoch,accuracy,loss", "1,0.5,1.0",
                                             "2,0.75,0.25", "3,0.8,0.2"]
    assert training.EpochHistory(path, keep_rows=False).rows == []
