"""Data permits: grant, versions, VC-JOSE issue, and offline verification with one test per refusal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from d4h.clock import FixedClock
from d4h.errors import Conflict, UserError
from d4h.hdab import (
    PERMIT_TYPE,
    ApplicationKind,
    DataPermit,
    PermitRefusal,
    PermitState,
    PermitVerifier,
    amend_permit,
    expire_permit,
    grant_permit,
    issue_permit,
    permit_credential,
    read_permit,
    refusal_of,
    refuse,
    renew_permit,
    revoke_permit,
)
from d4h.policy import (
    AccessRequest,
    PermitQuery,
    PresentedPermit,
    Scope,
    evaluate,
    facts_from,
    health_offer,
)
from d4h.trust.jose import peek
from d4h.trust.status_list import status_entry
from tests.unit.hdab.hdab_factories import (
    HDAB,
    HOSPITAL_A,
    HOSPITAL_B,
    OTHER_USER,
    REVIEWER,
    STATUS_URL,
    T0,
    USER,
    SigningWorld,
    granted,
    make_form,
    processing,
)
from tests.unit.trust.trust_world import tamper_payload, tamper_signature

GRANT_AT = T0 + timedelta(days=11)
USE_AT = GRANT_AT + timedelta(days=30)


@pytest.fixture
def world() -> SigningWorld:
    return SigningWorld(FixedClock(GRANT_AT))


@pytest.fixture
def permit() -> DataPermit:
    return grant_permit(
        granted(),
        permit_id="permit-1",
        issuer=HDAB,
        at=GRANT_AT,
        authorised_persons=("Dr Ada Example",),
        conditions=("results only after output checking",),
    )


def _verifier(world: SigningWorld, trusted: tuple[str, ...] = (HDAB,)) -> PermitVerifier:
    return PermitVerifier(
        resolver=world.resolver(), trusted_hdabs=trusted, fetch_status_list=world.fetch_status
    )


def _query(token: str | None, **changes: Any) -> PermitQuery:
    values: dict[str, Any] = {
        "permit": PresentedPermit("permit-1", token),
        "dataset_id": "ds-a",
        "requester": USER,
        "purpose": "art53-1-e",
        "processing_mode": "aggregate-only",
        "at": USE_AT,
    }
    values.update(changes)
    return PermitQuery(**values)


def _issue(world: SigningWorld, permit: DataPermit, index: int = 7) -> str:
    return issue_permit(permit, world.rings[HDAB].active, status=status_entry(STATUS_URL, index))


class TestGrant:
    def test_grant_names_user_holders_datasets_and_window_when_application_granted(
        self, permit: DataPermit
    ) -> None:
        assert (permit.data_user, permit.holders, permit.datasets) == (
            USER,
            (HOSPITAL_A, HOSPITAL_B),
            ("ds-a", "ds-b"),
        )
        assert (permit.purpose, permit.processing_mode, permit.version) == ("art53-1-e", "aggregate-only", 1)
        assert permit.valid_from == GRANT_AT
        assert permit.valid_until == datetime(2028, 1, 26, 9, 0, tzinfo=UTC)  # 24 months
        assert permit.state_at(USE_AT) is PermitState.GRANTED

    def test_grant_is_refused_when_application_was_refused(self) -> None:
        app = refuse(processing(), at=GRANT_AT, reviewer=REVIEWER, justification="no")
        with pytest.raises(Conflict, match="no grant decision"):
            grant_permit(app, permit_id="p", issuer=HDAB, at=GRANT_AT, authorised_persons=("a",))

    def test_grant_is_refused_when_application_is_data_request(self) -> None:
        app = granted(make_form(kind=ApplicationKind.DATA_REQUEST))
        with pytest.raises(Conflict, match="data request"):
            grant_permit(app, permit_id="p", issuer=HDAB, at=GRANT_AT, authorised_persons=("a",))

    def test_grant_is_refused_when_no_authorised_person_is_named(self) -> None:
        with pytest.raises(ValueError, match="authorised_persons"):
            grant_permit(granted(), permit_id="p", issuer=HDAB, at=GRANT_AT, authorised_persons=())


class TestVersions:
    def test_amendment_gets_new_id_and_points_back_when_people_change(self, permit: DataPermit) -> None:
        amended = amend_permit(permit, new_id="permit-2", at=USE_AT, authorised_persons=("A", "B"))
        assert (amended.permit_id, amended.version, amended.previous_id) == ("permit-2", 2, "permit-1")
        assert amended.state is PermitState.AMENDED
        assert amended.granted_at == USE_AT
        assert amended.valid_until == permit.valid_until

    def test_amendment_is_refused_when_id_is_reused(self, permit: DataPermit) -> None:
        with pytest.raises(UserError, match="new id"):
            amend_permit(permit, new_id="permit-1", at=USE_AT, conditions=("x",))

    def test_amendment_is_refused_when_nothing_changes(self, permit: DataPermit) -> None:
        with pytest.raises(UserError, match="must change"):
            amend_permit(permit, new_id="permit-2", at=USE_AT)

    def test_renewal_extends_once_when_asked_a_month_before_expiry(self, permit: DataPermit) -> None:
        later = permit.valid_until + timedelta(days=365)
        renewed = renew_permit(permit, new_id="permit-2", at=USE_AT, valid_until=later)
        assert (renewed.state, renewed.valid_until, renewed.renewed) == (PermitState.RENEWED, later, True)
        with pytest.raises(Conflict, match="already renewed"):
            renew_permit(renewed, new_id="permit-3", at=USE_AT, valid_until=later + timedelta(days=1))

    def test_renewal_is_refused_when_asked_in_last_month(self, permit: DataPermit) -> None:
        late = permit.valid_until - timedelta(days=20)
        with pytest.raises(Conflict, match="one month before"):
            renew_permit(permit, new_id="p2", at=late, valid_until=permit.valid_until + timedelta(days=30))

    def test_renewal_is_refused_when_longer_than_ten_years(self, permit: DataPermit) -> None:
        too_far = permit.valid_until.replace(year=permit.valid_until.year + 10) + timedelta(days=1)
        with pytest.raises(UserError, match="10 years"):
            renew_permit(permit, new_id="p2", at=USE_AT, valid_until=too_far)

    def test_revocation_records_reason_when_hdab_revokes(self, permit: DataPermit) -> None:
        revoked = revoke_permit(permit, at=USE_AT, reason="breach of Art. 61")
        assert revoked.state_at(USE_AT) is PermitState.REVOKED
        assert revoked.state_at(USE_AT - timedelta(seconds=1)) is PermitState.GRANTED
        with pytest.raises(Conflict, match="already revoked"):
            revoke_permit(revoked, at=USE_AT, reason="again")
        with pytest.raises(Conflict, match="REVOKED"):
            amend_permit(revoked, new_id="p2", at=USE_AT, conditions=("x",))

    def test_expiry_is_refused_when_period_still_runs(self, permit: DataPermit) -> None:
        with pytest.raises(Conflict, match="runs until"):
            expire_permit(permit, at=USE_AT)
        assert expire_permit(permit, at=permit.valid_until).state is PermitState.EXPIRED
        assert permit.state_at(permit.valid_until) is PermitState.EXPIRED


class TestCredential:
    def test_credential_is_a_data_permit_vc_when_issued(
        self, world: SigningWorld, permit: DataPermit
    ) -> None:
        compact = peek(_issue(world, permit), what="permit")
        payload = compact.payload
        assert compact.header["typ"] == "vc+jwt"
        assert payload["type"] == ["VerifiableCredential", PERMIT_TYPE]
        assert payload["issuer"] == HDAB
        assert payload["credentialSubject"]["id"] == USER
        assert payload["credentialSubject"]["datasets"] == ["ds-a", "ds-b"]
        assert payload["credentialSubject"]["authorisedPersons"] == ["Dr Ada Example"]
        assert payload["credentialStatus"]["statusListIndex"] == "7"
        assert payload["validUntil"].startswith("2028-01-26")

    def test_read_permit_recovers_the_permit_when_given_its_payload(self, permit: DataPermit) -> None:
        assert read_permit(permit_credential(permit)) == permit
        amended = amend_permit(permit, new_id="permit-2", at=USE_AT, conditions=("c",))
        assert read_permit(permit_credential(amended)) == amended

    def test_read_permit_is_refused_when_payload_lacks_fields(self) -> None:
        with pytest.raises(UserError, match="malformed permit"):
            read_permit({"credentialSubject": {"id": USER}})

    def test_issue_is_refused_when_permit_is_revoked(self, world: SigningWorld, permit: DataPermit) -> None:
        with pytest.raises(Conflict):
            _issue(world, revoke_permit(permit, at=USE_AT, reason="r"))


class TestVerifier:
    def test_valid_permit_is_accepted_when_everything_matches(
        self, world: SigningWorld, permit: DataPermit
    ) -> None:
        verdict = _verifier(world).check(_query(_issue(world, permit)))
        assert verdict.valid, verdict.reason
        assert (verdict.permit_id, verdict.issuer, refusal_of(verdict)) == ("permit-1", HDAB, None)

    def test_permit_is_refused_as_missing_when_no_credential_is_presented(self, world: SigningWorld) -> None:
        verdict = _verifier(world).check(_query(None))
        assert refusal_of(verdict) is PermitRefusal.MISSING

    @pytest.mark.parametrize("how", ["payload", "signature"])
    def test_permit_is_refused_as_tampered_when_bytes_change(
        self, world: SigningWorld, permit: DataPermit, how: str
    ) -> None:
        token = _issue(world, permit)
        bad = tamper_payload(token, ("ds-b", "ds-c")) if how == "payload" else tamper_signature(token)
        verdict = _verifier(world).check(_query(bad))
        assert refusal_of(verdict) is PermitRefusal.TAMPERED, verdict.reason

    def test_permit_is_refused_when_issuer_is_not_a_trusted_hdab(
        self, world: SigningWorld, permit: DataPermit
    ) -> None:
        rogue = permit.model_copy(update={"issuer": "did:web:rogue.example"})
        token = issue_permit(
            rogue, world.rings["did:web:rogue.example"].active, status=status_entry(STATUS_URL, 1)
        )
        verdict = _verifier(world).check(_query(token))
        assert refusal_of(verdict) is PermitRefusal.UNTRUSTED_ISSUER
        assert "not a trusted issuer" in verdict.reason

    def test_permit_is_refused_as_expired_when_used_after_valid_until(
        self, world: SigningWorld, permit: DataPermit
    ) -> None:
        verdict = _verifier(world).check(
            _query(_issue(world, permit), at=permit.valid_until + timedelta(hours=1))
        )
        assert refusal_of(verdict) is PermitRefusal.EXPIRED

    def test_permit_is_refused_when_used_before_valid_from(
        self, world: SigningWorld, permit: DataPermit
    ) -> None:
        verdict = _verifier(world).check(_query(_issue(world, permit), at=GRANT_AT - timedelta(days=1)))
        assert refusal_of(verdict) is PermitRefusal.NOT_YET_VALID

    def test_permit_is_refused_as_revoked_when_status_bit_is_set(
        self, world: SigningWorld, permit: DataPermit
    ) -> None:
        token = _issue(world, permit, index=42)
        assert _verifier(world).check(_query(token)).valid
        world.status = world.status.with_bit(42)
        verdict = _verifier(world).check(_query(token))
        assert refusal_of(verdict) is PermitRefusal.REVOKED
        assert "index 42" in verdict.reason

    def test_permit_is_refused_when_status_list_cannot_be_fetched(
        self, world: SigningWorld, permit: DataPermit
    ) -> None:
        token = issue_permit(
            permit, world.rings[HDAB].active, status=status_entry("https://hdab.example/gone", 1)
        )
        verdict = _verifier(world).check(_query(token))
        assert refusal_of(verdict) is PermitRefusal.UNAVAILABLE

    @pytest.mark.parametrize(
        ("changes", "refusal"),
        [
            ({"dataset_id": "ds-other"}, PermitRefusal.WRONG_DATASET),
            ({"dataset_id": None}, PermitRefusal.WRONG_DATASET),
            ({"requester": OTHER_USER}, PermitRefusal.WRONG_REQUESTER),
            ({"requester": None}, PermitRefusal.WRONG_REQUESTER),
            ({"purpose": "art53-1-d"}, PermitRefusal.WRONG_PURPOSE),
            ({"purpose": "art54-c"}, PermitRefusal.WRONG_PURPOSE),
            ({"processing_mode": "pseudonymised-spe"}, PermitRefusal.WRONG_PROCESSING_MODE),
            ({"permit": PresentedPermit("permit-9", None)}, PermitRefusal.WRONG_PERMIT),
        ],
    )
    def test_permit_is_refused_with_named_reason_when_request_does_not_match(
        self, world: SigningWorld, permit: DataPermit, changes: dict[str, Any], refusal: PermitRefusal
    ) -> None:
        token = _issue(world, permit)
        if "permit" in changes:
            changes = {"permit": PresentedPermit("permit-9", token)}
        verdict = _verifier(world).check(_query(token, **changes))
        assert not verdict.valid
        assert refusal_of(verdict) is refusal, verdict.reason

    def test_superseded_version_is_refused_when_its_bit_is_flipped_after_amendment(
        self, world: SigningWorld, permit: DataPermit
    ) -> None:
        old = _issue(world, permit, index=3)
        amended = amend_permit(permit, new_id="permit-2", at=USE_AT, authorised_persons=("A", "B"))
        new = _issue(world, amended, index=4)
        world.status = world.status.with_bit(3)
        later = USE_AT + timedelta(days=1)
        assert refusal_of(_verifier(world).check(_query(old, at=later))) is PermitRefusal.REVOKED
        verdict = _verifier(world).check(_query(new, at=later, permit=PresentedPermit("permit-2", new)))
        assert verdict.valid, verdict.reason


@dataclass(frozen=True)
class _Participant:
    did: str
    roles: frozenset[str] = frozenset({"data_user"})
    claims: dict[str, Any] = field(default_factory=lambda: {"membership": "active", "country": "LU"})


class TestPolicyHook:
    def _decide(self, world: SigningWorld, token: str) -> tuple[bool, tuple[str, ...]]:
        offer = health_offer("offer-1", purposes=("art53-1-e",), processing_modes=("aggregate-only",))
        request = AccessRequest(
            dataset_id="ds-a",
            purpose="art53-1-e",
            processing_mode="aggregate-only",
            permit=PresentedPermit("permit-1", token),
        )
        facts = facts_from(_Participant(USER), request, FixedClock(USE_AT), permit_check=_verifier(world))
        decision = evaluate(offer, facts, Scope.CONTRACT_NEGOTIATION)
        return decision.allowed, decision.reasons

    def test_negotiation_is_allowed_when_permit_verifies(
        self, world: SigningWorld, permit: DataPermit
    ) -> None:
        allowed, reasons = self._decide(world, _issue(world, permit, index=9))
        assert allowed, reasons

    def test_negotiation_is_denied_with_revocation_reason_when_permit_is_revoked(
        self, world: SigningWorld, permit: DataPermit
    ) -> None:
        token = _issue(world, permit, index=9)
        world.status = world.status.with_bit(9)
        allowed, reasons = self._decide(world, token)
        assert not allowed
        assert any("revoked" in r for r in reasons), reasons
