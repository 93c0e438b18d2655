"""The management listing reads stored documents directly: it must say what the full value says."""

from __future__ import annotations

import orjson

from d4h.contracts import negotiation as neg
from d4h.contracts.codec import encode_negotiation
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.routes import _negotiation, _negotiation_listed
from tests.negotiations import AGREEMENT, AT, consumer_request, provider_opened


def _states() -> list[ContractNegotiation]:
    consumer = consumer_request()
    provider = provider_opened(consumer)
    agreeing = neg.agree(provider, AGREEMENT, at=AT)
    return [
        consumer,
        provider,
        neg.set_pending(provider, True, reason="permit missing"),
        agreeing,
        neg.retry(agreeing, at=AT, error="peer unreachable"),
        neg.terminate(provider, at=AT, reason="refused"),
    ]


def test_listed_negotiations_equal_the_full_values() -> None:
    listed = [_negotiation_listed(orjson.loads(encode_negotiation(n))) for n in _states()]
    assert listed == [_negotiation(n) for n in _states()]
    assert {x.agreement_id for x in listed} == {None, "urn:agreement:1"}
    assert any(x.pending for x in listed) and any(x.error_detail for x in listed)
