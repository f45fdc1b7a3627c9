"""Helpers the test files share: quick-training overrides, folder snapshots, failing runs."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path

import h5py
import keras
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import checksums

# train_cam.py overrides for a run of seconds: VGG19 untrained at 32 px, one epoch.
QUICK_TRAINING = ["--WEIGHTS=", "--IMAGE_SIZE=32", "--EPOCHS=1", "--BATCH_SIZE=4",
                  "--VALIDATION_BATCH_SIZE=4", "--SHUFFLE_BUFFER=16",
                  "--MIXED_PRECISION=float32"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to show a failed command changed nothing."""
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def run_fails(main, args, run_dir, message) -> str:
    """Runs a script that must fail: checks exit, message and an unchanged run folder.

    Returns the message the script exited with.
    """
    before = snapshot(run_dir)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert isinstance(exit_info.value.code, str) and message in exit_info.value.code
    assert snapshot(run_dir) == before
    return exit_info.value.code


def write_png(path: Path, array: np.ndarray) -> Path:
    """Writes an (h, w, channels) uint8 or uint16 array as a PNG file."""
    path.write_bytes(tf.io.encode_png(array).numpy())
    return path


def copy_run(run_dir: Path, target: Path) -> Path:
    """A copy of a run folder's files (not its subfolders) in `target`."""
    target.mkdir()
    for path in run_dir.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


def edit_config(run_dir: Path, **changes) -> None:
    """Changes entries of a run's config.json in place."""
    config = json.loads((run_dir / "config.json").read_text())
    config.update(changes)
    (run_dir / "config.json").write_text(json.dumps(config))


IMAGENETTE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagenette-320.tgz"
KERAS_VGG19_MD5 = "253f8cb515780f3b799900260a226db6"  # file_hash in keras' vgg19.py


def make_imagenette_archive(path: Path, per_class: int = 1) -> Path:
    """A small imagenette-320.tgz in the real layout: imagenette-320/{train,val}/<wnid>/*.JPEG
    (tfds' builder reads only upper-case .JPEG names, unique within a split). Images are
    24 or 28 by 32 pixels, alternating, so that each split holds two sizes."""
    wnids = tfds.core.tfds_path("image_classification/imagenette_labels.txt").read_text().split()
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as archive:
        for split in ("train", "val"):
            for number, wnid in enumerate(wnids):
                for index in range(per_class):
                    height = 24 + 4 * ((number + index) % 2)
                    pixels = rng.integers(0, 256, (height, 32, 3), dtype=np.uint8)
                    jpeg = io.BytesIO()
                    PIL.Image.fromarray(pixels).save(jpeg, "JPEG")
                    member = tarfile.TarInfo(f"imagenette-320/{split}/{wnid}/"
                                             f"{wnid}_{split}{index}.JPEG")
                    member.size = jpeg.tell()
                    archive.addfile(member, io.BytesIO(jpeg.getvalue()))
    return path


def register_for_imagenette(monkeypatch, info) -> None:
    """Makes `info` (a tfds UrlInfo) the registered size and sha256 of imagenette-320.tgz,
    for this test only; tfds still verifies the file against it.

    The builder's checksums.tsv is read once per class into `url_infos` (an lru_cached
    dict) and handed to its DownloadManager, which merges it into tfds' global registry
    (`get_all_url_infos()`, memoized, the same dict every time): both are restored after.
    """
    monkeypatch.setitem(tfds.builder_cls("imagenette").url_infos, IMAGENETTE_URL, info)
    monkeypatch.setitem(checksums.get_all_url_infos(), IMAGENETTE_URL, info)


def write_applications_h5(model: keras.Model, path: Path) -> None:
    """Weights in the legacy h5 layout of the keras-applications files.

    Root attribute `layer_names` (every layer, in order), one group per layer whose
    `weight_names` attribute lists its datasets, kernel before bias. Keras' loader for
    a ".h5" name (legacy_h5_format.load_weights_from_hdf5_group) matches layers with
    weights by order, not by name. Keras 3's save_weights cannot write this: it wants
    names ending in ".weights.h5", which load_weights reads in another format.
    """
    with h5py.File(path, "w") as weights_file:
        weights_file.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        weights_file.attrs["backend"] = b"tensorflow"
        weights_file.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = weights_file.create_group(layer.name)
            names = [f"{layer.name}/{weight.name}:0".encode() for weight in layer.weights]
            group.attrs["weight_names"] = names
            for name, weight in zip(names, layer.weights, strict=True):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(weight))


def md5(path: Path) -> str:
    with open(path, "rb") as weights_file:
        return hashlib.file_digest(weights_file, "md5").hexdigest()


def register_for_vgg19(monkeypatch, path: Path) -> list:
    """Makes `path`'s size and md5 the ones Keras and camlab.networks.models accept for the VGG19
    no-top file, for this test. Keras' hash is a literal inside VGG19(), so its check,
    file_utils.validate_file, is given this file's md5 in place of the registered one
    (and still hashes the file). Returns the hashes Keras checked."""
    from keras.src.utils import file_utils

    from camlab.networks import models

    size, digest = path.stat().st_size, md5(path)
    monkeypatch.setitem(models.BACKBONES, "vgg19", dataclasses.replace(
        models.BACKBONES["vgg19"], weights_size=size, weights_hash=digest))
    validate, checked = file_utils.validate_file, []

    def validate_registered(fpath, file_hash, *args, **kwargs):
        checked.append(file_hash)
        return validate(fpath, digest if file_hash == KERAS_VGG19_MD5 else file_hash,
                        *args, **kwargs)

    monkeypatch.setattr(file_utils, "validate_file", validate_registered)
    return checked


def nested_vgg16(size: int = 32) -> keras.Model:
    """tensorflow#44462's pattern: preprocessing, a Keras application as one layer, a head."""
    keras.utils.set_random_seed(0)
    backbone = keras.applications.VGG16(include_top=False, weights=None,
                                        input_shape=(size, size, 3))
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="scale")(inputs)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="nested")


def sequential_cnn() -> keras.Sequential:
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255, name="scale"),
        keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
        keras.layers.MaxPooling2D(name="p1"),
        keras.layers.Conv2D(16, 3, activation="relu", name="c2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(5, activation="softmax", name="out")], name="seq")


def two_outputs() -> keras.Model:
    keras.utils.set_random_seed(5)
    inputs = keras.Input((32, 32, 3))
    shared = keras.layers.Conv2D(8, 3, activation="relu", name="shared")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="kind_conv")(shared)
    kind = keras.layers.Dense(3, activation="softmax", name="kind")(
        keras.layers.GlobalAveragePooling2D(name="kind_gap")(x))
    y = keras.layers.Conv2D(6, 3, activation="relu", name="size_conv")(shared)
    size = keras.layers.Dense(2, activation="softmax", name="size")(
        keras.layers.GlobalAveragePooling2D(name="size_gap")(y))
    return keras.Model(inputs, [kind, size])
