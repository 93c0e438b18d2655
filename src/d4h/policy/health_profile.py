"""The d4h health profile: the facts a decision rests on, the data-permit hook, and standard health offers.

``Facts`` is a frozen value built once per decision from a verified participant, the request and the
clock (``facts_from``). The HDAB permit check runs while building the facts, so evaluation stays pure:
``PermitCheck`` is the hook the HDAB issue implements (signature, trusted HDAB, status, and that the permit
names this dataset, this requester and the stated purpose). ``resolve`` turns a left operand into a fact
value for a scope, or says why it is skipped or missing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from d4h.clock import Clock
from d4h.errors import UserError
from d4h.policy.model import (
    Constraint,
    LogicalConstraint,
    LogicalOperator,
    Operator,
    Permission,
    Policy,
    PolicyType,
    Prohibition,
    Scope,
)
from d4h.policy.operators import FactValue
from d4h.policy.vocabulary import (
    D4H_PROFILE,
    LEFT_OPERANDS,
    PROHIBITED_USES,
    PUBLIC_SECTOR_PURPOSES,
)


@dataclass(frozen=True)
class PresentedPermit:
    """A data permit as the requester presented it: its id and, when sent, the credential (VC-JOSE)."""

    permit_id: str
    credential: str | None = None


@dataclass(frozen=True)
class PermitQuery:
    """What the permit must be checked against."""

    permit: PresentedPermit
    dataset_id: str | None
    requester: str | None
    purpose: str | None
    processing_mode: str | None
    at: datetime


@dataclass(frozen=True)
class PermitVerdict:
    """The HDAB permit check's answer; ``reason`` says why in plain words either way."""

    valid: bool
    reason: str
    permit_id: str | None = None
    issuer: str | None = None


class PermitCheck(Protocol):
    """Verifies a presented permit (implemented by the HDAB issue; offline: signature, issuer, status)."""

    def check(self, query: PermitQuery) -> PermitVerdict: ...


class NoPermitCheck:
    """The default check: every permit is refused because no verifier is configured."""

    def check(self, query: PermitQuery) -> PermitVerdict:
        return PermitVerdict(
            False, "no HDAB permit verifier is configured on this node", query.permit.permit_id
        )


class VerifiedParticipant(Protocol):
    """What the trust layer hands to policy decisions (matches its verified participant)."""

    @property
    def did(self) -> str: ...

    @property
    def roles(self) -> Collection[str]: ...

    @property
    def claims(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class AccessRequest:
    """What the requester asks for: dataset, purpose, processing mode, permit, processing country."""

    dataset_id: str | None = None
    purpose: str | None = None
    processing_mode: str | None = None
    permit: PresentedPermit | None = None
    country: str | None = None


@dataclass(frozen=True)
class Facts:
    """Everything a policy decision may look at, fixed at one instant."""

    now: datetime
    requester: str | None = None
    roles: frozenset[str] = frozenset()
    membership: str = "none"
    country: str | None = None
    purpose: str | None = None
    processing_mode: str | None = None
    dataset_id: str | None = None
    permit: PresentedPermit | None = None
    permit_verdict: PermitVerdict | None = None
    agreed_at: datetime | None = None
    fulfilled: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("now", "agreed_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise UserError(f"facts: {name} must be a timezone-aware datetime")


def facts_from(
    participant: VerifiedParticipant | None,
    request: AccessRequest,
    clock: Clock,
    *,
    permit_check: PermitCheck | None = None,
    agreed_at: datetime | None = None,
    fulfilled: Iterable[str] = (),
) -> Facts:
    """Facts for one decision; runs the permit check when a permit is presented.

    The participant's claims may carry ``membership`` (a status string, or true for active) and
    ``country`` (ISO 3166-1 alpha-2, used when the request names no processing country).
    """
    now = clock.now()
    claims: Mapping[str, Any] = participant.claims if participant else {}
    requester = participant.did if participant else None
    verdict = None
    if request.permit is not None:
        query = PermitQuery(
            request.permit, request.dataset_id, requester, request.purpose, request.processing_mode, now
        )
        verdict = (permit_check or NoPermitCheck()).check(query)
    country = request.country or claims.get("country")
    return Facts(
        now=now,
        requester=requester,
        roles=frozenset(participant.roles) if participant else frozenset(),
        membership=_membership(claims.get("membership")),
        country=country.upper() if isinstance(country, str) else None,
        purpose=request.purpose,
        processing_mode=request.processing_mode,
        dataset_id=request.dataset_id,
        permit=request.permit,
        permit_verdict=verdict,
        agreed_at=agreed_at,
        fulfilled=frozenset(fulfilled),
    )


@dataclass(frozen=True)
class Resolved:
    """A left operand's value in a scope: bound to a value, skipped in this scope, or missing."""

    status: Literal["bound", "skipped", "missing"]
    value: FactValue | None = None
    note: str = ""


def resolve(left_operand: str, facts: Facts, scope: Scope) -> Resolved:
    """The fact value for a left operand in a scope."""
    spec = LEFT_OPERANDS.get(left_operand)
    if spec is None:
        return Resolved("missing", note=f"{left_operand!r} is not a left operand of the d4h profile")
    if scope not in spec.scopes:
        return Resolved("skipped", note=f"{left_operand} is not evaluated in scope {scope.value}")
    if left_operand == "purpose":
        return _present(facts.purpose, "the request states no purpose")
    if left_operand == "participantRole":
        if facts.requester is None:
            return Resolved("missing", note="the requester is not authenticated")
        return Resolved("bound", facts.roles)
    if left_operand == "membership":
        return Resolved("bound", facts.membership)
    if left_operand == "dataPermit":
        return _permit(facts)
    if left_operand == "dateTime":
        return Resolved("bound", facts.now)
    if left_operand == "elapsedTime":
        if facts.agreed_at is None:
            return Resolved("missing", note="no agreement time is known")
        return Resolved("bound", facts.now - facts.agreed_at)
    if left_operand == "processingMode":
        return _present(facts.processing_mode, "the request states no processing mode")
    return _present(facts.country, "the requester's processing country is not known")


def art54_prohibitions() -> tuple[Prohibition, ...]:
    """One prohibition per EHDS Art. 54 use, so a refusal names the prohibited use."""
    return tuple(
        Prohibition("use", (Constraint("purpose", Operator.EQ, term.code),)) for term in PROHIBITED_USES
    )


def health_offer(
    uid: str,
    *,
    purposes: Collection[str] = ("art53-1-e",),
    processing_modes: Collection[str] = ("aggregate-only",),
    roles: Collection[str] = ("data_user",),
    require_permit: bool = True,
    region: str = "EEA",
    valid_until: str | None = None,
) -> Policy:
    """A catalogue offer in the d4h profile: member, role, purpose, mode, permit, region; Art. 54 prohibited."""
    constraints: list[Constraint | LogicalConstraint] = [
        Constraint("membership", Operator.EQ, "active"),
        Constraint("participantRole", Operator.IS_ANY_OF, tuple(sorted(roles))),
        Constraint("purpose", Operator.IS_ANY_OF, tuple(sorted(purposes))),
        Constraint("processingMode", Operator.IS_ANY_OF, tuple(sorted(processing_modes))),
        Constraint("spatial", Operator.IS_A, region),
    ]
    if set(purposes) & PUBLIC_SECTOR_PURPOSES:
        # Art. 53(1)(a)-(c) only for public-sector bodies.
        constraints.append(
            LogicalConstraint(
                LogicalOperator.OR,
                (
                    Constraint("purpose", Operator.IS_NONE_OF, tuple(sorted(PUBLIC_SECTOR_PURPOSES))),
                    Constraint("participantRole", Operator.HAS_PART, "public_sector_body"),
                ),
            )
        )
    if require_permit:
        constraints.append(Constraint("dataPermit", Operator.EQ, "valid"))
    if valid_until is not None:
        constraints.append(Constraint("dateTime", Operator.LTEQ, valid_until))
    return Policy(
        uid=uid,
        type=PolicyType.OFFER,
        permissions=(Permission("use", tuple(constraints)),),
        prohibitions=art54_prohibitions(),
        profile=(D4H_PROFILE,),
    )


def _present(value: str | None, missing: str) -> Resolved:
    return Resolved("missing", note=missing) if value is None else Resolved("bound", value)


def _permit(facts: Facts) -> Resolved:
    if facts.permit is None:
        return Resolved("bound", "absent", "no data permit was presented")
    verdict = facts.permit_verdict
    if verdict is None:
        return Resolved("bound", "invalid", f"permit {facts.permit.permit_id} was not verified")
    return Resolved("bound", "valid" if verdict.valid else "invalid", verdict.reason)


def _membership(claim: Any) -> str:
    if claim is True:
        return "active"
    if isinstance(claim, Mapping):
        claim = claim.get("status")
    return claim if isinstance(claim, str) and claim else "none"
