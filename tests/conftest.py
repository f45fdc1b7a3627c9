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
