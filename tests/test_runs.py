"""camlab.runs: atomic writes, and runs whose files are damaged or do not match."""

from __future__ import annotations

import pytest

import evaluate_cam
import visualize_cam
from camlab import runs
from helpers import copy_run, edit_config, run_fails


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), runs.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "weights.weights.h5").unlink(), "weights.weights.h5 not found"),
    (lambda d: (d / "weights.weights.h5").write_bytes(
        (d / "weights.weights.h5").read_bytes()[:4096]), "is damaged or truncated"),
    (lambda d: (d / "config.json").write_text('{"IMAGE_SIZE": 3'), "is not valid JSON"),
    (lambda d: (d / "config.json").unlink(), "config.json not found"),
    (lambda d: edit_config(d, class_names=list("abcde")), "does not fit the model"),
    (lambda d: edit_config(d, BACKBONE="small_vgg"), "does not fit the model"),
    (lambda d: edit_config(d, IMAGE_SIZE=64), "IMAGE_SIZE 32 in the weights, 64 in config"),
    (lambda d: edit_config(d, BACKBONE="resnet"),
     "BACKBONE 'vgg19' in the weights, 'resnet' in config.json"),
])
@pytest.mark.parametrize("main", [visualize_cam.main, evaluate_cam.main])
def test_damaged_or_mismatched_runs_are_explained(trained_run, tmp_path, damage, message,
                                                  main):
    output_dir, run_dir = trained_run
    broken = copy_run(run_dir, tmp_path / "broken")
    damage(broken)
    run_fails(main, [f"--OUTPUT_DIR={tmp_path}", "--RUN_NAME=broken"], broken, message)
