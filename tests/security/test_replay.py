"""Replay: a DCP token seen by one process of a node is refused by every other process sharing its database;
a data-plane token stops working when its transfer ends or its hour is up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from d4h.clock import FixedClock
from d4h.errors import Unauthenticated
from d4h.store.db import make_engine, transaction
from d4h.trust.repository import SqlReplayStore
from d4h.trust.tokens import MAX_TOKEN_LIFETIME, verify_id_token
from tests.security.conftest import Node
from tests.unit.trust.trust_world import ALICE, World

VERIFIER = "did:web:verifier.example"


def test_a_token_seen_by_one_process_is_a_replay_for_another_sharing_the_database(
    engine: Engine, db_url: str, fixed_clock: FixedClock
) -> None:
    world = World(fixed_clock)
    alice = world.add(ALICE)
    token = world.id_token(alice, VERIFIER)
    other_process = make_engine(db_url)  # a second engine: its own connection pool, as another process
    try:
        first, second = SqlReplayStore(engine, fixed_clock), SqlReplayStore(other_process, fixed_clock)
        resolver = world.resolver()

        def verify(store: SqlReplayStore) -> str:
            checked = verify_id_token(
                token, own_did=VERIFIER, resolver=resolver, clock=fixed_clock, replay_store=store
            )
            return checked.subject

        assert verify(first) == ALICE
        with pytest.raises(Unauthenticated, match="already used"):
            verify(second)
        # Just past exp the token is still inside the verifier's leeway; a purge must keep its jti.
        fixed_clock.advance(MAX_TOKEN_LIFETIME + timedelta(seconds=20))
        first.purge()
        with pytest.raises(Unauthenticated, match="already used"):
            verify(second)
    finally:
        other_process.dispose()


def _channel(node: Node, transfer_id: str) -> str:
    with transaction(node.ctx.engine) as conn:
        address = node.ctx.dataplane.issue(
            conn, transfer_id=transfer_id, fmt="Analysis-PULL", dataset_id="ds", consumer="did:web:c.example"
        )
    token = address.endpoint_property("authorization")
    assert token
    return token


def test_data_token_is_refused_after_revocation_expiry_or_for_another_transfer(holder: Node) -> None:
    c = holder.client
    token = _channel(holder, "t-1")
    bearer = {"Authorization": f"Bearer {token}"}
    assert c.get("/api/v1/analysis/t-1", headers=bearer).status_code == 200
    other = c.get("/api/v1/analysis/t-2", headers=bearer)  # a token opens its own transfer only
    assert other.status_code == 401 and token not in other.text

    with transaction(holder.ctx.engine) as conn:  # the transfer was suspended, completed or terminated
        holder.ctx.dataplane.revoke(conn, "t-1")
    revoked = c.get("/api/v1/analysis/t-1", headers=bearer)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]
    assert token not in revoked.text

    fresh = _channel(holder, "t-1")
    assert c.get("/api/v1/analysis/t-1", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200
    holder.clock.advance(timedelta(hours=1, seconds=1))
    expired = c.get("/api/v1/analysis/t-1", headers={"Authorization": f"Bearer {fresh}"})
    assert expired.status_code == 401 and "expired" in expired.json()["message"]
    # The old token of a re-issued transfer stays dead.
    assert c.get("/api/v1/analysis/t-1", headers=bearer).status_code == 401
