"""Management listing of negotiations: per-state counts and the state filter (operators wait on these)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.states import NegotiationState, Side
from d4h.dsp import messages as m
from d4h.store.db import transaction
from tests.apps import RunningApp

OFFER = m.Offer(id="urn:offer:1", target="ds-1", permission=(m.Permission(action="use"),))
AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _seed(app: RunningApp, states: list[NegotiationState]) -> list[str]:
    ids = []
    with transaction(app.ctx.engine) as conn:
        for state in states:
            n = ContractNegotiation(
                id=uuid.uuid4().hex, side=Side.PROVIDER, counter_party_id="did:web:peer",
                counter_party_address="https://peer/dsp", state=state, state_timestamp=AT,
                consumer_pid=f"urn:uuid:{uuid.uuid4()}", provider_pid=f"urn:uuid:{uuid.uuid4()}", offer=OFFER,
            )  # fmt: skip
            app.ctx.connector.negotiations.create(n, conn)
            ids.append(n.id)
    return ids


def test_summary_counts_negotiations_per_state(node_app: RunningApp) -> None:
    c = node_app.client
    assert c.get("/api/v1/negotiations/summary", headers=node_app.admin()).json() == {}
    _seed(node_app, [NegotiationState.REQUESTED] * 2 + [NegotiationState.FINALIZED])
    got = c.get("/api/v1/negotiations/summary", headers=node_app.admin())
    assert got.status_code == 200 and got.json() == {"REQUESTED": 2, "FINALIZED": 1}
    assert c.get("/api/v1/negotiations/summary").status_code == 401  # management: admin only


def test_listing_narrows_to_the_states_asked_for(node_app: RunningApp) -> None:
    requested, agreed, finalized = _seed(
        node_app, [NegotiationState.REQUESTED, NegotiationState.AGREED, NegotiationState.FINALIZED]
    )
    c = node_app.client

    def listed(**params: object) -> set[str]:
        resp = c.get("/api/v1/negotiations", params=params, headers=node_app.admin())
        assert resp.status_code == 200, resp.text
        return {x["id"] for x in resp.json()}

    assert listed() == {requested, agreed, finalized}
    assert listed(state="REQUESTED") == {requested}
    assert listed(state=["REQUESTED", "AGREED"]) == {requested, agreed}
    bad = c.get("/api/v1/negotiations", params={"state": "DONE"}, headers=node_app.admin())
    assert bad.status_code in (400, 422) and "state" in bad.text
