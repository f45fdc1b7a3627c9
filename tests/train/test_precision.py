"""camlab.train.precision: what MIXED_PRECISION="auto" picks, the timing it decides by, its cache.

Timings are faked (the fake_timing fixture) except where the real timing is the point:
that it leaves the random states and the dtype policy alone. The choice as train_cam.py
records it in config.json is tested in test_train_cam.py.
"""

from __future__ import annotations

import json
import random

import keras
import numpy as np
import pytest
import tensorflow as tf

from camlab.errors import CamError
from camlab.train import precision

# The defaults of train_cam.py: VGG19 at 320 px, batch 16, imagenette's 10 classes.
RUN = ("vgg19", 320, 10, 16)


def expected_key(backbone="vgg19", image_size=320, batch_size=16, cpu="Test CPU 9000"):
    return (f"{cpu} | {precision.usable_cores()} cores | {backbone} | {image_size} px | "
            f"batch {batch_size} | tensorflow {tf.__version__} | keras {keras.__version__}")


def test_a_policy_set_by_hand_is_taken_as_it_is_and_a_wrong_one_refused(bfloat16_cpu,
                                                                         fake_timing):
    calls = fake_timing(float32=10.0, mixed_bfloat16=20.0)
    for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert precision.precision_choice(policy, *RUN) == {
            "policy": policy, "decided_by": "MIXED_PRECISION"}
    with pytest.raises(CamError, match="MIXED_PRECISION='half'; choose one of auto, float32"):
        precision.precision_choice("half", *RUN)
    assert calls == [] and not bfloat16_cpu.exists()


def test_on_a_gpu_auto_takes_mixed_float16_untimed(bfloat16_cpu, fake_timing, monkeypatch):
    calls = fake_timing(float32=10.0, mixed_bfloat16=20.0)
    monkeypatch.setattr(precision.tf.config, "list_physical_devices",
                        lambda kind=None: ["GPU:0"] if kind == "GPU" else [])
    assert precision.precision_choice("auto", *RUN) == {"policy": "mixed_float16",
                                                        "decided_by": "GPU"}
    assert calls == [] and not bfloat16_cpu.exists()


def test_without_bfloat16_units_auto_takes_float32_untimed(bfloat16_cpu, fake_timing,
                                                          monkeypatch):
    calls = fake_timing(float32=10.0, mixed_bfloat16=20.0)
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: False)
    assert precision.precision_choice("auto", *RUN) == {"policy": "float32",
                                                        "decided_by": "no bfloat16 units"}
    assert calls == [] and not bfloat16_cpu.exists()


@pytest.mark.parametrize("bfloat16_speed, expected", [
    (9.2, "float32"),  # the Xeon of issue #13: bfloat16 at 0.92x
    (10.5, "float32"),  # faster, but by less than MIN_SPEEDUP: within timing noise
    (12.0, "mixed_bfloat16"),
    (48.0, "mixed_bfloat16"),  # AMX: 4.8x
])
def test_auto_takes_bfloat16_only_where_it_trains_clearly_faster(bfloat16_cpu, fake_timing,
                                                                bfloat16_speed, expected):
    calls = fake_timing(float32=10.0, mixed_bfloat16=bfloat16_speed)
    choice = precision.precision_choice("auto", *RUN)
    assert choice == {"policy": expected, "decided_by": "measurement",
                      "float32_images_per_s": 10.0, "mixed_bfloat16_images_per_s": bfloat16_speed,
                      "from_cache": False, "cache_file": str(bfloat16_cpu),
                      "cache_key": expected_key()}
    assert calls == [("float32", *RUN), ("mixed_bfloat16", *RUN)]


def test_timings_are_cached_per_cpu_model_and_setting(bfloat16_cpu, fake_timing, monkeypatch):
    calls = fake_timing(float32=10.0, mixed_bfloat16=20.0)
    first = precision.precision_choice("auto", *RUN)
    saved = json.loads(bfloat16_cpu.read_text())
    assert saved["version"] == precision.CACHE_VERSION
    assert list(saved["measurements"]) == [expected_key()]
    entry = saved["measurements"][expected_key()]
    assert entry["images_per_s"] == {"float32": 10.0, "mixed_bfloat16": 20.0}
    assert entry["steps"] == precision.PROBE_STEPS and entry["load_average"] >= 0

    fake_timing(float32=30.0, mixed_bfloat16=20.0)  # a new timing would now pick float32
    again = precision.precision_choice("auto", *RUN)
    assert len(calls) == 2  # nothing timed: the cache answered
    assert again == {**first, "from_cache": True}
    assert again["policy"] == "mixed_bfloat16"
    # Classes change only the 512 x classes head, so they share the entry.
    assert precision.precision_choice("auto", "vgg19", 320, 5, 16)["from_cache"]
    assert len(calls) == 2

    # Another backbone, image size, batch size or CPU model is timed anew.
    for run, cpu in [(("small_vgg", 320, 10, 16), "Test CPU 9000"),
                     (("vgg19", 128, 10, 16), "Test CPU 9000"),
                     (("vgg19", 320, 10, 8), "Test CPU 9000"), (RUN, "Other CPU")]:
        monkeypatch.setattr(precision, "cpu_model", lambda cpu=cpu: cpu)
        choice = precision.precision_choice("auto", *run)
        assert (choice["policy"], choice["from_cache"]) == ("float32", False)
        assert calls[-2:] == [("float32", *run), ("mixed_bfloat16", *run)]
    assert len(calls) == 10
    assert len(json.loads(bfloat16_cpu.read_text())["measurements"]) == 5


@pytest.mark.parametrize("content", [
    b"{not json", b"[]", b"null", b"\xff\xfe\x00", b'{"version": 0, "measurements": {}}',
    b'{"version": 1, "measurements": []}'])
def test_a_broken_cache_file_is_ignored_and_rewritten(bfloat16_cpu, fake_timing, capsys,
                                                     content):
    bfloat16_cpu.parent.mkdir(parents=True)
    bfloat16_cpu.write_bytes(content)
    calls = fake_timing(float32=10.0, mixed_bfloat16=20.0)
    choice = precision.precision_choice("auto", *RUN)
    assert (choice["policy"], choice["from_cache"], len(calls)) == ("mixed_bfloat16", False, 2)
    assert f"ignoring the precision cache {bfloat16_cpu}" in capsys.readouterr().out
    saved = json.loads(bfloat16_cpu.read_text())
    assert saved["measurements"][expected_key()]["images_per_s"] == {
        "float32": 10.0, "mixed_bfloat16": 20.0}
    assert precision.precision_choice("auto", *RUN)["from_cache"] and len(calls) == 2


@pytest.mark.parametrize("entry", [
    "fast", {"images_per_s": {"float32": 10.0}},
    {"images_per_s": {"float32": "fast", "mixed_bfloat16": 20.0}},
    {"images_per_s": {"float32": 0, "mixed_bfloat16": 20.0}}])
def test_a_broken_cache_entry_is_timed_again_and_the_others_kept(bfloat16_cpu, fake_timing,
                                                                 entry):
    other = {"images_per_s": {"float32": 1.0, "mixed_bfloat16": 3.0}}
    bfloat16_cpu.parent.mkdir(parents=True)
    bfloat16_cpu.write_text(json.dumps({"version": 1, "measurements": {
        expected_key(): entry, "another machine": other}}))
    calls = fake_timing(float32=10.0, mixed_bfloat16=8.0)
    assert precision.precision_choice("auto", *RUN)["policy"] == "float32"
    assert len(calls) == 2
    saved = json.loads(bfloat16_cpu.read_text())["measurements"]
    assert saved["another machine"] == other
    assert saved[expected_key()]["images_per_s"] == {"float32": 10.0, "mixed_bfloat16": 8.0}


def test_a_cache_that_cannot_be_written_is_reported_and_the_choice_still_made(
        tmp_path, bfloat16_cpu, fake_timing, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a_file"))  # no folder can go there
    calls = fake_timing(float32=10.0, mixed_bfloat16=20.0)
    assert precision.precision_choice("auto", *RUN)["policy"] == "mixed_bfloat16"
    assert "could not save the precision cache" in capsys.readouterr().out
    assert len(calls) == 2


def test_the_cache_file_is_under_xdg_cache_home_else_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert precision.cache_file() == tmp_path / "xdg" / "cam_lab" / "precision.json"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    in_home = tmp_path / "home" / ".cache" / "cam_lab" / "precision.json"
    for unset in ("", "relative/path"):  # the XDG spec ignores a relative path
        monkeypatch.setenv("XDG_CACHE_HOME", unset)
        assert precision.cache_file() == in_home


@pytest.mark.parametrize("flags, expected", [
    ("fpu avx2 avx512f avx512_bf16 avx512_vnni", True),  # Zen 4, Cooper Lake
    ("fpu avx2 avx512f amx_bf16 amx_tile", True),  # Sapphire Rapids lists both, AMX here
    ("fpu avx2 avx512f avx512_vnni", False)])
def test_bfloat16_units_and_model_name_come_from_cpuinfo(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: {flags}\n\n"
                       f"processor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: {flags}\n")
    assert precision.cpu_has_bfloat16(cpuinfo) is expected
    assert precision.cpu_model(cpuinfo) == "AMD EPYC 9R14, AVX-512"
    assert precision.cpu_has_bfloat16(tmp_path / "missing") is False


def test_the_cpu_name_says_whether_it_has_avx512(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx avx2 fma\n")
    assert precision.cpu_model(cpuinfo) == "AMD EPYC, AVX2"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse2\n")
    assert precision.cpu_model(cpuinfo) == "Old CPU"


@pytest.mark.parametrize("speeds, expected", [
    ({"float32": 4.7, "mixed_bfloat16": 9.4}, "mixed_bfloat16"),
    ({"float32": 10.0, "mixed_bfloat16": 9.2}, "float32"),
    ({"float32": 10.0, "mixed_bfloat16": 10.9}, "float32")])
def test_faster_policy_needs_min_speedup_for_bfloat16(speeds, expected):
    assert precision.MIN_SPEEDUP == 1.1
    assert precision.faster_policy(speeds) == expected


def random_draws() -> tuple:
    """One draw from each random state a training run uses."""
    return (random.random(), np.random.rand(), tf.random.uniform([2]).numpy().tolist(),
            keras.random.uniform([2]).numpy().tolist())


def test_the_timing_trains_in_its_policy_and_leaves_random_states_and_policy_alone(
        monkeypatch):
    """So a seeded run trains the same bits whether or not "auto" timed anything."""
    built, build_model = [], precision.models.build_model

    def recorded_build(*args):
        built.append((args, keras.mixed_precision.global_policy().name))
        return build_model(*args)

    monkeypatch.setattr(precision.models, "build_model", recorded_build)
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        keras.utils.set_random_seed(7)
        untouched = random_draws()
        keras.utils.set_random_seed(7)
        speed = precision.training_throughput("mixed_bfloat16", "small_vgg", 16, 3, 2, steps=1)
        assert built == [(("small_vgg", 16, 3), "mixed_bfloat16")]
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        assert random_draws() == untouched
        assert 0 < speed < float("inf")
    finally:
        keras.mixed_precision.set_global_policy("float32")
