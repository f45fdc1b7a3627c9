"""Fine-tunes a GAP classifier (VGG19 by default) for class activation maps and saves it.

Run `python train_cam.py`, editing the constants below or overriding them:
`python train_cam.py --EPOCHS=2 --RUN_NAME=quick`. `--PRESET=demo` trains the offline demo.
Writes outputs/<RUN_NAME>/: weights.weights.h5 (the last epoch's, or with KEEP="best" the
epoch best on a slice held out of the training split), config.json, history.csv.
`--TRAIN_LAYERS=head` trains the softmax head alone on a frozen backbone (camlab.train.probe).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import Any

from camlab.core import settings

# Before TensorFlow loads (seconds): answers --help, stops on a bad setting, quiets its log.
if __name__ == "__main__":
    settings.before_tensorflow(__file__)

import keras
import tensorflow as tf

from camlab.core import runs
from camlab.datasets import data, folders
from camlab.errors import CamError, check_choice
from camlab.networks import models
from camlab.report import plots
from camlab.train import precision, probe, training

PRESET = ""  # "" or a file name in presets/ without .json ("demo"); the command line wins
DATASET = "imagenette/320px"  # a tfds name ("cam_shapes": the demo), or a folder of class folders
DATA_DIR = ""  # tfds data folder; "" = tfds' default (~/tensorflow_datasets)
TRAIN_SPLIT = "train"  # tfds split to train on
VALIDATION_SPLIT = "validation"  # tfds split to validate on after every epoch
VALIDATION_FRACTION = 0.2  # a folder without split folders: share of images to validate on
# small_vgg and tiny_vgg (the same at half the channels) are the project's own, for WEIGHTS=""
BACKBONE = "vgg19"  # vgg19 vgg16 resnet50 mobilenet_v2 efficientnet_b0 convnext_tiny small_vgg
WEIGHTS = "imagenet"  # backbone start: "imagenet", "" (random), an .h5 file or a run's model.keras
# TRAIN_LAYERS="head" is a linear probe: the backbone stays as WEIGHTS made it (ImageNet's, or a
# trained run's: --WEIGHTS=outputs/demo/model.keras after `python train_cam.py --PRESET=demo`,
# with another RUN_NAME), each image's GAP features are computed once, from the image as it is
# (training augments nothing), then only the softmax head learns, in seconds an epoch.
TRAIN_LAYERS = "all"  # "all" fine-tunes every layer (the post); "head" trains the softmax only
IMAGE_SIZE = 320  # pixels, square; VGG19 gives 10x10 feature maps at 320
BATCH_SIZE = 16  # training images per step (global batch, split across devices)
VALIDATION_BATCH_SIZE = 8  # images per validation step (and feature step, TRAIN_LAYERS="head")
EPOCHS = 10  # passes over the training split
LEARNING_RATE = 1e-5  # Adam step size
LR_SCHEDULE = "constant"  # "constant" (the post) or "cosine" (decays to 0 over EPOCHS)
SHUFFLE_BUFFER = 15000  # examples; 15,000 holds all of imagenette's train split
SEED = 1234  # seeds weights, shuffling and file order; validation is never shuffled
DETERMINISTIC = True  # True: TF op determinism, the same run twice gives the same bits
MIXED_PRECISION = "auto"  # "auto" (timed here), "float32", "mixed_bfloat16" or "mixed_float16"
STRATEGY = "auto"  # "auto" (mirrored on 2+ GPUs), "default", "mirrored" or "multiworker"
WORKER_TIMEOUT = 60  # seconds a "multiworker" worker waits for the others to start or to answer
CACHE = "auto"  # "auto" (resized images, "head": features, in memory if they fit), "yes" or "no"
CACHE_MEMORY_FRACTION = 0.25  # CACHE="auto" caches when the resized split fits in this share
RUN_NAME = "imagenette"  # results go to OUTPUT_DIR/RUN_NAME/
RESUME = False  # True continues an interrupted run of RUN_NAME from its last finished epoch
KEEP = "last"  # weights kept: "last" epoch (the post), or "best" on a slice held out of TRAIN_SPLIT
HOLDOUT = 0.1  # KEEP="best": share of TRAIN_SPLIT held out (not trained on) to choose the epoch
OUTPUT_DIR = "outputs"  # folder holding one subfolder per run
TENSORFLOW_LOG = False  # True shows TensorFlow's C++ log lines (hidden: they are noise on CPUs)
# ---- end of settings ----


def check_config(config: dict[str, Any]) -> None:
    """Rejects values no run could use, before anything is loaded."""
    for name in ("BATCH_SIZE", "VALIDATION_BATCH_SIZE", "EPOCHS", "IMAGE_SIZE"):
        if config[name] < 1:
            raise CamError(f"{name}={config[name]} must be at least 1")
    if not config["LEARNING_RATE"] > 0:
        raise CamError(f"LEARNING_RATE={config['LEARNING_RATE']} must be positive")
    if config["BACKBONE"] in models.BACKBONES:
        minimum = models.BACKBONES[config["BACKBONE"]].min_size
        if config["IMAGE_SIZE"] < minimum:
            raise CamError(f"IMAGE_SIZE={config['IMAGE_SIZE']} is below "
                           f"{config['BACKBONE']}'s minimum of {minimum} pixels")
    check_choice("MIXED_PRECISION", config["MIXED_PRECISION"], precision.PRECISIONS)
    if config["MIXED_PRECISION"] == "auto" and config["STRATEGY"] == "multiworker":
        # Each worker would time its own steps, and two could pick different policies.
        raise CamError("MIXED_PRECISION=\"auto\" times the machine it runs on, so workers "
                       "could disagree; with STRATEGY=\"multiworker\" set it explicitly "
                       "(float32, mixed_bfloat16 or mixed_float16)")
    check_choice("KEEP", config["KEEP"], training.KEEP_CHOICES)
    check_choice("CACHE", config["CACHE"], training.CACHE_CHOICES)
    check_choice("LR_SCHEDULE", config["LR_SCHEDULE"], training.LR_SCHEDULES)
    check_choice("STRATEGY", config["STRATEGY"], training.STRATEGIES)
    check_choice("TRAIN_LAYERS", config["TRAIN_LAYERS"], probe.TRAIN_LAYERS)
    if config["TRAIN_LAYERS"] == "head" and config["STRATEGY"] == "multiworker":
        raise CamError("TRAIN_LAYERS=\"head\" trains on one machine (its epochs take seconds, "
                       "and its feature cache is one folder); use STRATEGY=\"auto\"")
    check_weights_outside_run(config)
    if config["STRATEGY"] == "multiworker" and config["RESUME"]:
        # The backup is on the chief's disk; the other workers could not restore it.
        raise CamError("RESUME=True cannot continue a STRATEGY=\"multiworker\" run (only the "
                       "chief keeps training state); start it again without --RESUME")
    if not config["WORKER_TIMEOUT"] > 0:
        raise CamError(f"WORKER_TIMEOUT={config['WORKER_TIMEOUT']} must be positive (seconds)")
    if config["KEEP"] == "best" and not 0 < config["HOLDOUT"] < 1:
        raise CamError(f"HOLDOUT={config['HOLDOUT']} must be between 0 and 1 (a share of "
                       "TRAIN_SPLIT) when KEEP=\"best\"")
    if not config["RUN_NAME"] or "/" in config["RUN_NAME"]:
        raise CamError(f"RUN_NAME={config['RUN_NAME']!r} must be a plain folder name")


def check_weights_outside_run(config: dict[str, Any]) -> None:
    """Refuses WEIGHTS that name a file of the run folder being written, which the run
    deletes or replaces (a probe of outputs/demo/model.keras needs its own RUN_NAME)."""
    if not models.is_model_file(config["WEIGHTS"]) and not config["WEIGHTS"].endswith(".h5"):
        return
    weights = Path(config["WEIGHTS"]).expanduser().resolve()
    run_dir = (Path(config["OUTPUT_DIR"]) / config["RUN_NAME"]).resolve()
    if weights.parent == run_dir:
        raise CamError(f"WEIGHTS={config['WEIGHTS']!r} is in this run's own folder, which the "
                       "run replaces; train into another folder, e.g. "
                       f"--RUN_NAME={config['RUN_NAME']}_{config['TRAIN_LAYERS']}")


def fit_validation_fraction(config: dict[str, Any]) -> None:
    """A folder DATASET without split folders, too small for VALIDATION_FRACTION to
    validate on any image, validates on one, unless the user set the fraction."""
    fitted, total = folders.fitting_fraction(
        config["DATASET"], (config["TRAIN_SPLIT"], config["VALIDATION_SPLIT"]),
        config["VALIDATION_FRACTION"])
    settings.adapt(config, "VALIDATION_FRACTION", fitted,
                   f"{config['VALIDATION_FRACTION']:g} of the {total} images in "
                   f"{config['DATASET']} is none")


def epoch_splits(config: dict[str, Any], builder) -> tuple[str, str]:
    """(split trained on, split measured after every epoch), as tfds split strings.

    KEEP="last" validates on VALIDATION_SPLIT, which only watches. KEEP="best" chooses
    the epoch, so it measures a slice of TRAIN_SPLIT held out from training instead, never
    the split evaluate_cam.py reports (tfds stores examples in shuffled order, so the
    first HOLDOUT share is a random sample).
    """
    if config["KEEP"] == "last":
        return config["TRAIN_SPLIT"], config["VALIDATION_SPLIT"]
    split = config["TRAIN_SPLIT"]
    if "[" in split:
        raise CamError(f"KEEP=\"best\" holds out part of TRAIN_SPLIT, which must then be a "
                       f"plain split name, not {split!r}")
    total = int(data.load_split(builder, split, config["DATA_DIR"],
                                setting="TRAIN_SPLIT").cardinality())
    if total >= 2 and round(config["HOLDOUT"] * total) == 0:
        settings.adapt(config, "HOLDOUT", 1 / total,
                       f"{config['HOLDOUT']:g} of the {total} examples is none")
    held = round(config["HOLDOUT"] * total)
    if not 0 < held < total:
        raise CamError(f"HOLDOUT={config['HOLDOUT']} of {total} examples leaves no examples to "
                       "train on or to choose with")
    return f"{split}[{held}:]", f"{split}[:{held}]"


def input_pipelines(config: dict[str, Any], builder, num_classes: int):
    """Training batches and the batches measured after every epoch (see epoch_splits);
    returns (train, measured, cached, splits)."""
    train_split, measured_split = epoch_splits(config, builder)
    train_examples = data.load_split(builder, train_split, config["DATA_DIR"],
                                     config["SEED"], setting="TRAIN_SPLIT")
    cached = training.should_cache(config["CACHE"], int(train_examples.cardinality()),
                                   config["IMAGE_SIZE"], config["CACHE_MEMORY_FRACTION"])
    train = data.batches(train_examples, config["IMAGE_SIZE"], num_classes,
                         config["BATCH_SIZE"], config["SHUFFLE_BUFFER"], config["SEED"],
                         cache=cached)
    measured = data.batches(
        data.load_split(builder, measured_split, config["DATA_DIR"],
                        setting="VALIDATION_SPLIT"),
        config["IMAGE_SIZE"], num_classes, config["VALIDATION_BATCH_SIZE"], cache=cached)
    return train, measured, cached, {"trained_on": train_split, "measured_on": measured_split}


def precision_choice(config: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """MIXED_PRECISION resolved for this run (precision.precision_choice). A resumed run
    keeps the policy it started in: "auto" could time differently now, or elsewhere."""
    run_dir = Path(config["OUTPUT_DIR"]) / config["RUN_NAME"]
    if config["RESUME"] and (run_dir / "config.json").is_file():
        saved = runs.read_run_config(run_dir)
        if "precision_policy" in saved:
            started = saved.get("precision_choice") or {"policy": saved["precision_policy"]}
            return {**started, "kept_on_resume": True}
    return precision.precision_choice(config["MIXED_PRECISION"], config["BACKBONE"],
                                      config["IMAGE_SIZE"], num_classes, config["BATCH_SIZE"])


# What visualize_cam.py and evaluate_cam.py write into a run folder, by name pattern.
DERIVED_FILES = ("heatmaps*", "cams*.npz", "metrics*.json", "leaderboard*", "comparison*",
                 "confusion_matrix*", "deletion_insertion*")
RESUME_MAY_CHANGE = ("RESUME", "TENSORFLOW_LOG", "OUTPUT_DIR", "WORKER_TIMEOUT")  # not the training
SINCE_ADDED = {"TRAIN_LAYERS": "all"}  # settings newer than some runs: what those runs did


def prepare_run_dir(config: dict[str, Any]) -> Path:
    """The run folder, checked for RESUME; a fresh run drops the previous run's state.

    Resuming needs the backup BackupAndRestore leaves behind and the same configuration
    (apart from settings that cannot change the training); anything else would mix two
    trainings. A fresh run also removes the earlier model's figures and scores, which would
    otherwise sit beside the new weights and describe the old ones.
    """
    run_dir = check_resume(config)
    if not config["RESUME"]:
        shutil.rmtree(run_dir / "backup", ignore_errors=True)
        # A probe's feature cache stays: its files are named by what their values depend
        # on, so a fresh run with the same settings reuses them, one with others ignores them.
        if config["TRAIN_LAYERS"] != "head":
            probe.remove_cache(run_dir)
        for stale in ("weights.weights.h5", "model.keras", "history.csv", "curves.png",
                      *DERIVED_FILES):
            for path in run_dir.glob(stale):
                path.unlink()
    return run_dir


def check_resume(config: dict[str, Any]) -> Path:
    """The run folder; with RESUME, refuses at once (before any data or model work) a run
    that was not interrupted or whose configuration changed."""
    run_dir = Path(config["OUTPUT_DIR"]) / config["RUN_NAME"]
    if not config["RESUME"]:
        return run_dir
    if not any((run_dir / name).is_dir() for name in ("backup", probe.CACHE_FOLDER)):
        raise CamError(f"nothing to resume in {run_dir}: no interrupted training there "
                       "(a finished run deletes its backup and feature cache); run without "
                       "--RESUME=True")
    saved = {**SINCE_ADDED, **runs.read_run_config(run_dir)}
    changed = [name for name in config if name not in RESUME_MAY_CHANGE
               and saved.get(name) != config[name]]
    if changed:
        raise CamError(f"cannot resume {run_dir} with a different configuration ("
                       + ", ".join(f"{n}: {saved.get(n)!r} -> {config[n]!r}" for n in changed)
                       + "); use the original values or another RUN_NAME")
    return run_dir


def folder_record(builder) -> dict[str, Any]:
    """For a folder dataset, what config.json keeps of its splits: the image count of each,
    and the validation split's images (relative paths), so the split can be checked."""
    if not isinstance(builder, folders.FolderData):
        return {}
    validation = list(builder.splits)[1]
    return {"folder_images": {split: len(paths) for split, (paths, _) in
                              builder.splits.items()},
            "validation_images": [str(Path(path).relative_to(builder.root))
                                  for path in builder.splits[validation][0]]}


def summary(config: dict[str, Any], run_dir: Path, kept: dict[str, float],
            measured_on: str) -> str:
    """What a finished training leaves: the kept epoch and its accuracy, the files, what next."""
    which = "the last" if config["KEEP"] == "last" else f"best on {measured_on}"
    if kept:
        headline = (f"kept epoch {kept['epoch']:.0f} of {config['EPOCHS']} ({which}): "
                    f"accuracy {100 * kept.get('val_accuracy', float('nan')):.1f}% on "
                    f"{measured_on}")
    else:  # a resumed run whose epochs were all done before it was interrupted
        headline = "no epoch was left to train: the weights are those saved before"
    return "\n".join([
        headline,
        f"run folder {run_dir}/: model.keras, weights.weights.h5, config.json, history.csv",
        "next: " + settings.command(Path(__file__).with_name("visualize_cam.py"), config,
                                    ("RUN_NAME", "OUTPUT_DIR"))])


def run(config: dict[str, Any]) -> Path:
    """Trains with a resolved configuration; returns the run folder.

    With several workers (STRATEGY="multiworker") every worker trains, and only the
    chief writes the run folder: Keras 3 saves from the worker's own copy of the
    variables, without a collective op, so the others need not save anywhere.
    """
    check_config(config)
    check_resume(config)
    strategy = training.distribution_strategy(config["STRATEGY"], config["WORKER_TIMEOUT"])
    worker = training.worker_name(strategy)  # "" unless several workers train together
    lost = training.lost_workers(f"{worker} lost contact with another worker")
    with lost if worker else contextlib.nullcontext():
        return train(config, strategy, writes=training.is_chief(strategy), worker=worker)


def train(config: dict[str, Any], strategy: tf.distribute.Strategy, writes: bool,
          worker: str) -> Path:
    """run()'s training, under `strategy`; only a process that `writes` touches the run
    folder (the chief of several workers)."""
    fit_validation_fraction(config)
    builder = data.get_run_dataset(config)
    # Prepared before seeding: preparing runs TensorFlow ops, which advance the seeded op
    # counter, so a first run on a machine would otherwise train differently. The same
    # goes for timing the precision policies, which happens on a first run only (cached).
    data.prepare(builder, config["DATA_DIR"])
    names = data.class_names(builder)
    choice = precision_choice(config, len(names))
    keras.mixed_precision.set_global_policy(choice["policy"])
    keras.utils.set_random_seed(config["SEED"])
    if config["DETERMINISTIC"]:
        tf.config.experimental.enable_op_determinism()
    head_only = config["TRAIN_LAYERS"] == "head"
    if head_only:  # images are read once, by the feature extraction, after the model
        splits = dict(zip(("trained_on", "measured_on"), epoch_splits(config, builder),
                          strict=True))
        sizes = probe.split_sizes(builder, splits, config["DATA_DIR"])
        steps = probe.steps_per_epoch(sizes, config["BATCH_SIZE"])
    else:
        train_batches, measured, cached, splits = input_pipelines(config, builder, len(names))
        train_batches, measured = map(training.shard_by_example, (train_batches, measured))
        steps = int(train_batches.cardinality())
    with strategy.scope():
        model = models.build_model(config["BACKBONE"], config["IMAGE_SIZE"], len(names),
                                   config["WEIGHTS"])
        fitted = probe.head_model(model) if head_only else model  # what fit trains
        training.compile_model(fitted, training.learning_rate(config, steps))
    if head_only:  # "cached" is then whether the features are held in memory
        cached = probe.features_in_memory(config["CACHE"], sum(sizes.values()),
                                          fitted.input_shape[-1],
                                          config["CACHE_MEMORY_FRACTION"])
    run_dir = Path(config["OUTPUT_DIR"]) / config["RUN_NAME"]
    run_config = {
        **config, "class_names": names, **splits, **folder_record(builder),
        "precision_policy": choice["policy"], "precision_choice": choice,
        "cached": cached, "replicas": strategy.num_replicas_in_sync,
        "feature_shape": list(model.get_layer("gap").input.shape[1:]),
        "devices": [device.name for device in tf.config.list_logical_devices()],
        "versions": runs.library_versions()}
    callbacks, kept = [], None
    if writes:
        run_dir = prepare_run_dir(config)  # only now, so a failed start leaves old results
        runs.write_json(run_dir / "config.json", run_config)
        callbacks, kept = run_callbacks(config, run_dir, run_config, model)
    if head_only:  # only a single process trains the head (check_config), so it writes
        train_batches, measured = probe.feature_pipelines(
            config, builder, model, splits, sizes, len(names), run_dir, cached)
    if worker:  # before anything is measured or saved; every worker takes part
        callbacks.insert(0, training.SameStatisticsOnEveryWorker(strategy))
    # One line per epoch when the output is a file: a progress bar would redraw into it.
    fitted.fit(train_batches, validation_data=measured, epochs=config["EPOCHS"], shuffle=False,
               callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
    if head_only:
        probe.remove_cache(run_dir)
    if kept is None:
        print(f"{worker} finished; the chief writes the run folder {run_dir}/")
        return run_dir
    plots.save_figure(plots.training_curves(
        runs.read_history(run_dir / "history.csv"), config["KEEP"], training.MONITOR,
        splits["measured_on"], f"run {config['RUN_NAME']}: {config['BACKBONE']} on "
                               f"{config['DATASET']}"), run_dir / "curves.png", 150)
    print(summary(config, run_dir, kept.kept, splits["measured_on"]))
    return run_dir


def run_callbacks(config: dict[str, Any], run_dir: Path, run_config: dict[str, Any],
                  model: keras.Model):
    """(callbacks, the KeptWeights among them): what fit writes into the run folder, which
    holds the whole `model` even when fit trains only its head."""
    history = run_dir / "history.csv"
    kept = training.KeptWeights(run_dir, run_config, config["KEEP"],
                                training.best_epoch(history)
                                if config["RESUME"] and config["KEEP"] == "best" else None,
                                saved=model)
    callbacks = [kept, training.EpochHistory(history, keep_rows=config["RESUME"])]
    if config["STRATEGY"] != "multiworker":  # which cannot resume (check_config)
        # Saves model and optimizer state after every epoch; on RESUME restores the last.
        callbacks.insert(0, keras.callbacks.BackupAndRestore(str(run_dir / "backup"),
                                                             double_checkpoint=True))
    return callbacks, kept


def main(argv: list[str] | None = None) -> Path:
    return settings.run_script(__file__, run, argv)


if __name__ == "__main__":
    main()
