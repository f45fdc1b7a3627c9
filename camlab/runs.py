"""Run folders: what train_cam.py leaves in outputs/<run>/ and how the other scripts read it.

Every file is written atomically (a reader sees the old file or the complete new one), and
weights carry the identity of the run that made them, so that a config.json from another
training cannot silently describe them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import keras

from camlab import models
from camlab.errors import CamError

IDENTITY_KEYS = ("BACKBONE", "IMAGE_SIZE", "class_names")  # what weights must agree with
_IDENTITY_ATTR = "cam_identity"


def library_versions() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced bit for bit."""
    import matplotlib
    import numpy as np
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


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes `data` as indented JSON, atomically, and says so."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"saved {path}")


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
    return json.dumps({key: run_config[key] for key in IDENTITY_KEYS}, sort_keys=True)


def save_weights(model: keras.Model, path: Path, run_config: dict) -> None:
    """Saves weights atomically, stamped with the run's identity (see load_trained_model)."""
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
        with h5py.File(tmp, "a") as weights_file:
            weights_file.attrs[_IDENTITY_ATTR] = run_identity(run_config)


def load_trained_model(run_dir: Path, run_config: dict) -> keras.Model:
    """Rebuilds a run's model from its config.json and loads its weights.

    The backbone is built without downloading anything: every weight comes from the run.
    The weights carry the backbone, image size and class names they were trained with;
    a config.json that says otherwise is refused, since VGG19's weights would load
    silently at any image size.
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
    if stamped != run_identity(run_config):
        trained = json.loads(stamped) if stamped else {}
        differences = ", ".join(
            f"{key} {trained.get(key, '?')!r} in the weights, {run_config[key]!r} in config.json"
            for key in IDENTITY_KEYS if trained.get(key) != run_config[key])
        raise CamError(f"{path} does not fit the model described by config.json "
                       f"({differences}); re-train the run or restore its config.json")
    model = models.build_model(run_config["BACKBONE"], run_config["IMAGE_SIZE"],
                               len(run_config["class_names"]))
    try:
        model.load_weights(path)
    except (ValueError, OSError) as error:
        raise CamError(f"{path} does not fit the model described by config.json "
                       f"({error}); re-train the run") from None
    return model
