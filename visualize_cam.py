"""Draws class activation maps of a trained run: NUM_IMAGES images x their TOP_K classes.

Run `python visualize_cam.py` after train_cam.py, with the same RUN_NAME. Everything about
the model (dataset, backbone, image size, class names) is read from the run's config.json.
Or explain a Keras classifier of your own: --MODEL=path/to/model.keras (see MODEL below).
Writes outputs/<RUN_NAME>/heatmaps.png (or .pdf, .svg: FORMAT) and cams.npz: the METHOD's
maps of the top classes (`maps`, `classes`), the CAMs of every class where CAM applies
(`cam_all_classes`), and in `settings` what each array holds. The maps come from
camlab.api, the same calls a notebook makes (docs/api.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from camlab.core import settings

# Before TensorFlow loads (seconds): answers --help, stops on a bad setting, quiets its log.
if __name__ == "__main__":
    settings.before_tensorflow(__file__)

import numpy as np

from camlab import api
from camlab.core import runs
from camlab.datasets import data, image_io
from camlab.errors import CamError, check_choice
from camlab.maps import methods
from camlab.networks import subject
from camlab.report import plots

PRESET = ""  # "" or a file name in presets/ ("demo"): its values for this script apply
RUN_NAME = ""  # the training run to draw, a folder in OUTPUT_DIR; "" = "imagenette"
OUTPUT_DIR = "outputs"  # folder holding one subfolder per run
MODEL = ""  # your own saved classifier (.keras or full-model .h5) instead of a run
DATASET = ""  # MODEL: tfds name or image folder to draw SPLIT from ("" with IMAGES)
DATA_DIR = ""  # MODEL: tfds data folder; "" = tfds' default (~/tensorflow_datasets)
IMAGE_SIZE = 224  # MODEL: pixels, used only when the model's input size is not fixed
CLASS_NAMES = ""  # MODEL: file with one name per line, or "a,b,c"; "" = DATASET's or "class 0"..
PREPROCESS = "none"  # MODEL: what it expects of RGB [0, 255]: none (inside), caffe, tf, torch, unit
OUTPUT = ""  # MODEL: which output to explain, by name or number, for a model with several
CUSTOM_CODE = ""  # MODEL: a .py file defining the model's custom layers
SPLIT = "validation"  # tfds split the images are drawn from
NUM_IMAGES = 5  # rows of the grid: images drawn at random (with SEED) from SPLIT
TOP_K = 3  # columns: the most probable classes of each image
THRESHOLD = 0.3  # map values below this fraction of the top-1 map's maximum are hidden
STYLE = "post"  # "post" (the post's look) or "contrast" (grey photo, turbo, soft-edged cut)
ALPHA = -1.0  # heatmap opacity over the image, 0 to 1; -1 = STYLE's (post 0.3, contrast 0.6)
CMAP = ""  # matplotlib colormap of the heatmap; "" = STYLE's (post magma_r, contrast turbo)
SHOW_IMAGE = False  # True adds a first column with the plain image
DPI = 300  # resolution of the figure, dots per inch
FORMAT = "png"  # file format of the figure: png, pdf or svg
SEED = 0  # chooses which images are drawn
METHOD = "cam"  # a method: cam, gradcam, ... (a wrong name lists all), an a,b list, or "all"
SCORECAM_BATCH = 64  # Score-CAM: 224 px masked images per pass (one per channel); 64 px: 12x more
SCORECAM_MAX_CHANNELS = 0  # Score-CAM: each image's N channels of highest variance; 0 = all
ABLATION_BATCH = 64  # Ablation-CAM: ablated copies of the layer per pass (it runs one per channel)
AUG_SMOOTH = False  # CAM family: True = mean map over flips x scales 0.9/1/1.1 (6x the cost)
EIGEN_SMOOTH = False  # CAM family: True = 1st principal component of w_c * A_c, not their sum
IMAGES = ()  # your own image files or globs instead of SPLIT: --IMAGES=a.jpg,photos/*.png
LAYER = ""  # "" = the maps feeding GAP (CAM is exact only there); else a layer name, for gradcam
NOISE_SAMPLES = 50  # smoothgrad: noisy copies of each image (Smilkov et al. 2017: 50)
NOISE_LEVEL = 0.15  # smoothgrad: noise std as a fraction of the image's max - min (0.15)
IG_STEPS = 50  # integratedgradients: Riemann steps from the baseline to the image
IG_BASELINE = "black"  # integratedgradients: start from "black" or "blur" (the blurred image)
OCCLUSION_PATCH = 0.125  # occlusion: the grey square's side, a fraction of the image's side
OCCLUSION_STRIDE = 0.0625  # occlusion: the square's step, a fraction of the side (225 places)
RISE_MASKS = 2000  # rise: random masks per image, one forward pass each (the paper: 4000-8000)
ATTRIBUTION_BATCH = 32  # input methods: 224 px images per model pass (memory cap); 64 px: 12x more
RESIZE = "crop"  # IMAGES: "crop" (the centred square) or "pad" (whole photo on black); no squash
FULL_RESOLUTION = False  # IMAGES: True draws each map over the photo's square at its own pixels
TENSORFLOW_LOG = False  # True shows TensorFlow's C++ log lines (hidden: they are noise on CPUs)
# ---- end of settings ----


def check_config(config: dict[str, Any], num_classes: int) -> None:
    """Rejects display settings that cannot make a grid, naming the valid range."""
    if not 1 <= config["TOP_K"] <= num_classes:
        raise CamError(f"TOP_K={config['TOP_K']} must be between 1 and the number of "
                       f"classes, {num_classes}")
    if not 0.0 <= config["THRESHOLD"] <= 1.0:
        raise CamError(f"THRESHOLD={config['THRESHOLD']} must be between 0 and 1")
    plots.resolve_style(config["STYLE"], config["CMAP"], config["ALPHA"])
    check_choice("FORMAT", config["FORMAT"], plots.FORMATS)
    check_choice("RESIZE", config["RESIZE"], image_io.RESIZE_MODES)
    methods.check_options(methods.parse_methods(config["METHOD"]),
                          methods.Options.from_config(config))
    if config["DPI"] < 1:
        raise CamError(f"DPI={config['DPI']} must be at least 1")


def chosen_images(config: dict[str, Any], trained: dict[str, Any]) -> dict[str, np.ndarray]:
    """The images to draw: the user's IMAGES files, else a seeded pick from SPLIT.

    Returns "image" (n, S, S, 3) float32 in [0, 255], "label" (n,) (-1 for files), and
    "bbox" (n, 4) where the dataset has boxes; for files also "file" (n,) names and
    "photo": each photo's square (see image_io.square) at its own resolution.
    """
    size = trained["IMAGE_SIZE"]
    if not config["IMAGES"] and not trained["DATASET"]:
        raise CamError("MODEL needs images to explain: set IMAGES (your files) or DATASET "
                       "(a tfds name or an image folder)")
    if config["IMAGES"]:
        images, photos, paths = image_io.read_images(config["IMAGES"], size, config["RESIZE"])
        return {"image": images, "label": np.full(len(paths), -1), "photo": photos,
                "file": np.array([path.name for path in paths])}
    builder = data.get_run_dataset(trained)
    examples = data.load_split(builder, config["SPLIT"], trained["DATA_DIR"])
    count = int(examples.cardinality())
    if count > 0:
        settings.adapt(config, "NUM_IMAGES", min(config["NUM_IMAGES"], count),
                       f"split {config['SPLIT']!r} has only {count} image" + "s" * (count > 1))
    return data.pick_examples(examples, config["NUM_IMAGES"], config["SEED"], size)


def array_contents(explainer: api.Explainer, method: str, layer: str, top_k: int,
                   maps_shape: tuple[int, ...], cams: bool) -> dict[str, str]:
    """What each array of cams<suffix>.npz holds, as its `settings` say."""
    shape = "x".join(str(side) for side in maps_shape[1:3])
    where = ("the input pixels" if methods.REGISTRY[method].on_input else
             f"layer {methods.layer_name(explainer.classifier, layer)}")
    contents = {
        "maps": f"{methods.TITLES[method]} maps (METHOD={method!r}) of {where}, {shape}, "
                f"float32 (images, h, w, TOP_K={top_k}), before the figure's display "
                "transform: each image's most probable classes, in `classes`",
        "classes": "(images, TOP_K) int32: the classes of `maps`, most probable first",
        "probs": "(images, classes) float32: the model's probabilities of every class",
        "images": "(images, S, S, 3) uint8: the images the model saw, rounded",
    }
    if cams:
        contents["cam_all_classes"] = (
            f"CAM (F @ W, no bias) of every class on layer {explainer.default_layer}, "
            "(images, h, w, classes) float32, whatever METHOD is: their spatial means plus "
            "the Dense bias are the logits")
    return contents


def draw(config: dict[str, Any], run_dir: Path, explainer: api.Explainer, batch: dict,
         names: list[str], method: str, cams: np.ndarray | None) -> Path:
    """One method's grid and arrays for the chosen images; returns the figure's path.
    `cams`: the CAMs of every class (images, h, w, classes), or None where CAM does not
    apply."""
    model = explainer.classifier
    layer = methods.check_layer(method, model, config["LAYER"])
    print(f"{method}: maps of layer {methods.layer_name(model, layer)}")
    top = explainer.top_k(batch["image"], method, config["TOP_K"], config["THRESHOLD"], layer)
    where = "your images" if config["IMAGES"] else f"{config['SPLIT']} split"
    fig = api.figure(
        explainer, batch["image"], method, config["TOP_K"], top=top, class_names=names,
        labels=batch["label"], boxes=batch.get("bbox"), row_names=batch.get("file"),
        layer=layer, threshold=config["THRESHOLD"], style=config["STYLE"],
        cmap=config["CMAP"], alpha=config["ALPHA"], show_image=config["SHOW_IMAGE"],
        title=f"{methods.TITLES[method]} — run {run_dir.name}, layer "
              f"{methods.layer_name(model, layer)}, {where}",
        photos=batch["photo"] if config["FULL_RESOLUTION"] and "photo" in batch else None)
    # Own images, other methods and layers get their own files, so the split's CAM grid stays.
    suffix = ("_images" if config["IMAGES"] else "") + (
        "" if method == "cam" else f"_{method}") + (f"_{layer}" if layer else "")
    figure_path = run_dir / f"heatmaps{suffix}.{config['FORMAT']}"
    plots.save_figure(fig, figure_path, config["DPI"])
    arrays_path = run_dir / f"cams{suffix}.npz"
    contents = array_contents(explainer, method, layer, config["TOP_K"], top["maps"].shape,
                              cams is not None)
    with runs.atomic_path(arrays_path) as tmp:
        np.savez_compressed(tmp, images=image_io.as_uint8(batch["image"]),
                            probs=top["all_probs"], maps=top["maps"], classes=top["classes"],
                            **({"cam_all_classes": cams} if cams is not None else {}),
                            labels=batch["label"], class_names=np.array(names),
                            # what drew the figure, and what each array holds
                            settings=json.dumps({**config, "arrays": contents}),
                            **({"bboxes": batch["bbox"]} if "bbox" in batch else {}),
                            **({"files": batch["file"]} if "file" in batch else {}))
    print(f"saved {arrays_path}")
    return figure_path


def run(config: dict[str, Any]) -> Path:
    """Draws a grid per METHOD for a resolved configuration; returns the last figure's path."""
    chosen = methods.parse_methods(config["METHOD"])
    model, trained, run_dir = subject.open_subject(config)
    names = trained["class_names"]
    settings.adapt(config, "TOP_K", min(config["TOP_K"], len(names)),
                   f"the model has {len(names)} classes")
    check_config(config, len(names))
    for method in chosen:  # every name checked before any image is read or drawn
        methods.check_layer(method, model, config["LAYER"])
    explainer = api.Explainer(model, methods.Options.from_config(config), config["RESIZE"])
    batch = chosen_images(config, trained)
    cams = (None if model.cam_kernel is None else  # CAM needs a GAP -> Dense head
            explainer.maps(batch["image"], "cam", classes="all", size="features"))
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = [draw(config, run_dir, explainer, batch, names, method, cams)
             for method in chosen]
    print("next: " + settings.command(Path(__file__).with_name("evaluate_cam.py"), config,
                                      ("RUN_NAME", "OUTPUT_DIR", "METHOD", "LAYER",
                                       *subject.MODEL_SETTINGS)))
    return paths[-1]


def main(argv: list[str] | None = None) -> Path:
    return settings.run_script(__file__, run, argv)


if __name__ == "__main__":
    main()
