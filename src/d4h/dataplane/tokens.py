"""Data-plane access tokens: issued at transfer start, revoked on suspension, completion or termination."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select, update

from d4h.clock import Clock
from d4h.dsp.messages import DataAddress, EndpointProperty
from d4h.errors import Unauthenticated
from d4h.store.db import transaction
from d4h.store.tables.connector import data_tokens

ENDPOINT_TYPE = "https://w3id.org/idsa/v4.1/HTTP"
DEFAULT_TTL_S = 3600.0
PULL_FORMATS = {"HttpData-PULL": "/api/v1/data", "Analysis-PULL": "/api/v1/analysis"}


@dataclass(frozen=True)
class TokenGrant:
    transfer_id: str
    dataset_id: str
    consumer: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DataPlane:
    def __init__(self, engine: Engine, clock: Clock, base_url: str, *, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._engine = engine
        self._clock = clock
        self._base = base_url.rstrip("/")
        self._ttl = ttl_s

    def issue(
        self, conn: Connection, *, transfer_id: str, fmt: str, dataset_id: str, consumer: str
    ) -> DataAddress:
        """A fresh token for one transfer; previous tokens of the transfer are revoked."""
        self.revoke(conn, transfer_id)
        token = secrets.token_urlsafe(32)
        conn.execute(
            insert(data_tokens).values(
                token_sha256=_digest(token),
                transfer_id=transfer_id,
                dataset_id=dataset_id,
                consumer=consumer,
                expires_at=self._clock.now().timestamp() + self._ttl,
                revoked=False,
                uses=0,
            )
        )
        path = PULL_FORMATS.get(fmt, "/api/v1/data")
        return DataAddress(
            endpointType=ENDPOINT_TYPE,
            endpoint=f"{self._base}{path}/{transfer_id}",
            endpointProperties=(
                EndpointProperty(name="authorization", value=token),
                EndpointProperty(name="authType", value="bearer"),
                EndpointProperty(name="expiresIn", value=str(int(self._ttl))),
            ),
        )

    def revoke(self, conn: Connection, transfer_id: str) -> int:
        return conn.execute(
            update(data_tokens).where(data_tokens.c.transfer_id == transfer_id).values(revoked=True)
        ).rowcount

    def check(self, token: str, transfer_id: str) -> TokenGrant:
        """The grant behind a presented token; refuses unknown, revoked, expired or misdirected tokens."""
        with transaction(self._engine) as conn:
            row = conn.execute(
                select(data_tokens).where(data_tokens.c.token_sha256 == _digest(token))
            ).first()
            if row is None or row.transfer_id != transfer_id:
                raise Unauthenticated("data token is not valid for this transfer")
            if row.revoked:
                raise Unauthenticated("data token was revoked (transfer suspended, completed or terminated)")
            if row.expires_at < self._clock.now().timestamp():
                raise Unauthenticated("data token has expired")
            conn.execute(
                update(data_tokens)
                .where(data_tokens.c.token_sha256 == row.token_sha256)
                .values(uses=row.uses + 1)
            )
            return TokenGrant(row.transfer_id, row.dataset_id, row.consumer)
