"""Runs train_cam.py on tfds mock data in its own process, so a test can kill it.

usage: python train_on_mock_data.py NUM_EXAMPLES [--NAME=value ...]

With KILL_AT_EPOCH=N in the environment the process SIGKILLs itself as epoch N (numbered
from 1, as on screen) starts its first batch: after every callback of train_cam.py has
finished epoch N - 1 (BackupAndRestore's backup, the history row), at a point a test can
name in advance, instead of a race between a polling test and the training.
"""

import os
import signal
import sys
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import keras  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

import train_cam  # noqa: E402
from camlab.datasets import data  # noqa: E402

KILL_AT_EPOCH = int(os.environ.get("KILL_AT_EPOCH", "0"))  # 0: train to the end


class KillAtEpoch(keras.callbacks.Callback):
    """SIGKILLs this process at the first batch of epoch KILL_AT_EPOCH: no handler, no
    cleanup, as when a machine is lost."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == KILL_AT_EPOCH and batch == 0:
            os.kill(os.getpid(), signal.SIGKILL)


def callbacks_then_kill(*args, **kwargs):
    """train_cam.run_callbacks, with KillAtEpoch last: it runs after all of them."""
    callbacks, kept = run_callbacks(*args, **kwargs)
    return [*callbacks, KillAtEpoch()], kept


run_callbacks = train_cam.run_callbacks
with tfds.testing.mock_data(num_examples=int(sys.argv[1])), \
        mock.patch.object(data, "host_reachable", lambda *args, **kwargs: True), \
        mock.patch.object(train_cam, "run_callbacks",
                          callbacks_then_kill if KILL_AT_EPOCH else run_callbacks):
    train_cam.main(sys.argv[2:])
