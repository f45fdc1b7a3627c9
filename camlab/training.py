"""How train_cam.py trains: devices, caching, the optimiser, the kept weights.

The precision policy is chosen in camlab.precision.

Each function turns one setting into what Keras or tf.distribute needs, and rejects a value
no run could use with a CamError.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from camlab import runs
from camlab.errors import check_choice

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
CACHE_CHOICES = ("auto", "yes", "no")
LR_SCHEDULES = ("constant", "cosine")
KEEP_CHOICES = ("last", "best")
MONITOR = "val_accuracy"  # what KEEP="best" chooses the epoch by


def distribution_strategy(choice: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for STRATEGY: "auto" mirrors over all GPUs when 2+.

    MirroredStrategy keeps a copy of the model per device, splits each global batch of
    BATCH_SIZE across them and averages the gradients, so results match one device.
    """
    check_choice("STRATEGY", choice, STRATEGIES)
    if choice == "multiworker":  # the cluster comes from the TF_CONFIG environment variable
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if choice == "mirrored" or (choice == "auto" and len(gpus) > 1):
        # Without GPUs, mirror over the logical CPU devices (how the tests stand in for two).
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


def should_cache(choice: str, num_examples: int, image_size: int,
                 memory_fraction: float) -> bool:
    """CACHE: "auto" keeps the resized float32 split in memory when it takes less than
    `memory_fraction` of the machine's RAM."""
    if check_choice("CACHE", choice, CACHE_CHOICES) != "auto":
        return choice == "yes"
    needed = num_examples * image_size * image_size * 3 * 4
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 0 < needed < memory_fraction * memory


def learning_rate(config: dict[str, Any], steps_per_epoch: int):
    """LEARNING_RATE, constant or decayed along a cosine to 0 at the last step."""
    check_choice("LR_SCHEDULE", config["LR_SCHEDULE"], LR_SCHEDULES)
    if config["LR_SCHEDULE"] == "constant" or steps_per_epoch < 1:
        return config["LEARNING_RATE"]
    return keras.optimizers.schedules.CosineDecay(config["LEARNING_RATE"],
                                                  config["EPOCHS"] * steps_per_epoch)


def compile_model(model: keras.Model, learning_rate) -> None:
    """Adam on categorical cross-entropy; Keras calls both as (y_true, y_pred)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(),
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])


class KeptWeights(keras.callbacks.Callback):
    """Writes the weights a run keeps, and its model.keras, atomically (runs.save_trained).

    KEEP="last" writes every epoch's weights, so the file holds the last finished epoch
    (the post's choice); KEEP="best" writes only when MONITOR improves, which train_cam.py
    measures on a slice held out of the training split. Keras' ModelCheckpoint writes in
    place, so an interrupted save would leave a truncated file for visualize_cam.py.
    """

    def __init__(self, run_dir: Path, run_config: dict, keep: str,
                 previous: dict | None = None):
        super().__init__()
        self.run_dir, self.run_config = run_dir, run_config
        self.keep = check_choice("KEEP", keep, KEEP_CHOICES)
        # "epoch" (from 1) and the logs of the kept epoch; a resumed run starts from the
        # best row of its history.csv, whose weights are already in the file.
        self.kept: dict[str, float] = dict(previous or {})
        self.best = self.kept.get(MONITOR, -float("inf"))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        value = logs.get(MONITOR, -float("inf"))
        if self.keep == "last" or value > self.best:
            self.best = max(self.best, value)
            runs.save_trained(self.model, self.run_dir, self.run_config)
            self.kept = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}


class EpochHistory(keras.callbacks.Callback):
    """history.csv: a row per finished epoch, numbered from 1 as on screen, the file
    rewritten atomically after each, so a killed run leaves whole rows.

    With `keep_rows` (RESUME) the rows already there stay; an epoch that is run again
    after an interruption replaces its row.
    """

    def __init__(self, path: Path, keep_rows: bool):
        super().__init__()
        self.path = path
        self.rows: list[dict] = []
        if keep_rows and path.is_file():
            with path.open(newline="") as rows:
                self.rows = list(csv.DictReader(rows))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in sorted((logs or {}).items())}}
        self.rows = [r for r in self.rows if int(r["epoch"]) != epoch + 1] + [row]
        with runs.atomic_path(self.path) as tmp, tmp.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(self.rows)


def best_epoch(history: Path) -> dict[str, float]:
    """The row of history.csv with the best MONITOR, as numbers; {} when there is none.

    A resumed KEEP="best" run starts from it, so it keeps beating the same best.
    """
    if not history.is_file():
        return {}
    with history.open(newline="") as rows:
        scored = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(rows)
                  if row.get(MONITOR)]
    return max(scored, key=lambda row: row[MONITOR], default={})
