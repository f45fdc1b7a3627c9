"""camlab.precision: the policy MIXED_PRECISION resolves to."""

from __future__ import annotations

import pytest

from camlab import precision
from camlab.errors import CamError


@pytest.mark.parametrize("gpus, bf16, expected", [
    (["GPU:0"], True, "mixed_float16"), ([], True, "mixed_bfloat16"), ([], False, "float32")])
def test_auto_precision_follows_the_hardware(monkeypatch, gpus, bf16, expected):
    monkeypatch.setattr(precision.tf.config, "list_physical_devices",
                        lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: bf16)
    assert precision.precision_policy("auto") == expected
    assert precision.precision_policy("float32") == "float32"
    with pytest.raises(CamError, match="MIXED_PRECISION='half'"):
        precision.precision_policy("half")
