"""Scores a trained run's maps: classification, localisation, faithfulness, sanity.

Run `python evaluate_cam.py` after train_cam.py, with the same RUN_NAME. Every map score
is given for the model's predicted class and for the true class, and beside it the same
score of two baselines on the same images: a centred Gaussian map and a random map.
Localisation needs masks / boxes (the demo data has them; imagenette does not).
Writes outputs/<RUN_NAME>/metrics.json (or metrics_<METHOD>.json for METHOD != "cam"),
confusion_matrix.png and deletion_insertion.png.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import cam_config
import cam_data
import cam_metrics
import cam_models
import cam_plot
import cam_utils
from cam_config import CamError

PRESET = ""  # "" or a file name in presets/ ("demo"): its values for this script apply
RUN_NAME = "imagenette"  # the training run to score, a folder in OUTPUT_DIR
OUTPUT_DIR = "outputs"  # folder holding one subfolder per run
SPLIT = "validation"  # tfds split to score, in its stored order
MAX_IMAGES = 0  # score the first MAX_IMAGES images of SPLIT; 0 = all of them
METHOD = "cam"  # "cam" (Zhou et al. 2016) or "gradcam" (Selvaraju et al. 2017)
BATCH_SIZE = 50  # images per batch; deletion/insertion feeds (STEPS + 1) x 2 x this
PREDICT_BATCH_SIZE = 256  # images per forward pass inside deletion / insertion
SEED = 0  # seeds the random baseline maps and the randomised model
THRESHOLD = 0.3  # mask IoU: the map is cut at this fraction of its maximum
STEPS = 16  # deletion / insertion: pixels move in STEPS equal steps
BLUR_SIGMA = 0.1  # removal baseline: Gaussian blur, std as a fraction of the image side

# Key suffix of each map source in metrics.json: the method, then the two baselines.
SOURCES = ("", "_center_baseline", "_random_baseline")


def check_config(config: dict[str, Any]) -> None:
    """Rejects settings no evaluation can use, naming the valid range."""
    if config["METHOD"] not in cam_utils.METHODS:
        raise CamError(f"METHOD={config['METHOD']!r}; choose one of "
                       f"{', '.join(cam_utils.METHODS)}")
    for name in ("BATCH_SIZE", "PREDICT_BATCH_SIZE", "STEPS"):
        if config[name] < 1:
            raise CamError(f"{name}={config[name]} must be at least 1")
    if config["MAX_IMAGES"] < 0:
        raise CamError(f"MAX_IMAGES={config['MAX_IMAGES']} must be 0 (all) or more")
    if not 0.0 <= config["THRESHOLD"] <= 1.0:
        raise CamError(f"THRESHOLD={config['THRESHOLD']} must be between 0 and 1")
    if not config["BLUR_SIGMA"] > 0:
        raise CamError(f"BLUR_SIGMA={config['BLUR_SIGMA']} must be positive")


def localisation_scores(maps: tf.Tensor, batch: dict, correct: np.ndarray,
                        threshold: float) -> dict[str, np.ndarray]:
    """Per-image pointing game (with the paper's tolerance, and strict: on the object),
    CAM-paper box and top-1 localisation, and mask IoU."""
    box_hit = cam_metrics.box_iou(cam_metrics.largest_region_box(maps), batch["bbox"]) >= 0.5
    return {"pointing_game": cam_metrics.pointing_game(maps, batch["mask"]).numpy(),
            "pointing_game_strict": cam_metrics.pointing_game(maps, batch["mask"], 0).numpy(),
            "box_localisation": box_hit.numpy(),
            "top1_localisation": box_hit.numpy() & correct,
            "mask_iou": cam_metrics.mask_iou(maps, batch["mask"], threshold).numpy()}


def faithfulness_scores(predict, images, baselines, maps, classes, steps: int,
                        rows: np.ndarray | None = None, reuse: dict | None = None) -> dict:
    """Deletion / insertion AUC and curves per image (cam_metrics.deletion_insertion_auc).

    With `rows`, only those images are computed and the rest copied from `reuse`: the
    true-class scores equal the predicted-class scores wherever the two classes agree,
    so only misclassified images need the extra forward passes.
    """
    if rows is None:
        return cam_metrics.deletion_insertion_auc(predict, images, baselines, maps, classes,
                                                  steps)
    scores = {key: value.copy() for key, value in reuse.items()}
    if len(rows):
        fresh = cam_metrics.deletion_insertion_auc(
            predict, tf.gather(images, rows), tf.gather(baselines, rows),
            tf.gather(maps, rows), tf.gather(classes, rows), steps)
        for key, value in fresh.items():
            scores[key][rows] = value
    return scores


def score_batch(config: dict, model, random_model, predict, batch: dict,
                batch_index: int) -> dict[str, np.ndarray]:
    """Every per-image score of one batch, keyed "<target>/<metric><source>"."""
    images, labels = batch["image"], batch["label"].numpy()
    size = images.shape[1:3]
    features, probs = cam_models.feature_model(model)(images, training=False)
    predicted = np.argmax(probs.numpy(), axis=1)
    correct = predicted == labels
    classes = tf.constant(np.stack([predicted, labels], axis=1), tf.int32)
    low_res = cam_utils.maps_for_classes(config["METHOD"], model, features, classes)
    method_maps = cam_utils.upsample(low_res, size)
    n = len(labels)
    sources = {"_center_baseline": cam_metrics.centre_gaussian_maps(n, *size),
               "_random_baseline": cam_metrics.random_maps(
                   n, *size, seed=config["SEED"] * 100_003 + batch_index)}
    baselines = cam_metrics.blurred(images, config["BLUR_SIGMA"] * size[0])
    out = {"label": labels, "predicted": predicted, "correct": correct,
           "sanity_rank_correlation": sanity_correlation(config["METHOD"], low_res[..., 0],
                                                         random_model, images, classes)}
    predicted_faith = {}
    for column, target in enumerate(("predicted_class", "true_class")):
        for suffix in SOURCES:
            maps = method_maps[..., column] if suffix == "" else sources[suffix]
            scores = {}
            if "mask" in batch:
                scores.update(localisation_scores(maps, batch, correct, config["THRESHOLD"]))
            if column == 0:
                predicted_faith[suffix] = faithfulness_scores(
                    predict, images, baselines, maps, classes[:, 0], config["STEPS"])
                scores.update(predicted_faith[suffix])
            else:
                scores.update(faithfulness_scores(
                    predict, images, baselines, maps, classes[:, 1], config["STEPS"],
                    rows=np.flatnonzero(~correct), reuse=predicted_faith[suffix]))
            out.update({f"{target}/{key}{suffix}": value for key, value in scores.items()})
    return out


def sanity_correlation(method: str, trained_maps, random_model, images,
                       classes) -> np.ndarray:
    """Rank correlation of the trained model's maps (batch, h, w) of `classes[:, 0]` with
    the same method's maps from `random_model`, per image.

    The model-randomisation test of Adebayo et al. (2018): a map that explains the model
    must change when the weights it explains are replaced by random ones (low value).
    """
    features, _ = cam_models.feature_model(random_model)(images, training=False)
    random_maps = cam_utils.maps_for_classes(method, random_model, features, classes[:, :1])
    return cam_metrics.rank_correlation(trained_maps, random_maps[..., 0]).numpy()


def summarise(scores: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
    """Means over images, per-class breakdowns and the confusion matrix."""
    labels, predicted = scores["label"], scores["predicted"]
    summary: dict[str, Any] = {
        "num_images": int(len(labels)),
        "accuracy": float(np.mean(scores["correct"])),
        "sanity_rank_correlation": float(np.mean(scores["sanity_rank_correlation"])),
    }
    for target in ("predicted_class", "true_class"):
        summary[target] = {key.split("/", 1)[1]: float(np.mean(value))
                           for key, value in scores.items()
                           if key.startswith(target) and value.ndim == 1}
    per_class = {}
    for index, name in enumerate(names):
        rows = labels == index
        per_class[name] = {"images": int(rows.sum())}
        if rows.any():
            per_class[name]["accuracy"] = float(np.mean(scores["correct"][rows]))
            for key in ("pointing_game", "box_localisation", "deletion_auc", "insertion_auc"):
                values = scores.get(f"predicted_class/{key}")
                if values is not None:
                    per_class[name][key] = float(np.mean(values[rows]))
    summary["per_class"] = per_class
    count = len(names)
    summary["confusion_matrix"] = np.bincount(labels * count + predicted,
                                              minlength=count * count).reshape(
        count, count).tolist()
    return summary


def run(config: dict[str, Any]) -> Path:
    """Scores a run's maps with a resolved configuration; returns the metrics path."""
    check_config(config)
    started = time.perf_counter()
    run_dir = Path(config["OUTPUT_DIR"]) / config["RUN_NAME"]
    trained = cam_config.read_run_config(run_dir)
    names = trained["class_names"]
    model = cam_models.load_trained_model(run_dir, trained)
    keras.utils.set_random_seed(config["SEED"])
    random_model = cam_models.build_model(trained["BACKBONE"], trained["IMAGE_SIZE"],
                                          len(names))
    builder = cam_data.get_builder(trained["DATASET"], trained["DATA_DIR"])
    batches = cam_data.evaluation_batches(
        cam_data.load_split(builder, config["SPLIT"], trained["DATA_DIR"]),
        trained["IMAGE_SIZE"], config["BATCH_SIZE"], config["MAX_IMAGES"])

    forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)

    def predict(images):
        # Chunks bound the memory of a forward pass; at 320 px one chunk is ~1 GB.
        chunk = config["PREDICT_BATCH_SIZE"]
        return tf.concat([forward(images[start:start + chunk])
                          for start in range(0, len(images), chunk)], axis=0)

    progress = keras.utils.Progbar(int(batches.cardinality()) if
                                   batches.cardinality() > 0 else None, unit_name="batch")
    collected: dict[str, list] = {}
    for index, batch in enumerate(batches):
        for key, value in score_batch(config, model, random_model, predict, batch,
                                      index).items():
            collected.setdefault(key, []).append(np.asarray(value))
        progress.add(1)
    if not collected:
        raise CamError(f"split {config['SPLIT']!r} has no images to score")
    scores = {key: np.concatenate(parts) for key, parts in collected.items()}
    summary = summarise(scores, names)
    suffix = "" if config["METHOD"] == "cam" else f"_{config['METHOD']}"
    cam_plot.save_figure(cam_plot.confusion_matrix(np.array(summary["confusion_matrix"]),
                                                   names), run_dir / "confusion_matrix.png", 150)
    curves = {label: {kind: scores[f"predicted_class/{kind}_curve{source}"].mean(axis=0)
                      for kind in ("deletion", "insertion")}
              for label, source in zip((config["METHOD"], "centre", "random"), SOURCES,
                                       strict=True)}
    cam_plot.save_figure(cam_plot.deletion_insertion_curves(curves),
                         run_dir / f"deletion_insertion{suffix}.png", 150)
    metrics = {"run": config["RUN_NAME"], "split": config["SPLIT"], "method": config["METHOD"],
               "removal_baseline": f"gaussian blur, sigma {config['BLUR_SIGMA'] * 100:g}% "
                                   "of the image side", "steps": config["STEPS"],
               "pointing_tolerance_px": cam_metrics.POINTING_TOLERANCE * trained["IMAGE_SIZE"],
               **summary, "seconds": round(time.perf_counter() - started, 1),
               "config": config}
    path = run_dir / f"metrics{suffix}.json"
    cam_config.write_json(path, metrics)
    print_table(metrics)
    return path


def print_table(metrics: dict[str, Any]) -> None:
    """The headline numbers, method beside its two baselines, for the predicted class."""
    scores = metrics["predicted_class"]
    print(f"\n{metrics['num_images']} images, accuracy {100 * metrics['accuracy']:.1f}%, "
          f"sanity rank correlation {metrics['sanity_rank_correlation']:.3f}, "
          f"{metrics['seconds']:.0f} s")
    print(f"{'predicted class':<20}{metrics['method']:>10}{'centre':>10}{'random':>10}")
    for key in ("pointing_game", "pointing_game_strict", "box_localisation",
                "top1_localisation", "mask_iou", "deletion_auc", "insertion_auc"):
        if key in scores:
            values = [scores[f"{key}{source}"] for source in SOURCES]
            print(f"{key:<20}" + "".join(f"{value:>10.3f}" for value in values))
    columns = ("accuracy", "pointing_game", "box_localisation", "deletion_auc",
               "insertion_auc")
    print(f"\n{'per true class':<20}{'images':>8}" + "".join(f"{c[:12]:>14}" for c in columns))
    for name, entry in metrics["per_class"].items():
        print(f"{name[:20]:<20}{entry['images']:>8}" + "".join(
            f"{entry[c]:>14.3f}" if c in entry else f"{'-':>14}" for c in columns))


def main(argv: list[str] | None = None) -> Path:
    return cam_config.run_script(sys.modules[__name__], run, argv)


if __name__ == "__main__":
    main()
