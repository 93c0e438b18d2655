"""The Art. 71 opt-out registry: tokens, reversible events, Art. 71(3), and the signed versioned list."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from d4h.clock import FixedClock
from d4h.errors import Conflict, Unauthenticated, UserError
from d4h.hdab import (
    OptOutRegistry,
    opt_in,
    opt_out,
    optout_list_document,
    optout_token,
    sign_optout_list,
    verify_optout_list,
)
from d4h.holder.optout import OptOutList
from d4h.holder.optout import optout_token as holder_token
from tests.unit.hdab.hdab_factories import HDAB, SigningWorld
from tests.unit.trust.trust_world import tamper_payload

KEY = bytes(range(32))
T = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
ALICE = optout_token(KEY, "1980 0101-123")
BOB = optout_token(KEY, "19751231999")


@pytest.fixture
def world() -> SigningWorld:
    return SigningWorld(FixedClock(T))


class TestTokens:
    def test_token_is_same_when_identifier_is_written_differently(self) -> None:
        assert optout_token(KEY, "1980 0101-123") == optout_token(KEY, "19800101123") == ALICE

    def test_token_differs_when_key_differs(self) -> None:
        assert optout_token(bytes(32), "19800101123") != ALICE

    def test_token_matches_holder_token_when_key_is_shared(self) -> None:
        assert holder_token(KEY, "1980.0101/123") == ALICE

    def test_token_never_contains_identifier_when_computed(self) -> None:
        assert len(ALICE) == 64
        assert "19800101123" not in ALICE

    def test_token_is_refused_when_key_is_short(self) -> None:
        with pytest.raises(UserError, match="32 bytes"):
            optout_token(b"short", "19800101123")

    def test_registry_refuses_raw_identifier_when_given_as_token(self) -> None:
        with pytest.raises(UserError, match="never an identifier"):
            opt_out(OptOutRegistry(), "19800101123", at=T)


class TestRegistry:
    def test_person_is_excluded_when_opted_out_before_grant(self) -> None:
        registry = opt_out(OptOutRegistry(), ALICE, at=T)
        assert registry.excluded(ALICE, T + timedelta(days=1))
        assert not registry.excluded(BOB, T + timedelta(days=1))

    def test_earlier_permit_is_unaffected_when_opt_out_comes_after_grant(self) -> None:
        registry = opt_out(OptOutRegistry(), ALICE, at=T)
        assert not registry.excluded(ALICE, T - timedelta(seconds=1))

    def test_person_is_excluded_when_opt_out_and_grant_are_simultaneous(self) -> None:
        assert opt_out(OptOutRegistry(), ALICE, at=T).excluded(ALICE, T)

    def test_opt_in_makes_data_available_again_when_later_permits_are_granted(self) -> None:
        registry = opt_in(opt_out(OptOutRegistry(), ALICE, at=T), ALICE, at=T + timedelta(days=10))
        assert registry.excluded(ALICE, T + timedelta(days=5))  # granted while opted out
        assert not registry.excluded(ALICE, T + timedelta(days=11))
        assert registry.excluded_tokens(T + timedelta(days=5)) == {ALICE}
        assert registry.excluded_tokens(T + timedelta(days=11)) == frozenset()

    def test_opt_in_is_refused_when_person_never_opted_out(self) -> None:
        with pytest.raises(Conflict, match="no opt-out"):
            opt_in(OptOutRegistry(), ALICE, at=T)

    def test_repeated_opt_out_changes_nothing_when_already_opted_out(self) -> None:
        once = opt_out(OptOutRegistry(), ALICE, at=T)
        assert opt_out(once, ALICE, at=T + timedelta(days=1)) is once
        assert once.version == 1

    def test_each_change_bumps_version_when_recorded(self) -> None:
        registry = opt_out(opt_out(OptOutRegistry(), ALICE, at=T), BOB, at=T)
        registry = opt_in(registry, ALICE, at=T + timedelta(days=1))
        assert registry.version == 3
        assert [e.action for e in registry.events] == ["opt_out", "opt_out", "withdraw"]

    def test_event_is_refused_when_earlier_than_last_recorded(self) -> None:
        registry = opt_out(OptOutRegistry(), ALICE, at=T)
        with pytest.raises(Conflict, match="earlier"):
            opt_out(registry, BOB, at=T - timedelta(days=1))

    def test_opt_out_wins_when_opt_in_has_the_same_time(self) -> None:
        out = opt_out(OptOutRegistry(), ALICE, at=T)
        with pytest.raises(Conflict, match="after the opt-out"):
            opt_in(out, ALICE, at=T)
        back = out.events[0].model_copy(update={"action": "withdraw"})
        registry = OptOutRegistry(events=(*out.events, back), version=2)  # e.g. a list read from elsewhere
        assert registry.excluded(ALICE, T)
        assert registry.excluded_tokens(T) == {ALICE}
        holder_view = OptOutList.from_json(optout_list_document(registry, issuer=HDAB, published_at=T))
        assert holder_view.is_excluded(ALICE, T)

    def test_registry_is_refused_when_events_are_out_of_time_order(self) -> None:
        later = opt_out(OptOutRegistry(), ALICE, at=T).events[0]
        earlier = later.model_copy(update={"token": BOB, "at": T - timedelta(days=1)})
        with pytest.raises(UserError, match="time order"):
            OptOutRegistry(events=(later, earlier))

    def test_naive_time_is_refused_when_recording(self) -> None:
        with pytest.raises(UserError, match="timezone-aware"):
            opt_out(OptOutRegistry(), ALICE, at=datetime(2027, 1, 1))


class TestPublishedList:
    def _signed(self, world: SigningWorld, registry: OptOutRegistry) -> str:
        document = optout_list_document(registry, issuer=HDAB, published_at=T)
        return sign_optout_list(document, world.rings[HDAB].active)

    def test_signed_list_verifies_when_issuer_is_trusted(self, world: SigningWorld) -> None:
        registry = opt_in(opt_out(OptOutRegistry(), ALICE, at=T), ALICE, at=T + timedelta(hours=1))
        published = verify_optout_list(
            self._signed(world, registry), resolver=world.resolver(), trusted_hdabs=(HDAB,)
        )
        assert (published.issuer, published.version) == (HDAB, 2)
        assert published.registry.events == registry.events

    def test_list_is_refused_when_tampered(self, world: SigningWorld) -> None:
        token = self._signed(world, opt_out(OptOutRegistry(), ALICE, at=T))
        bad = tamper_payload(token, ('"opt_out"', '"withdraw"'))
        with pytest.raises(Unauthenticated, match="signature"):
            verify_optout_list(bad, resolver=world.resolver(), trusted_hdabs=(HDAB,))

    def test_list_is_refused_when_issuer_is_not_trusted(self, world: SigningWorld) -> None:
        token = self._signed(world, opt_out(OptOutRegistry(), ALICE, at=T))
        with pytest.raises(Unauthenticated, match="not a trusted HDAB"):
            verify_optout_list(token, resolver=world.resolver(), trusted_hdabs=("did:web:other.example",))

    def test_list_is_refused_when_version_is_not_newer_than_held(self, world: SigningWorld) -> None:
        token = self._signed(world, opt_out(OptOutRegistry(), ALICE, at=T))
        with pytest.raises(Unauthenticated, match="not newer"):
            verify_optout_list(token, resolver=world.resolver(), trusted_hdabs=(HDAB,), newer_than=1)
        assert (
            verify_optout_list(token, resolver=world.resolver(), trusted_hdabs=(HDAB,), newer_than=0).version
            == 1
        )

    def test_holder_reads_the_list_and_agrees_when_given_the_payload(self, world: SigningWorld) -> None:
        registry = opt_out(opt_out(OptOutRegistry(), ALICE, at=T), BOB, at=T + timedelta(days=2))
        document = optout_list_document(registry, issuer=HDAB, published_at=T + timedelta(days=3))
        holder_view = OptOutList.from_json(document)
        for granted_at in (T - timedelta(days=1), T + timedelta(days=1), T + timedelta(days=3)):
            assert holder_view.excluded_tokens(granted_at) == registry.excluded_tokens(granted_at)

    def test_document_holds_tokens_only_when_published(self) -> None:
        document = optout_list_document(opt_out(OptOutRegistry(), ALICE, at=T), issuer=HDAB, published_at=T)
        assert "19800101123" not in str(document)
        assert document["events"] == [{"token": ALICE, "at": T.isoformat(), "action": "opt_out"}]
