"""[H] Named OMOP extracts for digital twins.

``t1d_twins_individual``: persons with type 1 diabetes from their first HbA1c test, with what a T1D twin is
chosen from (age, sex, BMI, body weight when recorded, HbA1c in %) and the column ``twin_release`` set to
the holder's marker. A holder publishes a dataset with ``{"source": {"extract": "t1d_twins_individual"}}`` only
where individual what-if twins are allowed (its contract policy then requires the permit that allows them);
``twin_t1d`` releases a single patient's scenario outputs from no other dataset. The marker value contains a
colon, which no OMOP derived variable can produce, so a data user cannot forge it with a variable of that name.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from d4h.holder.engine import AnalyticsDB
from d4h.holder.synthetic.vocabulary import DEMO
from d4h.twin.functions import MARKER_COLUMN, MARKER_VALUE

BODY_WEIGHT = 3025315  # LOINC 29463-7 Body weight (standard OMOP concept)
_BEFORE = {"start_days": -36500, "end_days": 0}
T1D_COHORT = {
    "name": "type 1 diabetes with an HbA1c test",
    "entry": {"domain": "measurement", "concepts": {"concept_ids": [DEMO.HBA1C, DEMO.HBA1C_IFCC]}},
    "inclusion": [
        {"kind": "condition", "name": "type 1 diabetes diagnosed", "concepts": {"concept_ids": [DEMO.T1D]},
         "window": _BEFORE},
    ],
}  # fmt: skip
_RECENT = {"start_days": -365, "end_days": 30}
T1D_VARIABLES = {
    "age": {"kind": "age"},
    "sex": {"kind": "sex"},
    "hba1c": {"kind": "measurement", "concepts": {"concept_ids": [DEMO.HBA1C, DEMO.HBA1C_IFCC]},
              "convert_to": "%", "window": {"start_days": 0, "end_days": 0}, "aggregate": "mean"},
    "bmi": {"kind": "measurement", "concepts": {"concept_ids": [DEMO.BMI]}, "window": _RECENT,
            "aggregate": "last"},
    "weight": {"kind": "measurement", "concepts": {"concept_ids": [BODY_WEIGHT]}, "window": _RECENT,
               "aggregate": "last"},
}  # fmt: skip


def t1d_twins_individual(db: AnalyticsDB) -> pd.DataFrame:
    from d4h.holder import cohorts

    cohort = cohorts.build_cohort(db, cohorts.parse_definition(T1D_COHORT))
    frame = cohorts.extract_frame(db, cohort, cohorts.parse_variables(T1D_VARIABLES)).reset_index()
    frame[MARKER_COLUMN] = MARKER_VALUE
    return frame


EXTRACTS: dict[str, Callable[[AnalyticsDB], pd.DataFrame]] = {"t1d_twins_individual": t1d_twins_individual}
