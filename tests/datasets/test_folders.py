"""camlab.datasets.folders: your own labelled folder as DATASET, end to end, offline."""

from __future__ import annotations

import json
import re

import numpy as np
import PIL.Image
import pytest

import evaluate_cam
import train_cam
import visualize_cam
from camlab.core import settings
from camlab.datasets import data, folders
from camlab.errors import CamError
from helpers import run_fails

CLASSES = ("circle", "square", "stripes")
SMALL = ["--BACKBONE=small_vgg", "--WEIGHTS=", "--IMAGE_SIZE=32", "--EPOCHS=1",
         "--BATCH_SIZE=8", "--VALIDATION_BATCH_SIZE=8", "--MIXED_PRECISION=float32"]


def picture(kind: str, index: int) -> np.ndarray:
    """A 40 x 48 RGB picture of one class, its colour varying with `index`."""
    image = np.full((40, 48, 3), 30 + 10 * index, np.uint8)
    y, x = np.mgrid[0:40, 0:48]
    shape = {"circle": (y - 20) ** 2 + (x - 24) ** 2 < 150,
             "square": (abs(y - 20) < 10) & (abs(x - 24) < 10),
             "stripes": (x // 4) % 2 == 0}[kind]
    image[shape] = (220, 200 - 10 * index, 40)
    return image


def save(image: np.ndarray, path, fmt: str) -> None:
    """Writes `image` as the format `fmt` names, including the awkward ones users have."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "rgba.png":
        PIL.Image.fromarray(np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])).save(
            path)
    elif fmt == "16bit.png":
        PIL.Image.fromarray(image[..., 0].astype(np.uint16) * 257).save(path)
    elif fmt == "exif.jpg":
        exif = PIL.Image.Exif()
        exif[0x0112] = 6
        PIL.Image.fromarray(np.ascontiguousarray(np.rot90(image))).save(path, exif=exif)
    else:
        PIL.Image.fromarray(image).save(path)


FORMATS = ("png", "jpg", "bmp", "gif", "rgba.png", "16bit.png", "exif.jpg")


def make_folder(root, per_class: int = 10, splits: tuple[str, ...] = ()):
    """root/<class>/<i>.<format>, or root/<split>/<class>/... for each of `splits`."""
    for split in splits or ("",):
        for kind in CLASSES:
            for index in range(per_class):
                fmt = FORMATS[index % len(FORMATS)]
                save(picture(kind, index), root / split / kind / f"{kind}{index}.{fmt}", fmt)
    return root


def test_every_format_is_read_square_and_upright(tmp_path):
    folder = folders.open_folder(str(make_folder(tmp_path / "pics", per_class=7)),
                                 ("train", "validation"), 0.2, 0)
    everything = folders.load(folder, "train").concatenate(folders.load(folder, "validation"))
    images = [example["image"].numpy() for example in everything]
    assert len(images) == 21 and all(image.shape == (40, 40, 3) for image in images)
    names = {path.rsplit("/", 1)[1]: label for paths, labels in folder.splits.values()
             for path, label in zip(paths, labels, strict=True)}
    assert names["square6.exif.jpg"] == CLASSES.index("square")
    assert folder.class_names == list(CLASSES)


def test_a_plain_folder_trains_visualizes_and_evaluates(tmp_path):
    root = make_folder(tmp_path / "pics")
    outputs = tmp_path / "outputs"
    run_dir = train_cam.main([*SMALL, f"--DATASET={root}", f"--OUTPUT_DIR={outputs}",
                              "--RUN_NAME=pics", "--VALIDATION_FRACTION=0.2"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["class_names"] == list(CLASSES)
    assert config["folder_images"] == {"train": 24, "validation": 6}
    assert len(config["validation_images"]) == 6
    assert all(path.split("/")[0] in CLASSES for path in config["validation_images"])
    visualize_cam.main([f"--OUTPUT_DIR={outputs}", "--RUN_NAME=pics", "--NUM_IMAGES=3",
                        "--TOP_K=2", "--DPI=20"])
    assert (run_dir / "heatmaps.png").is_file()
    path = evaluate_cam.main([f"--OUTPUT_DIR={outputs}", "--RUN_NAME=pics", "--STEPS=2"])
    results = json.loads(path.read_text())
    assert results["num_images"] == 6 and "deletion_auc" in results["predicted_class"]
    assert "pointing_game" not in results["predicted_class"]  # no masks in a folder


def test_split_folders_are_used_as_they_are(tmp_path):
    root = make_folder(tmp_path / "pics", per_class=4, splits=("train", "validation"))
    folder = data.get_builder(str(root), split_names=("train", "validation"))
    assert {split: len(paths) for split, (paths, _) in folder.splits.items()} == {
        "train": 12, "validation": 12}
    assert all("/validation/" in path for path in folder.splits["validation"][0])
    assert data.class_names(folder) == list(CLASSES)
    sliced = folders.load(folder, "train[4:]")
    assert int(sliced.cardinality()) == 8


def remove_images(root, kind):
    for path in (root / kind).iterdir():
        path.unlink()


@pytest.mark.parametrize("damage, message", [
    (lambda root: [remove_images(root, kind) for kind in CLASSES],
     "has no images (JPEG, PNG, BMP or GIF) in class folders"),
    (lambda root: remove_images(root, "square"),
     "class folder(s) square in {root} hold no images"),
    (lambda root: [remove_images(root, kind) or (root / kind).rmdir()
                   for kind in ("square", "stripes")],
     "has 1 class folder(s) (circle); a classifier needs at least two"),
    (lambda root: (root / "circle" / "circle0.png").write_text("not a picture"),
     "1 unreadable image file(s) in {root}: {root}/circle/circle0.png (is not an image file"),
    (lambda root: (root / "square" / "square1.jpg").write_bytes(
        (root / "square" / "square1.jpg").read_bytes()[:300]),
     "1 unreadable image file(s) in {root}: {root}/square/square1.jpg (is not an image file "
     "this script can read (Truncated File Read))"),
])
def test_bad_folders_get_one_line_and_no_run(tmp_path, damage, message):
    root = make_folder(tmp_path / "pics", per_class=3)
    damage(root)
    (tmp_path / "outputs").mkdir()
    run_fails(train_cam.main, [*SMALL, f"--DATASET={root}", f"--OUTPUT_DIR={tmp_path}/outputs"],
              tmp_path / "outputs", message.format(root=root))
    assert not any((tmp_path / "outputs").iterdir())


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(CamError, match="DATASET folder './nowhere' does not exist"):
        data.get_builder("./nowhere")


def test_split_folders_must_hold_the_same_classes(tmp_path):
    root = make_folder(tmp_path / "pics", per_class=2, splits=("train", "validation"))
    (root / "validation" / "stripes").rename(root / "validation" / "stripe")
    with pytest.raises(CamError, match="must hold the same class folders; stripe, stripes is "
                                       "in only one"):
        data.get_builder(str(root))


def test_a_held_out_slice_of_a_folder_is_a_random_sample_of_its_classes(tmp_path):
    root = make_folder(tmp_path / "pics", per_class=6, splits=("train", "validation"))
    folder = data.get_builder(str(root), seed=1)
    first = [int(example["label"]) for example in folders.load(folder, "train[:6]")]
    assert len(set(first)) > 1  # not the first class's six images
    again = data.get_builder(str(root), seed=1)
    assert again.splits["train"] == folder.splits["train"]  # the seed fixes the order


def test_a_folder_too_small_for_the_defaults_validates_and_holds_out_one_image(tmp_path,
                                                                               capsys):
    """3 images, no split folders: VALIDATION_FRACTION 0.2 would validate on none, so it
    validates on one; KEEP="best" holds out one of the 2 left, where HOLDOUT 0.1 holds out
    none. A fraction the user gave is refused instead, with one that works."""
    root = make_folder(tmp_path / "pics", per_class=1)
    config = settings.resolve(train_cam.__file__, [f"--DATASET={root}", "--KEEP=best"])
    train_cam.fit_validation_fraction(config)
    assert config["VALIDATION_FRACTION"] == 0.5
    folder = data.get_run_dataset(config)
    assert {split: len(paths) for split, (paths, _) in folder.splits.items()} == {
        "train": 2, "validation": 1}
    assert train_cam.epoch_splits(config, folder) == ("train[1:]", "train[:1]")
    assert [line for line in capsys.readouterr().out.splitlines() if "->" in line] == [
        f"VALIDATION_FRACTION: 0.2 -> 0.5, as 0.2 of the 3 images in {root} is none "
        "(VALIDATION_FRACTION given on the command line or in a preset is used as given)",
        "HOLDOUT: 0.1 -> 0.5, as 0.1 of the 2 examples is none (HOLDOUT given on the "
        "command line or in a preset is used as given)"]
    given = settings.resolve(train_cam.__file__, [f"--DATASET={root}",
                                                  "--VALIDATION_FRACTION=0.2"])
    train_cam.fit_validation_fraction(given)
    with pytest.raises(CamError, match=re.escape(
            f"VALIDATION_FRACTION=0.2 of the 3 images in {root} leaves no images to train or "
            "to validate on; give a share that leaves an image to each (0.5 validates on "
            "one), or train/ and validation/ folders")):
        data.get_run_dataset(given)
