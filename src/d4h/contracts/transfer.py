"""The transfer process value and its pure moves: inbound messages, local decisions, acknowledgements.

Same shape as ``negotiation.py``: ``TransferProcess`` is frozen, every function returns a new value or raises
``IllegalTransition`` / ``UserError``, and callers pass ``at``.

- inbound: ``on_transfer_request`` creates the provider's process (201; the shell de-duplicates on the
  consumer's ``consumerPid`` before calling it); ``on_start``, ``on_suspension``, ``on_completion`` and
  ``on_termination`` apply the peer's messages (200), and illegal ones raise (400 with a ``TransferError``).
- decisions: ``start`` (provider start, or either side's restart after suspension), ``suspend``, ``complete``,
  ``terminate`` enter ``-ING`` states; the worker sends ``outbound_message`` and calls ``acknowledge``.

Per the spec, an acknowledged TransferStartMessage moves both sides to ``STARTED``, whichever side sent it; a
consumer's restart carries no data address, so the provider re-enables the existing one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from d4h.contracts.states import (
    TRANSFER_FINAL_STATES,
    TRANSFER_SENDING,
    TRANSFER_TRANSITIONS,
    Side,
    TransferState,
    TransferWireState,
    require_transition,
    transfer_wire_state,
)
from d4h.dsp.messages import (
    DataAddress,
    Reason,
    TransferCompletionMessage,
    TransferProcessAck,
    TransferRequestMessage,
    TransferStartMessage,
    TransferSuspensionMessage,
    TransferTerminationMessage,
    reason_texts,
)
from d4h.errors import IllegalTransition, UserError

_T = TransferState

TransferMessage = (
    TransferStartMessage | TransferSuspensionMessage | TransferCompletionMessage | TransferTerminationMessage
)

INBOUND_MOVES: dict[tuple[Side, str], dict[TransferState, TransferState]] = {
    (Side.CONSUMER, "TransferStartMessage"): {
        _T.REQUESTED: _T.STARTED,
        _T.SUSPENDED: _T.STARTED,
        _T.STARTING: _T.STARTED,  # both sides restarted at once (a consumer's STARTING is always a restart)
    },
    (Side.PROVIDER, "TransferStartMessage"): {_T.SUSPENDED: _T.STARTED},
    (Side.CONSUMER, "TransferSuspensionMessage"): {_T.STARTED: _T.SUSPENDED, _T.SUSPENDING: _T.SUSPENDED},
    (Side.PROVIDER, "TransferSuspensionMessage"): {_T.STARTED: _T.SUSPENDED, _T.SUSPENDING: _T.SUSPENDED},
    (Side.CONSUMER, "TransferCompletionMessage"): {_T.STARTED: _T.COMPLETED, _T.COMPLETING: _T.COMPLETED},
    (Side.PROVIDER, "TransferCompletionMessage"): {_T.STARTED: _T.COMPLETED, _T.COMPLETING: _T.COMPLETED},
}
"""Non-initial, non-termination messages a side may receive: message → {from: to}.

Termination is received in every non-final state; the initial request creates the process. When both sides
decided the same move at once (both suspend, both complete, both restart), the peer's message settles it: the
``-ING`` side moves to the ``-ED`` state and owes nothing any more. A provider's ``STARTING`` may be a first
start, which a consumer cannot send, so it is not included.
"""


@dataclass(frozen=True, slots=True)
class TransferProcess:
    """One side's view of a transfer process under an agreement.

    ``data_address`` is the pull endpoint and token the provider sent (consumer side), or the one the provider's
    data plane issued (provider side); ``format`` is e.g. ``HttpData-PULL`` or ``Analysis-PULL``. The other
    fields mean what they mean on ``ContractNegotiation``; ``reason`` is sent with this side's suspension or
    termination.
    """

    id: str
    side: Side
    counter_party_id: str
    counter_party_address: str
    agreement_id: str
    format: str
    state: TransferState
    state_timestamp: datetime
    consumer_pid: str | None = None
    provider_pid: str | None = None
    state_count: int = 1
    pending: bool = False
    error_detail: str | None = None
    reason: str | None = None
    data_address: DataAddress | None = None

    @property
    def wire_state(self) -> TransferWireState:
        return transfer_wire_state(self.state)

    @property
    def is_final(self) -> bool:
        return self.state in TRANSFER_FINAL_STATES

    @property
    def owes_message(self) -> bool:
        return self.state in TRANSFER_SENDING

    @property
    def own_pid(self) -> str | None:
        return self.provider_pid if self.side is Side.PROVIDER else self.consumer_pid

    @property
    def peer_pid(self) -> str | None:
        return self.consumer_pid if self.side is Side.PROVIDER else self.provider_pid


def _label(t: TransferProcess) -> str:
    return f"{t.side.value} transfer {t.own_pid or t.id}"


def advance(
    t: TransferProcess, to: TransferState, *, at: datetime, error_detail: str | None = None
) -> TransferProcess:
    """Move to ``to`` if the table allows it for this side; the new state starts with ``state_count`` 1."""
    require_transition(TRANSFER_TRANSITIONS, t.side, t.state, to, entity=_label(t))
    return replace(
        t,
        state=to,
        state_timestamp=at,
        state_count=1,
        pending=False,
        error_detail=error_detail if error_detail is not None else t.error_detail,
    )


# --- creation -----------------------------------------------------------------------------------------------


def start_request(
    *,
    id: str,
    consumer_pid: str,
    counter_party_id: str,
    counter_party_address: str,
    agreement_id: str,
    format: str,
    at: datetime,
    data_address: DataAddress | None = None,
) -> TransferProcess:
    """Consumer: a new transfer that owes the provider its TransferRequestMessage (``REQUESTING``).

    ``data_address`` is only for push formats (where the provider should deliver).
    """
    t = TransferProcess(
        id=id,
        side=Side.CONSUMER,
        counter_party_id=counter_party_id,
        counter_party_address=counter_party_address,
        agreement_id=agreement_id,
        format=format,
        state=_T.INITIAL,
        state_timestamp=at,
        consumer_pid=consumer_pid,
        data_address=data_address,
    )
    return advance(t, _T.REQUESTING, at=at)


def on_transfer_request(
    message: TransferRequestMessage, *, id: str, provider_pid: str, counter_party_id: str, at: datetime
) -> TransferProcess:
    """Provider: a transfer opened by the consumer's request, now ``REQUESTED``.

    That the agreement exists, belongs to this consumer, still holds and supports the format is checked by the
    caller before this call.
    """
    t = TransferProcess(
        id=id,
        side=Side.PROVIDER,
        counter_party_id=counter_party_id,
        counter_party_address=message.callbackAddress,
        agreement_id=message.agreementId,
        format=message.format,
        state=_T.INITIAL,
        state_timestamp=at,
        consumer_pid=message.consumerPid,
        provider_pid=provider_pid,
        data_address=message.dataAddress,
    )
    return advance(t, _T.REQUESTED, at=at)


# --- inbound messages ---------------------------------------------------------------------------------------


def _adopt_pids(t: TransferProcess, provider_pid: str, consumer_pid: str) -> TransferProcess:
    for name, ours, theirs in (
        ("providerPid", t.provider_pid, provider_pid),
        ("consumerPid", t.consumer_pid, consumer_pid),
    ):
        if ours is not None and theirs != ours:
            raise UserError(f"{name} {theirs} does not match {_label(t)} ({ours})")
    return replace(
        t, provider_pid=t.provider_pid or provider_pid, consumer_pid=t.consumer_pid or consumer_pid
    )


def _receive(
    t: TransferProcess, key: str, *, at: datetime, error_detail: str | None = None
) -> TransferProcess:
    moves = INBOUND_MOVES.get((t.side, key), {})
    target = moves.get(t.state)
    if target is None:
        wanted = next(iter(moves.values()), _T.TERMINATED)
        raise IllegalTransition(f"{_label(t)} ({key})", t.state.value, wanted.value)
    return advance(t, target, at=at, error_detail=error_detail)


def _peer_detail(what: str, code: str | None, reasons: tuple[Reason, ...] | None) -> str:
    texts = reason_texts(reasons)
    detail = f"{what} by counter-party" + (f" (code {code})" if code else "")
    return detail + ((": " + "; ".join(texts)) if texts else "")


def on_start(t: TransferProcess, message: TransferStartMessage, *, at: datetime) -> TransferProcess:
    """The peer started the transfer (consumer: from ``REQUESTED``) or restarted it (either: from ``SUSPENDED``).

    A data address in the message replaces the one held (the provider's new endpoint and token), also in
    ``STARTED`` at the consumer: the provider's answer to the consumer's restart of a pull transfer.
    """
    t = _adopt_pids(t, message.providerPid, message.consumerPid)
    if t.side is Side.CONSUMER and t.state is _T.STARTED and message.dataAddress is not None:
        # After our restart of a pull transfer the provider sends the fresh endpoint and token (the old
        # token was revoked at suspension): take the address, the state stays STARTED.
        return replace(t, data_address=message.dataAddress, state_timestamp=at)
    started = _receive(t, "TransferStartMessage", at=at)
    if message.dataAddress is not None:
        started = replace(started, data_address=message.dataAddress)
    return started


def on_suspension(t: TransferProcess, message: TransferSuspensionMessage, *, at: datetime) -> TransferProcess:
    """The peer suspended the transfer: ``STARTED`` → ``SUSPENDED``."""
    t = _adopt_pids(t, message.providerPid, message.consumerPid)
    detail = _peer_detail("suspended", message.code, message.reason)
    return _receive(t, "TransferSuspensionMessage", at=at, error_detail=detail)


def on_completion(t: TransferProcess, message: TransferCompletionMessage, *, at: datetime) -> TransferProcess:
    """The peer completed the transfer: ``STARTED`` → ``COMPLETED``."""
    t = _adopt_pids(t, message.providerPid, message.consumerPid)
    return _receive(t, "TransferCompletionMessage", at=at)


def on_termination(
    t: TransferProcess, message: TransferTerminationMessage, *, at: datetime
) -> TransferProcess:
    """The peer terminated the transfer; legal in every non-final state."""
    t = _adopt_pids(t, message.providerPid, message.consumerPid)
    detail = _peer_detail("terminated", message.code, message.reason)
    return advance(t, _T.TERMINATED, at=at, error_detail=detail)


def on_message(t: TransferProcess, message: TransferMessage, *, at: datetime) -> TransferProcess:
    """Dispatch a non-initial transfer message to its ``on_*`` function."""
    match message:
        case TransferStartMessage():
            return on_start(t, message, at=at)
        case TransferSuspensionMessage():
            return on_suspension(t, message, at=at)
        case TransferCompletionMessage():
            return on_completion(t, message, at=at)
        case TransferTerminationMessage():
            return on_termination(t, message, at=at)


# --- local decisions (enter an -ING state) ------------------------------------------------------------------


def start(t: TransferProcess, *, at: datetime, data_address: DataAddress | None = None) -> TransferProcess:
    """Provider: start (from ``REQUESTED``) or restart; consumer: restart (from ``SUSPENDED``) → ``STARTING``.

    A provider starting a pull transfer passes the data address (endpoint and token) to send.
    """
    if (
        t.side is Side.PROVIDER
        and t.state is _T.REQUESTED
        and data_address is None
        and t.format.endswith("-PULL")
    ):
        raise UserError(f"{_label(t)}: starting a {t.format} transfer needs a data address")
    moved = advance(t, _T.STARTING, at=at)
    return replace(moved, data_address=data_address) if data_address is not None else moved


def suspend(t: TransferProcess, *, at: datetime, reason: str) -> TransferProcess:
    """Either side: suspend a started transfer → ``SUSPENDING``."""
    return replace(advance(t, _T.SUSPENDING, at=at, error_detail=reason), reason=reason)


def complete(t: TransferProcess, *, at: datetime) -> TransferProcess:
    """Either side: complete a started transfer → ``COMPLETING``."""
    return advance(t, _T.COMPLETING, at=at)


def terminate(t: TransferProcess, *, at: datetime, reason: str) -> TransferProcess:
    """Either side: terminate → ``TERMINATING``; straight to ``TERMINATED`` if the peer never learnt of it."""
    if t.peer_pid is None and not t.is_final:
        return replace(advance(t, _T.TERMINATED, at=at, error_detail=reason), reason=reason)
    return replace(advance(t, _T.TERMINATING, at=at, error_detail=reason), reason=reason)


def set_pending(t: TransferProcess, pending: bool, *, reason: str | None = None) -> TransferProcess:
    """Mark (or clear) a wait for an outside decision; workers skip pending transfers."""
    if t.is_final:
        raise IllegalTransition(_label(t), t.state.value, t.state.value)
    return replace(t, pending=pending, error_detail=reason if reason is not None else t.error_detail)


# --- worker steps -------------------------------------------------------------------------------------------


def acknowledge(t: TransferProcess, *, at: datetime, peer_pid: str | None = None) -> TransferProcess:
    """The peer acknowledged the owed message: ``-ING`` → ``-ED``. ``peer_pid``: the provider's pid from the
    ACK to the consumer's request."""
    target = TRANSFER_SENDING.get(t.state)
    if target is None:
        raise IllegalTransition(f"{_label(t)} (acknowledge)", t.state.value, "-ED")
    if peer_pid is not None:
        if t.peer_pid is not None and t.peer_pid != peer_pid:
            raise UserError(f"acknowledged pid {peer_pid} does not match {_label(t)} ({t.peer_pid})")
        t = (
            replace(t, provider_pid=peer_pid)
            if t.side is Side.CONSUMER
            else replace(t, consumer_pid=peer_pid)
        )
    return advance(t, target, at=at)


def reconcile(t: TransferProcess, peer_state: TransferWireState, *, at: datetime) -> TransferProcess:
    """Settle an ``-ING`` transfer from the state the peer reports: acknowledge if our message evidently
    arrived, end if the peer is ``TERMINATED``, else keep retrying. Only the provider has a ``GET``, so this
    serves the consumer side."""
    if not t.owes_message:
        return t
    target = TRANSFER_SENDING[t.state]
    if peer_state == transfer_wire_state(target):
        return acknowledge(t, at=at)
    if peer_state == TransferWireState.TERMINATED:
        return advance(t, _T.TERMINATED, at=at, error_detail="counter-party reports TERMINATED")
    return t


def retry(t: TransferProcess, *, at: datetime, error: str) -> TransferProcess:
    """A send failed transiently: stay in the ``-ING`` state, count the attempt, remember the error."""
    if not t.owes_message:
        raise IllegalTransition(f"{_label(t)} (retry)", t.state.value, t.state.value)
    return replace(t, state_count=t.state_count + 1, state_timestamp=at, error_detail=error)


def outbound_message(
    t: TransferProcess, *, callback_address: str | None = None
) -> TransferMessage | TransferRequestMessage:
    """The DSP message owed in the current ``-ING`` state (``callback_address`` only for the request)."""
    match t.state:
        case _T.REQUESTING:
            if callback_address is None:
                raise UserError("a TransferRequestMessage needs this node's callback address")
            return TransferRequestMessage(
                consumerPid=_pid(t.consumer_pid),
                agreementId=t.agreement_id,
                format=t.format,
                callbackAddress=callback_address,
                dataAddress=t.data_address,
            )
        case _T.STARTING:
            address = t.data_address if t.side is Side.PROVIDER else None
            return TransferStartMessage(
                providerPid=_pid(t.provider_pid), consumerPid=_pid(t.consumer_pid), dataAddress=address
            )
        case _T.SUSPENDING:
            return TransferSuspensionMessage(
                providerPid=_pid(t.provider_pid), consumerPid=_pid(t.consumer_pid), reason=_reasons(t)
            )
        case _T.COMPLETING:
            return TransferCompletionMessage(
                providerPid=_pid(t.provider_pid), consumerPid=_pid(t.consumer_pid)
            )
        case _T.TERMINATING:
            return TransferTerminationMessage(
                providerPid=_pid(t.provider_pid), consumerPid=_pid(t.consumer_pid), reason=_reasons(t)
            )
        case _:
            raise IllegalTransition(f"{_label(t)} (nothing to send)", t.state.value, t.state.value)


def ack_message(t: TransferProcess) -> TransferProcessAck:
    """The ``TransferProcess`` ACK body (creation answer and ``GET``), with the wire state."""
    return TransferProcessAck(
        providerPid=_pid(t.provider_pid), consumerPid=_pid(t.consumer_pid), state=t.wire_state
    )


def _reasons(t: TransferProcess) -> tuple[Reason, ...] | None:
    return (t.reason,) if t.reason else None


def _pid(pid: str | None) -> str:
    if pid is None:
        raise UserError("the counter-party's process id is not known yet")
    return pid
