"""The package's shape: a folder per layer, each module importing only its own layer and the
layers before it, no import circle; and the licence, stated once per place a reader or a tool
looks for it: LICENSE, the package metadata (pyproject.toml) and the citation file
(CITATION.cff)."""

from __future__ import annotations

import ast
import hashlib
import re
import tomllib
from pathlib import Path

import yaml

import camlab

ROOT = Path(__file__).resolve().parents[1]
COPYRIGHT = "Copyright 2026 The CAM lab authors"
# sha256 of the Apache License 2.0 as the Apache Software Foundation publishes it
# (LICENSE-2.0.txt, 202 lines, appendix included).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
# camlab's layers, lowest first: errors.py, the folders, then api.py, which uses them all
LAYERS = ("errors", "core", "datasets", "networks", "train", "maps", "scores", "evaluate",
          "report", "api")


def module_names() -> list[str]:
    """Every module of camlab as Python names it (camlab.maps.methods), __init__s left out."""
    return sorted(path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
                  for path in (ROOT / "camlab").rglob("*.py") if path.stem != "__init__")


def imports(module: str) -> set[str]:
    """The camlab modules `module` imports, at its top or inside a function."""
    known = set(module_names())
    found = set()
    for node in ast.walk(ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("camlab.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("camlab"):
            inside = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= (inside & known) or {node.module}  # modules of a package, or the module
    return found


def layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def test_each_module_imports_only_its_layer_and_the_layers_before_it():
    wrong = [f"{module} imports {other}" for module in module_names()
             for other in imports(module) if layer(other) > layer(module)]
    assert wrong == [] and len(module_names()) > 30


def test_no_module_imports_itself_through_others():
    """No import circle, counting the imports made inside functions."""
    graph = {module: imports(module) & set(module_names()) for module in module_names()}
    done, path = set(), []

    def visit(module):
        assert module not in path, " -> ".join([*path[path.index(module):], module])
        if module not in done:
            path.append(module)
            for other in sorted(graph[module]):
                visit(other)
            done.add(path.pop())

    for module in graph:
        visit(module)


def test_the_layers_are_the_folders_and_the_docs_list_them_lowest_first():
    folders = sorted(path.parent.name for path in (ROOT / "camlab").glob("*/__init__.py"))
    assert folders == sorted(LAYERS[1:-1])
    architecture = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for text in (camlab.__doc__, architecture):
        places = [re.search(rf"^ +{name}/ ", text, re.M).start() for name in LAYERS[1:-1]]
        assert places == sorted(places)


def test_license_is_the_apache_2_text_under_the_labs_copyright():
    first, text = (ROOT / "LICENSE").read_text(encoding="utf-8").split("\n", 1)
    assert first == COPYRIGHT
    assert hashlib.sha256(text.encode()).hexdigest() == APACHE_2_SHA256


def test_package_metadata_and_citation_name_the_same_licence():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert project["license"] == citation["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]


def test_citation_has_the_keys_cff_1_2_requires():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0"  # a string: 1.2.0 is not a YAML number
    assert citation["title"] == "CAM lab: class activation maps for Keras"
    assert citation["type"] == "software" and citation["message"]
    assert citation["authors"] == [{"name": "The CAM lab authors"}]
