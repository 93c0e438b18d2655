"""Trust persistence: the replay store, held credentials, membership applications and status lists."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from d4h.clock import Clock, utc_iso
from d4h.errors import Conflict, NotFound
from d4h.store import raw
from d4h.store.db import reading, transaction
from d4h.store.tables.trust import membership_applications, status_lists, trust_credentials, trust_replay
from d4h.trust.presentations import StoredCredential
from d4h.trust.status_list import BitstringStatusList

# Runs on every authenticated call: straight to the driver (see d4h.store.raw). RETURNING yields a row
# only when the id was new.
_REMEMBER = raw.Sql(
    "INSERT INTO trust_replay (jti, expires_at) VALUES (:jti, :until) ON CONFLICT (jti) DO NOTHING RETURNING jti"
)


class SqlReplayStore:
    """Token ids seen by this node, kept until they expire; shared by every process of the node."""

    def __init__(self, engine: Engine, clock: Clock, *, retention_s: float = 300.0) -> None:
        self._engine = engine
        self._clock = clock
        self._retention = retention_s
        self._inserts = 0

    def remember(self, jti: str, expires_at: datetime) -> bool:
        with transaction(self._engine) as conn:
            seen = raw.first(conn, _REMEMBER, {"jti": jti, "until": expires_at.timestamp() + self._retention})
        if seen is None:  # the id was there already: a replay
            return False
        self._inserts += 1
        if self._inserts % 500 == 0:
            self.purge()
        return True

    def purge(self) -> int:
        now = self._clock.now().timestamp()
        with transaction(self._engine) as conn:
            return conn.execute(delete(trust_replay).where(trust_replay.c.expires_at < now)).rowcount


class CredentialStore:
    """Credentials this node holds (its own membership and legal-person credentials)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def save(self, token: str, *, issuer: str, subject: str, valid_until: str | None) -> StoredCredential:
        stored = StoredCredential.from_jwt(token)
        values = {
            "types": " ".join(stored.types),
            "issuer": issuer,
            "subject": subject,
            "valid_until": valid_until,
            "stored_at": utc_iso(self._clock.now()),
            "jwt": token,
        }
        with transaction(self._engine) as conn:
            key = stored.id or f"urn:d4h:credential:{hashlib.sha256(token.encode()).hexdigest()[:32]}"
            if conn.execute(select(trust_credentials.c.id).where(trust_credentials.c.id == key)).first():
                conn.execute(update(trust_credentials).where(trust_credentials.c.id == key).values(**values))
            else:
                conn.execute(insert(trust_credentials).values(id=key, **values))
        return stored

    def all(self) -> list[StoredCredential]:
        with reading(self._engine) as conn:
            rows = conn.execute(select(trust_credentials.c.jwt).order_by(trust_credentials.c.stored_at)).all()
        return [StoredCredential.from_jwt(r[0]) for r in rows]

    def rows(self) -> list[dict[str, Any]]:
        with reading(self._engine) as conn:
            rows = (
                conn.execute(select(trust_credentials).order_by(trust_credentials.c.stored_at))
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]


@dataclass(frozen=True)
class Application:
    id: str
    did: str
    legal_name: str
    registration_number: str
    country: str
    roles: tuple[str, ...]
    state: str  # SUBMITTED | ISSUED | REJECTED | REVOKED
    reason: str | None
    status_list: str | None
    status_index: int | None
    credentials: tuple[str, ...]
    created_at: str
    decided_at: str | None


def _application(row: Any) -> Application:
    return Application(
        id=row.id,
        did=row.did,
        legal_name=row.legal_name,
        registration_number=row.registration_number,
        country=row.country,
        roles=tuple(row.roles.split()),
        state=row.state,
        reason=row.reason,
        status_list=row.status_list,
        status_index=row.status_index,
        credentials=tuple(json.loads(row.credentials or "[]")),
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


class ApplicationStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, app: Application) -> None:
        with transaction(self._engine) as conn:
            conn.execute(
                insert(membership_applications).values(
                    id=app.id,
                    did=app.did,
                    legal_name=app.legal_name,
                    registration_number=app.registration_number,
                    country=app.country,
                    roles=" ".join(app.roles),
                    state=app.state,
                    reason=app.reason,
                    created_at=app.created_at,
                )
            )

    def get(self, app_id: str) -> Application:
        with reading(self._engine) as conn:
            row = conn.execute(
                select(membership_applications).where(membership_applications.c.id == app_id)
            ).first()
        if row is None:
            raise NotFound(f"membership application {app_id} not found")
        return _application(row)

    def list(self, *, did: str | None = None) -> list[Application]:
        query = select(membership_applications).order_by(membership_applications.c.created_at)
        if did is not None:
            query = query.where(membership_applications.c.did == did)
        with reading(self._engine) as conn:
            return [_application(r) for r in conn.execute(query).all()]

    def decide(
        self,
        app_id: str,
        *,
        expected_state: str,
        state: str,
        at: str,
        reason: str | None = None,
        credentials: Sequence[str] | None = None,
        status_list: str | None = None,
        status_index: int | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state, "decided_at": at, "reason": reason}
        if credentials is not None:
            values["credentials"] = json.dumps(list(credentials))
        if status_list is not None:
            values.update(status_list=status_list, status_index=status_index)
        with transaction(self._engine) as conn:
            done = conn.execute(
                update(membership_applications)
                .where(
                    membership_applications.c.id == app_id, membership_applications.c.state == expected_state
                )
                .values(**values)
            ).rowcount
        if done != 1:
            raise Conflict(f"membership application {app_id} is no longer {expected_state}")


class StatusListStore:
    """The authority's revocation lists: allocate an index per credential, flip bits to revoke."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def ensure(self, list_id: str, purpose: str = "revocation") -> None:
        with transaction(self._engine) as conn:
            if conn.execute(select(status_lists.c.id).where(status_lists.c.id == list_id)).first() is None:
                conn.execute(
                    insert(status_lists).values(
                        id=list_id,
                        purpose=purpose,
                        encoded=BitstringStatusList.create().encode(),
                        next_index=0,
                        updated_at=utc_iso(self._clock.now()),
                    )
                )

    def allocate(self, list_id: str) -> int:
        with transaction(self._engine) as conn:
            conn.execute(
                update(status_lists)
                .where(status_lists.c.id == list_id)
                .values(next_index=status_lists.c.next_index + 1)
            )
            return (
                int(
                    conn.execute(
                        select(status_lists.c.next_index).where(status_lists.c.id == list_id)
                    ).scalar_one()
                )
                - 1
            )

    def set_bit(self, list_id: str, index: int, value: bool = True) -> None:
        with transaction(self._engine) as conn:
            encoded = conn.execute(
                select(status_lists.c.encoded).where(status_lists.c.id == list_id)
            ).scalar_one()
            bits = BitstringStatusList.decode(encoded).with_bit(index, value)
            conn.execute(
                update(status_lists)
                .where(status_lists.c.id == list_id)
                .values(encoded=bits.encode(), updated_at=utc_iso(self._clock.now()))
            )

    def get(self, list_id: str) -> BitstringStatusList:
        with reading(self._engine) as conn:
            row = conn.execute(select(status_lists.c.encoded).where(status_lists.c.id == list_id)).first()
        if row is None:
            raise NotFound(f"status list {list_id} not found")
        return BitstringStatusList.decode(row[0])
