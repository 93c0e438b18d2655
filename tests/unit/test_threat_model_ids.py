"""docs/security.md names the test behind every mitigation: each named test must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# tests/path.py::name, tests/path.py::Class::name, optionally with a parameter id: [..]
_ID = re.compile(r"`(tests/[\w/]+\.py)::(?:\w+::)?(\w+)(?:\[[^\]`]*\])?`")


def test_every_test_the_threat_model_names_exists() -> None:
    text = (ROOT / "docs" / "security.md").read_text()
    named = _ID.findall(text)
    assert len(named) == text.count(".py::")  # every mention is read, none skipped by the pattern
    missing = []
    for path, name in named:
        source = ROOT / path
        if not source.is_file() or not re.search(rf"^\s*(async )?def {name}\(", source.read_text(), re.M):
            missing.append(f"{path}::{name}")
    assert not missing, "docs/security.md names tests that do not exist: " + ", ".join(missing)
