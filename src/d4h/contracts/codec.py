"""JSON encoding of negotiation and transfer values for the database (not the wire)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import orjson

from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.states import NegotiationState, Side, TransferState
from d4h.contracts.transfer import TransferProcess
from d4h.dsp.messages import Agreement, DataAddress, Offer


def _model(value: Any) -> Any:
    return None if value is None else value.model_dump(mode="json", by_alias=True, exclude_none=True)


def encode_negotiation(n: ContractNegotiation) -> str:
    doc = {
        "id": n.id,
        "side": n.side.value,
        "counter_party_id": n.counter_party_id,
        "counter_party_address": n.counter_party_address,
        "state": n.state.value,
        "state_timestamp": n.state_timestamp.isoformat(),
        "consumer_pid": n.consumer_pid,
        "provider_pid": n.provider_pid,
        "state_count": n.state_count,
        "pending": n.pending,
        "error_detail": n.error_detail,
        "reason": n.reason,
        "offer": _model(n.offer),
        "agreement": _model(n.agreement),
    }
    return orjson.dumps(doc).decode()


# A process is read several times per message (claim, lease, decision) and its document only changes when it
# is saved: decoding, mostly validating the offer and agreement, is kept per document text. The values are
# frozen and the functional core never changes them in place.
@functools.lru_cache(maxsize=2048)
def decode_negotiation(text: str) -> ContractNegotiation:
    d = orjson.loads(text)
    return ContractNegotiation(
        id=d["id"],
        side=Side(d["side"]),
        counter_party_id=d["counter_party_id"],
        counter_party_address=d["counter_party_address"],
        state=NegotiationState(d["state"]),
        state_timestamp=datetime.fromisoformat(d["state_timestamp"]),
        consumer_pid=d["consumer_pid"],
        provider_pid=d["provider_pid"],
        state_count=d["state_count"],
        pending=d["pending"],
        error_detail=d["error_detail"],
        reason=d["reason"],
        offer=None if d["offer"] is None else Offer.model_validate(d["offer"]),
        agreement=None if d["agreement"] is None else Agreement.model_validate(d["agreement"]),
    )


def encode_transfer(t: TransferProcess) -> str:
    doc = {
        "id": t.id,
        "side": t.side.value,
        "counter_party_id": t.counter_party_id,
        "counter_party_address": t.counter_party_address,
        "agreement_id": t.agreement_id,
        "format": t.format,
        "state": t.state.value,
        "state_timestamp": t.state_timestamp.isoformat(),
        "consumer_pid": t.consumer_pid,
        "provider_pid": t.provider_pid,
        "state_count": t.state_count,
        "pending": t.pending,
        "error_detail": t.error_detail,
        "reason": t.reason,
        "data_address": _model(t.data_address),
    }
    return orjson.dumps(doc).decode()


@functools.lru_cache(maxsize=2048)
def decode_transfer(text: str) -> TransferProcess:
    d = orjson.loads(text)
    return TransferProcess(
        id=d["id"],
        side=Side(d["side"]),
        counter_party_id=d["counter_party_id"],
        counter_party_address=d["counter_party_address"],
        agreement_id=d["agreement_id"],
        format=d["format"],
        state=TransferState(d["state"]),
        state_timestamp=datetime.fromisoformat(d["state_timestamp"]),
        consumer_pid=d["consumer_pid"],
        provider_pid=d["provider_pid"],
        state_count=d["state_count"],
        pending=d["pending"],
        error_detail=d["error_detail"],
        reason=d["reason"],
        data_address=None if d["data_address"] is None else DataAddress.model_validate(d["data_address"]),
    )
