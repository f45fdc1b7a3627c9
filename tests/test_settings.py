"""camlab.settings: constants, overrides and presets."""

from __future__ import annotations

import json

import pytest

import train_cam
import visualize_cam
from camlab import settings
from camlab.errors import CamError


def test_defaults_are_the_seed_values():
    config = settings.resolve(train_cam, [])
    assert config["DATASET"] == "imagenette/320px"
    assert (config["IMAGE_SIZE"], config["BATCH_SIZE"], config["EPOCHS"]) == (320, 16, 10)
    assert config["LEARNING_RATE"] == 1e-5 and config["SHUFFLE_BUFFER"] == 15000
    assert config["WEIGHTS"] == "imagenet" and config["BACKBONE"] == "vgg19"
    shown = settings.resolve(visualize_cam, [])
    assert (shown["NUM_IMAGES"], shown["TOP_K"], shown["THRESHOLD"]) == (5, 3, 0.3)
    assert (shown["ALPHA"], shown["CMAP"], shown["DPI"]) == (0.3, "magma_r", 300)


def test_overrides_are_parsed_by_the_default_type():
    config = settings.resolve(train_cam, ["--EPOCHS=2", "--LEARNING_RATE=3e-4",
                                            "--WEIGHTS=", "--RUN_NAME=quick"])
    assert config["EPOCHS"] == 2 and isinstance(config["EPOCHS"], int)
    assert config["LEARNING_RATE"] == pytest.approx(3e-4)
    assert config["WEIGHTS"] == "" and config["RUN_NAME"] == "quick"


@pytest.mark.parametrize("arg, message", [
    ("--EPOCHS=x", "expected int"),
    ("--EPOCHS=1.5", "expected int"),
    ("--LEARNING_RATE=fast", "expected float"),
    ("--EPOCS=3", "unknown constant 'EPOCS'; valid names: PRESET, DATASET"),
    ("EPOCHS=3", "expected --NAME=value"),
])
def test_bad_overrides_are_rejected(arg, message):
    with pytest.raises(CamError, match=message):
        settings.resolve(train_cam, [arg])


def test_bad_override_exits_with_the_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_cam.main(["--EPOCHS=x"])
    assert "train_cam.py: error: --EPOCHS='x': expected int" in str(exit_info.value.code)


def test_help_lists_every_constant_with_its_comment(capsys):
    with pytest.raises(SystemExit) as exit_info:
        settings.resolve(train_cam, ["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in settings.declared_constants(train_cam):
        assert f"--{name}=" in text
    assert "VGG19 gives 10x10 feature maps at 320" in text


def test_demo_preset_applies_below_the_command_line():
    config = settings.resolve(train_cam, ["--PRESET=demo", "--EPOCHS=1"])
    assert config["DATASET"] == "cam_shapes" and config["BACKBONE"] == "small_vgg"
    assert config["EPOCHS"] == 1
    with pytest.raises(CamError, match="unknown preset 'nope'; available: demo"):
        settings.resolve(train_cam, ["--PRESET=nope"])


def test_preset_values_are_type_checked(tmp_path, monkeypatch):
    (tmp_path / "bad.json").write_text(json.dumps({"EPOCHS": "ten"}))
    monkeypatch.setattr(settings, "PRESETS_DIR", tmp_path)
    with pytest.raises(CamError, match="EPOCHS='ten': expected int"):
        settings.resolve(train_cam, ["--PRESET=bad"])
