"""Unit harmonisation in analysis frames: IFCC HbA1c (mmol/mol, site-b) becomes NGSP % by the master equation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from d4h.errors import UserError
from d4h.holder.cohorts import build_cohort, extract_frame, parse_definition, parse_variables
from d4h.holder.engine import AnalyticsDB
from d4h.holder.population import build_population
from d4h.holder.synthetic.vocabulary import DEMO

COHORT = {"entry": {"domain": "measurement", "concepts": {"concept_ids": [DEMO.HBA1C_ANY]}}}


@pytest.fixture(scope="module")
def site_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_population(tmp_path_factory.mktemp("site-b"), "site-b", patients=150, seed=3).database


def test_ifcc_values_are_converted_to_percent_when_asked(site_b: Path) -> None:
    variables = parse_variables({
        "raw": {"kind": "measurement", "concepts": {"concept_ids": [DEMO.HBA1C_ANY]},
                "window": {"start_days": 0, "end_days": 0}, "aggregate": "mean"},
        "pct": {"kind": "measurement", "concepts": {"concept_ids": [DEMO.HBA1C_ANY]}, "convert_to": "%",
                "window": {"start_days": 0, "end_days": 0}, "aggregate": "mean"},
    })  # fmt: skip
    with AnalyticsDB.open(str(site_b)) as db:
        units = {r[0] for r in db.query_native(
            "SELECT DISTINCT unit_concept_id FROM cdm.measurement WHERE measurement_concept_id = ?",
            [DEMO.HBA1C_IFCC],
        )}  # fmt: skip
        frame = extract_frame(db, build_cohort(db, parse_definition(COHORT)), variables)
    assert units == {DEMO.MMOL_PER_MOL}  # this site reports IFCC units only
    assert len(frame) > 50
    assert np.allclose(frame["pct"], 0.09148 * frame["raw"] + 2.152)
    assert frame["pct"].between(4, 16).all()


def test_unit_and_conversion_together_are_refused() -> None:
    with pytest.raises(UserError, match="convert_to"):
        parse_variables({"x": {"kind": "measurement", "concepts": {"concept_ids": [DEMO.HBA1C]},
                               "window": {"start_days": 0, "end_days": 0}, "unit_concept_id": "%",
                               "convert_to": "%"}})  # fmt: skip
