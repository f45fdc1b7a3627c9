"""The licence, stated once per place a reader or a tool looks for it: LICENSE, the package
metadata (pyproject.toml) and the citation file (CITATION.cff)."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COPYRIGHT = "Copyright 2026 The CAM lab authors"
# sha256 of the Apache License 2.0 as the Apache Software Foundation publishes it
# (LICENSE-2.0.txt, 202 lines, appendix included).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


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
