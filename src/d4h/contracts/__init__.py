"""Contract negotiation and transfer process state machines (pure core).

Use the values and the moves through their modules, whose function names mirror each other::

    from d4h.contracts import negotiation, transfer
    n = negotiation.on_initial_request(msg, id=..., provider_pid=..., counter_party_id=..., at=now)
    n = negotiation.agree(n, agreement, at=now)
"""

from d4h.contracts import negotiation, transfer
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.states import (
    FINAL_STATES,
    NEGOTIATION_TRANSITIONS,
    TRANSFER_TRANSITIONS,
    NegotiationState,
    NegotiationWireState,
    Side,
    TransferState,
    TransferWireState,
    mermaid_diagram,
    negotiation_wire_state,
    transfer_wire_state,
)
from d4h.contracts.transfer import TransferProcess

__all__ = [
    "FINAL_STATES",
    "NEGOTIATION_TRANSITIONS",
    "TRANSFER_TRANSITIONS",
    "ContractNegotiation",
    "NegotiationState",
    "NegotiationWireState",
    "Side",
    "TransferProcess",
    "TransferState",
    "TransferWireState",
    "mermaid_diagram",
    "negotiation",
    "negotiation_wire_state",
    "transfer",
    "transfer_wire_state",
]
