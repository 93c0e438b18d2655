"""No direct identifier from the source files appears anywhere in the analytics database after ingestion."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from d4h.holder.engine import AnalyticsDB
from d4h.holder.ingest import ingest
from d4h.holder.omop_map import Mapper
from d4h.holder.pseudonymise import NodeSecret
from d4h.holder.synthetic.generator import synthesize
from d4h.holder.vocabulary import Vocabulary

from .conftest import SETS, read_resources

_SHORT_NUMBER = re.compile(r"^[0-9a-fA-F]{1,11}$")


def _identifiers(resource: dict[str, Any]) -> set[str]:
    """Direct identifiers a resource carries: ids, identifier values, names, telecom, address.

    Birth dates are checked apart (the same calendar date is a legitimate event date of other records).
    """
    found = {resource["id"]}
    for ident in resource.get("identifier", []):
        found.add(ident.get("value", ""))
    if resource["resourceType"] in ("Patient", "Practitioner", "RelatedPerson"):
        for name in resource.get("name", []):
            found.update(name.get("given", []))
            found.add(name.get("family", ""))
        for telecom in resource.get("telecom", []):
            found.add(telecom.get("value", ""))
        for address in resource.get("address", []):
            found.update(address.get("line", []))
            found.add(address.get("postalCode", ""))
        for ext in resource.get("extension", []):
            if "valueString" in ext:
                found.add(ext["valueString"])
    for key in ("subject", "patient", "encounter"):
        ref = resource.get(key)
        if isinstance(ref, dict) and "display" in ref:
            found.add(ref["display"])
    return {f for f in found if f and len(f) >= 4}


def _database_text(db: AnalyticsDB) -> set[str]:
    """Every distinct value of every text column of every table in the store's schemas.

    Numeric and date columns cannot hold the textual identifiers checked here (uuids, names, phone numbers).
    """
    values: set[str] = set()
    columns = db.query(
        "SELECT table_schema, table_name, column_name FROM information_schema.columns"
        " WHERE table_schema IN (?, ?) AND data_type = 'VARCHAR'",
        [db.schema, db.token_schema],
    )
    for schema, table, column in columns:
        for (value,) in db.query(f'SELECT DISTINCT "{column}" FROM {schema}.{table}'):  # noqa: S608 - identifiers are checked or constant
            if value is not None:
                values.add(str(value))
    return values


@pytest.fixture(scope="module")
def sources(fhir_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    synth = tmp_path_factory.mktemp("synth-ids")
    synthesize(synth, patients=60, seed=11, site="site-b")
    return [*(fhir_root / s for s in SETS), synth]


def test_no_source_identifier_is_stored_when_all_samples_are_ingested(sources: list[Path]) -> None:
    identifiers: set[str] = set()
    for folder in sources:
        for resource in read_resources(folder):
            identifiers |= _identifiers(resource)
    assert len(identifiers) > 10_000  # the oracle really collected them
    with AnalyticsDB.open(":memory:") as db:
        report = ingest(
            sources, db, Mapper(NodeSecret((b"identifier-test-key-0123456789ab",)), Vocabulary(), bytes(32))
        )
        assert report.problems == () and db.count("person") > 100
        stored = _database_text(db)
    assert len(stored) > 300  # codes, units, pseudonyms, file digests
    exact = identifiers & stored
    assert exact == set()
    # Substrings: long identifiers (uuids, names, SSNs, phone numbers) must not occur inside any stored value.
    haystack = "\x00".join(stored)
    embedded = [i for i in identifiers if not _SHORT_NUMBER.match(i) and i in haystack]
    assert embedded == []


def test_persons_keep_no_exact_birth_date_when_month_precision_is_used(sources: list[Path]) -> None:
    with AnalyticsDB.open(":memory:") as db:
        ingest(sources[:1], db, Mapper(NodeSecret((b"identifier-test-key-0123456789ab",)), Vocabulary()))
        assert db.query(
            "SELECT count(*) FROM cdm.person WHERE day_of_birth IS NOT NULL OR birth_datetime IS NOT NULL"
        ) == [(0,)]
        assert db.query("SELECT count(*) FROM cdm.person WHERE month_of_birth IS NULL") == [(0,)]
