"""Virtual patients and therapy settings read at run time from the shared reference data (never committed)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from d4h.twin.t1d_model import PatientParams, patients_from_csv
from d4h.twin.t1d_simulate import TherapyParams, therapy_from_row


@pytest.fixture(scope="session")
def vpatients(shared: Path) -> dict[str, PatientParams]:
    path = shared / "data" / "usecases" / "vpatient_params.csv"
    return {p.name: p for p in patients_from_csv(path.read_text())}


@pytest.fixture(scope="session")
def therapies(shared: Path) -> dict[str, TherapyParams]:
    with (shared / "data" / "usecases" / "Quest.csv").open() as fh:
        return {row["Name"]: therapy_from_row(row) for row in csv.DictReader(fh)}
