"""What a user sees when the dataset cannot be downloaded; no test touches the network."""

from __future__ import annotations

import pytest

import cam_data
import train_cam
from conftest import QUICK_TRAINING


def test_offline_dataset_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setattr(cam_data, "host_reachable", lambda *args, **kwargs: False)
    with pytest.raises(SystemExit) as exit_info:
        train_cam.main([*QUICK_TRAINING, f"--DATA_DIR={tmp_path}", f"--OUTPUT_DIR={tmp_path}"])
    message = str(exit_info.value.code)
    assert "s3.amazonaws.com unreachable" in message
    assert "imagenette-320.tgz (341,289,752 bytes)" in message
    assert f"{tmp_path}/downloads/manual/" in message
    assert not (tmp_path / "imagenette").exists()


def test_host_probe_fails_on_a_closed_local_port():
    assert cam_data.host_reachable("127.0.0.1", port=9, timeout=1.0) is False
