"""Ingestion pipeline: counts, idempotent reruns, quarantine, resume after SIGKILL, refreshed derived tables."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from d4h.holder.engine import AnalyticsDB
from d4h.holder.ingest import IngestProgress, ingest
from d4h.holder.omop_map import Mapper
from d4h.holder.omop_tables import CLINICAL_TABLES


def _counts(db: AnalyticsDB) -> dict[str, int]:
    counts = {t: db.count(t) for t in CLINICAL_TABLES}
    counts["person_token"] = db.count("person_token", db.token_schema)
    return counts


def test_rerun_adds_no_rows_when_same_files_are_ingested_twice(synth_dir: Path, mapper: Mapper) -> None:
    with AnalyticsDB.open(":memory:") as db:
        first = ingest([synth_dir], db, mapper)
        before = _counts(db)
        second = ingest([synth_dir], db, mapper)
        assert second.files_skipped == first.files and second.resources == 0
        assert _counts(db) == before
        assert before["person"] == 120 and before["person_token"] == 120 and not first.problems


def test_rows_are_not_duplicated_when_a_file_is_copied_under_another_name(
    synth_dir: Path, mapper: Mapper, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.ndjson"
    copy.write_bytes((synth_dir / "Patient.ndjson").read_bytes() + b"\n")  # other bytes, same resources
    with AnalyticsDB.open(":memory:") as db:
        ingest([synth_dir], db, mapper)
        before = _counts(db)
        report = ingest([copy], db, mapper)
        assert report.resources == 120 and _counts(db) == before


def test_bad_resources_are_quarantined_when_the_rest_is_ingested(mapper: Mapper, tmp_path: Path) -> None:
    good = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-02-03", "gender": "male"}
    no_birth = {"resourceType": "Patient", "id": "p2", "name": [{"family": "Secret"}]}
    src = tmp_path / "in" / "Patient.ndjson"
    src.parent.mkdir()
    src.write_text("\n".join([json.dumps(good), "{oops", json.dumps(no_birth)]) + "\n")
    quarantine = tmp_path / "q" / "quarantine.ndjson"
    with AnalyticsDB.open(":memory:") as db:
        report = ingest([src.parent], db, mapper, quarantine=quarantine)
        assert db.count("person") == 1
    assert [(p.entry, p.resource_id) for p in report.problems] == [(2, None), (3, "p2")]
    assert "birthDate" in report.problems[1].reason
    assert stat.S_IMODE(quarantine.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert [q["entry"] for q in lines] == [2, 3] and lines[1]["resource"]["id"] == "p2"


def test_resources_with_wrong_json_types_are_quarantined_instead_of_stopping_the_run(
    mapper: Mapper, tmp_path: Path
) -> None:
    # Shapes that made the dict-walking mapper raise TypeError/AttributeError (ending the whole run): each
    # is now a problem naming the path of the wrong type, and the rest of the file is ingested.
    odd = [
        {"resourceType": "Patient", "id": "p2", "birthDate": "1990", "identifier": 1},
        {"resourceType": "Patient", "id": "p3", "birthDate": "1990", "gender": {"code": "female"}},
        {"resourceType": "Immunization", "id": "i1", "patient": {"reference": "Patient/p1"},
         "occurrenceDateTime": "2020-03-01", "vaccineCode": {"coding": [True]}},
        {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [[]]}, "effectiveDateTime": "2020-01-01"},
    ]  # fmt: skip
    good = {"resourceType": "Patient", "id": "p1", "birthDate": "1980-02-03"}
    src = tmp_path / "in" / "mixed.ndjson"
    src.parent.mkdir()
    src.write_text("\n".join(json.dumps(r) for r in [*odd, good]) + "\n")
    with AnalyticsDB.open(":memory:") as db:
        report = ingest([src.parent], db, mapper)
        assert db.count("person") == 1
    assert [p.resource_id for p in report.problems] == ["p2", "p3", "i1", "o1"]
    paths = ["$.identifier", "$.gender", "$.vaccineCode.coding[0]", "$.code.coding[0]"]
    for problem, path in zip(report.problems, paths, strict=True):
        assert path in problem.reason, problem.reason


def test_observation_periods_cover_every_person_when_ingest_finishes(synth_dir: Path, mapper: Mapper) -> None:
    with AnalyticsDB.open(":memory:") as db:
        ingest([synth_dir], db, mapper)
        assert db.count("observation_period") == db.count("person")
        late = db.query(
            "SELECT count(*) FROM cdm.visit_occurrence v JOIN cdm.observation_period o USING (person_id)"
            " WHERE v.visit_start_date < o.observation_period_start_date"
            " OR v.visit_end_date > o.observation_period_end_date"
        )
        assert late == [(0,)]
        # Treatment lines span their linked drugs.
        bad = db.query(
            "SELECT count(*) FROM cdm.episode e JOIN cdm.episode_event ee USING (episode_id)"
            " JOIN cdm.drug_exposure d ON d.drug_exposure_id = ee.event_id"
            " WHERE e.episode_concept_id = 32531 AND (d.drug_exposure_start_date < e.episode_start_date"
            " OR d.drug_exposure_end_date > e.episode_end_date)"
        )
        assert bad == [(0,)]


def test_progress_is_reported_when_batches_are_written(synth_dir: Path, mapper: Mapper) -> None:
    seen: list[IngestProgress] = []
    with AnalyticsDB.open(":memory:") as db:
        ingest([synth_dir], db, mapper, batch_size=1000, progress=seen.append)
    assert seen and seen[-1].files_done == seen[-1].files_total == 6
    assert [p.resources for p in seen] == sorted(p.resources for p in seen)


_KILLABLE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from d4h.holder.engine import AnalyticsDB
    from d4h.holder.ingest import ingest
    from d4h.holder.omop_map import Mapper
    from d4h.holder.pseudonymise import NodeSecret
    from d4h.holder.vocabulary import Vocabulary

    db = AnalyticsDB.open(sys.argv[2])
    mapper = Mapper(NodeSecret((b"unit-test-node-key-0123456789abc",)), Vocabulary(), bytes(range(32)))
    def tick(p):
        print("batch", p.resources, flush=True)
    ingest([Path(sys.argv[1])], db, mapper, batch_size=300, progress=tick)
    print("done", flush=True)
    """
)


def test_killed_ingest_leaves_consistent_db_and_resumes_when_rerun(
    synth_dir: Path, mapper: Mapper, tmp_path: Path
) -> None:
    script = tmp_path / "run.py"
    script.write_text(_KILLABLE)
    target = tmp_path / "killed.duckdb"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(synth_dir), str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    batches = 0
    for line in proc.stdout:
        batches += line.startswith("batch")
        if batches == 4:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with AnalyticsDB.open(str(target)) as db:
        partial = _counts(db)
        assert sum(partial.values()) > 0
        resumed = ingest([synth_dir], db, mapper)
        assert resumed.files_skipped >= 1 and not resumed.problems
        after = _counts(db)
    with AnalyticsDB.open(":memory:") as clean:
        ingest([synth_dir], clean, mapper)
        assert after == _counts(clean)


def test_opted_out_persons_are_excluded_only_from_later_permits_when_list_is_applied(
    synth_dir: Path, mapper: Mapper
) -> None:
    from datetime import UTC, datetime, timedelta

    from d4h.holder.omop_map import D4H_NATIONAL_ID
    from d4h.holder.optout import OptOutEvent, OptOutList, optout_token

    from .conftest import TOKEN_KEY

    patients = [json.loads(line) for line in (synth_dir / "Patient.ndjson").read_text().splitlines()[:3]]
    national = [next(i["value"] for i in p["identifier"] if i["system"] == D4H_NATIONAL_ID) for p in patients]
    opted_at = datetime(2026, 3, 1, tzinfo=UTC)
    optouts = OptOutList(tuple(OptOutEvent(optout_token(TOKEN_KEY, n), opted_at) for n in national))
    with AnalyticsDB.open(":memory:") as db:
        ingest([synth_dir], db, mapper)
        later = db.opted_out_person_ids(optouts, opted_at + timedelta(days=1))
        earlier = db.opted_out_person_ids(optouts, opted_at - timedelta(days=1))
    assert later == {mapper.secret.record_id("Patient", p["id"]) for p in patients}
    assert earlier == frozenset()
