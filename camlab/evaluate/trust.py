"""Which of the lab's scores can be trusted: judged on data whose cause is known.

On cam_shapes/cause the intervention proves, image by image, what the model used
(camlab.scores.knowncause), so the known-cause score ranks the methods truly. Every other
score of the board (camlab/scores/registry.py: the localisation scores, deletion,
insertion, Average Drop, Increase in Confidence, ROAD where run, the sanity check) is then
asked whether it orders the methods the same way: its Kendall tau with the truth's order,
with a bootstrap interval over images. And each method is asked whether it beats the edge
detector, a map that knows nothing of the model (XAI-TRIS, Clark et al. 2024), on the
truth's score.

Everything is computed on the verified images only, every score on the same resamples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from camlab.evaluate import evaluation, leaderboard
from camlab.scores import intervals, knowncause, registry

# The known-cause score that ranks the methods. Not cause_auc, though it contrasts just the
# two regions whose roles were proved: on the demo network five of the seven methods put
# every cause pixel above every distractor pixel (AUC 1.000 on 80 of 100 verified images),
# so it cannot order them; the share of the map's mass on the cause can.
TRUTH = "cause_mass"
# The scores asked: every other score of the board (camlab/scores/registry.py), in its
# order; those a board lacks are left out.
COMPARED = tuple(key for key in registry.keys(board=True)
                 if registry.METRICS[key].group != "cause")
# Near 0 passes the sanity check: a lower rank correlation is the better map.
LOWER_IS_BETTER = {*leaderboard.LOWER_IS_BETTER, leaderboard.SANITY}


def _verified_statistics(scores: dict[str, np.ndarray], rows: np.ndarray, source: str
                         ) -> tuple[dict[str, intervals.Statistic], dict[str, float]]:
    """(statistics, point values) of one source's predicted-class scores on `rows`, the
    sanity check among them for a method."""
    part = evaluation.of_source({key: value[rows] for key, value in scores.items()},
                                "predicted_class", source)
    stats, points = evaluation.statistics(part), evaluation.points(part)
    if not source:
        sanity = scores[leaderboard.SANITY][rows]
        stats[leaderboard.SANITY] = intervals.mean_of(sanity)
        points[leaderboard.SANITY] = float(np.mean(sanity))
    return stats, points


def judged(per_method: dict[str, dict[str, np.ndarray]], ties: dict[str, list[str]],
           seed: int) -> dict[str, Any]:
    """The known-cause verdicts of a board's per-image scores {method: scores} (the
    methods scored on every image; a capped one is left out): {"truth": {...},
    "agreement": {score: {"tau", "ci95", "methods", "undefined", "tied_with_best"}},
    "beats_edge": {method: {"difference", "ci95", "beats"}}}; {} without a verified
    image or with fewer than 3 methods."""
    images = max(len(scores["label"]) for scores in per_method.values())
    kept = {m: s for m, s in per_method.items() if len(s["label"]) == images}
    first = next(iter(kept.values()))
    if len(kept) < 3 or "cause_verified" not in first:
        return {}
    rows = np.flatnonzero(first["cause_verified"])
    if not len(rows):
        return {}
    each = {m: _verified_statistics(scores, rows, "") for m, scores in kept.items()}
    edge, _ = _verified_statistics(first, rows, "_edge_baseline")
    truth = {m: stats[TRUTH] for m, (stats, _) in each.items()}
    truth_points = {m: points[TRUTH] for m, (_, points) in each.items()}
    agreement = {}
    for key in COMPARED:
        if not all(key in points for _, points in each.values()):
            continue
        agreement[key] = {**knowncause.rank_agreement(
            truth, {m: stats[key] for m, (stats, _) in each.items()}, truth_points,
            {m: points[key] for m, (_, points) in each.items()}, len(rows), seed,
            other_higher_is_better=key not in LOWER_IS_BETTER),
            **({"tied_with_best": len(ties[key])} if key in ties else {})}
    beats_edge = {}
    for method, (stats, _) in each.items():
        difference, interval = knowncause.paired_difference(stats[TRUTH], edge[TRUTH],
                                                            len(rows), seed)
        beats_edge[method] = {"difference": difference, "ci95": interval,
                              "beats": bool(interval[0] > 0)}
    return {"truth": {"metric": TRUTH, "images": int(len(rows)), "of": images},
            "agreement": agreement, "beats_edge": beats_edge}
