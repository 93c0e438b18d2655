"""The connector: inbound DSP messages (notify_*), local decisions and management operations.

Every change to a process happens under its lease and in one transaction with its audit entry. The
wire layer (d4h.dsp routes) parses and maps errors; this module decides; the worker (steps.py) sends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from d4h.audit.log import AuditLog
from d4h.catalog.registry import Registry
from d4h.clock import Clock, utc_iso
from d4h.contracts import negotiation as neg
from d4h.contracts import transfer as tp
from d4h.contracts.automation import Scripts
from d4h.contracts.dispatch import Dispatcher
from d4h.contracts.enforcement import Counterparty
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.repository import AgreementStore, negotiation_store, transfer_store
from d4h.contracts.states import NegotiationState, Side, TransferState
from d4h.contracts.transfer import TransferProcess
from d4h.dataplane.tokens import DataPlane
from d4h.dsp.client import DspClient
from d4h.dsp.messages import (
    Agreement,
    ContractOfferMessage,
    ContractRequestMessage,
    Offer,
    TransferRequestMessage,
    parse_message,
)
from d4h.errors import Conflict, NotFound, UserError
from d4h.policy import PermitCheck
from d4h.store.db import transaction
from d4h.trust.did import did_to_url

_N = NegotiationState
_T = TransferState


def new_pid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def served_by(did: str, address: str, *, dev_mode: bool) -> bool:
    """Whether ``address`` is on the origin (scheme, host, port) where the did:web ``did`` is served."""
    root = "/".join(did_to_url(did, dev_mode=dev_mode).split("/")[:3])
    return address == root or address.startswith(root + "/")


# A provider's data tokens die as soon as a transfer is on its way out of STARTED (decided or told by the peer).
_TOKEN_REVOKING_STATES = frozenset(
    {_T.SUSPENDING, _T.SUSPENDED, _T.COMPLETING, _T.COMPLETED, _T.TERMINATING, _T.TERMINATED}
)


@dataclass
class Connector:
    engine: Engine
    clock: Clock
    audit: AuditLog
    registry: Registry
    dataplane: DataPlane
    dsp: DspClient
    own_did: str
    dsp_base_url: str  # our callback address and the base peers use
    dev_mode: bool
    instance_id: str
    scripts: Scripts | None = None
    permit_check: PermitCheck | None = None
    wake: Callable[[], None] = lambda: None
    # Set by the worker steps: start the job of a process this node just changed at once (no worker round,
    # no due query); False when they did not (the worker is woken instead).
    act_on_negotiation: Callable[[ContractNegotiation], bool] = lambda n: False
    act_on_transfer: Callable[[TransferProcess], bool] = lambda t: False

    def __post_init__(self) -> None:
        # Worker jobs (decide, send) run on a pool: a node waits on peers far more than it computes, and
        # the worker loop only hands out due processes (one job per process at a time).
        self.sender_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="d4h-send")
        self.negotiation_jobs = Dispatcher(self.sender_pool, lambda: self.wake())
        self.transfer_jobs = Dispatcher(self.sender_pool, lambda: self.wake())
        self.negotiations = negotiation_store(self.engine)
        self.transfers = transfer_store(self.engine)
        self.agreements = AgreementStore(self.engine)

    # -- helpers -----------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self.clock.now()

    def check_callback(self, caller_did: str, address: str | None) -> None:
        """A callback must point at the verified caller's own host (no SSRF through callbackAddress)."""
        if address is None:
            return
        if not served_by(caller_did, address, dev_mode=self.dev_mode):
            raise UserError(f"callbackAddress {address} is not served by the caller {caller_did}")

    def _negotiation_by_pid(self, pid: str, caller: str) -> ContractNegotiation:
        n = self.negotiations.by_own_pid(pid)
        if n is None or n.counter_party_id != caller:  # another participant's process: answer as if unknown
            raise NotFound(f"negotiation {pid} not found")
        return n

    def _transfer_by_pid(self, pid: str, caller: str) -> TransferProcess:
        t = self.transfers.by_own_pid(pid)
        if t is None or t.counter_party_id != caller:
            raise NotFound(f"transfer {pid} not found")
        return t

    def _audit(self, conn: Any, actor: str, action: str, obj: str, **params: Any) -> None:
        self.audit.append(actor=actor, action=action, obj=obj, params=params, conn=conn)

    # -- inbound: negotiations ---------------------------------------------------------------------

    def notify_initial_request(self, caller: Counterparty, body: Any) -> tuple[dict[str, Any], bool]:
        """Provider: a consumer opens a negotiation. Returns (ACK, created)."""
        msg = parse_message(body, expect=(ContractRequestMessage,))
        assert isinstance(msg, ContractRequestMessage)
        if msg.providerPid is not None:
            raise UserError("an initial ContractRequestMessage must not carry a providerPid")
        self.check_callback(caller.did, msg.callbackAddress)
        ref = self.registry.find_offer(msg.offer.id)
        reference = Offer.model_validate({**ref.body(), "target": ref.dataset_id})
        diffs = neg.offer_differences(msg.offer, reference)
        if diffs:
            raise UserError("the requested offer differs from the catalog offer: " + "; ".join(diffs))
        with transaction(self.engine) as conn:
            existing = self.negotiations.find_by_consumer_pid(msg.consumerPid, caller.did, conn)
            if existing is not None:
                return neg.ack_message(existing).to_wire(), False
            n = neg.on_initial_request(
                msg, id=uuid.uuid4().hex, provider_pid=new_pid(), counter_party_id=caller.did, at=self._now()
            )
            self.negotiations.create(n, conn, caller=caller.as_json())
            self._audit(
                conn, caller.did, "negotiation.requested", n.id, offer=msg.offer.id, dataset=ref.dataset_id
            )
        if not self.act_on_negotiation(n):
            self.wake()
        return neg.ack_message(n).to_wire(), True

    def notify_initial_offer(self, caller: Counterparty, body: Any) -> tuple[dict[str, Any], bool]:
        """Consumer: a provider opens a negotiation with an offer."""
        msg = parse_message(body, expect=(ContractOfferMessage,))
        assert isinstance(msg, ContractOfferMessage)
        self.check_callback(caller.did, msg.callbackAddress)
        with transaction(self.engine) as conn:
            n = neg.on_initial_offer(
                msg, id=uuid.uuid4().hex, consumer_pid=new_pid(), counter_party_id=caller.did, at=self._now()
            )
            self.negotiations.create(n, conn, caller=caller.as_json())
            self._audit(conn, caller.did, "negotiation.offered", n.id, offer=msg.offer.id)
        if not self.act_on_negotiation(n):
            self.wake()
        return neg.ack_message(n).to_wire(), True

    def notify_negotiation(
        self, caller: Counterparty, pid: str, body: Any, expect: tuple[type, ...]
    ) -> dict[str, Any]:
        msg = parse_message(body, expect=expect)
        n = self._negotiation_by_pid(pid, caller.did)
        # Lease, change, audit entry and release in one transaction (see ProcessStore.locked).
        with self.negotiations.locked(n.id, self.instance_id) as conn:
            n = self.negotiations.get(n.id, conn)
            if n.own_pid != getattr(msg, "providerPid" if n.side is Side.PROVIDER else "consumerPid"):
                raise UserError(f"the message's pid does not match negotiation {pid}")
            if neg.is_redelivery(n, msg):  # type: ignore[arg-type]
                return neg.ack_message(n).to_wire()  # already taken: answer, change and audit nothing
            n = neg.on_message(n, msg, at=self._now())  # type: ignore[arg-type]
            self.negotiations.save(n, conn)
            self._audit(
                conn, caller.did, f"negotiation.{n.state.value.lower()}", n.id, message=type(msg).__name__
            )
            if n.state is _N.FINALIZED:
                self._store_agreement(n, conn)
        if not self.act_on_negotiation(n):
            self.wake()
        return neg.ack_message(n).to_wire()

    def negotiation_state(self, caller: Counterparty, pid: str) -> dict[str, Any]:
        n = self._negotiation_by_pid(pid, caller.did)
        if n.peer_pid is None:
            # Our initial message may be in flight (the peer answers before the worker records its pid):
            # the worker holds the lease until then, so wait for it and read again.
            with self.negotiations.leased(n.id, self.instance_id):
                n = self.negotiations.get(n.id)
        return neg.ack_message(n).to_wire()

    def _store_agreement(self, n: ContractNegotiation, conn: Any) -> None:
        if n.agreement is None:
            return
        doc = n.agreement.model_dump(mode="json", by_alias=True, exclude_none=True)
        self.agreements.save(
            agreement=doc,
            negotiation_id=n.id,
            dataset_id=n.agreement.target,
            signed_at=utc_iso(self._now()),
            conn=conn,
        )

    def make_agreement(self, n: ContractNegotiation) -> Agreement:
        offer = n.offer
        if offer is None:
            raise UserError(f"negotiation {n.id} has no offer to agree on")
        body = offer.model_dump(mode="json", by_alias=True, exclude_none=True)
        body.update(
            {
                "@id": new_pid(),
                "@type": "Agreement",
                "target": offer.target,
                "assigner": self.own_did,
                "assignee": n.counter_party_id,
                "timestamp": utc_iso(self._now()),
            }
        )
        return Agreement.model_validate(body)

    # -- inbound: transfers ------------------------------------------------------------------------

    def _agreement_named_by(self, agreement_id: str, caller: str) -> dict[str, Any]:
        """The agreement a transfer request names. Our FINALIZED event reaches the consumer, who may ask for a
        transfer at once (possibly at another of our processes), before our worker has saved the acknowledgement
        and the agreement with it: wait for that worker (the negotiation's lease) and read again."""
        try:
            return self.agreements.get(agreement_id)
        except NotFound:
            pass
        finalizing = [
            n.id
            for n in self.negotiations.active()
            if n.side is Side.PROVIDER
            and n.state is _N.FINALIZING
            and n.counter_party_id == caller
            and n.agreement is not None
            and n.agreement.id == agreement_id
        ]
        if finalizing:
            with self.negotiations.leased(finalizing[0], self.instance_id):
                pass
        # Read again in any case: the worker may have saved it between our first read and the listing.
        return self.agreements.get(agreement_id)

    def notify_transfer_request(self, caller: Counterparty, body: Any) -> tuple[dict[str, Any], bool]:
        msg = parse_message(body, expect=(TransferRequestMessage,))
        assert isinstance(msg, TransferRequestMessage)
        self.check_callback(caller.did, msg.callbackAddress)
        try:
            agreement = self._agreement_named_by(msg.agreementId, caller.did)
        except NotFound as exc:
            raise UserError(f"agreement {msg.agreementId} is unknown") from exc
        if agreement["consumer"] not in (caller.did, "*"):  # "*": seeded for conformance runs (TCK mode)
            raise NotFound(f"agreement {msg.agreementId} not found")
        if msg.format not in ("HttpData-PULL", "Analysis-PULL"):
            raise UserError(f"transfer format {msg.format} is not supported (HttpData-PULL, Analysis-PULL)")
        with transaction(self.engine) as conn:
            existing = self.transfers.find_by_consumer_pid(msg.consumerPid, caller.did, conn)
            if existing is not None:
                return tp.ack_message(existing).to_wire(), False
            t = tp.on_transfer_request(
                msg, id=uuid.uuid4().hex, provider_pid=new_pid(), counter_party_id=caller.did, at=self._now()
            )
            self.transfers.create(t, conn, caller=caller.as_json())
            self._audit(
                conn, caller.did, "transfer.requested", t.id, agreement=msg.agreementId, format=msg.format
            )
        if not self.act_on_transfer(t):
            self.wake()
        return tp.ack_message(t).to_wire(), True

    def notify_transfer(
        self, caller: Counterparty, pid: str, body: Any, expect: tuple[type, ...]
    ) -> dict[str, Any]:
        msg = parse_message(body, expect=expect)
        t = self._transfer_by_pid(pid, caller.did)
        with self.transfers.locked(t.id, self.instance_id) as conn:
            t = self.transfers.get(t.id, conn)
            if t.own_pid != getattr(msg, "providerPid" if t.side is Side.PROVIDER else "consumerPid"):
                raise UserError(f"the message's pid does not match transfer {pid}")
            restarted = tp.on_message(t, msg, at=self._now())  # type: ignore[arg-type]
            if (
                t.side is Side.PROVIDER
                and t.state is _T.SUSPENDED
                and restarted.state is _T.STARTED
                and t.format.endswith("-PULL")
            ):
                # The consumer restarted a pull transfer whose token was revoked at suspension: answer with
                # a fresh data address in our own TransferStartMessage (STARTING, sent by the worker).
                t = self.provider_start(t, conn)
            else:
                t = restarted
            self.save_transfer(t, conn)
            self._audit(
                conn, caller.did, f"transfer.{t.state.value.lower()}", t.id, message=type(msg).__name__
            )
        if not self.act_on_transfer(t):
            self.wake()
        return tp.ack_message(t).to_wire()

    def transfer_state(self, caller: Counterparty, pid: str) -> dict[str, Any]:
        t = self._transfer_by_pid(pid, caller.did)
        if t.peer_pid is None:  # as for negotiations: let an in-flight initial send settle first
            with self.transfers.leased(t.id, self.instance_id):
                t = self.transfers.get(t.id)
        return tp.ack_message(t).to_wire()

    # -- management operations (this node's own decisions) -----------------------------------------

    def start_negotiation(
        self, *, provider_dsp_url: str, provider_did: str, offer: dict[str, Any], actor: str
    ) -> ContractNegotiation:
        """Consumer: ask a provider for a contract on one of its catalog offers (target = dataset id)."""
        if "target" not in offer:
            raise UserError("the offer needs a target (the dataset id)")
        n = neg.start_request(
            id=uuid.uuid4().hex,
            consumer_pid=new_pid(),
            counter_party_id=provider_did,
            counter_party_address=provider_dsp_url.rstrip("/"),
            offer=Offer.model_validate(offer),
            at=self._now(),
        )
        with transaction(self.engine) as conn:
            self.negotiations.create(n, conn)
            self._audit(conn, actor, "negotiation.start", n.id, provider=provider_did, offer=offer.get("@id"))
        if not self.act_on_negotiation(n):
            self.wake()
        return n

    def decide_negotiation(
        self,
        process_id: str,
        change: Callable[[ContractNegotiation], ContractNegotiation],
        *,
        actor: str,
        action: str,
    ) -> ContractNegotiation:
        with self.negotiations.locked(process_id, self.instance_id) as conn:
            n = change(self.negotiations.get(process_id, conn))
            self.negotiations.save(n, conn)
            self._audit(conn, actor, action, n.id, state=n.state.value)
        if not self.act_on_negotiation(n):
            self.wake()
        return n

    def terminate_negotiation(self, process_id: str, reason: str, *, actor: str) -> ContractNegotiation:
        return self.decide_negotiation(
            process_id,
            lambda n: neg.terminate(n, at=self._now(), reason=reason),
            actor=actor,
            action="negotiation.terminate",
        )

    def start_transfer(self, *, agreement_id: str, fmt: str, actor: str) -> TransferProcess:
        """Consumer: request a transfer under a finalized agreement we hold."""
        agreement = self.agreements.get(agreement_id)
        if agreement["consumer"] != self.own_did:
            raise Conflict(f"agreement {agreement_id} was not made with this node as consumer")
        n = self.negotiations.get(agreement["negotiation_id"])
        t = tp.start_request(
            id=uuid.uuid4().hex,
            consumer_pid=new_pid(),
            counter_party_id=agreement["provider"],
            counter_party_address=n.counter_party_address,
            agreement_id=agreement_id,
            format=fmt,
            at=self._now(),
        )
        with transaction(self.engine) as conn:
            self.transfers.create(t, conn)
            self._audit(conn, actor, "transfer.start", t.id, agreement=agreement_id, format=fmt)
        if not self.act_on_transfer(t):
            self.wake()
        return t

    def decide_transfer(
        self,
        process_id: str,
        change: Callable[[TransferProcess], TransferProcess],
        *,
        actor: str,
        action: str,
    ) -> TransferProcess:
        with self.transfers.locked(process_id, self.instance_id) as conn:
            t = change(self.transfers.get(process_id, conn))
            self.save_transfer(t, conn)
            self._audit(conn, actor, action, t.id, state=t.state.value)
        if not self.act_on_transfer(t):
            self.wake()
        return t

    def resume_transfer(self, process_id: str, *, actor: str) -> TransferProcess:
        """Restart a suspended transfer; a provider issues a fresh data token."""
        with self.transfers.locked(process_id, self.instance_id) as conn:
            t = self.transfers.get(process_id, conn)
            t = self.provider_start(t, conn) if t.side is Side.PROVIDER else tp.start(t, at=self._now())
            self.save_transfer(t, conn)
            self._audit(conn, actor, "transfer.resume", t.id)
        if not self.act_on_transfer(t):
            self.wake()
        return t

    def save_transfer(self, t: TransferProcess, conn: Any, *, next_attempt_at: float | None = None) -> None:
        """Save ``t``; a provider transfer leaving ``STARTED`` revokes its data tokens in the same transaction."""
        if t.side is Side.PROVIDER and t.state in _TOKEN_REVOKING_STATES:
            self.dataplane.revoke(conn, t.id)
        self.transfers.save(t, conn, next_attempt_at=next_attempt_at)

    def provider_start(self, t: TransferProcess, conn: Any) -> TransferProcess:
        """Provider: issue a data address (fresh token) and move to STARTING."""
        agreement = self.agreements.get(t.agreement_id)
        address = self.dataplane.issue(
            conn,
            transfer_id=t.id,
            fmt=t.format,
            dataset_id=agreement["dataset_id"],
            consumer=t.counter_party_id,
        )
        return tp.start(t, at=self._now(), data_address=address)
