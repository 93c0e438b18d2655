"""Access tokens for a verifier are reused for a minute, then issued afresh (fewer signatures per call)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from d4h.store.db import make_engine, sqlite_url
from d4h.store.migrate import upgrade
from d4h.trust.access_tokens import verify_access_token
from d4h.trust.jose import peek
from d4h.trust.service import ACCESS_TOKEN_REUSE, NodeTrust


class _Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


def test_access_tokens_are_reused_per_verifier_for_a_minute(tmp_path: Path) -> None:
    clock = _Clock()
    engine = make_engine(sqlite_url(tmp_path / "node.db"))
    upgrade(engine)
    trust = NodeTrust(
        base_url="http://127.0.0.1:8001", keys_dir=tmp_path / "keys", engine=engine, clock=clock,  # type: ignore[arg-type]
        dev_mode=True, trusted_issuers=(),
    )  # fmt: skip
    first = trust.access_token_for("did:web:verifier-a")
    assert trust.access_token_for("did:web:verifier-a") == first
    assert trust.access_token_for("did:web:verifier-b") != first  # bound to its verifier: never shared
    clock.at += ACCESS_TOKEN_REUSE - timedelta(seconds=1)
    assert trust.access_token_for("did:web:verifier-a") == first
    # A reused token still has most of its life left, and still verifies for its verifier.
    grant = verify_access_token(
        first,
        holder_did=trust.did,
        ring=trust.keyring,
        presenter_did="did:web:verifier-a",
        clock=clock,  # type: ignore[arg-type]
    )
    assert grant.expires_at - clock.at >= timedelta(minutes=3)
    clock.at += timedelta(seconds=1)
    fresh = trust.access_token_for("did:web:verifier-a")
    assert fresh != first and peek(fresh, what="t").payload["iat"] == int(clock.at.timestamp())
    # Each call's SI token stays new (its own jti) even when the access token inside is reused.
    one, two = trust.id_token_for("did:web:verifier-a"), trust.id_token_for("did:web:verifier-a")
    assert peek(one, what="t").payload["jti"] != peek(two, what="t").payload["jti"]
    assert peek(one, what="t").payload["token"] == peek(two, what="t").payload["token"] == fresh
    engine.dispose()
