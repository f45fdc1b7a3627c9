"""camlab.core.settings: the constants block, the command line, presets, --help."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evaluate_cam
import train_cam
import visualize_cam
from camlab.core import settings
from camlab.errors import CamError
from camlab.report import plots

SCRIPTS = (train_cam, visualize_cam, evaluate_cam)
ROOT = Path(train_cam.__file__).parent


def edited_copy(tmp_path, script, old: str, new: str) -> Path:
    """A copy of a script with one line of its settings block edited, as a user would."""
    source = Path(script.__file__).read_text()
    assert old in source
    path = tmp_path / Path(script.__file__).name
    path.write_text(source.replace(old, new))
    return path


def test_defaults_are_the_seed_values():
    config = settings.resolve(train_cam.__file__, [])
    assert config["DATASET"] == "imagenette/320px"
    assert (config["IMAGE_SIZE"], config["BATCH_SIZE"], config["EPOCHS"]) == (320, 16, 10)
    assert config["LEARNING_RATE"] == 1e-5 and config["SHUFFLE_BUFFER"] == 15000
    assert config["WEIGHTS"] == "imagenet" and config["BACKBONE"] == "vgg19"
    shown = settings.resolve(visualize_cam.__file__, [])
    assert (shown["NUM_IMAGES"], shown["TOP_K"], shown["THRESHOLD"]) == (5, 3, 0.3)
    style = plots.resolve_style(shown["STYLE"], shown["CMAP"], shown["ALPHA"])
    assert (style.alpha, style.cmap, shown["DPI"]) == (0.3, "magma_r", 300)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_block_holds_every_upper_case_assignment_and_equals_the_module(script):
    found = settings.declared_settings(script.__file__)
    assert list(found)[0] == "PRESET" and list(found)[-1] == "TENSORFLOW_LOG"
    for name, setting in found.items():
        assert getattr(script, name) == setting.default, name


@pytest.mark.parametrize("new", ["NUM_IMAGES = 2", "NUM_IMAGES = 2# x", "NUM_IMAGES=2  #",
                                 "NUM_IMAGES: int = 2  # annotated"])
def test_an_edited_line_counts_whatever_its_comment(tmp_path, new):
    old = "NUM_IMAGES = 5  # rows of the grid: images drawn at random (with SEED) from SPLIT"
    path = edited_copy(tmp_path, visualize_cam, old, new)
    assert settings.resolve(path, [])["NUM_IMAGES"] == 2
    assert settings.resolve(path, ["--NUM_IMAGES=3"])["NUM_IMAGES"] == 3


def test_a_value_that_would_need_running_is_refused(tmp_path):
    path = edited_copy(tmp_path, train_cam, "EPOCHS = 10", "EPOCHS = int('10')")
    with pytest.raises(CamError, match=r"line \d+: EPOCHS = int\('10'\) is not a plain value"):
        settings.resolve(path, [])


def test_a_lost_end_marker_is_named(tmp_path):
    path = edited_copy(tmp_path, train_cam, settings.END_OF_SETTINGS, "")
    with pytest.raises(CamError, match="has lost its line '# ---- end of settings ----'"):
        settings.resolve(path, [])


@pytest.mark.parametrize("argv, expected", [
    (["--EPOCHS=2", "--LEARNING_RATE=3e-4", "--WEIGHTS=", "--RUN_NAME=quick"],
     {"EPOCHS": 2, "LEARNING_RATE": 3e-4, "WEIGHTS": "", "RUN_NAME": "quick"}),
    (["--EPOCHS", "3", "--RUN_NAME", "spaced"], {"EPOCHS": 3, "RUN_NAME": "spaced"}),
    (["--epochs=3", "--Run_Name=lower"], {"EPOCHS": 3, "RUN_NAME": "lower"}),
    (["--RESUME"], {"RESUME": True}),
    (["--RESUME", "--EPOCHS=4"], {"RESUME": True, "EPOCHS": 4}),
    (["--DETERMINISTIC=false"], {"DETERMINISTIC": False}),
    (["--DETERMINISTIC", "no", "--resume", "yes"], {"DETERMINISTIC": False, "RESUME": True}),
    (["--LEARNING_RATE", "-1"], {"LEARNING_RATE": -1.0}),
])
def test_command_line_habits_work(argv, expected):
    config = settings.resolve(train_cam.__file__, argv)
    for name, value in expected.items():
        assert config[name] == value and type(config[name]) is type(value), name


@pytest.mark.parametrize("arg, message", [
    (["--EPOCHS=x"], "--EPOCHS='x': expected int like the default 10"),
    (["--EPOCHS=1.5"], "expected int"),
    (["--LEARNING_RATE=fast"], "expected float"),
    (["--RESUME=maybe"], "--RESUME='maybe': expected bool"),
    (["--EPOCS=3"], "unknown constant 'EPOCS'; did you mean EPOCHS? valid names: PRESET, "
                    "DATASET"),
    (["--zzz=3"], "unknown constant 'zzz'; valid names: PRESET"),
    (["EPOCHS=3"], "expected --NAME=value or --NAME value, got 'EPOCHS=3'"),
    (["--EPOCHS"], "--EPOCHS needs a value: --EPOCHS=VALUE or --EPOCHS VALUE"),
    (["--EPOCHS", "--SEED=1"], "--EPOCHS needs a value"),
])
def test_bad_overrides_are_rejected(arg, message):
    with pytest.raises(CamError) as error:
        settings.resolve(train_cam.__file__, arg)
    assert message in str(error.value)


def test_bad_override_exits_with_the_message():
    with pytest.raises(SystemExit) as exit_info:
        train_cam.main(["--EPOCHS=x"])
    assert "train_cam.py: error: --EPOCHS='x': expected int" in str(exit_info.value.code)


def test_help_lists_every_setting_in_aligned_columns(capsys):
    with pytest.raises(SystemExit) as exit_info:
        settings.resolve(train_cam.__file__, ["--help"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines if line.startswith("  --")}
    assert list(rows) == [f"--{name}" for name in settings.declared_settings(train_cam.__file__)]
    assert len({line.index(line.split()[1], len(line.split()[0]) + 2) for line in rows.values()
                if len(line.split()[1]) < 20}) == 1
    assert '"imagenette/320px"' in rows["--DATASET"]
    assert "VGG19 gives 10x10 feature maps at 320" in rows["--IMAGE_SIZE"]
    with pytest.raises(SystemExit):
        settings.resolve(visualize_cam.__file__, ["-h"])
    assert re.search(r'\n  --IMAGES +"" +your own image files', capsys.readouterr().out)


def test_help_answers_before_tensorflow_loads():
    probe = ("import runpy, sys\nsys.argv = ['train_cam.py', '--help']\n"
             "try:\n    runpy.run_path('train_cam.py', run_name='__main__')\n"
             "except SystemExit as exit:\n    assert exit.code in (0, None)\n"
             "print('tensorflow loaded:', 'tensorflow' in sys.modules)\n")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("usage: python train_cam.py")
    assert "tensorflow loaded: False" in result.stdout and result.stderr == ""
    assert seconds < 3.0  # about 0.1 s here; generous for a loaded CI machine


def test_a_bad_setting_stops_before_tensorflow_loads():
    result = subprocess.run([sys.executable, "train_cam.py", "--EPCHS=2"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == ("train_cam.py: error: unknown constant 'EPCHS'; did you "
                                     "mean EPOCHS? valid names: " + ", ".join(
                                         settings.declared_settings(train_cam.__file__)))


def test_demo_preset_applies_below_the_command_line():
    config = settings.resolve(train_cam.__file__, ["--PRESET=demo", "--EPOCHS=1"])
    assert config["DATASET"] == "cam_shapes" and config["BACKBONE"] == "small_vgg"
    assert config["EPOCHS"] == 1
    with pytest.raises(CamError, match="unknown preset 'nope'; available: cause, demo, shortcut"):
        settings.resolve(train_cam.__file__, ["--PRESET=nope"])


def test_every_change_from_the_file_is_reported(tmp_path):
    path = edited_copy(tmp_path, train_cam, "EPOCHS = 10", "EPOCHS = 2")
    _, changes = settings.resolve_with_sources(path, ["--PRESET", "demo", "--SEED=7"])
    assert "EPOCHS: 2 (train_cam.py) -> 10 (presets/demo.json)" in changes
    assert "SEED: 1234 (train_cam.py) -> 7 (command line)" in changes
    assert 'PRESET: "" (train_cam.py) -> "demo" (command line)' in changes
    _, changes = settings.resolve_with_sources(path, ["--PRESET=demo", "--EPOCHS=3"])
    assert "EPOCHS: 2 (train_cam.py) -> 10 (presets/demo.json) -> 3 (command line)" in changes
    _, changes = settings.resolve_with_sources(path, ["--EPOCHS=2"])
    assert changes == []  # the same value as the file is no change


def test_preset_values_are_type_checked(tmp_path, monkeypatch):
    (tmp_path / "bad.json").write_text(json.dumps({"EPOCHS": "ten"}))
    monkeypatch.setattr(settings, "PRESETS_DIR", tmp_path)
    with pytest.raises(CamError, match=r"EPOCHS='ten' in presets/bad.json: expected int"):
        settings.resolve(train_cam.__file__, ["--PRESET=bad"])


@pytest.mark.parametrize("text, message", [
    ("{\"EPOCHS\": 3,", "presets/broken.json is not valid JSON"),
    ("[1, 2]", "presets/broken.json must hold one JSON object of settings")])
def test_a_broken_preset_file_is_one_line(tmp_path, monkeypatch, text, message):
    (tmp_path / "broken.json").write_text(text)
    monkeypatch.setattr(settings, "PRESETS_DIR", tmp_path)
    with pytest.raises(CamError, match=message):
        settings.resolve(train_cam.__file__, ["--PRESET=broken"])


def test_every_preset_key_is_a_setting_of_some_script():
    known = set().union(*(settings.declared_settings(s.__file__) for s in SCRIPTS))
    for path in settings.PRESETS_DIR.glob("*.json"):
        assert set(json.loads(path.read_text())) <= known, path.name


@pytest.mark.parametrize("script", SCRIPTS)
def test_no_function_reads_a_setting_from_the_module(script):
    """Every setting reaches the run: functions read config["NAME"], never the constant,
    which a preset or the command line would not have changed (CACHE_MEMORY_FRACTION was)."""
    names = set(settings.declared_settings(script.__file__))
    tree = ast.parse(Path(script.__file__).read_text())
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef | ast.ClassDef)]
    read = {node.id for function in functions for node in ast.walk(function)
            if isinstance(node, ast.Name) and node.id in names}
    assert read == set()


def test_the_package_never_imports_a_script():
    scripts = {"train_cam", "visualize_cam", "evaluate_cam"}
    for path in (ROOT / "camlab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                imported = {alias.name for alias in node.names} | {getattr(node, "module", "")}
                assert not imported & scripts, path.name


def test_given_names_what_a_preset_or_the_command_line_set_and_only_that_adapts(capsys):
    config = settings.resolve(visualize_cam.__file__, ["--PRESET=demo", "--NUM_IMAGES=5"])
    assert isinstance(config, settings.Config)
    assert config.given == {"PRESET", "NUM_IMAGES",  # and demo.json's keys this script has:
                            "DATASET", "IMAGE_SIZE", "RUN_NAME", "DPI"}
    settings.adapt(config, "TOP_K", 2, "the model has 2 classes")
    settings.adapt(config, "NUM_IMAGES", 2, "the split has 2 images")  # given: kept
    settings.adapt(config, "SEED", 0, "no reason")  # the same value: no line
    assert (config["TOP_K"], config["NUM_IMAGES"]) == (2, 5)
    assert capsys.readouterr().out.splitlines() == [
        "TOP_K: 3 -> 2, as the model has 2 classes (TOP_K given on the command line or in "
        "a preset is used as given)"]
    plain = {"TOP_K": 3}  # a plain dict, as a caller of run() may build: nothing adapts
    settings.adapt(plain, "TOP_K", 2, "the model has 2 classes")
    assert plain == {"TOP_K": 3}
