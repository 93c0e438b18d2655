"""Permit enforcement at a holder: the presented permit drives the dataPermit, purpose and mode facts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from d4h.clock import FixedClock
from d4h.contracts.enforcement import Counterparty, decide
from d4h.hdab import DataPermit, PermitVerifier, grant_permit, issue_permit
from d4h.policy import Scope, health_offer
from d4h.trust.status_list import status_entry
from tests.unit.hdab.hdab_factories import HDAB, OTHER_USER, STATUS_URL, T0, USER, SigningWorld, granted

GRANT_AT = T0 + timedelta(days=11)
USE_AT = GRANT_AT + timedelta(days=30)
INDEX = 3
OFFER = health_offer("offer-1")  # member, data user, art53-1-e, aggregate-only, EEA, permit required


@pytest.fixture
def world() -> SigningWorld:
    return SigningWorld(FixedClock(USE_AT))


@pytest.fixture
def permit() -> DataPermit:
    return grant_permit(
        granted(), permit_id="permit-1", issuer=HDAB, at=GRANT_AT, authorised_persons=("Dr A",)
    )


def _token(world: SigningWorld, permit: DataPermit) -> str:
    return issue_permit(permit, world.rings[HDAB].active, status=status_entry(STATUS_URL, INDEX))


def _party(did: str = USER, permits: tuple[str, ...] = ()) -> Counterparty:
    claims = {"membership": "active", "country": "LU"}
    return Counterparty(did, frozenset({"data_user"}), claims, permits)


def _decide(
    world: SigningWorld, party: Counterparty, dataset: str = "ds-a", scope: Scope = Scope.CONTRACT_NEGOTIATION
):
    verifier = PermitVerifier(
        resolver=world.resolver(), trusted_hdabs=(HDAB,), fetch_status_list=world.fetch_status
    )
    return decide(OFFER, party, scope, world.clock, dataset_id=dataset, permit_check=verifier)


def test_contract_is_allowed_when_a_valid_permit_names_dataset_requester_and_purpose(
    world: SigningWorld, permit: DataPermit
) -> None:
    decision = _decide(world, _party(permits=(_token(world, permit),)))
    assert decision.allowed, decision.reasons


def test_contract_waits_on_a_permit_when_none_is_presented(world: SigningWorld) -> None:
    decision = _decide(world, _party())
    assert not decision.allowed
    # Every reason names the permit, so the provider keeps the negotiation pending (steps.py).
    assert decision.reasons
    assert all("permit" in r.lower() for r in decision.reasons), decision.reasons


def test_contract_is_refused_naming_revocation_when_the_permit_bit_is_set(
    world: SigningWorld, permit: DataPermit
) -> None:
    token = _token(world, permit)
    world.status = world.status.with_bit(INDEX, True)
    decision = _decide(world, _party(permits=(token,)), scope=Scope.POLICY_MONITOR)
    assert not decision.allowed
    assert any("revoked" in r for r in decision.reasons), decision.reasons


def test_contract_is_refused_when_the_permit_does_not_name_the_dataset(
    world: SigningWorld, permit: DataPermit
) -> None:
    decision = _decide(world, _party(permits=(_token(world, permit),)), dataset="ds-other")
    assert not decision.allowed
    assert any("wrong dataset" in r for r in decision.reasons), decision.reasons


def test_contract_is_refused_when_another_participant_presents_the_permit(
    world: SigningWorld, permit: DataPermit
) -> None:
    decision = _decide(world, _party(OTHER_USER, permits=(_token(world, permit),)))
    assert not decision.allowed
    assert any("wrong requester" in r for r in decision.reasons), decision.reasons


def test_contract_is_refused_when_the_permit_purpose_is_not_offered(world: SigningWorld) -> None:
    from tests.unit.hdab.hdab_factories import make_form

    other = grant_permit(
        granted(make_form(purpose="art53-1-d")),
        permit_id="permit-2",
        issuer=HDAB,
        at=GRANT_AT,
        authorised_persons=("Dr A",),
    )
    decision = _decide(world, _party(permits=(_token(world, other),)))
    assert not decision.allowed
    assert any("purpose" in r for r in decision.reasons), decision.reasons


def test_a_valid_permit_wins_when_another_presented_permit_is_malformed(
    world: SigningWorld, permit: DataPermit
) -> None:
    decision = _decide(world, _party(permits=("not-a-jwt", _token(world, permit))))
    assert decision.allowed, decision.reasons


def test_counterparty_keeps_its_permits_when_stored_as_json(world: SigningWorld, permit: DataPermit) -> None:
    party = _party(permits=(_token(world, permit),))
    again = Counterparty.from_json(party.as_json())
    assert again == party
    assert Counterparty.from_json({"did": USER, "roles": []}).permits == ()
