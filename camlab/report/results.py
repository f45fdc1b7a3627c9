"""The result tables of the README and the guides, rendered from committed copies of the
runs' result files.

`make results` (`python -m camlab.report.results`) does two things:

1. copies the result files the documents quote from outputs/ (written by `make demo`,
   `make demo-evaluate`, `make bench`, `make cause`, ...) into docs/results/,
   keeping the keys the tables need and adding where they come from: the source file, the
   command that writes it, the date it was written and the machine (a file that records
   its own machine, as bench.json does, keeps that record);
2. renders every table between `<!-- results:NAME -->` and `<!-- /results -->` in
   every Markdown file of DOCUMENTS (README.md and docs/*.md) from docs/results/ alone, so
   each number there can be traced to a committed file. tests/test_readme.py renders them
   again and fails on a table edited by hand.

A source that is absent is skipped (its committed copy stays); a table whose file is
absent says so. A module rather than a script so that the test imports it as it is; it
never imports TensorFlow, so it answers in a fraction of a second.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camlab.core import runs, settings
from camlab.core.tables import sig3, sig3_wide, table, thousands
from camlab.errors import CamError
from camlab.evaluate import leaderboard
from camlab.scores import registry

OUTPUTS = "outputs"  # folder the runs wrote their results to
RESULTS = "docs/results"  # committed copies the tables are rendered from
DOCUMENTS = ("README.md", "docs/*.md")  # Markdown files (globs allowed) whose blocks are rendered
CHECK = False  # True: copy and write nothing; exit 1 when a document's tables differ from RESULTS
# ---- end of settings ----

IMAGENETTE_TRAIN_IMAGES = 12_894  # tfds imagenette/320px train split (the post's dataset)
IMAGENETTE_VALIDATION_IMAGES = 500  # its validation split
POST_EPOCHS = 10  # train_cam.py's EPOCHS, the post's
END_MARK = "<!-- /results -->"
LINKS = "docs/results"  # where the rendered links point, from the project folder
BLOCK = re.compile(r"(<!-- results:([a-z_]+) -->\n)(.*?)(" + re.escape(END_MARK) + ")", re.S)

# Keys of metrics.json and config.json the tables use or that say what was run; the rest
# (per-class tables, the confusion matrix) stays in outputs/.
METRICS_KEYS = ("run", "split", "method", "layer", "score", "num_images", "accuracy",
                "sanity_rank_correlation", "ms_per_image", "seconds", "pointing_tolerance_px",
                "ground_truth", "not_computed", "predicted_class", "true_class")
CONFIG_KEYS = ("DATASET", "BACKBONE", "IMAGE_SIZE", "BATCH_SIZE", "EPOCHS", "SEED", "KEEP",
               "MIXED_PRECISION", "precision_policy", "precision_choice", "devices",
               "versions", "trained_on", "measured_on")


@dataclass(frozen=True)
class Source:
    """A result file a documented command writes (under OUTPUTS) and its copy (under
    RESULTS)."""

    copy: str  # file name in RESULTS
    source: str  # path under OUTPUTS; demo_training.json joins two files
    command: str  # the documented command that writes it


# The seven methods of the README's leaderboard and of the known-cause boards (the Makefile's
# SEED_METHODS, the bench's leaderboard timing): the CAM family's main kinds and a gradient.
LEADERBOARD_METHODS = "cam,gradcam,gradcam++,scorecam,layercam,eigencam,saliency"
LEADERBOARD_COMMAND = f"python evaluate_cam.py --PRESET=demo --METHOD={LEADERBOARD_METHODS}"
ALL_COMMAND = "python evaluate_cam.py --PRESET=demo --METHOD=all"  # CAPS as in the file
ROAD_IMAGES = 250  # ROAD costs ~45 ms a map at 64 px: all 18 methods on the first 250 images
ROAD_COMMAND = f"{ALL_COMMAND} --ROAD=True --MAX_IMAGES={ROAD_IMAGES}"
BENCH_DEMO_COMMAND = "python benchmarks/bench_cam.py --PARTS= --DEMO=True"  # demo and scoring times
SEED_IMAGES = 300  # the Makefile's SEED_IMAGES: each seed's run is scored on its first N
# The presets' MAX_IMAGES, which name the known-cause boards' files
CAUSE_IMAGES, SHORTCUT_IMAGES = (
    json.loads((settings.PRESETS_DIR / f"{name}.json").read_text())["MAX_IMAGES"]
    for name in ("cause", "shortcut"))
SOURCES = (
    Source("demo_training.json", "demo/config.json, demo/history.csv", "make demo"),
    Source("demo_metrics.json", "demo/metrics.json",
           LEADERBOARD_COMMAND),
    Source("demo_leaderboard.json", "demo/leaderboard.json",
           LEADERBOARD_COMMAND),
    Source("demo_leaderboard_all.json", "demo/leaderboard_all.json", ALL_COMMAND),
    Source("demo_leaderboard_road.json", f"demo/leaderboard_all_first{ROAD_IMAGES}.json",
           ROAD_COMMAND),
    Source("demo_seeds_leaderboard.json", f"demo_sN/seeds_leaderboard_first{SEED_IMAGES}.json",
           "make demo-seeds"),
    Source("cause_leaderboard.json", f"cause/leaderboard_first{CAUSE_IMAGES}.json",
           "make cause"),
    Source("shortcut_leaderboard.json", f"shortcut/leaderboard_first{SHORTCUT_IMAGES}.json",
           "make cause"),
    Source("cause_seeds_leaderboard.json",
           f"cause_sN/seeds_leaderboard_first{SEED_IMAGES}.json", "make cause-seeds"),
    Source("bench.json", "bench/bench.json", "make bench"),
    Source("bench_head_only.json", "bench/bench_head_only.json",
           "python benchmarks/bench_cam.py --PARTS=head_only"),
    Source("bench_demo.json", "bench/bench_demo.json", BENCH_DEMO_COMMAND),
)


# ---- copying outputs/ into docs/results/ ----

def read_json(path: Path) -> Any:
    """A JSON file's content; CamError naming the file when it is not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CamError(f"{path} is not valid JSON ({error}); run the command that writes it "
                       "again") from None


def when(path: Path) -> str:
    """The time a file was last written, local, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(path.stat().st_mtime))


def gather(source: Source, outputs: Path) -> tuple[dict[str, Any], Path] | None:
    """The content to commit for `source`, and the file it was read from (for its date);
    None when the run has not written it."""
    if source.copy == "demo_training.json":
        config, history = outputs / "demo" / "config.json", outputs / "demo" / "history.csv"
        if not (config.is_file() and history.is_file()):
            return None
        trained = read_json(config)
        columns = runs.read_history(history)  # committed as rows, one per epoch
        rows = [dict(zip(columns, map(float, row), strict=True))
                for row in zip(*columns.values(), strict=True)]
        return ({"config": {key: trained[key] for key in CONFIG_KEYS if key in trained},
                 "history": rows}, history)
    path = outputs / source.source
    if not path.is_file():
        return None
    content = read_json(path)
    if source.copy == "demo_metrics.json":
        content = {key: content[key] for key in METRICS_KEYS if key in content}
    return content, path


def shown_sources(outputs: Path, source: Source) -> str:
    """The source file(s) as the project names them: "outputs/bench/bench.json"."""
    return ", ".join(f"{outputs.name}/{part}" for part in source.source.split(", "))


def collect(outputs: Path, results: Path, copied_at: str | None = None) -> list[Path]:
    """Copies every result file the runs have written from `outputs` into `results`
    (see SOURCES), each with its provenance; returns the files written. All sources are
    read before anything is written, so a damaged one changes nothing."""
    found = [(source, gathered) for source in SOURCES
             if (gathered := gather(source, outputs)) is not None]
    copied_at = copied_at or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    written = []
    results.mkdir(parents=True, exist_ok=True)
    for source, (content, path) in found:
        content["provenance"] = {
            "source": shown_sources(outputs, source), "command": source.command,
            "written": when(path), "copied": copied_at,
            # A file that names its machine (bench.json) is the better record of it.
            "machine": content.get("machine") or runs.this_machine()}
        target = results / source.copy
        runs.write_atomically(target, json.dumps(content, indent=2) + "\n")
        print(f"saved {target} (from {shown_sources(outputs, source)})")
        written.append(target)
    return written


# ---- rendering docs/results/ into the documents' tables ----

def provenance_line(name: str, content: dict[str, Any]) -> str:
    """`docs/results/<name>`: the command, the machine and the date its numbers come from."""
    where = content.get("provenance", {})
    machine = where.get("machine", {})
    parts = [f"`{where['command']}`" if "command" in where else None,
             ", ".join(str(part) for part in (
                 machine.get("cpu"),
                 f"{machine['cores']} cores" if machine.get("cores") else None,
                 f"1-minute load average {machine['load_average']} at the end"
                 if "load_average" in machine else None)
                 if part) or None,
             where.get("written", "")[:10] or None]
    return f"From [docs/results/{name}](docs/results/{name}): " + "; ".join(
        part for part in parts if part) + "."


ROAD_KEYS = registry.keys(group="removal")  # the ROAD board's columns


def render_leaderboard(board: dict[str, Any]) -> list[str]:
    """The board as leaderboard.md shows it (camlab.evaluate.leaderboard.markdown: ranked, each
    score with its interval, ties in bold), under a line saying what was scored."""
    lines = [f"{thousands(board['num_images'])} images of the {board['split']} split, run "
             f"`{board['run']}`, layer `{board['layer']}`, scores for the {board['class']} "
             "class" + (f"; not computed: {', '.join(board['not_computed'])}"
                        if board.get("not_computed") else "") + ":", ""]
    return lines + leaderboard.markdown(board)


def only_keys(board: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The board with the scores of `keys` only (and each method's image count)."""
    def kept(row: dict) -> dict:
        return {**{k: v for k, v in row.items() if k in keys or k == "num_images"},
                "ci95": {k: v for k, v in row.get("ci95", {}).items() if k in keys}}

    return {**board, "methods": {m: kept(row) for m, row in board["methods"].items()},
            "baselines": {b: kept(row) for b, row in board["baselines"].items()},
            "ties": {k: v for k, v in board.get("ties", {}).items() if k in keys}}


def render_board(name: str, keys: tuple[str, ...] | None = None
                 ) -> Callable[[dict[str, dict]], list[str]]:
    """A renderer of the board in docs/results/<name>: its provenance, then its table (of
    `keys` only, when given), then how long its one pass took."""
    def render(files: dict[str, dict]) -> list[str]:
        if name not in files:
            return [missing(name)]
        board = files[name] if keys is None else only_keys(files[name], keys)
        return ([provenance_line(name, board), ""] + render_leaderboard(board)
                + pass_time(board))

    return render


def pass_time(board: dict[str, Any]) -> list[str]:
    machine = board.get("provenance", {}).get("machine", {})
    return ["", f"Scoring them took {thousands(board['seconds'])} s (`seconds`: the passes "
            "over the split, model loading, figures and TensorFlow's import not included) on "
            f"{machine.get('cpu', '?')} with {machine.get('cores', '?')} cores."]


def render_demo(files: dict[str, dict]) -> list[str]:
    """What the demo run reached and what it cost, from whichever files exist."""
    rows, used = [], []
    training = files.get("demo_training.json")
    if training:
        used.append("demo_training.json")
        config, history = training["config"], training["history"]
        if history and config.get("KEEP") == "last" and "val_accuracy" in history[-1]:
            rows.append((f"validation accuracy after the last epoch ({len(history)} of "
                         f"{config.get('EPOCHS', len(history))}), kept by `KEEP=\"last\"`",
                         f"{100 * history[-1]['val_accuracy']:.1f}%"))
        choice = config.get("precision_choice", {})
        if "float32_images_per_s" in choice:
            rows.append(("`MIXED_PRECISION=\"auto\"` chose "
                         f"`{choice['policy']}`, by timing training (images/s)",
                         f"float32 {sig3(choice['float32_images_per_s'])}, mixed_bfloat16 "
                         f"{sig3(choice['mixed_bfloat16_images_per_s'])}"))
        elif "policy" in choice:
            rows.append(("precision policy", f"`{choice['policy']}` ({choice['decided_by']})"))
    metrics = files.get("demo_metrics.json")
    if metrics:
        used.append("demo_metrics.json")
        rows.append((f"accuracy measured by `evaluate_cam.py` on "
                     f"{thousands(metrics['num_images'])} {metrics['split']} images",
                     f"{100 * metrics['accuracy']:.1f}%"))
    bench = files.get("bench.json", {})
    if "demo_seconds" in bench:
        used.append("bench.json")
        entry = bench["demo_seconds"]
        rows.append(("`make demo`'s two commands on prepared data, wall clock (`demo_seconds`)",
                     f"{entry['value']:.0f} s"))
        accuracy = entry.get("demo_val_accuracy", bench.get("demo_val_accuracy"))
        if isinstance(accuracy, dict):
            accuracy = accuracy.get("value")
        if isinstance(accuracy, (int, float)):
            rows.append(("validation accuracy of that run (`demo_val_accuracy`)",
                         f"{100 * accuracy:.1f}%"))
    if not rows:
        return [missing("demo_training.json, demo_metrics.json")]
    return ([provenance_line(name, files[name]) for name in used] + [""]
            + table(("demo run", "value"), rows))


BENCH_GLOSS = {  # a few words per key; the definitions are in docs/benchmarks.md
    "cam_speedup_vs_seed_loop": "time of the post's per-image CAM loop / this code's",
    "cam_floor_ratio": "this code's time / writing its output once",
    "cam_overhead_fraction": "VGG19 forward pass + top-3 CAMs / forward pass alone, - 1",
    "pipeline_efficiency": "training images/s fed by tfds / fed from memory (demo)",
    "mixed_precision_speedup": "VGG19 training images/s: mixed precision / float32",
    "auto_precision_vs_best": "images/s of the policy \"auto\" picks / of the faster one",
    "methods_ms_per_image": "ms per image of each map method",
    "demo_seconds": "`make demo`'s train and visualize commands, data prepared, s",
    "demo_val_accuracy": "validation accuracy of that demo run",
    "one_method_seconds": "`evaluate_cam.py --PRESET=demo`, CAM alone, 1,000 images, s",
    "leaderboard_seconds": "the same, the seven methods of `make demo-evaluate` in one pass, s",
}


def bench_value(value: Any) -> str | None:
    """A bench entry's value as table text: a number, or `name number` pairs for a dict of
    numbers; None for anything else (the row is left out)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return sig3(value)
    if isinstance(value, dict) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
        return ", ".join(f"{name} {sig3(number)}" for name, number in value.items())
    return None


def bench_rows(bench: dict[str, Any], keys: tuple[str, ...] | None = None) -> list[str]:
    """One row per key of a bench file that has a "value" (all, or those of `keys`; keys
    absent or unknown are fine)."""
    rows = [(f"`{key}`", text, BENCH_GLOSS.get(key, ""))
            for key, entry in bench.items()
            if (keys is None or key in keys) and isinstance(entry, dict) and "value" in entry
            and (text := bench_value(entry["value"])) is not None]
    return table(("key", "value", "compares"), rows)


def render_bench(bench: dict[str, Any]) -> list[str]:
    """bench.json: its keys, the methods' times and the comparison with tf-keras-vis."""
    return ([provenance_line("bench.json", bench), ""] + bench_rows(bench)
            + render_method_rows(bench) + render_tf_keras_vis(bench))


def render_scoring_cost(files: dict[str, dict]) -> list[str]:
    """What scoring the seven methods in one pass costs beside CAM alone (bench_demo.json,
    both evaluations in one bench run, on the same data)."""
    bench = files.get("bench_demo.json")
    if not bench or "leaderboard_seconds" not in bench:
        return [missing("bench_demo.json (key leaderboard_seconds)")]
    entry = bench["leaderboard_seconds"]
    return [provenance_line("bench_demo.json", bench), "",
            *bench_rows(bench, ("one_method_seconds", "leaderboard_seconds")), "",
            f"Seven methods cost {sig3(entry['vs_one_method'])} times CAM alone, wall clock "
            "of each command (model loading, figures and TensorFlow's import included)."]


def render_method_rows(bench: dict[str, Any]) -> list[str]:
    """methods_ms_per_image as a table, when the bench has rows of it."""
    part = bench.get("methods_ms_per_image", {})
    if not isinstance(part.get("rows"), dict):
        return []
    where = (f"{part['batch']} images at {part['image_size']} px, top-{part['top_k']} maps, "
             f"layer `{part['layer']}`, forward pass ({sig3(part['forward_ms_per_image'])} ms "
             "per image) not included" if "forward_ms_per_image" in part else "")
    notes = "; ".join(f"{name}: {part[name]}" for name in part["rows"]
                      if isinstance(part.get(name), str))
    return (["", f"`methods_ms_per_image` ({where}{'; ' + notes if notes else ''}):", ""]
            + table(("method", "ms per image"),
                    [(f"`{name}`", sig3_wide(ms)) for name, ms in part["rows"].items()]))


def render_tf_keras_vis(bench: dict[str, Any]) -> list[str]:
    """vs_tf_keras_vis as a table: the speed-up and both sides' seconds per method."""
    part = bench.get("vs_tf_keras_vis", {})
    if not isinstance(part.get("rows"), dict):
        return []
    scorecam = part.get("scorecam", {})
    where = (f"{part['model']} at {part['image_size']} px, batch {part['batch']}, "
             f"{part['precision']}" if "model" in part else "")
    if scorecam:
        where += (f"; Score-CAM on {scorecam['model']} at {scorecam['image_size']} px, "
                  f"all {scorecam['channels']} channels on both sides")
    return (["", f"`vs_tf_keras_vis`, tf-keras-vis' time / this code's ({where}):", ""]
            + table(("method", "speed-up", "ours, s", "tf-keras-vis, s"),
                    [(f"`{name}`", sig3(row["value"]), sig3(row["ours_s"]),
                      sig3(row["theirs_s"])) for name, row in part["rows"].items()]))


def render_backbones(bench: dict[str, Any]) -> list[str]:
    """Training images/s and CAM overhead per backbone (bench.json's `backbones`)."""
    if "backbones" not in bench:
        return [missing("bench.json (key backbones)")]
    part = bench["backbones"]
    rows = [(f"`{name}`", sig3(row["training_images_per_s"]),
             f"{row['cam_overhead_fraction']:.3f}", "x".join(map(str, row["feature_shape"])))
            for name, row in part["rows"].items()]
    return ([provenance_line("bench.json", bench) + f" {part['precision']}, "
             f"{part['image_size']} px, batch {part['batch']}, random weights.", ""]
            + table(("backbone", "training images/s", "CAM overhead", "final feature map"),
                    rows))


def scoring_time(files: dict[str, dict]) -> list[str]:
    """How long the leaderboard's one scoring pass took: `seconds` of the board, else of
    demo_metrics.json when that run wrote both (the same pass)."""
    board, metrics = files["demo_leaderboard.json"], files.get("demo_metrics.json", {})
    seconds = board.get("seconds", metrics.get("seconds")
                        if metrics.get("num_images") == board["num_images"] else None)
    if seconds is None:
        return []
    machine = board.get("provenance", {}).get("machine", {})
    return ["", f"Scoring all of them took one pass of {thousands(seconds)} s over the split "
            f"(`seconds`; model loading, figures and TensorFlow's import not included) on "
            f"{machine.get('cpu', '?')} with {machine.get('cores', '?')} cores."]


def render_no_gpu(files: dict[str, dict]) -> list[str]:
    """The post's full run as a linear probe (TRAIN_LAYERS="head") beside the fine-tune,
    both from one measured bench entry, head_only_speedup (VGG19 at 320 px, one run)."""
    name = next((n for n in ("bench_head_only.json", "bench.json")
                 if "head_only_speedup" in files.get(n, {})), None)
    if name is None:
        return [missing("bench_head_only.json (key head_only_speedup)")]
    bench, entry = files[name], files[name]["head_only_speedup"]
    train, val = IMAGENETTE_TRAIN_IMAGES, IMAGENETTE_VALIDATION_IMAGES
    fine_tune = POST_EPOCHS * train / entry["full_epoch_images_per_s"]
    extract = (train + val) / entry["extraction_images_per_s"]
    heads = POST_EPOCHS * train / entry["head_epoch_images_per_s"]
    machine = bench.get("machine", {})
    return [
        f"**Estimate, not a measurement.** `head_only_speedup` in "
        f"[docs/results/{name}](docs/results/{name}) ({entry['backbone']} at "
        f"{entry['image_size']} px, {entry['precision']}, {entry['images']} images, on "
        f"{machine.get('cpu', '?')} with {machine.get('cores', '?')} cores) measured, in one "
        f"run: a fine-tune epoch at {sig3(entry['full_epoch_images_per_s'])} images/s, "
        f"the backbone's features at {sig3(entry['extraction_images_per_s'])} images/s and a "
        f"head epoch on them at {sig3(entry['head_epoch_images_per_s'])} images/s (a "
        f"head-only first epoch is {sig3(entry['value'])} times a fine-tune epoch's speed). "
        f"For the post's run, {POST_EPOCHS} epochs of {thousands(train)} images: a fine-tune "
        f"{POST_EPOCHS} x {thousands(train)} / {sig3(entry['full_epoch_images_per_s'])} = "
        f"{thousands(fine_tune)} s (about {fine_tune / 3600:.0f} hours); the probe "
        f"{thousands(train + val)} / {sig3(entry['extraction_images_per_s'])} = "
        f"{thousands(extract)} s for the features (training and validation images, once) "
        f"plus {thousands(heads)} s for the {POST_EPOCHS} head epochs, about "
        f"{(extract + heads) / 60:.0f} minutes."]


def render_seeds(name: str) -> Callable[[dict[str, dict]], list[str]]:
    """A renderer of the seeds' table in docs/results/<name> (leaderboard.seeds_markdown)."""
    def render(files: dict[str, dict]) -> list[str]:
        if name not in files:
            return [missing(name)]
        return [provenance_line(name, files[name]), ""] + leaderboard.seeds_markdown(
            files[name])

    return render


def _interval(low: float, high: float) -> str:
    return f"[{low:.2f}, {high:.2f}]"


VERDICT_PHRASES = {  # leaderboard.verdict of a score's Kendall tau with the cause's order
    "positive": "order the methods like the cause (tau's interval above 0)",
    "cannot tell": "cannot tell (tau's interval holds 0)",
    "negative": "reverse the cause's order (interval below 0)",
    "orders nothing": "order nothing (every method has the same value)"}


def render_known_cause(files: dict[str, dict]) -> list[str]:
    """The known-cause boards in a few rows: which method puts most map mass on the proven
    cause, which beat the edge map, which detect the planted shortcut, and how each lab
    score orders the methods against the cause (camlab.evaluate.trust), each with its interval."""
    names = ("cause_leaderboard.json", "shortcut_leaderboard.json")
    if not all(name in files for name in names):
        return [missing(" and ".join(names))]
    cause, shortcut = (files[name] for name in names)
    truth = cause["truth"]["metric"]
    best = cause["ties"][truth]  # the best by value first, then those tied with it
    mass = cause["methods"][best[0]]
    others = ", ".join(best[1:])
    best_text = (f"{best[0]} {mass[truth]:.3f} {_interval(*mass['ci95'][truth])}"
                 + (f", tied with {others}" if others else ", alone"))

    def split(entries: dict[str, tuple[bool, str]]) -> str:
        yes = [f"{name} {text}" for name, (passes, text) in entries.items() if passes]
        no = [f"{name} {text}" for name, (passes, text) in entries.items() if not passes]
        return (f"{'all ' if not no else ''}{len(yes)}: {', '.join(yes)}" if yes
                else "none") + (f"; not: {', '.join(no)}" if no else "")

    edge = split({m: (e["beats"], leaderboard.difference_text(e["difference"], e["ci95"]))
                  for m, e in cause["beats_edge"].items()})
    detected = {}
    for method, row in shortcut["methods"].items():
        if leaderboard.SHORTCUT in row:
            low, high = row["ci95"][leaderboard.SHORTCUT]
            detected[method] = (low > 0, leaderboard.difference_text(
                row[leaderboard.SHORTCUT], (low, high)))
    by_verdict: dict[str, list[str]] = {}
    for key, entry in cause["agreement"].items():
        shown = f"{key} {leaderboard.tau_text(entry, '')}".rstrip()
        by_verdict.setdefault(leaderboard.verdict(entry), []).append(shown)
    rows = [("most map mass on the proven cause", best_text),
            ("beat the edge map on it", edge),
            ("show the planted shortcut (marker mass minus the control's)", split(detected))]
    rows += [(f"lab scores that {phrase}", "; ".join(by_verdict[verdict]))
             for verdict, phrase in VERDICT_PHRASES.items() if verdict in by_verdict]
    return ([f"{provenance_line(names[0], cause)[:-1]}; shortcut: "
             f"[docs/results/{names[1]}](docs/results/{names[1]}). Cause scores over the "
             f"{cause['truth']['images']} verified images of {cause['truth']['of']}; "
             "[lo, hi]: 95% bootstrap intervals over images.", ""]
            + table((f"on data whose cause is known ({truth})", "methods and scores"),
                    rows))


def missing(names: str) -> str:
    return f"(No results committed yet: {names} in docs/results/ come from `make results`.)"


def registry_table(name: str) -> list[str]:
    """A table of the method registry (camlab.maps.methods.method_table, passes_table),
    imported here: the methods import TensorFlow, the result files need not."""
    from camlab.maps import methods

    return getattr(methods, name)()


RENDERERS: dict[str, Callable[[dict[str, dict]], list[str]]] = {
    "demo": render_demo,
    "leaderboard": lambda files: (
        [provenance_line("demo_leaderboard.json", files["demo_leaderboard.json"]), ""]
        + render_leaderboard(files["demo_leaderboard.json"]) + scoring_time(files)
        if "demo_leaderboard.json" in files else [missing("demo_leaderboard.json")]),
    "leaderboard_all": render_board("demo_leaderboard_all.json"),
    "road": render_board("demo_leaderboard_road.json", ROAD_KEYS),
    "seeds": render_seeds("demo_seeds_leaderboard.json"),
    "cause": render_board("cause_leaderboard.json"),
    "shortcut": render_board("shortcut_leaderboard.json"),
    "cause_seeds": render_seeds("cause_seeds_leaderboard.json"),
    "known_cause": render_known_cause,
    "bench": lambda files: (render_bench(files["bench.json"]) if "bench.json" in files
                            else [missing("bench.json")]),
    "scoring_cost": render_scoring_cost,
    "backbones": lambda files: render_backbones(files.get("bench.json", {})),
    "no_gpu": render_no_gpu,
    "methods": lambda files: registry_table("method_table"),
    "metrics": lambda files: registry.table(),
    "localisation_scores": lambda files: registry.table(registry.keys(group="localisation")),
    "cause_metrics": lambda files: registry.table((*registry.keys(group="cause"),
                                                   leaderboard.SHORTCUT)),
    "passes": lambda files: registry_table("passes_table"),
}


def load_results(results: Path) -> dict[str, dict]:
    """The committed result files, by file name."""
    return {source.copy: read_json(results / source.copy) for source in SOURCES
            if (results / source.copy).is_file()}


def render(text: str, files: dict[str, dict], links: str = LINKS) -> str:
    """`text` with every results block replaced by its rendering from `files`; CamError
    for a block name no renderer knows. The renderers link to LINKS from the project
    folder; `links` is that folder as seen from the document (docs/*.md: "results")."""
    def block(match: re.Match) -> str:
        name = match.group(2)
        if name not in RENDERERS:
            raise CamError(f"block <!-- results:{name} --> is unknown; known: "
                           f"{', '.join(RENDERERS)}")
        rendered = "\n".join(RENDERERS[name](files)).replace(f"]({LINKS}/", f"]({links}/")
        return match.group(1) + rendered + "\n" + match.group(4)
    return BLOCK.sub(block, text)


def stale_blocks(text: str, files: dict[str, dict], links: str = LINKS) -> list[str]:
    """Names of the results blocks of `text` that differ from their rendering."""
    rendered = {m.group(2): m.group(0) for m in BLOCK.finditer(render(text, files, links))}
    return [m.group(2) for m in BLOCK.finditer(text) if rendered[m.group(2)] != m.group(0)]


def documents(patterns: tuple[str, ...]) -> list[Path]:
    """The files DOCUMENTS names, each once, in the order named (a glob's matches sorted);
    CamError for a name or a glob that finds no file."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else (
            [pattern] if Path(pattern).is_file() else [])
        if not matches:
            raise CamError(f"DOCUMENTS: {pattern!r} names no file; run from the project folder")
        found.update(dict.fromkeys(Path(match) for match in matches))
    return list(found)


def links_from(document: Path, results: Path) -> str:
    """RESULTS as a Markdown link from `document`'s folder: "docs/results" from README.md,
    "results" from docs/*.md."""
    return Path(os.path.relpath(results.resolve(), document.resolve().parent)).as_posix()


def run(config: dict[str, Any]) -> list[str]:
    """Copies (unless CHECK), then renders the blocks of every document or, with CHECK,
    compares them; returns the names of the blocks that were (CHECK: that would be)
    rewritten."""
    results = Path(config["RESULTS"])
    texts = {path: path.read_text(encoding="utf-8") for path in documents(config["DOCUMENTS"])}
    texts = {path: text for path, text in texts.items() if BLOCK.search(text)}
    if not texts:
        raise CamError(f"no file of DOCUMENTS={', '.join(config['DOCUMENTS'])} has a "
                       f"<!-- results:NAME --> ... {END_MARK} block")
    if config["CHECK"]:
        files = load_results(results)
        stale = {path: names for path, text in texts.items()
                 if (names := stale_blocks(text, files, links_from(path, results)))}
        if stale:
            raise CamError("; ".join(f"{path}'s tables {', '.join(names)}"
                                     for path, names in stale.items())
                           + f" differ from {results}/: run `make results` instead of editing "
                           "them by hand")
        print(f"every results table of {', '.join(map(str, texts))} matches {results}/")
        return []
    outputs = Path(config["OUTPUTS"])
    if not outputs.is_dir():
        raise CamError(f"OUTPUTS={str(outputs)!r} is not a folder; run from the project folder")
    if not collect(outputs, results):
        print(f"no result files in {outputs}/ (make demo, make bench, ...): rendering the "
              f"committed {results}/ only")
    files = load_results(results)
    rewritten = []
    for path, text in texts.items():
        links = links_from(path, results)
        stale = stale_blocks(text, files, links)
        if stale:
            runs.write_atomically(path, render(text, files, links))
        print(f"{path}: rendered {', '.join(stale) or 'nothing (already up to date)'}")
        rewritten += stale
    return rewritten


def main(argv: list[str] | None = None) -> list[str]:
    return settings.run_script(__file__, run, argv)


if __name__ == "__main__":
    main()
