"""Constants at the top of a script, overridable from the command line, saved as JSON.

Each script keeps its tunables as UPPER_CASE module constants with a trailing comment.
`resolve` reads them back from the script's source (so `--help` can show the comments),
applies a preset file and `--NAME=value` overrides, checking each against the default's
type, and returns a plain dict. No `exec`: an override is parsed, never run.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from camlab.errors import CamError

PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"
# A tunable is an UPPER_CASE assignment with a trailing comment; other constants have none.
_CONSTANT_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=\s*(.+?)\s+#\s*(.*)$")


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
