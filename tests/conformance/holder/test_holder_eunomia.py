"""The Eunomia Synthea27Nj OMOP CSV export loads completely: every table's count equals its CSV rows."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from d4h.holder.engine import AnalyticsDB


def _csv_rows(shared: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    with zipfile.ZipFile(shared / "data/health/omop/eunomia/Synthea27Nj_5.4.zip") as zf:
        for member in zf.namelist():
            if member.startswith("__MACOSX") or not member.lower().endswith(".csv"):
                continue
            with zf.open(member) as raw:
                reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig"))
                next(reader)
                counts[member.lower().removesuffix(".csv")] = sum(1 for _ in reader)
    return counts


def test_every_table_count_matches_its_csv_when_eunomia_is_loaded(
    shared: Path, eunomia_db: AnalyticsDB
) -> None:
    expected = _csv_rows(shared)
    assert len(expected) == 39
    assert expected["person"] == 28 and expected["measurement"] == 10040
    assert {t: eunomia_db.count(t) for t in expected} == expected


def test_loaded_person_ids_join_their_measurements_when_eunomia_is_loaded(eunomia_db: AnalyticsDB) -> None:
    orphans = eunomia_db.query(
        "SELECT count(*) FROM cdm.measurement m LEFT JOIN cdm.person p USING (person_id) WHERE p.person_id IS NULL"
    )
    assert orphans == [(0,)]
    t2dm = eunomia_db.query(
        "SELECT count(DISTINCT person_id) FROM cdm.condition_occurrence WHERE condition_source_value = '44054006'"
    )
    assert t2dm == [(1,)]


def test_export_identifiers_are_not_stored_when_eunomia_is_loaded(
    shared: Path, eunomia_db: AnalyticsDB
) -> None:
    with zipfile.ZipFile(shared / "data/health/omop/eunomia/Synthea27Nj_5.4.zip") as zf:
        with zf.open("PERSON.csv") as raw:
            people = [
                r["person_source_value"] for r in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8-sig"))
            ]
        with zf.open("PROVIDER.csv") as raw:
            providers = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8-sig")))
    identifiers = {
        *people,
        *(p["provider_name"] for p in providers),
        *(p["provider_source_value"] for p in providers),
    }
    assert len(identifiers) > 50
    stored = {str(v) for (v,) in eunomia_db.query("SELECT DISTINCT person_source_value FROM cdm.person")}
    stored |= {str(v) for row in eunomia_db.query("SELECT * FROM cdm.provider") for v in row}
    assert not identifiers & stored
    assert eunomia_db.query("SELECT count(*) FROM cdm.person WHERE person_source_value IS NOT NULL") == [(0,)]
    # Non-identifying provider facts stay.
    assert eunomia_db.query("SELECT count(DISTINCT specialty_source_value) FROM cdm.provider")[0][0] >= 1
