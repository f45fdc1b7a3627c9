"""camlab as a library: explain any Keras image classifier from a notebook, through the code
the scripts run.

    explainer = camlab.explain(model, preprocess="tf")  # a keras.Model, or a .keras/.h5 path
    maps = explainer.maps(images, method="gradcam")     # (batch, H, W) float32
    picture = camlab.overlay(images[0], maps[0])        # (H, W, 3) uint8
    camlab.score(maps, boxes=boxes)                      # {"maxboxacc_v2": ..., ...}

visualize_cam.py draws its grid and writes its arrays through Explainer.top_k and figure;
docs/api.md lists every function with its arguments and shapes. Nothing here prints,
writes a file, or changes the caller's model or global state; a problem the caller can
fix is one CamError, with the scripts' message.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import matplotlib.pyplot as plt
import numpy as np
import PIL.Image
import tensorflow as tf
from matplotlib.figure import Figure

import cam_utils
from camlab.datasets import image_io
from camlab.errors import CamError, check_choice
from camlab.evaluate import evaluation
from camlab.maps import methods
from camlab.maps.method_spec import DEFAULT_OPTIONS, Options
from camlab.networks import classifier, subject
from camlab.report import plots
from camlab.scores import intervals, metrics, registry

SIZES = ("input", "features")  # what `size` takes besides (height, width)
SCORE_CHUNK = 64  # images scored at once by `score`: bounds its memory, not its result
SCORE_ORDER = registry.keys(group="localisation")  # camlab.score's keys, in order


def explain(model: keras.Model | str | os.PathLike, *, preprocess: str = "none",
            output: str | int | None = None, custom_code: str | None = None,
            image_size: int = 224, resize: str = "crop", **options: Any) -> Explainer:
    """The Explainer of `model`, as the MODEL setting sees it (classifier.explain): nested
    models replayed flat (no "Graph disconnected"), gradients of the logits where the
    graph has them, one sigmoid unit as two classes.

    `model`: a keras.Model (explained as a copy: the copy's output softmax is switched to
    linear, yours keeps predicting probabilities) or the path of a saved .keras / full-model
    .h5 file. `preprocess`: what the model expects of RGB in [0, 255], one of
    classifier.PREPROCESSING ("none": it preprocesses itself; "tf": [-1, 1]; "caffe";
    "torch"; "unit": [0, 1]). `output`: which output a model with several explains, by
    name or number. `custom_code`: with a path, a .py file defining its custom layers.
    `image_size`: the side used where the model's input size is open. `resize`: how
    images of another size are fitted, "crop" (the centred square) or "pad".
    `options`: the methods' settings, any field of method_spec.Options by name
    (scorecam_batch, seed, noise_samples, ...; docs/api.md lists them all).
    """
    check_choice("PREPROCESS", preprocess, classifier.PREPROCESSING)
    if isinstance(model, str | os.PathLike):
        model = subject.load_model_file(Path(model).expanduser(), custom_code or "")
    elif isinstance(model, keras.Model):
        if custom_code:
            raise CamError("custom_code applies to a model file; a keras.Model in memory "
                           "already has its classes: leave custom_code out")
        model = _copy(model)
    else:
        raise CamError(f"explain takes a keras.Model or the path of a saved .keras / .h5 "
                       f"model, not {type(model).__name__}")
    output = "" if output is None else str(output)
    return Explainer(classifier.explain(model, image_size, preprocess, output),
                     with_options(DEFAULT_OPTIONS, options), resize)


def _copy(model: keras.Model) -> keras.Model:
    """The model with the same weights, for classifier.explain to change (as tf-keras-vis
    explains a clone by default)."""
    try:
        copy = keras.models.clone_model(model)
    except (TypeError, ValueError) as error:
        raise CamError(f"the model could not be copied ({' '.join(str(error).split())[:200]}"
                       "); save it with model.save('name.keras') and pass that path") from None
    copy.set_weights(model.get_weights())
    return copy


def with_options(base: Options, changes: dict[str, Any]) -> Options:
    """`base` with some of its fields changed; an unknown name is one CamError."""
    names = [field.name for field in dataclasses.fields(Options)]
    unknown = sorted(set(changes) - set(names))
    if unknown:
        raise CamError(f"{', '.join(unknown)}: not a method option; choose from "
                       f"{', '.join(names)}")
    return dataclasses.replace(base, **changes)


class Explainer:
    """A classifier ready to be explained: made once from a model (camlab.explain), then
    called on batches of images.

    Images, wherever a method takes them: an array or tensor (batch, H, W, 3) or one image
    (H, W, 3), RGB in [0, 255]; a list of file paths or globs, read as visualize_cam.py's
    IMAGES setting reads them (EXIF orientation, 16-bit, grayscale, transparency); a PIL
    image or a list of them. Images of another size than the model's are cropped or padded
    to a square (`resize`) and resized bilinearly.
    """

    def __init__(self, model: classifier.Classifier, options: Options = DEFAULT_OPTIONS,
                 resize: str = "crop"):
        self.classifier = model
        self.options = options
        self.resize = check_choice("RESIZE", resize, image_io.RESIZE_MODES)

    @property
    def layers(self) -> list[str]:
        """The names `layer` takes: every 4-D output on the path to the scores, in graph
        order, nested layers by their path ("mobilenetv2_1.00_96/block_16_project")."""
        return list(self.classifier.layers)

    @property
    def default_layer(self) -> str:
        """The layer explained when `layer` is None: the last of `layers`."""
        return self.classifier.default_layer

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the images the model takes."""
        return tuple(self.classifier.model.input.shape[1:3])

    def images(self, images) -> np.ndarray:
        """The images as the model takes them: (batch, H, W, 3) float32 RGB in [0, 255]."""
        if isinstance(images, str | os.PathLike | PIL.Image.Image):
            images = [images]
        if isinstance(images, list | tuple) and not images:
            raise CamError("no images given: pass an array (batch, H, W, 3), file paths or "
                           "PIL images")
        if isinstance(images, list | tuple):
            paths = [isinstance(item, str | os.PathLike) for item in images]
            if all(paths):
                return image_io.read_images(images, self._side(), self.resize)[0]
            if any(paths):
                raise CamError("give a list of file paths, or a list of arrays and PIL "
                               "images, not both")
            photos = [image_io.from_pil(item) if isinstance(item, PIL.Image.Image)
                      else _one_image(item) for item in images]
            return image_io.model_images(photos, self._side(), self.resize)[0]
        array = np.asarray(images, np.float32)
        if array.ndim not in (3, 4) or array.shape[-1] != 3 or 0 in array.shape:
            raise CamError(f"images of shape {array.shape}: give (batch, H, W, 3) or one "
                           "(H, W, 3) image, RGB in [0, 255]")
        if array.ndim == 3:
            array = array[None]
        if array.shape[1:3] == self.input_size:
            return array
        return image_io.model_images(array, self._side(), self.resize)[0]

    def _side(self) -> int:
        height, width = self.input_size
        if height != width:
            raise CamError(f"the model takes {height}x{width} images: give arrays of that "
                           "size (only square inputs are cropped or padded to fit)")
        return height

    def predict(self, images) -> np.ndarray:
        """The probabilities (batch, classes) float32 (a sigmoid unit p: 1 - p and p)."""
        return self.classifier(self.images(images)).numpy()

    def maps(self, images, method: str = "cam", classes: Any = "top1",
             layer: str | None = None, size: str | tuple[int, int] = "input", *,
             ids=None, **options: Any) -> np.ndarray:
        """The maps of `method` (methods.METHODS) for `classes` of each image, float32.

        `classes`: "top1" (the most probable class), "topK" such as "top3" (the K most
        probable, best first), "all", an int (that class for every image), or an int array
        (batch,) or (batch, k). Returns (batch, H, W) for "top1", an int or a (batch,)
        array; else (batch, H, W, k), k in the order asked. `layer`: a name of `layers`
        (None: the default layer; CAM takes no other, saliency none). `size`: "input" (the
        images' H, W, bilinear as tf.image.resize: cam_utils.upsample), "features" (the
        layer's own h, w; the input's for saliency) or (height, width). `ids` (batch,):
        the images' indices in their split, which key a method's random numbers;
        `options` override the explainer's (scorecam_batch=16).
        """
        batch, layer = self._checked(images, method, layer)
        _check_size(size)
        features, probs = self.classifier.features(batch)
        chosen, one_class = self._classes(classes, probs)
        low = methods.maps_for_classes(method, self.classifier, features, chosen, batch,
                                       layer, with_options(self.options, options), ids)
        out = _resized(low, size, batch.shape[1:3])
        return out[..., 0] if one_class else out

    def top_k(self, images, method: str = "cam", k: int | None = None, threshold: float = 0.3,
              layer: str | None = None, *, ids=None, **options: Any) -> dict[str, np.ndarray]:
        """The seed's figure data, from one forward pass: each image's k most probable
        classes and their maps by `method` (methods.top_k_maps; CAM in one compiled
        computation).

        Returns {"maps": (batch, h, w, k) float32 at the layer's resolution, "shown":
        (batch, k, H, W) in [0, 1] as the figure draws them (cam_utils.display_maps:
        divided by the top-1 map's maximum, upsampled, cut below `threshold`), "classes":
        (batch, k) int32 best first, "probs": (batch, k) their probabilities, "all_probs":
        (batch, classes)}. `k` None: 3, or every class of a model with fewer.
        """
        k = min(3, self.num_classes) if k is None else k
        if not 1 <= k <= self.num_classes:
            raise CamError(f"k={k} must be between 1 and the number of classes, "
                           f"{self.num_classes}")
        _check_threshold(threshold)
        batch, layer = self._checked(images, method, layer)
        features, probs = self.classifier.features(batch)
        top = methods.top_k_maps(method, self.classifier, features, probs, k, threshold,
                                 batch.shape[1:3], batch, layer,
                                 with_options(self.options, options), ids)
        return {"maps": np.asarray(top["low_res"], np.float32), "shown": top["maps"].numpy(),
                "classes": top["classes"].numpy(), "probs": top["probs"].numpy(),
                "all_probs": probs.numpy()}

    def _checked(self, images, method: str, layer: str | None) -> tuple[tf.Tensor, str]:
        """(the images as a tensor, the layer as methods.check_layer gives it)."""
        layer = methods.check_layer(method, self.classifier, layer or "")
        return tf.constant(self.images(images)), layer

    def _classes(self, classes: Any, probs: tf.Tensor) -> tuple[tf.Tensor, bool]:
        """(classes (batch, k) int32, whether one class per image was asked for)."""
        count, batch = self.num_classes, probs.shape[0]
        wanted = f"\"top1\" to \"top{count}\", \"all\", a class index or an array of them"
        if isinstance(classes, str):
            if classes == "all":
                return tf.tile(tf.range(count)[None], [batch, 1]), False
            match = re.fullmatch(r"top(\d+)", classes)
            if not match or not 1 <= int(match[1]) <= count:
                raise CamError(f"classes={classes!r}; give {wanted}")
            return cam_utils.top_k_classes(probs, int(match[1]))[1], int(match[1]) == 1
        array = np.asarray(classes)
        if not np.issubdtype(array.dtype, np.integer) or array.ndim > 2 or (
                array.ndim and array.shape[0] != batch) or 0 in array.shape:
            raise CamError(f"classes of type {array.dtype} and shape {array.shape} for "
                           f"{batch} images; give {wanted}, (batch,) or (batch, k)")
        if not 0 <= array.min() <= array.max() < count:
            raise CamError(f"classes hold {array.min()} to {array.max()}; the model's "
                           f"classes are 0 to {count - 1}")
        one_class = array.ndim < 2
        if one_class:
            array = np.broadcast_to(array, (batch,))[:, None]
        return tf.constant(array, tf.int32), one_class


def _one_image(item) -> np.ndarray:
    """One image of a list: (h, w, 3) float32."""
    array = np.asarray(item, np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise CamError(f"an image of shape {array.shape} in the list: give each as (H, W, 3) "
                       "RGB in [0, 255], a file path or a PIL image")
    return array


def _check_size(size) -> None:
    if size in SIZES or (isinstance(size, tuple | list) and len(size) == 2
                         and all(isinstance(side, int) and side > 0 for side in size)):
        return
    raise CamError(f"size={size!r}; choose \"input\", \"features\" or (height, width)")


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise CamError(f"threshold={threshold} must be between 0 and 1")


def _resized(maps: tf.Tensor, size, images_size) -> np.ndarray:
    """(batch, h, w, k) maps at `size` ("input", "features" or (height, width))."""
    target = {"input": tuple(images_size), "features": tuple(maps.shape[1:3])}.get(
        size if isinstance(size, str) else "", tuple(size))
    if target != tuple(maps.shape[1:3]):
        maps = cam_utils.upsample(maps, target)
    return np.asarray(maps, np.float32)


def overlay(image, cam_map, style: str = "post", threshold: float = 0.3, *,
            cmap: str = "", alpha: float = -1.0) -> np.ndarray:
    """One map drawn over one image as the figure draws a panel: (H, W, 3) uint8.

    `image`: (H, W, 3) RGB in [0, 255] (or a PIL image); `cam_map`: (h, w) one class's
    map at any resolution (Explainer.maps, any size). The map is shown as the figure shows
    a top-1 map: divided by its maximum, upsampled bilinearly to H x W, cut below
    `threshold` (cam_utils.display_maps), coloured with the `style`'s colormap ("post":
    magma_r at 0.3 over the photo; "contrast": turbo at 0.6 over a grey photo, faded in
    above the cut) and blended over the image; `cmap` and `alpha` override the style's.
    """
    picture = image_io.from_pil(image) if isinstance(image, PIL.Image.Image) else image
    picture = image_io.as_uint8(picture)
    cam_map = np.asarray(cam_map, np.float32)
    if picture.ndim != 3 or picture.shape[-1] != 3 or cam_map.ndim != 2:
        raise CamError(f"overlay takes one image (H, W, 3) and one map (h, w), not "
                       f"{picture.shape} and {cam_map.shape}")
    _check_threshold(threshold)
    drawn = plots.resolve_style(style, cmap, alpha)
    shown = cam_utils.display_maps(cam_map[None, ..., None], threshold, picture.shape[:2])
    return plots.overlay(picture, shown[0, 0].numpy(), drawn, threshold)


def figure(explainer: Explainer, images, method: str = "cam", top_k: int | None = None, *,
           class_names: Sequence[str] | None = None, labels=None, boxes=None,
           row_names=None, layer: str | None = None, threshold: float = 0.3,
           style: str = "post", cmap: str = "", alpha: float = -1.0,
           show_image: bool = False, title: str | None = None,
           top: dict[str, np.ndarray] | None = None,
           photos: Sequence[np.ndarray] | None = None) -> Figure:
    """The seed's grid (plots.cam_grid): a row per image, its `top_k` classes' maps by
    `method` over it, titled "<class> - <p>%"; `top_k` None: 3, or every class of a model
    with fewer.

    `class_names` (classes,) default "class 0", ...; `labels` (batch,) true classes (-1
    unknown) tick the right panel; `boxes` (batch, 4) normalised ground truth, outlined;
    `row_names` (batch,) label the rows; `threshold`, `style`, `cmap`, `alpha` as in
    overlay; `show_image` adds the plain image first. `top`: Explainer.top_k's result for
    these images and method when it is at hand (visualize_cam.py saves it too). `photos`:
    each image's square at its own resolution (image_io.read_images), the maps drawn over
    them at that size (FULL_RESOLUTION). The figure is closed in pyplot: display or save
    the returned object.
    """
    batch = explainer.images(images)
    names = list(class_names) if class_names is not None else [
        f"class {index}" for index in range(explainer.num_classes)]
    if len(names) != explainer.num_classes:
        raise CamError(f"{len(names)} class names for a model of {explainer.num_classes} "
                       "classes; they must match")
    drawn = plots.resolve_style(style, cmap, alpha)  # checked before any map is made
    layer = methods.check_layer(method, explainer.classifier, layer or "")
    top = top if top is not None else explainer.top_k(batch, method, top_k, threshold, layer)
    shown, maps = image_io.as_uint8(batch), top["shown"]
    if photos is not None:
        shown, maps = _at_photo_size(photos, top["maps"], threshold)
    if title is None:
        title = (f"{methods.TITLES[method]}, layer "
                 f"{methods.layer_name(explainer.classifier, layer)}")
    fig = plots.cam_grid(shown, maps, top["probs"], top["classes"], names, labels=labels,
                         style=drawn, threshold=threshold, show_image=show_image,
                         title=title, boxes=boxes, row_names=row_names)
    plt.close(fig)  # no figure left open in pyplot: a notebook shows the returned one once
    return fig


def _at_photo_size(photos: Sequence[np.ndarray], maps: np.ndarray, threshold: float):
    """Each photo's square, uint8, with its maps (k, side, side) shown as the figure shows
    them at that size. Photos differ in size, so this goes photo by photo; it is a handful
    of user files, not a hot path."""
    squares = [image_io.as_uint8(photo) for photo in photos]
    shown = [cam_utils.display_maps(maps[i:i + 1], threshold, photo.shape[:2])[0].numpy()
             for i, photo in enumerate(squares)]
    return squares, shown


def score(maps, *, boxes=None, masks=None, labels=None, predicted=None,
          threshold: float = 0.3, seed: int = 0) -> dict[str, Any]:
    """Localisation scores of maps against ground truth, pooled over all the images as
    evaluate_cam.py pools a split's (metrics.localisation_scores, then metrics.pooled).

    `maps`: (batch, H, W) at the images' resolution, one class's map per image (from
    Explainer.maps with one class). `boxes`: (batch, 4) normalised (ymin, xmin, ymax,
    xmax) pixel edges, tfds' convention; `masks`: (batch, H, W), nonzero on the object.
    Returns {"num_images", and each localisation score of camlab/scores/registry.py that
    the ground truth given allows (Metric.needs: boxes, masks, either), in its order}:
    fractions in [0, 1]. "top1_localisation" (box hit and right class) also needs
    `labels` and `predicted` (batch,), the true and the predicted classes. "ci95": {score:
    [lo, hi]}, each score's 95% interval, a bootstrap over the images seeded by `seed`
    (camlab.scores.intervals), as in evaluate_cam.py's metrics.json.
    """
    maps = _score_maps(maps)
    _check_threshold(threshold)
    count = maps.shape[0]
    truth = _ground_truth(maps.shape, boxes, masks)
    if (labels is None) != (predicted is None):
        raise CamError("top-1 localisation needs both labels= and predicted= (batch,)")
    correct = (np.ones(count, bool) if labels is None else
               np.asarray(labels).reshape(-1) == np.asarray(predicted).reshape(-1))
    if correct.shape != (count,):
        raise CamError(f"labels and predicted must hold one class per map ({count})")
    per_image: dict[str, list[np.ndarray]] = {}
    for start in range(0, count, SCORE_CHUNK):
        part = slice(start, start + SCORE_CHUNK)
        scores = metrics.localisation_scores(
            tf.constant(maps[part]), {key: tf.constant(value[part])
                                      for key, value in truth.items()},
            correct[part], threshold)
        for key, value in scores.items():
            per_image.setdefault(key, []).append(np.asarray(value))
    joined = {key: np.concatenate(parts) for key, parts in per_image.items()}
    pooled = metrics.pooled(joined)
    if labels is None:
        pooled.pop("top1_localisation", None)
    keys = [key for key in SCORE_ORDER if key in pooled]
    statistics = evaluation.statistics(joined)
    resampled = intervals.resampled({key: statistics[key] for key in keys}, count, seed)
    return {"num_images": count, **{key: pooled[key] for key in keys},
            "ci95": {key: intervals.interval(resampled[key]) for key in keys}}


def _score_maps(maps) -> np.ndarray:
    maps = np.asarray(maps, np.float32)
    if maps.ndim == 4 and maps.shape[-1] == 1:
        maps = maps[..., 0]
    if maps.ndim != 3 or 0 in maps.shape:
        raise CamError(f"score takes one map per image, (batch, H, W), not {maps.shape}: "
                       "for several classes score maps[..., i] of each")
    if not np.isfinite(maps).all():
        raise CamError("the maps hold NaN or inf values")
    return maps


def _ground_truth(shape: tuple[int, ...], boxes, masks) -> dict[str, np.ndarray]:
    """{"bbox": (batch, 4) float32, "mask": (batch, H, W) bool}, as the ground truth given."""
    if boxes is None and masks is None:
        raise CamError("score needs ground truth: boxes= (batch, 4) normalised (ymin, xmin, "
                       "ymax, xmax), masks= (batch, H, W), or both")
    truth = {}
    if boxes is not None:
        boxes = np.asarray(boxes, np.float32)
        if boxes.shape != (shape[0], 4):
            raise CamError(f"boxes of shape {boxes.shape}: give one box per map, "
                           f"({shape[0]}, 4)")
        if not ((boxes >= 0) & (boxes <= 1)).all() or (boxes[:, 2:] < boxes[:, :2]).any():
            raise CamError("boxes must be normalised (ymin, xmin, ymax, xmax) in [0, 1], "
                           "min <= max, as tfds stores them")
        truth["bbox"] = boxes
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != tuple(shape):
            raise CamError(f"masks of shape {masks.shape}: give one per map, {tuple(shape)}")
        truth["mask"] = masks != 0
    return truth
