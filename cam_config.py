"""Constants at the top of a script, overridable from the command line, saved as JSON.

Each script keeps its tunables as UPPER_CASE module constants with a trailing comment.
`resolve` reads them back from the script's source (so `--help` can show the comments),
applies a preset file and `--NAME=value` overrides, checking each against the default's
type, and returns a plain dict. No `exec`: an override is parsed, never run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

PRESETS_DIR = Path(__file__).parent / "presets"
# A tunable is an UPPER_CASE assignment with a trailing comment; other constants have none.
_CONSTANT_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=\s*(.+?)\s+#\s*(.*)$")


class CamError(Exception):
    """A problem the user can fix; scripts print its message without a traceback."""


def declared_constants(module: ModuleType) -> dict[str, tuple[Any, str]]:
    """Returns {NAME: (default, comment)} for the module's tunables, in source order."""
    source = Path(module.__file__).read_text(encoding="utf-8")
    constants = {}
    for line in source.splitlines():
        match = _CONSTANT_LINE.match(line)
        if match and hasattr(module, match.group(1)):
            name = match.group(1)
            constants[name] = (getattr(module, name), match.group(3))
    return constants


def parse_value(name: str, text: str, default: Any) -> Any:
    """Parses `text` as a value of the default's type; raises CamError when it is not one."""
    kind = type(default)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return lowered in ("true", "1")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is tuple:
            return tuple(part.strip() for part in text.split(",") if part.strip())
        if kind is str:
            return text
    except ValueError:
        pass
    raise CamError(f"--{name}={text!r}: expected {kind.__name__} like the default {default!r}")


def check_value(name: str, value: Any, default: Any) -> Any:
    """Checks a value from a preset file (already typed by JSON) against the default's type."""
    if isinstance(default, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(default, float) and type(value) is int:
        value = float(value)
    if type(value) is not type(default):
        raise CamError(f"{name}={value!r}: expected {type(default).__name__} like {default!r}")
    return value


def usage(module: ModuleType) -> str:
    """The `--help` text: every constant with its default and comment."""
    lines = [f"usage: python {Path(module.__file__).name} [--NAME=value ...]", ""]
    if module.__doc__:
        lines += [module.__doc__.strip(), ""]
    lines.append("constants (edit them at the top of the file or override them):")
    for name, (default, comment) in declared_constants(module).items():
        lines.append(f"  --{name}={default!r:<24} {comment}")
    return "\n".join(lines)


def resolve(module: ModuleType, argv: list[str] | None = None) -> dict[str, Any]:
    """Returns the script's constants after the preset (`--PRESET=name`) and overrides.

    Precedence, lowest first: the constants in the file, `presets/<PRESET>.json`, then the
    command line. Raises CamError for an unknown name or a value of the wrong type.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(usage(module))
        raise SystemExit(0)
    constants = declared_constants(module)
    defaults = {name: default for name, (default, _) in constants.items()}
    overrides = {}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise CamError(f"expected --NAME=value, got {arg!r}; see --help")
        name, text = arg[2:].split("=", 1)
        if name not in defaults:
            raise CamError(f"unknown constant {name!r}; valid names: {', '.join(defaults)}")
        overrides[name] = parse_value(name, text, defaults[name])
    config = dict(defaults)
    preset = overrides.get("PRESET", defaults.get("PRESET", ""))
    if preset:
        config.update(load_preset(preset, defaults))
    config.update(overrides)
    return config


def run_script(module: ModuleType, run: Callable[[dict[str, Any]], Any],
               argv: list[str] | None = None) -> Any:
    """A script's main(): resolves its constants and runs it; a CamError becomes a one-line
    message on stderr and exit code 1, never a traceback."""
    try:
        return run(resolve(module, argv))
    except CamError as error:
        raise SystemExit(f"{Path(module.__file__).name}: error: {error}") from None


def load_preset(name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """Reads `presets/<name>.json`, keeping the entries this script knows, type-checked."""
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.json"))
        raise CamError(f"unknown preset {name!r}; available: {', '.join(known) or 'none'}")
    values = json.loads(path.read_text(encoding="utf-8"))
    return {k: check_value(k, v, defaults[k]) for k, v in values.items() if k in defaults}


def library_versions() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced bit for bit."""
    import keras
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
