"""An interrupted training resumes from its last finished epoch to the same end."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import train_cam
from conftest import QUICK_TRAINING

SCRIPT = Path(__file__).with_name("train_on_mock_data.py")


def history_epochs(run_dir: Path) -> list[int]:
    path = run_dir / "history.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as rows:
        return [int(row["epoch"]) for row in csv.DictReader(rows)]


def start(args, output_dir):
    argv = [sys.executable, str(SCRIPT), "32", *QUICK_TRAINING, "--EPOCHS=6",
            "--BATCH_SIZE=8", "--VALIDATION_BATCH_SIZE=16",
            f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=resume", *args]
    return subprocess.Popen(argv, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_training_resumes_and_finishes_all_epochs(tmp_path):
    run_dir = tmp_path / "resume"
    first = start([], tmp_path)
    deadline = time.monotonic() + 240
    while len(history_epochs(run_dir)) < 2 and first.poll() is None:
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # no chance to clean up, like a lost machine
    first.wait()
    done_before = history_epochs(run_dir)
    assert first.returncode == -signal.SIGKILL and 2 <= len(done_before) < 6
    assert (run_dir / "backup").is_dir()

    second = start(["--RESUME=True"], tmp_path)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    epochs = history_epochs(run_dir)
    assert epochs[-1] == 5 and epochs[:len(done_before)] == done_before
    # At most the epoch that was running when killed is repeated; none before it.
    assert len(epochs) - 6 <= 1 and sorted(set(epochs)) == list(range(6))
    assert not (run_dir / "backup").exists()  # a finished run leaves no backup behind


def test_resume_refuses_a_changed_configuration(tmp_path, mock_imagenette):
    run_dir = tmp_path / "resume"
    (run_dir / "backup").mkdir(parents=True)
    (run_dir / "config.json").write_text('{"EPOCHS": 6, "IMAGE_SIZE": 64}')
    with pytest.raises(SystemExit) as exit_info:
        train_cam.main([*QUICK_TRAINING, "--EPOCHS=6", f"--OUTPUT_DIR={tmp_path}",
                        "--RUN_NAME=resume", "--RESUME=True"])
    assert "cannot resume" in str(exit_info.value.code)
    assert "IMAGE_SIZE: 64 -> 32" in str(exit_info.value.code)


def test_resume_without_an_interrupted_run_says_so(tmp_path, mock_imagenette):
    with pytest.raises(SystemExit, match="nothing to resume"):
        train_cam.main([*QUICK_TRAINING, f"--OUTPUT_DIR={tmp_path}", "--RESUME=True"])
