"""Shared fixtures: everything offline, small, and seeded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

import cam_data  # noqa: E402

# train_cam.py overrides for a run of seconds: VGG19 untrained at 32 px, one epoch.
QUICK_TRAINING = ["--WEIGHTS=", "--IMAGE_SIZE=32", "--EPOCHS=1", "--BATCH_SIZE=4",
                  "--VALIDATION_BATCH_SIZE=4", "--SHUFFLE_BUFFER=16",
                  "--MIXED_PRECISION=float32"]


@pytest.fixture(scope="module")
def mock_imagenette():
    """tfds' mock data for imagenette: random images, real label names, no download.

    mock_data turns download_and_prepare into a no-op; the download-host probe would
    still (rightly) report the network as unreachable, so it is answered here.
    """
    with pytest.MonkeyPatch.context() as patch, tfds.testing.mock_data(num_examples=12):
        patch.setattr(cam_data, "host_reachable", lambda *args, **kwargs: True)
        yield


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mock_imagenette):
    """(output_dir, run_dir) of a one-epoch run on mock imagenette, once per test module."""
    import train_cam

    output_dir = tmp_path_factory.mktemp("outputs")
    run_dir = train_cam.main([*QUICK_TRAINING, f"--OUTPUT_DIR={output_dir}", "--RUN_NAME=mock"])
    return output_dir, run_dir


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to show a failed command changed nothing."""
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures scripts save during a test, in order (they are still saved)."""
    import cam_plot

    figures = []
    original = cam_plot.save_figure
    monkeypatch.setattr(cam_plot, "save_figure",
                        lambda fig, *args: (figures.append(fig), original(fig, *args)))
    return figures
