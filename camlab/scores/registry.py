"""Every score the lab reports, once: a `Metric` per key of metrics.json.

The leaderboard (its columns, their order, which way is better, the checks beside them),
evaluate_cam.py's printed table, `camlab.score`, the known-cause comparison, the result
tables of the docs and the keys a dataset without boxes or masks cannot give all read
METRICS; the functions that compute the scores are in the other modules of this layer.
Plain data: importing it imports no TensorFlow, so the renderer of the docs can.

A new score is its function (a value per image, in the module of its kind), the line that
calls it where its kind is computed, and its entry here.
"""

from __future__ import annotations

import dataclasses

from camlab.core.tables import table as markdown

GROUPS = {  # what a score is about, in the order of the tables
    "cause": "the cause proven by intervention (cam_shapes/cause; docs/known_cause.md)",
    "localisation": "the object's box or mask",
    "removal": "the model's probability as the map's pixels are removed or restored",
    "confidence": "the model's probability on the image weighted by its map",
    "check": "a check of the method, beside the scores, not ranked",
}
NEEDS = {  # Metric.needs: what the data must hold (camlab.datasets.groundtruth)
    "": "the images and the model",
    "box": "object boxes",
    "mask": "object masks",
    "box or mask": "object masks, else boxes",
    "cause": "cam_shapes/cause: cause and distractor masks, and the images without each",
    "marker": "cam_shapes/shortcut: the marker's mask, and a control run (CONTROL)",
}


@dataclasses.dataclass(frozen=True)
class Metric:
    """A score of maps as metrics.json keys it."""

    key: str  # in metrics.json, the leaderboards and camlab.score's dict
    title: str  # a table's column header
    meaning: str  # what one image's value is, and its source
    group: str  # GROUPS
    needs: str = ""  # NEEDS
    lower_is_better: bool = False
    pooled: bool = False  # one number from all images' data at once, not a mean per image
    board: bool = True  # a column of the leaderboard; False: in metrics.json only
    ranked: bool = True  # bold for the best and its ties; False: a check (group "check")
    passes: str = "none"  # model passes a map costs to score, beyond the maps themselves
    setting: str = ""  # the setting that turns it on, where it is not always computed

    @property
    def statistic(self) -> str:
        """How the per-image values become the split's number."""
        if self.pooled:
            return "pooled over the split"
        return "mean over the verified images" if self.group == "cause" else "mean over images"

    @property
    def header(self) -> str:
        """The column's header: its title, and which way is better when lower is."""
        return self.title + (" (lower better)" if self.lower_is_better else "")


_REMOVAL = "STEPS - 1 forward passes (the image and its blurred copy are every map's)"
_ROAD = ("by noisy linear imputation of 10%, 20%, ..., 90% of the pixels, the class "
         "probability minus the image's, averaged (Rong et al. 2022, ROAD)")
METRICS = {metric.key: metric for metric in (
    Metric("cause_mass", "cause mass", "the share of the map's positive mass on the cause",
           "cause", needs="cause"),
    Metric("cause_auc", "cause vs distractor AUC",
           "ROC AUC of the map's pixels, cause pixels positive, distractor pixels negative, "
           "background ignored, ties half (Mann-Whitney U); 0.5 is chance", "cause",
           needs="cause"),
    Metric("cause_pointing", "cause pointing",
           "1 when the map's maximum (the first in row order) is on the cause; a constant "
           "map points nowhere", "cause", needs="cause"),
    Metric("distractor_mass", "distractor mass",
           "the share of the map's positive mass on the distractor", "cause", needs="cause",
           lower_is_better=True),
    Metric("maxboxacc_v2", "MaxBoxAccV2",
           "box accuracy at the best of 100 thresholds of the min-max normalised map, boxes "
           "around every connected region, averaged over IoU 0.3, 0.5, 0.7 ([Choe et al. "
           "2020](https://arxiv.org/abs/2001.07437), [wsolevaluation]"
           "(https://github.com/clovaai/wsolevaluation)'s definition; BOX_PROTOCOL sets "
           "the boxes' geometry)", "localisation", needs="box", pooled=True),
    Metric("pxap", "PxAP",
           "average precision of the map's pixels against the object mask (Choe et al. "
           "2020)", "localisation", needs="mask", pooled=True),
    Metric("pointing_game_strict", "pointing, strict",
           "1 when the map's maximum is on the object", "localisation", needs="box or mask"),
    Metric("pointing_game", "pointing",
           "1 when the map's maximum is within 15/224 of the image side of the object (4.3 "
           "px at 64 px: `pointing_tolerance_px`); [Zhang et al. 2016]"
           "(https://arxiv.org/abs/1608.00507) allowed 15 px at the images' own size, so "
           "this is a scaled variant", "localisation", needs="box or mask"),
    Metric("rank_accuracy", "rank accuracy",
           "the share of the object's K pixels among the map's K highest, K the object's "
           "size (Arras et al. 2022, CLEVR-XAI: relevance rank accuracy)", "localisation",
           needs="box or mask"),
    Metric("box_localisation", "box IoU>=0.5",
           "1 when the box around the largest region above 20% of the map's max overlaps "
           "the true box with IoU >= 0.5 (the CAM paper's)", "localisation", needs="box"),
    Metric("top1_localisation", "top-1 localisation",
           "box IoU>=0.5 and the predicted class right (the CAM paper's)", "localisation",
           needs="box", board=False),
    Metric("mask_iou", "mask IoU",
           "IoU of {map >= THRESHOLD x max} with the object mask", "localisation",
           needs="mask", board=False),
    Metric("deletion_auc", "deletion",
           "area under the class probability as the map's top pixels are replaced by a "
           "blurred copy in STEPS steps ([Petsiuk et al. 2018]"
           "(https://arxiv.org/abs/1806.07421))", "removal", lower_is_better=True,
           passes=_REMOVAL),
    Metric("insertion_auc", "insertion",
           "the same as the top pixels are restored to a blurred copy", "removal",
           passes=_REMOVAL),
    Metric("average_drop", "Average Drop %",
           "max(0, Y - O) / Y in percent: Y the class probability on the image, O on the "
           "image times the min-max normalised map ([Chattopadhay et al. 2018]"
           "(https://arxiv.org/abs/1710.11063))", "confidence", lower_is_better=True,
           passes="1 forward pass"),
    Metric("increase_in_confidence", "Increase in Confidence %",
           "100 when O > Y, else 0: the share of images whose probability rises "
           "(Chattopadhay et al. 2018)", "confidence", passes="1 forward pass"),
    Metric("road_morf", "ROAD MoRF", f"most relevant pixels first: {_ROAD}", "removal",
           lower_is_better=True, passes="9 forward passes and imputations", setting="ROAD"),
    Metric("road_lerf", "ROAD LeRF", "the same, least relevant first", "removal",
           passes="9 forward passes and imputations", setting="ROAD"),
    Metric("road_combined", "ROAD combined", "(LeRF - MoRF) / 2", "removal",
           passes="ROAD MoRF's and LeRF's", setting="ROAD"),
    Metric("sanity_rank_correlation", "sanity (near 0 passes)",
           "the Spearman rank correlation of the map with the same method's map from the "
           "network with random weights ([Adebayo et al. 2018]"
           "(https://arxiv.org/abs/1810.03292)); near 0 passes, near 1 fails", "check",
           ranked=False, passes="the method on the random network"),
    Metric("shortcut_detection", "shortcut: marker mass minus control's",
           "the map's mass on the planted marker from the shortcut model, minus the "
           "control model's map's mass on it, on the same image (Adebayo et al. 2022); the "
           "method detects the shortcut when the interval is above 0", "check",
           needs="marker", ranked=False, passes="the method on the control network"),
)}


def keys(**fields) -> tuple[str, ...]:
    """The keys of the metrics whose fields have the values given, in METRICS' order:
    keys(group="cause"), keys(board=True, ranked=True)."""
    return tuple(key for key, metric in METRICS.items()
                 if all(getattr(metric, name) == value for name, value in fields.items()))


def table(chosen: tuple[str, ...] = tuple(METRICS)) -> list[str]:
    """The docs' table of the `chosen` scores (keys), rendered by `make results`."""
    rows = [(f"`{m.key}`", m.title, m.meaning, m.statistic,
             "lower" if m.lower_is_better else ("a check" if not m.ranked else "higher"),
             NEEDS[m.needs] + (f"; with {m.setting}=True" if m.setting else ""), m.passes)
            for m in (METRICS[key] for key in chosen)]
    return markdown(("key", "title", "per image", "the split's number", "better", "needs",
                     "model passes a map"), rows)
