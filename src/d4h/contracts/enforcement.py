"""Policy decisions for contracts: facts from the verified counter-party, evaluated per scope."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from d4h.clock import Clock
from d4h.policy import AccessRequest, Decision, PermitCheck, Policy, Scope, evaluate, facts_from
from d4h.trust.tokens import VerifiedCaller

# Membership credential roles (trust) → the health profile's participantRole values (policy).
ROLE_MAP = {"dataHolder": "data_holder", "dataUser": "data_user", "hdab": "hdab"}


@dataclass(frozen=True)
class Counterparty:
    """The counter-party as verified when it called: what later policy decisions may rely on."""

    did: str
    roles: frozenset[str]
    claims: Mapping[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"did": self.did, "roles": sorted(self.roles), "claims": dict(self.claims)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counterparty:
        return cls(str(data["did"]), frozenset(data.get("roles", ())), dict(data.get("claims", {})))

    @classmethod
    def from_caller(cls, caller: VerifiedCaller) -> Counterparty:
        claims = dict(caller.claims)
        claims.setdefault("membership", "active" if claims.get("membership", True) else "none")
        if claims.get("membership") is True:
            claims["membership"] = "active"
        if "country" not in claims and "legalAddressCountry" in claims:
            claims["country"] = claims["legalAddressCountry"]
        roles = {ROLE_MAP.get(r, r) for r in caller.roles}
        return cls(caller.did, frozenset(roles), claims)


def decide(
    policy: Policy,
    party: Counterparty,
    scope: Scope,
    clock: Clock,
    *,
    dataset_id: str | None = None,
    purpose: str | None = None,
    processing_mode: str | None = None,
    permit_check: PermitCheck | None = None,
    agreed_at: datetime | None = None,
) -> Decision:
    request = AccessRequest(dataset_id=dataset_id, purpose=purpose, processing_mode=processing_mode)
    facts = facts_from(party, request, clock, permit_check=permit_check, agreed_at=agreed_at)
    return evaluate(policy, facts, scope)
