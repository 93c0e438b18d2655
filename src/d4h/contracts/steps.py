"""Worker steps: decide what to do in waiting states, send owed messages, watch running transfers.

Each processor handles one bounded batch per call under per-process leases, so several node processes
sharing one PostgreSQL database never act on the same process twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine

from d4h.contracts import negotiation as neg
from d4h.contracts import transfer as tp
from d4h.contracts.automation import (
    CONSUMER_DEFAULTS,
    PROVIDER_DEFAULTS,
    TRANSFER_PROVIDER_DEFAULTS,
)
from d4h.contracts.connector import Connector
from d4h.contracts.dispatch import Dispatcher
from d4h.contracts.enforcement import Counterparty, decide
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.repository import WAIT_FOREVER
from d4h.contracts.states import NegotiationState, Side, TransferState
from d4h.contracts.transfer import TransferProcess
from d4h.dsp.client import PeerRefused, negotiation_path, transfer_path
from d4h.errors import D4HError, Unavailable
from d4h.policy import Scope, parse_policy
from d4h.store.db import transaction

_log = logging.getLogger("d4h.contracts")
_N = NegotiationState
_T = TransferState

MAX_ATTEMPTS = 8

NEGOTIATION_DECISION_STATES = ("REQUESTED", "ACCEPTED", "VERIFIED", "OFFERED", "AGREED")
TRANSFER_DECISION_STATES = ("REQUESTED", "STARTED", "SUSPENDED")
_FINAL = frozenset({"FINALIZED", "TERMINATED", "COMPLETED"})  # nothing left to do on either side


LAGGING_PEER_ATTEMPTS = 4  # retries of a message a crash-recovering peer refused as an illegal transition


def _backoff(attempt: int) -> float:
    return float(min(2 ** max(attempt - 1, 0), 60))


@dataclass
class _Claim:
    """A process this thread holds the lease on; the lease goes back with the outcome, else at the end."""

    store: Any
    pid: str
    holder: str
    released: bool = False

    @contextmanager
    def final(self, engine: Engine) -> Iterator[Connection]:
        """The transaction recording the outcome also gives the lease back (one commit instead of two)."""
        with transaction(engine) as conn:
            yield conn
            self.store.release(self.pid, self.holder, conn)
        self.released = True
        self.store.notify_released(self.pid)


def _claimed(store: Any, holder: str, pid: str, body: Callable[[Any, _Claim], int]) -> int:
    """Run ``body`` on the process under its lease (taken and read in one transaction); 0 when busy."""
    process = store.claim(pid, holder)
    if process is None:
        return 0
    claim = _Claim(store, pid, holder)
    try:
        return body(process, claim)
    finally:
        if not claim.released:
            store.release(pid, holder)


class _DueWatch:
    """Skips a due query that cannot find anything: the last one found nothing, this process has changed
    no process of the kind since, and it ran less than ``fresh_s`` ago. Work from other processes sharing
    the database, and retries coming due, are still seen within that bound (the idle worker polls slower)."""

    def __init__(self, fresh_s: float = 0.25) -> None:
        self._fresh = fresh_s
        self._empty_at: float | None = None
        self._changes = -1

    def due(self, store: Any, **query: Any) -> list[str]:
        changes = store.changes  # read before the query: a change while it runs is not missed
        if (
            self._empty_at is not None
            and changes == self._changes
            and time.monotonic() - self._empty_at < self._fresh
        ):
            return []
        ids: list[str] = store.due(now=time.time(), **query)
        self._empty_at, self._changes = (None, -1) if ids else (time.monotonic(), changes)
        return ids


def _submit(
    store: Any, jobs: Dispatcher, watch: _DueWatch, batch: int, job: Callable[[str], int], **query: Any
) -> int:
    # Processes already in flight are skipped by the dispatcher: look past them for new work.
    return jobs.submit(watch.due(store, limit=batch + jobs.inflight, **query), job)


class SendNegotiations:
    name = "negotiation-send"

    def __init__(self, connector: Connector, batch: int = 20) -> None:
        self._c = connector
        self._batch = batch
        self._watch = _DueWatch()

    def run_once(self) -> int:
        # Sends run in parallel on the pool (waiting on peers dominates); each job leases its own process.
        c = self._c
        return _submit(c.negotiations, c.negotiation_jobs, self._watch, self._batch, self._leased_send)

    def drain(self, timeout: float) -> bool:
        return self._c.negotiation_jobs.drain(timeout)

    def _leased_send(self, pid: str) -> int:
        return _claimed(self._c.negotiations, self._c.instance_id, pid, self.send)

    def send(self, n: ContractNegotiation, claim: _Claim) -> int:
        """Send the message ``n`` owes the peer and record the outcome (``claim`` holds its lease)."""
        c = self._c
        if not n.owes_message or n.pending:
            return 0
        msg = neg.outbound_message(n, callback_address=c.dsp_base_url)
        body = msg.to_wire()
        now = c.clock.now()
        try:
            ack = c.dsp.post(n.counter_party_address, negotiation_path(msg, n.side), n.counter_party_id, body)
        except PeerRefused as exc:
            if "illegal-transition" in exc.message and "illegal-transition" not in (n.error_detail or ""):
                # The first refusal since the peer was last unreachable: its lag counts from now, not from the
                # attempts its downtime used up (which left no grace at all after a long restart).
                n = replace(n, state_count=1)
            if "illegal-transition" in exc.message and n.state_count < LAGGING_PEER_ATTEMPTS:
                # A peer recovering from a crash can lag one step behind us (it sent its message, we acted
                # on it, it lost the record of our ACK and is about to re-send): give it a few attempts.
                with claim.final(c.engine) as conn:
                    n2 = neg.retry(n, at=now, error=exc.message)
                    c.negotiations.save(n2, conn, next_attempt_at=time.time() + _backoff(n2.state_count))
                return 1
            # The peer will not take this message: the two sides cannot agree any more.
            with claim.final(c.engine) as conn:
                n2 = neg.advance(n, _N.TERMINATED, at=now, error_detail=exc.message)
                c.negotiations.save(n2, conn)
                c.audit.append(
                    actor=c.own_did, action="negotiation.failed", obj=n.id, outcome="refused", conn=conn
                )
            return 1
        except Unavailable as exc:
            with claim.final(c.engine) as conn:
                if n.state_count >= MAX_ATTEMPTS:
                    n2 = neg.advance(
                        n,
                        _N.TERMINATED,
                        at=now,
                        error_detail=f"gave up after {n.state_count} attempts: {exc.message}",
                    )
                    c.negotiations.save(n2, conn)
                else:
                    n2 = neg.retry(n, at=now, error=exc.message)
                    c.negotiations.save(n2, conn, next_attempt_at=time.time() + _backoff(n2.state_count))
            return 1
        peer_pid = None
        if ack is not None:
            peer_pid = ack.get("providerPid") if n.side is Side.CONSUMER else ack.get("consumerPid")
        with claim.final(c.engine) as conn:
            n2 = neg.acknowledge(n, at=c.clock.now(), peer_pid=peer_pid if n.peer_pid is None else None)
            c.negotiations.save(n2, conn)
            c.audit.append(
                actor=c.own_did, action=f"negotiation.{n2.state.value.lower()}", obj=n.id, conn=conn
            )
            if n2.state is _N.FINALIZED:
                c._store_agreement(n2, conn)
        return 1


class SendTransfers:
    name = "transfer-send"

    def __init__(self, connector: Connector, batch: int = 20) -> None:
        self._c = connector
        self._batch = batch
        self._watch = _DueWatch()

    def run_once(self) -> int:
        c = self._c
        return _submit(c.transfers, c.transfer_jobs, self._watch, self._batch, self._leased_send)

    def drain(self, timeout: float) -> bool:
        return self._c.transfer_jobs.drain(timeout)

    def _leased_send(self, pid: str) -> int:
        return _claimed(self._c.transfers, self._c.instance_id, pid, self.send)

    def send(self, t: TransferProcess, claim: _Claim) -> int:
        c = self._c
        if not t.owes_message or t.pending:
            return 0
        msg = tp.outbound_message(t, callback_address=c.dsp_base_url)
        now = c.clock.now()
        try:
            ack = c.dsp.post(
                t.counter_party_address, transfer_path(msg, t.side), t.counter_party_id, msg.to_wire()
            )
        except PeerRefused as exc:
            with claim.final(c.engine) as conn:
                c.save_transfer(tp.advance(t, _T.TERMINATED, at=now, error_detail=exc.message), conn)
            return 1
        except Unavailable as exc:
            with claim.final(c.engine) as conn:
                if t.state_count >= MAX_ATTEMPTS:
                    c.save_transfer(tp.advance(t, _T.TERMINATED, at=now, error_detail=exc.message), conn)
                else:
                    t2 = tp.retry(t, at=now, error=exc.message)
                    c.transfers.save(t2, conn, next_attempt_at=time.time() + _backoff(t2.state_count))
            return 1
        peer_pid = ack.get("providerPid") if ack is not None and t.side is Side.CONSUMER else None
        with claim.final(c.engine) as conn:
            t2 = tp.acknowledge(t, at=c.clock.now(), peer_pid=peer_pid if t.peer_pid is None else None)
            c.transfers.save(t2, conn)
            c.audit.append(actor=c.own_did, action=f"transfer.{t2.state.value.lower()}", obj=t.id, conn=conn)
        return 1


def _decide_job(
    store: Any,
    holder: str,
    pid: str,
    decide_one: Callable[[Any, _Claim], Any],
    send_one: Callable[[Any, _Claim], int],
    kind: str,
) -> int:
    """Decide one process under its lease, then send what it owes the peer at once, still under the lease
    (the message of the decision, or one owed already), instead of waiting for the next worker round."""

    def body(process: Any, claim: _Claim) -> int:
        try:
            decided = decide_one(process, claim)
            if decided is None:
                return send_one(process, claim)
            send_one(decided, claim)
            return 1
        except D4HError as exc:
            _log.warning(f"{kind} decision failed", extra={kind: pid, "error": exc.message})
            return 0

    return _claimed(store, holder, pid, body)


class DecideNegotiations:
    """Automation and scripts for negotiations waiting on this side."""

    name = "negotiation-decide"

    def __init__(self, connector: Connector, batch: int = 20) -> None:
        self._c = connector
        self._batch = batch
        self._watch = _DueWatch()
        self._sender = SendNegotiations(connector)
        connector.act_on_negotiation = self.act
        connector.negotiations.idle = self.idle

    def _decides(self, n: ContractNegotiation) -> bool:
        """Whether this side takes a decision in ``n``'s state (by default automation, or any under scripts)."""
        if n.state.value not in NEGOTIATION_DECISION_STATES:
            return False
        if self._c.scripts is not None:
            return True
        return n.state.value in (PROVIDER_DEFAULTS if n.side is Side.PROVIDER else CONSUMER_DEFAULTS)

    def idle(self, n: ContractNegotiation) -> bool:
        """Nothing for our worker until the peer or an operator changes ``n`` (see ProcessStore.idle)."""
        return n.state.value in _FINAL or not (n.pending or n.owes_message or self._decides(n))

    def act(self, n: ContractNegotiation) -> bool:
        """Start the job of a negotiation this node just changed (inbound message, management call).

        True when the worker need not be woken: the job runs, or there is nothing to do (waiting for the
        peer, or pending an operator's resume, which acts again)."""
        if n.pending or self.idle(n):
            return True
        jobs = self._c.negotiation_jobs
        # A running job for it wakes the worker when it ends (the change is new work for the next one).
        return jobs.submit([n.id], self._job, changed=True) > 0 or jobs.running(n.id)

    def run_once(self) -> int:
        c = self._c
        return _submit(
            c.negotiations,
            c.negotiation_jobs,
            self._watch,
            self._batch,
            self._job,
            states=NEGOTIATION_DECISION_STATES,
        )

    def drain(self, timeout: float) -> bool:
        return self._c.negotiation_jobs.drain(timeout)

    def _job(self, pid: str) -> int:
        c = self._c
        return _decide_job(c.negotiations, c.instance_id, pid, self._decide, self._sender.send, "negotiation")

    def _decide(self, n: ContractNegotiation, claim: _Claim) -> ContractNegotiation | None:
        """The decision taken and saved (the lease stays for its message); None when nothing to decide."""
        c = self._c
        if n.pending or n.state.value not in NEGOTIATION_DECISION_STATES:
            return None
        key = n.offer.target if n.offer is not None else None
        action = c.scripts.next_action(key, n.id, n.state.value) if c.scripts else None
        if action is None:
            defaults = PROVIDER_DEFAULTS if n.side is Side.PROVIDER else CONSUMER_DEFAULTS
            action = defaults.get(n.state.value, "wait")
        now = c.clock.now()
        new, reason = self._apply(n, action, now)
        if new is None:
            with claim.final(c.engine) as conn:
                c.negotiations.save(n, conn, next_attempt_at=WAIT_FOREVER)
            return None
        with transaction(c.engine) as conn:
            c.negotiations.save(new, conn)
            c.audit.append(
                actor=c.own_did,
                action=f"negotiation.decide.{action}",
                obj=n.id,
                outcome="ok" if new.state not in (_N.TERMINATING, _N.TERMINATED) else "refused",
                params={"reason": reason},
                conn=conn,
            )
        return new

    def _apply(
        self, n: ContractNegotiation, action: str, now: Any
    ) -> tuple[ContractNegotiation | None, str | None]:
        c = self._c
        if action == "agree" and n.side is Side.PROVIDER:
            verdict = self._contract_verdict(n)
            if verdict is None:
                return neg.agree(n, c.make_agreement(n), at=now), None
            pending, reason = verdict
            if pending:
                return neg.set_pending(n, True, reason=reason), reason
            return neg.terminate(n, at=now, reason=reason), reason
        if action == "offer":
            assert n.offer is not None
            return neg.counter_offer(n, n.offer, at=now), None
        if action == "counter":
            assert n.offer is not None
            return neg.counter_request(n, n.offer, at=now), None
        if action == "accept":
            return neg.accept(n, at=now), None
        if action == "verify":
            if n.agreement is not None and n.offer is not None:
                diffs = neg.offer_differences(n.agreement, n.offer)
                if diffs:
                    reason = "agreement differs from the request: " + "; ".join(diffs)
                    return neg.terminate(n, at=now, reason=reason), reason
            return neg.verify(n, at=now), None
        if action == "finalize":
            return neg.finalize(n, at=now), None
        if action == "terminate":
            return neg.terminate(n, at=now, reason="terminated by the " + n.side.value), "scripted"
        return None, None

    def _contract_verdict(self, n: ContractNegotiation) -> tuple[bool, str] | None:
        """None when the contract policy allows; else (pending?, reason)."""
        c = self._c
        assert n.offer is not None
        caller = c.negotiations.caller_of(n.id)
        party = Counterparty.from_json(caller) if caller else Counterparty(n.counter_party_id, frozenset())
        ref = c.registry.find_offer(n.offer.id)
        policy = ref.policy()
        decision = decide(
            policy,
            party,
            Scope.CONTRACT_NEGOTIATION,
            c.clock,
            dataset_id=ref.dataset_id,
            permit_check=c.permit_check,
        )
        if decision.allowed:
            return None
        reason = "; ".join(decision.reasons)
        # Only a missing permit can still change without the consumer sending anything new: wait for it.
        waiting = all("permit" in r.lower() for r in decision.reasons)
        return waiting, reason


class DecideTransfers:
    name = "transfer-decide"

    def __init__(self, connector: Connector, batch: int = 20) -> None:
        self._c = connector
        self._batch = batch
        self._watch = _DueWatch()
        self._sender = SendTransfers(connector)
        connector.act_on_transfer = self.act
        connector.transfers.idle = self.idle

    def _decides(self, t: TransferProcess) -> bool:
        if t.state.value not in TRANSFER_DECISION_STATES:
            return False
        if self._c.scripts is not None:
            return True
        return t.side is Side.PROVIDER and t.state.value in TRANSFER_PROVIDER_DEFAULTS

    def idle(self, t: TransferProcess) -> bool:
        """Nothing for our worker until the peer or an operator changes ``t`` (see ProcessStore.idle)."""
        return t.state.value in _FINAL or not (t.pending or t.owes_message or self._decides(t))

    def act(self, t: TransferProcess) -> bool:
        """Start the job of a transfer this node just changed; True when the worker need not be woken."""
        if t.pending or self.idle(t):
            return True
        jobs = self._c.transfer_jobs
        return jobs.submit([t.id], self._job, changed=True) > 0 or jobs.running(t.id)

    def run_once(self) -> int:
        c = self._c
        return _submit(
            c.transfers, c.transfer_jobs, self._watch, self._batch, self._job, states=TRANSFER_DECISION_STATES
        )

    def drain(self, timeout: float) -> bool:
        return self._c.transfer_jobs.drain(timeout)

    def _job(self, pid: str) -> int:
        c = self._c
        return _decide_job(c.transfers, c.instance_id, pid, self._decide, self._sender.send, "transfer")

    def _decide(self, t: TransferProcess, claim: _Claim) -> TransferProcess | None:
        c = self._c
        if t.pending or t.state.value not in TRANSFER_DECISION_STATES:
            return None
        action = (
            c.scripts.next_action(t.agreement_id, t.id, t.state.value, transfer=True) if c.scripts else None
        )
        if action is None:
            action = (
                TRANSFER_PROVIDER_DEFAULTS.get(t.state.value, "wait") if t.side is Side.PROVIDER else "wait"
            )
        now = c.clock.now()
        if action not in ("start", "complete", "suspend", "terminate"):
            with claim.final(c.engine) as conn:
                c.transfers.save(t, conn, next_attempt_at=WAIT_FOREVER)
            return None
        # The policy is evaluated before the write transaction: it reads, and may ask the permit checker.
        refusal = self._transfer_refusal(t) if action == "start" and t.state is _T.REQUESTED else None
        with transaction(c.engine) as conn:
            if action == "start":
                if refusal:
                    new = tp.terminate(t, at=now, reason=refusal)
                else:
                    new = c.provider_start(t, conn) if t.side is Side.PROVIDER else tp.start(t, at=now)
            elif action == "complete":
                new = tp.complete(t, at=now)
            elif action == "suspend":
                new = tp.suspend(t, at=now, reason="suspended by the " + t.side.value)
            else:
                new = tp.terminate(t, at=now, reason="terminated by the " + t.side.value)
            c.save_transfer(new, conn)
            c.audit.append(actor=c.own_did, action=f"transfer.decide.{action}", obj=t.id, conn=conn)
        return new

    def _transfer_refusal(self, t: TransferProcess) -> str | None:
        """Provider: the agreement's policy must still hold at transfer start (scope transfer.process)."""
        c = self._c
        agreement = c.agreements.get(t.agreement_id)
        caller = c.transfers.caller_of(t.id)
        party = Counterparty.from_json(caller) if caller else Counterparty(t.counter_party_id, frozenset())
        policy = parse_policy(_agreement_doc(agreement, party))
        decision = decide(
            policy,
            party,
            Scope.TRANSFER_PROCESS,
            c.clock,
            dataset_id=agreement["dataset_id"],
            permit_check=c.permit_check,
        )
        return None if decision.allowed else "; ".join(decision.reasons)


class PolicyMonitor:
    """Terminates running provider transfers whose agreement no longer holds (expiry, revoked permit)."""

    name = "policy-monitor"

    def __init__(self, connector: Connector, every_s: float = 5.0) -> None:
        self._c = connector
        self._every = every_s
        self._last = 0.0

    def run_once(self) -> int:
        if time.monotonic() - self._last < self._every:
            return 0
        self._last = time.monotonic()
        c = self._c
        done = 0
        for t in c.transfers.active():
            if t.side is not Side.PROVIDER or t.state is not _T.STARTED:
                continue
            try:
                agreement = c.agreements.get(t.agreement_id)
                caller = c.transfers.caller_of(t.id)
                party = (
                    Counterparty.from_json(caller)
                    if caller
                    else Counterparty(t.counter_party_id, frozenset())
                )
                decision = decide(
                    parse_policy(_agreement_doc(agreement, party)),
                    party,
                    Scope.POLICY_MONITOR,
                    c.clock,
                    dataset_id=agreement["dataset_id"],
                    permit_check=c.permit_check,
                    agreed_at=_parse_time(agreement["signed_at"]),
                )
            except D4HError as exc:
                _log.warning(
                    "policy monitor could not evaluate", extra={"transfer": t.id, "error": exc.message}
                )
                continue
            if decision.allowed:
                continue
            reason = "agreement no longer holds: " + "; ".join(decision.reasons)

            def stop(x: TransferProcess, why: str = reason) -> TransferProcess:
                return tp.terminate(x, at=c.clock.now(), reason=why)

            c.decide_transfer(t.id, stop, actor=c.own_did, action="transfer.monitor.terminate")
            done += 1
        return done


def _agreement_doc(agreement: dict[str, Any], party: Counterparty) -> Any:
    """The agreement's policy; a seeded agreement for any member ("*", TCK mode) binds to the caller."""
    doc = agreement["doc"]
    if agreement.get("consumer") == "*" and isinstance(doc, dict):
        return {**doc, "assignee": party.did}
    return doc


def _parse_time(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))
