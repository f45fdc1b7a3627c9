"""How train_cam.py trains: precision, devices, caching, the optimiser, the kept weights.

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

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
CACHE_CHOICES = ("auto", "yes", "no")
LR_SCHEDULES = ("constant", "cosine")
MONITOR = "val_accuracy"  # what the kept weights are chosen by


def cpu_has_bfloat16() -> bool:
    """True when the CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def precision_policy(choice: str) -> str:
    """The Keras dtype policy for MIXED_PRECISION: "auto" picks what is fast here.

    float16 on a GPU (tensor cores), bfloat16 on a CPU with bfloat16 units (4-5x faster
    for VGG19 on ours), float32 otherwise.
    """
    if check_choice("MIXED_PRECISION", choice, PRECISIONS) != "auto":
        return choice
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


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


class SaveBestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best MONITOR, written atomically.

    Keras' ModelCheckpoint writes in place, so an interrupted save leaves a truncated file
    that visualize_cam.py would then try to load; this writes beside it and renames, and
    stamps the file with what it was trained as (runs.save_weights).
    """

    def __init__(self, path: Path, run_config: dict, best: float = -float("inf")):
        super().__init__()
        self.path, self.run_config, self.best = path, run_config, best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(MONITOR, -float("inf"))
        if value > self.best:
            self.best = value
            runs.save_weights(self.model, self.path, self.run_config)
            print(f"\nsaved {self.path} ({MONITOR} {value:.4f}, epoch {epoch + 1})")


def previous_best(history: Path) -> float:
    """The best MONITOR in a run's history.csv, so a resumed run keeps its best weights."""
    if not history.is_file():
        return -float("inf")
    with history.open(newline="") as rows:
        return max((float(row[MONITOR]) for row in csv.DictReader(rows) if row.get(MONITOR)),
                   default=-float("inf"))
