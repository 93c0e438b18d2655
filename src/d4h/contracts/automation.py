"""What a node does next on its own, per state: configured automation, or a scripted behaviour (TCK mode).

Scripts are keyed by dataset id (negotiations) or agreement id (transfers) and list, per state, the action
for the 1st, 2nd, … time the process is in that state; "wait" leaves the decision to the peer or a person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Action = str  # offer | agree | finalize | terminate | accept | verify | counter | start | complete | suspend | wait

NegotiationScript = Mapping[str, Sequence[Action]]
TransferScript = Mapping[str, Sequence[Action]]


@dataclass
class Scripts:
    negotiations: dict[str, NegotiationScript] = field(default_factory=dict)
    transfers: dict[str, TransferScript] = field(default_factory=dict)
    # How many times each process was seen in each state (so "the 2nd REQUESTED" can act differently).
    _seen: dict[tuple[str, str], int] = field(default_factory=dict)

    def next_action(
        self, key: str | None, process_id: str, state: str, *, transfer: bool = False
    ) -> Action | None:
        table = self.transfers if transfer else self.negotiations
        script = table.get(key or "")
        if script is None or state not in script:
            return None
        n = self._seen.get((process_id, state), 0)
        self._seen[(process_id, state)] = n + 1
        steps = script[state]
        return steps[n] if n < len(steps) else "wait"


# Default automation (no script): a provider agrees when the contract policy allows, waits when it
# cannot decide yet (e.g. a permit is missing), terminates with the reasons otherwise; it finalizes
# verified agreements. A consumer accepts an offer equal to the one it asked for, verifies an agreement
# that matches its request, and terminates otherwise.
PROVIDER_DEFAULTS: Mapping[str, Action] = {"REQUESTED": "agree", "ACCEPTED": "agree", "VERIFIED": "finalize"}
CONSUMER_DEFAULTS: Mapping[str, Action] = {"OFFERED": "accept", "AGREED": "verify"}
TRANSFER_PROVIDER_DEFAULTS: Mapping[str, Action] = {"REQUESTED": "start"}
