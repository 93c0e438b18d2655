"""Helpers for holder conformance tests: reading the shared Synthea FHIR sets independently of d4h."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from d4h.holder.engine import AnalyticsDB
from d4h.holder.omop_csv import load_omop_csv

SETS = ("pathling-import-100", "pathling-bundles-10", "smart-bulk-10")


def read_resources(folder: Path) -> Iterator[dict[str, Any]]:
    """Every resource in a Synthea set, read with the standard library only (the oracle side)."""
    for path in sorted(folder.iterdir()):
        if path.name.startswith("log."):
            continue
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            if ".ndjson" in path.name:
                for line in fh:
                    if line.strip():
                        yield json.loads(line)
            else:
                doc = json.load(fh)
                if doc.get("resourceType") == "Bundle":
                    for entry in doc.get("entry", []):
                        yield entry["resource"]
                else:
                    yield doc


@pytest.fixture(scope="session")
def eunomia_db(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnalyticsDB]:
    """The Eunomia Synthea27Nj OMOP export (with its vocabulary shard) loaded once per session."""
    db = AnalyticsDB.open(str(tmp_path_factory.mktemp("eunomia") / "eunomia.duckdb"))
    load_omop_csv(db, shared / "data/health/omop/eunomia/Synthea27Nj_5.4.zip")
    yield db
    db.close()


@pytest.fixture(scope="session")
def fhir_root(shared: Path) -> Path:
    return shared / "data/health/synthea-fhir"
