"""Art. 71(3) at the holder: tasks under a permit use its grant time (and its id as the project),
otherwise 'now' and the agreement."""

from __future__ import annotations

from datetime import UTC, datetime

from d4h.analytics.executor.service import _permit_facts
from d4h.contracts.enforcement import Counterparty
from d4h.trust.jose import sign
from d4h.trust.keys import generate_key

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _party(*permits: str) -> Counterparty:
    return Counterparty("did:web:institute", frozenset({"data_user"}), {}, tuple(permits))


def _permit(granted: str, dataset: str = "ds", permit_id: str = "P-1") -> str:
    key = generate_key("Ed25519", at=NOW)
    subject = {"grantedAt": granted, "datasets": [dataset], "permitId": permit_id}
    return sign({"credentialSubject": subject}, key, kid=f"did:web:hdab#{key.kid}", typ="vc+jwt")


def test_permit_grant_time_and_id_are_used_when_the_caller_presented_a_permit() -> None:
    facts = _permit_facts(_party(_permit("2026-03-01T09:00:00Z")), "ds", "agr-1", NOW)
    assert facts.granted_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert facts.permit_id == "P-1"
    assert facts.project == "permit:P-1"


def test_earliest_permit_wins_when_several_are_presented() -> None:
    party = _party(_permit("2026-05-01T00:00:00Z", permit_id="P-2"), _permit("2026-02-01T00:00:00Z"))
    facts = _permit_facts(party, "ds", "agr-1", NOW)
    assert facts.granted_at == datetime(2026, 2, 1, tzinfo=UTC)
    assert facts.permit_id == "P-1"


def test_now_and_the_agreement_apply_when_there_is_no_readable_permit() -> None:
    assert _permit_facts(_party(), "ds", "agr-1", NOW).granted_at == NOW
    facts = _permit_facts(_party("not-a-jws"), "ds", "agr-1", NOW)
    assert (facts.granted_at, facts.project, facts.permit_id) == (NOW, "agreement:agr-1", None)


def test_permit_for_another_dataset_does_not_protect_this_one() -> None:
    facts = _permit_facts(_party(_permit("2026-03-01T09:00:00Z", dataset="other")), "ds", "agr-1", NOW)
    assert facts.granted_at == NOW
