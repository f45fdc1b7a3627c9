"""Run folders: what train_cam.py leaves in outputs/<run>/ and how the other scripts read it.

Every file is written atomically (a reader sees the old file or the complete new one), and
weights carry the identity of the run that made them, so that a config.json from another
training cannot silently describe them. A result file records what it was made with: the
library versions and the machine.

Keras is imported by the functions that need it, so that what reads and writes plain files
(camlab.report.results, camlab.report.plots) runs without TensorFlow.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from camlab.errors import CamError

if TYPE_CHECKING:
    import keras

IDENTITY_KEYS = ("BACKBONE", "IMAGE_SIZE", "class_names")  # what weights must agree with
_IDENTITY_ATTR = "cam_identity"
# Models are one flat graph since this layout; weights saved from the earlier nested
# models (backbone as one layer) cannot be loaded into them.
MODEL_LAYOUT = "flat"
CPUINFO = Path("/proc/cpuinfo")


def library_versions() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced bit for bit."""
    import keras
    import matplotlib
    import tensorflow as tf
    import tensorflow_datasets as tfds

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_datasets": tfds.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
    }


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name and widest vector unit ("AMD EPYC, AVX-512"), from
    /proc/cpuinfo where it exists. A virtual machine may name only the vendor's line: two
    "AMD EPYC" machines of this workplace ran the demo's training 3.6x apart, one with
    AVX-512 and one without, so the vector unit is part of the name."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:  # not Linux: platform's answer
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), platform.machine())
    flags = next((set(line.split(":", 1)[1].split()) for line in lines
                  if line.startswith("flags")), set())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else ""
    return f"{name}, {vector}" if vector else name


def this_machine() -> dict[str, Any]:
    """CPU model, cores, memory (GiB, None where /proc/meminfo is absent) and OS of the
    machine running this: a result file's record of where it was made."""
    memory = None
    with contextlib.suppress(OSError):  # not Linux: no memory figure
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 2**20, 1)
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": memory,
            "system": platform.platform()}


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` only on success.

    A reader therefore sees the old file or the complete new one, never a truncated one.
    `suffix` keeps an extension that a writer insists on (Keras wants `.weights.h5`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; results are not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomically(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8) through atomic_path, saying nothing."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes `data` as indented JSON, atomically, and says so."""
    write_atomically(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
    print(f"saved {path}")


def read_history(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """history.csv as {column: (epochs,) float64}, rows in epoch order; {} without rows.
    A column some row leaves empty is left out."""
    with Path(path).open(newline="") as rows:
        table = [{key: float(value) for key, value in row.items() if value != ""}
                 for row in csv.DictReader(rows)]
    table.sort(key=lambda row: row["epoch"])
    columns = [key for key in (table[0] if table else {}) if all(key in r for r in table)]
    return {key: np.array([row[key] for row in table]) for key in columns}


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Reads a run's config.json, with a clear CamError when it is missing or broken."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CamError(f"{path} not found: train first with `python train_cam.py` "
                       f"(RUN_NAME must match) or pick an existing run folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CamError(f"{path} is not valid JSON ({error}); re-run train_cam.py") from None


def run_identity(run_config: dict) -> str:
    """The part of a run's configuration its weights depend on, as canonical JSON."""
    return json.dumps({**{key: run_config[key] for key in IDENTITY_KEYS},
                       "layout": MODEL_LAYOUT}, sort_keys=True)


def inference_copy(model: keras.Model) -> keras.Model:
    """The same graph and weights in float32, without optimizer state: what model.keras holds.

    Cloned layer by layer from the model's own configuration, so a backbone whose
    structure depends on how it was started (EfficientNet adds a rescaling for its
    ImageNet weights) is saved exactly as trained.
    """
    import keras

    def in_float32(layer):
        config = layer.get_config()
        if "dtype" in config and isinstance(layer, keras.layers.Layer):  # ops carry none
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=in_float32)
    copy.set_weights(model.get_weights())
    return copy


def save_trained(model: keras.Model, run_dir: Path, run_config: dict) -> None:
    """Writes a run's kept model: weights.weights.h5, stamped with the run's identity (see
    load_trained_model), and model.keras, which plain Keras loads without this project."""
    with atomic_path(run_dir / "weights.weights.h5", suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as weights_file:
            weights_file.attrs[_IDENTITY_ATTR] = run_identity(run_config)
    with atomic_path(run_dir / "model.keras") as tmp:
        inference_copy(model).save(tmp)


def load_trained_model(run_dir: Path, run_config: dict) -> keras.Model:
    """A run's kept model, from its model.keras, after checking the weights' stamp.

    The weights carry the backbone, image size and class names they were trained with;
    a config.json that says otherwise is refused. Nothing is downloaded: every weight
    comes from the run. Runs saved before models were flat have no model.keras and get
    a message saying they must be trained again.
    """
    path = Path(run_dir) / "weights.weights.h5"
    if not path.is_file():
        raise CamError(f"{path} not found: the run has not finished an epoch yet; "
                       "train it with `python train_cam.py` first")
    try:
        with h5py.File(path, "r") as weights_file:
            stamped = weights_file.attrs.get(_IDENTITY_ATTR)
    except OSError:
        raise CamError(f"{path} is damaged or truncated (not a readable HDF5 file); "
                       "re-train the run") from None
    trained = json.loads(stamped) if stamped else {}
    if trained and "layout" not in trained:
        raise CamError(f"{run_dir} was trained by an earlier version of this project, whose "
                       "models nested the backbone as one layer; today's flat models cannot "
                       "load its weights: train it again with `python train_cam.py`")
    if stamped != run_identity(run_config):
        differences = ", ".join(
            f"{key} {trained.get(key, '?')!r} in the weights, {run_config[key]!r} in config.json"
            for key in IDENTITY_KEYS if trained.get(key) != run_config[key])
        raise CamError(f"{path} does not fit the model described by config.json "
                       f"({differences}); re-train the run or restore its config.json")
    saved = Path(run_dir) / "model.keras"
    if not saved.is_file():
        raise CamError(f"{saved} not found beside its weights; re-train the run")
    import keras

    try:
        return keras.models.load_model(saved, compile=False)
    except (ValueError, OSError) as error:
        raise CamError(f"{saved} could not be loaded ({' '.join(str(error).split())}); "
                       "re-train the run") from None
