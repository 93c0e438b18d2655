"""Builders of HDAB values for tests: application forms, applications walked to a state, a signing world."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from d4h.clock import FixedClock
from d4h.hdab import (
    Applicant,
    Application,
    ApplicationForm,
    Cohort,
    DatasetRef,
    HolderConsultation,
    Investigator,
    accept_fee,
    approve,
    mark_complete,
    new_application,
    propose_fee,
    record_consultation,
    start_pre_screening,
)
from d4h.trust.credentials import issue_credential
from d4h.trust.did import DidResolver, build_did_document, did_to_url
from d4h.trust.keys import KeyRing, new_keyring
from d4h.trust.status_list import BitstringStatusList, status_list_credential

HDAB = "did:web:hdab.example"
USER = "did:web:research.example"
OTHER_USER = "did:web:other-research.example"
HOSPITAL_A = "did:web:hospital-a.example"
HOSPITAL_B = "did:web:hospital-b.example"
REVIEWER = "did:web:hdab.example:reviewers:r1"
STATUS_URL = "https://hdab.example/status/permits"
T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def make_form(**changes: Any) -> ApplicationForm:
    """A valid access application by a private research institute; ``changes`` override fields."""
    data: dict[str, Any] = {
        "applicant": Applicant(did=USER, name="Research Institute", public_sector=False, country="LU"),
        "principal_investigator": Investigator(name="Dr Ada Example", email="ada@research.example"),
        "title": "HbA1c trajectories in type 2 diabetes",
        "public_summary": "We study how HbA1c evolves after diagnosis of type 2 diabetes.",
        "purpose": "art53-1-e",
        "art54_declaration": True,
        "datasets": (
            DatasetRef(dataset_id="ds-a", holder=HOSPITAL_A),
            DatasetRef(dataset_id="ds-b", holder=HOSPITAL_B),
        ),
        "cohort": Cohort(
            definition="adults with SNOMED 44054006",
            period_start=date(2015, 1, 1),
            period_end=date(2024, 12, 31),
            sample_size=5000,
        ),
        "variables": ("age", "sex", "hba1c"),
        "access_months": 24,
    }
    data.update(changes)
    return ApplicationForm(**data)


def processing(form: ApplicationForm | None = None, at: datetime = T0) -> Application:
    """An application found complete at ``at + 2 days`` (in PROCESSING)."""
    app = new_application("app-1", form or make_form(), at=at)
    app = start_pre_screening(app, at=at + timedelta(days=1), reviewer=REVIEWER)
    return mark_complete(app, at=at + timedelta(days=2), reviewer=REVIEWER)


def consulted(app: Application, at: datetime, *, feasible_b: bool = True) -> Application:
    for holder, ds, feasible, cost in (
        (HOSPITAL_A, ("ds-a",), True, Decimal("400")),
        (HOSPITAL_B, ("ds-b",), feasible_b, Decimal("600")),
    ):
        answer = HolderConsultation(
            holder=holder, dataset_ids=ds, feasible=feasible, cost_estimate=cost, answered_at=at
        )
        app = record_consultation(app, answer, at=at, reviewer=REVIEWER)
    return app


def granted(form: ApplicationForm | None = None, at: datetime = T0) -> Application:
    """An application granted in full (fee accepted) on ``at + 10 days``."""
    app = consulted(processing(form, at), at + timedelta(days=5))
    app = propose_fee(app, at=at + timedelta(days=6), reviewer=REVIEWER, hdab_fee=Decimal("1000"))
    app = accept_fee(app, at=at + timedelta(days=7), actor=app.form.applicant.did)
    return approve(app, at=at + timedelta(days=10), reviewer=REVIEWER, justification="Art. 53(1)(e) research")


class SigningWorld:
    """DID documents and the HDAB's permit status list, served from memory."""

    def __init__(self, clock: FixedClock) -> None:
        self.clock = clock
        self.documents: dict[str, dict[str, Any]] = {}
        self.rings: dict[str, KeyRing] = {}
        self.status = BitstringStatusList.create()
        self.status_fetches = 0
        for did in (HDAB, "did:web:rogue.example"):
            self.add(did)

    def add(self, did: str) -> KeyRing:
        ring = new_keyring(at=self.clock.now())
        self.rings[did] = ring
        doc = build_did_document(
            did, ring.verification_keys(self.clock.now()), "https://" + did.split(":")[2]
        )
        self.documents[did_to_url(did)] = doc
        return ring

    def fetch(self, url: str) -> dict[str, Any]:
        return copy.deepcopy(self.documents[url])

    def resolver(self) -> DidResolver:
        return DidResolver(self.fetch, self.clock)

    def fetch_status(self, url: str) -> str:
        self.status_fetches += 1
        if url != STATUS_URL:
            raise ConnectionError(f"no status list at {url}")
        payload = status_list_credential(
            issuer=HDAB,
            url=STATUS_URL,
            status_list=self.status,
            valid_from=self.clock.now() - timedelta(days=1),
        )
        return issue_credential(payload, self.rings[HDAB].active, HDAB)
