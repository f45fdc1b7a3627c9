"""Your own labelled images as a dataset: DATASET names a folder of class folders.

Two layouts, the ones tfds' ImageFolder and Keras' image_dataset_from_directory read:
`root/<split>/<class>/<image>`, used when `root` holds a folder for each of the two splits
train_cam.py asks for (TRAIN_SPLIT, VALIDATION_SPLIT: train/ and validation/ by default);
else `root/<class>/<image>`, split into "train" and "validation" by Keras with the run's
SEED and VALIDATION_FRACTION. Class names are the folder names, sorted. Keras indexes the
files; each image is then read as visualize_cam.py reads a photo (image_io.read_photo: EXIF
orientation, 16-bit, grayscale, transparency), centre-cropped to a square.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from camlab.datasets import image_io
from camlab.errors import CamError, check_choice

IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what Keras indexes
SHOWN_UNREADABLE = 10  # unreadable files named in the message; the rest are counted
_SLICE = re.compile(r"^(?P<split>[^\[]+)(\[(?P<start>-?\d*)(?P<pct1>%?):(?P<stop>-?\d*)"
                    r"(?P<pct2>%?)\])?$")


@dataclass(frozen=True)
class FolderData:
    """A folder dataset: its class names and, per split, image paths with integer labels."""

    root: Path
    class_names: list[str]
    splits: dict[str, tuple[list[str], list[int]]]

    @property
    def name(self) -> str:
        return str(self.root)


def is_folder(name: str) -> bool:
    """True when DATASET is meant as a folder: it exists as one, or is written as a path."""
    return Path(name).expanduser().is_dir() or name.startswith(("/", ".", "~"))


def _indexed(directory: Path, **split) -> list:
    """Keras' index of `directory`'s class folders: datasets whose `file_paths` and
    `class_names` are read (their images are never decoded here)."""
    try:
        found = keras.utils.image_dataset_from_directory(
            directory, labels="inferred", batch_size=None, image_size=(8, 8), **split)
    except ValueError as error:  # "No images found in directory ..."
        raise CamError(f"DATASET folder {directory} has no images (JPEG, PNG, BMP or GIF) "
                       f"in class folders ({' '.join(str(error).split())})") from None
    return list(found) if isinstance(found, list | tuple) else [found]


def _labelled(dataset, class_names: list[str]) -> tuple[list[str], list[int]]:
    """(paths, labels) of one indexed split, the label being the class folder's index."""
    paths = list(dataset.file_paths)
    labels = [class_names.index(Path(path).parent.name) for path in paths]
    return paths, labels


def count_images(directory: Path) -> dict[str, int]:
    """{class folder: number of images in it} for a folder of class folders."""
    return {folder.name: sum(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.iterdir())
            for folder in sorted(directory.iterdir()) if folder.is_dir()}


def check_classes(directory: Path, counts: dict[str, int]) -> None:
    """Refuses a folder without images, a single class, and a class folder without images."""
    if not sum(counts.values()):
        raise CamError(f"DATASET folder {directory} has no images (JPEG, PNG, BMP or GIF) in "
                       "class folders: lay it out as <folder>/<class>/<image>")
    if len(counts) < 2:
        raise CamError(f"DATASET folder {directory} has {len(counts)} class folder(s) "
                       f"({', '.join(counts)}); a classifier needs at least two")
    empty = [name for name, count in counts.items() if not count]
    if empty:
        raise CamError(f"class folder(s) {', '.join(empty)} in {directory} hold no images "
                       "(JPEG, PNG, BMP or GIF); add some or remove the folder")


def open_folder(name: str, split_names: tuple[str, str], validation_fraction: float,
                seed: int) -> FolderData:
    """Indexes DATASET's folder in either layout; CamError for a folder no run can use."""
    root = Path(name).expanduser()
    if not root.is_dir():
        raise CamError(f"DATASET folder {name!r} does not exist")
    if all((root / split).is_dir() for split in split_names):
        counts = {split: count_images(root / split) for split in split_names}
        for split in split_names:
            check_classes(root / split, counts[split])
        if set(counts[split_names[0]]) != set(counts[split_names[1]]):
            differ = sorted(set(counts[split_names[0]]) ^ set(counts[split_names[1]]))
            raise CamError(f"{root / split_names[0]} and {root / split_names[1]} must hold "
                           f"the same class folders; {', '.join(differ)} is in only one")
        # Training images in a seeded random order, so that a slice of them (KEEP="best")
        # is a random sample, not the first classes; validation in file order.
        indexed = {split: _indexed(root / split, shuffle=index == 0, seed=seed)[0]
                   for index, split in enumerate(split_names)}
        class_names = list(indexed[split_names[0]].class_names)
        splits = {split: _labelled(found, class_names) for split, found in indexed.items()}
    else:
        counts = count_images(root)
        check_classes(root, counts)
        total = sum(counts.values())
        if not 0 < int(validation_fraction * total) < total:
            least = "at least 2 images, or" if total < 2 else (
                f"a share that leaves an image to each ({1.5 / total:.3g} validates on one), or")
            raise CamError(f"VALIDATION_FRACTION={validation_fraction} of the {total} images "
                           f"in {root} leaves no images to train or to validate on; give "
                           f"{least} train/ and validation/ folders")
        train, validation = _indexed(root, shuffle=True, seed=seed,
                                     validation_split=validation_fraction, subset="both")
        class_names = list(train.class_names)
        splits = {"train": _labelled(train, class_names),
                  "validation": _labelled(validation, class_names)}
    return FolderData(root, class_names, splits)


def fitting_fraction(name: str, split_names: tuple[str, str], fraction: float
                     ) -> tuple[float, int]:
    """(the VALIDATION_FRACTION that validates on at least one image, the image count) of
    DATASET `name` when it is a folder of 2 or more images without split folders: `fraction`
    if it already does (Keras keeps int(fraction x count) images), else a share that
    validates on exactly one. (`fraction`, 0) for anything else."""
    root = Path(name).expanduser()
    if not is_folder(name) or not root.is_dir() or all((root / split).is_dir()
                                                        for split in split_names):
        return fraction, 0
    total = sum(count_images(root).values())
    if total < 2 or int(fraction * total) >= 1:
        return fraction, total
    return 1.5 / total, total


def check_readable(folder: FolderData) -> None:
    """Decodes every image once, as training will (image_io.read_photo), and reports all
    unreadable files at once, before any training, rather than failing mid-epoch."""
    unreadable = []
    for paths, _ in folder.splits.values():
        for path in paths:
            try:
                image_io.read_photo(Path(path))
            except CamError as error:
                reason = str(error).removeprefix(str(path)).strip()
                unreadable.append(f"{path} ({reason})")
    if unreadable:
        more = len(unreadable) - SHOWN_UNREADABLE
        raise CamError(f"{len(unreadable)} unreadable image file(s) in {folder.root}: "
                       + "; ".join(unreadable[:SHOWN_UNREADABLE])
                       + (f"; and {more} more" if more > 0 else "")
                       + ": re-export or remove them")


def _bounds(start: str, percent_start: str, stop: str, percent_stop: str,
            total: int) -> slice:
    """A tfds-style slice "[a:b]" of `total` examples, a and b counts or percentages."""
    def position(text, percent):
        if not text:
            return None
        value = int(text)
        return round(value * total / 100) if percent else value

    return slice(position(start, percent_start), position(stop, percent_stop))


def load(folder: FolderData, split: str, setting: str = "SPLIT") -> tf.data.Dataset:
    """A split's examples as dicts {"image": (h, w, 3) float32 RGB [0, 255], square,
    "label": int64}, in the indexed order; `split` may be sliced as in tfds ("train[:30]")."""
    match = _SLICE.match(split)
    name = check_choice(setting, match["split"] if match else split, folder.splits,
                        where=f"the splits of {folder.root}")
    paths, labels = folder.splits[name]
    if match and match.group(2):
        part = _bounds(match["start"], match["pct1"], match["stop"], match["pct2"], len(paths))
        paths, labels = paths[part], labels[part]

    def read(path):
        return image_io.square(image_io.read_photo(Path(path.decode())), "crop").astype(np.float32)

    def example(path, label):
        image = tf.numpy_function(read, [path], tf.float32, stateful=False)
        image.set_shape([None, None, 3])
        return {"image": image, "label": label}

    return (tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, np.int64)))
            .map(example, num_parallel_calls=tf.data.AUTOTUNE))
