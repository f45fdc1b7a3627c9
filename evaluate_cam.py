"""Scores a trained run's maps: classification, localisation, faithfulness, sanity.

Run `python evaluate_cam.py` after train_cam.py, with the same RUN_NAME, or on a Keras
classifier of your own with --MODEL=path/to/model.keras --DATASET=... Every map score
is given for the model's predicted class and for the true class, and beside it the same
score of two baselines on the same images: a centred Gaussian map and a random map.
Localisation needs boxes or masks (camlab/datasets/groundtruth.py; cam_shapes, CUB, pets have them).
Writes outputs/<RUN_NAME>/metrics.json (or metrics_<METHOD>.json for METHOD != "cam"),
confusion_matrix.png and deletion_insertion.png (or .pdf, .svg: FORMAT).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from camlab.core import settings

# Before TensorFlow loads (seconds): answers --help, stops on a bad setting, quiets its log.
if __name__ == "__main__":
    settings.before_tensorflow(__file__)

import numpy as np
import tensorflow as tf

import cam_utils
from camlab.core import runs
from camlab.datasets import data, groundtruth
from camlab.errors import CamError, check_choice
from camlab.evaluate import evaluation, leaderboard, shards, trust
from camlab.maps import methods
from camlab.networks import subject
from camlab.report import plots
from camlab.scores import knowncause, localisation, metrics, registry

PRESET = ""  # "" or a file name in presets/ ("demo"): its values for this script apply
RUN_NAME = ""  # the run to score, a folder in OUTPUT_DIR; "" = "imagenette"; "demo_s*": each seed
OUTPUT_DIR = "outputs"  # folder holding one subfolder per run
MODEL = ""  # your own saved classifier (.keras or full-model .h5) instead of a run
DATASET = ""  # MODEL: tfds name or image folder whose SPLIT is scored
DATA_DIR = ""  # MODEL: tfds data folder; "" = tfds' default (~/tensorflow_datasets)
IMAGE_SIZE = 224  # MODEL: pixels, used only when the model's input size is not fixed
CLASS_NAMES = ""  # MODEL: file with one name per line, or "a,b,c"; "" = DATASET's
PREPROCESS = "none"  # MODEL: what it expects of RGB [0, 255]: none (inside), caffe, tf, torch, unit
OUTPUT = ""  # MODEL: which output to explain, by name or number, for a model with several
CUSTOM_CODE = ""  # MODEL: a .py file defining the model's custom layers
SPLIT = "validation"  # tfds split to score, in its stored order
CONTROL = ""  # cam_shapes/shortcut: a run trained on markers that name no class, mapped beside
MAX_IMAGES = 0  # score the first MAX_IMAGES images of SPLIT; 0 = all of them
METHOD = "cam"  # a method: cam, gradcam, ... (a wrong name lists all), an a,b list, or "all"
# With several METHODs, a method named here scores only the split's first N images ("name:N"),
# in a pass of its own, so that METHOD=all fits in 10 minutes on 2 cores (docs/evaluation.md):
# every method costs ~30 s per 1,000 demo images to score, these also 25-1200 ms an image
# for their maps (twice: the sanity check). The seven of `make demo-evaluate` have none.
CAPS = ("hirescam:200", "gradcamelementwise:200", "xgradcam:200", "ablationcam:200",
        "eigengradcam:200", "guidedbackprop:200", "guidedgradcam:200", "smoothgrad:50",
        "integratedgradients:50", "occlusion:50", "rise:10")  # () = none
SCORECAM_BATCH = 64  # Score-CAM: 224 px masked images per pass (one per channel); 64 px: 12x more
SCORECAM_MAX_CHANNELS = 0  # Score-CAM: each image's N channels of highest variance; 0 = all
ABLATION_BATCH = 64  # Ablation-CAM: ablated copies of the layer per pass (it runs one per channel)
AUG_SMOOTH = False  # CAM family: True = mean map over flips x scales 0.9/1/1.1 (6x the cost)
EIGEN_SMOOTH = False  # CAM family: True = 1st principal component of w_c * A_c, not their sum
BATCH_SIZE = 50  # images per batch; deletion/insertion feeds (STEPS + 1) x 2 x this
PREDICT_BATCH_SIZE = 256  # images per forward pass inside deletion / insertion
SEED = 0  # seeds the random baseline maps and the randomised model
ROAD = False  # also ROAD (Rong et al. 2022): 18 passes and imputations per map, ~60 ms at 64 px
BOX_PROTOCOL = "lab"  # MaxBoxAccV2's box geometry: "lab" or "wsolevaluation" (the papers' tables)
THRESHOLD = 0.3  # mask IoU: the map is cut at this fraction of its maximum
STEPS = 16  # deletion / insertion: pixels move in STEPS equal steps; 0 = neither (faster)
BLUR_SIGMA = 0.1  # removal baseline: Gaussian blur, std as a fraction of the image side
LAYER = ""  # "" = the maps feeding GAP (CAM is exact only there); else a layer name, for gradcam
NOISE_SAMPLES = 50  # smoothgrad: noisy copies of each image (Smilkov et al. 2017: 50)
NOISE_LEVEL = 0.15  # smoothgrad: noise std as a fraction of the image's max - min (0.15)
IG_STEPS = 50  # integratedgradients: Riemann steps from the baseline to the image
IG_BASELINE = "black"  # integratedgradients: start from "black" or "blur" (the blurred image)
OCCLUSION_PATCH = 0.125  # occlusion: the grey square's side, a fraction of the image's side
OCCLUSION_STRIDE = 0.0625  # occlusion: the square's step, a fraction of the side (225 places)
RISE_MASKS = 2000  # rise: random masks per image, one forward pass each (the paper: 4000-8000)
ATTRIBUTION_BATCH = 32  # input methods: 224 px images per model pass (memory cap); 64 px: 12x more
CONFUSION = "counts"  # confusion matrix cells: "counts", or "rows" (share of the true class)
SHARD = ""  # "i/n": score batches i, i + n, i + 2n, ... only (0 <= i < n), into <run>/shards/
MERGE_SHARDS = 0  # n: combine the n shards of SHARD="0/n" ... "n-1/n" into the files one run writes
FORMAT = "png"  # file format of the figures: png, pdf or svg
TENSORFLOW_LOG = False  # True shows TensorFlow's C++ log lines (hidden: they are noise on CPUs)
# ---- end of settings ----


CONFUSION_CHOICES = ("counts", "rows")


def check_config(config: dict[str, Any]) -> None:
    """Rejects settings no evaluation can use, naming the valid range."""
    methods.check_options(methods.parse_methods(config["METHOD"]),
                          methods.Options.from_config(config))
    for name in ("BATCH_SIZE", "PREDICT_BATCH_SIZE"):
        if config[name] < 1:
            raise CamError(f"{name}={config[name]} must be at least 1")
    if config["STEPS"] < 0:
        raise CamError(f"STEPS={config['STEPS']} must be 0 (no deletion / insertion) or more")
    if config["MAX_IMAGES"] < 0:
        raise CamError(f"MAX_IMAGES={config['MAX_IMAGES']} must be 0 (all) or more")
    if not 0.0 <= config["THRESHOLD"] <= 1.0:
        raise CamError(f"THRESHOLD={config['THRESHOLD']} must be between 0 and 1")
    if not config["BLUR_SIGMA"] > 0:
        raise CamError(f"BLUR_SIGMA={config['BLUR_SIGMA']} must be positive")
    check_choice("CONFUSION", config["CONFUSION"], CONFUSION_CHOICES)
    check_choice("BOX_PROTOCOL", config["BOX_PROTOCOL"], localisation.BOX_PROTOCOLS)
    parse_shard(config["SHARD"])
    parse_caps(config["CAPS"])
    if config["MERGE_SHARDS"] < 0 or config["MERGE_SHARDS"] == 1:
        raise CamError(f"MERGE_SHARDS={config['MERGE_SHARDS']} must be 0 (no merge) or the "
                       "number of shards, 2 or more")
    if config["SHARD"] and config["MERGE_SHARDS"]:
        raise CamError("SHARD scores one shard and MERGE_SHARDS combines them: set one of "
                       "the two")
    check_choice("FORMAT", config["FORMAT"], plots.FORMATS)


def parse_shard(text: str) -> tuple[int, int] | None:
    """SHARD "i/n" as (i, n); None for ""."""
    if not text:
        return None
    parts = text.split("/")
    if len(parts) != 2 or not all(part.strip().isdigit() for part in parts) or not (
            0 <= int(parts[0]) < int(parts[1])):
        raise CamError(f"SHARD={text!r} must be \"i/n\" with 0 <= i < n, e.g. \"0/4\" for the "
                       "first of 4 shards, or \"\" for the whole split")
    return int(parts[0]), int(parts[1])


def parse_caps(caps: tuple[str, ...]) -> dict[str, int]:
    """CAPS ("rise:50", ...) as {method: images}; one CamError for an entry that is not
    "<method>:<images of at least 1>"."""
    out = {}
    for entry in caps:
        name, _, count = entry.partition(":")
        if name.strip() not in methods.METHODS or not count.strip().isdigit() or not int(
                count) >= 1:
            raise CamError(f"CAPS entry {entry!r} must be \"<method>:<images>\" with a method "
                           f"of {', '.join(methods.METHODS)} and a number of at least 1, "
                           "e.g. \"rise:50\"; or CAPS=() for none")
        out[name.strip()] = int(count)
    return out


def image_limits(config: dict[str, Any], chosen: tuple[str, ...], total: int
                 ) -> dict[str, int]:
    """How many of the split's first images each method scores, 0 = all: MAX_IMAGES, or
    with several METHODs a smaller cap of CAPS (a split of `total` images, -1 unknown)."""
    limit, caps = config["MAX_IMAGES"], parse_caps(config["CAPS"]) if len(chosen) > 1 else {}
    out = {}
    for method in chosen:
        cap = caps.get(method, 0)
        below = cap and (not limit or cap < limit) and (total < 0 or cap < total)
        out[method] = cap if below else limit
    return out


def scored_split(config: dict[str, Any], trained: dict[str, Any], model, random_model,
                 layers: dict[str, str]) -> dict[str, dict[str, np.ndarray]]:
    """Every per-image score of SPLIT (its first MAX_IMAGES images) for every method of
    `layers` {method: layer}, in one pass over the split (evaluation.score_batches), and
    one more over the first N images for the methods CAPS caps at N; with SHARD "i/n", of
    batches i, i + n, ... only: the same batches, so the same numbers, as in a run of the
    whole split. A capped method's scores are those of a run of it alone with
    MAX_IMAGES=N."""
    builder = data.get_run_dataset(trained)
    print(groundtruth.find(builder).describe())
    examples = data.load_split(builder, config["SPLIT"], trained["DATA_DIR"])
    limits = image_limits(config, tuple(layers), int(examples.cardinality()))
    passes: dict[int, dict[str, str]] = {}
    for method, layer in layers.items():
        passes.setdefault(limits[method], {})[method] = layer
    scores = {}
    for limit, group in passes.items():
        if limit != config["MAX_IMAGES"]:
            print(f"{', '.join(group)}: the first {limit} images only (CAPS)")
        scores.update(_scored_pass(config, trained, examples, model, random_model, group,
                                   limit))
    return {method: scores[method] for method in layers}


def _scored_pass(config: dict[str, Any], trained: dict[str, Any], examples, model,
                 random_model, layers: dict[str, str], limit: int
                 ) -> dict[str, dict[str, np.ndarray]]:
    """scored_split's pass over the first `limit` images (0 = all) for `layers`."""
    batches = data.evaluation_batches(examples, trained["IMAGE_SIZE"], config["BATCH_SIZE"],
                                      limit)
    count = int(batches.cardinality())
    shard = parse_shard(config["SHARD"])
    if shard:
        index, shards = shard
        batches = batches.enumerate().filter(
            lambda number, _: number % shards == index).map(lambda _, batch: batch)
        count = len(range(index, count, shards)) if count > 0 else count
    scores = evaluation.score_batches(
        batches, model, random_model, layers, scoring(config),
        predict_batch=config["PREDICT_BATCH_SIZE"], num_batches=count if count > 0 else None,
        control=control_model(config, trained, layers))
    if not scores and shard:
        raise CamError(f"SHARD={config['SHARD']!r} has no batch of the split to score: give "
                       "fewer shards than batches")
    if not scores:
        raise CamError(f"split {config['SPLIT']!r} has no images to score")
    return scores


def control_model(config: dict[str, Any], trained: dict[str, Any], layers: dict[str, str]
                  ) -> tuple[Any, dict[str, str]] | None:
    """CONTROL's network and each method's layer in it, or None: the run trained without
    the planted marker, whose maps of the same images the shortcut test compares."""
    if not config["CONTROL"]:
        return None
    control, described, _ = subject.open_subject({**config, "RUN_NAME": config["CONTROL"],
                                                  "MODEL": "", "DATASET": ""})
    if (described["IMAGE_SIZE"], described["class_names"]) != (trained["IMAGE_SIZE"],
                                                              trained["class_names"]):
        raise CamError(f"CONTROL={config['CONTROL']!r} must see the same image size and "
                       "classes as the run it controls: train it as that run on the same "
                       "images, with markers that name no class (cam_shapes/shortcut_10 "
                       "for cam_shapes/shortcut)")
    return control, {method: methods.check_layer(method, control, config["LAYER"])
                     for method in layers}


def scoring(config: dict[str, Any]) -> evaluation.Scoring:
    """How the settings score maps (evaluation.Scoring)."""
    return evaluation.Scoring(threshold=config["THRESHOLD"], steps=config["STEPS"],
                              blur_sigma=config["BLUR_SIGMA"], seed=config["SEED"],
                              box_protocol=config["BOX_PROTOCOL"], road=config["ROAD"],
                              options=methods.Options.from_config(config))


# Settings that change no score: a shard may differ from the merge in these alone.
NOT_SCORED = ("SHARD", "MERGE_SHARDS", "FORMAT", "CONFUSION", "TENSORFLOW_LOG", "PRESET")


def shard_identity(config: dict[str, Any], chosen: tuple[str, ...]) -> dict[str, Any]:
    """What every shard of one evaluation shares: the settings that change a score, as
    JSON gives them back (a tuple as a list)."""
    return json.loads(json.dumps({**{key: value for key, value in config.items()
                                     if key not in NOT_SCORED}, "METHOD": list(chosen)}))


def file_suffixes(config: dict[str, Any], layer: str) -> tuple[str, str]:
    """(suffix of the map files, suffix of the confusion matrix): "_<METHOD>" unless CAM,
    "_<LAYER>" for another layer, "_first<N>" for a subset, so that no run of other
    settings, or on part of the split, replaces the full split's files."""
    subset = f"_first{config['MAX_IMAGES']}" if config["MAX_IMAGES"] else ""
    method = "" if config["METHOD"] == "cam" else f"_{config['METHOD']}"
    return method + (f"_{layer}" if layer else "") + subset, subset


def board_suffix(config: dict[str, Any]) -> str:
    """Suffix of the leaderboard, comparison and seeds files: "_all" for METHOD="all", so
    that it and a list of methods keep their own files, then file_suffixes' subset."""
    return ("_all" if config["METHOD"].strip() == "all" else "") + file_suffixes(config, "")[1]


def write_results(config: dict[str, Any], trained: dict[str, Any], run_dir: Path,
                  scores: dict[str, np.ndarray], seconds: float, layer: str,
                  model) -> Path:
    """metrics<suffix>.json and the two figures (see file_suffixes); returns the json path.
    `seconds` is the whole scoring pass, shared by all the methods scored in it."""
    names = trained["class_names"]
    summary = evaluation.summarise(scores, names, config["SEED"])
    suffix, subset = file_suffixes(config, layer)
    where, ext = f"run {run_dir.name}, {config['SPLIT']} split", config["FORMAT"]
    plots.save_figure(plots.confusion_matrix(np.array(summary["confusion_matrix"]), names,
                                             where, config["CONFUSION"] == "rows"),
                      run_dir / f"confusion_matrix{subset}.{ext}", 150)
    if config["STEPS"]:
        curves = {label: {kind: scores[f"predicted_class/{kind}_curve{source}"]
                          for kind in ("deletion", "insertion")}
                  for label, source in ((config["METHOD"], ""), *leaderboard.BASELINES)}
        plots.save_figure(plots.deletion_insertion_curves(
            curves, f"{methods.TITLES[config['METHOD']]}, {where}", "predicted"),
            run_dir / f"deletion_insertion{suffix}.{ext}", 150)
    results = {"run": run_dir.name, **({"model": trained["MODEL"]} if "MODEL" in trained
                                       else {}),
               "split": config["SPLIT"], "method": config["METHOD"],
               "layer": methods.layer_name(model, layer), "score": model.score,
               "removal_baseline": f"gaussian blur, sigma {config['BLUR_SIGMA'] * 100:g}% "
                                   "of the image side", "steps": config["STEPS"],
               "pointing_tolerance_px": metrics.POINTING_TOLERANCE * trained["IMAGE_SIZE"],
               "box_protocol": config["BOX_PROTOCOL"], "intervals": leaderboard.INTERVALS,
               **summary, "seconds": round(seconds, 1), "config": config}
    path = run_dir / f"metrics{suffix}.json"
    runs.write_json(path, results)
    print_table(results)
    return path


def write_leaderboard(config: dict[str, Any], run_dir: Path,
                      results: dict[str, dict[str, Any]],
                      per_image: dict[str, dict[str, np.ndarray]]) -> Path:
    """leaderboard.json and .md (camlab.evaluate.leaderboard): every method's headline scores for
    the predicted class with their intervals, the baselines, each method's map time, per
    metric the methods tied with the best, and on a known cause which scores order the
    methods like it (camlab.evaluate.trust)."""
    points = {method: entry["predicted_class"] for method, entry in results.items()}
    board = leaderboard.board(results, evaluation.method_ties(per_image, points,
                                                              leaderboard.KEYS, config["SEED"]))
    board.update(trust.judged(per_image, board["ties"], config["SEED"]))  # known cause
    path = run_dir / f"leaderboard{board_suffix(config)}.json"
    runs.write_json(path, board)
    with runs.atomic_path(path.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(leaderboard.markdown(board)) + "\n", encoding="utf-8")
    print(f"saved {path.with_suffix('.md')}")
    return path


COMPARISON_IMAGES = 4  # rows of the methods' comparison figure: the split's first images


def draw_comparison(config: dict[str, Any], trained: dict[str, Any], run_dir: Path, model,
                    layers: dict[str, str]) -> None:
    """comparison.png: the split's first images, one column per method, the predicted
    class's map over each, ground-truth boxes where the data have them."""
    builder = data.get_run_dataset(trained)
    batch = next(iter(data.evaluation_batches(
        data.load_split(builder, config["SPLIT"], trained["DATA_DIR"]),
        trained["IMAGE_SIZE"], COMPARISON_IMAGES, COMPARISON_IMAGES)))
    images = batch["image"]
    features, probs = model.features(images)
    classes = tf.argmax(probs, axis=1, output_type=tf.int32)[:, None]
    maps = {method: cam_utils.upsample(methods.maps_for_classes(
        method, model, features, classes, images, layer, methods.Options.from_config(config)),
        images.shape[1:3])[..., 0].numpy() for method, layer in layers.items()}
    names = [trained["class_names"][c] for c in classes[:, 0].numpy()]
    # Known cause: the cause and the distractor (or the marker) outlined, and the edge map.
    other = next((key for key in ("distractor_mask", "marker_mask") if key in batch), None)
    outlines = ({"cause" if other == "distractor_mask" else "object": batch["mask"].numpy(),
                 other.removesuffix("_mask"): batch[other].numpy()} if other else None)
    if other:
        maps["edge baseline"] = knowncause.edge_maps(images).numpy()
    figure = plots.method_comparison(np.round(images.numpy()).clip(0, 255).astype(np.uint8),
                                     maps, batch["bbox"].numpy() if "bbox" in batch
                                     and not other else None, names, outlines)
    plots.save_figure(figure, run_dir / f"comparison{board_suffix(config)}.{config['FORMAT']}",
                      150)


def run_seeds(config: dict[str, Any]) -> Path:
    """RUN_NAME with a "*" (train_cam.py's runs of several SEEDs, "demo_s*"): scores every
    matching run, then writes OUTPUT_DIR/<RUN_NAME, * as N>/seeds_leaderboard.json and .md
    (leaderboard.across_seeds): each method's mean, spread and per-seed values."""
    pattern = config["RUN_NAME"]
    found = sorted(path.name for path in Path(config["OUTPUT_DIR"]).glob(pattern)
                   if (path / "config.json").is_file())
    if config["MODEL"] or len(found) < 2 or len(methods.parse_methods(config["METHOD"])) < 2:
        raise CamError(f"RUN_NAME={pattern!r} scores several training runs, one per seed: it "
                       f"needs at least 2 runs matching it in {config['OUTPUT_DIR']} (found "
                       f"{len(found)}), several METHODs, and no MODEL")
    boards = {name: json.loads(run({**config, "RUN_NAME": name}).read_text(encoding="utf-8"))
              for name in found}
    summary = leaderboard.across_seeds(boards)
    path = (Path(config["OUTPUT_DIR"]) / pattern.replace("*", "N")
            / f"seeds_leaderboard{board_suffix(config)}.json")
    runs.write_json(path, {**summary, "config": config})
    with runs.atomic_path(path.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(leaderboard.seeds_markdown(summary)) + "\n", encoding="utf-8")
    print(f"saved {path.with_suffix('.md')}")
    return path


def run(config: dict[str, Any]) -> Path:
    """Scores a run's maps with a resolved configuration, all methods in one pass over the
    split; returns the metrics path (the leaderboard's when METHOD names several)."""
    check_config(config)
    chosen = methods.parse_methods(config["METHOD"])
    model, trained, run_dir = subject.open_subject(config)
    if not trained["DATASET"]:
        raise CamError("MODEL needs a DATASET to score it on: a tfds name or an image folder")
    layers = {method: methods.check_layer(method, model, config["LAYER"]) for method in chosen}
    random_model = model.randomised(config["SEED"])  # the same network, random weights
    run_dir.mkdir(parents=True, exist_ok=True)
    for method in chosen:
        print(f"{method}: maps of layer {methods.layer_name(model, layers[method])}")
    started = time.perf_counter()
    if config["MERGE_SHARDS"]:
        scores, seconds = shards.merged(run_dir, shard_identity(config, chosen),
                                        config["MERGE_SHARDS"])
    else:
        scores = scored_split(config, trained, model, random_model, layers)
        seconds = time.perf_counter() - started
    if config["SHARD"]:
        index, count = parse_shard(config["SHARD"])
        return shards.save(run_dir, shard_identity(config, chosen), index, count, scores,
                           seconds)
    results, paths = {}, {}
    caps = image_limits(config, chosen, -1)  # and a method with fewer images was not capped
    for method in chosen:  # a capped method's file is that of a run of it with MAX_IMAGES
        capped = {"MAX_IMAGES": caps[method]} if caps[method] != config["MAX_IMAGES"] and len(
            scores[method]["label"]) == caps[method] else {}
        paths[method] = write_results({**config, "METHOD": method, **capped}, trained,
                                      run_dir, scores[method], seconds, layers[method], model)
        results[method] = json.loads(paths[method].read_text(encoding="utf-8"))
    if len(chosen) == 1:
        return paths[chosen[0]]
    draw_comparison(config, trained, run_dir, model, layers)
    return write_leaderboard(config, run_dir, results, scores)


def print_table(results: dict[str, Any]) -> None:
    """The headline numbers, method beside its two baselines, for the predicted class."""
    scores = results["predicted_class"]
    print(f"\n{results['num_images']} images, accuracy {100 * results['accuracy']:.1f}%, "
          f"sanity rank correlation {results['sanity_rank_correlation']:.3f}, "
          f"{results['seconds']:.0f} s")
    print(f"{'predicted class':<23}{results['method']:>10}"
          + "".join(f"{name:>10}" for name, _ in leaderboard.BASELINES))
    for key in registry.keys(ranked=True):  # every score of camlab/scores/registry.py
        if key in scores:
            values = [scores.get(f"{key}{source}") for source in evaluation.SOURCES]
            print(f"{key:<23}" + "".join(f"{'-':>10}" if value is None else f"{value:>10.3f}"
                                         for value in values))
    columns = ("accuracy", *evaluation.PER_CLASS)
    print(f"\n{'per true class':<20}{'images':>8}" + "".join(f"{c[:12]:>14}" for c in columns))
    for name, entry in results["per_class"].items():
        print(f"{name[:20]:<20}{entry['images']:>8}" + "".join(
            f"{entry[c]:>14.3f}" if c in entry else f"{'-':>14}" for c in columns))


def main(argv: list[str] | None = None) -> Path:
    return settings.run_script(
        __file__, lambda config: (run_seeds if "*" in config["RUN_NAME"] else run)(config),
        argv)


if __name__ == "__main__":
    main()
