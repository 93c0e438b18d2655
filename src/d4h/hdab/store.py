"""HdabStore: the HDAB's persistence — applications, permits, opt-out events, register, catalogue.

Values are stored as JSON documents of the pure-core models with the columns queries need beside them.
Writers take a ``Connection`` so the service can append the audit entry in the same transaction.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from d4h.clock import Clock, utc_iso
from d4h.errors import Conflict, NotFound
from d4h.hdab.applications import Application
from d4h.hdab.catalogue import FederatedCatalogue
from d4h.hdab.optout import OptOutEvent, OptOutRegistry
from d4h.hdab.permits import DataPermit
from d4h.hdab.transparency import RegisterEntry, TransparencyRegister
from d4h.store.db import reading
from d4h.store.tables.hdab import (
    hdab_applications,
    hdab_catalogue,
    hdab_optout_events,
    hdab_permits,
    hdab_register,
)

_CATALOGUE_ID = "national"


class HdabStore:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self._clock = clock

    # -- applications -----------------------------------------------------------------------------

    def create_application(self, app: Application, conn: Connection) -> None:
        conn.execute(
            insert(hdab_applications).values(
                id=app.id,
                applicant=app.form.applicant.did,
                state=app.state.value,
                doc=app.model_dump_json(),
                updated_at=self._now(),
            )
        )

    def save_application(self, before: Application, after: Application, conn: Connection) -> None:
        """Replace ``before`` by ``after``; the history must only grow and nobody else may have saved."""
        if not after.history.extends(before.history):
            raise Conflict(f"application {after.id}: the event history is append-only")
        done = conn.execute(
            update(hdab_applications)
            .where(hdab_applications.c.id == after.id, hdab_applications.c.doc == before.model_dump_json())
            .values(state=after.state.value, doc=after.model_dump_json(), updated_at=self._now())
        ).rowcount
        if done != 1:
            raise Conflict(f"application {after.id} changed meanwhile; retry")

    def application(self, app_id: str) -> Application:
        with reading(self.engine) as conn:
            doc = conn.execute(
                select(hdab_applications.c.doc).where(hdab_applications.c.id == app_id)
            ).scalar()
        if doc is None:
            raise NotFound(f"application {app_id} not found")
        return Application.model_validate_json(doc)

    def applications(self, *, applicant: str | None = None, state: str | None = None) -> list[Application]:
        query = select(hdab_applications.c.doc).order_by(hdab_applications.c.updated_at)
        if applicant is not None:
            query = query.where(hdab_applications.c.applicant == applicant)
        if state is not None:
            query = query.where(hdab_applications.c.state == state)
        with reading(self.engine) as conn:
            return [Application.model_validate_json(d) for d in conn.execute(query).scalars()]

    # -- permits ----------------------------------------------------------------------------------

    def create_permit(
        self, permit: DataPermit, *, jwt: str, status_list: str, status_index: int, conn: Connection
    ) -> None:
        conn.execute(
            insert(hdab_permits).values(
                permit_id=permit.permit_id,
                application_id=permit.application_id,
                data_user=permit.data_user,
                state=permit.state.value,
                status_list=status_list,
                status_index=status_index,
                jwt=jwt,
                doc=permit.model_dump_json(),
                updated_at=self._now(),
            )
        )

    def save_permit(self, permit: DataPermit, conn: Connection) -> None:
        conn.execute(
            update(hdab_permits)
            .where(hdab_permits.c.permit_id == permit.permit_id)
            .values(state=permit.state.value, doc=permit.model_dump_json(), updated_at=self._now())
        )

    def permit(self, permit_id: str) -> tuple[DataPermit, dict[str, Any]]:
        """The permit and its row facts (jwt, status_list, status_index)."""
        with reading(self.engine) as conn:
            row = conn.execute(select(hdab_permits).where(hdab_permits.c.permit_id == permit_id)).first()
        if row is None:
            raise NotFound(f"permit {permit_id} not found")
        facts = {"jwt": row.jwt, "status_list": row.status_list, "status_index": row.status_index}
        return DataPermit.model_validate_json(row.doc), facts

    def permits(self, *, application_id: str | None = None) -> list[DataPermit]:
        query = select(hdab_permits.c.doc).order_by(hdab_permits.c.updated_at)
        if application_id is not None:
            query = query.where(hdab_permits.c.application_id == application_id)
        with reading(self.engine) as conn:
            return [DataPermit.model_validate_json(d) for d in conn.execute(query).scalars()]

    # -- opt-out ----------------------------------------------------------------------------------

    def add_optout_event(self, event: OptOutEvent, conn: Connection) -> None:
        seq = conn.execute(select(func.count()).select_from(hdab_optout_events)).scalar_one()
        conn.execute(
            insert(hdab_optout_events).values(
                seq=seq, token=event.token, action=event.action, at=utc_iso(event.at)
            )
        )

    def optout_registry(self, conn: Connection | None = None) -> OptOutRegistry:
        """The registry replayed from the stored events (the version counts them)."""
        query = select(hdab_optout_events).order_by(hdab_optout_events.c.seq)
        if conn is not None:
            rows = conn.execute(query).all()
        else:
            with reading(self.engine) as own:
                rows = own.execute(query).all()
        events = tuple(OptOutEvent(token=r.token, action=r.action, at=r.at) for r in rows)
        return OptOutRegistry(events=events, version=len(events))

    # -- transparency register --------------------------------------------------------------------

    def publish(self, entries: tuple[RegisterEntry, ...], conn: Connection) -> None:
        """Append entries to the register; one already published is skipped (publishing is idempotent)."""
        for entry in entries:
            key = _entry_key(entry)
            seen = conn.execute(select(hdab_register.c.seq).where(hdab_register.c.entry_key == key)).first()
            if seen is not None:
                continue
            seq = conn.execute(select(func.count()).select_from(hdab_register)).scalar_one()
            conn.execute(insert(hdab_register).values(seq=seq, entry_key=key, doc=entry.model_dump_json()))

    def register(self) -> TransparencyRegister:
        with reading(self.engine) as conn:
            docs = list(conn.execute(select(hdab_register.c.doc).order_by(hdab_register.c.seq)).scalars())
        return TransparencyRegister.model_validate_json('{"entries": [' + ",".join(docs) + "]}")

    # -- federated catalogue ----------------------------------------------------------------------

    def catalogue(self) -> FederatedCatalogue:
        with reading(self.engine) as conn:
            doc = conn.execute(
                select(hdab_catalogue.c.doc).where(hdab_catalogue.c.id == _CATALOGUE_ID)
            ).scalar()
        return FederatedCatalogue() if doc is None else FederatedCatalogue.model_validate_json(doc)

    def save_catalogue(self, catalogue: FederatedCatalogue, conn: Connection) -> None:
        values = {"doc": catalogue.model_dump_json(), "updated_at": self._now()}
        done = conn.execute(
            update(hdab_catalogue).where(hdab_catalogue.c.id == _CATALOGUE_ID).values(**values)
        ).rowcount
        if done == 0:
            conn.execute(insert(hdab_catalogue).values(id=_CATALOGUE_ID, **values))

    def save_description(self, key: str, document: dict[str, Any], conn: Connection) -> None:
        """Keep a holder's HealthDCAT-AP JSON-LD of one dataset (for the national export)."""
        values = {"doc": json.dumps(document), "updated_at": self._now()}
        done = conn.execute(
            update(hdab_catalogue).where(hdab_catalogue.c.id == key).values(**values)
        ).rowcount
        if done == 0:
            conn.execute(insert(hdab_catalogue).values(id=key, **values))

    def descriptions(self, keys: list[str]) -> list[dict[str, Any]]:
        if not keys:
            return []
        with reading(self.engine) as conn:
            docs = conn.execute(
                select(hdab_catalogue.c.doc)
                .where(hdab_catalogue.c.id.in_(keys))
                .order_by(hdab_catalogue.c.id)
            ).scalars()
            return [dict(json.loads(d)) for d in docs]

    def _now(self) -> str:
        return utc_iso(self._clock.now())


def _entry_key(entry: RegisterEntry) -> str:
    name = getattr(entry, "application_id", None) or getattr(entry, "permit_id", "")
    extra = getattr(entry, "outcome", None) or getattr(entry, "state", None) or getattr(entry, "url", "")
    return f"{entry.entry} {name} {extra}"[:512]
