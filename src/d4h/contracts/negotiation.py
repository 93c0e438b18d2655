"""The contract negotiation value and its pure moves: inbound messages, local decisions, acknowledgements.

``ContractNegotiation`` is a frozen value; every function returns a new one or raises. Nothing here does I/O or
reads the clock: callers pass ``at``. The shell (routes, worker, repository) uses it like this:

- inbound message: look the negotiation up by the pid in the path, call ``on_<message>(n, msg, at=…)``, save, and
  answer with ``ack_message`` (201 for ``on_initial_request`` / ``on_initial_offer``, else 200). ``IllegalTransition``
  becomes 400 with a ``ContractNegotiationError``; ``UserError`` (mismatched pids, wrong message shape) 400 too.
- local decision (management API, automation rules, policy monitor): ``agree``, ``counter_offer``, ``accept``,
  ``counter_request``, ``verify``, ``finalize``, ``terminate`` move to an ``-ING`` state.
- worker: for an ``-ING`` negotiation, send ``outbound_message(n)``; on the peer's 2xx call ``acknowledge``; on a
  transient failure ``retry``; when retries are exhausted ``terminate`` (or ``advance`` to ``TERMINATED``). After
  an ambiguous failure (timeout, or a 4xx to a retried message) ``GET`` the peer and ``reconcile``.

Messages are accepted strictly by the spec state machine: a repeated counter-request while ``REQUESTED`` is an
error (TCK CN:03-04), and so is any message that presupposes a step this side has not yet recorded. The shell
must therefore make an inbound handler wait for a worker that holds the lease while sending, so a fast peer's
next message is applied after the acknowledgement is saved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from d4h.contracts.states import (
    NEGOTIATION_FINAL_STATES,
    NEGOTIATION_SENDING,
    NEGOTIATION_TRANSITIONS,
    NegotiationState,
    NegotiationWireState,
    Side,
    negotiation_wire_state,
    require_transition,
)
from d4h.dsp.messages import (
    Agreement,
    ContractAgreementMessage,
    ContractAgreementVerificationMessage,
    ContractNegotiationAck,
    ContractNegotiationEventMessage,
    ContractNegotiationTerminationMessage,
    ContractOfferMessage,
    ContractRequestMessage,
    Offer,
    reason_texts,
)
from d4h.errors import IllegalTransition, UserError

_N = NegotiationState

NegotiationMessage = (
    ContractRequestMessage
    | ContractOfferMessage
    | ContractAgreementMessage
    | ContractAgreementVerificationMessage
    | ContractNegotiationEventMessage
    | ContractNegotiationTerminationMessage
)

INBOUND_MOVES: dict[tuple[Side, str], dict[NegotiationState, NegotiationState]] = {
    (Side.PROVIDER, "ContractRequestMessage"): {_N.OFFERED: _N.REQUESTED},
    (Side.PROVIDER, "ACCEPTED"): {_N.OFFERED: _N.ACCEPTED},
    (Side.PROVIDER, "ContractAgreementVerificationMessage"): {_N.AGREED: _N.VERIFIED},
    (Side.CONSUMER, "ContractOfferMessage"): {_N.REQUESTED: _N.OFFERED},
    (Side.CONSUMER, "ContractAgreementMessage"): {_N.REQUESTED: _N.AGREED, _N.ACCEPTED: _N.AGREED},
    (Side.CONSUMER, "FINALIZED"): {_N.VERIFIED: _N.FINALIZED},
}
"""Non-initial, non-termination messages a side may receive: message (or event type) → {from: to}.

Termination is received in every non-final state. Initial messages create the negotiation
(``on_initial_request``, ``on_initial_offer``).
"""


@dataclass(frozen=True, slots=True)
class ContractNegotiation:
    """One side's view of a contract negotiation.

    ``id`` is the local identifier; ``consumer_pid``/``provider_pid`` are the process ids on the wire (this side's
    own pid is always known; the peer's is learnt from its first message or ACK). ``counter_party_address`` is
    where messages to the peer go: the consumer's ``callbackAddress`` or the provider's DSP base URL.
    ``state_count`` counts attempts in the current state (1 on entry); ``pending`` marks a negotiation waiting
    for an outside decision (for example an HDAB permit), which workers skip. ``error_detail`` is the last
    problem worth showing (the peer's termination reason, a send failure); ``reason`` is this side's own reason
    for terminating, sent in the termination message. ``offer`` is the current offer (the last one sent or
    received), ``agreement`` the agreement once made.
    """

    id: str
    side: Side
    counter_party_id: str
    counter_party_address: str
    state: NegotiationState
    state_timestamp: datetime
    consumer_pid: str | None = None
    provider_pid: str | None = None
    state_count: int = 1
    pending: bool = False
    error_detail: str | None = None
    reason: str | None = None
    offer: Offer | None = None
    agreement: Agreement | None = None

    @property
    def wire_state(self) -> NegotiationWireState:
        return negotiation_wire_state(self.state)

    @property
    def is_final(self) -> bool:
        return self.state in NEGOTIATION_FINAL_STATES

    @property
    def owes_message(self) -> bool:
        """True in an ``-ING`` state: a message must be sent to the peer."""
        return self.state in NEGOTIATION_SENDING

    @property
    def own_pid(self) -> str | None:
        return self.provider_pid if self.side is Side.PROVIDER else self.consumer_pid

    @property
    def peer_pid(self) -> str | None:
        return self.consumer_pid if self.side is Side.PROVIDER else self.provider_pid


def _label(n: ContractNegotiation) -> str:
    return f"{n.side.value} negotiation {n.own_pid or n.id}"


def advance(
    n: ContractNegotiation, to: NegotiationState, *, at: datetime, error_detail: str | None = None
) -> ContractNegotiation:
    """Move to ``to`` if the table allows it for this side; the new state starts with ``state_count`` 1."""
    require_transition(NEGOTIATION_TRANSITIONS, n.side, n.state, to, entity=_label(n))
    return replace(
        n,
        state=to,
        state_timestamp=at,
        state_count=1,
        pending=False,
        error_detail=error_detail if error_detail is not None else n.error_detail,
    )


# --- creation -----------------------------------------------------------------------------------------------


def start_request(
    *,
    id: str,
    consumer_pid: str,
    counter_party_id: str,
    counter_party_address: str,
    offer: Offer,
    at: datetime,
) -> ContractNegotiation:
    """Consumer: a new negotiation that owes the provider its initial ContractRequestMessage (``REQUESTING``)."""
    _require_target(offer)
    n = ContractNegotiation(
        id=id,
        side=Side.CONSUMER,
        counter_party_id=counter_party_id,
        counter_party_address=counter_party_address,
        state=_N.INITIAL,
        state_timestamp=at,
        consumer_pid=consumer_pid,
        offer=offer,
    )
    return advance(n, _N.REQUESTING, at=at)


def start_offer(
    *,
    id: str,
    provider_pid: str,
    counter_party_id: str,
    counter_party_address: str,
    offer: Offer,
    at: datetime,
) -> ContractNegotiation:
    """Provider: a new negotiation that owes the consumer an initial ContractOfferMessage (``OFFERING``)."""
    _require_target(offer)
    n = ContractNegotiation(
        id=id,
        side=Side.PROVIDER,
        counter_party_id=counter_party_id,
        counter_party_address=counter_party_address,
        state=_N.INITIAL,
        state_timestamp=at,
        provider_pid=provider_pid,
        offer=offer,
    )
    return advance(n, _N.OFFERING, at=at)


def on_initial_request(
    message: ContractRequestMessage, *, id: str, provider_pid: str, counter_party_id: str, at: datetime
) -> ContractNegotiation:
    """Provider: a negotiation opened by the consumer's initial request, now ``REQUESTED``.

    Whether the offer equals the catalogue offer is the caller's check (``offer_differences``) before this call.
    """
    if message.providerPid is not None or message.callbackAddress is None:
        raise UserError("an initial ContractRequestMessage carries a callbackAddress and no providerPid")
    n = ContractNegotiation(
        id=id,
        side=Side.PROVIDER,
        counter_party_id=counter_party_id,
        counter_party_address=message.callbackAddress,
        state=_N.INITIAL,
        state_timestamp=at,
        consumer_pid=message.consumerPid,
        provider_pid=provider_pid,
        offer=message.offer,
    )
    return advance(n, _N.REQUESTED, at=at)


def on_initial_offer(
    message: ContractOfferMessage, *, id: str, consumer_pid: str, counter_party_id: str, at: datetime
) -> ContractNegotiation:
    """Consumer: a negotiation opened by the provider's initial offer, now ``OFFERED``."""
    if message.consumerPid is not None or message.callbackAddress is None:
        raise UserError("an initial ContractOfferMessage carries a callbackAddress and no consumerPid")
    n = ContractNegotiation(
        id=id,
        side=Side.CONSUMER,
        counter_party_id=counter_party_id,
        counter_party_address=message.callbackAddress,
        state=_N.INITIAL,
        state_timestamp=at,
        consumer_pid=consumer_pid,
        provider_pid=message.providerPid,
        offer=message.offer,
    )
    return advance(n, _N.OFFERED, at=at)


# --- inbound messages ---------------------------------------------------------------------------------------


def _receive(n: ContractNegotiation, key: str, *, at: datetime) -> ContractNegotiation:
    moves = INBOUND_MOVES.get((n.side, key), {})
    target = moves.get(n.state)
    if target is None:
        wanted = next(iter(moves.values()), _N.TERMINATED)
        raise IllegalTransition(f"{_label(n)} ({key})", n.state.value, wanted.value)
    return advance(n, target, at=at)


def _adopt_pids(
    n: ContractNegotiation, provider_pid: str | None, consumer_pid: str | None
) -> ContractNegotiation:
    """Check the message's pids against ours; learn the peer's pid if we do not know it yet."""
    for name, ours, theirs in (
        ("providerPid", n.provider_pid, provider_pid),
        ("consumerPid", n.consumer_pid, consumer_pid),
    ):
        if theirs is not None and ours is not None and theirs != ours:
            raise UserError(f"{name} {theirs} does not match {_label(n)} ({ours})")
    return replace(
        n,
        provider_pid=n.provider_pid or provider_pid,
        consumer_pid=n.consumer_pid or consumer_pid,
    )


def on_request(
    n: ContractNegotiation, message: ContractRequestMessage, *, at: datetime
) -> ContractNegotiation:
    """Provider: the consumer's counter-request (``OFFERED`` → ``REQUESTED``); its offer becomes current."""
    if message.is_initial:
        raise UserError("a counter-request must carry the providerPid")
    n = _adopt_pids(n, message.providerPid, message.consumerPid)
    return replace(_receive(n, "ContractRequestMessage", at=at), offer=message.offer)


def on_offer(n: ContractNegotiation, message: ContractOfferMessage, *, at: datetime) -> ContractNegotiation:
    """Consumer: the provider's counter-offer (``REQUESTED`` → ``OFFERED``); its offer becomes current."""
    if message.is_initial:
        raise UserError("a counter-offer must carry the consumerPid")
    n = _adopt_pids(n, message.providerPid, message.consumerPid)
    return replace(_receive(n, "ContractOfferMessage", at=at), offer=message.offer)


def on_agreement(
    n: ContractNegotiation, message: ContractAgreementMessage, *, at: datetime
) -> ContractNegotiation:
    """Consumer: the provider's agreement (``REQUESTED`` or ``ACCEPTED`` → ``AGREED``).

    Whether the agreement matches what was asked is the caller's decision (``offer_differences`` against
    ``n.offer``); on a mismatch it should ``terminate`` rather than ``verify``.
    """
    n = _adopt_pids(n, message.providerPid, message.consumerPid)
    return replace(_receive(n, "ContractAgreementMessage", at=at), agreement=message.agreement)


def on_verification(
    n: ContractNegotiation, message: ContractAgreementVerificationMessage, *, at: datetime
) -> ContractNegotiation:
    """Provider: the consumer verified the agreement (``AGREED`` → ``VERIFIED``)."""
    n = _adopt_pids(n, message.providerPid, message.consumerPid)
    return _receive(n, "ContractAgreementVerificationMessage", at=at)


def on_event(
    n: ContractNegotiation, message: ContractNegotiationEventMessage, *, at: datetime
) -> ContractNegotiation:
    """``ACCEPTED`` at the provider (``OFFERED`` → ``ACCEPTED``); ``FINALIZED`` at the consumer (``VERIFIED`` →
    ``FINALIZED``). The other combinations (a consumer sending FINALIZED, a provider ACCEPTED) are illegal."""
    n = _adopt_pids(n, message.providerPid, message.consumerPid)
    return _receive(n, message.eventType, at=at)


def on_termination(
    n: ContractNegotiation, message: ContractNegotiationTerminationMessage, *, at: datetime
) -> ContractNegotiation:
    """Either side: the peer terminated; legal in every non-final state. The reason is kept as error detail."""
    n = _adopt_pids(n, message.providerPid, message.consumerPid)
    texts = reason_texts(message.reason)
    detail = "terminated by counter-party" + (f" (code {message.code})" if message.code else "")
    detail += (": " + "; ".join(texts)) if texts else ""
    return advance(n, _N.TERMINATED, at=at, error_detail=detail)


REDELIVERED_IN: dict[tuple[Side, str], frozenset[NegotiationState]] = {
    (Side.PROVIDER, "ACCEPTED"): frozenset(
        {_N.ACCEPTED, _N.AGREEING, _N.AGREED, _N.VERIFIED, _N.FINALIZING, _N.FINALIZED}
    ),
    (Side.PROVIDER, "ContractAgreementVerificationMessage"): frozenset(
        {_N.VERIFIED, _N.FINALIZING, _N.FINALIZED}
    ),
    (Side.CONSUMER, "ContractAgreementMessage"): frozenset(
        {_N.AGREED, _N.VERIFYING, _N.VERIFIED, _N.FINALIZED}
    ),
    (Side.CONSUMER, "FINALIZED"): frozenset({_N.FINALIZED}),
}
"""States in which a message was already received and acted on (message → states past its move)."""


def is_redelivery(n: ContractNegotiation, message: NegotiationMessage) -> bool:
    """A message we already took, sent again by a peer killed after our ACK but before it recorded it.

    The peer resumes its ``-ING`` state and re-sends; refusing it as illegal would terminate a negotiation
    both sides agree on. It is answered with our current state instead, changing nothing (and auditing nothing).
    """
    if isinstance(message, ContractNegotiationTerminationMessage):
        return False  # a terminated side refuses it; the sender then records its own termination
    key = (
        message.eventType if isinstance(message, ContractNegotiationEventMessage) else type(message).__name__
    )
    if n.state not in REDELIVERED_IN.get((n.side, key), frozenset()):
        return False
    if isinstance(message, ContractAgreementMessage):  # the same agreement, not a different one
        return n.agreement is not None and n.agreement.id == message.agreement.id
    return True


def on_message(n: ContractNegotiation, message: NegotiationMessage, *, at: datetime) -> ContractNegotiation:
    """Dispatch a non-initial negotiation message to its ``on_*`` function."""
    match message:
        case ContractRequestMessage():
            return on_request(n, message, at=at)
        case ContractOfferMessage():
            return on_offer(n, message, at=at)
        case ContractAgreementMessage():
            return on_agreement(n, message, at=at)
        case ContractAgreementVerificationMessage():
            return on_verification(n, message, at=at)
        case ContractNegotiationEventMessage():
            return on_event(n, message, at=at)
        case ContractNegotiationTerminationMessage():
            return on_termination(n, message, at=at)


# --- local decisions (enter an -ING state) ------------------------------------------------------------------


def counter_offer(n: ContractNegotiation, offer: Offer, *, at: datetime) -> ContractNegotiation:
    """Provider: answer a request with a (counter-)offer: ``REQUESTED`` → ``OFFERING``."""
    _require_target(offer)
    return replace(advance(n, _N.OFFERING, at=at), offer=offer)


def agree(n: ContractNegotiation, agreement: Agreement, *, at: datetime) -> ContractNegotiation:
    """Provider: agree (from ``REQUESTED`` or ``ACCEPTED``) → ``AGREEING``."""
    return replace(advance(n, _N.AGREEING, at=at), agreement=agreement)


def accept(n: ContractNegotiation, *, at: datetime) -> ContractNegotiation:
    """Consumer: accept the provider's current offer: ``OFFERED`` → ``ACCEPTING``."""
    return advance(n, _N.ACCEPTING, at=at)


def counter_request(n: ContractNegotiation, offer: Offer, *, at: datetime) -> ContractNegotiation:
    """Consumer: answer an offer with a counter-request: ``OFFERED`` → ``REQUESTING``."""
    _require_target(offer)
    return replace(advance(n, _N.REQUESTING, at=at), offer=offer)


def verify(n: ContractNegotiation, *, at: datetime) -> ContractNegotiation:
    """Consumer: verify the agreement: ``AGREED`` → ``VERIFYING``."""
    return advance(n, _N.VERIFYING, at=at)


def finalize(n: ContractNegotiation, *, at: datetime) -> ContractNegotiation:
    """Provider: finalize: ``VERIFIED`` → ``FINALIZING``."""
    return advance(n, _N.FINALIZING, at=at)


def terminate(n: ContractNegotiation, *, at: datetime, reason: str) -> ContractNegotiation:
    """Terminate by this side's decision.

    Enters ``TERMINATING`` (a termination message is owed) where the diagram lets this side terminate. If the
    peer's pid is unknown (the initial message was never acknowledged) there is nobody to tell, so the
    negotiation goes straight to ``TERMINATED``. Elsewhere ``IllegalTransition`` is raised.
    """
    if n.peer_pid is None and not n.is_final:
        return replace(advance(n, _N.TERMINATED, at=at, error_detail=reason), reason=reason)
    return replace(advance(n, _N.TERMINATING, at=at, error_detail=reason), reason=reason)


def set_pending(n: ContractNegotiation, pending: bool, *, reason: str | None = None) -> ContractNegotiation:
    """Mark (or clear) a wait for an outside decision; workers skip pending negotiations."""
    if n.is_final:
        raise IllegalTransition(_label(n), n.state.value, n.state.value)
    return replace(n, pending=pending, error_detail=reason if reason is not None else n.error_detail)


# --- worker steps -------------------------------------------------------------------------------------------


def acknowledge(n: ContractNegotiation, *, at: datetime, peer_pid: str | None = None) -> ContractNegotiation:
    """The peer acknowledged the message owed in the ``-ING`` state: move to its ``-ED`` state.

    ``peer_pid`` is the pid from the peer's ACK body: the provider's pid answering an initial request, or the
    consumer's answering an initial offer.
    """
    target = NEGOTIATION_SENDING.get(n.state)
    if target is None:
        raise IllegalTransition(f"{_label(n)} (acknowledge)", n.state.value, "-ED")
    if peer_pid is not None:
        n = _adopt_pids(n, peer_pid, None) if n.side is Side.CONSUMER else _adopt_pids(n, None, peer_pid)
    return advance(n, target, at=at)


def reconcile(
    n: ContractNegotiation, peer_state: NegotiationWireState, *, at: datetime
) -> ContractNegotiation:
    """Settle an ``-ING`` negotiation after an ambiguous send, from the state the peer reports (its ``GET``).

    If the peer already shows the state our message leads to, the message arrived and only the ACK was lost:
    acknowledge. If the peer shows ``TERMINATED``, so do we. Otherwise keep the value (retry later). This is how
    the worker stays correct when a retried message is refused because the first attempt had already landed
    (messages are not absorbed as replays; see the module notes).
    """
    if not n.owes_message:
        return n
    target = NEGOTIATION_SENDING[n.state]
    if peer_state == negotiation_wire_state(target):
        return acknowledge(n, at=at)
    if peer_state == NegotiationWireState.TERMINATED:
        return advance(n, _N.TERMINATED, at=at, error_detail="counter-party reports TERMINATED")
    return n


def retry(n: ContractNegotiation, *, at: datetime, error: str) -> ContractNegotiation:
    """A send failed transiently: stay in the ``-ING`` state, count the attempt, remember the error."""
    if not n.owes_message:
        raise IllegalTransition(f"{_label(n)} (retry)", n.state.value, n.state.value)
    return replace(n, state_count=n.state_count + 1, state_timestamp=at, error_detail=error)


def outbound_message(n: ContractNegotiation, *, callback_address: str | None = None) -> NegotiationMessage:
    """The DSP message owed in the current ``-ING`` state.

    ``callback_address`` (this node's DSP base URL) is needed only for the messages that open a negotiation.
    """
    pp, cp = n.provider_pid, n.consumer_pid
    match n.state:
        case _N.REQUESTING:
            offer = _current_offer(n)
            if pp is None:
                if callback_address is None:
                    raise UserError("an initial ContractRequestMessage needs this node's callback address")
                return ContractRequestMessage(
                    consumerPid=_pid(cp), offer=offer, callbackAddress=callback_address
                )
            return ContractRequestMessage(consumerPid=_pid(cp), providerPid=pp, offer=offer)
        case _N.OFFERING:
            offer = _current_offer(n)
            if cp is None:
                if callback_address is None:
                    raise UserError("an initial ContractOfferMessage needs this node's callback address")
                return ContractOfferMessage(
                    providerPid=_pid(pp), offer=offer, callbackAddress=callback_address
                )
            return ContractOfferMessage(providerPid=_pid(pp), consumerPid=cp, offer=offer)
        case _N.ACCEPTING:
            return ContractNegotiationEventMessage(
                providerPid=_pid(pp), consumerPid=_pid(cp), eventType="ACCEPTED"
            )
        case _N.AGREEING:
            if n.agreement is None:
                raise UserError(f"{_label(n)} has no agreement to send")
            return ContractAgreementMessage(providerPid=_pid(pp), consumerPid=_pid(cp), agreement=n.agreement)
        case _N.VERIFYING:
            return ContractAgreementVerificationMessage(providerPid=_pid(pp), consumerPid=_pid(cp))
        case _N.FINALIZING:
            return ContractNegotiationEventMessage(
                providerPid=_pid(pp), consumerPid=_pid(cp), eventType="FINALIZED"
            )
        case _N.TERMINATING:
            reasons = (n.reason,) if n.reason else None
            return ContractNegotiationTerminationMessage(
                providerPid=_pid(pp), consumerPid=_pid(cp), reason=reasons
            )
        case _:
            raise IllegalTransition(f"{_label(n)} (nothing to send)", n.state.value, n.state.value)


def ack_message(n: ContractNegotiation) -> ContractNegotiationAck:
    """The ``ContractNegotiation`` ACK body (creation answer and ``GET``), with the wire state."""
    return ContractNegotiationAck(
        providerPid=_pid(n.provider_pid), consumerPid=_pid(n.consumer_pid), state=n.wire_state
    )


# --- offer equality -----------------------------------------------------------------------------------------


def offer_differences(requested: Offer | Agreement, reference: Offer) -> list[str]:
    """What differs between a requested offer (or an agreement) and the reference offer, term by term.

    ``target`` and ``@type`` are not compared (catalogue offers have no target; an agreement is not an offer), and
    neither are the agreement's own terms (assigner, assignee, timestamp) nor, for agreements, the ``@id``. Empty
    means equal: the provider accepts the request, the consumer accepts the agreement.
    """
    skip = {"@type", "target", "assigner", "assignee", "timestamp"}
    if isinstance(requested, Agreement):
        skip.add("@id")
    left = {k: v for k, v in requested.to_wire().items() if k not in skip}
    right = {k: v for k, v in reference.to_wire().items() if k not in skip}
    return [
        f"{key}: {left.get(key)!r} != {right.get(key)!r}"
        for key in sorted(left.keys() | right.keys())
        if left.get(key) != right.get(key)
    ]


def _require_target(offer: Offer) -> None:
    if offer.target is None:
        raise UserError(f"offer {offer.id} needs a target (the dataset id) in a negotiation")


def _current_offer(n: ContractNegotiation) -> Offer:
    if n.offer is None:
        raise UserError(f"{_label(n)} has no offer to send")
    return n.offer


def _pid(pid: str | None) -> str:
    if pid is None:
        raise UserError("the counter-party's process id is not known yet")
    return pid
