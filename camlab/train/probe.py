"""TRAIN_LAYERS="head": a linear probe, training only the GAP model's softmax head.

The backbone stays exactly as WEIGHTS started it. Every image of the split trained on and
of the split measured on goes through it once, in inference mode (batch normalisation uses
its moving statistics and updates nothing), giving its GAP features: (channels,) float32.
`fit` then trains the bias-free softmax Dense on those features with the optimiser,
learning rate, epochs, batch size and callbacks of a full fine-tune, shuffled in a buffer
of SHUFFLE_BUFFER examples reshuffled every epoch (the features are extracted in file
order, so unlike a fine-tune the files' order is not shuffled too), and the run folder
gets the same files, the whole model saved with its trained head.

The features are written to the run folder's feature_cache/, about CHUNK_IMAGES images a
file, each file atomically: an interrupted run (RESUME=True, or the same settings again) keeps
every finished file and computes only the rest. Training reads them from memory when they
fit (training.fits_in_memory, CACHE's rule), else streams them from the files. The folder
is removed when training has finished.

train_cam.py augments nothing (data.batches only resizes), so the probe sees the very images
a fine-tune sees. Were augmentation added there, the probe would still see un-augmented
images: their features are computed once, before the first epoch.

A cache file is named by a key over everything its features depend on: the dataset (the
tfds name and version, or a folder's files), the split, the image size, the backbone, a
hash of its weights, and the precision policy that computed them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from camlab.core import runs
from camlab.datasets import data, folders
from camlab.networks import models
from camlab.train import training

TRAIN_LAYERS = ("all", "head")  # what TRAIN_LAYERS may be
CACHE_FOLDER = "feature_cache"  # under the run folder, removed when training has finished
CHUNK_IMAGES = 1024  # images per cache file: an interruption loses at most one file's work
KEY_VERSION = 1  # changes when the files' content changes meaning


def feature_model(model: keras.Model) -> keras.Model:
    """The GAP model up to its pooled features: images (batch, S, S, 3) RGB [0, 255] ->
    (batch, channels), the layers (and weights) of `model` itself."""
    return keras.Model(model.input, model.get_layer("gap").output, name="features")


def head_model(model: keras.Model) -> keras.Model:
    """The GAP model's classifier alone: features (batch, channels) -> softmax (batch,
    classes). The Dense layer is `model`'s own, so training this trains `model`'s head."""
    features = keras.Input(model.get_layer("gap").output.shape[1:], name="features")
    return keras.Model(features, model.get_layer("classifier")(features), name="head")


def weights_digest(model: keras.Model) -> str:
    """sha256 of every backbone weight (all but the classifier's), in graph order."""
    digest = hashlib.sha256()
    for index, layer in enumerate(models.backbone_layers(model)):
        for weight in layer.weights:
            array = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
            digest.update(f"{index}:{array.dtype}:{array.shape};".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def dataset_identity(builder, split: str) -> dict[str, Any]:
    """What names a split's images: tfds' full name (with its version) and the split's
    size, or for a folder dataset every file of the split with its size, time and label."""
    if not isinstance(builder, folders.FolderData):
        return {"tfds": builder.info.full_name,
                "examples": builder.info.splits[split].num_examples}
    paths, labels = builder.splits[split.split("[")[0]]
    files = hashlib.sha256()
    for path, label in zip(paths, labels, strict=True):
        stat = Path(path).stat()
        files.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{label}\n".encode())
    return {"folder": str(builder.root), "files": files.hexdigest()}


def cache_key(builder, split: str, image_size: int, backbone: str,
              model: keras.Model) -> str:
    """The name of a split's feature files: a hash of what their values depend on."""
    parts = {"version": KEY_VERSION, "dataset": dataset_identity(builder, split),
             "split": split, "image_size": image_size, "backbone": backbone,
             "weights": weights_digest(model),
             "policy": keras.mixed_precision.global_policy().name}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def split_sizes(builder, splits: dict[str, str], data_dir: str) -> dict[str, int]:
    """{"trained_on": images, "measured_on": images} of train_cam.epoch_splits' splits."""
    return {role: int(data.load_split(builder, split, data_dir, setting=setting).cardinality())
            for (role, split), setting in zip(splits.items(),
                                              ("TRAIN_SPLIT", "VALIDATION_SPLIT"), strict=True)}


def features_in_memory(choice: str, images: int, channels: int, memory_fraction: float) -> bool:
    """CACHE for features: "auto" holds them in memory when `images` x `channels` float32
    take less than `memory_fraction` of the RAM, "yes" always, "no" never (streamed)."""
    if choice != "auto":
        return choice == "yes"
    return training.fits_in_memory(images * channels * 4, memory_fraction)


def resized_batches(examples: tf.data.Dataset, image_size: int,
                    batch_size: int) -> tf.data.Dataset:
    """(images, labels) batches of load_split examples in order, the images resized as for
    training (data.resize_image), the labels as they are (int64)."""
    return (examples.map(lambda example: (data.resize_image(example["image"], image_size),
                                          example["label"]),
                         num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def extract(extractor: keras.Model, examples: tf.data.Dataset, count: int, image_size: int,
            batch_size: int, folder: Path, key: str, name: str = "") -> list[Path]:
    """The cache files of a split's `count` examples, in split order, each holding the
    features (n, channels) float32 and labels (n,) int64 of about CHUNK_IMAGES images
    (whole batches), named by `key` and the images' range.

    Files are written one after the other, each atomically, so the finished ones are a
    complete prefix: those are kept, and extraction starts after them (skipping their
    examples once). Prints a line per file.
    """
    chunk = batch_size * max(1, CHUNK_IMAGES // batch_size)
    paths = [folder / f"{key}_{start:09d}-{min(start + chunk, count):09d}.npz"
             for start in range(0, count, chunk)]
    kept = next((index for index, path in enumerate(paths) if not path.is_file()), len(paths))
    if kept:
        print(f"features of {name}: {min(kept * chunk, count)} of {count} images kept "
              f"from {folder}/")
    batches = iter(resized_batches(examples.skip(kept * chunk), image_size, batch_size))
    for index in range(kept, len(paths)):
        began = time.perf_counter()
        features, labels = [], []
        for images, label in itertools.islice(batches, chunk // batch_size):
            features.append(np.asarray(extractor.predict_on_batch(images), np.float32))
            labels.append(label.numpy().astype(np.int64))
        with runs.atomic_path(paths[index]) as tmp:
            np.savez(tmp, features=np.concatenate(features), labels=np.concatenate(labels))
        done = min((index + 1) * chunk, count)
        print(f"features of {name}: {done} of {count} images "
              f"({sum(map(len, labels)) / (time.perf_counter() - began):.1f} images/s)")
    return paths


def read_chunk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as chunk:
        return chunk["features"], chunk["labels"]


def feature_batches(paths: list[Path], count: int, num_classes: int, batch_size: int,
                    in_memory: bool, shuffle_buffer: int = 0,
                    seed: int | None = None) -> tf.data.Dataset:
    """(features, one-hot label) batches from cache files, shuffled as data.batches
    shuffles images (a buffer of `shuffle_buffer` examples, reshuffled every epoch).

    `in_memory` reads every file once and keeps the arrays; otherwise each epoch streams
    the files one at a time. Either way the examples arrive in the same order, so the
    same seed gives the same batches.
    """
    if in_memory:
        features, labels = (np.concatenate(parts) for parts in
                            zip(*(read_chunk(path) for path in paths), strict=True))
        examples = tf.data.Dataset.from_tensor_slices((features, labels))
    else:
        channels = read_chunk(paths[0])[0].shape[1]
        examples = tf.data.Dataset.from_generator(
            lambda: (read_chunk(path) for path in paths),
            output_signature=(tf.TensorSpec((None, channels), tf.float32),
                              tf.TensorSpec((None,), tf.int64))).unbatch()
        examples = examples.apply(tf.data.experimental.assert_cardinality(count))
    if shuffle_buffer:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return (examples.map(lambda feature, label: (feature, tf.one_hot(label, num_classes)))
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def steps_per_epoch(sizes: dict[str, int], batch_size: int) -> int:
    return math.ceil(sizes["trained_on"] / batch_size)


def feature_pipelines(config: dict[str, Any], builder, model: keras.Model,
                      splits: dict[str, str], sizes: dict[str, int], num_classes: int,
                      run_dir: Path, in_memory: bool) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(training batches, measured batches) of GAP features for the head: every image's
    features computed once (extract), or read from the run's feature cache."""
    extractor, folder = feature_model(model), run_dir / CACHE_FOLDER
    paths = {}
    for role, split in splits.items():
        examples = data.load_split(builder, split, config["DATA_DIR"])  # in file order
        key = cache_key(builder, split, config["IMAGE_SIZE"], config["BACKBONE"], model)
        paths[role] = extract(extractor, examples, sizes[role], config["IMAGE_SIZE"],
                              config["VALIDATION_BATCH_SIZE"], folder, key, split)
    train = feature_batches(paths["trained_on"], sizes["trained_on"], num_classes,
                            config["BATCH_SIZE"], in_memory, config["SHUFFLE_BUFFER"],
                            config["SEED"])
    measured = feature_batches(paths["measured_on"], sizes["measured_on"], num_classes,
                               config["VALIDATION_BATCH_SIZE"], in_memory)
    return train, measured


def remove_cache(run_dir: Path) -> None:
    """Deletes the run's feature cache (training has finished)."""
    shutil.rmtree(run_dir / CACHE_FOLDER, ignore_errors=True)
