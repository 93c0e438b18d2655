"""Policy decisions for contracts: facts from the verified counter-party, evaluated per scope."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from d4h.clock import Clock
from d4h.errors import D4HError
from d4h.policy import (
    AccessRequest,
    Decision,
    PermitCheck,
    Policy,
    PresentedPermit,
    Scope,
    evaluate,
    facts_from,
)
from d4h.trust.jose import peek
from d4h.trust.tokens import VerifiedCaller

# Membership credential roles (trust) → the health profile's participantRole values (policy).
ROLE_MAP = {"dataHolder": "data_holder", "dataUser": "data_user", "hdab": "hdab"}


@dataclass(frozen=True)
class Counterparty:
    """The counter-party as verified when it called: what later policy decisions may rely on."""

    did: str
    roles: frozenset[str]
    claims: Mapping[str, Any] = field(default_factory=dict)
    # Data permit VC-JWTs it presented (unverified; the permit check verifies them at each decision).
    permits: tuple[str, ...] = field(default=(), repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "did": self.did,
            "roles": sorted(self.roles),
            "claims": dict(self.claims),
            "permits": list(self.permits),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Counterparty:
        return cls(
            str(data["did"]),
            frozenset(data.get("roles", ())),
            dict(data.get("claims", {})),
            tuple(str(p) for p in data.get("permits", ())),
        )

    @classmethod
    def from_caller(cls, caller: VerifiedCaller) -> Counterparty:
        claims = dict(caller.claims)
        claims.setdefault("membership", "active" if claims.get("membership", True) else "none")
        if claims.get("membership") is True:
            claims["membership"] = "active"
        if "country" not in claims and "legalAddressCountry" in claims:
            claims["country"] = claims["legalAddressCountry"]
        roles = {ROLE_MAP.get(r, r) for r in caller.roles}
        return cls(caller.did, frozenset(roles), claims, tuple(caller.deferred))


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
    """The policy decision for ``party``; each presented permit is tried, the first one allowing wins.

    With a permit, the purpose and processing mode facts come from the permit (unless given), so the
    offer's purpose constraints are checked against what the HDAB granted.
    """
    first: Decision | None = None
    for token in party.permits:
        presented = _presented(token)
        if presented is None:
            continue
        permit, subject = presented
        request = AccessRequest(
            dataset_id=dataset_id,
            purpose=purpose or _text(subject.get("purpose")),
            processing_mode=processing_mode or _text(subject.get("processingMode")),
            permit=permit,
        )
        facts = facts_from(party, request, clock, permit_check=permit_check, agreed_at=agreed_at)
        decision = evaluate(policy, facts, scope)
        if decision.allowed:
            return decision
        first = first or decision
    request = AccessRequest(dataset_id=dataset_id, purpose=purpose, processing_mode=processing_mode)
    facts = facts_from(party, request, clock, permit_check=permit_check, agreed_at=agreed_at)
    decision = evaluate(policy, facts, scope)
    if decision.allowed:
        return decision
    if first is not None:  # say why the presented permit failed, not that none was presented
        return first
    if purpose is None or processing_mode is None:
        # The purpose and processing mode are stated by a data permit: without one they are missing.
        reasons = tuple(
            f"{r} (a data permit states it; none was presented)" if _FROM_PERMIT in r else r
            for r in decision.reasons
        )
        decision = replace(decision, reasons=reasons)
    return decision


_FROM_PERMIT = "the request states no "


def _presented(token: str) -> tuple[PresentedPermit, Mapping[str, Any]] | None:
    try:
        payload = peek(token, what="data permit").payload
    except D4HError:
        return None
    subject = payload.get("credentialSubject")
    if not isinstance(subject, Mapping) or not isinstance(subject.get("permitId"), str):
        return None
    return PresentedPermit(subject["permitId"], token), subject


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
