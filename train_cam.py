"""Fine-tunes a GAP classifier (VGG19 by default) for class activation maps and saves it.

Run `python train_cam.py`, editing the constants below or overriding them:
`python train_cam.py --EPOCHS=2 --RUN_NAME=quick`. `--PRESET=demo` trains the offline demo.
Writes outputs/<RUN_NAME>/: weights.weights.h5 (best validation accuracy), config.json,
history.csv.
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import cam_config
import cam_data
import cam_models
from cam_config import CamError

PRESET = ""  # "" or a file name in presets/ without .json ("demo"); the command line wins
DATASET = "imagenette/320px"  # a tfds name; "cam_shapes" is the embedded demo dataset
DATA_DIR = ""  # tfds data folder; "" = tfds' default (~/tensorflow_datasets)
TRAIN_SPLIT = "train"  # tfds split to train on
VALIDATION_SPLIT = "validation"  # tfds split to validate on after every epoch
BACKBONE = "vgg19"  # "vgg19" (seed) or "small_vgg" (demo: batch norm, learns from scratch)
WEIGHTS = "imagenet"  # backbone start: "imagenet", "" (random) or a weights file path
IMAGE_SIZE = 320  # pixels, square; VGG19 gives 10x10 feature maps at 320
BATCH_SIZE = 16  # training images per step (global batch, split across devices)
VALIDATION_BATCH_SIZE = 8  # images per validation step
EPOCHS = 10  # passes over the training split
LEARNING_RATE = 1e-5  # Adam step size
LR_SCHEDULE = "constant"  # "constant" (the seed) or "cosine" (decays to 0 over EPOCHS)
SHUFFLE_BUFFER = 15000  # examples; 15,000 holds all of imagenette's train split
SEED = 1234  # seeds weights, shuffling and file order; validation is never shuffled
DETERMINISTIC = True  # True: TF op determinism, the same run twice gives the same bits
MIXED_PRECISION = "auto"  # "auto", "float32", "mixed_bfloat16" or "mixed_float16"
STRATEGY = "auto"  # "auto" (mirrored on 2+ GPUs), "default", "mirrored" or "multiworker"
CACHE = "auto"  # "auto" (keep resized images in memory when they fit), "yes" or "no"
RUN_NAME = "imagenette"  # results go to OUTPUT_DIR/RUN_NAME/
RESUME = False  # True continues an interrupted run of RUN_NAME from its last finished epoch
OUTPUT_DIR = "outputs"  # folder holding one subfolder per run

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
CACHE_CHOICES = ("auto", "yes", "no")
LR_SCHEDULES = ("constant", "cosine")
CACHE_MEMORY_FRACTION = 0.25  # CACHE="auto" caches when the resized split fits in this share


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
    if choice not in PRECISIONS:
        raise CamError(f"MIXED_PRECISION={choice!r}; choose one of {', '.join(PRECISIONS)}")
    if choice != "auto":
        return choice
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


def distribution_strategy(choice: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy for STRATEGY: "auto" mirrors over all GPUs when 2+.

    MirroredStrategy keeps a copy of the model per device, splits each global batch of
    BATCH_SIZE across them and averages the gradients, so results match one device.
    """
    if choice not in STRATEGIES:
        raise CamError(f"STRATEGY={choice!r}; choose one of {', '.join(STRATEGIES)}")
    if choice == "multiworker":  # the cluster comes from the TF_CONFIG environment variable
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if choice == "mirrored" or (choice == "auto" and len(gpus) > 1):
        # Without GPUs, mirror over the logical CPU devices (how the tests stand in for two).
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    return tf.distribute.get_strategy()


def should_cache(choice: str, num_examples: int, image_size: int) -> bool:
    """CACHE: "auto" keeps the resized float32 split in memory when it fits comfortably."""
    if choice not in CACHE_CHOICES:
        raise CamError(f"CACHE={choice!r}; choose one of {', '.join(CACHE_CHOICES)}")
    if choice != "auto":
        return choice == "yes"
    needed = num_examples * image_size * image_size * 3 * 4
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 0 < needed < CACHE_MEMORY_FRACTION * memory


def learning_rate(config: dict[str, Any], steps_per_epoch: int):
    """LEARNING_RATE, constant or decayed along a cosine to 0 at the last step."""
    if config["LR_SCHEDULE"] not in LR_SCHEDULES:
        raise CamError(f"LR_SCHEDULE={config['LR_SCHEDULE']!r}; choose one of "
                       f"{', '.join(LR_SCHEDULES)}")
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
    """Keeps the weights of the epoch with the best `monitor`, written atomically.

    Keras' ModelCheckpoint writes in place, so an interrupted save leaves a truncated file
    that visualize_cam.py would then try to load; this writes beside it and renames, and
    stamps the file with what it was trained as (cam_models.save_weights).
    """

    def __init__(self, path: Path, run_config: dict, monitor: str = "val_accuracy",
                 best: float = -float("inf")):
        super().__init__()
        self.path, self.run_config, self.monitor, self.best = path, run_config, monitor, best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor, -float("inf"))
        if value > self.best:
            self.best = value
            cam_models.save_weights(self.model, self.path, self.run_config)
            print(f"\nsaved {self.path} ({self.monitor} {value:.4f}, epoch {epoch + 1})")


def check_config(config: dict[str, Any]) -> None:
    """Rejects values no run could use, before anything is loaded."""
    for name in ("BATCH_SIZE", "VALIDATION_BATCH_SIZE", "EPOCHS", "IMAGE_SIZE"):
        if config[name] < 1:
            raise CamError(f"{name}={config[name]} must be at least 1")
    if not config["LEARNING_RATE"] > 0:
        raise CamError(f"LEARNING_RATE={config['LEARNING_RATE']} must be positive")
    if config["BACKBONE"] in cam_models.MIN_IMAGE_SIZE:
        minimum = cam_models.MIN_IMAGE_SIZE[config["BACKBONE"]]
        if config["IMAGE_SIZE"] < minimum:
            raise CamError(f"IMAGE_SIZE={config['IMAGE_SIZE']} is below "
                           f"{config['BACKBONE']}'s minimum of {minimum} pixels")
    if not config["RUN_NAME"] or "/" in config["RUN_NAME"]:
        raise CamError(f"RUN_NAME={config['RUN_NAME']!r} must be a plain folder name")


def input_pipelines(config: dict[str, Any], builder, num_classes: int):
    """Training and validation batches; returns (train, validation, cached)."""
    train_examples = cam_data.load_split(builder, config["TRAIN_SPLIT"], config["DATA_DIR"],
                                         config["SEED"])
    cached = should_cache(config["CACHE"], int(train_examples.cardinality()),
                          config["IMAGE_SIZE"])
    train = cam_data.batches(train_examples, config["IMAGE_SIZE"], num_classes,
                             config["BATCH_SIZE"], config["SHUFFLE_BUFFER"], config["SEED"],
                             cache=cached)
    validation = cam_data.batches(
        cam_data.load_split(builder, config["VALIDATION_SPLIT"], config["DATA_DIR"]),
        config["IMAGE_SIZE"], num_classes, config["VALIDATION_BATCH_SIZE"], cache=cached)
    return train, validation, cached


def previous_best(history: Path, monitor: str = "val_accuracy") -> float:
    """The best `monitor` in a run's history.csv, so a resumed run keeps its best weights."""
    if not history.is_file():
        return -float("inf")
    with history.open(newline="") as rows:
        return max((float(row[monitor]) for row in csv.DictReader(rows) if row.get(monitor)),
                   default=-float("inf"))


def prepare_run_dir(config: dict[str, Any]) -> Path:
    """The run folder, checked for RESUME; a fresh run drops the previous run's state.

    Resuming needs the backup BackupAndRestore leaves behind and the same configuration
    (apart from RESUME itself); anything else would mix two different trainings.
    """
    run_dir = Path(config["OUTPUT_DIR"]) / config["RUN_NAME"]
    backup = run_dir / "backup"
    if not config["RESUME"]:
        shutil.rmtree(backup, ignore_errors=True)
        for stale in ("weights.weights.h5", "history.csv"):
            (run_dir / stale).unlink(missing_ok=True)
        return run_dir
    if not backup.is_dir():
        raise CamError(f"nothing to resume in {run_dir}: no interrupted training there "
                       "(a finished run deletes its backup); run without --RESUME=True")
    saved = cam_config.read_run_config(run_dir)
    changed = [name for name in config if name != "RESUME" and saved.get(name) != config[name]]
    if changed:
        raise CamError(f"cannot resume {run_dir} with a different configuration ("
                       + ", ".join(f"{n}: {saved.get(n)!r} -> {config[n]!r}" for n in changed)
                       + "); use the original values or another RUN_NAME")
    return run_dir


def run(config: dict[str, Any]) -> Path:
    """Trains with a resolved configuration; returns the run folder."""
    check_config(config)
    print("configuration:", *(f"  {k} = {v!r}" for k, v in config.items()), sep="\n")
    policy = precision_policy(config["MIXED_PRECISION"])
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(config["SEED"])
    if config["DETERMINISTIC"]:
        tf.config.experimental.enable_op_determinism()
    strategy = distribution_strategy(config["STRATEGY"])
    builder = cam_data.get_builder(config["DATASET"], config["DATA_DIR"])
    names = cam_data.class_names(builder)
    train, validation, cached = input_pipelines(config, builder, len(names))
    with strategy.scope():
        model = cam_models.build_model(config["BACKBONE"], config["IMAGE_SIZE"], len(names),
                                       config["WEIGHTS"])
        compile_model(model, learning_rate(config, int(train.cardinality())))
    run_dir = prepare_run_dir(config)  # only now, so a failed start leaves old results
    run_config = {
        **config, "class_names": names, "precision_policy": policy, "cached": cached,
        "replicas": strategy.num_replicas_in_sync,
        "feature_shape": list(model.get_layer("gap").input.shape[1:]),
        "devices": [device.name for device in tf.config.list_logical_devices()],
        "versions": cam_config.library_versions()}
    cam_config.write_json(run_dir / "config.json", run_config)
    history = run_dir / "history.csv"
    callbacks = [
        # Saves model and optimizer state after every epoch; on RESUME restores the last.
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), double_checkpoint=True),
        SaveBestWeights(run_dir / "weights.weights.h5", run_config, best=previous_best(history)),
        keras.callbacks.CSVLogger(str(history), append=config["RESUME"])]
    model.fit(train, validation_data=validation, epochs=config["EPOCHS"], shuffle=False,
              callbacks=callbacks)
    print(f"saved {history}")
    return run_dir


def main(argv: list[str] | None = None) -> Path:
    return cam_config.run_script(sys.modules[__name__], run, argv)


if __name__ == "__main__":
    main()
