"""Settings: the constants at the top of a script, a preset file, and the command line.

A script's settings are the UPPER_CASE assignments between its imports and the line
END_OF_SETTINGS, whatever their comments. They are read by parsing the script's source
with `ast` (no import, so `--help` answers before TensorFlow loads, and no `exec`: a value
is parsed, never run). Precedence, lowest first: the file, `presets/<PRESET>.json`, the
command line; every value a preset or a flag changes from the file is printed at start.
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import os
import sys
import tempfile
import textwrap
import tokenize
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camlab.errors import CamError

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"
END_OF_SETTINGS = "# ---- end of settings ----"  # the line that closes a script's block
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no")


class Config(dict):
    """A script's resolved settings, {NAME: value}, and `given`: the names a preset or the
    command line set. Those hold the user's choice and are checked as they are; the others
    hold the script's own value, which `adapt` fits to the model or the data where it
    cannot apply (TOP_K=3 on a two-class model)."""

    def __init__(self, values: dict[str, Any], given: Iterable[str] = ()):
        super().__init__(values)
        self.given = frozenset(given)


@dataclass(frozen=True)
class Setting:
    """One constant of a script: its value in the file, its comment, its line."""

    name: str
    default: Any
    comment: str
    line: int


def _comments(source: str) -> dict[int, str]:
    """{line number: comment text} of every comment in `source`."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {token.start[0]: token.string.lstrip("#").strip()
            for token in tokens if token.type == tokenize.COMMENT}


def _plain_value(path: Path, name: str, node: ast.expr) -> Any:
    """The literal a setting is assigned; a list becomes a tuple. CamError for anything
    that would need running (a call, a name, arithmetic)."""
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise CamError(f"{path.name} line {node.lineno}: {name} = {ast.unparse(node)} is not "
                       "a plain value; write a number, a string, True/False or a tuple "
                       "of strings") from None
    return tuple(value) if isinstance(value, list) else value


def declared_settings(script: str | os.PathLike) -> dict[str, Setting]:
    """The script's settings in source order: every UPPER_CASE assignment at module level
    above the END_OF_SETTINGS line, with the trailing comment of its last line (if any)."""
    path = Path(script)
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    end = next((i + 1 for i, line in enumerate(lines) if line.strip() == END_OF_SETTINGS), None)
    if end is None:
        raise CamError(f"{path.name} has lost its line {END_OF_SETTINGS!r}; put it back "
                       "below the last setting")
    comments = _comments(source)
    found: dict[str, Setting] = {}
    for node in ast.parse(source, filename=str(path)).body:
        if node.lineno > end:
            break
        target = node.targets[0] if isinstance(node, ast.Assign) and len(
            node.targets) == 1 else getattr(node, "target", None)
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(target, ast.Name) \
                and target.id.isupper() and node.value is not None:
            found[target.id] = Setting(target.id, _plain_value(path, target.id, node.value),
                                       comments.get(node.end_lineno, ""), node.lineno)
    return found


def parse_value(name: str, text: str, default: Any) -> Any:
    """Parses command-line `text` as a value of the default's type; CamError if it is not."""
    kind = type(default)
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in TRUE_WORDS + FALSE_WORDS:
                raise ValueError(text)
            return lowered in TRUE_WORDS
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
    raise CamError(f"--{name}={text!r}: expected {kind.__name__} like the default "
                   f"{shown(default)}")


def check_value(name: str, value: Any, default: Any, source: str) -> Any:
    """Checks a value from a preset file (already typed by JSON) against the default's type."""
    if isinstance(default, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(default, float) and type(value) is int:
        value = float(value)
    if type(value) is not type(default):
        raise CamError(f"{name}={value!r} in {source}: expected {type(default).__name__} "
                       f"like {shown(default)}")
    return value


def shown(value: Any) -> str:
    """A value as a user would write it at the top of the file: "text", 10, True, "a,b"."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple):
        return json.dumps(",".join(map(str, value)))
    return repr(value)


def usage(script: str | os.PathLike) -> str:
    """The `--help` text: the script's docstring, then every setting in aligned columns."""
    path = Path(script)
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    rows = [(f"--{s.name}", shown(s.default), s.comment)
            for s in declared_settings(path).values()]
    name_width = max(len(row[0]) for row in rows)
    value_width = min(max(len(row[1]) for row in rows), 20)
    lines = [f"usage: python {path.name} [--NAME=value | --NAME value | --FLAG] ...", "",
             docstring, "",
             "settings (edit them at the top of the file, or override them here; names are",
             "case-insensitive, a bare --FLAG sets a True/False setting to True):"]
    lines += [f"  {name:<{name_width}}  {value:<{value_width}}  {comment}".rstrip()
              for name, value, comment in rows]
    return "\n".join(lines)


def _split_arguments(argv: list[str], defaults: dict[str, Any]) -> list[tuple[str, str]]:
    """(NAME, text) pairs from `--NAME=value`, `--NAME value` and a bare boolean `--FLAG`."""
    by_lower = {name.lower(): name for name in defaults}
    pairs, index = [], 0
    while index < len(argv):
        arg = argv[index]
        if not arg.startswith("--") or len(arg) == 2:
            raise CamError(f"expected --NAME=value or --NAME value, got {arg!r}; see --help")
        written, has_value, text = arg[2:].partition("=")
        name = by_lower.get(written.lower())
        if name is None:
            guess = difflib.get_close_matches(written.upper(), list(defaults), n=1)
            hint = f"did you mean {guess[0]}? " if guess else ""
            raise CamError(f"unknown constant {written!r}; {hint}valid names: "
                           f"{', '.join(defaults)}")
        index += 1
        if not has_value:
            following = argv[index] if index < len(argv) else None
            if isinstance(defaults[name], bool):
                bool_word = following is not None and following.lower() in (
                    TRUE_WORDS + FALSE_WORDS)
                text, index = (following, index + 1) if bool_word else ("true", index)
            elif following is None or following.startswith("--"):
                raise CamError(f"--{name} needs a value: --{name}=VALUE or --{name} VALUE")
            else:
                text, index = following, index + 1
        pairs.append((name, text))
    return pairs


def resolve_with_sources(script: str | os.PathLike, argv: list[str]
                         ) -> tuple[Config, list[str]]:
    """The script's settings after the preset and the command line, and one line for each
    value they changed from the file: `EPOCHS: 2 (train_cam.py) -> 10 (presets/demo.json)`.

    Raises CamError for an unknown name, a value of the wrong type or an unknown preset.
    """
    path = Path(script)
    defaults = {name: s.default for name, s in declared_settings(path).items()}
    overrides = {name: parse_value(name, text, defaults[name])
                 for name, text in _split_arguments(argv, defaults)}
    config = dict(defaults)
    steps: dict[str, list[str]] = {}
    preset = overrides.get("PRESET", defaults.get("PRESET", ""))
    layers = [(load_preset(preset, defaults), f"presets/{preset}.json")] if preset else []
    layers.append((overrides, "command line"))
    for values, source in layers:
        for name, value in values.items():
            if value != config[name]:
                steps.setdefault(name, []).append(f"{shown(value)} ({source})")
            config[name] = value
    changes = [f"{name}: {shown(defaults[name])} ({path.name}) -> " + " -> ".join(chain)
               for name, chain in steps.items()]
    return Config(config, {name for values, _ in layers for name in values}), changes


def resolve(script: str | os.PathLike, argv: list[str] | None = None) -> Config:
    """The script's resolved settings (see resolve_with_sources); `--help` prints the
    usage and exits 0."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(usage(script))
        raise SystemExit(0)
    return resolve_with_sources(script, argv)[0]


def adapt(config: dict[str, Any], name: str, value: Any, reason: str) -> None:
    """Sets `name` to `value`, the nearest the model or the data allows, and prints the
    change and its reason, unless the user set `name` (Config.given: a preset or the
    command line): that value is kept for the script's own check to accept or refuse.
    A plain dict counts as all given: nothing adapts."""
    if config[name] == value or name in getattr(config, "given", config):
        return
    print(f"{name}: {shown(config[name])} -> {shown(value)}, as {reason} ({name} given on "
          "the command line or in a preset is used as given)")
    config[name] = value


def load_preset(name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """Reads `presets/<name>.json`, keeping the entries this script knows, type-checked."""
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.json"))
        raise CamError(f"unknown preset {name!r}; available: {', '.join(known) or 'none'}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CamError(f"presets/{name}.json is not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise CamError(f"presets/{name}.json must hold one JSON object of settings")
    return {k: check_value(k, v, defaults[k], f"presets/{name}.json")
            for k, v in values.items() if k in defaults}


def _exit_on_error(script: str | os.PathLike, error: CamError) -> SystemExit:
    return SystemExit(f"{Path(script).name}: error: {error}")


def before_tensorflow(script: str | os.PathLike, argv: list[str] | None = None) -> None:
    """What a script does before it imports TensorFlow: answers `--help`, stops on a bad
    setting at once (TensorFlow takes seconds to load), and, unless the script's
    TENSORFLOW_LOG setting is True, imports TensorFlow without its C++ log lines.

    TF_CPP_MIN_LOG_LEVEL 3 hides the C++ info, warning and error lines TensorFlow logs
    once running (on a machine without a GPU one of them is "failed call to cuInit");
    Python exceptions still show. A value already set in the environment is kept.
    """
    try:
        config = resolve(script, argv)
    except CamError as error:
        raise _exit_on_error(script, error) from None
    if not config.get("TENSORFLOW_LOG", False):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import_tensorflow_quietly()


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow with the process's standard error (file descriptor 2) captured.

    Its native libraries log start-up lines (oneDNN, "Could not find cuda drivers")
    through absl before absl is initialised, which ignores TF_CPP_MIN_LOG_LEVEL; only
    the descriptor can hold them back. If the import fails, the lines are written out.
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        try:
            os.dup2(captured.fileno(), 2)
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)  # the real stderr again, for the lines and the traceback
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def command(script: str | os.PathLike, config: dict[str, Any], names: tuple[str, ...]) -> str:
    """The command line that runs `script` with config's PRESET and its values of `names`,
    naming only what the script's file and that preset would not already give."""
    flags = [f"--PRESET={config['PRESET']}"] if config.get("PRESET") else []
    defaults = resolve(script, flags)
    flags += [f"--{name}={config[name]}" for name in names if defaults[name] != config[name]]
    return " ".join(["python", Path(script).name, *flags])


def run_script(script: str | os.PathLike, run: Callable[[dict[str, Any]], Any],
               argv: list[str] | None = None) -> Any:
    """A script's main(): resolves its settings, prints what the preset and the command line
    changed and the resolved configuration, and runs it. A CamError becomes one line on
    stderr and exit code 1, never a traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if any(arg in ("-h", "--help") for arg in argv):
            resolve(script, argv)
        config, changes = resolve_with_sources(script, argv)
        for change in changes:
            print(change)
        print(textwrap.fill("configuration: " + ", ".join(
            f"{k}={shown(v)}" for k, v in config.items()), width=100, break_long_words=False,
            break_on_hyphens=False, subsequent_indent="  "))
        return run(config)
    except CamError as error:
        raise _exit_on_error(script, error) from None
