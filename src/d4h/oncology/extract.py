"""[H] OMOP -> the oncology extract: one row per person and line of therapy, as the pure cores expect it.

Where the rows come from (``d4h.holder.omop_map``):
- **tumour**: a cancer diagnosis is a 'Disease First Occurrence' episode (concept 32528) whose object concept is
  the standard diagnosis concept; it is labelled breast / colorectal / lung by the concept or an ancestor of it
  (Athena ids), any other cancer by its concept name.
- **lines**: each line of therapy is a 'Treatment Regimen' episode (32531) under the disease episode, numbered by
  ``episode_number``; its drugs are the drug exposures linked through ``episode_event``. The regimen is the sorted
  standard ingredient names joined with '+', so RxNorm- and ATC-coding sites name it alike.
- **stage and biomarkers**: measurements by LOINC code (stage group 21908-9: the stage is the value's source code;
  markers: value concept Positive 9191 / Negative 9189, or the SNOMED value code); per person the earliest result.
  PD-L1 is the tumour proportion score (TPS, %), ``pdl1`` is TPS >= 50.
- **adverse events**: observations with a MedDRA concept (or, unmapped, a MedDRA source code) and a grade 1-5 as
  value; the qualifier keeps the CTCAE version. A course's grade is the maximum over events from the line's start
  to 30 days after its last drug ends (the usual CTCAE attribution window), cut before the next line starts.
- **survival**: overall survival from the start of the line to death, otherwise censored at the end of the
  person's observation period.

Persons with a cancer but no systemic therapy get one row with ``line`` 0 (regimen ``NO_SYSTEMIC``, time from
diagnosis), so they count among 'patients like this'; they have no course for the toxicity functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from d4h.holder.engine import AnalyticsDB

EXTRACT_NAME = "oncology_lines"
DISEASE_EPISODE = 32528
TREATMENT_EPISODE = 32531
FIELD_DRUG = 1147094
FEMALE = 8532
POSITIVE_CONCEPT, NEGATIVE_CONCEPT = 9191, 9189
POSITIVE_CODE, NEGATIVE_CODE = "10828004", "260385009"
STAGE_LOINC = "21908-9"
PDL1_LOINC = "85147-7"
PDL1_HIGH_TPS = 50.0
MARKER_LOINC: dict[str, str] = {
    "er": "16112-5",
    "pr": "16113-3",
    "her2": "48676-1",
    "egfr": "21659-7",
    "alk": "78205-2",
    "kras": "21702-5",
    "braf": "58415-8",
    "msi": "43368-0",
}
BIOMARKERS = (*MARKER_LOINC, "pdl1")
# Standard (Athena) SNOMED concepts of the three use-case cancers; descendants get the same label.
TUMOUR_LABELS: dict[int, str] = {4112853: "breast", 4180790: "colorectal", 4115276: "lung"}
GI_GU = frozenset({"colorectal"})
AE_WINDOW_DAYS = 30
NO_SYSTEMIC = "no systemic therapy"
COLUMNS = (
    "person_id", "tumour_type", "stage", "line", "regimen", "n_drugs", "line_start", "line_end", "time_days",
    "death", "age", "female", *BIOMARKERS, "pdl1_tps", "max_grade", "ctcae_version", "age_72_plus",
    "gi_gu_cancer", "polychemotherapy",
)  # fmt: skip


def _frame(db: AnalyticsDB, sql: str) -> pd.DataFrame:
    return db.frame(sql.replace("{s}", db.schema))


def _dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.normalize()


def _tumour_labels(db: AnalyticsDB, objects: pd.Series) -> dict[int, str]:
    """Label per diagnosis concept: the use-case cancer it is (or descends from), else its concept name."""
    ids = sorted({int(v) for v in objects.dropna()})
    if not ids:
        return {}
    listed = ", ".join(str(i) for i in ids)
    labels = {i: TUMOUR_LABELS[i] for i in ids if i in TUMOUR_LABELS}
    if "concept_ancestor" in db.tables():
        sql = "SELECT ancestor_concept_id, descendant_concept_id FROM {s}.concept_ancestor WHERE "
        anc = _frame(db, sql + f"descendant_concept_id IN ({listed})")
        for a, d in zip(anc["ancestor_concept_id"], anc["descendant_concept_id"], strict=True):
            if int(a) in TUMOUR_LABELS and int(d) not in labels:
                labels[int(d)] = TUMOUR_LABELS[int(a)]
    rest = [i for i in ids if i not in labels]
    if rest:
        names = _frame(db, "SELECT concept_id, concept_name FROM {s}.concept WHERE concept_id IN ("  # noqa: S608
                       + ", ".join(str(i) for i in rest) + ")")  # fmt: skip
        found = {
            int(c): str(n).lower() for c, n in zip(names["concept_id"], names["concept_name"], strict=True)
        }
        labels.update({i: found.get(i, f"concept {i}") for i in rest})
    return labels


def _loinc_ids(db: AnalyticsDB) -> dict[str, list[int]]:
    codes = [STAGE_LOINC, PDL1_LOINC, *MARKER_LOINC.values()]
    quoted = ", ".join(f"'{c}'" for c in codes)
    rows = _frame(db, "SELECT concept_id, concept_code FROM {s}.concept "  # noqa: S608
                  f"WHERE vocabulary_id = 'LOINC' AND concept_code IN ({quoted})")  # fmt: skip
    out: dict[str, list[int]] = {}
    for cid, code in zip(rows["concept_id"], rows["concept_code"], strict=True):
        out.setdefault(str(code), []).append(int(cid))
    return out


def _tumour_measurements(db: AnalyticsDB, persons: pd.Series) -> pd.DataFrame:
    """Per person: stage, each biomarker (True / False / None) and the PD-L1 TPS, earliest result first."""
    ids = _loinc_ids(db)
    concept_to_key = {cid: "stage" for cid in ids.get(STAGE_LOINC, [])}
    concept_to_key |= {cid: "pdl1_tps" for cid in ids.get(PDL1_LOINC, [])}
    for key, code in MARKER_LOINC.items():
        concept_to_key |= {cid: key for cid in ids.get(code, [])}
    out = pd.DataFrame({"person_id": pd.Series(sorted(set(persons)), dtype="int64")})
    for key in ("stage", *MARKER_LOINC, "pdl1_tps"):
        out[key] = None
    if not concept_to_key:
        return out
    listed = ", ".join(str(c) for c in sorted(concept_to_key))
    rows = _frame(db, "SELECT person_id, measurement_concept_id, measurement_date, value_as_number, "  # noqa: S608
                  "value_as_concept_id, value_source_value FROM {s}.measurement "
                  f"WHERE measurement_concept_id IN ({listed})")  # fmt: skip
    rows = rows[rows["person_id"].isin(set(persons))]
    rows = rows.assign(key=rows["measurement_concept_id"].map(lambda c: concept_to_key[int(c)]))
    rows = rows.sort_values(["person_id", "key", "measurement_date"], kind="stable")
    first = rows.drop_duplicates(["person_id", "key"], keep="first")
    values: dict[str, dict[int, Any]] = {}
    for r in first.to_dict("records"):
        key = str(r["key"])
        if key == "stage":
            value: Any = None if pd.isna(r["value_source_value"]) else str(r["value_source_value"])
        elif key == "pdl1_tps":
            value = None if pd.isna(r["value_as_number"]) else float(r["value_as_number"])
        else:
            value = _marker(r["value_as_concept_id"], r["value_source_value"])
        values.setdefault(key, {})[int(r["person_id"])] = value
    for key, by_person in values.items():
        out[key] = out["person_id"].map(lambda p, m=by_person: m.get(int(p)))
    return out


def _marker(concept: Any, source: Any) -> bool | None:
    if not pd.isna(concept) and int(concept) in (POSITIVE_CONCEPT, NEGATIVE_CONCEPT):
        return int(concept) == POSITIVE_CONCEPT
    if not pd.isna(source) and str(source) in (POSITIVE_CODE, NEGATIVE_CODE):
        return str(source) == POSITIVE_CODE
    return None


def _adverse_events(db: AnalyticsDB) -> pd.DataFrame:
    """Graded adverse events: person_id, date, grade, CTCAE version."""
    meddra = _frame(db, "SELECT concept_id, concept_code FROM {s}.concept WHERE vocabulary_id = 'MedDRA'")
    ids = sorted({int(c) for c in meddra["concept_id"]})
    codes = sorted({str(c) for c in meddra["concept_code"]})
    if not ids:
        return pd.DataFrame(columns=["person_id", "ae_date", "grade", "ctcae_version"])
    id_list = ", ".join(str(i) for i in ids)
    code_list = ", ".join(f"'{c}'" for c in codes)
    # An unmapped term (concept 0) still counts when its source code is a MedDRA code.
    rows = _frame(db, "SELECT person_id, observation_date AS ae_date, value_as_number AS grade, "  # noqa: S608
                  "qualifier_source_value AS ctcae_version FROM {s}.observation "
                  "WHERE value_as_number BETWEEN 1 AND 5 AND (observation_concept_id IN (" + id_list + ") OR "
                  "(observation_concept_id = 0 AND observation_source_value IN (" + code_list + ")))")  # fmt: skip
    rows["ae_date"] = _dates(rows["ae_date"])
    return rows


def _lines(db: AnalyticsDB) -> pd.DataFrame:
    """One row per treatment episode: person, parent disease episode, line, regimen, drug dates."""
    drugs = _frame(
        db,
        f"""
        SELECT e.episode_id, e.person_id, e.episode_parent_id, e.episode_number AS line,
               d.drug_concept_id, d.drug_source_value, d.drug_exposure_start_date AS start,
               d.drug_exposure_end_date AS stop
        FROM {{s}}.episode e
        JOIN {{s}}.episode_event ee ON ee.episode_id = e.episode_id
            AND ee.episode_event_field_concept_id = {FIELD_DRUG}
        JOIN {{s}}.drug_exposure d ON d.drug_exposure_id = ee.event_id
        WHERE e.episode_concept_id = {TREATMENT_EPISODE}
    """,  # noqa: S608 - constants and the checked schema only
    )
    if drugs.empty:
        return pd.DataFrame(columns=["episode_id", "person_id", "episode_parent_id", "line", "regimen",
                                     "n_drugs", "line_start", "line_end"])  # fmt: skip
    concept_ids = sorted({int(c) for c in drugs["drug_concept_id"].dropna() if int(c) != 0})
    names: dict[int, str] = {}
    if concept_ids:
        found = _frame(db, "SELECT concept_id, concept_name FROM {s}.concept WHERE concept_id IN ("  # noqa: S608
                       + ", ".join(str(c) for c in concept_ids) + ")")  # fmt: skip
        names = {
            int(c): str(n).lower() for c, n in zip(found["concept_id"], found["concept_name"], strict=True)
        }
    drugs["drug"] = [
        names.get(int(c), str(s)) if not pd.isna(c) and int(c) != 0 else str(s)
        for c, s in zip(drugs["drug_concept_id"], drugs["drug_source_value"], strict=True)
    ]
    drugs["start"] = _dates(drugs["start"])
    drugs["stop"] = _dates(drugs["stop"].fillna(drugs["start"]))
    grouped = drugs.groupby("episode_id", sort=True)
    lines = grouped.agg(
        person_id=("person_id", "first"),
        episode_parent_id=("episode_parent_id", "first"),
        line=("line", "first"),
        line_start=("start", "min"),
        line_end=("stop", "max"),
    )
    lines["regimen"] = grouped["drug"].agg(lambda s: "+".join(sorted(set(s))))
    lines["n_drugs"] = grouped["drug"].nunique()
    return lines.reset_index()


def _birth(year: Any, month: Any, day: Any) -> pd.Timestamp:
    # Birth dates may be coarsened: a missing month is taken as mid-year, a missing day as mid-month.
    m = 7 if pd.isna(month) else int(month)
    d = (1 if pd.isna(month) else 15) if pd.isna(day) else int(day)
    return pd.Timestamp(date(int(year), m, d))


def _max_grades(rows: pd.DataFrame, events: pd.DataFrame) -> tuple[list[float], list[str | None]]:
    """Per row (a course): the highest grade in its attribution window and that event's CTCAE version."""
    by_person = {int(p): g.sort_values("ae_date") for p, g in events.groupby("person_id")}  # type: ignore[arg-type]
    grades: list[float] = []
    versions: list[str | None] = []
    for pid, start, stop, cut in zip(rows["person_id"], rows["line_start"], rows["window_end"],
                                     rows["next_start"], strict=True):  # fmt: skip
        own = by_person.get(int(pid))
        if own is None:
            grades.append(0.0)
            versions.append(None)
            continue
        end = stop if pd.isna(cut) else min(stop, cut - pd.Timedelta(days=1))
        inside = own[(own["ae_date"] >= start) & (own["ae_date"] <= end)]
        if inside.empty:
            grades.append(0.0)
            versions.append(None)
            continue
        top = inside.sort_values("grade", ascending=False, kind="stable").iloc[0]
        grades.append(float(top["grade"]))
        versions.append(None if pd.isna(top["ctcae_version"]) else str(top["ctcae_version"]))
    return grades, versions


def oncology_lines(db: AnalyticsDB) -> pd.DataFrame:
    """The extract (columns ``COLUMNS``), sorted by person and line."""
    disease = _frame(db, "SELECT episode_id, person_id, episode_start_date AS diagnosed, "  # noqa: S608
                     f"episode_object_concept_id FROM {{s}}.episode WHERE episode_concept_id = {DISEASE_EPISODE}")  # fmt: skip
    if disease.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    disease["diagnosed"] = _dates(disease["diagnosed"])
    labels = _tumour_labels(db, disease["episode_object_concept_id"])
    disease["tumour_type"] = disease["episode_object_concept_id"].map(lambda c: labels.get(int(c), "unknown"))
    lines = _lines(db)
    lines = lines.merge(
        disease[["episode_id", "diagnosed", "tumour_type"]].rename(
            columns={"episode_id": "episode_parent_id"}
        ),
        on="episode_parent_id",
        how="inner",
    )
    # A diagnosis without a line of therapy: one row at line 0, followed from diagnosis.
    treated = set(lines["episode_parent_id"])
    untreated = disease[~disease["episode_id"].isin(treated)].assign(
        line=0, regimen=NO_SYSTEMIC, n_drugs=0, line_start=lambda f: f["diagnosed"]
    )
    keep = ["person_id", "tumour_type", "line", "regimen", "n_drugs", "line_start"]
    rows = pd.concat([f[keep] for f in (lines, untreated) if not f.empty], ignore_index=True)
    # Untreated persons have no line end (NaT), so their rows are joined on the other columns only.
    rows = rows.join(
        lines.set_index(["person_id", "line", "line_start"])["line_end"],
        on=["person_id", "line", "line_start"],
    )
    rows["person_id"] = rows["person_id"].astype("int64")
    rows["line"] = rows["line"].astype("int64")
    rows = rows.sort_values(["person_id", "line_start", "line"], kind="stable").reset_index(drop=True)

    persons = _frame(db, "SELECT person_id, gender_concept_id, year_of_birth, month_of_birth, day_of_birth "
                     "FROM {s}.person")  # fmt: skip
    persons = persons[persons["person_id"].isin(set(rows["person_id"]))].set_index("person_id")
    deaths = _frame(db, "SELECT person_id, min(death_date) AS died FROM {s}.death GROUP BY person_id")
    periods = _frame(db, "SELECT person_id, max(observation_period_end_date) AS last_seen "
                     "FROM {s}.observation_period GROUP BY person_id")  # fmt: skip
    died = dict(zip(deaths["person_id"].astype("int64"), _dates(deaths["died"]), strict=True))
    seen = dict(zip(periods["person_id"].astype("int64"), _dates(periods["last_seen"]), strict=True))

    death = rows["person_id"].map(lambda p: died.get(int(p), pd.NaT))
    last = rows["person_id"].map(lambda p: seen.get(int(p), pd.NaT))
    end = death.where(death.notna(), last)
    end = end.where(end.notna(), rows["line_end"].fillna(rows["line_start"]))
    rows["death"] = death.notna().astype("int64")
    rows["time_days"] = np.maximum((pd.to_datetime(end) - rows["line_start"]).dt.days.to_numpy(float), 0.0)
    births = {int(r["person_id"]): _birth(r["year_of_birth"], r["month_of_birth"], r["day_of_birth"])
              for r in persons.reset_index().to_dict("records")}  # fmt: skip
    women = {int(p) for p, g in persons["gender_concept_id"].items() if g == FEMALE}  # type: ignore[call-overload]
    rows["age"] = [
        (start - births[int(p)]).days / 365.25 if int(p) in births else np.nan
        for p, start in zip(rows["person_id"], rows["line_start"], strict=True)
    ]
    rows["female"] = rows["person_id"].isin(women)

    markers = _tumour_measurements(db, rows["person_id"]).set_index("person_id")
    rows["stage"] = rows["person_id"].map(markers["stage"])
    for key in MARKER_LOINC:
        rows[key] = rows["person_id"].map(markers[key]).astype(object)
    rows["pdl1_tps"] = pd.to_numeric(rows["person_id"].map(markers["pdl1_tps"]), errors="coerce")
    rows["pdl1"] = [None if pd.isna(v) else bool(v >= PDL1_HIGH_TPS) for v in rows["pdl1_tps"]]

    # The attribution window of a course ends 30 days after its last drug, before the person's next line.
    rows["window_end"] = rows["line_end"] + pd.Timedelta(days=AE_WINDOW_DAYS)
    rows["next_start"] = rows.groupby("person_id")["line_start"].shift(-1)
    grades, versions = _max_grades(rows, _adverse_events(db))
    course = rows["line"] > 0
    rows["max_grade"] = np.where(course, grades, np.nan)
    rows["ctcae_version"] = [v if c else None for v, c in zip(versions, course, strict=True)]
    rows["age_72_plus"] = rows["age"] >= 72
    rows["gi_gu_cancer"] = rows["tumour_type"].isin(GI_GU)
    # CARG's item is 'more than one chemotherapy drug'; OMOP gives the regimen's drugs, not their class.
    rows["polychemotherapy"] = rows["n_drugs"].astype("int64") > 1
    rows["line_start"] = rows["line_start"].dt.date
    rows["line_end"] = rows["line_end"].dt.date
    return rows[list(COLUMNS)].reset_index(drop=True)


EXTRACTS: Mapping[str, Callable[[AnalyticsDB], pd.DataFrame]] = {EXTRACT_NAME: oncology_lines}
