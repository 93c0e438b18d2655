"""Persistence of negotiations, transfers and agreements, with leases for workers and inbound handlers.

A process (negotiation or transfer) is changed only under its lease, so a worker sending a message and
an inbound handler applying the peer's next message never interleave (the peer may answer before our
worker has saved the acknowledgement; the handler then waits for the lease).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import Connection, Engine, Table, bindparam, func, or_, select

from d4h.contracts.codec import decode_negotiation, decode_transfer, encode_negotiation, encode_transfer
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.states import NEGOTIATION_SENDING, TRANSFER_SENDING
from d4h.contracts.transfer import TransferProcess
from d4h.errors import NotFound, Unavailable
from d4h.store import leases, raw
from d4h.store.db import reading, transaction, writer_slot
from d4h.store.tables.connector import agreements, negotiations, transfers

P = TypeVar("P", ContractNegotiation, TransferProcess)
WAIT_FOREVER = 1e18  # next_attempt_at of a process with nothing to do until its state changes


class ProcessStore(Generic[P]):
    def __init__(
        self,
        engine: Engine,
        table: Table,
        kind: str,
        encode: Callable[[P], str],
        decode: Callable[[str], P],
        sending: Iterable[Any],
    ) -> None:
        self._engine = engine
        self._table = table
        self.kind = kind
        self._encode: Callable[[P], str] = encode
        self._decode: Callable[[str], P] = decode
        self._sending = sorted(s.value for s in sending)
        # Threads of this process waiting for a lease, per process id: a release here wakes them at once.
        self._waiters: dict[str, list[threading.Event]] = {}
        self._waiters_lock = threading.Lock()
        # Built once: the worker asks for due processes on every round (statement building cost more
        # than the query itself).
        self._due_query = (
            select(table.c.id)
            .where(
                table.c.state.in_(bindparam("states", expanding=True)),
                table.c.pending.is_(False),
                table.c.next_attempt_at <= bindparam("now"),
            )
            .order_by(table.c.next_attempt_at)
            .limit(bindparam("limit"))
        )
        # The statements every DSP message runs go to the driver directly (see d4h.store.raw).
        name = table.name
        self._columns = [
            "side",
            "state",
            "pending",
            "consumer_pid",
            "provider_pid",
            "counter_party_id",
            "doc",
        ]
        self._columns += ["updated_at", "next_attempt_at"]
        if "agreement_id" in table.c:
            self._columns.append("agreement_id")
        listed = ", ".join(self._columns)
        self._insert = raw.Sql(
            f"INSERT INTO {name} (id, caller, {listed}) VALUES (:id, :caller, {', '.join(':' + c for c in self._columns)})"  # noqa: S608 - constant names
        )
        self._update = raw.Sql(
            f"UPDATE {name} SET {', '.join(f'{c} = :{c}' for c in self._columns)} WHERE id = :id"  # noqa: S608
        )
        self._get = raw.Sql(f"SELECT doc FROM {name} WHERE id = :id")  # noqa: S608 - constant names
        self._caller = raw.Sql(f"SELECT caller FROM {name} WHERE id = :id")  # noqa: S608
        self._by_own_pid = raw.Sql(
            f"SELECT doc FROM {name} WHERE (provider_pid = :pid AND side = 'provider')"  # noqa: S608
            " OR (consumer_pid = :pid AND side = 'consumer') ORDER BY side DESC"
        )
        self._by_consumer_pid = raw.Sql(
            f"SELECT doc FROM {name} WHERE consumer_pid = :pid AND side = 'provider'"  # noqa: S608
            " AND counter_party_id = :party"
        )
        self._changes = 0
        self._changes_lock = threading.Lock()
        # Whether our worker has nothing to do for a process in its current state (waiting for the peer or
        # an operator): saved as never due, so no worker round picks it up only to decide to wait. The
        # worker steps set it; by default every process counts as due.
        self.idle: Callable[[P], bool] = lambda p: False

    @property
    def changes(self) -> int:
        """How many times this process created or saved a process of this kind (see ``DueWatch``)."""
        return self._changes

    def _changed(self) -> None:
        with self._changes_lock:
            self._changes += 1

    def _values(self, p: P, *, next_attempt_at: float | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {
            "side": p.side.value,
            "state": p.state.value,
            "pending": p.pending,
            "consumer_pid": p.consumer_pid,
            "provider_pid": p.provider_pid,
            "counter_party_id": p.counter_party_id,
            "doc": self._encode(p),
            "updated_at": time.time(),
        }
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        if isinstance(p, TransferProcess):
            values["agreement_id"] = p.agreement_id
        return values

    def _due_at(self, p: P) -> float:
        return WAIT_FOREVER if self.idle(p) else 0.0

    def create(self, p: P, conn: Connection, *, caller: dict[str, Any] | None = None) -> None:
        values = self._values(p, next_attempt_at=self._due_at(p))
        values["id"] = p.id
        values["caller"] = None if caller is None else orjson.dumps(caller).decode()
        raw.write(conn, self._insert, values)
        self._changed()

    def caller_of(self, process_id: str) -> dict[str, Any] | None:
        """The counter-party as verified when it opened the process (for later policy decisions)."""
        with reading(self._engine) as conn:
            row = raw.first(conn, self._caller, {"id": process_id})
        return None if row is None or row[0] is None else dict(orjson.loads(row[0]))

    def save(self, p: P, conn: Connection, *, next_attempt_at: float | None = None) -> None:
        # An entity entering a new -ING state is due at once; a retry passes its backoff time.
        due = next_attempt_at if next_attempt_at is not None else self._due_at(p)
        values = self._values(p, next_attempt_at=due)
        values["id"] = p.id
        raw.write(conn, self._update, values)
        self._changed()

    def get(self, process_id: str, conn: Connection | None = None) -> P:
        if conn is not None:
            row = raw.first(conn, self._get, {"id": process_id})
        else:
            with reading(self._engine) as c:
                row = raw.first(c, self._get, {"id": process_id})
        if row is None:
            raise NotFound(f"{self.kind} {process_id} not found")
        return self._decode(row[0])

    def by_own_pid(self, own_pid: str) -> P | None:
        """The process this node calls ``own_pid`` on either side (the provider side first)."""
        row = self._raw_one(self._by_own_pid, {"pid": own_pid}, None)
        return None if row is None else self._decode(row[0])

    def find_by_consumer_pid(self, consumer_pid: str, counter_party: str, conn: Connection) -> P | None:
        """Provider side: a process a consumer already opened (idempotent initial requests)."""
        row = raw.first(conn, self._by_consumer_pid, {"pid": consumer_pid, "party": counter_party})
        return None if row is None else self._decode(row[0])

    def _raw_one(self, stmt: raw.Sql, params: dict[str, Any], conn: Connection | None) -> Any:
        if conn is not None:
            return raw.first(conn, stmt, params)
        with reading(self._engine) as c:
            return raw.first(c, stmt, params)

    def recent(self, *, limit: int = 100, offset: int = 0) -> list[P]:
        with reading(self._engine) as conn:
            rows = conn.execute(
                select(self._table.c.doc)
                .order_by(self._table.c.updated_at.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [self._decode(r[0]) for r in rows]

    def recent_docs(
        self, *, limit: int = 100, offset: int = 0, states: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """As ``recent``, as stored JSON documents: listings need a few fields, not validated values
        (validating offers and agreements dominated the cost of a long listing). ``states`` narrows it."""
        query = select(self._table.c.doc)
        if states is not None:
            query = query.where(self._table.c.state.in_(sorted(states)))
        with reading(self._engine) as conn:
            rows = conn.execute(
                query.order_by(self._table.c.updated_at.desc()).limit(limit).offset(offset)
            ).all()
        return [dict(orjson.loads(r[0])) for r in rows]

    def count_by_state(self) -> dict[str, int]:
        with reading(self._engine) as conn:
            rows = conn.execute(select(self._table.c.state, func.count()).group_by(self._table.c.state)).all()
        return {str(state): int(n) for state, n in rows}

    def due(self, *, now: float, limit: int, states: Iterable[str] | None = None) -> list[str]:
        """Ids of processes in ``states`` (default: those owing the peer a message) that are due and not pending."""
        wanted = sorted(states) if states is not None else self._sending
        with reading(self._engine) as conn:
            rows = conn.execute(self._due_query, {"states": wanted, "now": now, "limit": limit}).all()
        return [r[0] for r in rows]

    def active(self, *, limit: int = 500) -> list[P]:
        """Non-final processes (for the policy monitor)."""
        finals = ["FINALIZED", "TERMINATED", "COMPLETED"]
        with reading(self._engine) as conn:
            rows = conn.execute(
                select(self._table.c.doc).where(self._table.c.state.not_in(finals)).limit(limit)
            ).all()
        return [self._decode(r[0]) for r in rows]

    @staticmethod
    def _holder(holder: str) -> str:
        # One holder per thread: a node's inbound handlers and its worker run in different threads of one
        # process and must exclude each other too (a process-wide holder would re-enter its own lease).
        return f"{holder}/{threading.get_ident()}"

    @contextmanager
    def leased(
        self, process_id: str, holder: str, *, duration: float = 30.0, wait_s: float = 10.0
    ) -> Iterator[None]:
        """Hold the lease on one process for the body; waits (bounded) while another holder has it."""
        holder = self._holder(holder)
        self._wait_for(process_id, holder, duration, wait_s)
        try:
            yield
        finally:
            self.release(process_id, holder, qualified=True)

    def _wait_for(self, process_id: str, holder: str, duration: float, wait_s: float) -> None:
        def take() -> bool:
            with transaction(self._engine) as conn:
                return leases.acquire(conn, self.kind, process_id, holder, now=time.time(), duration=duration)

        self._retry(take, process_id, wait_s)

    def _retry(self, attempt: Callable[[], bool], process_id: str, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        delay = 0.002
        while True:
            # Registered before the attempt, so a release right after a failed attempt is not missed;
            # a release in this process ends the wait at once, another process's release is polled for.
            released = threading.Event()
            with self._waiters_lock:
                self._waiters.setdefault(process_id, []).append(released)
            try:
                if attempt():
                    return
                if time.monotonic() > deadline:
                    raise Unavailable(f"{self.kind} {process_id} is busy; try again")
                released.wait(delay)
            finally:
                with self._waiters_lock:
                    waiting = self._waiters[process_id]
                    waiting.remove(released)
                    if not waiting:
                        del self._waiters[process_id]
            delay = min(delay * 2, 0.05)

    @contextmanager
    def locked(
        self, process_id: str, holder: str, *, duration: float = 30.0, wait_s: float = 10.0
    ) -> Iterator[Connection]:
        """One transaction that takes the lease, runs the body and releases the lease at commit.

        The change still happens only under the lease (taken and given back atomically with it), at the
        cost of one transaction instead of three; waits (bounded) while another holder has the lease.
        """
        holder = self._holder(holder)
        with self._engine.connect() as conn, ExitStack() as writing:

            def attempt() -> bool:
                # The writer slot is held from BEGIN to the end of the transaction, never while waiting.
                slot = writer_slot(self._engine)
                slot.__enter__()
                tx = conn.begin()
                try:
                    got = leases.acquire(
                        conn, self.kind, process_id, holder, now=time.time(), duration=duration
                    )
                except BaseException:
                    tx.rollback()
                    slot.__exit__(None, None, None)
                    raise
                if not got:
                    tx.rollback()
                    slot.__exit__(None, None, None)
                    return False
                writing.push(slot)
                return True

            self._retry(attempt, process_id, wait_s)
            try:
                yield conn
                leases.release(conn, self.kind, process_id, holder)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        self.notify_released(process_id)

    def claim(self, process_id: str, holder: str, *, duration: float = 30.0) -> P | None:
        """Take the lease and read the process in one transaction; None when another holder has it."""
        with transaction(self._engine) as conn:
            if not leases.acquire(
                conn, self.kind, process_id, self._holder(holder), now=time.time(), duration=duration
            ):
                return None
            return self.get(process_id, conn)

    def try_lease(self, process_id: str, holder: str, *, duration: float = 30.0) -> bool:
        with transaction(self._engine) as conn:
            return leases.acquire(
                conn, self.kind, process_id, self._holder(holder), now=time.time(), duration=duration
            )

    def release(
        self, process_id: str, holder: str, conn: Connection | None = None, *, qualified: bool = False
    ) -> None:
        """Give the lease back; inside ``conn``'s transaction when given (with the change it guarded)."""
        owner = holder if qualified else self._holder(holder)
        if conn is not None:
            leases.release(conn, self.kind, process_id, owner)
            return  # the caller's commit releases it; the waiters are told by ``notify_released``
        with transaction(self._engine) as c:
            leases.release(c, self.kind, process_id, owner)
        self.notify_released(process_id)

    def notify_released(self, process_id: str) -> None:
        """Tell this process's threads waiting for the lease to try again (after the releasing commit)."""
        with self._waiters_lock:
            for released in self._waiters.get(process_id, ()):
                released.set()


def negotiation_store(engine: Engine) -> ProcessStore[ContractNegotiation]:
    return ProcessStore(
        engine, negotiations, "negotiation", encode_negotiation, decode_negotiation, NEGOTIATION_SENDING
    )


def transfer_store(engine: Engine) -> ProcessStore[TransferProcess]:
    return ProcessStore(engine, transfers, "transfer", encode_transfer, decode_transfer, TRANSFER_SENDING)


# An agreement is written once: a second save of the same id (a redelivered FINALIZED) changes nothing.
_SAVE_AGREEMENT = raw.Sql(
    "INSERT INTO agreements (id, negotiation_id, dataset_id, provider, consumer, doc, signed_at)"
    " VALUES (:id, :negotiation_id, :dataset_id, :provider, :consumer, :doc, :signed_at)"
    " ON CONFLICT (id) DO NOTHING"
)


class AgreementStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def save(
        self,
        *,
        agreement: dict[str, Any],
        negotiation_id: str,
        dataset_id: str,
        signed_at: str,
        conn: Connection,
    ) -> None:
        raw.write(
            conn,
            _SAVE_AGREEMENT,
            {
                "id": agreement["@id"],
                "negotiation_id": negotiation_id,
                "dataset_id": dataset_id,
                "provider": agreement["assigner"],
                "consumer": agreement["assignee"],
                "doc": orjson.dumps(agreement).decode(),
                "signed_at": signed_at,
            },
        )

    def get(self, agreement_id: str) -> dict[str, Any]:
        with reading(self._engine) as conn:
            row = conn.execute(select(agreements).where(agreements.c.id == agreement_id)).mappings().first()
        if row is None:
            raise NotFound(f"agreement {agreement_id} not found")
        out = dict(row)
        out["doc"] = orjson.loads(out["doc"])
        return out

    def recent(self, *, party: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(agreements).order_by(agreements.c.signed_at.desc()).limit(limit)
        if party:
            query = query.where(or_(agreements.c.provider == party, agreements.c.consumer == party))
        with reading(self._engine) as conn:
            rows = conn.execute(query).mappings().all()
        return [{**dict(r), "doc": orjson.loads(r["doc"])} for r in rows]
