"""The oncology_lines extract against the FHIR the synthetic generator wrote (an independent source).

Two small hospitals (SNOMED/RxNorm and ICD-10/ATC coding) are generated and ingested with the demo vocabulary;
the expected rows are recomputed with pandas from the FHIR NDJSON, persons linked through the node secret's
pseudonymous ids. Dates are shifted per person in OMOP, so only differences of dates are compared.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from d4h.holder.engine import AnalyticsDB
from d4h.holder.population import build_population
from d4h.holder.pseudonymise import load_or_create_secret
from d4h.holder.synthetic.fhir_build import MARKERS
from d4h.oncology.extract import EXTRACTS, NO_SYSTEMIC, oncology_lines

MEDDRA = "http://terminology.hl7.org/CodeSystem/mdr"
LINE_URL = "https://d4h.lu/fhir/StructureDefinition/line-of-therapy"
CANCERS = {"254837009": "breast", "C50.9": "breast", "363406005": "colorectal", "C18.9": "colorectal",
           "254637007": "lung", "C34.90": "lung"}  # fmt: skip


def _read(folder: Path, kind: str) -> list[dict[str, Any]]:
    path = folder / f"{kind}.ndjson"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _day(value: str) -> date:
    return date.fromisoformat(value[:10])


def _pid(resource: dict[str, Any]) -> str:
    return str(resource["subject"]["reference"]).split("/", 1)[1]


def _expected(node: Path) -> pd.DataFrame:
    """The extract recomputed from FHIR: tumour, stage, markers, lines, death, max grade per course."""
    fhir = node / "fhir"
    secret = load_or_create_secret(node / "node-secret.json")
    patients = {p["id"]: p for p in _read(fhir, "Patient")}
    tumours = {}
    for c in _read(fhir, "Condition"):
        code = c["code"]["coding"][0]["code"]
        if code in CANCERS:
            tumours[_pid(c)] = (CANCERS[code], _day(c["onsetDateTime"]))
    stage: dict[str, str] = {}
    markers: dict[tuple[str, str], bool] = {}
    events: list[tuple[str, date, int]] = []
    loinc = {code: key for key, (code, _) in MARKERS.items()}
    for o in _read(fhir, "Observation"):
        coding = o["code"]["coding"][0]
        if coding["system"] == MEDDRA:
            events.append((_pid(o), _day(o["effectiveDateTime"]), int(o["valueInteger"])))
        elif coding["code"] in loinc:
            value = o["valueCodeableConcept"]["coding"][0]["code"]
            if loinc[coding["code"]] == "stage":
                stage[_pid(o)] = value
            else:
                markers[(_pid(o), loinc[coding["code"]])] = value == "10828004"
    drugs: dict[tuple[str, int], list[tuple[str, date, date]]] = {}
    for m in _read(fhir, "MedicationRequest"):
        line = next((e["valueInteger"] for e in m.get("extension", []) if e["url"] == LINE_URL), None)
        if line is not None:
            start = _day(m["authoredOn"])
            stop = _day(m["dispenseRequest"]["validityPeriod"]["end"])
            drugs.setdefault((_pid(m), line), []).append(
                (m["medicationCodeableConcept"]["text"], start, stop)
            )
    rows = []
    for pid, (tumour, diagnosed) in tumours.items():
        patient = patients[pid]
        died = _day(patient["deceasedDateTime"]) if patient.get("deceasedDateTime") else None
        lines = sorted((n, d) for (p, n), d in drugs.items() if p == pid)
        starts = [min(s for _, s, _ in d) for _, d in lines]
        for i, (number, given) in enumerate(lines or [(0, [])]):
            start = starts[i] if lines else diagnosed
            stop = max(e for _, _, e in given) if given else None
            grade = np.nan
            if given and stop is not None:
                end = min(date.fromordinal(stop.toordinal() + 30),
                          date.fromordinal(starts[i + 1].toordinal() - 1) if i + 1 < len(starts) else date.max)  # fmt: skip
                grades = [g for p, d, g in events if p == pid and start <= d <= end]
                grade = float(max(grades, default=0))
            rows.append({
                "person_id": secret.record_id("Patient", pid), "tumour_type": tumour, "stage": stage.get(pid),
                "line": number, "regimen": "+".join(sorted({g for g, _, _ in given})) or NO_SYSTEMIC,
                "death": int(died is not None), "os_days": (died - start).days if died else None,
                "max_grade": grade, "female": patient["gender"] == "female",
                **{f"m_{k}": markers.get((pid, k)) for k in ("er", "her2", "kras", "egfr")},
            })  # fmt: skip
    return pd.DataFrame(rows).sort_values(["person_id", "line"]).reset_index(drop=True)


@pytest.fixture(scope="module", params=["site-a", "site-b"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame]:
    node = tmp_path_factory.mktemp(request.param)
    population = build_population(node, request.param, patients=260, seed=5)
    with AnalyticsDB.open(str(population.database)) as db:
        extract = oncology_lines(db)
    return node, extract


def test_extract_equals_fhir_recomputation_when_built_from_omop(site: tuple[Path, pd.DataFrame]) -> None:
    node, extract = site
    expected = _expected(node)
    got = extract.sort_values(["person_id", "line"]).reset_index(drop=True)
    assert len(got) == len(expected) > 40
    for column in ("person_id", "tumour_type", "line", "regimen", "death", "female"):
        assert got[column].tolist() == expected[column].tolist(), column
    assert got["stage"].tolist() == expected["stage"].tolist()
    for key in ("er", "her2", "kras", "egfr"):
        assert got[key].tolist() == expected[f"m_{key}"].tolist(), key
    dead = expected["death"] == 1
    assert got.loc[dead, "time_days"].tolist() == expected.loc[dead, "os_days"].astype(float).tolist()
    courses = expected["line"] > 0
    assert got.loc[courses, "max_grade"].tolist() == expected.loc[courses, "max_grade"].tolist()
    assert got.loc[~courses, "max_grade"].isna().all()
    assert (got.loc[courses & (got["max_grade"] > 0), "ctcae_version"] == "5.0").all()


def test_extract_censors_survivors_at_the_observation_period_end(site: tuple[Path, pd.DataFrame]) -> None:
    node, extract = site
    with AnalyticsDB.open(str(node / "analytics.duckdb")) as db:
        periods = db.frame(
            "SELECT person_id, observation_period_end_date AS last FROM cdm.observation_period"
        )
    last = dict(zip(periods["person_id"], pd.to_datetime(periods["last"]), strict=True))
    alive = extract[extract["death"] == 0]
    expected = [
        (last[p] - pd.Timestamp(s)).days for p, s in zip(alive["person_id"], alive["line_start"], strict=True)
    ]
    assert alive["time_days"].tolist() == [float(max(0, e)) for e in expected]
    assert set(extract["age_72_plus"]) <= {True, False}
    assert (extract["age_72_plus"] == (extract["age"] >= 72)).all()
    assert (extract["polychemotherapy"] == (extract["n_drugs"] > 1)).all()


def test_extract_is_registered_for_datasets_when_named_oncology_lines() -> None:
    from d4h.analytics.executor.frames import extracts

    assert extracts()["oncology_lines"] is EXTRACTS["oncology_lines"]
