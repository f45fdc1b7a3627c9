"""benchmarks/bench_cam.py at tiny sizes, through its functions' arguments: what each part
returns, checked against what it says it measures. Never the full benchmark."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from camlab.maps import methods
from camlab.networks import classifier, models
from camlab.train import probe
from helpers import run_fails

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_cam", ROOT / "benchmarks" / "bench_cam.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def tiny():
    """small_vgg at 32 px, 4 classes: 8x8x64 feature maps."""
    return classifier.explain(models.build_model("small_vgg", 32, 4), 32)


def test_cam_grid_times_the_scripts_path_against_the_seed_loop(tiny):
    result = bench.bench_cam_grid(tiny, batch=2, size=32, classes=4, repeats=1)
    speedup, floor = result["cam_speedup_vs_seed_loop"], result["cam_floor_ratio"]
    assert speedup["value"] == pytest.approx(speedup["seed_loop_s"] / speedup["vectorized_s"])
    assert floor["value"] == pytest.approx(floor["vectorized_s"] / floor["fill_s"])
    assert speedup["feature_shape"] == [8, 8, 64] and speedup["classes"] == 4
    assert min(speedup["vectorized_with_numpy_copy_s"], speedup["vectorized_as_numpy_view_s"],
               speedup["seed_loop_s"], floor["fill_s"]) > 0


def test_cam_grid_refuses_maps_that_differ_from_the_seed_loop(tiny, monkeypatch):
    right = bench.vectorized
    monkeypatch.setattr(bench, "vectorized", lambda *args: right(*args) * 1.01)
    with pytest.raises(AssertionError, match="differ from the seed loop"):
        bench.bench_cam_grid(tiny, batch=2, size=32, classes=4, repeats=1)


def test_methods_time_every_method_on_the_images_they_say(tiny, monkeypatch):
    """A row per method; Score-CAM and saliency on the fewer images the entry states."""
    counted, top_k_maps, given = {}, methods.top_k_maps, set()

    def counting(method, model, features, *args, **kwargs):
        counted.setdefault(method, set()).add(features.shape[0])
        given.add(kwargs["options"])
        return top_k_maps(method, model, features, *args, **kwargs)

    monkeypatch.setattr(methods, "top_k_maps", counting)
    few = methods.Options(noise_samples=2, ig_steps=2, rise_masks=4, occlusion_patch=0.5,
                          occlusion_stride=0.5)  # a few passes per image, not 2,000 (RISE)
    result = bench.bench_methods(tiny, bench.random_images(3, 32), top_k=2,
                                 scorecam_images=1, saliency_images=2, repeats=1, options=few)
    entry = result["methods_ms_per_image"]
    assert list(entry["rows"]) == list(methods.METHODS)
    assert all(ms > 0 for ms in entry["rows"].values()) and entry["forward_ms_per_image"] > 0
    assert entry["forward_included"] is False and entry["top_k"] == 2
    assert counted == {**{method: {3} for method in methods.METHODS},
                       "scorecam": {1}, "saliency": {2}}
    assert "1 image(s), 64 forward passes" in entry["scorecam"]
    assert given == {few}  # every method's maps made with the options it was given


def test_tf_keras_vis_rows_are_their_seconds_over_ours(tiny):
    images = bench.random_images(2, 32)
    entry = bench.bench_tf_keras_vis(tiny, images, tiny, images, warmup=0,
                                     repeats=1)["vs_tf_keras_vis"]
    assert set(entry["rows"]) == {"gradcam", "gradcam++", "layercam", "scorecam", "saliency",
                                  "smoothgrad", "scorecam_max_n"}
    for row in entry["rows"].values():
        assert row["value"] == pytest.approx(row["theirs_s"] / row["ours_s"])
    assert entry["scorecam"]["channels"] == 64 and entry["scorecam"]["max_N"] is None
    assert entry["scorecam_max_n"]["max_N"] == bench.TKV_MAX_N < 64
    assert entry["batch"] == 2 and entry["image_size"] == 32


def test_timed_pair_alternates_the_sides_and_drops_the_warm_up():
    calls = []
    ours, theirs = bench.timed_pair(lambda: calls.append("ours"),
                                    lambda: calls.append("theirs"), warmup=1, repeats=2)
    assert calls == ["ours", "theirs"] * 3 and ours >= 0 and theirs >= 0


def test_demo_commands_are_make_demos_with_their_own_run_name():
    recipe = (ROOT / "Makefile").read_text().split("\ndemo:")[1].split("\n\n")[0]
    made = [line.split("$(PY) ")[1].split() for line in recipe.splitlines()
            if "$(PY)" in line]
    commands = bench.demo_commands("bench_demo")
    assert [command[1:-1] for command in commands] == made
    assert all(command[-1] == "--RUN_NAME=bench_demo" for command in commands)


def test_demo_is_the_two_commands_wall_time_and_the_last_epochs_accuracy(tmp_path):
    history = ("import pathlib; p = pathlib.Path('outputs/fake'); p.mkdir(parents=True, "
               "exist_ok=True); (p / 'history.csv').write_text("
               "'epoch,accuracy,val_accuracy\\n0,0.5,0.25\\n1,0.9,0.75\\n')")
    commands = [[sys.executable, "-c", history], [sys.executable, "-c", "pass"]]
    result = bench.bench_demo(commands, "fake", tmp_path)
    seconds = result["demo_seconds"]
    assert seconds["value"] == pytest.approx(seconds["train_s"] + seconds["visualize_s"])
    assert result["demo_val_accuracy"]["value"] == 0.75 == seconds["demo_val_accuracy"]


def test_leaderboard_times_one_method_then_seven_on_the_same_run(tmp_path):
    (tmp_path / "evaluate_cam.py").write_text(
        "import sys, time; time.sleep(0.3 if ',' in sys.argv[-1] else 0.05)")
    result = bench.bench_leaderboard("demo", tmp_path)
    one, board = result["one_method_seconds"], result["leaderboard_seconds"]
    assert one["method"] == "cam" and board["methods"] == bench.LEADERBOARD_METHODS
    assert board["value"] > one["value"] >= 0.05
    assert board["vs_one_method"] == pytest.approx(board["value"] / one["value"])


def test_partial_runs_write_beside_the_full_results():
    full = "outputs/bench/bench.json"
    assert bench.output_path(full, bench.ALL_PARTS, True) == Path(full)
    assert bench.output_path(full, ("cam", "methods"), False) == Path(
        "outputs/bench/bench_cam_methods.json")
    assert bench.output_path(full, (), True) == Path("outputs/bench/bench_demo.json")


@pytest.mark.parametrize("parts, message", [
    ("cam,lime", "PARTS='lime'; choose one of cam, overhead"),
    ("", "nothing to measure")])
def test_bad_parts_are_one_line_and_write_nothing(parts, message, tmp_path):
    code = run_fails(bench.main, [f"--PARTS={parts}", f"--OUTPUT={tmp_path / 'b.json'}"],
                     tmp_path, message)
    assert "\n" not in code and not re.search(r"Traceback", code)


def test_head_only_is_a_full_epoch_over_the_extraction_and_a_head_epoch(monkeypatch):
    """Through probe.extract, as train_cam.py: a warm-up batch, then all the images."""
    extracted, extract = [], probe.extract

    def counting(extractor, examples, count, *args, **kwargs):
        extracted.append(count)
        return extract(extractor, examples, count, *args, **kwargs)

    monkeypatch.setattr(probe, "extract", counting)
    entry = bench.bench_head_only("small_vgg", size=32, batch=4, steps=2,
                                  classes=4)["head_only_speedup"]
    assert extracted == [4, 8] and entry["images"] == 8
    assert entry["value"] == pytest.approx(entry["full_s"] / (entry["extract_s"]
                                                              + entry["head_s"]))
    assert entry["value"] == pytest.approx(entry["head_first_epoch_images_per_s"]
                                           / entry["full_epoch_images_per_s"])
    assert entry["extraction_images_per_s"] == pytest.approx(8 / entry["extract_s"])
    assert entry["head_epoch_images_per_s"] == pytest.approx(8 / entry["head_s"])
    assert min(entry["full_s"], entry["extract_s"], entry["head_s"]) > 0


FAKE_PEER = '''
import json, sys
args = sys.argv[1:]
with open(sys.argv[0] + ".log", "a") as log:
    log.write(" ".join(args) + "\\n")
    print(json.dumps({"ready": True, "versions": {"xplique": "fake"}}), flush=True)
    for line in sys.stdin:
        log.write(line)
        print(json.dumps({"method": line.strip(), "seconds": 2.0}), flush=True)
'''


def test_xplique_rows_are_the_peers_seconds_over_ours_alternately(tiny, tmp_path):
    """A fake peer (no xplique): it reports 2 s a call; ours is timed here, call by call."""
    script = tmp_path / "peer.py"
    script.write_text(FAKE_PEER)
    images = bench.random_images(2, 32)
    entry = bench.bench_xplique(sys.executable, tiny, images, tiny, images[:1], warmup=1,
                                repeats=2, few_methods=("saliency", "gradcam"),
                                many_methods=("rise",), rise_masks=4,
                                script=script)["vs_xplique"]
    assert list(entry["rows"]) == ["saliency", "gradcam", "rise"]
    for row in entry["rows"].values():
        assert row["theirs_s"] == 2.0 and len(row["ours_all_s"]) == 2
        assert row["value"] == pytest.approx(2.0 / row["ours_s"])
        assert row["ours_over_peer"] == pytest.approx(row["ours_s"] / 2.0)
    log = (tmp_path / "peer.py.log").read_text().splitlines()
    assert "--size=32 --batch=2 --classes=4" in log[0] and "--batch=1" in log[7]
    assert "--rise-masks=4" in log[7]
    assert log[1:7] == ["saliency"] * 3 + ["gradcam"] * 3 and log[8:] == ["rise"] * 3
    assert entry["many_passes"]["batch"] == 1 and entry["peer_versions"] == {"xplique": "fake"}
    assert entry["cpu"] and entry["load_average_before"] >= 0


def test_xplique_without_its_venv_is_one_line_and_no_entry(capsys, tmp_path):
    assert "XPLIQUE_PYTHON is not set" in bench.xplique_skip_reason("")
    missing = str(tmp_path / "bin" / "python")
    assert f"XPLIQUE_PYTHON={missing} does not exist" in bench.xplique_skip_reason(missing)
    assert bench.xplique_skip_reason(sys.executable) == ""
    assert bench.measure(("xplique",), False, missing) == {}
    printed = capsys.readouterr().err
    assert printed.count("\n") == 1 and printed.startswith("part xplique skipped:")


@pytest.mark.parametrize("line, message", [
    ('{"error": "\'lime\' is not one of saliency"}', "lime"),
    ('{"method": "rise", "seconds": 1.0}', "'rise'"),
    ("", "not JSON")])
def test_a_peer_answer_that_is_no_time_for_the_method_asked_raises(line, message):
    with pytest.raises(RuntimeError, match=message):
        bench.peer_seconds(line, "saliency")
    assert bench.peer_seconds('{"method": "saliency", "seconds": 1.5}', "saliency") == 1.5


def test_xplique_peer_builds_our_vgg19_gap_and_restates_our_defaults():
    """The peer imports no camlab, so what it restates is checked here."""
    from camlab.maps import method_spec, perturbation

    peer_spec = importlib.util.spec_from_file_location(
        "peers_xplique", ROOT / "benchmarks" / "peers_xplique.py")
    peer = importlib.util.module_from_spec(peer_spec)
    peer_spec.loader.exec_module(peer)
    source = (ROOT / "benchmarks" / "peers_xplique.py").read_text()
    assert not re.search(r"^\s*(from|import) camlab", source, re.MULTILINE)
    for name in ("ATTRIBUTION_BATCH", "NOISE_SAMPLES", "NOISE_LEVEL", "IG_STEPS",
                 "OCCLUSION_PATCH", "OCCLUSION_STRIDE", "RISE_MASKS"):
        assert getattr(peer, name) == getattr(method_spec, name), name
    assert (peer.RISE_GRID, peer.RISE_KEEP, peer.GREY) == (
        perturbation.RISE_GRID, perturbation.RISE_KEEP, perturbation.GREY)
    assert peer.CAFFE_MEANS_BGR == models.CAFFE_MEANS_BGR
    assert set(peer.METHODS) == set(bench.XPLIQUE_METHODS + bench.XPLIQUE_MANY_PASSES)
    assert set(peer.METHODS) <= set(methods.METHODS)
    theirs, ours = peer.build_model(32, 4, 0), models.build_model("vgg19", 32, 4)
    assert theirs.count_params() == ours.count_params()
    assert theirs.get_layer(peer.LAYER).output.shape == (
        classifier.explain(ours, 32).layers[peer.LAYER].shape)
    assert theirs.layers[-1].activation.__name__ == "linear"
    images = bench.random_images(1, 32)
    theirs.set_weights(ours.get_weights())
    assert np.allclose(theirs(images), ours(images), atol=1e-5)  # explain made ours linear
