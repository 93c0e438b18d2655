"""HdabService on SQLite: applicant isolation, the workflow to a permit VC, revocation, register, opt-out."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine

from d4h.audit.log import AuditLog
from d4h.clock import FixedClock
from d4h.errors import Conflict, NotFound, UserError
from d4h.hdab import PERMIT_TYPE, PermitVerifier, verify_optout_list
from d4h.hdab.service import OPTOUT_KEY_FILE, PERMIT_STATUS_LIST, HdabService
from d4h.hdab.store import HdabStore
from d4h.policy import PermitQuery, PresentedPermit
from d4h.store.db import make_engine, sqlite_url
from d4h.store.migrate import upgrade
from d4h.trust.credentials import issue_credential
from d4h.trust.jose import peek
from d4h.trust.keys import KeyRing
from d4h.trust.repository import StatusListStore
from d4h.trust.service import NodeTrust
from d4h.trust.status_list import status_list_credential
from d4h.trust.tokens import VerifiedCaller
from tests.unit.hdab.hdab_factories import HDAB, HOSPITAL_A, HOSPITAL_B, T0, USER, SigningWorld

OTHER = "did:web:other.example"
REVIEWER = "admin@HDAB"


class _FakeTrust:
    """What HdabService needs of NodeTrust: identity, keys and a node-to-node call to holders."""

    def __init__(self, ring: KeyRing, *, feasible: bool = True) -> None:
        self.did = HDAB
        self.base_url = "https://hdab.example"
        self.keyring = ring
        self.feasible = feasible
        self.calls: list[tuple[str, str, Any]] = []

    def call_peer(self, method: str, peer_url: str, path: str, json: Any = None) -> tuple[str, Any]:
        self.calls.append((peer_url, path, json))
        return "did:web:" + peer_url.split("//")[1], {
            "feasible": self.feasible,
            "cost_estimate": "250",
            "currency": "EUR",
        }


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(sqlite_url(tmp_path / "node.db"))
    upgrade(engine)
    return engine


@pytest.fixture
def world() -> SigningWorld:
    return SigningWorld(FixedClock(T0))


@pytest.fixture
def service(engine: Engine, world: SigningWorld, tmp_path: Path) -> HdabService:
    return _service(engine, world, tmp_path)


def _service(engine: Engine, world: SigningWorld, tmp_path: Path, **trust: Any) -> HdabService:
    return HdabService(
        store=HdabStore(engine, world.clock),
        status_lists=StatusListStore(engine, world.clock),
        trust=cast(NodeTrust, _FakeTrust(world.rings[HDAB], **trust)),
        audit=AuditLog(engine, world.clock),
        clock=world.clock,
        secrets_dir=tmp_path / "secrets",
    )


def _caller(did: str = USER, **claims: Any) -> VerifiedCaller:
    return VerifiedCaller(did, frozenset({"dataUser"}), {"legalName": "Research Institute", **claims})


def _form(**changes: Any) -> dict[str, Any]:
    form = {
        "title": "HbA1c trajectories",
        "public_summary": "How HbA1c evolves after a type 2 diabetes diagnosis.",
        "purpose": "art53-1-e",
        "art54_declaration": True,
        "principal_investigator": {"name": "Dr Ada Example", "email": "ada@research.example"},
        "datasets": [
            {"dataset_id": "ds-a", "holder": HOSPITAL_A},
            {"dataset_id": "ds-b", "holder": HOSPITAL_B},
        ],
        "cohort": {"definition": "adults with E11", "period_start": "2015-01-01", "period_end": "2024-12-31"},
        "variables": ["age", "hba1c"],
    }
    form.update(changes)
    return form


def _to_decision(service: HdabService, world: SigningWorld) -> dict[str, Any]:
    app = service.submit(_caller(), _form())
    for action in ("pre_screen", "complete", "consult"):
        world.clock.advance(timedelta(days=1))
        service.review(app.id, action, REVIEWER, {})
    service.review(app.id, "propose_fee", REVIEWER, {"hdab_fee": "100"})
    service.applicant_action(USER, app.id, "accept_fee", {})
    world.clock.advance(timedelta(days=1))
    return service.review(app.id, "approve", REVIEWER, {"justification": "research under Art. 53(1)(e)"})


def _actions(engine: Engine, world: SigningWorld) -> list[str]:
    return [e.action for e in AuditLog(engine, world.clock).entries(limit=1000)]


def test_applicant_is_the_verified_caller_when_the_form_names_someone_else(service: HdabService) -> None:
    form = _form(applicant={"did": OTHER, "name": "Spoof", "country": "FI"})
    app = service.submit(_caller(), form)
    assert app.form.applicant.did == USER
    assert app.form.applicant.name == "Research Institute"


def test_public_sector_purpose_is_refused_when_claims_do_not_say_public_sector(service: HdabService) -> None:
    with pytest.raises(UserError, match="public-sector"):
        service.submit(_caller(), _form(purpose="art53-1-a"))
    app = service.submit(_caller(publicSector=True), _form(purpose="art53-1-a"))
    assert app.form.accelerated


def test_other_applicant_gets_not_found_when_reading_an_application(service: HdabService) -> None:
    app = service.submit(_caller(), _form())
    assert service.application_of(USER, app.id).id == app.id
    with pytest.raises(NotFound):
        service.application_of(OTHER, app.id)
    with pytest.raises(NotFound):
        service.applicant_action(OTHER, app.id, "withdraw", {})
    assert service.applications_of(OTHER) == []


def test_approval_issues_a_verifiable_permit_credential_when_the_workflow_completes(
    service: HdabService, world: SigningWorld, engine: Engine
) -> None:
    result = _to_decision(service, world)
    permit = result["permit"]
    assert result["application"].state.value == "DECISION_ISSUED"
    token = service.permit_token_for(USER, permit.permit_id)
    payload = peek(token, what="permit").payload
    assert PERMIT_TYPE in payload["type"]
    assert payload["credentialStatus"]["statusListCredential"].endswith(f"/status/{PERMIT_STATUS_LIST}")
    with pytest.raises(NotFound):
        service.permit_token_for(OTHER, permit.permit_id)
    actions = _actions(engine, world)
    for expected in ("submit", "pre_screen", "complete", "consult", "propose_fee", "accept_fee", "approve"):
        assert f"hdab.application.{expected}" in actions
    assert "hdab.permit.issue" in actions


def test_consultation_asks_each_named_holder_over_the_node_api(service: HdabService) -> None:
    app = service.submit(_caller(), _form())
    service.review(app.id, "pre_screen", REVIEWER, {})
    service.review(app.id, "complete", REVIEWER, {})
    consulted = service.review(app.id, "consult", REVIEWER, {})["application"]
    calls = cast(_FakeTrust, service._trust).calls
    assert sorted(c[0] for c in calls) == ["https://hospital-a.example", "https://hospital-b.example"]
    assert all(c[1] == "/api/v1/hdab-consultation" for c in calls)
    assert {c.holder for c in consulted.consultations} == {HOSPITAL_A, HOSPITAL_B}
    fee = service.review(app.id, "propose_fee", REVIEWER, {"hdab_fee": "100"})["application"].fee
    assert str(fee.total) == "600"


def test_approval_is_refused_when_the_fee_was_not_accepted(service: HdabService, world: SigningWorld) -> None:
    app = service.submit(_caller(), _form())
    for action in ("pre_screen", "complete", "consult"):
        service.review(app.id, action, REVIEWER, {})
    with pytest.raises(Conflict, match="fee"):
        service.review(app.id, "approve", REVIEWER, {"justification": "ok"})


def test_revocation_sets_the_permit_status_bit_so_holders_refuse_it(
    service: HdabService, world: SigningWorld, engine: Engine
) -> None:
    permit = _to_decision(service, world)["permit"]
    token = service.permit_token_for(USER, permit.permit_id)
    lists = StatusListStore(engine, world.clock)

    def fetch(url: str) -> str:
        payload = status_list_credential(
            issuer=HDAB, url=url, status_list=lists.get(PERMIT_STATUS_LIST), valid_from=world.clock.now()
        )
        return issue_credential(payload, world.rings[HDAB].active, HDAB)

    verifier = PermitVerifier(resolver=world.resolver(), trusted_hdabs=(HDAB,), fetch_status_list=fetch)
    query = PermitQuery(
        PresentedPermit(permit.permit_id, token), "ds-a", USER, "art53-1-e", None, world.clock.now()
    )
    assert verifier.check(query).valid
    revoked = service.revoke(permit.permit_id, reviewer=REVIEWER, reason="breach of conditions")
    assert revoked.state.value == "REVOKED"
    verdict = verifier.check(query)
    assert not verdict.valid
    assert verdict.reason.startswith("revoked")
    with pytest.raises(Conflict):
        service.revoke(permit.permit_id, reviewer=REVIEWER, reason="again")
    assert "hdab.permit.revoke" in _actions(engine, world)


def test_register_publishes_summary_decision_and_permit_without_personal_data(
    service: HdabService, world: SigningWorld
) -> None:
    permit = _to_decision(service, world)["permit"]
    entries = service.store.register().entries
    kinds = [e.entry for e in entries]
    assert kinds == ["application", "decision", "permit"]
    assert "Dr Ada" not in service.store.register().model_dump_json()
    service.revoke(permit.permit_id, reviewer=REVIEWER, reason="breach")
    permits = [e for e in service.store.register().entries if e.entry == "permit"]
    assert [e.state.value for e in permits] == ["GRANTED", "REVOKED"]
    assert {e.data_user_name for e in permits} == {"Research Institute"}


def test_queue_flags_overdue_decisions_when_the_statutory_period_has_passed(
    service: HdabService, world: SigningWorld
) -> None:
    app = service.submit(_caller(), _form())
    service.review(app.id, "pre_screen", REVIEWER, {})
    service.review(app.id, "complete", REVIEWER, {})
    assert service.queue()[0]["overdue"] is False
    world.clock.advance(timedelta(days=200))
    item = service.queue()[0]
    assert item["overdue"] is True
    assert any(d["overdue"] and d["name"].startswith("decision") for d in item["deadlines"])


def test_optout_stores_only_keyed_tokens_and_publishes_a_signed_growing_list(
    service: HdabService, world: SigningWorld, tmp_path: Path
) -> None:
    assert service.record_optout("010190-123A", "opt-out") == 1
    key = tmp_path / "secrets" / OPTOUT_KEY_FILE
    assert os.stat(key).st_mode & 0o777 == 0o600
    first = service.signed_optout_list()
    assert "010190" not in first
    listed = verify_optout_list(first, resolver=world.resolver(), trusted_hdabs={HDAB})
    assert listed.version == 1
    assert len(listed.registry.events) == 1
    assert service.record_optout("010190-123A", "opt-out") == 1  # twice in a row changes nothing
    world.clock.advance(timedelta(minutes=1))
    assert service.record_optout("010190-123A", "opt-in") == 2
    newer = verify_optout_list(
        service.signed_optout_list(), resolver=world.resolver(), trusted_hdabs={HDAB}, newer_than=1
    )
    assert newer.version == 2
    with pytest.raises(UserError):
        service.record_optout("010190-123A", "maybe")


def test_amendment_issues_a_new_version_and_retires_the_old_credential(
    service: HdabService, world: SigningWorld, engine: Engine
) -> None:
    permit = _to_decision(service, world)["permit"]
    old_token = service.permit_token_for(USER, permit.permit_id)
    lists = StatusListStore(engine, world.clock)

    def fetch(url: str) -> str:
        payload = status_list_credential(
            issuer=HDAB, url=url, status_list=lists.get(PERMIT_STATUS_LIST), valid_from=world.clock.now()
        )
        return issue_credential(payload, world.rings[HDAB].active, HDAB)

    verifier = PermitVerifier(resolver=world.resolver(), trusted_hdabs=(HDAB,), fetch_status_list=fetch)
    amended = service.new_version(
        permit.permit_id, "amend", reviewer=REVIEWER, params={"conditions": ["results reviewed by the HDAB"]}
    )
    assert amended.permit_id != permit.permit_id
    assert amended.version == permit.version + 1
    assert amended.state.value == "AMENDED"
    new_token = service.permit_token_for(USER, amended.permit_id)

    def query(permit_id: str, token: str) -> PermitQuery:
        return PermitQuery(
            PresentedPermit(permit_id, token), "ds-a", USER, "art53-1-e", None, world.clock.now()
        )

    assert verifier.check(query(amended.permit_id, new_token)).valid
    old = verifier.check(query(permit.permit_id, old_token))
    assert not old.valid
    assert "hdab.permit.amend" in _actions(engine, world)
    with pytest.raises(UserError):
        service.new_version(amended.permit_id, "extend", reviewer=REVIEWER, params={})


def test_data_user_publishes_a_result_citing_only_its_own_permit(
    service: HdabService, world: SigningWorld
) -> None:
    permit = _to_decision(service, world)["permit"]
    entry = service.publish_result(
        USER, permit.permit_id, title="HbA1c and retinopathy", url="https://doi.example/10.1/x", summary="..."
    )
    assert entry.permit_id == permit.permit_id
    results = service._store.register().query(entry="result")
    assert [e.title for e in results] == ["HbA1c and retinopathy"]
    with pytest.raises(NotFound):
        service.publish_result(
            "did:web:someone-else", permit.permit_id, title="t", url="https://x.example", summary=""
        )
