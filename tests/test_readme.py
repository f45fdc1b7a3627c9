"""README.md and the guides in docs/: their result tables are renderings of docs/results/
(camlab/report/results.py), and their relative links lead to files that exist."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from camlab.report import results

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]  # results.DOCUMENTS' files

BOARD = {
    "methods": {
        "cam": {"maxboxacc_v2": 0.6624, "pointing_game": 0.9871, "deletion_auc": 0.1414,
                "insertion_auc": 0.7936, "ms_per_image": 0.02134},
        "gradcam": {"maxboxacc_v2": 0.6691, "pointing_game": 0.9869, "deletion_auc": 0.1422,
                    "insertion_auc": 0.7931, "ms_per_image": 0.1904},
    },
    "baselines": {"centre": {"maxboxacc_v2": 0.1561, "pointing_game": 0.515,
                             "deletion_auc": 0.2113, "insertion_auc": 0.6384},
                  "random": {"maxboxacc_v2": 0.2243, "pointing_game": 0.1512,
                             "deletion_auc": 0.2571, "insertion_auc": 0.2569}},
    "num_images": 1000, "run": "demo", "split": "validation", "layer": "conv3_2",
    "class": "predicted", "not_computed": ["pxap"],
}
MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "devices": ["/device:CPU:0"],
           "load_average": 0.12}
BENCH = {
    "cam_speedup_vs_seed_loop": {"value": 8.5019, "seed_loop_s": 0.097},
    "auto_precision_vs_best": {"value": 1.0, "auto_policy": "float32",
                               "float32_images_per_s": 25.0,
                               "mixed_bfloat16_images_per_s": 20.0,
                               "image_size": 128, "batch": 16},
    "vs_tf_keras_vis": {"value": 3.456},  # a key this module has no gloss for
    "methods_ms_per_image": {"value": {"cam": 0.02134, "gradcam": 0.19}},
    "not_a_number": {"value": "n/a"},
    "backbones": {"image_size": 128, "batch": 8, "precision": "float32", "rows": {
        "vgg19": {"training_images_per_s": 9.4169, "cam_overhead_fraction": 0.01859,
                  "feature_shape": [4, 4, 512]}}},
    "machine": MACHINE, "seconds": 259.8,
}
TRAINING = {"config": {"KEEP": "last", "EPOCHS": 3, "precision_choice": {
    "policy": "mixed_bfloat16", "decided_by": "measurement",
    "float32_images_per_s": 602.4, "mixed_bfloat16_images_per_s": 856.1}},
    "history": [{"epoch": 1.0, "val_accuracy": 0.5}, {"epoch": 2.0, "val_accuracy": 0.9},
                {"epoch": 3.0, "val_accuracy": 0.9871}]}
METRICS = {"num_images": 1000, "split": "validation", "accuracy": 0.9884, "run": "demo"}
TEMPLATE = """# Title

Text before, with 12 numbers that are not rendered.

<!-- results:demo -->
old text
<!-- /results -->

<!-- results:bench -->
<!-- /results -->

<!-- results:backbones -->
<!-- /results -->

<!-- results:leaderboard -->
| stale | 1.000 |
<!-- /results -->

Text after.
"""


def table_rows(lines: list[str]) -> list[list[str]]:
    """The cells of the first Markdown table's rows in `lines` (the header first, the ---
    line dropped)."""
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    end = next((index for index in range(start, len(lines))
                if not lines[index].startswith("|")), len(lines))
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in lines[start:end] if not line.startswith("|---")]


def by_first_cell(lines: list[str]) -> dict[str, dict[str, str]]:
    """{first cell: {column title: cell}} of the table in `lines`."""
    header, *rows = table_rows(lines)
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def write_json(path: Path, content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def fixture_outputs(root: Path) -> Path:
    """An outputs/ folder as the demo, evaluate and bench runs leave it."""
    outputs = root / "outputs"
    write_json(outputs / "demo" / "config.json", {
        **TRAINING["config"], "class_names": ["a", "b"], "DATA_DIR": "/somewhere"})
    (outputs / "demo" / "history.csv").write_text(
        "epoch,val_accuracy\n1,0.5\n2,0.9\n3,0.9871\n", encoding="utf-8")
    write_json(outputs / "demo" / "metrics.json", {
        **METRICS, "per_class": {"a": {"images": 500}}, "confusion_matrix": [[1, 0], [0, 1]]})
    write_json(outputs / "demo" / "leaderboard.json", BOARD)
    write_json(outputs / "bench" / "bench.json", BENCH)
    return outputs


# ---- the real documents against the committed docs/results/ ----

def document_blocks() -> list[tuple[Path, re.Match]]:
    """Every results block of README.md and docs/*.md, with its document."""
    return [(path, match) for path in DOCUMENTS
            for match in results.BLOCK.finditer(path.read_text(encoding="utf-8"))]


def test_the_documents_scanned_here_are_those_make_results_renders(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert [ROOT / path for path in results.documents(results.DOCUMENTS)] == DOCUMENTS


def test_every_table_is_the_rendering_of_the_committed_results():
    names = [match.group(2) for _, match in document_blocks()]
    assert sorted(names) == sorted(results.RENDERERS), "each table appears exactly once"
    files = results.load_results(ROOT / results.RESULTS)
    for path in DOCUMENTS:
        links = results.links_from(path, ROOT / results.RESULTS)
        assert results.stale_blocks(path.read_text(encoding="utf-8"), files, links) == [], (
            f"{path.name}'s result tables differ from docs/results/: run `make results`, do "
            "not edit them by hand")


def test_every_number_in_the_committed_tables_changes_the_check_when_edited():
    """Each digit of the rendered tables, in every document, is checked: changing any one
    fails."""
    files = results.load_results(ROOT / results.RESULTS)
    edited_documents = 0
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        links = results.links_from(path, ROOT / results.RESULTS)
        digits = [block.start(3) + digit.start() for block in results.BLOCK.finditer(text)
                  for digit in re.finditer(r"\d", block.group(3))]
        for at in digits[::7] + digits[-1:]:  # a sample, and the last, keep the test fast
            edited = text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1:]
            assert results.stale_blocks(edited, files, links), (
                f"editing {path.name} at offset {at} went unnoticed")
        edited_documents += bool(digits)
    assert edited_documents >= 6, "the README and the guides hold rendered numbers"


def test_relative_links_lead_to_existing_files_and_headings():
    checked = 0
    for document in DOCUMENTS:
        text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            file = (document.parent / path).resolve() if path else document
            shown = file.relative_to(ROOT).as_posix()
            assert file.exists(), f"{document.name} links to {target}, which does not exist"
            if anchor:
                assert anchor in heading_anchors(file), f"{document.name}: no #{anchor} in {shown}"
            checked += 1
    assert checked >= 30  # the images, the guides and docs/results/ files are links


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, spaces to hyphens,
    punctuation other than hyphens and underscores dropped."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")}


def test_the_readme_is_a_front_door_of_at_most_200_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


def test_readme_sections_come_in_the_users_order():
    text = README.read_text(encoding="utf-8")
    first_screen = text[:text.index("\n## ")]
    # The picture, then the commands that draw it: make demo, then the call that draws
    # docs/demo_heatmaps.png as committed (the contrast style, the image first).
    assert first_screen.index("![") < first_screen.index("make demo") < first_screen.index(
        "visualize_cam.py --PRESET=demo --STYLE=contrast --SHOW_IMAGE") < first_screen.index(
        "make test")
    assert re.findall(r"^## (.+)$", text, re.M) == [
        "Install", "The demo", "Reproduce the post", "Your folder, your photos, your Keras model",
        "From Python", "Methods", "How good are the maps?",
        "Does the map show what the model used?", "Guides"]
    assert "aitch 100%" in text  # the demo network knows only its shapes


def test_offline_download_urls_and_sizes_are_the_installed_codes():
    """The offline table (docs/reproduce.md) quotes tfds' and Keras' own URLs, and the sizes
    the lab checks."""
    import tensorflow_datasets as tfds
    from keras.src.applications import vgg19

    from camlab.datasets import data
    from camlab.networks import models

    text = (ROOT / "docs" / "reproduce.md").read_text(encoding="utf-8")
    rows = {row[0].strip("`").split("`")[0]: row for row in table_rows(
        text[text.index("| file | bytes | URL |"):].split("\n\n")[0].splitlines())}
    registered = {url: info for url, info in tfds.builder("imagenette/320px").url_infos.items()}
    for dataset in ("imagenette/320px", "imagenette/320px-v2"):
        archive, size = data.MANUAL_ARCHIVES[dataset]
        _, bytes_text, url, _ = rows[archive]
        url = url.split("`")[1]
        assert registered[url].filename == archive and int(registered[url].size) == size
        assert int(bytes_text.replace(",", "")) == size
    weights = models.BACKBONES["vgg19"]
    _, bytes_text, url, _ = rows[weights.weights_file]
    assert url.split("`")[1] == vgg19.WEIGHTS_PATH_NO_TOP
    assert int(bytes_text.replace(",", "")) == weights.weights_size


# ---- rendering, on hand-made files ----

def test_leaderboard_ranks_methods_and_formats_each_score_from_its_key():
    lines = results.render_leaderboard(BOARD)
    rows = by_first_cell(lines)
    assert list(rows) == ["gradcam", "cam", "centre baseline", "random baseline"]
    assert rows["cam"]["MaxBoxAccV2"] == "0.662" and rows["gradcam"]["MaxBoxAccV2"] == "0.669"
    assert rows["cam"]["pointing"] == "0.987" and rows["cam"]["insertion"] == "0.794"
    assert rows["cam"]["deletion (lower better)"] == "0.141"
    assert rows["cam"]["ms / image"] == "0.0213" and rows["gradcam"]["ms / image"] == "0.190"
    assert rows["random baseline"]["MaxBoxAccV2"] == "0.224"
    assert rows["centre baseline"]["ms / image"] == "-"
    assert "PxAP" not in rows["cam"] and "pointing, strict" not in rows["cam"]
    assert lines[0].startswith("1,000 images of the validation split, run `demo`")
    assert "not computed: pxap" in lines[0]


def test_a_board_of_some_keys_names_a_capped_method_and_its_time():
    """The ROAD block keeps its keys only; a method with its own image count says it."""
    board = {**BOARD, "seconds": 512.4, "ties": {"deletion_auc": ["cam"],
                                                 "maxboxacc_v2": ["gradcam"]}}
    board["methods"] = {**BOARD["methods"],
                        "rise": {"deletion_auc": 0.15, "road_morf": 0.2, "ms_per_image": 9.0,
                                 "num_images": 50}}
    board["methods"]["cam"] = {**board["methods"]["cam"], "road_morf": 0.1}
    lines = results.render_board("b.json", ("deletion_auc", "road_morf"))({"b.json": board})
    rows = by_first_cell(lines)
    assert list(rows) == ["cam", "gradcam", "rise (first 50 images)", "centre baseline",
                          "random baseline"]  # by deletion, lower first
    assert set(rows["cam"]) == {"method", "deletion (lower better)", "ROAD MoRF (lower better)"}
    assert rows["cam"]["deletion (lower better)"] == "**0.141**"
    assert "cannot be shown worse than the best on those images" in "\n".join(lines)
    assert lines[-1].startswith("Scoring them took 512 s")
    assert results.render_board("absent.json")({}) == [results.missing("absent.json")]


def test_no_gpu_estimate_is_the_arithmetic_of_the_head_only_entry():
    entry = {"value": 3.0, "full_epoch_images_per_s": 2.0, "extraction_images_per_s": 6.0,
             "head_epoch_images_per_s": 500.0, "backbone": "vgg19", "image_size": 320,
             "precision": "float32", "images": 16}
    text = results.render_no_gpu({"bench_head_only.json": {
        "head_only_speedup": entry, "machine": {"cpu": "AMD EPYC", "cores": 2}}})[0]
    # 10 x 12,894 / 2 = 64,470 s; (12,894 + 500) / 6 = 2,232 s; 10 x 12,894 / 500 = 258 s.
    assert "= 64,470 s (about 18 hours)" in text and "= 2,232 s for the features" in text
    assert "plus 258 s for the 10 head epochs, about 42 minutes" in text
    assert results.render_no_gpu({})[0].startswith("(No results committed yet")


def test_leaderboard_without_boxes_ranks_by_deletion_lower_first():
    board = {**BOARD, "methods": {"a": {"deletion_auc": 0.3}, "b": {"deletion_auc": 0.1}},
             "baselines": {}}
    assert list(by_first_cell(results.render_leaderboard(board))) == ["b", "a"]


def test_bench_table_has_a_row_for_every_key_with_a_value_and_only_those():
    rows = by_first_cell(results.render_bench(BENCH))
    assert list(rows) == ["`cam_speedup_vs_seed_loop`", "`auto_precision_vs_best`",
                          "`vs_tf_keras_vis`", "`methods_ms_per_image`"]
    assert rows["`cam_speedup_vs_seed_loop`"]["value"] == "8.50"
    assert rows["`auto_precision_vs_best`"]["value"] == "1.00"
    assert rows["`vs_tf_keras_vis`"]["value"] == "3.46"
    assert rows["`vs_tf_keras_vis`"]["compares"] == ""
    assert rows["`methods_ms_per_image`"]["value"] == "cam 0.0213, gradcam 0.190"


def test_method_and_tf_keras_vis_tables_come_from_their_rows():
    bench = {"methods_ms_per_image": {"rows": {"cam": 0.2236, "scorecam": 91257.2},
                                      "batch": 16, "image_size": 320, "top_k": 3,
                                      "layer": "block5_pool", "forward_ms_per_image": 163.6,
                                      "scorecam": "on 1 image(s)"},
             "vs_tf_keras_vis": {"rows": {"gradcam": {"value": 3.235, "ours_s": 0.7301,
                                                      "theirs_s": 2.362}},
                                 "model": "vgg19_gap", "image_size": 224, "batch": 8,
                                 "precision": "float32",
                                 "scorecam": {"model": "small_vgg_gap", "image_size": 64,
                                              "channels": 64}}}
    lines = results.render_bench(bench)
    methods = by_first_cell(lines[lines.index(next(line for line in lines if line.startswith(
        "`methods_ms_per_image`"))):])
    assert methods["`cam`"]["ms per image"] == "0.224"
    assert methods["`scorecam`"]["ms per image"] == "91,300"
    assert "forward pass (164 ms per image) not included; scorecam: on 1 image(s)" in "".join(
        lines)
    tkv = by_first_cell(lines[lines.index(next(line for line in lines if line.startswith(
        "`vs_tf_keras_vis`"))):])
    assert tkv["`gradcam`"] == {"method": "`gradcam`", "speed-up": "3.23", "ours, s": "0.730",
                                "tf-keras-vis, s": "2.36"}
    assert "Score-CAM on small_vgg_gap at 64 px, all 64 channels on both sides" in "".join(
        lines)


def test_bench_provenance_names_command_machine_load_and_date():
    bench = {**BENCH, "provenance": {"command": "make bench", "machine": MACHINE,
                                     "written": "2026-11-26T11:53:17+0000"}}
    line = results.render_bench(bench)[0]
    assert line == ("From [docs/results/bench.json](docs/results/bench.json): `make bench`; "
                    "Test CPU 9000, 2 cores, 1-minute load average 0.12 at the end; "
                    "2026-11-26.")


def test_backbone_rows_come_from_bench_backbones():
    lines = results.render_backbones(BENCH)
    assert lines[0].endswith("float32, 128 px, batch 8, random weights.")
    assert by_first_cell(lines)["`vgg19`"] == {
        "backbone": "`vgg19`", "training images/s": "9.42", "CAM overhead": "0.019",
        "final feature map": "4x4x512"}
    assert results.render_backbones({}) == [results.missing("bench.json (key backbones)")]


def test_demo_table_takes_each_number_from_its_file():
    files = {"demo_training.json": TRAINING, "demo_metrics.json": METRICS,
             "bench.json": {"demo_seconds": {"value": 157.4, "demo_val_accuracy": 0.9866}}}
    rows = by_first_cell(results.render_demo(files))
    values = {title.split(" (")[0].split(",")[0]: row["value"] for title, row in rows.items()}
    assert values["validation accuracy after the last epoch"] == "98.7%"
    assert values["accuracy measured by `evaluate_cam.py` on 1"] == "98.8%"
    assert values["`MIXED_PRECISION=\"auto\"` chose `mixed_bfloat16`"] == (
        "float32 602, mixed_bfloat16 856")
    assert values["`make demo`'s two commands on prepared data"] == "157 s"
    assert values["validation accuracy of that run"] == "98.7%"
    only_metrics = by_first_cell(results.render_demo({"demo_metrics.json": METRICS}))
    assert len(only_metrics) == 1
    assert results.render_demo({}) == [results.missing(
        "demo_training.json, demo_metrics.json")]


def test_render_fills_every_block_and_leaves_the_text_around_it():
    files = {"demo_leaderboard.json": BOARD, "bench.json": BENCH}
    rendered = results.render(TEMPLATE, files)
    outside = lambda text: results.BLOCK.sub("", text)  # noqa: E731
    assert outside(rendered) == outside(TEMPLATE)
    assert "old text" not in rendered and "| stale |" not in rendered
    assert "| gradcam | 0.669 |" in rendered
    assert results.stale_blocks(rendered, files) == []
    assert results.stale_blocks(rendered.replace("0.669", "0.700"), files) == ["leaderboard"]


def test_unknown_block_is_refused():
    with pytest.raises(results.CamError, match=r"results:speed --> is unknown; known: demo"):
        results.render("<!-- results:speed -->\n<!-- /results -->", {})


# ---- copying outputs/ into docs/results/, and the command ----

def test_collect_copies_what_the_readme_needs_with_its_provenance(tmp_path):
    outputs = fixture_outputs(tmp_path)
    written_at = time.mktime((2026, 1, 2, 12, 0, 0, 0, 0, -1))
    for path in outputs.rglob("*.*"):
        os.utime(path, (written_at, written_at))
    copied = results.collect(outputs, tmp_path / "results", copied_at="2026-01-03T00:00:00")
    optional = {"demo_seeds_leaderboard.json", "bench_head_only.json",  # not in the fixture
                "demo_leaderboard_all.json", "demo_leaderboard_road.json", "bench_demo.json",
                "cause_leaderboard.json", "shortcut_leaderboard.json",
                "cause_seeds_leaderboard.json"}
    assert sorted(path.name for path in copied) == sorted(
        s.copy for s in results.SOURCES if s.copy not in optional)
    files = results.load_results(tmp_path / "results")
    metrics = files["demo_metrics.json"]
    assert "per_class" not in metrics and "confusion_matrix" not in metrics
    assert metrics["accuracy"] == 0.9884
    training = files["demo_training.json"]
    assert "class_names" not in training["config"] and training["config"]["EPOCHS"] == 3
    assert [row["val_accuracy"] for row in training["history"]] == [0.5, 0.9, 0.9871]
    assert training["provenance"]["source"] == ("outputs/demo/config.json, "
                                                "outputs/demo/history.csv")
    assert {k: v for k, v in files["bench.json"].items() if k != "provenance"} == BENCH
    board = files["demo_leaderboard.json"]["provenance"]
    assert board["command"] == ("python evaluate_cam.py --PRESET=demo --METHOD=cam,gradcam,"
                                "gradcam++,scorecam,layercam,eigencam,saliency")
    assert board["source"] == "outputs/demo/leaderboard.json"
    assert board["written"].startswith("2026-01-02T12:00:00")
    assert board["copied"] == "2026-01-03T00:00:00"
    assert set(board["machine"]) >= {"cpu", "cores"}  # the copying machine: no record inside
    assert files["bench.json"]["provenance"]["machine"] == MACHINE  # its own record


def test_collect_skips_absent_sources_and_keeps_their_committed_copies(tmp_path):
    outputs = tmp_path / "outputs"
    write_json(outputs / "bench" / "bench.json", BENCH)
    earlier = write_json(tmp_path / "results" / "demo_leaderboard.json", BOARD)
    before = earlier.read_bytes()
    copied = results.collect(outputs, tmp_path / "results")
    assert [path.name for path in copied] == ["bench.json"]
    assert earlier.read_bytes() == before


def run_command(tmp_path: Path, *flags: str):
    return results.main([f"--OUTPUTS={tmp_path / 'outputs'}",
                         f"--RESULTS={tmp_path / 'docs' / 'results'}",
                         f"--DOCUMENTS={tmp_path / 'README.md'},{tmp_path / 'docs'}/*.md",
                         *flags])


GUIDE = """# A guide

<!-- results:bench -->
<!-- /results -->
"""


def test_command_copies_renders_and_then_checks_every_document(tmp_path, capsys):
    fixture_outputs(tmp_path)
    (tmp_path / "README.md").write_text(TEMPLATE.replace(
        "<!-- results:bench -->\n<!-- /results -->\n", ""), encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(GUIDE, encoding="utf-8")
    (tmp_path / "docs" / "plain.md").write_text("# No tables\n", encoding="utf-8")
    assert run_command(tmp_path) == ["demo", "backbones", "leaderboard", "bench"]
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "| `vgg19` | 9.42 |" in text and "Text after." in text
    guide = (tmp_path / "docs" / "guide.md").read_text(encoding="utf-8")
    # A guide's links lead from docs/ to docs/results/, the README's from the top folder.
    assert "(results/bench.json)" in guide and "(docs/results/bench.json)" in text
    assert (tmp_path / "docs" / "plain.md").read_text(encoding="utf-8") == "# No tables\n"
    assert run_command(tmp_path, "--CHECK") == []
    (tmp_path / "README.md").write_text(text.replace("| `vgg19` | 9.42 |", "| `vgg19` | 9.5 |"),
                                        encoding="utf-8")
    (tmp_path / "docs" / "guide.md").write_text(guide.replace("| 8.50 |", "| 8.60 |"),
                                                encoding="utf-8")
    with pytest.raises(SystemExit, match=r"^results.py: error: .*README.md's tables backbones; "
                                         r".*guide.md's tables bench differ from .*: run "
                                         r"`make results`"):
        run_command(tmp_path, "--CHECK")
    assert run_command(tmp_path) == ["backbones", "bench"]  # rendering repairs both
    assert run_command(tmp_path) == []


def test_a_damaged_source_stops_before_anything_is_written(tmp_path):
    outputs = fixture_outputs(tmp_path)
    (outputs / "demo" / "leaderboard.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "README.md").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text(GUIDE, encoding="utf-8")
    with pytest.raises(SystemExit, match=r"leaderboard.json is not valid JSON .*; run the "
                                         r"command that writes it again$"):
        run_command(tmp_path)
    assert not (tmp_path / "docs" / "results").exists()
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == TEMPLATE


@pytest.mark.parametrize("flags, message", [
    (["--OUTPUTS=nowhere"], r"OUTPUTS='nowhere' is not a folder"),
    (["--DOCUMENTS=nowhere.md"], r"DOCUMENTS: 'nowhere.md' names no file"),
    (["--DOCUMENTS=guides/*.md"], r"DOCUMENTS: 'guides/\*.md' names no file"),
    (["--DOCUMENTS=docs/plain.md"],
     r"no file of DOCUMENTS=docs/plain.md has a <!-- results:NAME -->"),
    (["--CHEK"], r"unknown constant 'CHEK'; did you mean CHECK\?"),
])
def test_bad_settings_are_one_line(tmp_path, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text(TEMPLATE, encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "plain.md").write_text("# No tables\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=message):
        results.main(flags)
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == TEMPLATE


def test_the_architecture_page_stays_short_and_names_every_module():
    """docs/ARCHITECTURE.md is the front door (issue #9): at most 60 lines, and every module
    of camlab/ is on it."""
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert len(page.splitlines()) <= 60
    modules = sorted(path.name for path in (ROOT / "camlab").rglob("*.py")
                     if path.name != "__init__.py")
    layers = sorted(f"{path.parent.name}/" for path in (ROOT / "camlab").glob("*/__init__.py"))
    assert [name for name in [*modules, *layers] if name not in page] == []
    assert len(modules) > 30 and len(layers) > 5


def test_the_scoring_cost_is_rendered_from_the_demo_bench():
    bench = {"one_method_seconds": {"value": 61.04, "method": "cam"},
             "leaderboard_seconds": {"value": 305.2, "vs_one_method": 305.2 / 61.04},
             "demo_seconds": {"value": 99.0},  # bench.json's row, not shown twice
             "provenance": {"command": results.BENCH_DEMO_COMMAND, "machine": MACHINE,
                            "written": "2026-12-03T14:00:00+0000"}}
    lines = results.render_scoring_cost({"bench_demo.json": bench})
    text = "\n".join(lines)
    assert "| `one_method_seconds` | 61.0 |" in text and "| `leaderboard_seconds` | 305 |" in text
    assert "demo_seconds" not in text and "5.00 times CAM alone" in text
    assert "--DEMO=True" in lines[0]
    assert "No results" in results.render_scoring_cost({})[0]
