"""Draws class activation maps of a trained run: NUM_IMAGES images x their TOP_K classes.

Run `python visualize_cam.py` after train_cam.py, with the same RUN_NAME. Everything about
the model (dataset, backbone, image size, class names) is read from the run's config.json.
Writes outputs/<RUN_NAME>/heatmaps.png and cams.npz.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

import cam_config
import cam_data
import cam_models
import cam_plot
import cam_utils
from cam_config import CamError

RUN_NAME = "imagenette"  # the training run to draw, a folder in OUTPUT_DIR
OUTPUT_DIR = "outputs"  # folder holding one subfolder per run
SPLIT = "validation"  # tfds split the images are drawn from
NUM_IMAGES = 5  # rows of the grid: images drawn at random (with SEED) from SPLIT
TOP_K = 3  # columns: the most probable classes of each image
THRESHOLD = 0.3  # map values below this fraction of the top-1 map's maximum are hidden
ALPHA = 0.3  # opacity of the heatmap over the image, 0 to 1
CMAP = "magma_r"  # matplotlib colormap of the heatmap
DPI = 300  # resolution of heatmaps.png, dots per inch
SEED = 0  # chooses which images are drawn


def check_config(config: dict[str, Any], num_classes: int) -> None:
    """Rejects display settings that cannot make a grid, naming the valid range."""
    if not 1 <= config["TOP_K"] <= num_classes:
        raise CamError(f"TOP_K={config['TOP_K']} must be between 1 and the number of "
                       f"classes, {num_classes}")
    for name in ("THRESHOLD", "ALPHA"):
        if not 0.0 <= config[name] <= 1.0:
            raise CamError(f"{name}={config[name]} must be between 0 and 1")
    if config["DPI"] < 1:
        raise CamError(f"DPI={config['DPI']} must be at least 1")


def compute_cams(model, images: np.ndarray, top_k: int, threshold: float) -> dict[str, Any]:
    """Runs the model once on (n, S, S, 3) images; returns all maps the figure and npz need.

    "cams": (n, h, w, classes) raw low-resolution maps; "probs": (n, classes); and the
    display maps of `cam_utils.top_k_maps` ("maps", "top_probs", "top_classes").
    """
    features, probs = cam_models.feature_model(model)(images, training=False)
    weights = cam_models.class_weights(model)
    shown = cam_utils.top_k_maps(features, weights, probs, top_k, threshold, images.shape[1:3])
    return {"cams": cam_utils.class_activation_maps(features, weights).numpy(),
            "probs": probs.numpy(), "maps": shown["maps"].numpy(),
            "top_probs": shown["probs"].numpy(), "top_classes": shown["classes"].numpy()}


def run(config: dict[str, Any]) -> Path:
    """Draws the grid for a resolved configuration; returns the figure's path."""
    run_dir = Path(config["OUTPUT_DIR"]) / config["RUN_NAME"]
    trained = cam_config.read_run_config(run_dir)
    names = trained["class_names"]
    check_config(config, len(names))
    model = cam_models.load_trained_model(run_dir, trained)
    builder = cam_data.get_builder(trained["DATASET"], trained["DATA_DIR"])
    examples = cam_data.load_split(builder, config["SPLIT"], trained["DATA_DIR"])
    batch = cam_data.pick_examples(examples, config["NUM_IMAGES"], config["SEED"],
                                   trained["IMAGE_SIZE"])
    result = compute_cams(model, batch["image"], config["TOP_K"], config["THRESHOLD"])
    images = np.round(batch["image"]).clip(0, 255).astype(np.uint8)
    fig = cam_plot.cam_grid(images, result["maps"], result["top_probs"], result["top_classes"],
                            names, config["ALPHA"], config["CMAP"], batch.get("bbox"))
    figure_path = run_dir / "heatmaps.png"
    cam_plot.save_figure(fig, figure_path, config["DPI"])
    with cam_config.atomic_path(run_dir / "cams.npz") as tmp:
        np.savez_compressed(tmp, images=images, cams=result["cams"], probs=result["probs"],
                            labels=batch["label"], class_names=np.array(names),
                            **({"bboxes": batch["bbox"]} if "bbox" in batch else {}))
    print(f"saved {run_dir / 'cams.npz'}")
    return figure_path


def main(argv: list[str] | None = None) -> Path:
    try:
        return run(cam_config.resolve(sys.modules[__name__], argv))
    except CamError as error:
        raise SystemExit(f"visualize_cam.py: error: {error}") from None


if __name__ == "__main__":
    main()
