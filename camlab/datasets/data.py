"""Datasets through tensorflow-datasets, with a clear message when a download cannot happen.

Examples come out as `(image, one_hot_label)` with the image resized to a square of
IMAGE_SIZE and left in RGB [0, 255]: the models preprocess inside themselves.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

from camlab.datasets import folders, groundtruth
from camlab.datasets.image_io import resize_image
from camlab.errors import CamError, check_choice

# tfds labels imagenette with WordNet ids; the post names them like this.
IMAGENETTE_NAMES = {
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
    "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball",
    "n03888257": "parachute",
}
# Archives tfds fetches, by dataset, for users who download them by hand.
MANUAL_ARCHIVES = {
    "imagenette/320px": ("imagenette-320.tgz", 341_289_752),
    "imagenette/320px-v2": ("imagenette2-320.tgz", 341_663_724),
}
class _NoEmptyVariantWarning(logging.Filter):
    """Drops tfds' "Variant folder ... has no dataset_info.json", which it logs while it
    prepares a dataset into that very folder: nothing is wrong and nothing is to be done."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "has no dataset_info.json" not in record.getMessage()


logging.getLogger("absl").addFilter(_NoEmptyVariantWarning())
PROBE_TIMEOUT = 5.0  # seconds to wait for a download host before calling it unreachable


def get_builder(name: str, data_dir: str = "", split_names: tuple[str, str] = (
        "train", "validation"), validation_fraction: float = 0.2, seed: int = 0):
    """The dataset DATASET names: a tfds builder ("imagenette/320px", "cam_shapes", ...), or
    a folders.FolderData when it is a folder of labelled images (see camlab.datasets.folders; the
    split names, VALIDATION_FRACTION and SEED decide its splits)."""
    from camlab.datasets import shapes  # noqa: F401

    if folders.is_folder(name):
        return folders.open_folder(name, split_names, validation_fraction, seed)

    if not sys.stderr.isatty():  # progress bars would redraw into a log file line by line
        tfds.disable_progress_bar()
    try:
        return tfds.builder(name, data_dir=data_dir or None)
    except tfds.core.registered.DatasetNotFoundError:
        raise CamError(f"unknown dataset {name!r}: use a tfds name such as "
                       "'imagenette/320px' or the demo's 'cam_shapes'") from None


def get_run_dataset(run_config: dict):
    """The dataset a run was trained on, with the same splits (get_builder)."""
    return get_builder(run_config["DATASET"], run_config["DATA_DIR"],
                       (run_config["TRAIN_SPLIT"], run_config["VALIDATION_SPLIT"]),
                       run_config.get("VALIDATION_FRACTION", 0.2), run_config["SEED"])


def class_names(builder) -> list[str]:
    """Human-readable label names; imagenette's WordNet ids become the post's names."""
    if isinstance(builder, folders.FolderData):
        return builder.class_names
    names = builder.info.features["label"].names
    return [IMAGENETTE_NAMES.get(name, name) for name in names]


def host_reachable(host: str, port: int = 443, timeout: float = PROBE_TIMEOUT) -> bool:
    """True when a TCP connection to host:port opens within `timeout` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def data_root(data_dir: str = "") -> Path:
    """The tfds data folder: DATA_DIR, else tfds' default (~/tensorflow_datasets)."""
    return Path(data_dir or tfds.core.constants.DATA_DIR).expanduser()


def offline_message(builder: tfds.core.DatasetBuilder, data_dir: str, reason: str) -> str:
    """How to supply a dataset by hand when tfds cannot download it."""
    name = builder.info.full_name.rsplit("/", 1)[0]
    if name in MANUAL_ARCHIVES:
        archive = "{} ({:,} bytes)".format(*MANUAL_ARCHIVES[name])
    else:
        archive = "the archive named in the tfds catalog"
    manual_dir = data_root(data_dir) / "downloads" / "manual"
    return (f"could not download dataset {name} ({reason}). Either put {archive} into "
            f"{manual_dir}/ and run again, or copy the folder that `tfds build {name}` "
            f"makes on a machine with network into {data_root(data_dir)}/ "
            "(DATA_DIR chooses another root).")


def prepare(builder: tfds.core.DatasetBuilder, data_dir: str = "") -> None:
    """Downloads and prepares the dataset if needed, failing fast and clearly offline.

    tfds retries a dead connection for minutes, so the download hosts are probed first,
    unless the archive is already in the manual folder, where tfds looks before fetching.
    A folder of images is checked for unreadable files instead.
    """
    if isinstance(builder, folders.FolderData):
        folders.check_readable(builder)
        return
    if builder.is_prepared():
        return
    name = builder.info.full_name.rsplit("/", 1)[0]
    manual_dir = data_root(data_dir) / "downloads" / "manual"
    if not (name in MANUAL_ARCHIVES and (manual_dir / MANUAL_ARCHIVES[name][0]).exists()):
        hosts = sorted({urlparse(url).hostname for url in (builder.url_infos or {})} - {None})
        dead = [host for host in hosts if not host_reachable(host)]
        if dead:
            raise CamError(offline_message(builder, data_dir, f"{', '.join(dead)} unreachable"))
    try:
        builder.download_and_prepare()
    except NonMatchingChecksumError as error:
        raise CamError(wrong_archive_message(builder, data_dir, error)) from None
    except OSError as error:  # requests' ConnectionError is an OSError
        raise CamError(offline_message(builder, data_dir, type(error).__name__)) from None


def wrong_archive_message(builder: tfds.core.DatasetBuilder, data_dir: str,
                          error: NonMatchingChecksumError) -> str:
    """One line for tfds' NonMatchingChecksumError: the file, its size and the expected one.

    tfds compares a file in the manual folder with the size and sha256 registered for its
    URL (the builder's checksums.tsv) and refuses it on any difference; the expected
    values here are tfds' own, read from the same registry.
    """
    name = builder.info.full_name.rsplit("/", 1)[0]
    path = data_root(data_dir) / "downloads" / "manual" / MANUAL_ARCHIVES.get(name, ("",))[0]
    registered = {info.filename: (url, info) for url, info in (builder.url_infos or {}).items()}
    if path.name in registered and path.is_file():
        url, expected = registered[path.name]
        size = path.stat().st_size
        problem = (f"is {size:,} bytes, but tfds expects {path.name} to be "
                   f"{int(expected.size):,} bytes" if size != int(expected.size) else
                   f"has the right size ({size:,} bytes) but not the sha256 tfds expects "
                   f"({expected.checksum})")
        return (f"{path} {problem}: it is not the file from {url} (incomplete or damaged?); "
                "replace it, or delete it to let tfds download the dataset")
    first_line = str(error).splitlines()[0].rstrip(":")
    return f"{first_line}: its size or sha256 is not what tfds expects; delete it and run again"


def load_split(builder, split: str, data_dir: str = "",
               shuffle_seed: int | None = None, setting: str = "SPLIT") -> tf.data.Dataset:
    """The split's examples as dicts; file order shuffled only when a seed is given.

    `split` is a split name, optionally sliced ("train[:10%]"); `setting` is the name the
    user gave it under, for the message when the dataset has no such split. A folder
    dataset (camlab.datasets.folders) is read in its indexed order, already shuffled by SEED.
    Examples hold "image", "label" and, where the dataset has them, "bbox" and "mask"
    (camlab.datasets.groundtruth.standardise, whatever the dataset's own feature names).
    """
    if isinstance(builder, folders.FolderData):
        return folders.load(builder, split, setting)
    prepare(builder, data_dir)
    known = list(builder.info.splits.keys())
    if known:
        check_choice(setting, split.split("[")[0], known, where=f"the splits of {builder.name}")
    # No automatic in-memory cache: visualize_cam.py reads a few examples only, which made
    # tfds warn about a partly read cache; train_cam.py caches itself (CACHE).
    read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, try_autocache=False)
    truth = groundtruth.find(builder)
    # The known-cause images stay PNG bytes until resized_example: training never reads
    # them, and decoding them made an epoch of cam_shapes/cause 4x slower to read.
    skipped = {key: tfds.decode.SkipDecoding() for key in truth.extras
               if isinstance(builder.info.features[key], tfds.features.Image)}
    examples = builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                                  read_config=read_config, decoders=skipped or None)
    return groundtruth.standardise(examples, truth)


def batches(examples: tf.data.Dataset, image_size: int, num_classes: int, batch_size: int,
            shuffle_buffer: int = 0, seed: int | None = None,
            cache: bool = False) -> tf.data.Dataset:
    """(image, one-hot label) batches: parallel resize, optional seeded shuffle, prefetch.

    With `cache`, decoded and resized images are kept in memory after the first epoch
    and shuffled from there, so later epochs do no image work at all; without it the
    smaller, not yet resized examples are shuffled (the post's order of operations).
    """
    def to_pair(example):
        image = resize_image(example["image"], image_size)
        return image, tf.one_hot(example["label"], num_classes)

    if cache:
        examples = examples.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle_buffer:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if not cache:
        examples = examples.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
    return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def pick_examples(examples: tf.data.Dataset, count: int, seed: int,
                  image_size: int) -> dict[str, np.ndarray]:
    """`count` examples drawn without replacement with `seed`, in split order, as one batch.

    The keys and shapes of `evaluation_batches`, the images resized as for training.
    The same seed gives the same examples on every machine.
    """
    size = int(examples.cardinality())
    if size < 0:
        raise CamError("the split's size is unknown, so images cannot be drawn from it")
    if not 1 <= count <= size:
        raise CamError(f"NUM_IMAGES={count} must be between 1 and the split's size, {size}")
    wanted = tf.constant(np.sort(np.random.default_rng(seed).choice(size, count, replace=False)))

    chosen = (examples.enumerate()
              .filter(lambda index, example: tf.reduce_any(index == wanted))
              .map(lambda index, example: resized_example(example, image_size)).batch(count))
    return next(chosen.as_numpy_iterator())


def evaluation_batches(examples: tf.data.Dataset, image_size: int, batch_size: int,
                       max_images: int = 0) -> tf.data.Dataset:
    """Batches of dicts in split order for scoring maps: the first `max_images` (0 = all).

    "image" (b, S, S, 3) float32 RGB [0, 255], "label" (b,) and "index" (b,) int64, the
    images' positions in the split; where the dataset has them, "mask" (b, S, S) bool and
    "bbox" (b, 4) normalised, and groundtruth's known-cause features: "..._mask" (b, S, S)
    bool, "image_..." (b, S, S, 3) float32 like "image", labels as stored (see
    resized_example).
    """
    if max_images:
        examples = examples.take(max_images)
    return (examples.enumerate()
            .map(lambda index, example: {**resized_example(example, image_size),
                                         "index": index},
                 num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def resized_example(example: dict, image_size: int) -> dict:
    """One example of load_split as the model sees it, ground truth moved alike.

    The image is resized to the square the model was trained on (resize_image: bilinear,
    squashed like training, never cropped or padded); the mask goes through the same
    resize, nearest-neighbour so that it stays binary, and becomes (S, S) bool; the box,
    normalised to the image's sides, is the same box after any such resize. A mask of
    another size than its image (tfds' random mock data) is stretched over the image.
    """
    out = {"image": resize_image(example["image"], image_size), "label": example["label"]}
    if "mask" in example:
        mask = tf.image.resize(example["mask"], [image_size, image_size], "nearest")
        out["mask"] = mask[..., 0] > 0
    if "bbox" in example:
        out["bbox"] = example["bbox"]
    for key in set(example) - {"image", "label", "mask", "bbox"}:  # groundtruth's extras
        if example[key].dtype == tf.string:  # an image load_split left encoded
            example = {**example, key: tf.io.decode_png(
                example[key], channels=1 if key.endswith("_mask") else 3)}
        if key.endswith("_mask"):
            out[key] = tf.image.resize(example[key], [image_size, image_size],
                                       "nearest")[..., 0] > 0
        elif key.startswith("image_"):
            out[key] = resize_image(example[key], image_size)
        else:
            out[key] = example[key]
    return out
