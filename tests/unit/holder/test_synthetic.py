"""The synth generator: determinism, streaming output, site differences and the d4h CLI commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from d4h.errors import UserError
from d4h.holder.cli import register
from d4h.holder.synthetic.fhir_build import SiteProfile
from d4h.holder.synthetic.generator import generate_patient, synthesize


def test_output_is_identical_when_seed_and_site_repeat(tmp_path: Path) -> None:
    a = synthesize(tmp_path / "a", patients=25, seed=3, site="site-b")
    b = synthesize(tmp_path / "b", patients=25, seed=3, site="site-b")
    assert a.resources == b.resources
    for left, right in zip(a.files, b.files, strict=True):
        assert left.read_bytes() == right.read_bytes()


def test_output_differs_when_seed_changes(tmp_path: Path) -> None:
    a = synthesize(tmp_path / "a", patients=10, seed=3)
    b = synthesize(tmp_path / "b", patients=10, seed=4)
    assert (tmp_path / "a" / "Patient.ndjson").read_bytes() != (
        tmp_path / "b" / "Patient.ndjson"
    ).read_bytes()
    assert a.patients == b.patients == 10


def test_patient_slice_is_reproducible_when_generated_alone() -> None:
    site = SiteProfile.named("site-a")
    assert generate_patient(9, site, 17) == generate_patient(9, site, 17)
    assert generate_patient(9, site, 17) != generate_patient(9, site, 18)


def test_sites_code_differently_when_profiles_differ() -> None:
    def systems(site: str) -> set[str]:
        found = set()
        for i in range(60):
            for res in generate_patient(1, SiteProfile.named(site), i, "diabetes"):
                for key in ("code", "medicationCodeableConcept"):
                    for coding in res.get(key, {}).get("coding", []):
                        found.add(coding["system"])
        return found

    a, b = systems("site-a"), systems("site-b")
    assert "http://snomed.info/sct" in a and "http://www.nlm.nih.gov/research/umls/rxnorm" in a
    assert "http://hl7.org/fhir/sid/icd-10" in b and "http://www.whocc.no/atc" in b
    assert (
        SiteProfile.named("hospital-x") == SiteProfile.named("hospital-x") != SiteProfile.named("hospital-y")
    )


def test_files_are_gzip_ndjson_with_patients_first_when_compressed(tmp_path: Path) -> None:
    import gzip

    report = synthesize(tmp_path, patients=5, seed=1, compress=True, cohort="oncology")
    assert all(p.name.endswith(".ndjson.gz") for p in report.files)
    with gzip.open(tmp_path / "Patient.ndjson.gz") as fh:
        patients = [json.loads(line) for line in fh]
    assert len(patients) == 5 and report.resources["Patient"] == 5
    assert report.total == sum(report.resources.values())


def test_synth_refuses_when_cohort_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        synthesize(tmp_path, patients=1, cohort="cardiology")  # type: ignore[arg-type]


def test_cli_synth_then_ingest_prints_table_counts_when_run(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    app.command("version")(lambda: None)  # a second command keeps typer in multi-command mode
    runner = CliRunner()
    out = tmp_path / "syn"
    result = runner.invoke(app, ["synth", "--out", str(out), "-n", "15", "--site", "site-c"])
    assert result.exit_code == 0, result.output
    assert "Patient" in result.output and (out / "Patient.ndjson").exists()
    db = tmp_path / "node" / "a.duckdb"
    result = runner.invoke(app, ["ingest", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "person" in result.output and "15" in result.output
    assert (tmp_path / "node" / "node-secret.json").stat().st_mode & 0o777 == 0o600
    result = runner.invoke(app, ["vocab", "load", str(tmp_path / "missing"), "--db", str(db)])
    assert isinstance(result.exception, UserError)


def test_node_population_is_built_and_counted_when_demo_runs_twice(tmp_path: Path) -> None:
    from d4h.holder.population import build_population

    first = build_population(tmp_path / "node-b", "site-b", patients=20, seed=2)
    assert first.counts["person"] == 20 and first.counts["visit_occurrence"] > 20
    again = build_population(tmp_path / "node-b", "site-b", patients=20, seed=2)
    assert again.counts == first.counts and again.report.files_skipped == again.report.files
