"""The leaderboard: every method's headline scores beside the baselines, with intervals
and the methods that cannot be told apart from the best, as JSON and as Markdown; and
the same across training seeds.

A board is evaluate_cam.py's leaderboard.json: {"methods": {method: {metric: value,
"ms_per_image", "ci95": {metric: [lo, hi]}}}, "baselines": {...}, "ties": {metric:
[methods]}, "num_images", ...}.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from camlab.core.tables import sig3, table
from camlab.scores import intervals, registry

INTERVALS = (f"{intervals.LEVEL:.0%} percentile bootstrap over images, "
             f"{intervals.RESAMPLES} resamples seeded by SEED; MaxBoxAccV2 and PxAP pick "
             "their thresholds again in each resample")
TIES_RULE = ("the best by its value, and every method whose paired bootstrap interval of "
             "the difference from it holds 0")
# The maps that know nothing of the model, scored beside every method: (name, key suffix);
# camlab.evaluate.evaluation draws them, the edge detector with knowncause.edge_maps (XAI-TRIS).
BASELINES = (("centre", "_center_baseline"), ("random", "_random_baseline"),
             ("edge", "_edge_baseline"))
# Lower is better for these; higher for every other score.
LOWER_IS_BETTER = set(registry.keys(lower_is_better=True))
# The ranked columns, in registry order: the known-cause scores (cam_shapes/cause) come
# first, so that a board that has them is ranked by the cause, not by the object's box.
KEYS = registry.keys(board=True, ranked=True)
# The model-randomisation sanity check (Adebayo et al. 2018): a method's, not a class's, and
# not a score to rank by: near 0 (the map follows the weights) passes, near 1 fails.
SANITY = "sanity_rank_correlation"
SANITY_NOTE = ("Sanity: the mean Spearman rank correlation of each map with the same "
               "method's map from the network with random weights (Adebayo et al. 2018); "
               "near 0 passes, near 1 fails; not ranked.")
# The planted-shortcut test (Adebayo et al. 2022), a method's check like the sanity check.
SHORTCUT = "shortcut_detection"
SHORTCUT_NOTE = ("Shortcut: the map's mass on the planted marker from the model trained "
                 "with it, minus the mass from the control (trained on markers that name no "
                 "class), on the same images (Adebayo et al. 2022); the method detects the "
                 "shortcut when the interval is above 0; not ranked.")
CHECKS = registry.keys(ranked=False)  # SANITY and SHORTCUT
# Every column's header: the scores' (title, and "(lower better)" where it is), the time.
TITLES = {**{key: metric.header for key, metric in registry.METRICS.items() if metric.board},
          "ms_per_image": "ms / image"}
# How often the shortcut model's, and the control's, prediction is the marker's class.
FOLLOWS = ("follows_marker", "control_follows_marker")


def board(results: dict[str, dict[str, Any]], ties: dict[str, list[str]]) -> dict[str, Any]:
    """The leaderboard of the methods' metrics.json `results` {method: results}, with
    `ties` {metric: methods tied with the best} (evaluation.method_ties)."""
    # The baselines and the board's image count are those of the methods scored on the
    # most images; a method capped at fewer (CAPS) carries its own "num_images".
    first = max(results.values(), key=lambda entry: entry["num_images"])
    predicted = {method: entry["predicted_class"] for method, entry in results.items()}
    scores = {method: {**{key: entry[key] for key in KEYS if key in entry},
                       **{key: results[method][key] for key in CHECKS
                          if key in results[method]},
                       "ms_per_image": results[method]["ms_per_image"],
                       **({"num_images": results[method]["num_images"]} if results[method][
                           "num_images"] < first["num_images"] else {}),
                       "ci95": {**{key: entry["ci95"][key] for key in KEYS if key in entry},
                                **{key: results[method]["ci95"][key] for key in CHECKS
                                   if key in results[method]}}}
              for method, entry in predicted.items()}
    ours = first["predicted_class"]
    baselines = {name: {**{key: ours[f"{key}{source}"] for key in KEYS
                           if f"{key}{source}" in ours},
                        "ci95": {key: ours["ci95"][f"{key}{source}"] for key in KEYS
                                 if f"{key}{source}" in ours}}
                 for name, source in BASELINES}
    known = {key: first[key] for key in ("cause", *FOLLOWS) if key in first}
    if "follows_marker" in first:
        known["ci95"] = {key: first["ci95"][key] for key in FOLLOWS if key in first}
    return {"methods": scores, "baselines": baselines, **known,
            "ties": ties,
            "num_images": first["num_images"], "seconds": first["seconds"],  # one shared pass
            "run": first["run"], "split": first["split"],
            "layer": first["layer"], "class": "predicted",
            "not_computed": first["not_computed"], "intervals": INTERVALS,
            "ties_rule": TIES_RULE}


def ranked(scores: dict[str, dict], order: str | None = None) -> list[str]:
    """Methods sorted by `order`, else the first headline metric they all have (best
    first)."""
    order = order or next((key for key in KEYS if all(key in row for row in scores.values())),
                          None)
    if order is None:
        return list(scores)
    return sorted(scores, key=lambda m: scores[m][order],
                  reverse=order not in LOWER_IS_BETTER)


def cell(value: float, interval: list[float] | None, bold: bool) -> str:
    """`0.743 [0.72, 0.77]`, in bold when tied with the best."""
    text = f"{value:.3f}" + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
    return f"**{text}**" if bold else text


def markdown(board: dict[str, Any], titles: dict[str, str] | None = None) -> list[str]:
    """The board as Markdown lines: methods ranked, then the baselines, every score with
    its interval, entries tied with the best of their column in bold, the sanity check
    beside them (never bold), and a footnote."""
    titles = titles or TITLES
    scores, ties = board["methods"], board.get("ties", {})
    rows = {**scores, **{f"{name} baseline": row for name, row in board["baselines"].items()}}
    columns = [key for key in (*KEYS, *CHECKS, "ms_per_image")
               if any(key in r for r in rows.values())]

    def shown(name: str, row: dict, key: str) -> str:
        if key not in row:
            return "-"
        if key == "ms_per_image":
            return sig3(row[key])
        return cell(row[key], row.get("ci95", {}).get(key), name in ties.get(key, ()))

    names = [*ranked(scores), *(f"{b} baseline" for b in board["baselines"])]
    # Columns whose title does not already say so.
    lower = [titles.get(k, k) for k in columns if k in LOWER_IS_BETTER
             and "lower better" not in titles.get(k, k)]
    capped = any("num_images" in row for row in scores.values())

    def label(name: str) -> str:
        count = rows[name].get("num_images")
        return f"{name} (first {count} images)" if count else name

    return table(("method", *(titles.get(key, key) for key in columns)),
                 [(label(name), *(shown(name, rows[name], key) for key in columns))
                  for name in names]) + [
        "", f"[lo, hi]: {board.get('intervals', INTERVALS)}. Bold: "
            f"{board.get('ties_rule', TIES_RULE)}; a column with several bold entries has no "
            "single best." + (f" Lower is better for {', '.join(lower)}." if lower else "")
            + (f" {SANITY_NOTE}" if SANITY in columns else "")
            + (f" {SHORTCUT_NOTE}" if SHORTCUT in columns else "")
            + (f" {cause_note(board['cause'])}" if "cause" in board else "")
            + (f" {follows_note(board)}" if "follows_marker" in board else "")
            + (f" A method of the first N images of the {board['num_images']} (CAPS: it is "
               "costly) is bold when it cannot be shown worse than the best on those "
               "images." if capped else "")] + (
        ["", *trust_markdown(board)] if board.get("agreement") else [])


def follows_note(board: dict[str, Any]) -> str:
    """The footnote of a shortcut board: how often each network follows the marker."""
    def share(key: str) -> str:
        low, high = board["ci95"][key]
        return f"{100 * board[key]:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"

    return (f"On these images, whose marker never names the label, the model predicts the "
            f"marker's class on {share('follows_marker')}" + (
                f", the control on {share('control_follows_marker')}"
                if "control_follows_marker" in board else "") + ".")


def verdict(entry: dict[str, Any]) -> str:
    """What a score's agreement with the cause ({"tau", "ci95"}) says: "positive" when the
    interval is above 0 (the score orders the methods more like the cause than not; the
    tau says how much), "negative" below, else "cannot tell"; "orders nothing" when every
    method has the same value (no tau), whatever some resamples say."""
    interval = entry["ci95"]
    if not (np.isfinite(entry["tau"]) and all(np.isfinite(interval))):
        return "orders nothing"
    return "positive" if interval[0] > 0 else "negative" if interval[1] < 0 else "cannot tell"


def difference_text(value: float, interval) -> str:
    """A signed difference and its interval to the same 3 decimals, "+0.006 [+0.005,
    +0.007]" (2 decimals would print that interval as [+0.01, +0.01])."""
    return f"{value:+.3f} [{interval[0]:+.3f}, {interval[1]:+.3f}]"


def tau_text(entry: dict[str, Any], missing: str = "-") -> str:
    """A score's tau with the cause and its interval, "0.49 [0.41, 0.55]"; `missing` when
    every method has the same value (no tau)."""
    if not np.isfinite(entry["tau"]):
        return missing
    return f"{entry['tau']:.2f} [{entry['ci95'][0]:.2f}, {entry['ci95'][1]:.2f}]"


def trust_markdown(board: dict[str, Any]) -> list[str]:
    """A known-cause board's verdicts (camlab.evaluate.trust) as Markdown: each score's Kendall tau
    with the known cause's order of the methods, then which methods beat the edge map."""
    truth = board["truth"]
    lines = table(("score", "Kendall tau with the cause's order", "verdict",
                   "methods tied with the best"),
                  [(key, tau_text(entry, "- (every method has the same value)"), verdict(entry),
                    f"{entry.get('tied_with_best', '-')} of {entry['methods']}")
                   for key, entry in board["agreement"].items()])
    lines += ["", f"Kendall tau-b between the order of the {len(board['beats_edge'])} "
              f"methods by {truth['metric']} and by each score, on the {truth['images']} "
              f"verified images of {truth['of']}; +1: the same order, -1: reversed "
              "(lower-is-better scores and the sanity check flipped); [lo, hi]: "
              f"{INTERVALS.split(';')[0]}. Positive: the interval is above 0; the tau says "
              "how close to the cause's order.", ""]
    lines += table((f"method: {truth['metric']} minus the edge map's", "beats the edge map"),
                   [(f"{method}: {difference_text(entry['difference'], entry['ci95'])}",
                     "yes" if entry["beats"] else "no")
                    for method, entry in board["beats_edge"].items()])
    return lines


def cause_note(cause: dict[str, int]) -> str:
    """The footnote of a known-cause board: on how many images the cause was proved."""
    return (f"Cause metrics (camlab/scores/knowncause.py): means over the "
            f"{cause['cause_verified']} of {cause['images']} images whose cause the "
            "intervention verified (removing the cause changes the decision or halves its "
            "probability, removing the distractor does neither; the cause mattered in "
            f"{cause['cause_matters']}, the distractor in {cause['distractor_matters']}).")


def across_seeds(boards: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The leaderboards of one preset trained with several seeds {run: board}: for each
    method and metric the mean over seeds, the standard deviation (ddof 1) and the
    per-seed values; per metric, each seed's ranking and the methods tied with the best
    in every seed ("always_tied_with_best")."""
    runs = list(boards)
    names = [m for m in boards[runs[0]]["methods"] if all(m in b["methods"] for b in
                                                          boards.values())]
    methods: dict[str, dict[str, Any]] = {}
    for method in names:
        methods[method] = {}
        for key in KEYS:
            values = [boards[run]["methods"][method].get(key) for run in runs]
            if None in values:
                continue
            methods[method][key] = {"mean": float(np.mean(values)),
                                    "std": float(np.std(values, ddof=1)) if len(values) > 1
                                    else 0.0,
                                    "per_seed": dict(zip(runs, values, strict=True))}
    rankings = {}
    for key in KEYS:
        have = [m for m in names if key in methods[m]]
        if not have:
            continue
        per_seed = {run: ranked({m: boards[run]["methods"][m] for m in have}, key)
                    for run in runs}
        always = [m for m in have if all(m in boards[run].get("ties", {}).get(key, ())
                                         for run in runs)]
        rankings[key] = {"per_seed": per_seed, "always_tied_with_best": always,
                         "same_order_in_every_seed": len({tuple(r) for r in
                                                          per_seed.values()}) == 1}
    first = boards[runs[0]]
    return {"runs": runs, "num_images": {run: b["num_images"] for run, b in boards.items()},
            "split": first["split"], "layer": first["layer"], "class": first["class"],
            "methods": methods, "rankings": rankings, **_trust_across_seeds(boards)}


def _trust_across_seeds(boards: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Known-cause boards: each seed's tau and interval per score, and whether each method
    beat the edge map, per seed; {} when a board has none."""
    if not all(board.get("agreement") for board in boards.values()):
        return {}
    runs = list(boards)
    keys = [k for k in boards[runs[0]]["agreement"] if all(k in b["agreement"]
                                                            for b in boards.values())]
    methods = [m for m in boards[runs[0]]["beats_edge"] if all(
        m in b["beats_edge"] for b in boards.values())]
    # No verdict is stored: seeds_markdown derives it from tau and ci95 (`verdict`).
    return {"agreement": {key: {run: {"tau": boards[run]["agreement"][key]["tau"],
                                      "ci95": boards[run]["agreement"][key]["ci95"]}
                                for run in runs} for key in keys},
            "beats_edge": {m: {run: boards[run]["beats_edge"][m]["beats"] for run in runs}
                           for m in methods},
            "verified": {run: boards[run]["truth"]["images"] for run in runs}}


def seeds_markdown(summary: dict[str, Any]) -> list[str]:
    """The seeds' table: mean +- std over seeds per metric, ranked by the first metric's
    mean; then which methods were tied with the best in every seed."""
    methods = summary["methods"]
    columns = [key for key in KEYS if any(key in row for row in methods.values())]
    means = {m: {k: v["mean"] for k, v in row.items()} for m, row in methods.items()}
    lines = table(("method", *columns),
                  [(m, *(f"{methods[m][k]['mean']:.3f} ± {methods[m][k]['std']:.3f}"
                         if k in methods[m] else "-" for k in columns))
                   for m in ranked(means)])
    counts = sorted(set(summary["num_images"].values()))
    lines += ["", f"Mean ± standard deviation over {len(summary['runs'])} training seeds "
              f"({', '.join(summary['runs'])}), {' or '.join(map(str, counts))} images each. "
              "Tied with the best (paired 95% interval) in every seed:"]
    for key, entry in summary["rankings"].items():
        lines.append(f"- {key}: {', '.join(entry['always_tied_with_best']) or 'none'}"
                     + ("; same order in every seed" if entry["same_order_in_every_seed"]
                        else ""))
    if "agreement" in summary:
        runs = summary["runs"]
        lines += ["", "Each score's Kendall tau with the known cause's order, per seed "
                  f"(verified images: {', '.join(map(str, summary['verified'].values()))}):",
                  ""]
        lines += table(("score", *runs), [
            (key, *(f"{tau_text(per[run])} {verdict(per[run])}" for run in runs))
            for key, per in summary["agreement"].items()])
        lines += ["", "Beats the edge map on the cause, per seed:", ""]
        lines += table(("method", *runs), [
            (m, *("yes" if per[run] else "no" for run in runs))
            for m, per in summary["beats_edge"].items()])
    return lines
