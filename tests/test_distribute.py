"""Training under MirroredStrategy on two logical CPU devices matches one device."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import train_cam
from cam_config import CamError

SCRIPT = Path(__file__).with_name("one_training_step.py")


def one_step(tmp_path, devices, strategy):
    out = tmp_path / f"{devices}_{strategy}.npz"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, str(SCRIPT), str(devices), strategy, str(out)], check=True,
                   env=env, timeout=300)
    return np.load(out)


def test_mirrored_over_two_devices_equals_one_device(tmp_path):
    single = one_step(tmp_path, 1, "default")
    mirrored = one_step(tmp_path, 2, "mirrored")
    assert int(single["replicas"]) == 1 and int(mirrored["replicas"]) == 2
    assert float(mirrored["loss"]) == pytest.approx(float(single["loss"]), rel=1e-5)
    names = [key for key in single.files if key.startswith("w")]
    assert len(names) > 30
    for name in names:
        np.testing.assert_allclose(mirrored[name], single[name], rtol=1e-4, atol=1e-6)
    # The step really moved the weights, so agreeing is not agreeing on the start.
    np.testing.assert_array_equal(single["initial"], mirrored["initial"])
    assert np.abs(single["w0"] - single["initial"]).max() > 1e-4


def test_unknown_strategy_is_rejected():
    with pytest.raises(CamError, match="STRATEGY='tpu'; choose one of auto, default, mirrored"):
        train_cam.distribution_strategy("tpu")
