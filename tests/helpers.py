"""Helpers the test files share: quick-training overrides, folder snapshots, failing runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

# train_cam.py overrides for a run of seconds: VGG19 untrained at 32 px, one epoch.
QUICK_TRAINING = ["--WEIGHTS=", "--IMAGE_SIZE=32", "--EPOCHS=1", "--BATCH_SIZE=4",
                  "--VALIDATION_BATCH_SIZE=4", "--SHUFFLE_BUFFER=16",
                  "--MIXED_PRECISION=float32"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to show a failed command changed nothing."""
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def run_fails(main, args, run_dir, message) -> str:
    """Runs a script that must fail: checks exit, message and an unchanged run folder.

    Returns the message the script exited with.
    """
    before = snapshot(run_dir)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert isinstance(exit_info.value.code, str) and message in exit_info.value.code
    assert snapshot(run_dir) == before
    return exit_info.value.code


def write_png(path: Path, array: np.ndarray) -> Path:
    """Writes an (h, w, channels) uint8 or uint16 array as a PNG file."""
    path.write_bytes(tf.io.encode_png(array).numpy())
    return path


def copy_run(run_dir: Path, target: Path) -> Path:
    """A copy of a run folder's files (not its subfolders) in `target`."""
    target.mkdir()
    for path in run_dir.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


def edit_config(run_dir: Path, **changes) -> None:
    """Changes entries of a run's config.json in place."""
    config = json.loads((run_dir / "config.json").read_text())
    config.update(changes)
    (run_dir / "config.json").write_text(json.dumps(config))
