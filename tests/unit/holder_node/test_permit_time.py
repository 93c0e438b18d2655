"""Art. 71(3) at the holder: computations under a permit use its grant time, otherwise 'now'."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from d4h.clock import FixedClock
from d4h.holder.node_routes import _permit_time
from d4h.trust.jose import sign
from d4h.trust.keys import generate_key

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _node(caller: dict[str, Any] | None) -> Any:
    transfers = SimpleNamespace(caller_of=lambda _tid: caller)
    return SimpleNamespace(connector=SimpleNamespace(transfers=transfers), clock=FixedClock(NOW))


def _permit(granted: str, dataset: str = "ds") -> str:
    key = generate_key("Ed25519", at=NOW)
    subject = {"grantedAt": granted, "datasets": [dataset]}
    return sign({"credentialSubject": subject}, key, kid=f"did:web:hdab#{key.kid}", typ="vc+jwt")


def test_permit_grant_time_is_used_when_the_caller_presented_a_permit() -> None:
    node = _node({"permits": [_permit("2026-03-01T09:00:00Z")]})
    assert _permit_time(node, "t", "ds") == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_earliest_permit_wins_when_several_are_presented() -> None:
    node = _node({"permits": [_permit("2026-05-01T00:00:00Z"), _permit("2026-02-01T00:00:00Z")]})
    assert _permit_time(node, "t", "ds") == datetime(2026, 2, 1, tzinfo=UTC)


def test_now_applies_when_there_is_no_readable_permit() -> None:
    assert _permit_time(_node(None), "t", "ds") == NOW
    assert _permit_time(_node({"permits": ["not-a-jws"]}), "t", "ds") == NOW


def test_permit_for_another_dataset_does_not_protect_this_one() -> None:
    node = _node({"permits": [_permit("2026-03-01T09:00:00Z", dataset="other")]})
    assert _permit_time(node, "t", "ds") == NOW
