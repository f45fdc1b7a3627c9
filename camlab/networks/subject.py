"""What visualize_cam.py and evaluate_cam.py explain: a run of train_cam.py (RUN_NAME), or
a saved Keras classifier of the user's own (MODEL), and where the results go.

Both come back the same way: a `classifier.Classifier`, a description with the keys the
scripts read from a run's config.json (DATASET, DATA_DIR, the split names, SEED,
IMAGE_SIZE, class_names), and the results folder.
"""

from __future__ import annotations

import re
import runpy
import zipfile
from pathlib import Path
from typing import Any

import keras

from camlab.core import runs
from camlab.datasets import folders
from camlab.errors import CamError, check_choice
from camlab.networks import classifier

DEFAULT_RUN = "imagenette"  # RUN_NAME "" without MODEL: train_cam.py's default run
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
# Settings that describe a MODEL file; a run of train_cam.py has them in its config.json.
MODEL_SETTINGS = ("MODEL", "DATASET", "DATA_DIR", "IMAGE_SIZE", "CLASS_NAMES", "PREPROCESS",
                  "OUTPUT", "CUSTOM_CODE")
MODEL_ONLY = {"CLASS_NAMES": "", "PREPROCESS": "none", "OUTPUT": "",
              "CUSTOM_CODE": ""}


def open_subject(config: dict[str, Any]) -> tuple[classifier.Classifier, dict[str, Any],
                                                  Path]:
    """(the classifier, its description, the results folder) of MODEL or RUN_NAME."""
    if not config["MODEL"]:
        return _trained_run(config)
    check_choice("PREPROCESS", config["PREPROCESS"], classifier.PREPROCESSING)
    path = Path(config["MODEL"]).expanduser()
    model = load_model_file(path, config["CUSTOM_CODE"])
    explained = classifier.explain(model, config["IMAGE_SIZE"], config["PREPROCESS"],
                                   config["OUTPUT"])
    height, width = explained.model.input.shape[1:3]
    if height != width:
        raise CamError(f"MODEL takes {height}x{width} images; the scripts feed square ones")
    description = {"DATASET": config["DATASET"], "DATA_DIR": config["DATA_DIR"],
                   "TRAIN_SPLIT": "train", "VALIDATION_SPLIT": "validation",
                   "VALIDATION_FRACTION": folder_fraction(config["DATASET"]), "SEED": 0,
                   "IMAGE_SIZE": explained.image_size, "MODEL": str(path)}
    description["class_names"] = class_names(config, description, explained.num_classes)
    print(f"{path.name}: {explained.num_classes} classes at {explained.image_size} px; "
          f"gradients of the {explained.score}s of output {explained.output_name!r}")
    return explained, description, Path(config["OUTPUT_DIR"]) / (config["RUN_NAME"]
                                                                 or path.stem)


def folder_fraction(dataset: str, fraction: float = 0.2) -> float:
    """The share of a folder without split folders that is MODEL's "validation" split:
    train_cam.py's default 0.2, or one image of a folder too small for that (printed)."""
    fitted, total = folders.fitting_fraction(dataset, ("train", "validation"), fraction)
    if fitted != fraction:
        print(f"{dataset}: {fraction:g} of its {total} images is none, so its validation "
              f"split is 1 image (VALIDATION_FRACTION {fitted:.3g}) and train the rest")
    return fitted


def _trained_run(config: dict[str, Any]):
    for name, default in MODEL_ONLY.items():
        if config[name] != default:
            raise CamError(f"{name} applies to a MODEL file only; a run of train_cam.py "
                           f"(RUN_NAME) has it in its config.json: set MODEL or leave {name} "
                           f"as {default!r}")
    run_dir = Path(config["OUTPUT_DIR"]) / (config["RUN_NAME"] or DEFAULT_RUN)
    trained = runs.read_run_config(run_dir)
    if config["DATASET"] not in ("", trained["DATASET"]):
        raise CamError(f"DATASET={config['DATASET']!r}, but run {run_dir.name!r} was trained "
                       f"on {trained['DATASET']!r}: a run is explained on its own dataset; "
                       "leave DATASET as \"\"")
    model = runs.load_trained_model(run_dir, trained)
    return classifier.explain(model, trained["IMAGE_SIZE"]), trained, run_dir


def load_model_file(path: Path, custom_code: str = "") -> keras.Model:
    """The full Keras model saved at `path` (.keras, or a legacy .h5 full model). Every way
    the file can be wrong is one CamError saying what to do. CUSTOM_CODE is a Python file
    run first, whose classes are offered to Keras for custom layers."""
    if not path.is_file():
        raise CamError(f"MODEL file {str(path)!r} not found")
    if path.name.endswith(".weights.h5"):
        raise CamError(f"MODEL={str(path)!r} holds weights only; save the whole model with "
                       "model.save('name.keras') and pass that file")
    if path.suffix not in MODEL_SUFFIXES:
        raise CamError(f"MODEL={str(path)!r} is not a Keras model file: give a .keras file "
                       "(model.save('name.keras')) or a full-model .h5")
    custom = custom_objects(custom_code)
    try:
        return keras.models.load_model(path, custom_objects=custom, compile=False)
    except (TypeError, ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise CamError(load_error_message(path, error)) from None


def custom_objects(custom_code: str) -> dict[str, Any]:
    """The classes CUSTOM_CODE defines, by name ({} for none); running it also registers
    those decorated with @keras.saving.register_keras_serializable()."""
    if not custom_code:
        return {}
    path = Path(custom_code).expanduser()
    if not path.is_file() or path.suffix != ".py":
        raise CamError(f"CUSTOM_CODE={custom_code!r} is not a Python file: give the .py file "
                       "that defines the model's custom layers")
    namespace = runpy.run_path(str(path))
    return {name: value for name, value in namespace.items() if isinstance(value, type)}


def load_error_message(path: Path, error: Exception) -> str:
    """One line for a model file Keras could not load."""
    text = " ".join(str(error).split())
    custom = re.search(r"(?:Could not locate class|Unknown layer:?) '?([\w.>]+)'?", text)
    if custom:
        return (f"MODEL={str(path)!r} uses the custom class {custom.group(1)!r}, which Keras "
                "cannot find: put its class in a .py file, decorated with "
                "@keras.saving.register_keras_serializable(), and pass "
                "--CUSTOM_CODE=that_file.py")
    if "No model config" in text:
        return (f"MODEL={str(path)!r} holds weights only; save the whole model with "
                "model.save('name.keras') and pass that file")
    return (f"MODEL={str(path)!r} could not be loaded as a Keras model ({text[:300]}); "
            "give a .keras file or a full-model .h5")


def class_names(config: dict[str, Any], description: dict[str, Any],
                num_classes: int) -> list[str]:
    """CLASS_NAMES (a file with one name per line, or a comma list), else the DATASET's,
    else "class 0", "class 1", ...; as many as the model has classes."""
    from camlab.datasets import data

    text, source = config["CLASS_NAMES"], "CLASS_NAMES"
    if text and Path(text).expanduser().is_file():
        lines = Path(text).expanduser().read_text(encoding="utf-8").splitlines()
        names = [line.strip() for line in lines if line.strip()]
    elif text:
        names = [name.strip() for name in text.split(",")]
    elif description["DATASET"]:
        names, source = data.class_names(data.get_run_dataset(description)), "DATASET"
    else:
        return [f"class {index}" for index in range(num_classes)]
    if len(names) != num_classes:
        raise CamError(f"{source} gives {len(names)} class names and the model has "
                       f"{num_classes} classes; they must match")
    return names
