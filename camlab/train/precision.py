"""The dtype policy a run trains in: MIXED_PRECISION, and what "auto" picks on this machine.

On a CPU the bfloat16 flags in /proc/cpuinfo do not predict speed (issue #13): with
avx512_bf16 and no AMX, mixed_bfloat16 trained VGG19 at 0.92x float32's speed on an Intel
Xeon, at 2.0x on an AMD EPYC, and at 4.8x on a CPU with AMX. So "auto" times a few
training steps of a throwaway copy of the run's model in float32 and in mixed_bfloat16 and
takes bfloat16 only when it is clearly faster. The timings are cached per CPU model, core
count, backbone, image size, batch size and library versions in
~/.cache/cam_lab/precision.json ($XDG_CACHE_HOME/cam_lab/ when that is set).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from camlab.core import runs
from camlab.core.runs import CPUINFO, cpu_model  # by name: tests fake precision.cpu_model
from camlab.errors import check_choice
from camlab.networks import models
from camlab.train import training

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
PROBE_STEPS = 3  # timed steps per policy after one warm-up; the median step is used
# "auto" takes mixed_bfloat16 only at this speed-up or more: a few steps on a busy machine
# vary by several percent, and below it float32's full precision is worth more.
MIN_SPEEDUP = 1.1
CACHE_VERSION = 1  # bumped when what a cache entry means changes; older files are rewritten


def cpu_has_bfloat16(cpuinfo: Path = CPUINFO) -> bool:
    """True when the CPU has bfloat16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = cpuinfo.read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def cache_file() -> Path:
    """$XDG_CACHE_HOME/cam_lab/precision.json, else ~/.cache/cam_lab/precision.json."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "cam_lab" / "precision.json"


def usable_cores() -> int:
    """CPU cores this process may run on (a container or taskset can allow fewer)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cache_key(backbone: str, image_size: int, batch_size: int) -> str:
    """What a measurement depends on, as one readable line (the cache file's keys).

    The core count is there because the same CPU model with fewer cores can be limited by
    memory rather than arithmetic, where bfloat16's gain differs.
    """
    return (f"{cpu_model()} | {usable_cores()} cores | {backbone} | "
            f"{image_size} px | batch {batch_size} | tensorflow {tf.__version__} | "
            f"keras {keras.__version__}")


@contextlib.contextmanager
def kept_global_state() -> Iterator[None]:
    """Restores the global dtype policy and Python's and NumPy's random states on exit.

    Building a model draws its initialisers' seeds from Python's `random`; TensorFlow's
    global seed is not used (Keras initialisers are stateless ops given those seeds).
    """
    policy = keras.mixed_precision.global_policy()
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def training_throughput(policy: str, backbone: str, image_size: int, num_classes: int,
                        batch_size: int, steps: int = PROBE_STEPS) -> float:
    """Training images/s of a throwaway copy of the run's model under `policy`.

    Random weights, one random batch of `batch_size` images (batch, size, size, 3) in
    [0, 255]; one untimed warm-up step (tracing, oneDNN's kernel choice), then the median
    of `steps` timed steps. Leaves the dtype policy and the random states as it found them.
    """
    rng = np.random.default_rng(0)  # its own generator: the global ones stay untouched
    images = tf.constant(rng.uniform(0, 255, (batch_size, image_size, image_size, 3)),
                         tf.float32)
    labels = tf.one_hot(rng.integers(0, num_classes, batch_size), num_classes)
    with kept_global_state():
        keras.mixed_precision.set_global_policy(policy)
        model = models.build_model(backbone, image_size, num_classes)
        training.compile_model(model, 1e-5)  # the run's optimiser and loss: the same step
        model.train_on_batch(images, labels)
        seconds = []
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(images, labels)  # returns the loss as a number: step done
            seconds.append(time.perf_counter() - start)
    return batch_size / float(np.median(seconds))


def read_cache(path: Path) -> dict[str, dict]:
    """The cache's measurements by key; {} for a missing file, and, with a printed line,
    for one that is not a cache of this version (it is rewritten after measuring)."""
    if not path.is_file():
        return {}
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if content["version"] != CACHE_VERSION:
            raise ValueError(f"version {content['version']}, expected {CACHE_VERSION}")
        entries = content["measurements"]
        if not isinstance(entries, dict):
            raise ValueError("'measurements' is not an object")
        return entries
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"ignoring the precision cache {path} ({type(error).__name__}: {error}); "
              "timing again")
        return {}


def save_cache(path: Path, entries: dict[str, dict]) -> None:
    """Writes the cache atomically; a folder that cannot be written costs only a new
    measurement next time, so it is reported, not fatal."""
    try:
        runs.write_json(path, {"version": CACHE_VERSION, "measurements": entries})
    except OSError as error:
        print(f"could not save the precision cache {path} ({error}); the next run times again")


def cached_speeds(entry: Any) -> dict[str, float] | None:
    """{"float32": img/s, "mixed_bfloat16": img/s} from a cache entry, None if malformed."""
    try:
        speeds = {policy: float(entry["images_per_s"][policy])
                  for policy in ("float32", "mixed_bfloat16")}
    except (KeyError, TypeError, ValueError):
        return None
    return speeds if all(0 < speed < float("inf") for speed in speeds.values()) else None


def faster_policy(speeds: dict[str, float]) -> str:
    """mixed_bfloat16 when it trains at least MIN_SPEEDUP times faster than float32."""
    return ("mixed_bfloat16" if speeds["mixed_bfloat16"] >= MIN_SPEEDUP * speeds["float32"]
            else "float32")


def measured_choice(backbone: str, image_size: int, num_classes: int,
                    batch_size: int) -> dict[str, Any]:
    """"auto" on a CPU with bfloat16 units: the faster policy, timed here or cached."""
    path, key = cache_file(), cache_key(backbone, image_size, batch_size)
    entries = read_cache(path)
    speeds = cached_speeds(entries.get(key))
    from_cache = speeds is not None
    if not from_cache:
        print(f"timing float32 and mixed_bfloat16 training of {backbone} at {image_size} px, "
              f"batch {batch_size} ({PROBE_STEPS} steps each, once per CPU model and setting)")
        load = os.getloadavg()[0]
        speeds = {policy: training_throughput(policy, backbone, image_size, num_classes,
                                              batch_size)
                  for policy in ("float32", "mixed_bfloat16")}
        entries[key] = {"images_per_s": speeds, "steps": PROBE_STEPS,
                        "load_average": round(load, 2),
                        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        save_cache(path, entries)
    choice = {"policy": faster_policy(speeds), "decided_by": "measurement",
              "float32_images_per_s": speeds["float32"],
              "mixed_bfloat16_images_per_s": speeds["mixed_bfloat16"],
              "from_cache": from_cache, "cache_file": str(path), "cache_key": key}
    print(f"precision: {choice['policy']} (training here: float32 {speeds['float32']:.3g} "
          f"images/s, mixed_bfloat16 {speeds['mixed_bfloat16']:.3g} images/s, timed "
          f"{'earlier' if from_cache else 'now'}; delete {models.shown_path(path)} to time "
          "again)")
    return choice


def precision_choice(setting: str, backbone: str, image_size: int, num_classes: int,
                     batch_size: int) -> dict[str, Any]:
    """MIXED_PRECISION (`setting`) resolved for a run of this model: {"policy": a Keras
    dtype policy, "decided_by": why, and when timed both speeds in images/s, whether they
    came from the cache, the cache file and key}.

    "auto": mixed_float16 on a GPU, untimed (Keras' recommendation for GPUs with tensor
    cores; this project has no GPU to test a timed choice on); float32 on a CPU without
    bfloat16 units, untimed (its bfloat16 products would be emulated); else whichever of
    float32 and mixed_bfloat16 trains faster here (faster_policy).
    """
    if check_choice("MIXED_PRECISION", setting, PRECISIONS) != "auto":
        return {"policy": setting, "decided_by": "MIXED_PRECISION"}
    if tf.config.list_physical_devices("GPU"):
        return {"policy": "mixed_float16", "decided_by": "GPU"}
    if not cpu_has_bfloat16():
        return {"policy": "float32", "decided_by": "no bfloat16 units"}
    return measured_choice(backbone, image_size, num_classes, batch_size)
