"""Runs train_cam.py as one worker of a cluster (TF_CONFIG comes from the environment) and
saves the weights the worker started and ended with, so that a test can compare workers.

usage: python train_as_worker.py WEIGHTS.npz [--NAME=value ...]
WEIGHTS.npz holds initial0, initial1, ... and final0, final1, ... (model.get_weights order);
it is written outside the run folder, which only the chief may write.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from camlab.core import settings  # noqa: E402

settings.before_tensorflow(ROOT / "train_cam.py", sys.argv[2:])  # as `python train_cam.py`

import keras  # noqa: E402
import numpy as np  # noqa: E402

import train_cam  # noqa: E402

out, fit = sys.argv[1], keras.Model.fit


def fit_and_record(model, *args, **kwargs):
    initial = model.get_weights()
    history = fit(model, *args, **kwargs)
    np.savez(out, **{f"initial{i}": w for i, w in enumerate(initial)},
             **{f"final{i}": w for i, w in enumerate(model.get_weights())})
    return history


keras.Model.fit = fit_and_record
train_cam.main(sys.argv[2:])
