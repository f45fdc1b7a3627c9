"""Runs train_cam.py on tfds mock data in its own process, so a test can kill it.

usage: python train_on_mock_data.py NUM_EXAMPLES [--NAME=value ...]
"""

import sys
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow_datasets as tfds  # noqa: E402

import train_cam  # noqa: E402
from camlab import data  # noqa: E402

with tfds.testing.mock_data(num_examples=int(sys.argv[1])), \
        mock.patch.object(data, "host_reachable", lambda *args, **kwargs: True):
    train_cam.main(sys.argv[2:])
