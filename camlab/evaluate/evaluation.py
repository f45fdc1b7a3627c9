"""Scoring several map methods on a split, sharing all the work that does not depend on
the method, and turning per-image scores into metrics.json's numbers with intervals.

Per batch, the images are read and go through the model once; the three baseline maps
(a centred Gaussian, a random map and the image's edges) are scored once; the randomised
model's forward pass is shared by every method's sanity check; and the deletion /
insertion images of all maps go through the model together (camlab.scores.removal), and so do
all the maps' images times their maps (Average Drop). The scores of a method do not
depend on which other methods run beside it: `score_batches` with one method or with seven gives
that method the same numbers, to float32 rounding (a perturbed image's probability can
change in its last bit with the other images of its forward pass).

A per-image score is keyed "<target>/<metric><source>": target "predicted_class" or
"true_class", source "" (the method) or a baseline's suffix (SOURCES).

On data whose cause is known (cam_shapes/cause, camlab.scores.knowncause) every image is also
checked by intervention: "cause_verified" says whether the model's decision depends on
the cause and not on the distractor, and the cause metrics are means over those images
only. On cam_shapes/shortcut, "follows_marker" says whether the prediction is the
planted marker's class, and with a control model (a network trained on markers that name no class)
each method's "marker_mass_control" is its map's mass on the marker from that network.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import cam_utils
from camlab.core import randomness
from camlab.datasets import image_io
from camlab.evaluate import leaderboard
from camlab.maps import methods
from camlab.networks.classifier import Classifier
from camlab.scores import faithfulness, intervals, knowncause, metrics, removal

SOURCES = ("", *(suffix for _, suffix in leaderboard.BASELINES))
TARGETS = ("predicted_class", "true_class")
# metrics.json's per_class table: a few per-image scores' means per true class
PER_CLASS = ("pointing_game", "box_localisation", "deletion_auc", "insertion_auc")


@dataclasses.dataclass(frozen=True)
class Scoring:
    """How maps are scored: the mask-IoU cut, deletion / insertion steps, the removal
    baseline's blur (a fraction of the side), the seed of the random baseline and of the
    bootstrap, MaxBoxAccV2's box geometry, and the methods' options."""

    threshold: float = 0.3
    steps: int = 16  # 0: no deletion / insertion (their passes are most of a scoring's time)
    blur_sigma: float = 0.1
    seed: int = 0
    box_protocol: str = "lab"  # localisation.BOX_PROTOCOLS
    road: bool = False  # ROAD too (faithfulness.road): 18 forward passes and imputations a map
    options: methods.Options = methods.DEFAULT_OPTIONS


def random_maps(seed: int, ids, height: int, width: int) -> tf.Tensor:
    """The chance baseline: i.i.d. uniform values per pixel, (n, H, W), drawn per image
    from (seed, the image's index in its split)."""
    return randomness.uniform(seed, ids, "random_baseline", (height, width))


def _take(scores: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[rows] for key, value in scores.items()}


def _merged(base: dict[str, np.ndarray], rows: np.ndarray, fresh: dict[str, np.ndarray]
            ) -> dict[str, np.ndarray]:
    """`base` with `rows` replaced by `fresh` (the same keys, len(rows) rows each)."""
    out = {key: np.array(value, copy=True) for key, value in base.items()}
    for key, value in fresh.items():
        out[key][rows] = value
    return out


def _localisation(maps: tf.Tensor, batch: dict, correct: np.ndarray, scoring: Scoring,
                  rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """metrics.localisation_scores of all images, or only of `rows`, and the known-cause
    scores where the batch has a distractor or a marker (knowncause)."""
    truth = {key: batch[key] for key in ("bbox", "mask", "distractor_mask", "marker_mask")
             if key in batch}
    if rows is not None:
        maps = tf.gather(maps, rows)
        truth = {key: tf.gather(value, rows) for key, value in truth.items()}
        correct = correct[rows]
    scores = metrics.localisation_scores(
        maps, {key: truth[key] for key in ("bbox", "mask") if key in truth}, correct,
        scoring.threshold, box_protocol=scoring.box_protocol)
    if "distractor_mask" in truth:
        scores.update(knowncause.cause_scores(maps, truth["mask"], truth["distractor_mask"]))
    if "marker_mask" in truth:
        scores["marker_mass"] = knowncause.marker_mass(maps, truth["marker_mask"])
    return scores


@dataclasses.dataclass
class _Source:
    """One map set of a batch to score: its maps (n, H, W) at input resolution, and, for
    the true class, the rows whose map differs from the predicted class's (None: all)."""

    maps: tf.Tensor
    rows: np.ndarray | None = None


def _method_maps(method: str, model: Classifier, features, images, classes: tf.Tensor,
                 layer: str, options: methods.Options, ids: np.ndarray, wrong: np.ndarray
                 ) -> tuple[tf.Tensor, tf.Tensor | None, np.ndarray]:
    """The maps (n, h, w, 1) of the predicted class, and of the true class (rows, h, w, 1)
    on the `rows` where it differs from the predicted class's map: the misclassified
    images, none for a method that gives every class the same map. Returns
    (predicted maps, true-class maps or None, rows)."""
    low_res = methods.maps_for_classes(method, model, features, classes[:, :1], images,
                                       layer, options, ids)
    if not methods.REGISTRY[method].class_specific or not len(wrong):
        return low_res, None, np.zeros(0, np.int64)
    true_low = methods.maps_for_classes(
        method, model, tf.gather(features, wrong), tf.gather(classes[:, 1:], wrong),
        tf.gather(images, wrong), layer, options, ids[wrong])
    return low_res, true_low, wrong


def _known_cause(model: Classifier, batch: dict, probs: np.ndarray, predicted: np.ndarray
                 ) -> dict[str, np.ndarray]:
    """The per-image facts of a known-cause batch: whether removing the cause, and the
    distractor, changes the decision (knowncause.cause_verified) on cam_shapes/cause;
    whether the prediction follows the planted marker on cam_shapes/shortcut."""
    out = {}
    if "image_without_cause" in batch:
        out.update(knowncause.cause_verified(
            probs, model(batch["image_without_cause"]).numpy(),
            model(batch["image_without_distractor"]).numpy()))
    if "marker_label" in batch:
        marker = batch["marker_label"].numpy()
        out.update(marker_label=marker, follows_marker=predicted == marker)
    return out


def _control_mass(method: str, control: Classifier, layer: str, images: tf.Tensor,
                  forward: tuple, marker_mask, options: methods.Options, ids: np.ndarray
                  ) -> np.ndarray:
    """The marker mass (n,) of the control network's map for its own predicted class:
    Adebayo et al. 2022's normal model, beside the model trained with the shortcut.
    `forward` is the control's (features, probabilities) of `images`, shared by methods."""
    features, probs = forward
    low = methods.maps_for_classes(method, control, features, _control_classes(probs),
                                   images, layer, options, ids)
    maps = cam_utils.upsample(low, images.shape[1:3])[..., 0]
    return knowncause.marker_mass(maps, marker_mask)


def _control_classes(probs: tf.Tensor) -> tf.Tensor:
    """The control network's predicted classes (n, 1) int32."""
    return tf.argmax(probs, axis=1, output_type=tf.int32)[:, None]


def score_batch(model: Classifier, random_model: Classifier, remover: removal.Remover,
                batch: dict, chosen: dict[str, str], scoring: Scoring, ids: np.ndarray,
                control: tuple[Classifier, dict[str, str]] | None = None
                ) -> dict[str, dict[str, np.ndarray]]:
    """Every per-image score of one batch, per method: {method: {key: (n, ...)}}.

    `chosen` maps each method to its layer (methods.check_layer); `ids` (n,) are the
    images' indices in the split, which key the random baseline and any method's random
    numbers. Each method's dict also holds the baselines' scores (the same arrays) and
    the shared "label", "predicted", "correct" (and _known_cause's facts). With a
    `control` (network, {method: its layer}) and a marker in the batch, each method also
    gets "marker_mass_control".
    """
    images, labels = batch["image"], batch["label"].numpy()
    n, size = len(labels), images.shape[1:3]
    features, probs = model.features(images)
    predicted = np.argmax(probs.numpy(), axis=1)
    correct = predicted == labels
    wrong = np.flatnonzero(~correct)
    classes = tf.constant(np.stack([predicted, labels], axis=1), tf.int32)
    random_features = random_model.features(images)[0] if chosen else None
    shared = {"label": labels, "predicted": predicted, "correct": correct,
              **_known_cause(model, batch, probs.numpy(), predicted)}
    control_forward = None
    if control is not None and "marker_label" in batch:
        control_forward = control[0].features(images)
        shared["control_follows_marker"] = _control_classes(control_forward[1]).numpy()[
            :, 0] == shared["marker_label"]
    baseline_maps = {"_center_baseline": metrics.centre_gaussian_maps(n, *size),
                     "_random_baseline": random_maps(scoring.seed, ids, *size),
                     "_edge_baseline": knowncause.edge_maps(images)}
    sources: dict[str, tuple[_Source, _Source]] = {
        suffix: (_Source(maps), _Source(maps, rows=np.zeros(0, np.int64)))
        for suffix, maps in baseline_maps.items()}
    per_method: dict[str, dict[str, np.ndarray]] = {}
    for method, layer in chosen.items():
        started = time.perf_counter()
        low_res, true_low, rows = _method_maps(method, model, features, images, classes,
                                               layer, scoring.options, ids, wrong)
        tf.reduce_sum(low_res).numpy()  # reading a value waits until the maps exist
        seconds = time.perf_counter() - started
        upsampled = cam_utils.upsample(low_res, size)[..., 0]
        second = upsampled if true_low is None else tf.tensor_scatter_nd_update(
            upsampled, rows[:, None], cam_utils.upsample(true_low, size)[..., 0])
        sources[method] = (_Source(upsampled), _Source(second, rows=rows))
        random_low = methods.maps_for_classes(method, random_model, random_features,
                                              classes[:, :1], images, layer,
                                              scoring.options, ids)
        per_method[method] = {
            "map_seconds": np.full(n, seconds / n),
            "sanity_rank_correlation": metrics.rank_correlation(
                low_res[..., 0], random_low[..., 0]).numpy()}
        if control_forward is not None and "marker_mask" in batch:
            per_method[method]["marker_mass_control"] = _control_mass(
                method, control[0], control[1][method], images, control_forward,
                batch["marker_mask"], scoring.options, ids)
    scored = _score_sources(remover, batch, sources, classes.numpy(), correct, scoring, ids)
    baselines = {key: value for suffix in SOURCES[1:] for key, value in
                 _keyed(scored[suffix], suffix).items()}
    return {method: {**shared, **extra, **_keyed(scored[method], ""), **baselines}
            for method, extra in per_method.items()}


def _keyed(scores: tuple[dict, dict], suffix: str) -> dict[str, np.ndarray]:
    return {f"{target}/{key}{suffix}": value for target, part in zip(TARGETS, scores,
                                                                      strict=True)
            for key, value in part.items()}


def _score_sources(remover: removal.Remover, batch: dict,
                   sources: dict[str, tuple[_Source, _Source]], classes: np.ndarray,
                   correct: np.ndarray, scoring: Scoring, ids: np.ndarray
                   ) -> dict[str, tuple[dict, dict]]:
    """Localisation and deletion / insertion of every source, for both targets: the true
    class's scores are those of the predicted class except on a source's `rows`."""
    images = tf.cast(batch["image"], tf.float32)
    n = images.shape[0]
    probs, curves = _removal_curves(remover, images, sources, scoring)
    explained = _explained(remover, images, sources)
    out = {}
    # The plan's first jobs are the images themselves; without a plan, a pass of them.
    clean = remover.forward(images).numpy() if probs is None else probs[:n]
    for name, (first, second) in sources.items():
        one = _localisation(first.maps, batch, correct, scoring)
        one.update(curves(name, 0, classes[:, 0]))
        one.update(_confidence(clean, explained[name][0], classes[:, 0]))
        if scoring.road:
            one.update(_road(remover, images, first.maps, classes[:, 0], clean, scoring, ids))
        # The true class: the predicted class's maps and perturbed images, read at the
        # true class, except on the rows where the true class has a map of its own.
        two = {**one, **curves(name, 0, classes[:, 1]),
               **_confidence(clean, explained[name][0], classes[:, 1])}
        other = np.setdiff1d(np.flatnonzero(classes[:, 0] != classes[:, 1]), second.rows)
        if scoring.road and len(other):  # the same images, read at another class
            two = _merged(two, other, _road(remover, tf.gather(images, other),
                                            tf.gather(first.maps, other), classes[other, 1],
                                            clean[other], scoring, ids[other]))
        rows = second.rows
        if len(rows):
            fresh = _localisation(second.maps, batch, correct, scoring, rows)
            fresh.update(curves(name, 1, classes[rows, 1]))
            fresh.update(_confidence(clean[rows], explained[name][1], classes[rows, 1]))
            if scoring.road:
                fresh.update(_road(remover, tf.gather(images, rows),
                                   tf.gather(second.maps, rows), classes[rows, 1],
                                   clean[rows], scoring, ids[rows]))
            two = _merged(two, rows, fresh)
        out[name] = (one, two)
    return out


def _removal_curves(remover: removal.Remover, images: tf.Tensor,
                    sources: dict[str, tuple[_Source, _Source]], scoring: Scoring):
    """Runs the deletion / insertion plan of every source's two map sets at once. Returns
    (every planned image's probabilities, curves), where curves(source, 0 or 1 (its first
    or second maps), classes) gives that set's curves and AUCs read at `classes`; with
    scoring.steps 0, (None, a curves that gives {})."""
    if not scoring.steps:
        return None, lambda name, which, classes: {}
    n, height, width = images.shape[0], images.shape[1], images.shape[2]
    plan = removal.Plan(n, scoring.steps, height * width)
    maps, index = [], {}
    for name, (first, second) in sources.items():
        index[name] = (len(maps), len(maps) + 1)
        maps += [first.maps, second.maps]
    positions = tf.stack([removal.pixel_positions(one) for one in maps])
    ranks = positions.numpy()
    for name, (_, second) in sources.items():
        plan.add(index[name][0], np.arange(n), ranks[index[name][0]])
        plan.add(index[name][1], second.rows, ranks[index[name][1]])
    probs = remover.probabilities(plan, images, image_io.blurred(
        images, scoring.blur_sigma * height), positions)

    return probs, lambda name, which, classes: plan.curves(probs, index[name][which], classes)


def _explained(remover: removal.Remover, images: tf.Tensor,
               sources: dict[str, tuple[_Source, _Source]]
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The probabilities of the images times each source's normalised maps (Average Drop's
    O_c): {source: ((n, classes) of its first maps, (rows, classes) of its second maps on
    its rows)}, all sources' images in one run of fixed-size passes rather than one padded
    run each."""
    parts, sizes = [], []
    for first, second in sources.values():
        own = tf.gather(second.maps, second.rows)
        for kept, maps in ((images, first.maps), (tf.gather(images, second.rows), own)):
            parts.append(kept * faithfulness.normalised_maps(maps)[..., None])
            sizes.append(int(maps.shape[0]))
    probs = np.split(remover.forward(tf.concat(parts, axis=0)).numpy(),
                     np.cumsum(sizes)[:-1])
    return {name: (probs[2 * i], probs[2 * i + 1]) for i, name in enumerate(sources)}


def _road(remover, images, maps, classes, clean, scoring: Scoring, ids) -> dict:
    """ROAD's per-image scores of one map set (faithfulness.road), through the same
    fixed-size passes as every other perturbed image."""
    rows = np.arange(len(classes))
    return faithfulness.road(remover.forward, images, maps, classes, seed=scoring.seed,
                             ids=ids, probabilities=clean[rows, classes])


def _confidence(full: np.ndarray, explained: np.ndarray, classes: np.ndarray
                ) -> dict[str, np.ndarray]:
    """Average Drop and Increase in Confidence per image (faithfulness.drop_and_increase)
    from the probabilities (n, classes) of the images and of the images times their maps."""
    rows = np.arange(len(classes))
    return faithfulness.drop_and_increase(full[rows, classes], explained[rows, classes])


def score_batches(batches: Iterable[dict], model: Classifier, random_model: Classifier,
                  chosen: dict[str, str], scoring: Scoring, predict_batch: int = 256,
                  num_batches: int | None = None,
                  control: tuple[Classifier, dict[str, str]] | None = None
                  ) -> dict[str, dict[str, np.ndarray]]:
    """`score_batch` over all batches, with a progress bar: {method: {key: (images, ...)}};
    {} if there is no image. A batch's "index" (data.evaluation_batches) gives the images'
    positions in the split (the `ids` of score_batch); without one they are numbered in the
    order given. Each method's dict holds it under "index". `control`: see score_batch."""
    # A bar redraws in place on a terminal; into a log file it writes one line at the end.
    progress = keras.utils.Progbar(num_batches, unit_name="batch",
                                   verbose=1 if sys.stdout.isatty() else 2)
    forward = lambda images: model(images, training=False)  # noqa: E731
    remover = None  # built for the first batch's image size
    collected: dict[str, dict[str, list]] = {method: {} for method in chosen}
    seen = 0
    for batch in batches:
        count = int(batch["label"].shape[0])
        ids = (batch["index"].numpy() if "index" in batch
               else np.arange(seen, seen + count)).astype(np.int64)
        seen += count
        remover = remover or removal.Remover(forward, predict_batch,
                                             tuple(batch["image"].shape[1:3]))
        for method, scores in score_batch(model, random_model, remover, batch, chosen,
                                          scoring, ids, control).items():
            for key, value in {**scores, "index": ids}.items():
                collected[method].setdefault(key, []).append(np.asarray(value))
        progress.add(1)
    if not seen:
        return {}
    return {method: {key: np.concatenate(parts) for key, parts in scores.items()}
            for method, scores in collected.items()}


def of_source(scores: dict[str, np.ndarray], target: str, source: str
              ) -> dict[str, np.ndarray]:
    """The per-image scores of one target and source, keyed as localisation_scores keys
    them: {"box_hits": ..., "deletion_auc": ...}."""
    out = {}
    for key, value in scores.items():
        if not key.startswith(f"{target}/"):
            continue
        name = key.split("/", 1)[1]
        suffix = next((s for s in SOURCES[1:] if name.endswith(s)), "")
        if suffix == source:
            out[name[:len(name) - len(suffix)]] = value
    return out


def statistics(scores: dict[str, np.ndarray], verified: np.ndarray | None = None
               ) -> dict[str, intervals.Statistic]:
    """Every score of metrics.pooled as a bootstrap statistic of the same per-image
    scores (localisation_scores' keys): means, MaxBoxAccV2 of the hits, PxAP of the pixel
    histograms (where it is defined); a cause metric's mean over the `verified` images
    only (knowncause.CAUSE_METRICS)."""
    out: dict[str, intervals.Statistic] = {
        key: intervals.masked_mean_of(value, verified)
        if key in knowncause.CAUSE_METRICS and verified is not None
        else intervals.mean_of(value) for key, value in scores.items() if value.ndim == 1}
    if "box_hits" in scores:
        out["maxboxacc_v2"] = intervals.max_box_acc_v2_of(scores["box_hits"])
    if "pixel_hist_object" in scores and scores["pixel_hist_object"].sum() > 0:
        out["pxap"] = intervals.pxap_of(scores["pixel_hist_object"],
                                        scores["pixel_hist_background"])
    return out


def points(scores: dict[str, np.ndarray], verified: np.ndarray | None = None
           ) -> dict[str, float]:
    """metrics.pooled, a cause metric's mean over the `verified` images only, and no cause
    metric where no image is verified."""
    out = metrics.pooled(scores)
    for key in knowncause.CAUSE_METRICS:
        if key not in out or verified is None:
            continue
        kept = scores[key][verified]
        if len(kept):
            out[key] = float(np.mean(kept))
        else:
            del out[key]
    return out


def _known_cause_summary(scores: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    """How many images the intervention verified (cam_shapes/cause); how often the
    prediction follows the planted marker and, per method, the map's marker mass minus the
    control network's, with intervals (cam_shapes/shortcut)."""
    out: dict[str, Any] = {}
    if "cause_verified" in scores:
        out["cause"] = {"images": int(len(scores["cause_verified"])),
                        **{key: int(np.sum(scores[key])) for key in knowncause.VERIFICATION}}
    if "follows_marker" in scores:
        follows = scores["follows_marker"].astype(np.float64)
        stats = {"follows_marker": intervals.mean_of(follows)}
        if "control_follows_marker" in scores:
            control = scores["control_follows_marker"].astype(np.float64)
            stats["control_follows_marker"] = intervals.mean_of(control)
            out["control_follows_marker"] = float(np.mean(control))
        if "marker_mass_control" in scores:
            mass = scores["predicted_class/marker_mass"] - scores["marker_mass_control"]
            stats["shortcut_detection"] = intervals.mean_of(mass)
            out["marker_mass_control"] = float(np.mean(scores["marker_mass_control"]))
            out["shortcut_detection"] = float(np.mean(mass))
        out["follows_marker"] = float(np.mean(follows))
        resampled = intervals.resampled(stats, len(follows), seed)
        out.setdefault("ci95", {}).update({key: intervals.interval(value)
                                           for key, value in resampled.items()})
    return out


def summarise(scores: dict[str, np.ndarray], names: list[str], seed: int = 0
              ) -> dict[str, Any]:
    """Means over images, the dataset-level scores (metrics.pooled), their 95% intervals (a
    bootstrap over images seeded by `seed`: intervals.py), per-class breakdowns and the
    confusion matrix."""
    labels, predicted = scores["label"], scores["predicted"]
    summary: dict[str, Any] = {
        "num_images": int(len(labels)),
        "accuracy": float(np.mean(scores["correct"])),
        "sanity_rank_correlation": float(np.mean(scores["sanity_rank_correlation"])),
        # The maps of the predicted and the true class, forward pass excluded.
        "ms_per_image": 1000 * float(np.mean(scores.get("map_seconds", np.zeros(1)))),
    }
    overall = intervals.resampled(
        {key: intervals.mean_of(scores[key].astype(np.float64))
         for key in ("correct", "sanity_rank_correlation")}, len(labels), seed)
    summary["ci95"] = {"accuracy": intervals.interval(overall["correct"]),
                       "sanity_rank_correlation": intervals.interval(
                           overall["sanity_rank_correlation"])}
    for target in TARGETS:
        values, stats = {}, {}
        verified = scores.get("cause_verified")
        for source in SOURCES:
            part = of_source(scores, target, source)
            values.update({f"{k}{source}": v for k, v in points(part, verified).items()})
            stats.update({f"{k}{source}": v for k, v in statistics(part, verified).items()
                          if f"{k}{source}" in values})
        resampled = intervals.resampled(stats, len(labels), seed)
        summary[target] = {**values, "ci95": {key: intervals.interval(resampled[key])
                                              for key in values}}
    summary["ground_truth"] = {"box": "predicted_class/box_hits" in scores,
                               "mask": "predicted_class/pixel_hist_object" in scores}
    known = _known_cause_summary(scores, seed)
    summary["ci95"].update(known.pop("ci95", {}))
    summary.update(known)
    # Localisation scores the data could not give (no box, no mask, or no object pixel).
    summary["not_computed"] = [key for key in (*metrics.BOX_METRICS, *metrics.MASK_METRICS,
                                               *metrics.POINTING_METRICS)
                               if key not in summary["predicted_class"]]
    summary["per_class"] = _per_class(scores, names)
    count = len(names)
    summary["confusion_matrix"] = np.bincount(labels * count + predicted,
                                              minlength=count * count).reshape(
        count, count).tolist()
    return summary


def _per_class(scores: dict[str, np.ndarray], names: list[str]) -> dict[str, dict]:
    labels = scores["label"]
    per_class = {}
    for index, name in enumerate(names):
        rows = labels == index
        per_class[name] = {"images": int(rows.sum())}
        if rows.any():
            per_class[name]["accuracy"] = float(np.mean(scores["correct"][rows]))
            for key in PER_CLASS:
                values = scores.get(f"predicted_class/{key}")
                if values is not None:
                    per_class[name][key] = float(np.mean(values[rows]))
    return per_class


def method_ties(per_method: dict[str, dict[str, np.ndarray]], points: dict[str, dict],
                keys: Iterable[str], seed: int = 0, target: str = "predicted_class"
                ) -> dict[str, list[str]]:
    """For each metric of `keys`: the methods that cannot be told apart from the best one,
    by a paired bootstrap on the same resampled images (intervals.ties). `points`
    {method: {metric: value}} are the reported numbers.

    The best is chosen among the methods scored on the most images. A method scored on
    fewer (evaluate_cam.py's CAPS: the split's first N) is compared with that best on its
    own images, paired, and listed when it cannot be shown worse there
    (intervals.not_worse).
    """
    counts = {m: len(scores["label"]) for m, scores in per_method.items()}
    images = max(counts.values())
    each = {m: statistics(of_source(scores, target, ""), scores.get("cause_verified"))
            for m, scores in per_method.items()}
    on_own_images: dict[tuple[str, str], dict[str, intervals.Statistic]] = {}
    out = {}
    for key in keys:
        higher = key not in leaderboard.LOWER_IS_BETTER
        have = [m for m in per_method if key in points[m] and counts[m] == images]
        if not have:
            continue
        resampled = intervals.resampled({m: each[m][key] for m in have}, images, seed)
        scored = {m: points[m][key] for m in have}
        out[key] = intervals.ties(resampled, scored, higher)
        best = (max if higher else min)(scored, key=scored.get)
        for method in (m for m in per_method if key in points[m] and counts[m] < images):
            if (best, method) not in on_own_images:  # the best's statistics on its images
                rows = np.isin(per_method[best]["index"], per_method[method]["index"])
                taken = _take(per_method[best], rows)
                on_own_images[best, method] = statistics(of_source(taken, target, ""),
                                                         taken.get("cause_verified"))
            paired = intervals.resampled({"method": each[method][key],
                                          "best": on_own_images[best, method][key]},
                                         counts[method], seed)
            if intervals.not_worse(paired["method"], paired["best"], higher):
                out[key].append(method)
    return out
