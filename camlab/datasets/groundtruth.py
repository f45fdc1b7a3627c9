"""Where a tfds dataset keeps its objects' boxes and masks, for the localisation metrics.

`GROUND_TRUTH` names, per dataset, the feature holding the object's box (a tfds
BBoxFeature: one normalised (ymin, xmin, ymax, xmax) box per image) and the feature holding
its mask (an 8-bit Image feature (h, w, 1) over the image) with the pixel values that are
the object. A dataset not listed is read by the convention of the demo's cam_shapes: a
BBoxFeature named "bbox" and an 8-bit Image named "mask" whose non-zero pixels are the
object. Other names are not guessed: "segmentation_mask" means a trimap in one dataset and
soft annotator votes in another, and a head box is not the object's box.

The known-cause configs of cam_shapes (camlab/datasets/shapes.py) add features read by their names
(KNOWN_CAUSE, SHORTCUT): the distractor's mask and the images with the cause or the
distractor painted out (the intervention that proves the cause), or the planted marker's
mask and class.

`standardise` turns a split's examples into {"image", "label"} plus "bbox" (4,) float32 and
"mask" (h, w, 1) uint8 (1 on the object, 0 elsewhere) where the dataset has them, and the
known-cause features where it has them all: the only keys the rest of camlab reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from camlab.errors import CamError

NONZERO = tuple(range(1, 256))
# cam_shapes/cause: the label's object is "mask" and "bbox"; these prove it the cause.
KNOWN_CAUSE = ("distractor_mask", "image_without_cause", "image_without_distractor")
# cam_shapes/shortcut: the planted marker and the class its colour names.
SHORTCUT = ("marker_mask", "marker_label")


@dataclass(frozen=True)
class GroundTruth:
    """Feature names of one dataset's ground truth; "" where it has none."""

    box: str = ""  # a BBoxFeature: the object's box, normalised (ymin, xmin, ymax, xmax)
    mask: str = ""  # an 8-bit Image feature (h, w, 1) covering the image
    object_values: tuple[int, ...] = NONZERO  # the mask's pixel values that are the object
    extras: tuple[str, ...] = ()  # KNOWN_CAUSE and / or SHORTCUT, kept as they are

    def describe(self) -> str:
        """What localisation is scored against, and what it cannot score: for the log."""
        found = ([f"box from feature {self.box!r}"] if self.box else []) + (
            [f"mask from feature {self.mask!r} (object = values "
             f"{_value_ranges(self.object_values)})"] if self.mask else [])
        if not found:
            return ("ground truth: none (no box or mask feature that "
                    "camlab/datasets/groundtruth.py reads), so no localisation metric "
                    "(MaxBoxAccV2, PxAP, pointing game, box localisation, mask IoU); "
                    "accuracy, deletion / insertion and the sanity check are computed")
        missing = ("" if self.box and self.mask else
                   "; no box: MaxBoxAccV2, box and top-1 localisation not computed, "
                   "pointing game on the mask" if self.mask else
                   "; no mask: PxAP and mask IoU not computed, pointing game on the box")
        known = {KNOWN_CAUSE: "; known cause: the distractor's mask and the images without "
                              "the cause or the distractor (cause metrics, verified images)",
                 SHORTCUT: "; planted marker: its mask and class (marker mass)"}
        return "ground truth: " + ", ".join(found) + missing + "".join(
            text for names, text in known.items() if set(names) <= set(self.extras))


# Datasets whose ground truth does not follow the "bbox" / "mask" convention.
GROUND_TRUTH = {
    # CUB-200-2011: one box per image. Its segmentations are 8-bit and soft where the
    # annotators disagree; a pixel is the bird when it has at least half the full value.
    "caltech_birds2011": GroundTruth(box="bbox", mask="segmentation_mask",
                                     object_values=tuple(range(128, 256))),
    # Oxford-IIIT Pet: the mask is a trimap, 1 pet, 2 background, 3 "not classified" (the
    # band along the pet's outline, README of the dataset); the band counts as the pet, as
    # in segmentation_models_pytorch's pet example. No box: tfds' "head_bbox" is the
    # head only (all zeros in the test split), not the animal.
    "oxford_iiit_pet": GroundTruth(mask="segmentation_mask", object_values=(1, 3)),
}


def _value_ranges(values: tuple[int, ...]) -> str:
    """(1, 3) -> "1, 3"; (128, ..., 255) -> "128-255"."""
    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _is_box(feature) -> bool:
    return isinstance(feature, tfds.features.BBoxFeature)


def _is_mask(feature) -> bool:
    return (isinstance(feature, tfds.features.Image) and feature.shape[-1] == 1
            and feature.np_dtype == np.uint8)


def find(builder) -> GroundTruth:
    """The ground truth of a tfds builder's examples (GROUND_TRUTH, else the convention);
    GroundTruth() for a dataset with neither, or a folder of images (camlab.datasets.folders)."""
    info = getattr(builder, "info", None)
    features = getattr(info, "features", None)
    if not isinstance(features, tfds.features.FeaturesDict):
        return GroundTruth()
    def has(key, check):
        return key in features and check(features[key])

    listed = GROUND_TRUTH.get(builder.name)
    if listed is None:
        extras = tuple(key for names in (KNOWN_CAUSE, SHORTCUT)
                       if all(name in features for name in names) for key in names)
        return GroundTruth(box="bbox" if has("bbox", _is_box) else "",
                           mask="mask" if has("mask", _is_mask) else "", extras=extras)
    for key, check, kind in ((listed.box, _is_box, "BBoxFeature"),
                             (listed.mask, _is_mask, "8-bit Image (h, w, 1)")):
        if key and not has(key, check):
            raise CamError(f"{builder.name} has no {kind} feature {key!r} (its features: "
                           f"{', '.join(features.keys())}): correct its entry in "
                           "GROUND_TRUTH in camlab/datasets/groundtruth.py")
    return listed


def standardise(examples: tf.data.Dataset, truth: GroundTruth) -> tf.data.Dataset:
    """Examples as {"image", "label"} and, where `truth` names them, "bbox" (4,) float32
    and "mask" (h, w, 1) uint8, 1 on the object's pixels, and its `extras` as stored;
    every other feature dropped."""
    is_object = tf.constant(np.isin(np.arange(256), truth.object_values).astype(np.uint8))

    def pick(example):
        out = {"image": example["image"], "label": example["label"]}
        if truth.box:
            out["bbox"] = tf.cast(example[truth.box], tf.float32)
        if truth.mask:
            out["mask"] = tf.gather(is_object, tf.cast(example[truth.mask], tf.int32))
        out.update({key: example[key] for key in truth.extras})
        return out

    return examples.map(pick, num_parallel_calls=tf.data.AUTOTUNE)
